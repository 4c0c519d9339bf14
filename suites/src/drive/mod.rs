//! Shared client drivers: what every case does with the client library it
//! runs in the client host.

pub mod client;
pub mod sockopts;
