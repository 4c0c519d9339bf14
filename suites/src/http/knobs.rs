//! The `http.*` client knobs: reqwest's ClientBuilder settings (defaults:
//! reqwest 0.13.5's own, src/async_impl/client.rs `ClientBuilder::new`,
//! lines 302–355), the reuse race's grid, and what `kaspec validate`
//! compares them with.

use std::time::Duration;

use crate::config::{Config, Key, Kind, TcpConfig};

const MAX_MS: u64 = i32::MAX as u64;

pub static POOL_IDLE_TIMEOUT: Key = Key {
    name: "http.pool_idle_timeout",
    kind: Kind::Millis { min: 0, max: MAX_MS },
    default: "90s",
    doc: "reqwest ClientBuilder::pool_idle_timeout: an idle pooled connection is not reused (and is dropped) after this (0 = never; reqwest's default 90 s)",
};
pub static POOL_MAX_IDLE_PER_HOST: Key = Key {
    name: "http.pool_max_idle_per_host",
    kind: Kind::Count { min: 0, max: 1_000_000 },
    default: "1000000",
    doc: "reqwest ClientBuilder::pool_max_idle_per_host: idle connections kept per host (0 = no pooling; reqwest's default usize::MAX, shown as 1000000)",
};
pub static TCP_KEEPALIVE: Key = Key {
    name: "http.tcp_keepalive",
    kind: Kind::Secs { min: 1, max: 32767, zero_ok: true },
    default: "15s",
    doc: "reqwest ClientBuilder::tcp_keepalive: SO_KEEPALIVE with TCP_KEEPIDLE (0 = off; reqwest 0.13's default 15 s)",
};
pub static TCP_KEEPALIVE_INTERVAL: Key = Key {
    name: "http.tcp_keepalive_interval",
    kind: Kind::Secs {
        min: 1,
        max: 32767,
        zero_ok: false,
    },
    default: "15s",
    doc:
        "reqwest ClientBuilder::tcp_keepalive_interval: TCP_KEEPINTVL (reqwest 0.13's default 15 s)",
};
pub static TCP_KEEPALIVE_RETRIES: Key = Key {
    name: "http.tcp_keepalive_retries",
    kind: Kind::Count { min: 1, max: 127 },
    default: "3",
    doc: "reqwest ClientBuilder::tcp_keepalive_retries: TCP_KEEPCNT (reqwest 0.13's default 3)",
};
pub static TCP_USER_TIMEOUT: Key = Key {
    name: "http.tcp_user_timeout",
    kind: Kind::Millis { min: 0, max: MAX_MS },
    default: "30s",
    doc: "reqwest ClientBuilder::tcp_user_timeout: TCP_USER_TIMEOUT (0 = off; reqwest 0.13's default 30 s)",
};
pub static REQUEST_TIMEOUT: Key = Key {
    name: "http.request_timeout",
    kind: Kind::Millis { min: 0, max: MAX_MS },
    default: "0s",
    doc: "reqwest ClientBuilder::timeout: a request fails when its response is not complete within this (0 = none, reqwest's default)",
};
pub static H2_INTERVAL: Key = Key {
    name: "http.http2_keep_alive_interval",
    kind: Kind::Millis { min: 0, max: MAX_MS },
    default: "0s",
    doc: "reqwest ClientBuilder::http2_keep_alive_interval: an HTTP/2 PING this long after the last read (0 = off, reqwest's default)",
};
pub static H2_TIMEOUT: Key = Key {
    name: "http.http2_keep_alive_timeout",
    kind: Kind::Millis { min: 1, max: MAX_MS },
    default: "20s",
    doc: "reqwest ClientBuilder::http2_keep_alive_timeout: the connection is closed when the PING's ACK is not in within this (hyper's default 20 s)",
};
pub static H2_WHILE_IDLE: Key = Key {
    name: "http.http2_keep_alive_while_idle",
    kind: Kind::Bool,
    default: "false",
    doc: "reqwest ClientBuilder::http2_keep_alive_while_idle: PING also when no stream is open (reqwest's default false)",
};
pub static SERVER_KEEPALIVE_TIMEOUT: Key = Key {
    name: "http.server_keepalive_timeout",
    kind: Kind::Millis { min: 0, max: MAX_MS },
    default: "0s",
    doc: "the idle (keep-alive) timeout of the server or proxy the client talks to, e.g. nginx keepalive_timeout (for `kaspec validate`; 0 = not stated)",
};
pub static PROXY_UPSTREAM_KEEPALIVE_TIMEOUT: Key = Key {
    name: "http.proxy_upstream_keepalive_timeout",
    kind: Kind::Millis { min: 0, max: MAX_MS },
    default: "0s",
    doc: "how long the proxy in front keeps an idle upstream connection, e.g. nginx upstream keepalive_timeout (default 60 s), HAProxy's idle server connections (for `kaspec validate` and the proxy reuse race; 0 = not stated)",
};
pub static UPSTREAM_KEEPALIVE_TIMEOUT: Key = Key {
    name: "http.upstream_keepalive_timeout",
    kind: Kind::Millis { min: 0, max: MAX_MS },
    default: "0s",
    doc: "the idle (keep-alive) timeout of the servers behind the proxy, e.g. Node.js keepAliveTimeout 5 s (for `kaspec validate` and the proxy reuse race; 0 = not stated)",
};
pub static RACE_SPAN: Key = Key {
    name: "http.race_span",
    kind: Kind::Millis { min: 0, max: 10_000 },
    default: "50ms",
    doc: "the reuse race's grid: requests sent from S − span to S + span after the last response (S: the server's idle timeout)",
};
pub static RACE_STEP: Key = Key {
    name: "http.race_step",
    kind: Kind::Millis {
        min: 1,
        max: 10_000,
    },
    default: "5ms",
    doc: "the reuse race's grid step",
};
pub static RACE_ROUNDS: Key = Key {
    name: "http.race_rounds",
    kind: Kind::Count { min: 1, max: 100 },
    default: "3",
    doc: "the reuse race: requests per grid point",
};

