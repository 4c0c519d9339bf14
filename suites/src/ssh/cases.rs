//! How each case runs: which client and server, whose process a freeze
//! stops, and each side's expectation from what its run observed.

use super::*;

/// The expectation of a side that does not probe (its keep-alive is off)
/// while its peer detects and ends the session at `peer_end_ms` after t0:
/// it can learn only from the peer's close, and only on a healthy path.
/// Under a one-way blackhole whose open direction would carry the close
/// (measured, every implementation here): the closer's FIN is queued behind
/// its unacknowledged keep-alive requests, and after a retransmission
/// timeout only the queue's head is resent (cwnd 1), so the FIN never
/// leaves — the same as nats-server's -ERR and FIN.
fn passive(
    fault: FaultKind,
    frozen_here: bool,
    close_reaches: bool,
    peer_end_ms: Option<u64>,
    who: &str,
    why_silent: &str,
    spec: &str,
) -> Expectation {
    if frozen_here {
        return Expectation::not_detected(
            format!("{who}: its process is frozen (SIGSTOP): it detects nothing"),
            spec,
        );
    }
    match (close_reaches, peer_end_ms) {
        (true, Some(end)) => Expectation::window(
            end,
            end + CLOSE_SEEN_MS,
            format!("{who}: {why_silent}; it learns from its peer's close (its end at +{end} ms), which reaches it under {fault}: + up to {CLOSE_SEEN_MS} ms"),
            spec,
            Level::Must,
        ),
        _ => Expectation::not_detected(
            format!("{who}: {why_silent}; its peer's close does not reach it under {fault} (dropped, or its FIN queued behind the peer's unacknowledged keep-alive requests)"),
            spec,
        ),
    }
}

/// The peer's FIN crosses the path and the receiver's read sees it (a
/// sock_diag dump or a process's exit away).
const CLOSE_SEEN_MS: u64 = 25;

/// The worst wake-up lateness the probe measured from sshd's last read to
/// its close (or the deadline): the per-timeout lateness of its loop.
fn woke_late_ms(r: &Run) -> u64 {
    let end = r.server_closed.as_ref().map_or_else(
        || r.t0 + Duration::from_millis(sshd_deadline(&r.kind)),
        |c| c.at,
    );
    kaspec_harness::wake::lateness_ms(r.server_last, end)
}

fn sshd_deadline(kind: &ServerKind) -> u64 {
    match kind {
        ServerKind::Sshd(s) => {
            deadline(2 * (s.client_alive_count_max + 1) * s.client_alive_interval * 1000 + 1000)
        }
        ServerKind::Russh(s) => deadline((s.keepalive_max + 1) * ms_of(s.keepalive_interval)),
    }
}

fn silent_sshd() -> ServerChoice {
    ServerChoice::Sshd(vec![
        ("ClientAliveInterval", "0".into()),
        ("TCPKeepAlive", "no".into()),
    ])
}

const SILENT_SERVER: &str =
    "ClientAliveInterval 0 and TCPKeepAlive no for this case: it sends nothing";
const SILENT_CLIENT: &str =
    "ServerAliveInterval 0 and TCPKeepAlive no for this case: it sends nothing";

/// The server side of the client cases: silent, it learns only from the
/// client's FIN, which does not cross (see [`passive`]).
fn server_of_client_case(r: &Run, spec: &str) -> Expectation {
    passive(
        r.fault,
        r.fault == FaultKind::Freeze,
        false,
        r.client_end_ms(),
        "server",
        SILENT_SERVER,
        spec,
    )
}

/// The client side of the server cases: its server's close does not cross.
fn client_of_server_case(r: &Run, server_end_ms: Option<u64>, spec: &str) -> Expectation {
    passive(
        r.fault,
        r.fault == FaultKind::Freeze,
        false,
        server_end_ms,
        "client",
        SILENT_CLIENT,
        spec,
    )
}

fn server_end_ms(r: &Run) -> Option<u64> {
    r.server_closed
        .as_ref()
        .map(|c| rel_ms(r.t0, c.at).max(0) as u64)
}

pub(crate) fn run_openssh_client(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let o = OpenSshOptions::of(&super::knobs::SshConfig::of(&ctx.config));
    let spec = case.spec;
    let (i, m) = (o.server_alive_interval, o.server_alive_count_max);
    let client_deadline = deadline((m + 1) * i * 1000 + 1000);
    let plan = Plan {
        client: ClientKind::OpenSsh(o),
        server: silent_sshd(),
        target: Target::Server,
        nat: None,
        sysctls: None,
    };
    run(
        ctx,
        case,
        fault,
        plan,
        &|_| (client_deadline, client_deadline + 500),
        &|r| {
            let client = if i == 0 {
                Expectation::not_detected(
                    "client: ServerAliveInterval 0: ssh sends no alive messages",
                    spec,
                )
            } else {
                ssh_client_window(
                    ssh_anchor(&r.end.events, r.end.ended_at.unwrap_or(r.t0)),
                    r.client_last,
                    r.t0,
                    i,
                    m,
                    r.fault == FaultKind::Reset,
                )
                .expectation("client (clientloop.c server_alive_check)", spec)
            };
            (client, server_of_client_case(r, spec))
        },
    )
}

