//! Linux TCP keep-alive and TCP_USER_TIMEOUT, as the kernel implements them
//! (net/ipv4/tcp_timer.c, `tcp_keepalive_timer`): the first probe goes out
//! I after the last segment received, then one every V; when the timer fires
//! with N probes unanswered the connection is aborted (ETIMEDOUT). With
//! TCP_USER_TIMEOUT U set, N is ignored: the abort happens at the first
//! firing where the time since the last segment received is at least U.
//! With unacknowledged data in flight keep-alive never probes; only U (or
//! the ~15 min retransmission limit) ends the connection.
//!
//! Shared by every protocol that runs over a TCP socket with these options
//! (TCP itself, PostgreSQL on both sides, gRPC's TCP keep-alive, NAT cases).

use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::FaultKind;

use super::linux;
use super::ms_of;
use crate::config::TcpConfig;

/// When keep-alive declares an idle connection dead, counted from the last
/// segment received: the nominal time, the most the kernel's timer wheel can
/// add, and the formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Death {
    pub ms: u64,
    pub slack_ms: u64,
    pub formula: String,
}

/// A live peer on a slow or lossy path, seen by TCP keep-alive: probes are
/// not retransmitted; the connection dies only when N probes in a row (or
/// their answers) are lost, or when no answer comes within N × V of the
/// first probe (U with TCP_USER_TIMEOUT). With N = 1 a single loss kills it.
pub fn keepalive_on_impaired_path(
    t: &TcpConfig,
    imp: &kaspec_harness::fault::impair::Impairment,
    who: &str,
    spec: &str,
) -> Expectation {
    if !t.keepalive {
        return Expectation::not_detected(
            format!("{who}: keep-alive off: nothing on that side can time out"),
            spec,
        );
    }
    if imp.loss_percent > 0.0 && t.count < 2 && t.user_timeout.is_zero() {
        return Expectation::either(
            format!(
                "{who}: N = 1: one lost probe or answer ends the connection (about {:.1}% per idle cycle at {}% loss each way): a false detection is allowed",
                2.0 * imp.loss_percent,
                imp.loss_percent
            ),
            spec,
        );
    }
    let (what, span) = if t.user_timeout.is_zero() {
        (
            "the time from the first unanswered probe to death, N × V =".to_string(),
            t.interval * t.count,
        )
    } else {
        ("TCP_USER_TIMEOUT U =".to_string(), t.user_timeout)
    };
    super::impaired::impaired_expectation(&format!("{who}: {what}"), span, imp, spec)
}

pub fn keepalive_death(t: &TcpConfig) -> Death {
    let (i, v, u) = (ms_of(t.idle), ms_of(t.interval), ms_of(t.user_timeout));
    // Timers: the first (I, re-armed once for the remainder after our last
    // exchange), then one per probe interval.
    let (probes, formula) = if u == 0 {
        let n = t.count as u64;
        (n, format!("I + N×V = {i} + {n}×{v} = {} ms", i + n * v))
    } else {
        let k = if u > i { (u - i).div_ceil(v).max(1) } else { 1 };
        (k, format!("U={u} overrides N: first timer firing at I + k×V ≥ U, k ≥ 1: {i} + {k}×{v} = {} ms", i + k * v))
    };
    let ms = i + probes * v;
    let slack_ms =
        linux::wheel_slack_ms(i) + linux::wheel_slack_ms(0) + probes * linux::wheel_slack_ms(v);
    Death {
        ms,
        slack_ms,
        formula,
    }
}

/// Under `reset`, an idle side with keep-alive on learns at its first probe
/// (I after the last segment it received): the router answers it with RST
/// (RFC 9293 §3.5.3). `idle_ms` = t0 − that last segment; `who` prefixes the
/// formula.
pub fn rst_at_first_probe(t: &TcpConfig, idle_ms: u64, who: &str) -> Expectation {
    let i = ms_of(t.idle);
    let d = i.saturating_sub(idle_ms);
    let slack = linux::wheel_slack_ms(i) + linux::wheel_slack_ms(0);
    Expectation::window(
        d,
        d + slack,
        format!(
            "{who}the first probe (I after the last segment received) is answered by RST: I − idle = {i} − {idle_ms} = {d} ms, + up to {slack} ms timer-wheel rounding ({})",
            linux::hz_text()
        ),
        "RFC 9293 §3.5.3 (reset processing)",
        Level::Must,
    )
}

