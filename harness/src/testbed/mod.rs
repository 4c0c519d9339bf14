//! Testbeds: three hosts — client, router, server — and the links between
//! them, built for one case and removed when dropped.
//!
//! ```text
//!  client 198.18.0.2/24 ── kc-TAG | kr-TAG-c 198.18.0.1   router   198.19.0.1 kr-TAG-s | ks-TAG ── server 198.19.0.2/24
//! ```
//!
//! Addresses come from 198.18.0.0/15 (RFC 2544, set aside for benchmarking).
//! Every testbed has namespaces of its own, so testbeds can reuse the same
//! addresses and run side by side. Nothing is created in the root namespace:
//! the veth pairs are created inside the router with their peer moved straight
//! into the endpoint, and the fault table lives in the router.
//!
//! - this file: [`Testbed`], its life cycle (tag, build, drop) and the
//!   router's [`FaultPoint`] it hands faults to;
//! - `link.rs`: namespaces and veth links;
//! - `nat.rs`: the router as a real masquerading NAT (conntrack timeout policy);
//! - [`docker`]: the `docker` backend, whose server host is a container of the
//!   compose stack ([`compose`] reads the stack through the Docker Engine API).
//!   Everything that differs between the backends is in [`docker::ServerHost`].

pub mod compose;
pub mod docker;
mod link;
mod nat;

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::caps::{self, Capabilities};
use crate::cleanup;
use crate::fault::impair::{Engine, Impairment};
use crate::fault::{AppliedFault, FaultKind, FaultPoint, Flow};
use crate::host::Host;
use crate::{Error, Result};
pub use docker::{DockerPath, ServerHost, ATTACHED_ROLE};

/// A short tag that names every resource of one testbed (6 hex digits).
pub fn new_tag() -> String {
    // Every testbed starts the wake-up probe, so the budget's timestamping
    // term is measured from before the first fault.
    crate::wake::ensure_running();
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    format!("{:06x}", h.finish() & 0xff_ffff)
}

/// Three hosts and the router's fault point. Dropping it removes all of it
/// (unless `KASPEC_KEEP=1`).
pub struct Testbed {
    pub tag: String,
    pub client: Host,
    pub router: Host,
    pub server: Host,
    /// Where server logs of this testbed go.
    pub run_dir: PathBuf,
    caps: Capabilities,
    table: String,
    keep: bool,
    /// The router masquerades and forgets idle TCP flows after this.
    pub nat_idle_timeout: Option<Duration>,
    faults: FaultPoint,
    /// What the server host is: a namespace of ours, or (the `docker`
    /// testbed) a container of the compose stack reached through the
    /// router's link on the compose bridge.
    server_host: ServerHost,
    /// A [`view`](Self::view) of another testbed: it owns only its fault table.
    is_view: bool,
}

impl Testbed {
    /// Builds the three namespaces and links. `run_dir` receives server logs.
    pub fn new(run_dir: &Path) -> Result<Testbed> {
        Self::with_nat(run_dir, None)
    }

    /// Like [`new`](Self::new), with the router doing real masquerading NAT
    /// whose established-TCP idle timeout is `nat_idle_timeout` (a conntrack
    /// timeout policy): a flow idle that long is forgotten, and its later
    /// packets are dropped as a real NAT drops them (conntrack's loose
    /// pick-up is off, so they are INVALID; the router does not answer them).
    pub fn with_nat(run_dir: &Path, nat_idle_timeout: Option<Duration>) -> Result<Testbed> {
        Self::build_new(run_dir, nat_idle_timeout, None)
    }

    /// The `docker` testbed for `service` of `stack`: client and router
    /// namespaces as in the netns testbed; the router's server-side link is
    /// a veth whose other end (`kb-TAG`, in this host's root namespace) is
    /// a port of the compose network's bridge, with an address of that
    /// network (from the top of its subnet, claimed under
    /// [`docker::CLAIM_DIR`]). The router masquerades towards the
    /// bridge. The server host is the container's own namespace, attached
    /// as `kaspec-TAG-ctr`. Faults and impairments are the netns testbed's,
    /// on the router's forward path.
    pub fn docker(run_dir: &Path, nat_idle_timeout: Option<Duration>, stack: &compose::Stack, service: &str) -> Result<Testbed> {
        let container = stack.container(service)?;
        Self::build_new(run_dir, nat_idle_timeout, Some((stack, container)))
    }