pub(crate) fn run_russh_client(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let c = &super::knobs::SshConfig::of(&ctx.config);
    let rc = RusshClient {
        keepalive_interval: (!c.keepalive_interval.is_zero()).then_some(c.keepalive_interval),
        keepalive_max: c.keepalive_max,
        inactivity_timeout: None,
    };
    let spec = case.spec;
    let (i, m) = (c.keepalive_interval, c.keepalive_max);
    let client_deadline = deadline((m + 1) * ms_of(i));
    let plan = Plan {
        client: ClientKind::Russh(rc),
        server: silent_sshd(),
        target: Target::Server,
        nat: None,
        sysctls: None,
    };
    run(
        ctx,
        case,
        fault,
        plan,
        &|_| (client_deadline, client_deadline + 500),
        &|r| {
            let client = if i.is_zero() || m == 0 {
                Expectation::not_detected("client: keepalive_interval None or keepalive_max 0: russh never ends the session for unanswered keepalives", spec)
            } else {
                russh_window(i, m, r.client_idle(), r.fault == FaultKind::Reset)
                    .expectation("client (client/mod.rs keepalive timer)", spec)
            };
            (client, server_of_client_case(r, spec))
        },
    )
}

pub(crate) fn run_sshd_server(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let spec = case.spec;
    let plan = Plan {
        client: ClientKind::OpenSsh(OpenSshOptions::SILENT),
        server: ServerChoice::Sshd(vec![]),
        target: Target::Client,
        nat: None,
        sysctls: None,
    };
    run(
        ctx,
        case,
        fault,
        plan,
        &|k| (sshd_deadline(k), sshd_deadline(k)),
        &|r| {
            let ServerKind::Sshd(s) = r.kind else {
                unreachable!("sshd case")
            };
            let server = if s.client_alive_interval == 0 {
                Expectation::not_detected(
                    "server: ClientAliveInterval 0: sshd sends no client-alive probes",
                    spec,
                )
            } else {
                // Judged against the documented algorithm (a probe after every
                // ClientAliveInterval of silence, as 9.5+ implements it); 9.2's
                // own loop probes every 2 I — a deviation in
                // fixtures/deviations.toml, its prediction in the formula.
                let reset = r.fault == FaultKind::Reset;
                let late = woke_late_ms(r);
                let e = sshd_window(r.server_last, r.t0, &s, true, reset, late).expectation(
                    "server (sshd_config(5); serverloop.c client_alive_check as fixed in 9.5)",
                    spec,
                );
                if sshd_fixed(&r.server_version) {
                    e
                } else {
                    let own = sshd_window(r.server_last, r.t0, &s, false, reset, late);
                    Expectation { formula: format!("{}; OpenSSH {}'s own loop (`>`) predicts {}..{} ms after t0: a deviation (fixtures/deviations.toml)", e.formula, r.server_version, own.lo, own.hi), ..e }
                }
            };
            (client_of_server_case(r, server_end_ms(r), spec), server)
        },
    )
}

pub(crate) fn run_russh_server(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let spec = case.spec;
    let plan = Plan {
        client: ClientKind::OpenSsh(OpenSshOptions::SILENT),
        server: ServerChoice::Russh,
        target: Target::Client,
        nat: None,
        sysctls: None,
    };
    run(
        ctx,
        case,
        fault,
        plan,
        &|k| (sshd_deadline(k), sshd_deadline(k)),
        &|r| {
            let ServerKind::Russh(s) = r.kind else {
                unreachable!("russh server case")
            };
            let server = russh_window(
                s.keepalive_interval,
                s.keepalive_max,
                r.server_idle(),
                r.fault == FaultKind::Reset,
            )
            .expectation("server (server/session.rs keepalive timer)", spec);
            (client_of_server_case(r, server_end_ms(r), spec), server)
        },
    )
}

fn inactivity_client(ctx: &Ctx) -> RusshClient {
    let t = super::knobs::SshConfig::of(&ctx.config).inactivity_timeout;
    RusshClient {
        keepalive_interval: None,
        keepalive_max: 0,
        inactivity_timeout: (!t.is_zero()).then_some(t),
    }
}

