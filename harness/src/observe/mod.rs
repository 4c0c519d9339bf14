//! Observers: what the hosts' kernels say about a case's connections, read
//! from inside each host's namespace, so they work for any client or server
//! without reading its logs.
//!
//! - `sockdiag.rs` (its items re-exported here): socket-level observation through
//!   sock_diag (inet_diag), as `ss` does — the socket table, the time since
//!   a connection last received, and a watch that timestamps the close;
//! - [`fleet`]: thousands of connections of one server with one dump per
//!   poll, and every connection's ages in one dump;
//! - [`release`]: the second verdict axis — whether each side released the
//!   flow's socket at the end of a case.

pub mod fleet;
pub mod release;
mod sockdiag;

pub use sockdiag::{last_data_recv_at, last_recv_at, local_end_towards, rto_rtt, tcp_state_name, unacked_at, Aged, SockDiag, SocketClosed, SocketWatch, TcpSocket, POLL_PERIOD};