    fn build_new(run_dir: &Path, nat_idle_timeout: Option<Duration>, docker: Option<(&compose::Stack, compose::Container)>) -> Result<Testbed> {
        caps::require_base()?;
        if cleanup::interrupted() {
            return Err(Error::Other("interrupted: no new testbed".into()));
        }
        docker::register_cleanup();
        std::fs::create_dir_all(run_dir).map_err(|e| Error::io(format!("creating {}", run_dir.display()), e))?;
        let mk = |tag: &str, role: &str, addr| Host { ns: format!("{}{tag}-{role}", cleanup::NS_PREFIX), addr };
        // A tag another run (or a kept leftover) holds is never reused.
        let (tag, client, router, server) = (0..16)
            .map(|_| {
                let tag = new_tag();
                let c = mk(&tag, "client", link::CLIENT_ADDR);
                let r = mk(&tag, "router", link::ROUTER_CLIENT_SIDE);
                let (role, addr) = docker::server_role_and_addr(docker.as_ref().map(|(_, c)| c));
                let s = mk(&tag, role, addr);
                (tag, c, r, s)
            })
            .find(|(tag, c, r, s)| cleanup::register(tag, vec![c.ns.clone(), r.ns.clone(), s.ns.clone()]))
            .ok_or_else(|| Error::Other("could not claim a free run tag".into()))?;
        let keep = std::env::var("KASPEC_KEEP").map(|v| v == "1").unwrap_or(false);
        let table = format!("kaspec_{tag}");
        let faults = FaultPoint::new(&router, &tag, &table, &link::router_if(&tag, 'c'), &link::router_if(&tag, 's'));
        let mut tb = Testbed {
            table,
            tag,
            client,
            router,
            server,
            run_dir: run_dir.to_path_buf(),
            caps: Capabilities::default(),
            keep,
            faults,
            nat_idle_timeout,
            server_host: ServerHost::Netns,
            is_view: false,
        };
        if let Some((stack, container)) = docker {
            tb.server_host = ServerHost::Docker(Box::new(DockerPath::claim(stack, container, &tb.tag)?));
        }
        // On error, `tb` drops here and removes whatever was built.
        tb.build()?;
        tb.caps = caps::detect(&tb.router);
        tb.faults.set_netem(tb.caps.netem);
        Ok(tb)
    }

    fn build(&self) -> Result<()> {
        self.build_links()?;
        self.router.exec("enabling forwarding on the router", "sysctl", &["-qw", "net.ipv4.ip_forward=1"], None)?;
        self.faults.install()?;
        if let Some(n) = self.nat_idle_timeout {
            self.build_nat(n)?;
        } else if self.is_docker() {
            self.masquerade()?;
        }
        Ok(())
    }

    /// How the server sees a client endpoint: through the NAT, as the
    /// router's address (masquerade keeps the port when it is free).
    pub fn seen_by_server(&self, client: SocketAddrV4) -> SocketAddrV4 {
        self.server_host.seen_by_server(client, self.nat_idle_timeout.is_some())
    }

    /// The port the server listens on: `default` on the netns testbed, the
    /// container's `org.kaspec.port` on the docker testbed.
    pub fn server_port(&self, default: u16) -> u16 {
        self.server_host.server_port(default)
    }

    /// `netns`, or `docker` with the container.
    pub fn kind(&self) -> String {
        self.server_host.kind()
    }

    /// Whether this is the `docker` testbed (its server host a container).
    pub fn is_docker(&self) -> bool {
        self.docker_path().is_some()
    }

    /// How the `docker` testbed reaches its container (`None` on netns).
    pub fn docker_path(&self) -> Option<&DockerPath> {
        self.server_host.docker_path()
    }

    /// What the server host is.
    pub fn server_host(&self) -> &ServerHost {
        &self.server_host
    }

    /// What the kernel offers (detected once per process in a router namespace).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The router's fault point.
    pub fn fault_point(&self) -> &FaultPoint {
        &self.faults
    }

    /// Sets what the `delay` and `loss` faults apply (else their defaults:
    /// 300 ms round trip; 2% loss).
    pub fn set_impairments(&self, delay: Impairment, loss: Impairment) {
        self.faults.set_impairments(delay, loss)
    }

    /// What `kind` (delay or loss) applies on this testbed.
    pub fn impairment_for(&self, kind: FaultKind) -> Option<Impairment> {
        self.faults.impairment_for(kind)
    }

    /// The impairment engine this kernel allows.
    pub fn impair_engine(&self) -> Engine {
        self.faults.impair_engine()
    }

    /// Applies `kind`: nftables faults to `flow` on the router's forward path,
    /// `freeze` to the server process `server_pid`. Returns once the fault is
    /// in force (rule committed, signal delivered); `in_force_at` is taken then.
    pub fn apply_fault(&self, kind: FaultKind, flow: &Flow, server_pid: Option<u32>) -> Result<AppliedFault> {
        self.faults.apply(kind, flow, server_pid)
    }

