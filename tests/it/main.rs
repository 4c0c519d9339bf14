//! The `kaspec` command's one integration-test binary: the CLI as a user
//! drives it. Needs root. Try not to add another binary: add a module here.
//!
//! Index:
//! - [`cli`]: bad input, a real run writing its report, `list --markdown`
//!   against docs/cases.md, Ctrl-C, `kill -9` followed by `kaspec clean`,
//!   `compare` by run and by client on constructed reports.
//! - [`soak`]: SIGINT, SIGTERM and SIGKILL (+ `kaspec clean`) at seeded
//!   random moments of real runs leave nothing behind (`KASPEC_SOAK=N` for
//!   more trials).
//! - [`docker`]: the docker testbed against the netns testbed, from a stack
//!   built here without a registry.

mod cli;
mod docker;
mod soak;

/// Tests that change the root namespace's state (the docker test's stack
/// starts dockerd, which adds its nftables/iptables rules) or compare it
/// before and after (the soak test) take this lock: tests of one binary run
/// in parallel threads, and each must see only its own changes.
pub static ROOT_NAMESPACE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds [`ROOT_NAMESPACE`] for the rest of the calling test (a test that
/// failed while holding it does not poison the others).
pub fn root_namespace() -> std::sync::MutexGuard<'static, ()> {
    ROOT_NAMESPACE.lock().unwrap_or_else(|p| p.into_inner())
}
