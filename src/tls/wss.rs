//! `wss://`: the WebSocket upgrade inside TLS.

use std::sync::Arc;
use std::time::Instant;

use super::session::{Session, TlsRead};
use crate::server::Shared;
use crate::ws::WsConfig;

/// Serves a WebSocket upgrade that arrived inside TLS (`GET ` read).
pub(crate) fn serve(
    _shared: &Arc<Shared>,
    _ws: &WsConfig,
    _id: u64,
    _sess: Arc<Session>,
    _read: TlsRead,
    _deadline: Instant,
) {
}
