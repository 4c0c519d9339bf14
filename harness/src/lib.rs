//! kaspec-harness: everything a keepalive case needs that is not protocol
//! specific.
//!
//! - [`netns`]: the `netns` testbed — client, router and server hosts as
//!   network namespaces joined by veth pairs, addresses from 198.18.0.0/15.
//! - [`fault`]: faults applied on the router's forward path (nftables), with
//!   the instant the rule is in force.
//! - [`observe`]: socket-level observation through sock_diag (inet_diag), as
//!   `ss` does, from inside a host's namespace.
//! - [`server`]: real server processes with readiness and log capture.
//! - [`caps`]: what this machine offers (CAP_NET_ADMIN, nft, netem, conntrack).
//! - [`cleanup`]: the registry that removes tagged resources on drop, panic and
//!   Ctrl-C, and `kaspec clean` for what a killed run left.
//! - [`expect`] and [`report`]: expectations, verdicts and the versioned report.

pub mod caps;
pub mod compare;
pub mod docker;
pub mod cleanup;
pub mod cmd;
pub mod expect;
pub mod fault;
pub mod impair;
pub mod netns;
pub mod observe;
pub mod render;
pub mod report;
pub mod server;

/// A harness failure. Never a verdict: the case did not run as designed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{cmd}` failed ({context}): {detail}")]
    Command { context: String, cmd: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("server {name} did not become ready on {addr} within {waited_ms} ms (log {log}){tail}")]
    ServerNotReady { name: String, addr: String, waited_ms: u128, log: String, tail: String },
    #[error("missing prerequisite: {0}")]
    Capability(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { what: what.into(), source }
    }
}
