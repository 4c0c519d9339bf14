//! What a protocol folder registers: its cases, the check that its servers
//! are installed, and its `kaspec validate` rules. `registry.rs` lists them.

use crate::case::CaseDef;
use crate::config::{Config, Key};
use crate::network::NetworkProfile;
use crate::rules::Finding;

/// A protocol: its cases and what its servers need installed. Each protocol
/// folder defines one; `registry.rs` lists them.
pub struct Protocol {
    pub name: &'static str,
    pub cases: &'static [&'static CaseDef],
    /// Its client knobs (`<name>.*`, declared in its `knobs.rs`), which
    /// `--set` and profiles take.
    pub knobs: &'static [&'static Key],
    /// Checks, before anything starts, that the servers of these cases are
    /// installed (the error names the package to install).
    pub prerequisites: fn() -> kaspec_harness::Result<()>,
    /// `kaspec validate`'s rules for this protocol's knobs (see rules.rs).
    pub review: fn(&Config, Option<&NetworkProfile>) -> Vec<Finding>,
    /// The ids of its cases that run an external client (`--client FILE`)
    /// in place of their library client (see `external/`).
    pub external: &'static [&'static str],
}
