//! The row type of every case table, and what a protocol registers.
//!
//! A case is one row in its protocol's `mod.rs`: id, spec reference with the
//! quoted normative sentence, what it does, the requirement, the faults it
//! takes, where it runs on the docker testbed, how to run it and how long it
//! may take. Nothing here knows any protocol (see `registry.rs`).

use std::time::Duration;

use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;

use crate::ctx::Ctx;

/// One case. Its id is permanent: `<protocol>/<spec>-<section>/<n>`.
pub struct CaseDef {
    pub id: &'static str,
    pub protocol: &'static str,
    /// Where the requirement comes from, e.g. `RFC 1122 §4.2.3.6`.
    pub spec: &'static str,
    /// The normative sentence the case checks, quoted from `spec`.
    pub quote: &'static str,
    /// One line: what the case does.
    pub description: &'static str,
    /// The requirement it checks.
    pub requirement: &'static str,
    /// Faults this case can take; any other is reported `unsupported`.
    pub faults: &'static [FaultKind],
    /// A case whose scenario *is* its fault (a frozen peer, or none at all)
    /// runs once with it, whatever `--fault` says.
    pub fixed_fault: Option<FaultKind>,
    /// Where the case runs on the docker testbed.
    pub docker: Docker,
    pub run: fn(&Ctx, &CaseDef, FaultKind) -> kaspec_harness::Result<Vec<CaseResult>>,
    /// The longest one run of the case may take with this configuration and
    /// network (for progress output and `validate`'s limit; each wait inside
    /// has its own deadline).
    pub budget: fn(&Ctx) -> Duration,
}

/// Where a case runs on the `docker` testbed.
///
/// A case runs there when its server is a service of docker-compose.yml
/// running with the one configuration of fixtures/ (the case checks that,
/// see [`kaspec_harness::server::ContainerCheck`]); the others need a server
/// configured per case or a different path, and say why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Docker {
    /// Against the container labelled `org.kaspec.service = service`;
    /// `implementation` is the server's name in the case's results (its
    /// version becomes the image's).
    Service {
        service: &'static str,
        implementation: &'static str,
    },
    /// Against several containers, one after another: a case that runs
    /// once per server (the HTTP cases), each `(service, implementation)`
    /// as in [`Docker::Service`].
    Services(&'static [(&'static str, &'static str)]),
    /// Not on the docker testbed, and why.
    NotHere(&'static str),
}

impl Docker {
    /// The `(service, implementation)` pairs it runs against (none: not there).
    pub fn services(&self) -> Vec<(&'static str, &'static str)> {
        match *self {
            Docker::Service {
                service,
                implementation,
            } => vec![(service, implementation)],
            Docker::Services(s) => s.to_vec(),
            Docker::NotHere(_) => Vec::new(),
        }
    }
}

impl CaseDef {
    /// Why this case under `fault` does not run on the docker testbed, if it does not.
    pub fn not_on_docker(&self, fault: FaultKind) -> Option<String> {
        match self.docker {
            Docker::NotHere(why) => Some(format!("not on the docker testbed: {why}")),
            Docker::Service { .. } | Docker::Services(_) if fault == FaultKind::Crash => Some(
                "crash is not applied on the docker testbed: kaspec does not kill containers compose owns (it would have to restart them)".into(),
            ),
            Docker::Service { .. } | Docker::Services(_) => None,
        }
    }

    /// Whether the case takes `fault` at all.
    pub fn takes(&self, fault: FaultKind) -> bool {
        self.fixed_fault == Some(fault) || self.faults.contains(&fault)
    }
}
