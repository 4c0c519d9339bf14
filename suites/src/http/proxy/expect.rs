//! The two-level windows, from the proxy's configuration and its source.
//!
//! nginx 1.22.1 (src/http/ngx_http_upstream.c,
//! src/http/modules/ngx_http_upstream_keepalive_module.c):
//! - once the request is written to the upstream connection, the read timer
//!   is `proxy_read_timeout` (ngx_http_upstream.c:2163
//!   `ngx_add_timer(c->read, u->conf->read_timeout)`); when it fires the
//!   upstream is "timed out" (2367 → `ngx_http_upstream_next(..,
//!   NGX_HTTP_UPSTREAM_FT_TIMEOUT)`), whose status is 504 (4319);
//! - an error on a *cached* connection gives the request one more try
//!   (4310–4312: `if (u->peer.cached && ft_type == NGX_HTTP_UPSTREAM_FT_ERROR)
//!   u->peer.tries++`), on a new connection when `proxy_next_upstream`
//!   has `error`; otherwise (or `off`) the status is 502 (4348);
//! - a pooled idle connection has the timer `keepalive_timeout`
//!   (keepalive module:384 `ngx_add_timer(c->read, kp->conf->timeout)`,
//!   default 60 s at :161) and is closed when it fires (close handler :422):
//!   nothing else probes it.
//!
//! Timer grain, for every nginx window: nginx arms a timer at its cached
//! `ngx_current_msec` (src/core/ngx_times.c `ngx_time_update`, whole ms,
//! updated after each `epoll_wait` return): up to 1 ms before the true
//! instant; `epoll_wait`'s timeout is whole ms from `ngx_event_find_timer`:
//! the wake is up to 1 ms after the deadline; the request's and the
//! response's travel over two veth links and reqwest's hand-off: under a ms
//! (+1). So [T − 1, T + 2] around the formula's T.
//!
//! HAProxy 2.6 (doc/configuration.txt): `timeout server` "the maximum
//! inactivity time on the server side"; the request then ends with 504
//! (src/http_ana.c v2.6.0:1378–1394, `CF_READ_TIMEOUT` → `txn->status = 504`);
//! a read error (an RST) on a request that is not the client connection's
//! first closes the client connection without a response (:1349–1350).
//! Its timers are ms ticks (include/haproxy/ticks.h) against `now_ms`,
//! with the same grain as nginx's.

use std::time::Duration;

use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::FaultKind;

use super::server::{ProxyKind, ProxySettings};
use crate::model::ms_of;

/// ms before the formula's instant a proxy's ms timer may fire (its cached
/// clock truncated to the ms).
pub const TIMER_EARLY_MS: u64 = 1;
/// ms after: epoll's whole-ms timeout (+1), the two links and the client's
/// hand-off (+1).
pub const TIMER_LATE_MS: u64 = 2;
/// A request that the proxy answers at once (an RST met, a retry on a new
/// connection): the handshake, the request and the response over veth
/// links, each well under a ms, and the proxy's and the server's turns.
pub const AT_ONCE_MS: u64 = 5;

const NGINX_SRC: &str = "nginx 1.22.1 ngx_http_upstream.c:2163 (read timer = proxy_read_timeout), :2367 (timed out → next, FT_TIMEOUT), :4310–4312 (an error on a cached connection: one more try), :4319 (504), :4348 (502)";
const HAPROXY_ABORT_SRC: &str = "HAProxy 2.6.0 http_ana.c:1349–1350 (a read error on a request that is not the connection's first: abort_keep_alive, no response)";
/// The `status` fact of a request the proxy answered by closing the
/// client's connection (hyper's IncompleteMessage).
pub const CLOSED_WITHOUT_RESPONSE: &str = "none: connection closed before message completed";
const HAPROXY_SRC: &str =
    "HAProxy 2.6 configuration.txt `timeout server`; http_ana.c (server timeout → 504)";

/// The windows of one run's settings and fault.
pub struct Windows {
    pub s: ProxySettings,
    pub fault: FaultKind,
    /// How long the client's request may take (reqwest's timeout): 3 × the
    /// proxy's read timeout, at least 3 s.
    pub client_deadline_ms: u64,
}

impl Windows {
    pub fn new(s: ProxySettings, fault: FaultKind) -> Windows {
        Windows {
            s,
            fault,
            client_deadline_ms: (3 * ms_of(s.read_timeout)).max(3000),
        }
    }

