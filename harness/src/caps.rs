//! What this machine offers, detected once and written into every report.

use std::sync::OnceLock;

use serde::Serialize;

use crate::cmd;
use crate::host::Host;
use crate::{Error, Result};

/// Fault engines and tools available here.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Capabilities {
    /// nftables works in a namespace (blackhole, reset).
    pub nftables: bool,
    /// `nft --version`
    pub nft_version: String,
    /// Kernel `sch_netem` can be attached (delay, loss). Absent on some kernels.
    pub netem: bool,
    /// Why netem is absent, verbatim from `tc`.
    pub netem_error: Option<String>,
    /// Connection tracking is available (NAT expiry).
    pub conntrack: bool,
    /// `uname -r`
    pub kernel: String,
}

static DETECTED: OnceLock<Capabilities> = OnceLock::new();

fn has_cap_net_admin() -> bool {
    // CapEff is a hex mask; CAP_NET_ADMIN is bit 12.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("CapEff:")).map(|l| l[7..].trim().to_string()))
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .map(|mask| mask & (1 << 12) != 0)
        .unwrap_or(false)
}

/// The prerequisites of the netns testbed, each missing one named with how to
/// get it, in one line.
pub fn require_base() -> Result<()> {
    let mut missing = Vec::new();
    if !has_cap_net_admin() {
        missing.push("CAP_NET_ADMIN (run as root, e.g. `sudo kaspec ...`)".to_string());
    }
    if !cmd::ok("ip", &["-V"]) {
        missing.push("`ip` (apt-get install iproute2)".to_string());
    }
    if !cmd::ok("nft", &["--version"]) {
        missing.push("`nft` (apt-get install nftables)".to_string());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Capability(format!("{}; or run fixtures/bootstrap.sh", missing.join(", "))))
    }
}

/// Detects the fault engines once, inside `router` (one of our namespaces, so
/// the probe changes nothing on the machine).
pub fn detect(router: &Host) -> Capabilities {
    DETECTED
        .get_or_init(|| {
            let kernel = cmd::run("kernel version", "uname", &["-r"], None).unwrap_or_default().trim().to_string();
            let nft_version = cmd::run("nft version", "nft", &["--version"], None).unwrap_or_default().trim().to_string();
            let netem = cmd::run(
                "probing netem",
                "ip",
                &["netns", "exec", &router.ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                None,
            );
            let (netem, netem_error) = match netem {
                Ok(_) => {
                    let _ = cmd::run("netem cleanup", "ip", &["netns", "exec", &router.ns, "tc", "qdisc", "del", "dev", "lo", "root"], None);
                    (true, None)
                }
                Err(Error::Command { detail, .. }) => (false, Some(detail)),
                Err(e) => (false, Some(e.to_string())),
            };
            let conntrack = cmd::ok("ip", &["netns", "exec", &router.ns, "test", "-e", "/proc/sys/net/netfilter/nf_conntrack_max"]);
            Capabilities { nftables: true, nft_version, netem, netem_error, conntrack, kernel }
        })
        .clone()
}

/// One-line check that a server binary exists, with the package to install.
pub fn require_program(program: &str, package: &str) -> Result<std::path::PathBuf> {
    which(program).ok_or_else(|| {
        Error::Capability(format!("server binary `{program}` not found in PATH (apt-get install {package}, or run fixtures/bootstrap.sh)"))
    })
}

/// Finds `program` in PATH (plus the sbin directories, which a non-login
/// root shell may lack).
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|d| std::path::Path::new(d).join(program))
        .find(|p| p.is_file());
    found
}

/// The capabilities detected so far in this process (after a first testbed).
pub fn detected() -> Option<Capabilities> {
    DETECTED.get().cloned()
}