/// The `http.*` keys, in help order.
pub static KNOBS: [&Key; 16] = [
    &POOL_IDLE_TIMEOUT,
    &POOL_MAX_IDLE_PER_HOST,
    &TCP_KEEPALIVE,
    &TCP_KEEPALIVE_INTERVAL,
    &TCP_KEEPALIVE_RETRIES,
    &TCP_USER_TIMEOUT,
    &REQUEST_TIMEOUT,
    &H2_INTERVAL,
    &H2_TIMEOUT,
    &H2_WHILE_IDLE,
    &SERVER_KEEPALIVE_TIMEOUT,
    &PROXY_UPSTREAM_KEEPALIVE_TIMEOUT,
    &UPSTREAM_KEEPALIVE_TIMEOUT,
    &RACE_SPAN,
    &RACE_STEP,
    &RACE_ROUNDS,
];

/// The reqwest client's settings and the race grid, typed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpConfig {
    /// Zero: never expires.
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// The socket options reqwest is asked for (keepalive false: tcp_keepalive 0).
    pub tcp: TcpConfig,
    /// Zero: none.
    pub request_timeout: Duration,
    /// Zero: no HTTP/2 PING.
    pub h2_interval: Duration,
    pub h2_timeout: Duration,
    pub h2_while_idle: bool,
    /// Zero: not stated.
    pub server_keepalive_timeout: Duration,
    /// Zero: not stated.
    pub proxy_upstream_keepalive_timeout: Duration,
    /// Zero: not stated.
    pub upstream_keepalive_timeout: Duration,
    pub race_span: Duration,
    pub race_step: Duration,
    pub race_rounds: u64,
}

impl HttpConfig {
    /// The `http.*` values of `c`.
    pub fn of(c: &Config) -> HttpConfig {
        let idle = c.dur(&TCP_KEEPALIVE);
        HttpConfig {
            pool_idle_timeout: c.dur(&POOL_IDLE_TIMEOUT),
            pool_max_idle_per_host: c.count(&POOL_MAX_IDLE_PER_HOST) as usize,
            tcp: TcpConfig {
                keepalive: !idle.is_zero(),
                idle,
                interval: c.dur(&TCP_KEEPALIVE_INTERVAL),
                count: c.count(&TCP_KEEPALIVE_RETRIES) as u32,
                user_timeout: c.dur(&TCP_USER_TIMEOUT),
            },
            request_timeout: c.dur(&REQUEST_TIMEOUT),
            h2_interval: c.dur(&H2_INTERVAL),
            h2_timeout: c.dur(&H2_TIMEOUT),
            h2_while_idle: c.flag(&H2_WHILE_IDLE),
            server_keepalive_timeout: c.dur(&SERVER_KEEPALIVE_TIMEOUT),
            proxy_upstream_keepalive_timeout: c.dur(&PROXY_UPSTREAM_KEEPALIVE_TIMEOUT),
            upstream_keepalive_timeout: c.dur(&UPSTREAM_KEEPALIVE_TIMEOUT),
            race_span: c.dur(&RACE_SPAN),
            race_step: c.dur(&RACE_STEP),
            race_rounds: c.count(&RACE_ROUNDS),
        }
    }
}