pub fn send_expectation(
    t: &TcpConfig,
    fault: FaultKind,
    sent_ms: u64,
    retrans: Option<&linux::RetransState>,
) -> Expectation {
    let spec = "RFC 5482 §3 (TCP_USER_TIMEOUT), Linux retrans_stamp";
    if fault == FaultKind::Reset {
        return Expectation::window(
            0,
            sent_ms,
            format!("immediate: the data sent at +{sent_ms} ms is answered by RST"),
            "RFC 9293 §3.5.3 (reset processing)",
            Level::Must,
        );
    }
    if fault == FaultKind::Freeze {
        return Expectation::not_detected(
            "the frozen server's kernel acknowledges the data: nothing stays unacknowledged, so U never fires",
            spec,
        );
    }
    let u = ms_of(t.user_timeout);
    if u == 0 {
        return Expectation::not_detected(
            "U = 0: only the retransmission limit (tcp_retries2, ~15 min) ends it; keep-alive does not probe while data is in flight",
            spec,
        );
    }
    // Nominal (before the socket's state is known): 200 ms PTO + 200 ms RTO.
    let nominal = linux::RetransState {
        rto_us: 200_000,
        srtt_us: 0,
        rto_min_us: 200_000,
        tlp: true,
    };
    let state = retrans.unwrap_or(&nominal);
    let (first, how) = state.first_retransmission_ms();
    let d = sent_ms + first + u;
    let slack = linux::wheel_slack_ms(state.rto_us / 1000) * 2 + linux::wheel_slack_ms(u);
    Expectation::window(
        d,
        d + slack,
        format!(
            "send offset + first RTO retransmission + U = {sent_ms} + ({how}) + {u} = {d} ms, + up to {slack} ms timer-wheel rounding ({}); srtt {} µs",
            linux::hz_text(),
            state.srtt_us
        ),
        spec,
        Level::Must,
    )
}

/// One side's keep-alive window after the fault, given both sides' TCP
/// settings and idle times at the fault. `peer_rst` says whether the peer's
/// abort RST reaches this side (the one-way blackhole that leaves the
/// peer-to-this-side direction open): then this side learns at the earlier of
/// its own death and the peer's.
pub fn keepalive_window(
    own: &TcpConfig,
    own_idle: u64,
    peer: Option<(&TcpConfig, u64)>,
    fault: FaultKind,
    who: &str,
    spec: &str,
) -> Expectation {
    let own_death = own.keepalive.then(|| death_after_idle(own, own_idle));
    let peer_death = peer
        .filter(|(p, _)| p.keepalive)
        .map(|(p, idle)| death_after_idle(p, idle));
    match fault {
        FaultKind::Reset => {
            if !own.keepalive {
                return Expectation::not_detected(format!("{who}: keep-alive off; the router answers only segments it gets, and this side sends none"), spec);
            }
            rst_at_first_probe(own, own_idle, &format!("{who}: "))
        }
        _ => match (own_death, peer_death) {
            (Some((lo, hi, f)), Some((plo, phi, pf))) if plo < lo => Expectation::window(
                plo,
                phi.min(hi),
                format!("{who}: the peer's abort RST passes this one-way blackhole and comes first: peer {pf}; own {f}"),
                spec,
                Level::Must,
            ),
            (Some((lo, hi, f)), _) => Expectation::window(lo, hi, format!("{who}: {f}"), spec, Level::Must),
            (None, Some((plo, phi, pf))) => Expectation::window(plo, phi, format!("{who}: keep-alive off; the peer's abort RST passes this one-way blackhole: {pf}"), spec, Level::Must),
            (None, None) => Expectation::not_detected(format!("{who}: keep-alive off: an idle connection is never probed"), spec),
        },
    }
}

/// (lo, hi, formula) of a keep-alive death after the fault.
pub fn death_after_idle(t: &TcpConfig, idle: u64) -> (u64, u64, String) {
    let death = keepalive_death(t);
    let d = death.ms.saturating_sub(idle);
    (d, d + death.slack_ms, format!("{} − idle before the fault {idle} ms = {d} ms, + up to {} ms timer-wheel rounding ({})", death.formula, death.slack_ms, linux::hz_text()))
}