    /// Makes the server host forget the flow, as a host that rebooted has:
    /// its sockets for the flow are destroyed (sock_diag SOCK_DESTROY, `ss -K`),
    /// so the next segment from the client is answered with RST once the
    /// path returns. Only sockets of this testbed's server namespace.
    pub fn forget_on_server(&self, flow: &Flow) -> Result<()> {
        let seen = self.seen_by_server(flow.client);
        let dst = format!("{}:{}", seen.ip(), seen.port());
        let ss = |context: &str, extra: &[&str]| {
            let mut args = extra.to_vec();
            args.extend_from_slice(&["dst", dst.as_str()]);
            self.server.exec(context, "ss", &args, None)
        };
        ss("destroying the server host's sockets of the flow", &["-K", "-H", "-tn", "state", "all"])?;
        let left = ss("checking the server host forgot the flow", &["-H", "-tn", "state", "all"])?;
        if left.lines().any(|l| !l.trim().is_empty()) {
            return Err(Error::Other(format!(
                "the server host still has sockets of the flow after SOCK_DESTROY (kernel without CONFIG_INET_DIAG_DESTROY?): {}",
                left.trim()
            )));
        }
        Ok(())
    }

    /// Removes every fault rule: the path works again.
    /// Every step runs even when one fails (a frozen server is always
    /// continued); the first error is returned.
    pub fn heal(&self) -> Result<Instant> {
        self.faults.heal()
    }

    /// After a case watched a `delay` or `loss` fault: an error if the
    /// impairment engine stopped working meanwhile (its result would not be
    /// a measurement of that path), else what it did (for the timeline).
    pub fn impairment_report(&self) -> Result<Option<String>> {
        self.faults.impairment_report()
    }

    /// A view of this testbed for one of several cases that use it at once
    /// (the leases of a shared server): the same hosts, server host and
    /// impairments, with a fault table of its own on the router,
    /// `kaspec_TAG_ID` (its `faults` chain on the forward hook, like the
    /// testbed's). Its faults go there and its [`heal`](Self::heal)
    /// flushes only that chain, so the cases' rules — each matching its
    /// own flow — never touch each other's; a packet is dropped when any
    /// table's forward chain drops it. Dropping the view heals it (a frozen
    /// server is continued) and deletes its table; the namespaces stay with
    /// the testbed. `id` must be unique among the testbed's views alive at once.
    pub fn view(&self, id: usize) -> Result<Testbed> {
        let table = format!("{}_{id}", self.table);
        let mut faults = FaultPoint::new(&self.router, &self.tag, &table, &link::router_if(&self.tag, 'c'), &link::router_if(&self.tag, 's'));
        faults.set_netem(self.caps.netem);
        if let (Some(d), Some(l)) = (self.impairment_for(FaultKind::Delay), self.impairment_for(FaultKind::Loss)) {
            faults.set_impairments(d, l);
        }
        faults.install()?;
        Ok(Testbed {
            tag: self.tag.clone(),
            client: self.client.clone(),
            router: self.router.clone(),
            server: self.server.clone(),
            run_dir: self.run_dir.clone(),
            caps: self.caps.clone(),
            table,
            keep: self.keep,
            nat_idle_timeout: self.nat_idle_timeout,
            faults,
            server_host: self.server_host.clone(),
            is_view: true,
        })
    }

    /// The namespaces of this testbed.
    pub fn namespaces(&self) -> Vec<String> {
        vec![self.client.ns.clone(), self.router.ns.clone(), self.server.ns.clone()]
    }
}

/// `kaspec clean`: [`cleanup::clean_leftovers`] with every testbed
/// backend's clean-up registered first (a `kaspec clean` process has built
/// no testbed that would have registered them).
pub fn clean_leftovers() -> cleanup::CleanReport {
    docker::register_cleanup();
    cleanup::clean_leftovers()
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if self.is_view {
            // Its own rules only; the testbed's namespaces are not its to remove.
            let _ = self.faults.heal();
            let _ = self.faults.uninstall();
            return;
        }
        let _ = self.faults.stop_impairment();
        self.faults.thaw_frozen();
        // Its socket would keep the router's namespace (and the links in it)
        // alive after the name is removed.
        self.faults.close();
        if self.keep {
            eprintln!("kaspec: KASPEC_KEEP=1, keeping testbed {} ({}); `kaspec clean` removes it", self.tag, self.namespaces().join(", "));
            cleanup::unregister(&self.tag);
            return;
        }
        let left = cleanup::remove_namespaces(&self.namespaces());
        if !left.is_empty() {
            eprintln!("kaspec: could not remove namespace(s) {}; run `kaspec clean`", left.join(", "));
        }
        cleanup::release_registered(&self.tag);
        cleanup::unregister(&self.tag);
    }
}
