//! Any program as a client (`kaspec run --client FILE`): an adapter file
//! names the program, the command that runs it in the client host, what its
//! configuration implies and how it reports; a protocol's case runs it in
//! place of its library client, with the same server and the same server
//! window, and results name the program as the file says.
//!
//! - `config::adapter`: the file, checked whole before anything starts
//!   (parsing lives with the other inputs' parsers).
//! - [`expect`]: the client window from the algorithm the file declares.
//! - [`process`]: the program in the client host (tagged, killed on drop).
//! - [`run`]: one case with it: connect, fault, both sides watched.
//!
//! Shipped adapters live in `fixtures/clients/`; see docs/clients.md.

pub mod expect;
pub mod process;
pub mod run;

pub use crate::config::adapter::{self, Adapter, Observe};
