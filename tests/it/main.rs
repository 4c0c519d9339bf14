//! The `kaspec` command's one integration-test binary: the CLI as a user
//! drives it. Needs root. Try not to add another binary: add a module here.
//!
//! Index:
//! - [`cli`]: bad input, a real run writing its report, `list --markdown`
//!   against docs/cases.md, Ctrl-C, `kill -9` followed by `kaspec clean`.
//! - [`soak`]: SIGINT, SIGTERM and SIGKILL (+ `kaspec clean`) at seeded
//!   random moments of real runs leave nothing behind (`KASPEC_SOAK=N` for
//!   more trials).
//! - [`docker`]: the docker testbed against the netns testbed, from a stack
//!   built here without a registry.

mod cli;
mod docker;
mod soak;
