//! The `netns` testbed: three hosts — client, router, server — as Linux
//! network namespaces joined by veth pairs.
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

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use nix::sched::{setns, CloneFlags};

use crate::caps::{self, Capabilities};
use crate::cleanup;
use crate::cmd;
use crate::fault::{AppliedFault, FaultKind, Flow};
use crate::{Error, Result};

/// A short tag that names every resource of one testbed (6 hex digits).
pub fn new_tag() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    format!("{:06x}", h.finish() & 0xff_ffff)
}

/// One isolated network stack with an address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace name (`kaspec-TAG-ROLE`).
    pub ns: String,
    /// This host's address on its link.
    pub addr: Ipv4Addr,
}

impl Host {
    fn ns_file(&self) -> Result<File> {
        File::open(format!("/run/netns/{}", self.ns)).map_err(|e| Error::io(format!("opening namespace {}", self.ns), e))
    }

    /// Moves the calling thread into this host's namespace. Sockets the thread
    /// opens afterwards, and threads it spawns, live there.
    pub fn enter(&self) -> Result<()> {
        let f = self.ns_file()?;
        setns(f.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::io(format!("entering namespace {}", self.ns), e.into()))
    }

    /// Runs `f` on a new thread that lives in this host's namespace. Returns
    /// once the thread is inside (or failed to get there: then `f` never runs).
    pub fn spawn_thread<F, T>(&self, name: &str, f: F) -> Result<NsThread<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let host = self.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || match host.enter() {
                Ok(()) => {
                    let _ = tx.send(Ok(()));
                    Some(f())
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    None
                }
            })
            .map_err(|e| Error::io("spawning a namespace thread", e))?;
        rx.recv().map_err(|_| Error::Other(format!("thread for {} died before entering it", self.ns)))??;
        Ok(NsThread { handle, ns: self.ns.clone() })
    }

    /// Runs `f` to completion on a thread inside this namespace.
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_thread("kaspec-ns", f)?.join()
    }

    /// A command that will execute inside this namespace. The child gets
    /// SIGKILL if the thread that spawned it dies (PR_SET_PDEATHSIG), so a
    /// killed kaspec does not leave servers behind.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>, tag: &str) -> Result<Command> {
        self.command_as(program, tag, None)
    }

    /// Like [`command`](Self::command), run as `user` (uid, gid) when given:
    /// the namespace is entered first (that needs root), then the
    /// credentials are dropped.
    pub fn command_as(&self, program: impl AsRef<std::ffi::OsStr>, tag: &str, user: Option<(u32, u32)>) -> Result<Command> {
        let f = self.ns_file()?;
        let parent = std::process::id() as libc::pid_t;
        let mut c = Command::new(program);
        c.env("KASPEC_RUN_TAG", tag);
        unsafe {
            c.pre_exec(move || {
                setns(f.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                if let Some((uid, gid)) = user {
                    if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // kaspec died between fork and prctl: do not start orphaned.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("kaspec exited while starting the server"));
                }
                Ok(())
            });
        }
        Ok(c)
    }

    /// `ip -n NS args...`
    fn ip(&self, context: &str, args: &[&str]) -> Result<()> {
        let mut full = vec!["-n", self.ns.as_str()];
        full.extend_from_slice(args);
        cmd::run(context, "ip", &full, None).map(|_| ())
    }
}

/// A thread running inside a host's namespace.
pub struct NsThread<T> {
    handle: std::thread::JoinHandle<Option<T>>,
    ns: String,
}