/// How often sshd's probes reach an answering client: every interval
/// (9.5+) or every second one (9.2, see expect.rs), in ms.
fn sshd_probe_period_ms(s: &SshdSettings, version: &str) -> u64 {
    s.client_alive_interval * 1000 * if sshd_fixed(version) { 1 } else { 2 }
}

pub(crate) fn run_inactivity_kept(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let spec = case.spec;
    let t = super::knobs::SshConfig::of(&ctx.config).inactivity_timeout;
    let watch_ms = 3 * ms_of(t).max(1000);
    let plan = Plan {
        client: ClientKind::Russh(inactivity_client(ctx)),
        server: ServerChoice::Sshd(vec![]),
        target: Target::Server,
        nat: None,
        sysctls: None,
    };
    run(ctx, case, fault, plan, &|_| (watch_ms, watch_ms), &|r| {
        let ServerKind::Sshd(s) = r.kind else {
            unreachable!("sshd case")
        };
        let p = sshd_probe_period_ms(&s, &r.server_version);
        let kept = || Expectation::must_stay_up("server: its client answers every probe", spec);
        if t.is_zero() {
            return (
                Expectation::must_stay_up("client: inactivity_timeout None", spec),
                kept(),
            );
        }
        let tm = ms_of(t);
        if s.client_alive_interval == 0 || p + crate::model::nat::NAT_RACE_MS >= tm {
            let w = russh_inactivity_window(t, r.client_idle());
            let why = format!("sshd's probes come every {p} ms (0 = never), not more often than inactivity_timeout = {tm} ms: ");
            let e = w.expectation("client", spec);
            return (
                Expectation {
                    formula: format!("{why}{}", e.formula),
                    ..e
                },
                passive(
                    FaultKind::None,
                    false,
                    true,
                    r.client_end_ms(),
                    "server",
                    "ClientAliveInterval from the fixture",
                    spec,
                ),
            );
        }
        (
            Expectation::must_stay_up(
                format!("client: every packet read restarts the inactivity timer (client/mod.rs: reset after each iteration that did not fire the keepalive timer); sshd's probes arrive every {p} ms < inactivity_timeout = {tm} ms, so the idle session stays up for {watch_ms} ms"),
                spec,
            ),
            kept(),
        )
    })
}

pub(crate) fn run_inactivity_silent(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let spec = case.spec;
    let t = super::knobs::SshConfig::of(&ctx.config).inactivity_timeout;
    let d = deadline(ms_of(t));
    let plan = Plan {
        client: ClientKind::Russh(inactivity_client(ctx)),
        server: silent_sshd(),
        target: Target::Server,
        nat: None,
        sysctls: None,
    };
    run(ctx, case, fault, plan, &|_| (d, d), &|r| {
        if t.is_zero() {
            return (
                Expectation::must_stay_up("client: inactivity_timeout None", spec),
                Expectation::must_stay_up("server: silent, and its client stays", spec),
            );
        }
        let client = russh_inactivity_window(t, r.client_idle())
            .expectation("client (client/mod.rs inactivity timer)", spec);
        (
            client,
            passive(
                FaultKind::None,
                false,
                true,
                r.client_end_ms(),
                "server",
                SILENT_SERVER,
                spec,
            ),
        )
    })
}

pub(crate) fn nat_budget(ctx: &Ctx) -> Duration {
    let c = &super::knobs::SshConfig::of(&ctx.config);
    let n = crate::model::nat::nat_idle(ctx);
    Duration::from_secs(15)
        + 3 * n
        + Duration::from_secs((c.server_alive_count_max + 2) * c.server_alive_interval.as_secs())
}

/// Whether ssh's alive requests keep the NAT's mapping: they go out I after
/// the last read, at whole seconds — ⌊L⌋ + I, up to 1 s before L + I.
pub fn ssh_keeps_mapping(i: u64, nat: Duration) -> Option<bool> {
    let (i_ms, n) = (i * 1000, ms_of(nat));
    if i == 0 {
        return Some(false);
    }
    if i_ms + crate::model::nat::NAT_RACE_MS < n.saturating_sub(1000) + 1 {
        return Some(true);
    }
    if i_ms > n + crate::model::nat::NAT_RACE_MS {
        return Some(false);
    }
    None
}

