//! Topologies: a description of a testbed's hosts and links, which
//! `link.rs` builds. Every link joins a router to one endpoint on a /24 of
//! its own, the router at `.1`, the endpoint at `.2`; each router has its
//! own fault point (its own nftables table on its forward path), so a fault
//! names the router it acts on and cuts only the path through it.
//!
//! ```text
//! DIRECT: client ── router ── server
//! PROXY:  client ── router ── proxy ── upstream-router ── server
//! ```
//!
//! In [`PROXY`] each keep-alive level has its own path: the client's
//! connections to the proxy cross `router`, the proxy's connections to the
//! server cross `upstream-router`. The proxy does not forward: the client
//! cannot reach the server but through the proxy's own sockets.

use std::net::Ipv4Addr;

/// One host of a topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostDef {
    /// Its role: the namespace's suffix (`kaspec-TAG-ROLE`) and how cases name it.
    pub role: &'static str,
    /// Whether it forwards (a router: a fault point of its own).
    pub router: bool,
}

/// One link: a veth pair from a router to an endpoint on `198.N.N.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDef {
    /// The router's role.
    pub router: &'static str,
    /// Which side of the router this link is: `'c'` (towards the client) or
    /// `'s'` (towards the server); the router's interface is `PREFIX-TAG-SIDE`.
    pub side: char,
    /// The endpoint's role.
    pub host: &'static str,
    /// The endpoint's interface prefix (`PREFIX-TAG`).
    pub host_if: &'static str,
    /// The link's /24: its first three octets.
    pub net: [u8; 3],
    /// The endpoint's route through this router: `None` the default route,
    /// `Some(net)` only that /24 (a host with two links).
    pub route: Option<[u8; 3]>,
}

impl LinkDef {
    /// The router's address on this link.
    pub fn router_addr(&self) -> Ipv4Addr {
        let [a, b, c] = self.net;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// The endpoint's address on this link.
    pub fn host_addr(&self) -> Ipv4Addr {
        let [a, b, c] = self.net;
        Ipv4Addr::new(a, b, c, 2)
    }
}

/// Hosts and links that a testbed builds.
#[derive(Debug, PartialEq, Eq)]
pub struct Topology {
    pub name: &'static str,
    pub hosts: &'static [HostDef],
    pub links: &'static [LinkDef],
}

/// The router's role in every topology (the client side of the path; the
/// NAT, the docker attachment and [`Testbed::router`](super::Testbed) are its).
pub const ROUTER: &str = "router";
/// The router between the proxy and the server in [`PROXY`].
pub const UPSTREAM_ROUTER: &str = "upstream-router";
/// The proxy host of [`PROXY`].
pub const PROXY_HOST: &str = "proxy";

const fn host(role: &'static str, router: bool) -> HostDef {
    HostDef { role, router }
}

/// client ── router ── server: the testbed every case used before
/// topologies (its names and addresses unchanged).
pub static DIRECT: Topology = Topology {
    name: "direct",
    hosts: &[host("client", false), host(ROUTER, true), host("server", false)],
    links: &[
        LinkDef { router: ROUTER, side: 'c', host: "client", host_if: "kc", net: [198, 18, 0], route: None },
        LinkDef { router: ROUTER, side: 's', host: "server", host_if: "ks", net: [198, 19, 0], route: None },
    ],
};

/// client ── router ── proxy ── upstream-router ── server: two keep-alive
/// levels, each with its own path to cut.
pub static PROXY: Topology = Topology {
    name: "proxy",
    hosts: &[host("client", false), host(ROUTER, true), host(PROXY_HOST, false), host(UPSTREAM_ROUTER, true), host("server", false)],
    links: &[
        LinkDef { router: ROUTER, side: 'c', host: "client", host_if: "kc", net: [198, 18, 0], route: None },
        LinkDef { router: ROUTER, side: 's', host: PROXY_HOST, host_if: "kp", net: [198, 19, 0], route: None },
        LinkDef { router: UPSTREAM_ROUTER, side: 'c', host: PROXY_HOST, host_if: "kq", net: [198, 19, 1], route: Some([198, 19, 2]) },
        LinkDef { router: UPSTREAM_ROUTER, side: 's', host: "server", host_if: "ks", net: [198, 19, 2], route: None },
    ],
};

impl Topology {
    /// The routers, in order from the client.
    pub fn routers(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.hosts.iter().filter(|h| h.router).map(|h| h.role)
    }

