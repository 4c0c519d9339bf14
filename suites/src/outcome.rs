//! How one run's measurements become results: each side's expectation,
//! detection instant, error and observed facts go to the judge
//! ([`kaspec_harness::judge`]) with that side's measured error budget, and
//! come back labelled with the case, the fault and the run's timeline. No
//! verdict is decided here.

use std::collections::BTreeMap;
use std::time::Instant;

use kaspec_harness::expect::{Budget, Expectation};
use kaspec_harness::fault::{AppliedFault, FaultKind};
use kaspec_harness::judge::{judge, Judged, Observation};
use kaspec_harness::observe::SocketClosed;
use kaspec_harness::report::{CaseResult, Event, Implementation, Release};
use kaspec_harness::{Error, Result};

use crate::case::CaseDef;
use crate::ctx::Judging;
use crate::model::rel_ms;

/// A library's own event (an error returned, a callback) is timestamped by
/// the thread it wakes, to the millisecond the result is truncated to.
pub const LIBRARY_EVENT_MS: u64 = 1;

/// One side's measurement, before judging.
pub struct SideOutcome {
    pub side: &'static str,
    pub implementation: Implementation,
    pub peer: Implementation,
    pub expected: Expectation,
    pub detected_at: Option<Instant>,
    pub error: Option<String>,
    pub deadline_ms: u64,
    /// The observer's resolution for this side (see [`Budget`]).
    pub observer_ms: u64,
    /// Observed values of the expectation's requirements.
    pub facts: BTreeMap<String, String>,
    /// This side's end of the flow, where the release axis applies.
    pub release: Option<Release>,
    /// The wake-up lateness the implementation's own process measured at
    /// its timer, when it reports one (kaspec's own servers log it): the
    /// probe in this process cannot see another process woken late.
    pub process_wake_ms: u64,
}

/// One side's measurement, for [`RunFacts::both_sides`].
pub struct Side {
    pub expected: Expectation,
    pub detected_at: Option<Instant>,
    pub error: Option<String>,
    pub deadline_ms: u64,
    pub observer_ms: u64,
    pub facts: BTreeMap<String, String>,
    /// See [`SideOutcome::process_wake_ms`].
    pub process_wake_ms: u64,
}

impl Side {
    /// A side whose detection is its library's own event.
    pub fn library(
        expected: Expectation,
        detected_at: Option<Instant>,
        error: Option<String>,
        deadline_ms: u64,
    ) -> Side {
        Side {
            expected,
            detected_at,
            error,
            deadline_ms,
            observer_ms: LIBRARY_EVENT_MS,
            facts: BTreeMap::new(),
            process_wake_ms: 0,
        }
    }

    /// A side whose detection is its socket leaving ESTABLISHED (sock_diag).
    pub fn from_socket(
        expected: Expectation,
        closed: Option<SocketClosed>,
        deadline_ms: u64,
        whose: &str,
    ) -> Side {
        let error = closed
            .as_ref()
            .map(|c| format!("{whose} socket left ESTABLISHED: {}", c.state));
        Side::observed(expected, closed.as_ref(), error, deadline_ms)
    }

    /// A side whose detection is its socket's close (sock_diag), with the
    /// error text the case puts together.
    pub fn observed(
        expected: Expectation,
        closed: Option<&SocketClosed>,
        error: Option<String>,
        deadline_ms: u64,
    ) -> Side {
        Side {
            expected,
            detected_at: closed.map(|c| c.at),
            error,
            deadline_ms,
            observer_ms: closed
                .map(|c| c.resolution_ms())
                .unwrap_or(kaspec_harness::observe::POLL_PERIOD.as_millis() as u64),
            facts: BTreeMap::new(),
            process_wake_ms: 0,
        }
    }

    /// This side, with `what` observed as `value` (for the expectation's
    /// requirements).
    pub fn with_fact(mut self, what: impl Into<String>, value: impl Into<String>) -> Side {
        self.facts.insert(what.into(), value.into());
        self
    }

    /// This side, with the timer lateness its own process reported.
    pub fn with_process_wake(mut self, ms: Option<u64>) -> Side {
        self.process_wake_ms = ms.unwrap_or(0);
        self
    }
}

/// What one case run shares between its sides.
pub struct RunFacts<'a> {
    pub case: &'a CaseDef,
    pub fault: FaultKind,
    pub engine: String,
    /// How long the fault took from its request to being in force (the
    /// budget's first term).
    pub commit_ms: u64,
    pub config: BTreeMap<String, String>,
    pub t0: Instant,
    /// Events before judging (last activity, probes seen, ...).
    pub timeline: Vec<(Instant, String)>,
    /// The flow's sockets at the end of the case (see [`releases`]).
    pub release: Releases,
}

