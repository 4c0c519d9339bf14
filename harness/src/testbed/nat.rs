//! The router as a real NAT: it masquerades the client towards the server,
//! and with an idle timeout it forgets established TCP flows idle that long
//! (a conntrack timeout policy on the router's flows). Its later packets are
//! then dropped as a real NAT drops them: conntrack's loose pick-up is off
//! (`nf_conntrack_tcp_loose=0`), so a mid-stream segment of a forgotten flow
//! is INVALID and the router does not answer it.
//!
//! The rules go in the testbed's table over the router's nf_tables socket
//! (the fault point's), as `nft` would write them:
//!
//! ```text
//! table inet kaspec_TAG {
//!   ct timeout nat-idle { protocol tcp; l3proto ip;
//!     policy = { established: N, close_wait: N, fin_wait: N, last_ack: N } }
//!   chain nat-timeouts { type filter hook prerouting priority filter; ct timeout set "nat-idle" }
//!   chain nat-forgotten { type filter hook forward priority -10;
//!     ct state invalid counter drop comment "kaspec TAG nat: forgotten flow" }
//!   chain nat-forgotten-local { type filter hook input priority -10; (the same) }
//!   chain nat-masquerade { type nat hook postrouting priority srcnat; oifname "kr-TAG-s" masquerade }
//! }
//! ```

use std::time::Duration;

use super::Testbed;
use crate::fault::netlink::{self, Expr, Hook, MetaKey, CT_STATE_INVALID};
use crate::Result;

/// CTA_TIMEOUT_TCP_ESTABLISHED, _FIN_WAIT, _CLOSE_WAIT and _LAST_ACK
/// (enum ctattr_timeout_tcp, nfnetlink_cttimeout.h).
const IDLE_STATES: [u16; 4] = [3, 4, 5, 6];

impl Testbed {
    /// The router hides the client behind its own address towards the server.
    pub(super) fn masquerade(&self) -> Result<()> {
        let out = super::link::router_if(&self.tag, 's');
        let mut name = [0u8; 16];
        name[..out.len().min(15)].copy_from_slice(&out.as_bytes()[..out.len().min(15)]);
        let rule = [Expr::Meta(MetaKey::OifName), Expr::CmpEq(name.to_vec()), Expr::Masquerade];
        let chain = "nat-masquerade";
        self.fault_point().commit(
            "masquerading on the router",
            &[
                netlink::new_base_chain(&self.table, chain, Hook::srcnat()),
                netlink::add_rule(&self.table, chain, &rule, None, &format!("oifname \"{out}\" masquerade")),
            ],
        )
    }

    pub(super) fn build_nat(&self, idle: Duration) -> Result<()> {
        self.forget_idle_flows(super::ROUTER, idle)?;
        self.masquerade()
    }

    /// `router` forgets an established TCP flow idle for `idle` (a stateful
    /// middlebox: a NAT, a firewall, a cloud load balancer's idle timeout)
    /// and drops its later packets, without translating addresses: the
    /// conntrack timeout policy and the INVALID drops above, in `router`'s
    /// own table. Used alone by the proxy topology's middlebox
    /// (`--network`'s `middlebox_idle_timeout`).
    pub fn forget_idle_flows(&self, router: &str, idle: Duration) -> Result<()> {
        let secs = idle.as_secs().max(1) as u32;
        let host = self.host(router).ok_or_else(|| crate::Error::Other(format!("topology {} has no router `{router}`", self.topology.name)))?;
        host.exec(
            "making the router's conntrack strict (no mid-stream pick-up)",
            "sysctl",
            &["-qw", "net.netfilter.nf_conntrack_tcp_loose=0"],
            None,
        )?;
        let (tb, comment) = (&self.table, format!("kaspec {} nat: forgotten flow", self.tag));
        let invalid =
            [Expr::CtState, Expr::And(CT_STATE_INVALID), Expr::CmpNeq(vec![0; 4]), Expr::Counter, Expr::Drop];
        let mut msgs = vec![
            netlink::new_tcp_ct_timeout(tb, "nat-idle", &IDLE_STATES.map(|s| (s, secs))),
            netlink::new_base_chain(tb, "nat-timeouts", Hook::prerouting(0)),
            netlink::add_rule(tb, "nat-timeouts", &[Expr::CtTimeoutSet("nat-idle".into())], None, "ct timeout set \"nat-idle\""),
        ];
        for (chain, hook) in [("nat-forgotten", Hook::forward(-10)), ("nat-forgotten-local", Hook::input(-10))] {
            msgs.push(netlink::new_base_chain(tb, chain, hook));
            msgs.push(netlink::add_rule(tb, chain, &invalid, Some(&comment), "ct state invalid counter drop"));
        }
        self.fault_point_at(router)?.commit("setting up the idle-flow timeout on the router", &msgs)
    }
}
