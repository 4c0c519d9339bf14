//! Observers: what the hosts' kernels say about a case's connections, read
//! from inside each host's namespace, so they work for any client or server
//! without reading its logs.
//!
//! - `sockdiag.rs` (its items re-exported here): socket-level observation through
//!   sock_diag (inet_diag), as `ss` does — the socket table, the time since
//!   a connection last received, and a watch that timestamps the close;
//! - [`release`]: the second verdict axis — whether each side released the
//!   flow's socket at the end of a case.

pub mod release;
mod sockdiag;

pub use sockdiag::{local_end_towards, last_data_recv_at, last_recv_at, tcp_state_name, SockDiag, SocketClosed, SocketWatch, TcpSocket, POLL_PERIOD};
