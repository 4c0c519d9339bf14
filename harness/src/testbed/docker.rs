//! The `docker` backend of the testbed: what differs when the server host is
//! a container of the compose stack instead of a namespace of ours.
//!
//! Client and router are the netns testbed's namespaces; the router's
//! server-side link is a veth whose other end (`kb-TAG`, in this host's root
//! namespace) is a port of the compose network's bridge, with an address of
//! that network claimed for the run (a file under [`CLAIM_DIR`]). The router
//! masquerades towards the bridge, so the container needs no route to the
//! client's subnet and is not changed. The container's own namespace is
//! attached as the server host `kaspec-TAG-ctr` (`ip netns attach`):
//! removing that name only unmounts it, and the container's processes are
//! never signalled — compose owns them. Faults are applied on the router's
//! forward path, between the client and the container, never on the
//! container's own stack.
//!
//! Every "is this the docker testbed" question is answered here, by
//! [`ServerHost`]; the clean-up of what this backend holds outside our
//! namespaces (the address claims) is registered with [`crate::cleanup`].

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use super::compose::{self, BridgeNet, Container, Stack};
use super::link;
use crate::cleanup::{self, Cleaner};
use crate::cmd;
use crate::host::Host;
use crate::{Error, Result};

/// The server-side namespace name of a `docker` testbed: an attachment
/// (`ip netns attach`) of the container's own namespace, which removal only
/// unmounts (its processes are the container's, never killed by kaspec).
pub const ATTACHED_ROLE: &str = "ctr";

/// Where router address claims live: one file per address (its run tag).
pub const CLAIM_DIR: &str = "/run/kaspec/addr";

/// What a testbed's server host is.
#[derive(Debug, Clone)]
pub enum ServerHost {
    /// A namespace of ours behind the router's second veth link.
    Netns,
    /// A container of the compose stack, behind the compose bridge.
    Docker(Box<DockerPath>),
}

/// How a `docker` testbed reaches its container.
#[derive(Debug, Clone)]
pub struct DockerPath {
    /// The compose project.
    pub project: String,
    pub container: Container,
    pub network: BridgeNet,
    /// The router's address on the compose network: the server sees the
    /// client as this address (the router masquerades, so the container
    /// needs no route to the client's subnet and is not changed).
    pub router_addr: Ipv4Addr,
}

impl ServerHost {
    /// Whether the testbed creates (and removes) the server's namespace.
    pub fn own_namespace(&self) -> bool {
        matches!(self, ServerHost::Netns)
    }

    /// The docker path, if this is the docker testbed.
    pub fn docker_path(&self) -> Option<&DockerPath> {
        match self {
            ServerHost::Netns => None,
            ServerHost::Docker(d) => Some(&**d),
        }
    }

    /// How the server sees a client endpoint: through the NAT (`nat`, or
    /// always on docker), as the router's address (masquerade keeps the
    /// port when it is free).
    pub fn seen_by_server(&self, client: SocketAddrV4, nat: bool) -> SocketAddrV4 {
        match (self, nat) {
            (ServerHost::Docker(d), _) => SocketAddrV4::new(d.router_addr, client.port()),
            (ServerHost::Netns, true) => SocketAddrV4::new(link::ROUTER_SERVER_SIDE, client.port()),
            (ServerHost::Netns, false) => client,
        }
    }

    /// The port the server listens on: `default` on the netns testbed, the
    /// container's `org.kaspec.port` on the docker testbed.
    pub fn server_port(&self, default: u16) -> u16 {
        self.docker_path().map_or(default, |d| d.container.port)
    }

    /// `netns`, or `docker` with the container.
    pub fn kind(&self) -> String {
        match self {
            ServerHost::Netns => "netns".into(),
            ServerHost::Docker(d) => format!("docker (container {} of {})", d.container.name, d.container.image),
        }
    }
}

