//! kaspec-harness: everything a keepalive case needs that is not protocol
//! specific.
//!
//! The modules, each importing only those listed before it (checked by
//! [`layout::assert_import_dag`] in `layout_tests`):
//!
//! - [`cmd`]: running the system tools (iproute2, nft) at set-up.
//! - [`cleanup`]: the registry that removes tagged resources on drop, panic and
//!   Ctrl-C, and `kaspec clean` for what a killed run left; subsystems
//!   register their own part ([`cleanup::Cleaner`]).
//! - [`host`]: one isolated network stack (a namespace) that runs threads and
//!   processes inside it — a leaf.
//! - [`caps`]: what this machine offers (CAP_NET_ADMIN, nft, netem, conntrack).
//! - [`fault`]: faults applied on the router's forward path (nftables), to the
//!   server process (signals) and as impairment (netem / NFQUEUE), with the
//!   instant each is in force.
//! - [`expect`]: expectations, the judge and verdicts.
//! - [`report`]: the versioned report model and its renderings
//!   (Markdown, HTML, JUnit) and `kaspec compare`.
//! - [`testbed`]: client, router and server hosts as network namespaces
//!   joined by veth pairs (addresses from 198.18.0.0/15), with NAT; or the
//!   `docker` testbed, whose server host is a compose container.
//! - [`observe`]: socket-level observation through sock_diag (inet_diag), as
//!   `ss` does, from inside a host's namespace; whether each side released.
//! - [`server`]: real server processes with readiness and log capture.
//! - [`layout`]: the checks of a crate's source layout (no import cycle,
//!   no file over 600 lines), for every crate of the workspace.

pub mod caps;
pub mod cleanup;
pub mod cmd;
pub mod expect;
pub mod judge;
pub mod fault;
pub mod host;
pub mod layout;
pub mod observe;
pub mod report;
pub mod server;
pub mod testbed;
pub mod wake;
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

#[cfg(test)]
mod layout_tests {
    use std::path::{Path, PathBuf};

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    #[test]
    fn harness_modules_import_each_other_without_cycles() {
        crate::layout::assert_import_dag(&src(), "kaspec_harness");
    }

    #[test]
    fn no_harness_source_file_is_over_600_lines() {
        crate::layout::assert_file_sizes(&src(), 600, &[]);
    }

    #[test]
    fn a_cycle_is_found_and_named() {
        let dir = std::env::temp_dir().join(format!("kaspec-layout-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("b")).unwrap();
        std::fs::write(dir.join("lib.rs"), "pub mod a; pub mod b; pub mod c;\nuse crate::a::X;\n").unwrap();
        std::fs::write(dir.join("a.rs"), "use crate::{b::Y, Error};\n// crate::c is only named in a comment\nconst S: &str = \"crate::c\";\n").unwrap();
        std::fs::write(dir.join("b/mod.rs"), "mod inner;\nfn f() { mycrate::c::g(); }\n").unwrap();
        std::fs::write(dir.join("b/inner.rs"), "fn f() -> crate::c::Z { todo!() }\n").unwrap();
        std::fs::write(dir.join("c.rs"), "fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::a::X;\n}\n").unwrap();
        let g = crate::layout::import_graph(&dir, "mycrate");
        let edges = |m: &str| g[m].iter().cloned().collect::<Vec<_>>();
        assert_eq!(edges("a"), vec!["b"], "grouped import; comments and strings do not count");
        assert_eq!(edges("b"), vec!["c"], "a submodule counts for its top-level module; the crate name counts");
        assert!(edges("c").is_empty(), "unit tests may look anywhere");
        assert_eq!(crate::layout::find_cycle(&g), None);
        std::fs::write(dir.join("c.rs"), "use crate::a;\n").unwrap();
        let g = crate::layout::import_graph(&dir, "mycrate");
        assert_eq!(crate::layout::find_cycle(&g).unwrap(), vec!["a", "b", "c", "a"]);
        let panic = std::panic::catch_unwind(|| crate::layout::assert_import_dag(&dir, "mycrate")).unwrap_err();
        let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("a -> b -> c -> a"), "{msg}");
        let long = std::panic::catch_unwind(|| crate::layout::assert_file_sizes(&dir, 2, &[])).unwrap_err();
        assert!(long.downcast_ref::<String>().unwrap().contains("a.rs: 3 lines"));
        crate::layout::assert_file_sizes(&dir, 2, &[("a.rs", "a flat table")]);
        let stale = std::panic::catch_unwind(|| crate::layout::assert_file_sizes(&dir, 2, &[("a.rs", "t"), ("c.rs", "t")])).unwrap_err();
        assert!(stale.downcast_ref::<String>().unwrap().contains("c.rs: exempted, but not"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
