//! What a case run needs besides the testbed it builds: the configuration,
//! the run folder, the network profile, shared servers, and the testbeds
//! each kind of case asks for.

use std::path::PathBuf;
use std::time::Duration;

use kaspec_harness::fault::FaultKind;

use crate::config::Config;
use crate::deviations::Deviation;

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
    /// Test-only: shift every window by this many ms before judging, to show
    /// that a verdict can fail (0 in every real run).
    pub shift_window_ms: i64,
    /// The path (`--network`); its NAT idle timeout drives the nat-expiry cases.
    pub network: crate::network::NetworkProfile,
    /// Servers started once per run and shared by its cases (RabbitMQ, PostgreSQL).
    pub shared: crate::shared::Shared,
    /// `--testbed docker`: the compose stack whose containers are the
    /// servers (None: the netns testbed, servers started by kaspec).
    pub docker: Option<kaspec_harness::testbed::compose::Stack>,
    /// `--client FILE`: the external client its cases run in place of their
    /// library client (None: the library's).
    pub client: Option<std::sync::Arc<crate::config::adapter::Adapter>>,
}

/// What the judge gets besides one observation: the documented deviations
/// and the test-only window shift.
pub struct Judging<'a> {
    pub deviations: &'a [Deviation],
    pub shift_ms: i64,
}

impl Ctx {
    pub fn judging(&self) -> Judging<'_> {
        Judging {
            deviations: &self.deviations,
            shift_ms: self.shift_window_ms,
        }
    }

    /// What `delay` and `loss` apply: the network profile's round trip,
    /// jitter and loss where it sets them, else the defaults (300 ms; 2%).
    pub fn impairments(
        &self,
    ) -> (
        kaspec_harness::fault::impair::Impairment,
        kaspec_harness::fault::impair::Impairment,
    ) {
        let (mut delay, mut loss) = kaspec_harness::fault::impair::defaults();
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
    pub fn testbed(&self) -> kaspec_harness::Result<kaspec_harness::testbed::Testbed> {
        let tb = kaspec_harness::testbed::Testbed::new(&self.run_dir)?;
        let (d, l) = self.impairments();
        tb.set_impairments(d, l);
        Ok(tb)
    }

    /// On the docker testbed, the version results give `service`'s server:
    /// the version its image states, and the image (`None` on netns, or
    /// with no such container).
    pub fn image_version(&self, service: &str) -> Option<String> {
        let c = self.docker.as_ref()?.containers.get(service)?;
        Some(format!(
            "{} (image {})",
            c.version
                .as_deref()
                .unwrap_or("version not stated by the image"),
            c.image
        ))
    }

    /// The testbed of a case whose server is `service` of docker-compose.yml:
    /// on the docker testbed its container, else a fresh netns testbed.
    pub fn testbed_for(
        &self,
        service: &str,
    ) -> kaspec_harness::Result<kaspec_harness::testbed::Testbed> {
        let Some(stack) = &self.docker else {
            return self.testbed();
        };
        let tb = kaspec_harness::testbed::Testbed::docker(&self.run_dir, None, stack, service)?;
        let (d, l) = self.impairments();
        tb.set_impairments(d, l);
        Ok(tb)
    }

    /// The testbed of a NAT case (the router forgets idle TCP flows after
    /// `nat`) whose server is `service` of docker-compose.yml: on the docker
    /// testbed its container behind the router's NAT, else a fresh netns one.
    pub fn testbed_with_nat(
        &self,
        service: &str,
        nat: Duration,
    ) -> kaspec_harness::Result<kaspec_harness::testbed::Testbed> {
        match &self.docker {
            None => kaspec_harness::testbed::Testbed::with_nat(&self.run_dir, Some(nat)),
            Some(stack) => {
                kaspec_harness::testbed::Testbed::docker(&self.run_dir, Some(nat), stack, service)
            }
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
    pub fn impairment(
        &self,
        fault: FaultKind,
    ) -> Option<kaspec_harness::fault::impair::Impairment> {
        let (d, l) = self.impairments();
        match fault {
            FaultKind::Delay => Some(d),
            FaultKind::Loss => Some(l),
            _ => None,
        }
    }
}