impl<T> NsThread<T> {
    pub fn join(self) -> Result<T> {
        match self.handle.join() {
            Ok(Some(v)) => Ok(v),
            _ => Err(Error::Other(format!("a thread in namespace {} panicked", self.ns))),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
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
    pub nat_idle_timeout: Option<std::time::Duration>,
    faults: Mutex<Vec<AppliedFault>>,
    /// What the `delay` and `loss` faults do to the path.
    impairment: Mutex<Option<(crate::impair::Impairment, crate::impair::Impairment)>>,
    impaired: Mutex<Option<crate::impair::Running>>,
    /// The `docker` testbed: the server host is a container of the compose
    /// stack, reached through the router's link on the compose bridge.
    pub docker: Option<DockerPath>,
}

/// How a `docker` testbed reaches its container.
#[derive(Debug, Clone)]
pub struct DockerPath {
    /// The compose project.
    pub project: String,
    pub container: crate::docker::Container,
    pub network: crate::docker::BridgeNet,
    /// The router's address on the compose network: the server sees the
    /// client as this address (the router masquerades, so the container
    /// needs no route to the client's subnet and is not changed).
    pub router_addr: Ipv4Addr,
}

/// The server-side namespace name of a `docker` testbed: an attachment
/// (`ip netns attach`) of the container's own namespace, which removal only
/// unmounts (its processes are the container's, never killed by kaspec).
pub const ATTACHED_ROLE: &str = "ctr";

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
    pub fn with_nat(run_dir: &Path, nat_idle_timeout: Option<std::time::Duration>) -> Result<Testbed> {
        Self::build_new(run_dir, nat_idle_timeout, None)
    }

    /// The `docker` testbed for `service` of `stack`: client and router
    /// namespaces as in the netns testbed; the router's server-side link is
    /// a veth whose other end (`kb-TAG`, in this host's root namespace) is
    /// a port of the compose network's bridge, with an address of that
    /// network (from the top of its subnet, claimed under
    /// [`crate::docker::CLAIM_DIR`]). The router masquerades towards the
    /// bridge. The server host is the container's own namespace, attached
    /// as `kaspec-TAG-ctr`. Faults and impairments are the netns testbed's,
    /// on the router's forward path.
    pub fn docker(run_dir: &Path, nat_idle_timeout: Option<std::time::Duration>, stack: &crate::docker::Stack, service: &str) -> Result<Testbed> {
        let container = stack.container(service)?;
        Self::build_new(run_dir, nat_idle_timeout, Some((stack, container)))
    }

    fn build_new(
        run_dir: &Path,
        nat_idle_timeout: Option<std::time::Duration>,
        docker: Option<(&crate::docker::Stack, crate::docker::Container)>,
    ) -> Result<Testbed> {
        caps::require_base()?;
        if cleanup::interrupted() {
            return Err(Error::Other("interrupted: no new testbed".into()));
        }
        std::fs::create_dir_all(run_dir).map_err(|e| Error::io(format!("creating {}", run_dir.display()), e))?;
        let mk = |tag: &str, role: &str, addr: Ipv4Addr| Host { ns: format!("{}{tag}-{role}", cleanup::NS_PREFIX), addr };
        // A tag another run (or a kept leftover) holds is never reused.
        let (tag, client, router, server) = (0..16)
            .map(|_| {
                let tag = new_tag();
                let c = mk(&tag, "client", Ipv4Addr::new(198, 18, 0, 2));
                let r = mk(&tag, "router", Ipv4Addr::new(198, 18, 0, 1));
                let s = match &docker {
                    None => mk(&tag, "server", Ipv4Addr::new(198, 19, 0, 2)),
                    Some((_, c)) => mk(&tag, ATTACHED_ROLE, c.ip),
                };
                (tag, c, r, s)
            })
            .find(|(tag, c, r, s)| cleanup::register(tag, vec![c.ns.clone(), r.ns.clone(), s.ns.clone()]))
            .ok_or_else(|| Error::Other("could not claim a free run tag".into()))?;
        let keep = std::env::var("KASPEC_KEEP").map(|v| v == "1").unwrap_or(false);
        let mut tb = Testbed {
            table: format!("kaspec_{tag}"),
            tag,
            client,
            router,
            server,
            run_dir: run_dir.to_path_buf(),
            caps: Capabilities::default(),
            keep,
            faults: Mutex::new(Vec::new()),
            impairment: Mutex::new(None),
            impaired: Mutex::new(None),
            nat_idle_timeout,
            docker: None,
        };
        if let Some((stack, container)) = docker {
            let router_addr = claim_router_addr(&stack.network, &tb.tag)?;
            tb.docker = Some(DockerPath { project: stack.project.clone(), container, network: stack.network.clone(), router_addr });
        }
        // On error, `tb` drops here and removes whatever was built.
        tb.build()?;
        tb.caps = caps::detect(&tb.router);
        Ok(tb)
    }

    fn build(&self) -> Result<()> {
        let t = &self.tag;
        let own: Vec<&Host> = match self.docker {
            None => vec![&self.client, &self.router, &self.server],
            Some(_) => vec![&self.client, &self.router],
        };
        for h in own {
            if cleanup::interrupted() {
                return Err(Error::Other("interrupted while building the testbed".into()));
            }
            cmd::run("creating a namespace", "ip", &["netns", "add", &h.ns], None)?;
            h.ip("bringing up lo", &["link", "set", "lo", "up"])?;
        }
        let (rc, cc, rs, ss) = (format!("kr-{t}-c"), format!("kc-{t}"), format!("kr-{t}-s"), format!("ks-{t}"));
        let mut links = vec![(&rc, &cc, &self.client, "198.18.0.1/24")];
        if self.docker.is_none() {
            links.push((&rs, &ss, &self.server, "198.19.0.1/24"));
        }
        for (r_if, peer_if, peer, r_addr) in links {
            self.router.ip("creating a veth pair", &["link", "add", r_if, "type", "veth", "peer", "name", peer_if, "netns", &peer.ns])?;
            self.router.ip("addressing the router", &["addr", "add", r_addr, "dev", r_if])?;
            self.router.ip("bringing up a link", &["link", "set", r_if, "up"])?;
            let gw = r_addr.split('/').next().unwrap_or_default();
            peer.ip("addressing a host", &["addr", "add", &format!("{}/24", peer.addr), "dev", peer_if])?;
            peer.ip("bringing up a link", &["link", "set", peer_if, "up"])?;
            peer.ip("adding the default route", &["route", "add", "default", "via", gw])?;
        }
        if let Some(d) = &self.docker {
            self.build_docker_link(d, &rs)?;
        }
        cmd::run(
            "enabling forwarding on the router",
            "ip",
            &["netns", "exec", &self.router.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
            None,
        )?;
        self.nft(
            "creating the fault table",
            &format!(
                "table inet {tb} {{\n  comment \"kaspec run {t}\"\n  chain faults {{\n    type filter hook forward priority 0; policy accept;\n  }}\n}}\n",
                tb = self.table
            ),
        )?;
        if let Some(n) = self.nat_idle_timeout {
            self.build_nat(n)?;
        } else if self.docker.is_some() {
            self.nft("masquerading towards the compose network", &self.masquerade())?;
        }
        Ok(())
    }

    /// The router's server-side link on the compose bridge, and the
    /// container's namespace attached as the server host.
    fn build_docker_link(&self, d: &DockerPath, rs: &str) -> Result<()> {
        let t = &self.tag;
        let kb = format!("kb-{t}");
        // The MAC follows the address: a container's ARP entry left from an
        // earlier run with this address stays right.
        let o = d.router_addr.octets();
        let mac = format!("02:6b:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
        let root = std::process::id().to_string();
        self.router.ip(
            "creating the router's link to the compose bridge",
            &["link", "add", rs, "address", &mac, "type", "veth", "peer", "name", &kb, "netns", &root],
        )?;
        cmd::run(
            "plugging the router into the compose bridge",
            "ip",
            &["link", "set", &kb, "master", &d.network.bridge, "up"],
            None,
        )?;
        self.router.ip("addressing the router", &["addr", "add", &format!("{}/{}", d.router_addr, d.network.prefix), "dev", rs])?;
        self.router.ip("bringing up a link", &["link", "set", rs, "up"])?;
        cmd::run(
            "attaching the container's namespace",
            "ip",
            &["netns", "attach", &self.server.ns, &d.container.pid.to_string()],
            None,
        )?;
        Ok(())
    }

    /// The router hides the client behind its own address towards the server.
    fn masquerade(&self) -> String {
        format!(
            "table inet {tb} {{\n  chain nat-masquerade {{\n    type nat hook postrouting priority srcnat; oifname \"kr-{t}-s\" masquerade;\n  }}\n}}\n",
            tb = self.table,
            t = self.tag
        )
    }

    fn build_nat(&self, idle: std::time::Duration) -> Result<()> {
        let secs = idle.as_secs().max(1);
        cmd::run(
            "making the router's conntrack strict (no mid-stream pick-up)",
            "ip",
            &["netns", "exec", &self.router.ns, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0"],
            None,
        )?;
        let t = &self.tag;
        self.nft(
            "setting up NAT on the router",
            &format!(
                "table inet {tb} {{\n\
                   ct timeout nat-idle {{\n    protocol tcp; l3proto ip;\n    policy = {{ established: {secs}, close_wait: {secs}, fin_wait: {secs}, last_ack: {secs} }};\n  }}\n\
                   chain nat-timeouts {{\n    type filter hook prerouting priority filter; ct timeout set \"nat-idle\";\n  }}\n\
                   chain nat-forgotten {{\n    type filter hook forward priority -10; ct state invalid counter drop comment \"kaspec {t} nat: forgotten flow\";\n  }}\n\
                   chain nat-forgotten-local {{\n    type filter hook input priority -10; ct state invalid counter drop comment \"kaspec {t} nat: forgotten flow\";\n  }}\n}}\n",
                tb = self.table
            ),
        )?;
        self.nft("setting up NAT on the router", &self.masquerade())?;
        Ok(())
    }

    /// How the server sees a client endpoint: through the NAT, as the
    /// router's address (masquerade keeps the port when it is free).
    pub fn seen_by_server(&self, client: std::net::SocketAddrV4) -> std::net::SocketAddrV4 {
        match (&self.docker, self.nat_idle_timeout) {
            (Some(d), _) => std::net::SocketAddrV4::new(d.router_addr, client.port()),
            (None, Some(_)) => std::net::SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 1), client.port()),
            (None, None) => client,
        }
    }

    /// The port the server listens on: `default` on the netns testbed, the
    /// container's `org.kaspec.port` on the docker testbed.
    pub fn server_port(&self, default: u16) -> u16 {
        self.docker.as_ref().map_or(default, |d| d.container.port)
    }

    /// `netns`, or `docker` with the container.
    pub fn kind(&self) -> String {
        match &self.docker {
            None => "netns".into(),
            Some(d) => format!("docker (container {} of {})", d.container.name, d.container.image),
        }
    }

    fn nft(&self, context: &str, script: &str) -> Result<String> {
        cmd::run(context, "ip", &["netns", "exec", &self.router.ns, "nft", "-f", "-"], Some(script))
    }

    /// What the kernel offers (detected once per process in a router namespace).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Sets what the `delay` and `loss` faults apply (else their defaults:
    /// 300 ms round trip; 2% loss).
    pub fn set_impairments(&self, delay: crate::impair::Impairment, loss: crate::impair::Impairment) {
        *self.impairment.lock().unwrap_or_else(|p| p.into_inner()) = Some((delay, loss));
    }

    /// What `kind` (delay or loss) applies on this testbed.
    pub fn impairment_for(&self, kind: FaultKind) -> Option<crate::impair::Impairment> {
        let set = *self.impairment.lock().unwrap_or_else(|p| p.into_inner());
        let (delay, loss) = set.unwrap_or_else(crate::impair::defaults);
        match kind {
            FaultKind::Delay => Some(delay),
            FaultKind::Loss => Some(loss),
            _ => None,
        }
    }

    /// The impairment engine this kernel allows.
    pub fn impair_engine(&self) -> crate::impair::Engine {
        if self.caps.netem {
            crate::impair::Engine::Netem
        } else {
            crate::impair::Engine::Nfqueue
        }
    }

    /// Applies `kind`: nftables faults to `flow` on the router's forward path,
    /// `freeze` to the server process `server_pid`. Returns once the fault is
    /// in force (rule committed, signal delivered); `in_force_at` is taken then.
    pub fn apply_fault(&self, kind: FaultKind, flow: &Flow, server_pid: Option<u32>) -> Result<AppliedFault> {
        let rules = kind.nft_rules(flow, &self.tag);
        let requested_at = Instant::now();
        let mut engine = kind.engine().to_string();
        match kind {
            FaultKind::None => {}
            FaultKind::Delay | FaultKind::Loss => {
                let imp = self.impairment_for(kind).expect("delay and loss have an impairment");
                let e = self.impair_engine();
                let t = &self.tag;
                let running = crate::impair::start(e, &self.router, &format!("kr-{t}-c"), &format!("kr-{t}-s"), flow, &imp, t)?;
                engine = format!("{} ({})", e.name(), imp.describe());
                if let Some(old) = self.impaired.lock().unwrap_or_else(|p| p.into_inner()).replace(running) {
                    old.stop()?;
                }
            }
            FaultKind::NatExpiry => {
                return Err(Error::Other("nat-expiry is a property of the testbed (Testbed::with_nat), not a fault applied at an instant".into()))
            }
            FaultKind::Freeze => {
                let pid = server_pid.ok_or_else(|| Error::Other("freeze needs the server's process".into()))?;
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGSTOP)
                    .map_err(|e| Error::io(format!("applying fault freeze: SIGSTOP to pid {pid}"), e.into()))?;
                wait_stopped(pid)?;
            }
            _ => {
                let script: String = rules.iter().map(|r| format!("add rule inet {} faults {r}\n", self.table)).collect();
                self.nft(&format!("applying fault {kind} on {}", self.router.ns), &script)?;
                if kind == FaultKind::Crash {
                    // Only now, with the path dead, may the server's kernel close its sockets.
                    let pid = server_pid.ok_or_else(|| Error::Other("crash needs the server's process".into()))?;
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL)
                        .map_err(|e| Error::io(format!("applying fault crash: SIGKILL to pid {pid}"), e.into()))?;
                    wait_dead(pid)?;
                }
            }
        }
        let in_force_at = Instant::now();
        let applied = AppliedFault { kind, engine, rules, requested_at, in_force_at, pid: server_pid };
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).push(applied.clone());
        Ok(applied)
    }

    /// Makes the server host forget the flow, as a host that rebooted has:
    /// its sockets for the flow are destroyed (sock_diag SOCK_DESTROY, `ss -K`),
    /// so the next segment from the client is answered with RST once the
    /// path returns. Only sockets of this testbed's server namespace.
    pub fn forget_on_server(&self, flow: &Flow) -> Result<()> {
        let seen = self.seen_by_server(flow.client);
        let dst = format!("{}:{}", seen.ip(), seen.port());
        let ss = |context: &str, extra: &[&str]| {
            let mut args = vec!["netns", "exec", self.server.ns.as_str(), "ss"];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["dst", dst.as_str()]);
            cmd::run(context, "ip", &args, None)
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
        let flushed = self.nft("healing the path", &format!("flush chain inet {} faults\n", self.table)).map(|_| ());
        let running = self.impaired.lock().unwrap_or_else(|p| p.into_inner()).take();
        let stopped = running.map_or(Ok(()), |r| r.stop());
        for f in self.faults.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            if let (FaultKind::Freeze, Some(pid)) = (f.kind, f.pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGCONT);
            }
        }
        flushed.and(stopped).map(|_| Instant::now())
    }

    /// After a case watched a `delay` or `loss` fault: an error if the
    /// impairment engine stopped working meanwhile (its result would not be
    /// a measurement of that path), else what it did (for the timeline).
    pub fn impairment_report(&self) -> Result<Option<String>> {
        let guard = self.impaired.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            None => Ok(None),
            Some(r) => match r.failure() {
                Some(why) => Err(Error::Other(format!("{why}: the measurement is not of the impaired path"))),
                None => Ok(Some(r.summary())),
            },
        }
    }

    /// The namespaces of this testbed.
    pub fn namespaces(&self) -> Vec<String> {
        vec![self.client.ns.clone(), self.router.ns.clone(), self.server.ns.clone()]
    }
}

