//! Cases: what each one checks, which faults it takes, and how a measurement
//! becomes a result.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kaspec_harness::expect::{judge, Expectation, TOLERANCE_MS};
use kaspec_harness::fault::FaultKind;
use kaspec_harness::observe::SocketClosed;
use kaspec_harness::report::{CaseResult, Event, Implementation};

use crate::config::Config;
use crate::deviations::Deviation;

/// One case. Its id is permanent: `<protocol>/<spec>-<section>/<n>`.
pub struct CaseDef {
    pub id: &'static str,
    pub protocol: &'static str,
    /// Where the requirement comes from, e.g. `RFC 1122 §4.2.3.6`.
    pub spec: &'static str,
    /// One line: what the case does.
    pub description: &'static str,
    /// The requirement it checks.
    pub requirement: &'static str,
    /// Faults this case can take; any other is reported `unsupported`.
    pub faults: &'static [FaultKind],
    /// A case whose scenario *is* its fault (a frozen peer, or none at all)
    /// runs once with it, whatever `--fault` says.
    pub fixed_fault: Option<FaultKind>,
    pub run: fn(&Ctx, &CaseDef, FaultKind) -> kaspec_harness::Result<Vec<CaseResult>>,
    /// The longest one run of the case may take with this configuration and
    /// network (for progress output and `validate`'s limit; each wait inside
    /// has its own deadline).
    pub budget: fn(&Ctx) -> Duration,
}

/// How to start our own servers (`kaspec serve ...` or the `kaspec-serve` binary).
#[derive(Debug, Clone)]
pub struct ServeCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// Everything a case run needs besides the testbed it builds.
pub struct Ctx {
    pub config: Config,
    /// The run folder: server logs go to `run_dir/logs`.
    pub run_dir: PathBuf,
    /// The `fixtures/` folder (server configs, deviations).
    pub fixtures: PathBuf,
    pub serve: ServeCommand,
    pub deviations: Vec<Deviation>,
    /// The path (`--network`); its NAT idle timeout drives the nat-expiry cases.
    pub network: crate::network::NetworkProfile,
    /// Servers started once per run and shared by its cases (RabbitMQ, PostgreSQL).
    pub shared: crate::shared::Shared,
    /// `--testbed docker`: the compose stack whose containers are the
    /// servers (None: the netns testbed, servers started by kaspec).
    pub docker: Option<kaspec_harness::docker::Stack>,
}

impl Ctx {
    /// What `delay` and `loss` apply: the network profile's round trip,
    /// jitter and loss where it sets them, else the defaults (300 ms; 2%).
    pub fn impairments(&self) -> (kaspec_harness::impair::Impairment, kaspec_harness::impair::Impairment) {
        let (mut delay, mut loss) = kaspec_harness::impair::defaults();
        let n = &self.network;
        if !n.rtt.is_zero() || !n.jitter.is_zero() {
            delay.rtt = n.rtt;
            delay.jitter = n.jitter;
            loss.rtt = n.rtt;
            loss.jitter = n.jitter;
        }
        if n.loss_percent > 0.0 {
            loss.loss_percent = n.loss_percent;
        }
        (delay, loss)
    }

    /// A fresh testbed whose `delay` and `loss` follow [`impairments`](Self::impairments).
    pub fn testbed(&self) -> kaspec_harness::Result<kaspec_harness::netns::Testbed> {
        let tb = kaspec_harness::netns::Testbed::new(&self.run_dir)?;
        let (d, l) = self.impairments();
        tb.set_impairments(d, l);
        Ok(tb)
    }

    /// The testbed of a case whose server is `service` of docker-compose.yml:
    /// on the docker testbed its container, else a fresh netns testbed.
    pub fn testbed_for(&self, service: &str) -> kaspec_harness::Result<kaspec_harness::netns::Testbed> {
        let Some(stack) = &self.docker else { return self.testbed() };
        let tb = kaspec_harness::netns::Testbed::docker(&self.run_dir, None, stack, service)?;
        let (d, l) = self.impairments();
        tb.set_impairments(d, l);
        Ok(tb)
    }

    /// The testbed of a NAT case (the router forgets idle TCP flows after
    /// `nat`) whose server is `service` of docker-compose.yml: on the docker
    /// testbed its container behind the router's NAT, else a fresh netns one.
    pub fn testbed_with_nat(&self, service: &str, nat: Duration) -> kaspec_harness::Result<kaspec_harness::netns::Testbed> {
        match &self.docker {
            None => kaspec_harness::netns::Testbed::with_nat(&self.run_dir, Some(nat)),
            Some(stack) => kaspec_harness::netns::Testbed::docker(&self.run_dir, Some(nat), stack, service),
        }
    }