/// The role and address of the server host: `server` at 198.19.0.2 (netns),
/// or the attachment of `container` at its address on the compose network.
pub(super) fn server_role_and_addr(container: Option<&Container>) -> (&'static str, Ipv4Addr) {
    match container {
        None => ("server", link::SERVER_ADDR),
        Some(c) => (ATTACHED_ROLE, c.ip),
    }
}

impl DockerPath {
    /// The path to `container` of `stack` for run `tag`, with a router
    /// address claimed on the compose network.
    pub(super) fn claim(stack: &Stack, container: Container, tag: &str) -> Result<DockerPath> {
        let router_addr = claim_router_addr(&stack.network, tag)?;
        Ok(DockerPath { project: stack.project.clone(), container, network: stack.network.clone(), router_addr })
    }

    /// The router's server-side link `rs` on the compose bridge, and the
    /// container's namespace attached as the server host.
    pub(super) fn build_link(&self, tag: &str, router: &Host, server: &Host, rs: &str) -> Result<()> {
        let kb = format!("kb-{tag}");
        // The MAC follows the address: a container's ARP entry left from an
        // earlier run with this address stays right.
        let o = self.router_addr.octets();
        let mac = format!("02:6b:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
        let root = std::process::id().to_string();
        router.ip(
            "creating the router's link to the compose bridge",
            &["link", "add", rs, "address", &mac, "type", "veth", "peer", "name", &kb, "netns", &root],
        )?;
        cmd::run("plugging the router into the compose bridge", "ip", &["link", "set", &kb, "master", &self.network.bridge, "up"], None)?;
        router.ip("addressing the router", &["addr", "add", &format!("{}/{}", self.router_addr, self.network.prefix), "dev", rs])?;
        router.ip("bringing up a link", &["link", "set", rs, "up"])?;
        cmd::run("attaching the container's namespace", "ip", &["netns", "attach", &server.ns, &self.container.pid.to_string()], None)?;
        Ok(())
    }
}

/// Claims a free address on the compose network for a router of run `tag`
/// (a file per address under [`CLAIM_DIR`], made with O_EXCL; a claim whose
/// run is gone is taken over).
fn claim_router_addr(net: &BridgeNet, tag: &str) -> Result<Ipv4Addr> {
    let dir = Path::new(CLAIM_DIR);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    for a in compose::router_candidates(net) {
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

/// This backend's part of the clean-up: attachments are not ours to kill
/// in, and address claims go with their run.
static CLEANER: Cleaner = Cleaner {
    what: "router address claims on a compose network",
    foreign_processes: is_attachment,
    release: release_claims_of,
    leftovers: leftover_claims,
};

/// Registers this backend's clean-up (idempotent).
pub fn register_cleanup() {
    cleanup::register_cleaner(&CLEANER);
}

/// Whether `ns` names another's namespace attached by a `docker` testbed
/// (`kaspec-TAG-ctr`): its processes are not ours.
pub fn is_attachment(ns: &str) -> bool {
    ns.strip_prefix(cleanup::NS_PREFIX).and_then(|r| r.split_once('-')).is_some_and(|(_, role)| role == ATTACHED_ROLE)
}

/// Removes the router address claims of `tag`.
pub fn release_claims_of(tag: &str) {
    for entry in std::fs::read_dir(CLAIM_DIR).into_iter().flatten().flatten() {
        if std::fs::read_to_string(entry.path()).is_ok_and(|t| t.trim() == tag) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Removes the router address claims of runs that are gone; returns their names.
fn leftover_claims() -> Vec<String> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(CLAIM_DIR).into_iter().flatten().flatten() {
        let holder = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if cleanup::tag_is_gone(holder.trim()) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_container_attachment_is_foreign() {
        assert!(is_attachment("kaspec-abc123-ctr"));
        assert!(!is_attachment("kaspec-abc123-server"));
        assert!(!is_attachment("other-abc123-ctr"));
    }
}