impl<'a> RunFacts<'a> {
    /// The facts of a NAT case: t0 is the mapping's expiry, which no rule
    /// commits (conntrack forgets the flow within a jiffy of its timeout,
    /// the budget's commit term), and the run's N joins the configuration.
    pub fn at_nat_expiry(
        case: &'a CaseDef,
        fault: FaultKind,
        nat: std::time::Duration,
        mut config: BTreeMap<String, String>,
        t0: Instant,
        timeline: Vec<(Instant, String)>,
        release: Releases,
    ) -> Self {
        config.insert(
            "network.nat_idle_timeout".into(),
            format!("{}ms", nat.as_millis()),
        );
        RunFacts {
            case,
            fault,
            engine: fault.engine().into(),
            commit_ms: crate::model::linux::jiffy_ms(),
            config,
            t0,
            timeline,
            release,
        }
    }
}

/// Under the client's own situations the client is what failed: its side
/// is reported, not judged, and says why. A crashed client's own close is the
/// crash, not a detection; a stalled client's library event, if any (a
/// background heartbeat that runs on while the application stalls), stays
/// in the result as information.
pub fn client_in_situation(fault: FaultKind, client: Side) -> Side {
    let (why, note, detected_at) = match fault {
        FaultKind::ClientCrash => (
            "the client crashed: nothing is left on that side to detect anything",
            "the case dropped the client's connection after the path was blackholed; its FIN died at the router",
            None,
        ),
        FaultKind::ClientStall => (
            "the client application stalled (it no longer polls its connection): it is not judged on detection",
            "the client application stopped polling at the fault; its runtime and kernel stayed up",
            client.detected_at,
        ),
        _ => return client,
    };
    let error = match client.error {
        Some(e) if detected_at.is_some() => {
            Some(format!("{note}; its library still reported: {e}"))
        }
        _ => Some(note.into()),
    };
    Side {
        expected: Expectation::not_applicable(why, client.expected.spec),
        detected_at,
        error,
        ..client
    }
}

/// The flow's sockets at the end of a case (the second verdict axis).
pub use kaspec_harness::observe::release::{releases, Releases};

/// The commit term of a fault applied at an instant.
pub fn commit_ms(applied: &AppliedFault) -> u64 {
    (applied.in_force_at - applied.requested_at)
        .as_micros()
        .div_ceil(1000) as u64
}