    /// The key of the shared NAT testbed of `service` (see [`Ctx::shared_bed`]).
    pub fn shared_nat_bed(&self, service: &str, nat: Duration) -> String {
        match self.docker {
            None => format!("nat-{}s", nat.as_secs()),
            Some(_) => format!("docker-{service}-nat-{}s", nat.as_secs()),
        }
    }

    /// The key of the shared testbed of `service` (one per container on the
    /// docker testbed; one for every shared server on netns).
    pub fn shared_bed(&self, service: &str) -> String {
        match self.docker {
            None => crate::shared::PLAIN.into(),
            Some(_) => format!("docker-{service}"),
        }
    }

    /// The impairment `fault` applies (delay or loss), for expectations.
    pub fn impairment(&self, fault: FaultKind) -> Option<kaspec_harness::impair::Impairment> {
        let (d, l) = self.impairments();
        match fault {
            FaultKind::Delay => Some(d),
            FaultKind::Loss => Some(l),
            _ => None,
        }
    }
}

/// Every case, in a stable order.
pub fn all() -> Vec<&'static CaseDef> {
    crate::tcp::CASES
        .iter()
        .chain(crate::mqtt::CASES.iter())
        .chain(crate::websocket::CASES.iter())
        .chain(crate::grpc::CASES.iter())
        .chain(crate::nat::CASES.iter())
        .chain(crate::postgres::CASES.iter())
        .chain(crate::amqp::CASES.iter())
        .collect()
}

