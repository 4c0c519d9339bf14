//! The nftables engine of the instant faults: the rules that drop or reset
//! one flow on the router's forward path, in the testbed's own table
//! (`inet kaspec_TAG`, chain `faults`), so healing is one `flush chain`.
//! Each rule is written once, as a match, and rendered both as `nft` text
//! (reports, `nft list`) and as the nf_tables expressions that
//! [`super::netlink`] commits.
//! Also the flow's iptables matches, for the NFQUEUE impairment engine (nft's
//! own `queue` expression is missing on some kernels that have the xtables
//! target).

use std::net::Ipv4Addr;

use super::netlink::{Base, Expr, MetaKey, NFPROTO_IPV4};
use super::{FaultKind, Flow};

/// One rule of a fault: its `nft` text (what reports show and `nft list`
/// reads back) and the same rule as nf_tables expressions, built from one
/// match so the two cannot disagree.
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub text: String,
    pub exprs: Vec<Expr>,
    pub comment: String,
}

/// The packets of one direction of a flow: `ip saddr S ip daddr D` and the
/// TCP ports, in the order written.
struct Match {
    saddr: Ipv4Addr,
    daddr: Ipv4Addr,
    /// (`sport` | `dport`, port)
    ports: Vec<(&'static str, u16)>,
}

impl Match {
    fn text(&self) -> String {
        let mut m = format!("ip saddr {} ip daddr {}", self.saddr, self.daddr);
        for (what, port) in &self.ports {
            m.push_str(&format!(" tcp {what} {port}"));
        }
        m
    }

    /// What `nft` 1.0.6 emits for the text in an `inet` table: the IPv4
    /// dependency (`meta nfproto ipv4`), the addresses at network header
    /// offsets 12 and 16, the TCP dependency (`meta l4proto tcp`), each port
    /// at transport header offset 0 (source) or 2 (destination).
    fn exprs(&self) -> Vec<Expr> {
        let mut e = vec![
            Expr::Meta(MetaKey::NfProto),
            Expr::CmpEq(vec![NFPROTO_IPV4]),
            Expr::Payload { base: Base::Network, offset: 12, len: 4 },
            Expr::CmpEq(self.saddr.octets().to_vec()),
            Expr::Payload { base: Base::Network, offset: 16, len: 4 },
            Expr::CmpEq(self.daddr.octets().to_vec()),
            Expr::Meta(MetaKey::L4Proto),
            Expr::CmpEq(vec![libc::IPPROTO_TCP as u8]),
        ];
        for (what, port) in &self.ports {
            let offset = if *what == "sport" { 0 } else { 2 };
            e.push(Expr::Payload { base: Base::Transport, offset, len: 2 });
            e.push(Expr::CmpEq(port.to_be_bytes().to_vec()));
        }
        e
    }
}

impl FaultKind {
    /// The nftables rules (for the `faults` chain) that realise this fault on
    /// `flow`; none for faults of another engine.
    pub fn nft_rules(self, flow: &Flow, tag: &str) -> Vec<String> {
        self.fault_rules(flow, tag).into_iter().map(|r| r.text).collect()
    }

    /// [`nft_rules`](Self::nft_rules) with their nf_tables expressions.
    pub fn fault_rules(self, flow: &Flow, tag: &str) -> Vec<FaultRule> {
        let rule = |m: Match, reset: bool, what: &str| {
            let comment = format!("kaspec {tag} {} {what}", self.name());
            let (verdict, last) = if reset { ("reject with tcp reset", Expr::RejectTcpReset) } else { ("drop", Expr::Drop) };
            let mut exprs = m.exprs();
            exprs.extend([Expr::Counter, last]);
            FaultRule { text: format!("{} counter {verdict} comment \"{comment}\"", m.text()), exprs, comment }
        };
        match self {
            FaultKind::Blackhole | FaultKind::Crash | FaultKind::ClientCrash => vec![rule(flow.up(), false, "up"), rule(flow.down(), false, "down")],
            FaultKind::BlackholeUp => vec![rule(flow.up(), false, "up")],
            FaultKind::BlackholeDown => vec![rule(flow.down(), false, "down")],
            FaultKind::Reset => vec![rule(flow.up(), true, "up"), rule(flow.down(), true, "down")],
            FaultKind::Freeze | FaultKind::ClientStall | FaultKind::NatExpiry | FaultKind::Delay | FaultKind::Loss | FaultKind::None => Vec::new(),
        }
    }
}

impl Flow {
    /// Client -> server: to the server's port, from the client's (if given).
    fn up(&self) -> Match {
        let mut ports = vec![("dport", self.server.port())];
        if self.client.port() != 0 {
            ports.push(("sport", self.client.port()));
        }
        Match { saddr: *self.client.ip(), daddr: *self.server.ip(), ports }
    }

    /// Server -> client: from the server's port, to the client's (if given).
    fn down(&self) -> Match {
        let mut ports = vec![("sport", self.server.port())];
        if self.client.port() != 0 {
            ports.push(("dport", self.client.port()));
        }
        Match { saddr: *self.server.ip(), daddr: *self.client.ip(), ports }
    }

    /// iptables match arguments for client -> server.
    pub fn iptables_up(&self) -> Vec<String> {
        let mut m = vec!["-p".into(), "tcp".into(), "-s".into(), self.client.ip().to_string(), "-d".into(), self.server.ip().to_string()];
        m.extend(["--dport".into(), self.server.port().to_string()]);
        if self.client.port() != 0 {
            m.extend(["--sport".into(), self.client.port().to_string()]);
        }
        m
    }

    /// iptables match arguments for server -> client.
    pub fn iptables_down(&self) -> Vec<String> {
        let mut m = vec!["-p".into(), "tcp".into(), "-s".into(), self.server.ip().to_string(), "-d".into(), self.client.ip().to_string()];
        m.extend(["--sport".into(), self.server.port().to_string()]);
        if self.client.port() != 0 {
            m.extend(["--dport".into(), self.client.port().to_string()]);
        }
        m
    }
}