    fn src(&self) -> &'static str {
        match self.s.kind {
            ProxyKind::Nginx => NGINX_SRC,
            ProxyKind::Haproxy => HAPROXY_SRC,
        }
    }

    /// Case 5(b): (client, proxy, server) expectations for the request
    /// sent `sent` ms after the fault, through the pooled upstream
    /// connection from `port` that the fault cut.
    pub fn upstream_dies(&self, sent: u64, port: u16) -> (Expectation, Expectation, Expectation) {
        let r = ms_of(self.s.read_timeout);
        let (src, name) = (self.src(), self.read_timeout_name());
        let server = Expectation::not_detected(
            format!("kaspec's upstream server has no idle timeout here, and nothing of the cut flow from port {port} reaches it"),
            "hyper 1.x http1: no header_read_timeout set",
        );
        let timed_out = |what: &str| {
            Expectation::window(
                (sent + r).saturating_sub(TIMER_EARLY_MS),
                sent + r + TIMER_LATE_MS,
                format!("request sent + {name} = {sent} + {r} = {} ms, −{TIMER_EARLY_MS}/+{TIMER_LATE_MS} ms timer grain ({what})", sent + r),
                src,
                Level::Must,
            )
        };
        let at_once = |what: &str| {
            Expectation::window(
                sent,
                sent + AT_ONCE_MS,
                format!("request sent = {sent} ms, + up to {AT_ONCE_MS} ms for {what}"),
                src,
                Level::Must,
            )
        };
        match self.fault {
            // HAProxy: a read error on a request that is not the client
            // connection's first aborts that keep-alive connection without
            // a response (http_ana.c v2.6.0:1349–1350, `if (txn->flags &
            // TX_NOT_FIRST) goto abort_keep_alive;`), as if the client's
            // idle connection had been closed: the client may retry.
            FaultKind::Reset if self.s.kind == ProxyKind::Haproxy => (
                at_once("the RST on the reused connection and HAProxy's close of the client's")
                    .requiring(
                        "status",
                        CLOSED_WITHOUT_RESPONSE,
                        HAPROXY_ABORT_SRC,
                        Level::Must,
                    ),
                at_once("the RST met on the reused connection"),
                server,
            ),
            FaultKind::Reset if self.s.retry => (
                at_once("the RST on the pooled connection and the retry on a new one")
                    .requiring("status", "200", src, Level::Must)
                    .requiring("upstream connection", "a new one", src, Level::Must),
                at_once("the RST met on the pooled connection"),
                server,
            ),
            FaultKind::Reset => (
                at_once("the RST on the pooled connection").requiring(
                    "status",
                    "502",
                    src,
                    Level::Must,
                ),
                at_once("the RST met on the pooled connection"),
                server,
            ),
            _ => (
                timed_out("the proxy gives up on the silent upstream").requiring(
                    "status",
                    "504",
                    src,
                    Level::Must,
                ),
                timed_out("the proxy closes the connection that timed out"),
                server,
            ),
        }
    }

    /// Case 5(a): (client, proxy, server) expectations for the client's
    /// idle connection cut `since_response` ms after the first response
    /// reached the client. The proxy's client-side keep-alive timer was
    /// armed when it had written that response (nginx ngx_http_request.c:3258
    /// `ngx_http_set_keepalive`: `ngx_add_timer(rev, clcf->keepalive_timeout)`;
    /// HAProxy `timeout http-keep-alive`, "the maximum allowed time to wait
    /// for a new HTTP request to appear"): at most the response's transit
    /// and the client's wake-up before it reached the client (−1 ms).
    pub fn client_side_dies(&self, since_response: u64) -> (Expectation, Expectation, Expectation) {
        let k = ms_of(self.s.keepalive_timeout);
        let name = match self.s.kind {
            ProxyKind::Nginx => "keepalive_timeout",
            ProxyKind::Haproxy => "timeout http-keep-alive",
        };
        let src = match self.s.kind {
            ProxyKind::Nginx => "nginx 1.22.1 ngx_http_request.c:3258 ngx_http_set_keepalive `ngx_add_timer(rev, clcf->keepalive_timeout)`",
            ProxyKind::Haproxy => "HAProxy 2.6 configuration.txt `timeout http-keep-alive`",
        };
        let at = k.saturating_sub(since_response);
        let proxy = Expectation::window(
            at.saturating_sub(TIMER_EARLY_MS + 1),
            at + TIMER_LATE_MS,
            format!("response + {name} − response before the fault = {k} − {since_response} = {at} ms, −{}/+{TIMER_LATE_MS} ms timer grain and the response's transit", TIMER_EARLY_MS + 1),
            src,
            Level::Must,
        );
        let client = Expectation::not_detected(
            "an idle reqwest connection without TCP keep-alive (reqwest's default) sends nothing; the proxy's FIN dies at the router",
            "reqwest 0.13 ClientBuilder (tcp_keepalive unset)",
        );
        let server = Expectation::not_detected(
            "the upstream level crosses the other router: the proxy's pooled upstream connection stays up",
            "the proxy topology: one router per level",
        );
        (client, proxy, server)
    }

    fn read_timeout_name(&self) -> &'static str {
        match self.s.kind {
            ProxyKind::Nginx => "proxy_read_timeout",
            ProxyKind::Haproxy => "timeout server",
        }
    }
}

/// How long one run of a two-level case may take.
pub fn budget(s: &ProxySettings) -> Duration {
    Duration::from_millis(3 * ms_of(s.read_timeout).max(1000) + 8000)
}