impl RunFacts<'_> {
    /// The client's and the server's results of one run.
    pub fn both_sides(
        &self,
        client_impl: Implementation,
        server_impl: Implementation,
        client: Side,
        mut server: Side,
        judging: &Judging<'_>,
    ) -> Result<Vec<CaseResult>> {
        let client = client_in_situation(self.fault, client);
        let crashed = self.fault == FaultKind::Crash;
        if crashed {
            // The server's socket closed because its process was killed: that
            // is the crash itself, not a detection.
            server = Side {
                expected: Expectation::not_applicable("the server crashed: nothing is left on that side to detect anything", server.expected.spec),
                detected_at: None,
                error: Some("server process killed after the path was blackholed; its kernel's FIN/RST died at the router".into()),
                ..server
            };
        }
        // The release axis: a live peer (delay, loss) or a frozen one keeps
        // its end open by design, and the axis does not apply. The client's
        // end counts once its library reported the failure (otherwise kaspec
        // closed it at the end of the case); the server's end always, unless
        // the server was killed.
        let applies = !self.fault.peer_alive() && self.fault != FaultKind::Freeze;
        let client_release = self
            .release
            .client
            .clone()
            .filter(|_| applies && client.detected_at.is_some());
        let server_release = self.release.server.clone().filter(|_| applies && !crashed);
        Ok(vec![
            self.result(
                self.outcome(
                    "client",
                    client_impl.clone(),
                    server_impl.clone(),
                    client,
                    client_release,
                ),
                judging,
            )?,
            self.result(
                self.outcome("server", server_impl, client_impl, server, server_release),
                judging,
            )?,
        ])
    }

    /// The result of a case that judges the client side only.
    pub fn client_only(
        &self,
        implementation: Implementation,
        peer: Implementation,
        client: Side,
        judging: &Judging<'_>,
    ) -> Result<Vec<CaseResult>> {
        Ok(vec![self.result(
            self.outcome("client", implementation, peer, client, None),
            judging,
        )?])
    }

    /// One side's measurement with its implementations, for
    /// [`result`](Self::result) (a case with more than two sides).
    pub fn outcome(
        &self,
        side: &'static str,
        implementation: Implementation,
        peer: Implementation,
        s: Side,
        release: Option<Release>,
    ) -> SideOutcome {
        SideOutcome {
            side,
            implementation,
            peer,
            expected: s.expected,
            detected_at: s.detected_at,
            error: s.error,
            deadline_ms: s.deadline_ms,
            observer_ms: s.observer_ms,
            facts: s.facts,
            release,
            process_wake_ms: s.process_wake_ms,
        }
    }

    /// Judges one side and builds its result. A detection before the fault
    /// was requested is a harness error.
    pub fn result(&self, mut o: SideOutcome, judging: &Judging<'_>) -> Result<CaseResult> {
        if judging.shift_ms != 0 {
            o.expected = o.expected.shifted(judging.shift_ms);
            o.expected.formula = format!(
                "{} [shifted by {:+} ms for a test]",
                o.expected.formula, judging.shift_ms
            );
        }
        // Event timestamping: the worst wake-up lateness at the instants the
        // result is made of — the anchors before the fault, the fault in
        // force, and the detection — each stamped by a thread that may have
        // woken late (a window of 50 ms before each instant up to it).
        let around = |at: Instant| {
            kaspec_harness::wake::lateness_ms(
                at - std::time::Duration::from_millis(50),
                at + std::time::Duration::from_millis(1),
            )
        };
        let anchors = self
            .timeline
            .iter()
            .filter(|(t, _)| *t <= self.t0)
            .map(|(t, _)| *t)
            .max();
        let wake_ms = [Some(self.t0), anchors, o.detected_at]
            .into_iter()
            .flatten()
            .map(around)
            .chain([o.process_wake_ms])
            .max()
            .unwrap_or(0);
        let budget = Budget {
            fault_commit_ms: self.commit_ms,
            observer_ms: o.observer_ms,
            wake_ms,
        };
        let detection = o.detected_at.map(|t| rel_ms(self.t0, t));
        let obs = Observation {
            detection_ms: detection,
            deadline_ms: o.deadline_ms,
            facts: o.facts,
            release: o.release.clone(),
            budget,
        };
        let j: Judged = judge(&o.expected, &obs)
            .map_err(|e| Error::Other(format!("{} {} side: {e}", self.case.id, o.side)))?;
        // A detection within the fault's commit is shown at 0: it happened
        // while the rule was being committed.
        let detection_ms = detection.map(|d| d.max(0) as u64);
        let mut timeline: Vec<(Instant, String)> = self.timeline.clone();
        timeline.push((self.t0, format!("fault {} in force", self.fault)));
        if let Some(t) = o.detected_at {
            timeline.push((t, format!("{} side detected", o.side)));
        }
        timeline.sort_by_key(|(t, _)| *t);
        let known_deviation = (j.verdict == kaspec_harness::expect::Verdict::Fail)
            .then(|| {
                crate::deviations::explain(
                    judging.deviations,
                    &crate::deviations::Seen {
                        case: self.case.id,
                        side: o.side,
                        implementation: &o.implementation.name,
                        fault: self.fault.name(),
                        error: o.error.as_deref(),
                        budget_ms: budget.total_ms(),
                    },
                    &o.expected,
                    detection_ms,
                )
            })
            .flatten();
        Ok(CaseResult {
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
            window_width_ms: o.expected.width_ms(),
            expected: o.expected,
            budget,
            tolerance_ms: None,
            verdict: j.verdict,
            verdict_detail: j.detail,
            checks: j.checks,
            known_deviation,
            error: o.error,
            timeline: timeline
                .into_iter()
                .map(|(t, what)| Event {
                    t_ms: rel_ms(self.t0, t),
                    what,
                })
                .collect(),
            repeat: None,
            release: o.release,
            release_verdict: j.release,
            release_detail: j.release_detail,
            fleet: None,
            curve: None,
        })
    }
}

/// For cases that take `delay`/`loss`: what the impairment engine did, as a
/// timeline event; an error if it stopped working during the case.
pub fn impairment_event(
    tb: &kaspec_harness::testbed::Testbed,
) -> kaspec_harness::Result<Option<(Instant, String)>> {
    Ok(tb.impairment_report()?.map(|s| (Instant::now(), s)))
}