    /// The interface name prefix of `router` (`kr` for the client-side
    /// router, as before topologies; `ku` for the next).
    pub fn router_if_prefix(&self, router: &str) -> &'static str {
        match self.routers().position(|r| r == router) {
            Some(0) => "kr",
            _ => "ku",
        }
    }

    /// `router`'s interface on its `side` ('c' or 's') for run `tag`.
    pub fn router_if(&self, tag: &str, router: &str, side: char) -> String {
        format!("{}-{tag}-{side}", self.router_if_prefix(router))
    }

    /// `role`'s address: on its first link (for the proxy, the side the
    /// client connects to), the router's client-side address for a router.
    pub fn addr(&self, role: &str) -> Option<Ipv4Addr> {
        let link = self.links.iter().find(|l| l.host == role).map(LinkDef::host_addr);
        link.or_else(|| self.links.iter().find(|l| l.router == role).map(LinkDef::router_addr))
    }

    /// `host`'s address on its link to `router` (the proxy's upstream
    /// address is `addr_towards(PROXY_HOST, UPSTREAM_ROUTER)`).
    pub fn addr_towards(&self, host: &str, router: &str) -> Option<Ipv4Addr> {
        self.links.iter().find(|l| l.host == host && l.router == router).map(LinkDef::host_addr)
    }

    /// Checks the description: roles unique, every link between a router
    /// and a non-router of this topology, nets and router sides unique.
    pub fn check(&self) -> Result<(), String> {
        let role = |r: &str| self.hosts.iter().find(|h| h.role == r);
        for (i, h) in self.hosts.iter().enumerate() {
            if self.hosts[..i].iter().any(|o| o.role == h.role) {
                return Err(format!("topology {}: host role `{}` twice", self.name, h.role));
            }
        }
        for (i, l) in self.links.iter().enumerate() {
            if !role(l.router).is_some_and(|h| h.router) || !role(l.host).is_some_and(|h| !h.router) {
                return Err(format!("topology {}: link {}–{} must join a router to an endpoint of the topology", self.name, l.router, l.host));
            }
            if self.links[..i].iter().any(|o| o.net == l.net || (o.router == l.router && o.side == l.side)) {
                return Err(format!("topology {}: link {}–{} reuses a net or a router side", self.name, l.router, l.host));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_keeps_the_addresses_and_names_of_the_three_host_testbed() {
        DIRECT.check().unwrap();
        assert_eq!(DIRECT.addr("client"), Some(Ipv4Addr::new(198, 18, 0, 2)));
        assert_eq!(DIRECT.addr(ROUTER), Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(DIRECT.addr("server"), Some(Ipv4Addr::new(198, 19, 0, 2)));
        assert_eq!(DIRECT.router_if("abc123", ROUTER, 's'), "kr-abc123-s");
        assert_eq!(DIRECT.routers().collect::<Vec<_>>(), [ROUTER]);
    }

    #[test]
    fn proxy_has_two_routers_and_the_proxy_an_address_on_each_level() {
        PROXY.check().unwrap();
        assert_eq!(PROXY.routers().collect::<Vec<_>>(), [ROUTER, UPSTREAM_ROUTER]);
        assert_eq!(PROXY.addr(PROXY_HOST), Some(Ipv4Addr::new(198, 19, 0, 2)));
        assert_eq!(PROXY.addr_towards(PROXY_HOST, UPSTREAM_ROUTER), Some(Ipv4Addr::new(198, 19, 1, 2)));
        assert_eq!(PROXY.addr("server"), Some(Ipv4Addr::new(198, 19, 2, 2)));
        assert_eq!(PROXY.router_if("abc123", UPSTREAM_ROUTER, 'c'), "ku-abc123-c");
    }

    #[test]
    fn a_bad_description_is_refused_with_its_name() {
        static BAD: Topology = Topology {
            name: "bad",
            hosts: &[host("client", false), host(ROUTER, true)],
            links: &[LinkDef { router: ROUTER, side: 'c', host: "nowhere", host_if: "kc", net: [198, 18, 0], route: None }],
        };
        let e = BAD.check().unwrap_err();
        assert!(e.contains("bad") && e.contains("nowhere"), "{e}");
    }
}
