//! Whether each side released the flow at the end of a case (the second
//! verdict axis, as Autobahn's close behaviour): the flow's socket on the
//! client host and on the server host, read through sock_diag while the path
//! is still faulted, judged by [`Release::from_state`] (gone, or a state the
//! application's close leads to, is released; ESTABLISHED or CLOSE-WAIT is a
//! leak).

use std::net::SocketAddrV4;

use super::{tcp_state_name, SockDiag};
use crate::host::Host;
use crate::report::Release;
use crate::testbed::Testbed;

/// The second verdict axis, per side (`None`: that side could not be read).
#[derive(Debug, Clone, Default)]
pub struct Releases {
    pub client: Option<Release>,
    pub server: Option<Release>,
}

/// The flow's sockets on both hosts at the end of a case, path still
/// faulted. `client_local` is the client's end, `server` the server's
/// address; the server sees the client as [`Testbed::seen_by_server`] says
/// (through a NAT, the router's address).
pub fn releases(tb: &Testbed, client_local: SocketAddrV4, server: SocketAddrV4) -> Releases {
    let seen = tb.seen_by_server(client_local);
    Releases {
        client: socket_state(&tb.client, client_local, server).map(|s| Release::from_state(s.as_deref())),
        server: socket_state(&tb.server, server, seen).map(|s| Release::from_state(s.as_deref())),
    }
}

/// The state of the socket `local <-> remote` in `host`: `Some(None)` when
/// it is gone, `None` when the table could not be read.
fn socket_state(host: &Host, local: SocketAddrV4, remote: SocketAddrV4) -> Option<Option<String>> {
    host.run(move || {
        let sockets = SockDiag::new().and_then(|mut d| d.dump_tcp()).ok()?;
        Some(sockets.into_iter().find(|s| s.local == local && s.remote == remote).map(|s| tcp_state_name(s.state).to_string()))
    })
    .ok()
    .flatten()
}