pub(crate) fn run_nat(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let o = OpenSshOptions::of(&super::knobs::SshConfig::of(&ctx.config));
    let n = crate::model::nat::nat_idle(ctx);
    let (i, m) = (o.server_alive_interval, o.server_alive_count_max);
    let spec = case.spec;
    let quiet = 3 * ms_of(n);
    let client_deadline = deadline(((m + 1) * i * 1000).max(quiet));
    let plan = Plan {
        client: ClientKind::OpenSsh(o),
        server: silent_sshd(),
        target: Target::Server,
        nat: Some(n),
        sysctls: None,
    };
    run(
        ctx,
        case,
        fault,
        plan,
        &|_| (client_deadline, client_deadline),
        &|r| {
            let server = Expectation::not_detected(format!("server: {SILENT_SERVER}; the client's packets after the expiry, its FIN included, die at the NAT"), spec);
            let nm = ms_of(n);
            let client = match ssh_keeps_mapping(i, n) {
            Some(true) => Expectation::must_stay_up(format!("client: an alive request at most ServerAliveInterval = {i} s after each read < N = {nm} ms refreshes the mapping: the session survives 3 × N"), spec),
            Some(false) if i == 0 => Expectation::not_detected(format!("client: ServerAliveInterval 0: nothing refreshes the mapping, it is forgotten after N = {nm} ms and ssh never notices"), spec),
            Some(false) => {
                let w = ssh_client_window(ssh_anchor(&r.end.events, r.end.ended_at.unwrap_or(r.t0)), r.client_last, r.t0, i, m, false);
                let e = w.expectation("client", spec);
                Expectation { formula: format!("ServerAliveInterval = {i} s > N = {nm} ms: the first alive request meets the forgotten mapping; {}", e.formula), ..e }
            }
            None => Expectation::either(format!("client: ServerAliveInterval = {i} s and N = {nm} ms: ssh's request goes out between I − 1 s and I after the last read (whole seconds), racing the expiry"), spec),
        };
            (client, server)
        },
    )
}

pub(crate) fn run_tcp_only(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let t = crate::config::TcpConfig {
        keepalive: true,
        ..crate::config::TcpConfig::of(&ctx.config)
    };
    let o = OpenSshOptions {
        server_alive_interval: 0,
        tcp_keepalive: true,
        ..OpenSshOptions::SILENT
    };
    let spec = case.spec;
    let death = crate::model::tcp::keepalive_death(&t);
    let d = deadline(death.ms + death.slack_ms);
    let server = ServerChoice::Sshd(vec![
        ("ClientAliveInterval", "0".into()),
        ("TCPKeepAlive", "yes".into()),
    ]);
    let plan = Plan {
        client: ClientKind::OpenSsh(o),
        server,
        target: Target::Server,
        nat: None,
        sysctls: Some(t),
    };
    run(ctx, case, fault, plan, &|_| (d, d), &|r| {
        let side = |idle: u64, who: &str| {
            if r.fault == FaultKind::Reset {
                return crate::model::tcp::rst_at_first_probe(&t, idle, &format!("{who}: "));
            }
            let lo = death.ms.saturating_sub(idle);
            Expectation::window(
                lo,
                lo + death.slack_ms + EXIT_OR_CLOSE_MS,
                format!("{who}: keep-alive from the host's net.ipv4.tcp_keepalive_*: {} after the last segment, − {idle} ms idle before t0, + up to {} ms timer-wheel rounding and {EXIT_OR_CLOSE_MS} ms to the exit", death.formula, death.slack_ms),
                spec,
                Level::Must,
            )
        };
        let ci = rel_ms(r.client_last_any, r.t0).max(0) as u64;
        let si = rel_ms(r.server_last_any, r.t0).max(0) as u64;
        (side(ci, "client"), side(si, "server"))
    })
}

/// ssh's exit after its read failed (ETIMEDOUT), reaped by kaspec.
const EXIT_OR_CLOSE_MS: u64 = 6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nat_threshold_counts_ssh_s_whole_second_phase() {
        let n = Duration::from_secs(4);
        assert_eq!(ssh_keeps_mapping(2, n), Some(true));
        assert_eq!(ssh_keeps_mapping(0, n), Some(false));
        assert_eq!(ssh_keeps_mapping(6, n), Some(false));
        // Within a second of N the request races the expiry.
        assert_eq!(ssh_keeps_mapping(3, n), None);
        assert_eq!(ssh_keeps_mapping(4, n), None);
    }

    #[test]
    fn a_silent_side_learns_only_from_a_close_that_reaches_it() {
        let e = passive(
            FaultKind::BlackholeDown,
            false,
            false,
            Some(2000),
            "server",
            "silent",
            "s",
        );
        assert!(!e.expects_detection());
        let e = passive(
            FaultKind::None,
            false,
            true,
            Some(2000),
            "server",
            "silent",
            "s",
        );
        assert_eq!(
            (e.min_ms, e.max_ms),
            (Some(2000), Some(2000 + CLOSE_SEEN_MS))
        );
        assert!(!passive(
            FaultKind::Freeze,
            true,
            true,
            Some(2000),
            "client",
            "silent",
            "s"
        )
        .expects_detection());
    }
}
