//! `wss://`: the WebSocket upgrade inside TLS. The same upgrade as on a
//! plain port (head bounds, `Host`, `Origin`, path and token checks, one
//! whole frame per binary message), with the TLS session as the byte
//! stream: the reader reads plaintext with no lock held on the socket, the
//! writers write through the session's send path.

use std::sync::Arc;
use std::time::Instant;

use super::session::{Session, TlsRead};
use crate::server::Shared;
use crate::ws::{Sink, Source, WsConfig};

/// Serves a WebSocket upgrade that arrived inside TLS (`GET ` read), under
/// the handshake deadline that started with the connection's first byte.
pub(crate) fn serve(
    shared: &Arc<Shared>,
    ws: &WsConfig,
    id: u64,
    sess: Arc<Session>,
    read: TlsRead,
    deadline: Instant,
) {
    let peer = sess.peer_addr();
    crate::ws::serve_upgrade(
        shared,
        ws,
        id,
        Source::Tls(read),
        Sink::Tls(sess),
        deadline,
        peer,
    );
}
