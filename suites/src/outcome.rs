//! How one run's measurements become results: each side's expectation,
//! detection instant and error, judged and labelled with the case, the
//! fault and the run's timeline.

use std::collections::BTreeMap;
use std::time::Instant;

use kaspec_harness::expect::{judge, Expectation, TOLERANCE_MS};
use kaspec_harness::fault::FaultKind;
use kaspec_harness::observe::SocketClosed;
use kaspec_harness::report::{CaseResult, Event, Implementation};

use crate::case::CaseDef;
use crate::deviations::Deviation;
use crate::model::rel_ms;

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

/// The flow's sockets at the end of a case (the second verdict axis).
pub use kaspec_harness::observe::release::{releases, Releases};

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

/// For cases that take `delay`/`loss`: what the impairment engine did, as a
/// timeline event; an error if it stopped working during the case.
pub fn impairment_event(tb: &kaspec_harness::testbed::Testbed) -> kaspec_harness::Result<Option<(Instant, String)>> {
    Ok(tb.impairment_report()?.map(|s| (Instant::now(), s)))
}
