//! Testbeds: hosts and the links between them, as a [`Topology`] describes
//! them, built for one case and removed when dropped. The usual one is
//! [`DIRECT`]: three hosts — client, router, server; [`PROXY`] puts a proxy
//! host between two routers, so each keep-alive level has its own path.
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
//! - [`topology`]: the descriptions of hosts and links;
//! - `link.rs`: namespaces and veth links, built from the description;
//! - `nat.rs`: the router as a real masquerading NAT (conntrack timeout policy);
//! - [`docker`]: the `docker` backend, whose server host is a container of the
//!   compose stack ([`compose`] reads the stack through the Docker Engine API).
//!   Everything that differs between the backends is in [`docker::ServerHost`].

pub mod compose;
pub mod docker;
mod link;
mod nat;
pub mod topology;

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
pub use topology::{Topology, DIRECT, PROXY, PROXY_HOST, ROUTER, UPSTREAM_ROUTER};

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

/// The hosts of a topology and each router's fault point. Dropping it
/// removes all of it (unless `KASPEC_KEEP=1`).
pub struct Testbed {
    pub tag: String,
    pub client: Host,
    /// The client-side router (the only one of [`DIRECT`]).
    pub router: Host,
    pub server: Host,
    /// What was built.
    topology: &'static Topology,
    /// The topology's hosts besides client, router and server, by role.
    others: Vec<(&'static str, Host)>,
    /// The fault points of the routers after the first, by role.
    more_faults: Vec<(&'static str, FaultPoint)>,
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
        Self::build_new(run_dir, nat_idle_timeout, None, &DIRECT)
    }

    /// The hosts and links of `topology` (netns only, no NAT): [`PROXY`]
    /// for the two-level cases. Each router has its fault point
    /// ([`apply_fault_at`](Self::apply_fault_at)).
    pub fn with_topology(run_dir: &Path, topology: &'static Topology) -> Result<Testbed> {
        topology.check().map_err(Error::Other)?;
        Self::build_new(run_dir, None, None, topology)
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
        Self::build_new(run_dir, nat_idle_timeout, Some((stack, container)), &DIRECT)
    }

    fn build_new(
        run_dir: &Path,
        nat_idle_timeout: Option<Duration>,
        docker: Option<(&compose::Stack, compose::Container)>,
        topology: &'static Topology,
    ) -> Result<Testbed> {
        caps::require_base()?;
        if cleanup::interrupted() {
            return Err(Error::Other("interrupted: no new testbed".into()));
        }
        docker::register_cleanup();
        std::fs::create_dir_all(run_dir).map_err(|e| Error::io(format!("creating {}", run_dir.display()), e))?;
        if docker.is_some() && topology != &DIRECT {
            return Err(Error::Other(format!("the docker testbed builds only the direct topology, not {}", topology.name)));
        }
        let mk = |tag: &str, role: &str, addr| Host { ns: format!("{}{tag}-{role}", cleanup::NS_PREFIX), addr };
        let addr = |role: &str| topology.addr(role).unwrap_or(link::CLIENT_ADDR);
        // A tag another run (or a kept leftover) holds is never reused.
        let (tag, client, router, server, others) = (0..16)
            .map(|_| {
                let tag = new_tag();
                let c = mk(&tag, "client", addr("client"));
                let r = mk(&tag, ROUTER, addr(ROUTER));
                let (role, a) = match docker::server_role_and_addr(docker.as_ref().map(|(_, c)| c)) {
                    ("server", _) => ("server", addr("server")),
                    other => other,
                };
                let s = mk(&tag, role, a);
                let main = ["client", ROUTER, "server"];
                let others: Vec<_> = topology.hosts.iter().filter(|h| !main.contains(&h.role)).map(|h| (h.role, mk(&tag, h.role, addr(h.role)))).collect();
                (tag, c, r, s, others)
            })
            .find(|(tag, c, r, s, o)| {
                let mut all = vec![c.ns.clone(), r.ns.clone(), s.ns.clone()];
                all.extend(o.iter().map(|(_, h)| h.ns.clone()));
                cleanup::register(tag, all)
            })
            .ok_or_else(|| Error::Other("could not claim a free run tag".into()))?;
        let keep = std::env::var("KASPEC_KEEP").map(|v| v == "1").unwrap_or(false);
        let table = format!("kaspec_{tag}");
        let faults = FaultPoint::new(&router, &tag, &table, &link::router_if(&tag, 'c'), &link::router_if(&tag, 's'));
        let more_faults = topology
            .routers()
            .skip(1)
            .filter_map(|r| {
                let host = &others.iter().find(|(role, _)| *role == r)?.1;
                Some((r, FaultPoint::new(host, &tag, &table, &topology.router_if(&tag, r, 'c'), &topology.router_if(&tag, r, 's'))))
            })
            .collect();
        let mut tb = Testbed {
            table,
            tag,
            client,
            router,
            server,
            topology,
            others,
            more_faults,
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
        let netem = tb.caps.netem;
        tb.more_faults.iter_mut().for_each(|(_, f)| f.set_netem(netem));
        Ok(tb)
    }

    fn build(&self) -> Result<()> {
        self.build_links()?;
        for r in self.topology.routers() {
            let host = self.host(r).expect("a checked topology");
            host.exec("enabling forwarding on the router", "sysctl", &["-qw", "net.ipv4.ip_forward=1"], None)?;
        }
        self.faults.install()?;
        for (_, f) in &self.more_faults {
            f.install()?;
        }
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

    /// What this testbed was built from.
    pub fn topology(&self) -> &'static Topology {
        self.topology
    }

    /// Every host, in the topology's order (client first).
    pub fn hosts(&self) -> Vec<&Host> {
        self.topology.hosts.iter().filter_map(|h| self.host(h.role)).collect()
    }

    /// The host of `role` (`client`, `router`, `server`, `proxy`, `upstream-router`).
    pub fn host(&self, role: &str) -> Option<&Host> {
        match role {
            "client" => Some(&self.client),
            ROUTER => Some(&self.router),
            "server" => Some(&self.server),
            _ => self.others.iter().find(|(r, _)| *r == role).map(|(_, h)| h),
        }
    }

    /// The proxy host of [`PROXY`].
    pub fn proxy(&self) -> Option<&Host> {
        self.host(PROXY_HOST)
    }

    /// `host`'s address on its link to `router` (the proxy's source
    /// address towards the server: `addr_towards(PROXY_HOST, UPSTREAM_ROUTER)`).
    pub fn addr_towards(&self, host: &str, router: &str) -> Option<std::net::Ipv4Addr> {
        self.topology.addr_towards(host, router)
    }

    /// The fault point of the router `router` (an error naming the
    /// topology's routers when it has none of that name).
    pub fn fault_point_at(&self, router: &str) -> Result<&FaultPoint> {
        if router == ROUTER {
            return Ok(&self.faults);
        }
        self.more_faults.iter().find(|(r, _)| *r == router).map(|(_, f)| f).ok_or_else(|| {
            let names: Vec<_> = self.topology.routers().collect();
            Error::Other(format!("topology {} has no router `{router}` (routers: {})", self.topology.name, names.join(", ")))
        })
    }

    /// [`apply_fault`](Self::apply_fault) on the router `router`: only the
    /// flows crossing it are cut (`server_pid` is the process a freeze or
    /// crash stops: the proxy's for the client-side level).
    pub fn apply_fault_at(&self, router: &str, kind: FaultKind, flow: &Flow, server_pid: Option<u32>) -> Result<AppliedFault> {
        self.fault_point_at(router)?.apply(kind, flow, server_pid)
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
        let more: Vec<_> = self.more_faults.iter().map(|(_, f)| f.heal()).collect();
        let first = self.faults.heal();
        more.into_iter().fold(first, |acc, r| acc.and_then(|t| r.map(|u| t.max(u))))
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
        let mut more_faults = Vec::new();
        for (r, _) in &self.more_faults {
            let host = self.host(r).expect("a router of the topology");
            let mut f = FaultPoint::new(host, &self.tag, &table, &self.topology.router_if(&self.tag, r, 'c'), &self.topology.router_if(&self.tag, r, 's'));
            f.set_netem(self.caps.netem);
            f.install()?;
            more_faults.push((*r, f));
        }
        Ok(Testbed {
            tag: self.tag.clone(),
            client: self.client.clone(),
            router: self.router.clone(),
            server: self.server.clone(),
            topology: self.topology,
            others: self.others.clone(),
            more_faults,
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
        self.hosts().into_iter().map(|h| h.ns.clone()).collect()
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
            let _ = self.heal();
            let _ = self.faults.uninstall();
            self.more_faults.iter().for_each(|(_, f)| drop(f.uninstall()));
            return;
        }
        // Their sockets would keep the routers' namespaces (and the links
        // in them) alive after the names are removed.
        for f in std::iter::once(&self.faults).chain(self.more_faults.iter().map(|(_, f)| f)) {
            let _ = f.stop_impairment();
            f.thaw_frozen();
            f.close();
        }
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
