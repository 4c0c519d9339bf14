//! Namespaces and links: each host a network namespace with `lo` up, each
//! link a veth pair created inside the router with its peer moved straight
//! into the endpoint (so nothing is created in the root namespace), the
//! endpoint's default route via the router.

use std::net::Ipv4Addr;

use super::Testbed;
use crate::cleanup;
use crate::cmd;
use crate::host::Host;
use crate::{Error, Result};

/// The client's address, on the client link 198.18.0.0/24.
pub(super) const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The router's address on the client link.
pub(super) const ROUTER_CLIENT_SIDE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The server's address on the server link 198.19.0.0/24 (netns testbed).
pub(super) const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
/// The router's address on the server link: what a server behind the NAT
/// sees as the client's address (netns testbed).
pub(super) const ROUTER_SERVER_SIDE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

/// The router's interface towards the client (`side` 'c') or the server ('s').
pub(super) fn router_if(tag: &str, side: char) -> String {
    format!("kr-{tag}-{side}")
}

impl Testbed {
    /// Creates this testbed's own namespaces and links: client ↔ router,
    /// and router ↔ server (a namespace of ours) or router ↔ compose bridge
    /// (the `docker` testbed).
    pub(super) fn build_links(&self) -> Result<()> {
        let t = &self.tag;
        let own: Vec<&Host> = if self.server_host.own_namespace() {
            vec![&self.client, &self.router, &self.server]
        } else {
            vec![&self.client, &self.router]
        };
        for h in own {
            if cleanup::interrupted() {
                return Err(Error::Other("interrupted while building the testbed".into()));
            }
            cmd::run("creating a namespace", "ip", &["netns", "add", &h.ns], None)?;
            h.ip("bringing up lo", &["link", "set", "lo", "up"])?;
        }
        let (rc, cc, rs, ss) = (router_if(t, 'c'), format!("kc-{t}"), router_if(t, 's'), format!("ks-{t}"));
        let mut links = vec![(&rc, &cc, &self.client, "198.18.0.1/24")];
        if self.server_host.own_namespace() {
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
        if let Some(d) = self.server_host.docker_path() {
            d.build_link(&self.tag, &self.router, &self.server, &rs)?;
        }
        Ok(())
    }
}
