//! Shared client drivers: what every case does with the client library it
//! runs in the client host: one client ([`client`]), or a fleet of
//! thousands of connections cut at once ([`fleet`]); a busy client's
//! workload ([`busy`]).

pub mod busy;
pub mod client;
pub mod fleet;
pub mod sockopts;