/// The cases whose id starts with any of `prefixes` (all if none). A prefix
/// that selects nothing is an error naming it and the protocols there are.
pub fn select(prefixes: &[String]) -> Result<Vec<&'static CaseDef>, String> {
    let cases = all();
    for p in prefixes {
        if !cases.iter().any(|c| c.id.starts_with(p.as_str())) {
            let mut protocols: Vec<&str> = Vec::new();
            for c in &cases {
                if !protocols.contains(&c.protocol) {
                    protocols.push(c.protocol);
                }
            }
            return Err(format!(
                "no case id starts with `{p}` (protocols: {}; `kaspec list` shows every id)",
                protocols.iter().map(|p| format!("{p}/")).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Ok(cases.into_iter().filter(|c| prefixes.is_empty() || prefixes.iter().any(|p| c.id.starts_with(p.as_str()))).collect())
}

/// Checks, before anything starts, that every server the selected cases need
/// is installed; the error names what is missing and how to install it.
pub fn check_prerequisites(cases: &[&CaseDef]) -> kaspec_harness::Result<()> {
    kaspec_harness::caps::require_base()?;
    let uses = |p: &str| cases.iter().any(|c| c.protocol == p);
    if uses("mqtt") {
        kaspec_harness::caps::require_program("mosquitto", "mosquitto")?;
    }
    if uses("websocket") {
        crate::servers::python_module("websockets", "python3-websockets")?;
    }
    if uses("grpc") {
        crate::servers::python_module("grpc", "python3-grpcio")?;
    }
    if uses("postgres") {
        crate::postgres::postgres_binary()?;
    }
    if uses("amqp") {
        crate::amqp::require_rabbitmq()?;
    }
    Ok(())
}

/// Milliseconds from `t0` to `t` (negative if before).
pub fn rel_ms(t0: Instant, t: Instant) -> i64 {
    if t >= t0 {
        (t - t0).as_millis() as i64
    } else {
        -((t0 - t).as_millis() as i64)
    }
}

/// `d` in whole milliseconds.
pub fn ms_of(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// One side's measurement, before judging.
pub struct SideOutcome {
    pub side: &'static str,
    pub implementation: Implementation,
    pub peer: Implementation,
    pub expected: Expectation,
    pub detected_at: Option<Instant>,
    pub error: Option<String>,
    pub deadline_ms: u64,
}

/// One side's measurement, for [`RunFacts::both_sides`].
pub struct Side {
    pub expected: Expectation,
    pub detected_at: Option<Instant>,
    pub error: Option<String>,
    pub deadline_ms: u64,
}

impl Side {
    /// A side whose detection is its socket leaving ESTABLISHED (sock_diag).
    pub fn from_socket(expected: Expectation, closed: Option<SocketClosed>, deadline_ms: u64, whose: &str) -> Side {
        Side {
            expected,
            detected_at: closed.as_ref().map(|c| c.at),
            error: closed.map(|c| format!("{whose} socket left ESTABLISHED: {}", c.state)),
            deadline_ms,
        }
    }
}

/// What one case run shares between its sides.
pub struct RunFacts<'a> {
    pub case: &'a CaseDef,
    pub fault: FaultKind,
    pub engine: String,
    pub config: BTreeMap<String, String>,
    pub t0: Instant,
    /// Events before judging (last activity, probes seen, ...).
    pub timeline: Vec<(Instant, String)>,
    /// The flow's sockets at the end of the case (see [`releases`]).
    pub release: Releases,
}

/// The second verdict axis, per side.
#[derive(Debug, Clone, Default)]
pub struct Releases {
    pub client: Option<kaspec_harness::report::Release>,
    pub server: Option<kaspec_harness::report::Release>,
}

/// The flow's sockets on both hosts at the end of a case, path still
/// faulted. `client_local` is the client's end; `server_sees` the client as
/// the server sees it (through a NAT, the router's address).
pub fn releases(
    tb: &kaspec_harness::netns::Testbed,
    client_local: std::net::SocketAddrV4,
    server: std::net::SocketAddrV4,
) -> Releases {
    use kaspec_harness::observe::{tcp_state_name, SockDiag};
    let state = |host: &kaspec_harness::netns::Host, local: std::net::SocketAddrV4, remote: std::net::SocketAddrV4| {
        host.run(move || {
            let sockets = SockDiag::new().and_then(|mut d| d.dump_tcp()).ok()?;
            Some(sockets.into_iter().find(|s| s.local == local && s.remote == remote).map(|s| tcp_state_name(s.state).to_string()))
        })
        .ok()
        .flatten()
    };
    let seen = tb.seen_by_server(client_local);
    Releases {
        client: state(&tb.client, client_local, server).map(|s| kaspec_harness::report::Release::from_state(s.as_deref())),
        server: state(&tb.server, server, seen).map(|s| kaspec_harness::report::Release::from_state(s.as_deref())),
    }
}

impl RunFacts<'_> {
    /// The client's and the server's results of one run.
    pub fn both_sides(
        &self,
        client_impl: Implementation,
        server_impl: Implementation,
        client: Side,
        mut server: Side,
        deviations: &[Deviation],
    ) -> Vec<CaseResult> {
        let crashed = self.fault == FaultKind::Crash;
        if crashed {
            // The server's socket closed because its process was killed: that
            // is the crash itself, not a detection.
            server = Side {
                expected: Expectation::not_detected("the server crashed: nothing is left on that side to detect anything", server.expected.spec),
                detected_at: None,
                error: Some("server process killed after the path was blackholed; its kernel's FIN/RST died at the router".into()),
                deadline_ms: server.deadline_ms,
            };
        }
        let mut out = vec![
            self.result(
                SideOutcome {
                    side: "client",
                    implementation: client_impl.clone(),
                    peer: server_impl.clone(),
                    expected: client.expected,
                    detected_at: client.detected_at,
                    error: client.error,
                    deadline_ms: client.deadline_ms,
                },
                deviations,
            ),
            self.result(
                SideOutcome {
                    side: "server",
                    implementation: server_impl,
                    peer: client_impl,
                    expected: server.expected,
                    detected_at: server.detected_at,
                    error: server.error,
                    deadline_ms: server.deadline_ms,
                },
                deviations,
            ),
        ];
        // The client's end counts once its library reported the failure
        // (otherwise kaspec closed it at the end of the case) and only where
        // the snapshot was taken before kaspec closed it; the server's end
        // always, unless the server was killed.
        // A live peer (delay, loss) or a frozen one keeps its end open by
        // design: the axis does not apply.
        let applies = !self.fault.peer_alive() && self.fault != FaultKind::Freeze;
        if applies && out[0].detected {
            out[0].release = self.release.client.clone();
        }
        if applies && !crashed {
            out[1].release = self.release.server.clone();
        }
        out
    }

    /// The result of a case that judges the client side only.
    pub fn client_only(
        &self,
        implementation: Implementation,
        peer: Implementation,
        client: Side,
        deviations: &[Deviation],
    ) -> Vec<CaseResult> {
        vec![self.result(
            SideOutcome {
                side: "client",
                implementation,
                peer,
                expected: client.expected,
                detected_at: client.detected_at,
                error: client.error,
                deadline_ms: client.deadline_ms,
            },
            deviations,
        )]
    }

    /// Judges one side and builds its result.
    pub fn result(&self, o: SideOutcome, deviations: &[Deviation]) -> CaseResult {
        let detection_ms = o.detected_at.map(|t| rel_ms(self.t0, t).max(0) as u64);
        let j = judge(&o.expected, detection_ms, o.deadline_ms);
        let mut timeline: Vec<(Instant, String)> = self.timeline.clone();
        timeline.push((self.t0, format!("fault {} in force", self.fault)));
        if let Some(t) = o.detected_at {
            timeline.push((t, format!("{} side detected", o.side)));
        }
        timeline.sort_by_key(|(t, _)| *t);
        let known_deviation = (j.verdict == kaspec_harness::expect::Verdict::Fail)
            .then(|| crate::deviations::explain(deviations, self.case.id, o.side, &o.implementation.name, &o.expected, detection_ms))
            .flatten();
        CaseResult {
            case: self.case.id.to_string(),
            protocol: self.case.protocol.to_string(),
            description: self.case.description.to_string(),
            requirement: self.case.requirement.to_string(),
            side: o.side.to_string(),
            implementation: o.implementation,
            peer: o.peer,
            fault: self.fault.name().to_string(),
            engine: self.engine.clone(),
            config: self.config.clone(),
            detected: detection_ms.is_some(),
            detection_ms,
            deadline_ms: o.deadline_ms,
            expected: o.expected,
            tolerance_ms: TOLERANCE_MS,
            verdict: j.verdict,
            verdict_detail: j.detail,
            known_deviation,
            error: o.error,
            timeline: timeline.into_iter().map(|(t, what)| Event { t_ms: rel_ms(self.t0, t), what }).collect(),
            repeat: None,
            release: None,
        }
    }
}

/// Linux's minimum retransmission timeout (TCP_RTO_MIN).
pub const RTO_MIN: Duration = Duration::from_millis(200);

/// The expectation for a side whose liveness check waits `timeout` for an
/// answer (or for traffic) while the path is impaired but the peer is alive.
///
/// The check survives the path when `timeout` exceeds the longest round
/// trip (rtt + jitter) plus, on a lossy path, what two consecutive losses of
/// one segment cost TCP (RTO + 2 × RTO with RTO ≈ RTT + RTO_MIN): then a
/// detection is a false positive and fails. Otherwise a false detection is
/// what the configuration allows on this path: reported, not failed.
pub fn impaired_expectation(what: &str, timeout: Duration, imp: &kaspec_harness::impair::Impairment, spec: &str) -> Expectation {
    let rtt = ms_of(imp.max_rtt());
    // Two losses of one segment: retransmitted after RTO ≈ RTT + RTO_MIN, then
    // after twice that (backoff): 3 × RTO more before the answer can come.
    let loss_cost = if imp.loss_percent > 0.0 { 3 * (rtt + ms_of(RTO_MIN)) } else { 0 };
    let need = rtt + loss_cost;
    let t = ms_of(timeout);
    let path = imp.describe();
    let needs = if loss_cost > 0 {
        format!("round trip {rtt} ms + two retransmissions of one segment 3 × (RTT + RTO_MIN) = {loss_cost} ms: {need} ms")
    } else {
        format!("the longest round trip {rtt} ms")
    };
    if t > need {
        Expectation::must_stay_up(
            format!("path: {path}; the peer is alive; {what} {t} ms > {needs}: no detection allowed (a detection is a false positive)"),
            spec,
        )
    } else {
        Expectation::not_detected(
            format!("path: {path}; the peer is alive; {what} {t} ms ≤ {needs}: this configuration allows a false detection on this path"),
            spec,
        )
    }
}

/// How long a case watches a healthy connection on an impaired path.
pub fn impaired_watch_ms(longest_window: Duration, imp: &kaspec_harness::impair::Impairment) -> u64 {
    (3 * ms_of(longest_window + imp.max_rtt())).max(5_000)
}

/// For cases that take `delay`/`loss`: what the impairment engine did, as a
/// timeline event; an error if it stopped working during the case.
pub fn impairment_event(tb: &kaspec_harness::netns::Testbed) -> kaspec_harness::Result<Option<(Instant, String)>> {
    Ok(tb.impairment_report()?.map(|s| (Instant::now(), s)))
}
