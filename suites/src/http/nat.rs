//! Through a NAT that forgets idle flows after N (case 6): the pool's idle
//! timeout P on either side of N. Below, hyper-util's pool expires the
//! connection before the mapping is forgotten (pool.rs: an expired idle
//! connection is never checked out), and a request 2 × N after the last
//! response goes out on a new connection; above, it goes out on the pooled
//! connection whose mapping is gone, its segments are dropped, and it fails
//! at reqwest's timeout or TCP_USER_TIMEOUT ([`dead_expectation`]). TCP
//! keep-alive is off for these cases (http.tcp_keepalive would refresh the
//! mapping: reqwest 0.13's default 15 s is above common NAT timeouts only
//! in part); the server runs with its `[long]` idle timeout.

use super::*;

/// The request goes out this long after the mapping's expiry (N after the last response).
fn after_ms(nat: Duration) -> u64 {
    ms_of(nat)
}

/// P for each side of N: N/2 (below), 3 × N (above).
fn pool_for(nat: Duration, below: bool) -> Duration {
    if below {
        nat / 2
    } else {
        nat * 3
    }
}

pub(crate) fn run_nat_below(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    nat_case(ctx, case, fault, true)
}

pub(crate) fn run_nat_above(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    nat_case(ctx, case, fault, false)
}

fn nat_case(ctx: &Ctx, case: &CaseDef, fault: FaultKind, below: bool) -> Result<Vec<CaseResult>> {
    let nat = crate::model::nat::nat_idle(ctx);
    let mut out = Vec::new();
    let base = HttpConfig::of(&ctx.config);
    let c = HttpConfig {
        pool_idle_timeout: pool_for(nat, below),
        tcp: TcpConfig {
            keepalive: false,
            ..base.tcp
        },
        ..base
    };
    for kind in SERVERS {
        let tb = ctx.testbed_with_nat(kind.service(Idle::Long), nat)?;
        let s = setup_on(ctx, tb, kind, Idle::Long, false, c)?;
        // Below, the pool closes the connection at P, before t0, and the
        // server's end closes on its FIN: nothing to judge on that side.
        let sw = if below {
            None
        } else {
            Some(SocketWatch::start(&s.tb.server, s.srv.addr, s.seen)?)
        };
        let t0 = s.anchor + nat;
        let p = ms_of(c.pool_idle_timeout);
        let nominal = if below {
            Expectation::must_stay_up(format!("P = {p} ms < N = {} ms: the pool drops the connection before the mapping is forgotten; the request {} ms after N goes out on a new connection and succeeds", ms_of(nat), after_ms(nat)), crate::model::nat::SPEC)
        } else {
            dead_expectation(&c, &s.tcp, FaultKind::Blackhole, after_ms(nat), case.spec)
        };
        let deadline_ms = nominal.deadline_ms(after_ms(nat) + 5000);
        let b = s.driver.get(
            Some(t0 + Duration::from_millis(after_ms(nat))),
            Duration::from_millis(deadline_ms - after_ms(nat)),
        )?;
        let server_closed = match sw {
            Some(w) => w.wait(Instant::now())?,
            None => None,
        };
        let release = crate::outcome::releases(&s.tb, s.local, s.srv.addr);
        let expected = if below {
            nominal
        } else {
            let sent = rel_ms(t0, b.sent).max(0) as u64;
            let e = dead_expectation(&c, &s.tcp, FaultKind::Blackhole, sent, case.spec);
            Expectation { formula: format!("P = {p} ms > N = {} ms: the request goes out on the pooled connection whose mapping is gone; {}", ms_of(nat), e.formula), ..e }
        };
        let (at, error) = request_failure(&b, t0 + Duration::from_millis(deadline_ms));
        let client = Side::library(expected, at, error, deadline_ms);
        let server_exp = if below {
            Expectation::not_applicable(format!("server: the pool closed the connection at P = {p} ms, before the mapping's expiry; the server's end closed on that FIN"), crate::model::nat::SPEC)
        } else {
            Expectation::not_detected(
                format!("server: idle timeout [long] {} ms, no keep-alive of its own: nothing to notice", ms_of(s.srv.idle_timeout)),
                crate::model::nat::SPEC,
            )
        };
        let server = Side::from_socket(server_exp, server_closed, deadline_ms, "server");
        let timeline = vec![
            (
                s.anchor,
                "client's last data received (TCP_INFO): the first response".to_string(),
            ),
            (
                b.sent,
                format!(
                    "the next request sent; it {}",
                    outcome_text(&b, s.local.port())
                ),
            ),
        ];
        let f = RunFacts::at_nat_expiry(
            case,
            fault,
            nat,
            config_of(ctx, &s, &c),
            t0,
            timeline,
            release,
        );
        out.extend(both(ctx, f, &s, client, server)?);
    }
    Ok(out)
}
