//! HTTP/2 PING keep-alive (case 4): reqwest's `http2_keep_alive_*` are
//! hyper's client keep-alive. hyper 1.12 src/proto/h2/ping.rs: the timer is
//! scheduled at the last read + I (`KeepAlive::schedule`, line 455: any
//! frame read updates `last_read_at`, lines 202/236), the PING goes out
//! when it fires unless `!while_idle && is_idle` (`maybe_ping`, line 472),
//! and the connection is closed T after it without an ACK (`maybe_timeout`,
//! line 486). The servers run with their `[long]` idle timeout.

use super::*;

/// The client's window after the fault: `idle_ms` = t0 − its last data
/// received (TCP_INFO, jiffy-grained ± J); the two tokio timers may each be
/// up to 1 ms late. TCP_USER_TIMEOUT U can end it first once the PING is
/// unacknowledged ([`crate::model::tcp::send_expectation`]).
pub fn ping_expectation(
    c: &HttpConfig,
    tcp: &TcpConfig,
    fault: FaultKind,
    idle_ms: u64,
    spec: &str,
) -> Expectation {
    let (i, t) = (ms_of(c.h2_interval), ms_of(c.h2_timeout));
    // Under reset, whatever the client sends first meets the RST: the PING,
    // or the first TCP keep-alive probe (reqwest's tcp_keepalive, read back
    // from the socket) when that comes earlier or there is no PING.
    let probe = (fault == FaultKind::Reset && tcp.keepalive)
        .then(|| crate::model::tcp::rst_at_first_probe(tcp, idle_ms, "client (TCP keep-alive): "));
    let no_ping = |why: &str| {
        probe
            .clone()
            .unwrap_or_else(|| Expectation::not_detected(why, spec))
    };
    if i == 0 {
        return no_ping("http2_keep_alive_interval = 0: no HTTP/2 PING");
    }
    if !c.h2_while_idle {
        return no_ping(
            "http2_keep_alive_while_idle = false and no stream open: hyper sends no PING (ping.rs maybe_ping: `!self.while_idle && is_idle`)",
        );
    }
    let w = crate::model::h2ping::window(i, t, idle_ms, fault, spec);
    if fault == FaultKind::Reset {
        return match (probe, w.min_ms) {
            (Some(p), Some(lo)) if p.max_ms.is_some_and(|hi| hi < lo) => p,
            _ => w,
        };
    }
    // TCP_USER_TIMEOUT U ends it first when the unacknowledged PING (sent
    // at I − idle) outlives U before T.
    let by_user = crate::model::tcp::send_expectation(tcp, fault, i.saturating_sub(idle_ms), None);
    match (by_user.min_ms, w.min_ms) {
        (Some(u), Some(lo)) if u < lo => by_user,
        _ => w,
    }
}

pub(crate) fn run_ping(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    ping_case(ctx, case, fault, true)
}

pub(crate) fn run_ping_busy_only(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    ping_case(ctx, case, fault, false)
}

fn ping_case(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    while_idle: bool,
) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    let c = HttpConfig {
        h2_while_idle: while_idle,
        ..HttpConfig::of(&ctx.config)
    };
    for kind in SERVERS {
        let s = setup(ctx, kind, Idle::Long, true, c)?;
        let sw = SocketWatch::start(&s.tb.server, s.srv.addr, s.seen)?;
        let cw = SocketWatch::start(&s.tb.client, s.local, s.srv.addr)?;
        // What the client wrote after the response (h2 WINDOW_UPDATE,
        // SETTINGS ACK) is acknowledged before the path fails: else its
        // retransmission (RTO ≥ 200 ms) meets the reset before the PING.
        std::thread::sleep(Duration::from_millis(300));
        let applied = apply(&s, fault)?;
        let t0 = applied.in_force_at;
        let last = kaspec_harness::observe::last_data_recv_at(&s.tb.client, s.local, s.srv.addr)?
            .unwrap_or(s.anchor);
        let idle_ms = rel_ms(last, t0).max(0) as u64;
        let expected = ping_expectation(&c, &s.tcp, fault, idle_ms, case.spec);
        let deadline_ms = expected.deadline_ms(ms_of(c.h2_interval) + ms_of(c.h2_timeout) + 2000);
        let client_closed = cw.wait(t0 + Duration::from_millis(deadline_ms))?;
        let server_closed = sw.wait(Instant::now())?;
        let release = crate::outcome::releases(&s.tb, s.local, s.srv.addr);
        let err = client_closed.as_ref().map(|x| {
            format!(
                "hyper closed the connection (keep-alive timed out): client socket {}",
                x.state
            )
        });
        let client = Side::observed(expected, client_closed.as_ref(), err, deadline_ms);
        let server = quiet_server(&s, server_closed, deadline_ms, case.spec);
        let timeline = vec![(last, "client's last data received (TCP_INFO)".to_string())];
        let f = facts(ctx, case, fault, &applied, &s, &c, t0, timeline, release);
        out.extend(both(ctx, f, &s, client, server)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_rule_pings_at_the_last_read_plus_i_and_closes_t_later() {
        let mut c = HttpConfig::of(&crate::config::Config::new(knobs::KNOBS));
        c.h2_interval = Duration::from_millis(1000);
        c.h2_timeout = Duration::from_millis(500);
        c.h2_while_idle = true;
        let j = linux::jiffy_ms();
        let e = ping_expectation(&c, &c.tcp, FaultKind::Blackhole, 100, "s");
        assert_eq!((e.min_ms, e.max_ms), (Some(1400 - j), Some(1400 + j + 2)));
        let r = ping_expectation(&c, &c.tcp, FaultKind::Reset, 100, "s");
        assert_eq!(r.max_ms, Some(900 + j + 1));
        c.h2_while_idle = false;
        assert!(!ping_expectation(&c, &c.tcp, FaultKind::Blackhole, 100, "s").expects_detection());
        // No PING (while_idle off, or interval 0), under reset: the first
        // TCP keep-alive probe meets the RST at KI − idle (reqwest's
        // tcp_keepalive on the socket); with SO_KEEPALIVE off, nothing.
        let mut tcp = c.tcp;
        tcp.keepalive = true;
        tcp.idle = Duration::from_secs(15);
        for interval in [1000, 0] {
            c.h2_interval = Duration::from_millis(interval);
            let k = ping_expectation(&c, &tcp, FaultKind::Reset, 300, "s");
            assert_eq!(k.min_ms, Some(14_700), "{}", k.formula);
        }
        tcp.keepalive = false;
        assert!(!ping_expectation(&c, &tcp, FaultKind::Reset, 300, "s").expects_detection());
        // With the PING first, the PING's window; with the probe first, the probe's.
        c.h2_while_idle = true;
        c.h2_interval = Duration::from_millis(1000);
        tcp.keepalive = true;
        assert_eq!(
            ping_expectation(&c, &tcp, FaultKind::Reset, 100, "s").max_ms,
            Some(900 + j + 1)
        );
        tcp.idle = Duration::from_millis(500);
        assert_eq!(
            ping_expectation(&c, &tcp, FaultKind::Reset, 100, "s").min_ms,
            Some(400)
        );
    }
}
