//! Faults applied on the router's forward path, never on an endpoint's own
//! stack: a drop inside an endpoint's namespace is reported to that endpoint's
//! TCP as a local error (EPERM/ENOBUFS), which is not what a dead path looks
//! like. A middle hop that silently drops or resets is.

use std::fmt;
use std::net::SocketAddrV4;
use std::time::Instant;

use serde::Serialize;

/// The faults of the netns testbed's nftables engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Drop both directions: the path is dead, nobody is told.
    Blackhole,
    /// Drop client -> server only.
    BlackholeUp,
    /// Drop server -> client only.
    BlackholeDown,
    /// Drop both directions and answer each dropped TCP segment with an RST to
    /// its sender (what a middlebox that lost the flow, or a rebooted peer, does).
    Reset,
    /// SIGSTOP the server process (SIGCONT at heal): its kernel keeps the TCP
    /// connection up and answers keep-alive probes; only an application-level
    /// heartbeat can notice.
    Freeze,
    /// The server host dies without a FIN or RST reaching anyone: the path is
    /// blackholed first, then the server process is SIGKILLed (its kernel's
    /// FIN/RST die at the router). The survivor sees a dead path.
    Crash,
    /// The router is a real masquerading NAT that forgets a TCP flow idle
    /// longer than its timeout (conntrack timeout policy); the fault is in
    /// force when the flow's mapping expires. A property of the path from the
    /// start, so only cases built for it take it.
    NatExpiry,
    /// The path gets slower, from the instant it is applied: round trip and
    /// jitter of the network profile (`--network`), else 300 ms. The peer is
    /// alive: a detection is a false positive unless the settings predict it.
    Delay,
    /// The path loses packets (each direction), with the profile's delay and
    /// jitter: the loss of the network profile, else 2%. The peer is alive.
    Loss,
    /// No fault: cases that check behaviour on a healthy path.
    None,
}

impl FaultKind {
    /// The faults applied at an instant to an established connection (all
    /// but nat-expiry, which is a property of the path from the start).
    pub const INSTANT: [FaultKind; 6] = [
        FaultKind::Blackhole,
        FaultKind::BlackholeUp,
        FaultKind::BlackholeDown,
        FaultKind::Reset,
        FaultKind::Freeze,
        FaultKind::Crash,
    ];

    /// Impairments of a path whose peer stays alive.
    pub const IMPAIR: [FaultKind; 2] = [FaultKind::Delay, FaultKind::Loss];

    /// The instant faults and the impairments: what an idle heartbeat case takes.
    pub const INSTANT_AND_IMPAIR: [FaultKind; 8] = {
        let i = Self::INSTANT;
        [i[0], i[1], i[2], i[3], i[4], i[5], FaultKind::Delay, FaultKind::Loss]
    };

    /// Every fault a user can ask for (`--fault all`): the instant ones,
    /// nat-expiry and the impairments.
    pub const ALL: [FaultKind; 9] = {
        let i = Self::INSTANT;
        [i[0], i[1], i[2], i[3], i[4], i[5], FaultKind::NatExpiry, FaultKind::Delay, FaultKind::Loss]
    };

    /// Whether the peer stays alive under this fault (a detection is false).
    pub fn peer_alive(self) -> bool {
        matches!(self, FaultKind::Delay | FaultKind::Loss | FaultKind::None)
    }

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Blackhole => "blackhole",
            FaultKind::BlackholeUp => "blackhole-up",
            FaultKind::BlackholeDown => "blackhole-down",
            FaultKind::Reset => "reset",
            FaultKind::Freeze => "freeze",
            FaultKind::Crash => "crash",
            FaultKind::NatExpiry => "nat-expiry",
            FaultKind::Delay => "delay",
            FaultKind::Loss => "loss",
            FaultKind::None => "none",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            FaultKind::Blackhole => "drop both directions on the router",
            FaultKind::BlackholeUp => "drop client->server on the router",
            FaultKind::BlackholeDown => "drop server->client on the router",
            FaultKind::Reset => "drop both directions on the router and answer with TCP RST",
            FaultKind::Freeze => "SIGSTOP the server process; its kernel stays up",
            FaultKind::Crash => "blackhole both directions, then SIGKILL the server: a host dying without FIN",
            FaultKind::NatExpiry => "the router's NAT forgets a flow idle longer than its timeout",
            FaultKind::Delay => "the router delays the flow (round trip and jitter of --network, else 300 ms)",
            FaultKind::Loss => "the router drops a share of the flow's packets (loss of --network, else 2%)",
            FaultKind::None => "no fault",
        }
    }

    /// Parses a fault name; the error lists the allowed names.
    pub fn parse(s: &str) -> Result<FaultKind, String> {
        // `none` is internal (cases without a fault), not in ALL.
        FaultKind::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown fault `{s}` (allowed: {})", FaultKind::ALL.map(|f| f.name()).join(", ")))
    }

    /// What applies this fault.
    pub fn engine(self) -> &'static str {
        match self {
            FaultKind::Freeze => "SIGSTOP",
            FaultKind::Crash => "nftables + SIGKILL",
            FaultKind::NatExpiry => "nftables masquerade + conntrack timeout",
            FaultKind::Delay | FaultKind::Loss => "netem or nfqueue",
            FaultKind::None => "none",
            _ => "nftables",
        }
    }

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

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One TCP flow between client and server. A client port of 0 matches every
/// connection from the client's address to the server's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub client: SocketAddrV4,
    pub server: SocketAddrV4,
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

/// A fault in force.
#[derive(Debug, Clone)]
pub struct AppliedFault {
    pub kind: FaultKind,
    /// What applied it (`nftables`).
    pub engine: String,
    /// The rules as committed.
    pub rules: Vec<String>,
    pub requested_at: Instant,
    /// Taken after the rule was committed: detection latency counts from here.
    pub in_force_at: Instant,
    /// The process a freeze stopped.
    pub pid: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_the_flow_in_the_right_direction() {
        let flow = Flow { client: "198.18.0.2:40000".parse().unwrap(), server: "198.19.0.2:1883".parse().unwrap() };
        let up = FaultKind::BlackholeUp.nft_rules(&flow, "abc123");
        assert_eq!(up.len(), 1);
        assert!(up[0].starts_with("ip saddr 198.18.0.2 ip daddr 198.19.0.2 tcp dport 1883 tcp sport 40000 counter drop"));
        let down = FaultKind::BlackholeDown.nft_rules(&flow, "abc123");
        assert!(down[0].starts_with("ip saddr 198.19.0.2 ip daddr 198.18.0.2 tcp sport 1883 tcp dport 40000"));
        assert!(FaultKind::Reset.nft_rules(&flow, "t").iter().all(|r| r.contains("reject with tcp reset")));
        assert_eq!(FaultKind::Blackhole.nft_rules(&flow, "t").len(), 2);
        assert!(FaultKind::Freeze.nft_rules(&flow, "t").is_empty());
        assert_eq!(FaultKind::Freeze.engine(), "SIGSTOP");
        assert_eq!(FaultKind::Crash.nft_rules(&flow, "t").len(), 2, "crash blackholes first");
        assert!(!FaultKind::INSTANT.contains(&FaultKind::NatExpiry));
        assert!(FaultKind::parse("none").is_err(), "none is not a fault a user asks for");
    }

    #[test]
    fn unknown_fault_names_the_allowed_ones() {
        let e = FaultKind::parse("blakhole").unwrap_err();
        assert!(e.contains("blakhole") && e.contains("blackhole-down"), "{e}");
        assert_eq!(FaultKind::parse("reset").unwrap(), FaultKind::Reset);
    }
}