/// Claims a free address on the compose network for a router of run `tag`
/// (a file per address under [`crate::docker::CLAIM_DIR`], made with
/// O_EXCL; a claim whose run is gone is taken over).
fn claim_router_addr(net: &crate::docker::BridgeNet, tag: &str) -> Result<Ipv4Addr> {
    let dir = Path::new(crate::docker::CLAIM_DIR);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    for a in crate::docker::router_candidates(net) {
        let f = dir.join(format!("{}-{a}", net.id.get(..12).unwrap_or(&net.id)));
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&f) {
                Ok(mut file) => {
                    use std::io::Write as _;
                    file.write_all(tag.as_bytes()).map_err(|e| Error::io(format!("writing {}", f.display()), e))?;
                    return Ok(a);
                }
                Err(_) => {
                    let holder = std::fs::read_to_string(&f).unwrap_or_default();
                    if cleanup::tag_is_gone(holder.trim()) {
                        let _ = std::fs::remove_file(&f);
                        continue;
                    }
                    break;
                }
            }
        }
    }
    Err(Error::Other(format!("no free address for a router on network {} ({}/{})", net.name, net.subnet, net.prefix)))
}

/// Waits until `pid` has died (a zombie, or gone).
fn wait_dead(pid: u32) -> Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return Ok(()),
            Ok(stat) if stat.rsplit(')').next().map(|r| r.trim_start().starts_with('Z')).unwrap_or(false) => return Ok(()),
            Ok(_) if Instant::now() > deadline => return Err(Error::Other(format!("pid {pid} did not die within 2 s of SIGKILL"))),
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
}

/// Waits until `pid` is in the stopped state (SIGSTOP is asynchronous).
fn wait_stopped(pid: u32) -> Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| Error::io(format!("reading the state of pid {pid}"), e))?;
        if stat.rsplit(')').next().map(|r| r.trim_start().starts_with('T')).unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Other(format!("pid {pid} did not stop within 2 s of SIGSTOP")));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if let Some(running) = self.impaired.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = running.stop();
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
        cleanup::release_claims_of(&self.tag);
        cleanup::unregister(&self.tag);
    }
}
