//! Namespaces and links: each host a network namespace with `lo` up, each
//! link of the testbed's [`Topology`](super::topology::Topology) a veth pair
//! created inside its router with its peer moved straight into the endpoint
//! (so nothing is created in the root namespace), the endpoint's route
//! (default, or one /24 for a host with two links) via the router.

use std::net::Ipv4Addr;

use super::topology::{DIRECT, ROUTER};
use super::Testbed;
use crate::cleanup;
use crate::cmd;
use crate::{Error, Result};

/// The client's address, on the client link 198.18.0.0/24.
pub(super) const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The server's address on the server link 198.19.0.0/24 (netns testbed).
pub(super) const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
/// The router's address on the server link: what a server behind the NAT
/// sees as the client's address (netns testbed).
pub(super) const ROUTER_SERVER_SIDE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

/// The (first) router's interface towards the client (`side` 'c') or the
/// server ('s'): the same in every topology.
pub(super) fn router_if(tag: &str, side: char) -> String {
    DIRECT.router_if(tag, ROUTER, side)
}

impl Testbed {
    /// Creates this testbed's own namespaces and links, as its topology
    /// describes them; on the `docker` testbed the router's server-side link
    /// goes to the compose bridge instead of a namespace of ours.
    pub(super) fn build_links(&self) -> Result<()> {
        let t = &self.tag;
        let own_server = self.server_host.own_namespace();
        for h in self.hosts() {
            if h.ns == self.server.ns && !own_server {
                continue;
            }
            if cleanup::interrupted() {
                return Err(Error::Other("interrupted while building the testbed".into()));
            }
            cmd::run("creating a namespace", "ip", &["netns", "add", &h.ns], None)?;
            h.ip("bringing up lo", &["link", "set", "lo", "up"])?;
        }
        for l in self.topology.links {
            let (router, peer) = (self.host(l.router).expect("a checked topology"), self.host(l.host).expect("a checked topology"));
            let (r_if, peer_if) = (self.topology.router_if(t, l.router, l.side), format!("{}-{t}", l.host_if));
            if peer.ns == self.server.ns && !own_server {
                continue;
            }
            let (r_addr, gw) = (format!("{}/24", l.router_addr()), l.router_addr().to_string());
            router.ip("creating a veth pair", &["link", "add", &r_if, "type", "veth", "peer", "name", &peer_if, "netns", &peer.ns])?;
            router.ip("addressing the router", &["addr", "add", &r_addr, "dev", &r_if])?;
            router.ip("bringing up a link", &["link", "set", &r_if, "up"])?;
            peer.ip("addressing a host", &["addr", "add", &format!("{}/24", l.host_addr()), "dev", &peer_if])?;
            peer.ip("bringing up a link", &["link", "set", &peer_if, "up"])?;
            let dest = l.route.map_or("default".to_string(), |[a, b, c]| format!("{a}.{b}.{c}.0/24"));
            peer.ip("adding the route via the router", &["route", "add", &dest, "via", &gw])?;
        }
        if let Some(d) = self.server_host.docker_path() {
            d.build_link(&self.tag, &self.router, &self.server, &router_if(t, 's'))?;
        }
        Ok(())
    }
}
