//! The nftables engine of the instant faults: the rules that drop or reset
//! one flow on the router's forward path, in the testbed's own table
//! (`inet kaspec_TAG`, chain `faults`), so healing is one `flush chain`.
//! Also the flow's iptables matches, for the NFQUEUE impairment engine (nft's
//! own `queue` expression is missing on some kernels that have the xtables
//! target).

use super::{FaultKind, Flow};

impl FaultKind {
    /// The nftables rules (for the `faults` chain) that realise this fault on
    /// `flow`; none for faults of another engine.
    pub fn nft_rules(self, flow: &Flow, tag: &str) -> Vec<String> {
        let up = flow.match_up();
        let down = flow.match_down();
        let c = |what: &str| format!("comment \"kaspec {tag} {} {what}\"", self.name());
        match self {
            FaultKind::Blackhole | FaultKind::Crash => {
                vec![format!("{up} counter drop {}", c("up")), format!("{down} counter drop {}", c("down"))]
            }
            FaultKind::BlackholeUp => vec![format!("{up} counter drop {}", c("up"))],
            FaultKind::BlackholeDown => vec![format!("{down} counter drop {}", c("down"))],
            FaultKind::Reset => vec![
                format!("{up} counter reject with tcp reset {}", c("up")),
                format!("{down} counter reject with tcp reset {}", c("down")),
            ],
            FaultKind::Freeze | FaultKind::NatExpiry | FaultKind::Delay | FaultKind::Loss | FaultKind::None => Vec::new(),
        }
    }
}

impl Flow {
    fn match_up(&self) -> String {
        let mut m = format!("ip saddr {} ip daddr {} tcp dport {}", self.client.ip(), self.server.ip(), self.server.port());
        if self.client.port() != 0 {
            m.push_str(&format!(" tcp sport {}", self.client.port()));
        }
        m
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

    fn match_down(&self) -> String {
        let mut m = format!("ip saddr {} ip daddr {} tcp sport {}", self.server.ip(), self.client.ip(), self.server.port());
        if self.client.port() != 0 {
            m.push_str(&format!(" tcp dport {}", self.client.port()));
        }
        m
    }
}
