//! The handler thread of a connection: admission first, then the queued
//! calls in arrival order, each under `catch_unwind`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;

use crate::admission::{Permit, WhenFull};
use crate::conn::{Conn, Incoming};
use crate::error::{Error, ErrorCode};
use crate::frame::{finish_frame, start_frame, Kind};
use crate::router::{Ctx, Router};

/// Keep at most this much reply buffer between calls.
const KEEP_BUF: usize = 1 << 20;

/// Runs the handlers of one connection until its inbox closes.
pub(crate) fn run_handlers(conn: Arc<Conn>, router: Arc<Router>) {
    let mut permit: Option<Permit> = None;
    let admission = conn.services.admission.clone();
    if let Some(adm) = &admission {
        if let WhenFull::Queue { max_wait } = adm.policy() {
            let ticket = conn
                .ticket
                .lock()
                .take()
                .unwrap_or_else(|| adm.enter(conn.peer));
            conn.place.store(ticket.id() + 1, Ordering::Release);
            match adm.wait(ticket, max_wait, &|| conn.is_closed()) {
                Ok(p) => permit = Some(p),
                Err(refusal) => {
                    // Answer what is queued, then let the connection go.
                    conn.inbox.close();
                    while let Some(inc) = conn.inbox.pop() {
                        refuse(&conn, &inc, ErrorCode::BUSY, &refusal.message);
                    }
                    conn.close();
                    return;
                }
            }
        }
    }
    let workers = router.max_concurrency();
    std::thread::scope(|s| {
        for _ in 1..workers {
            s.spawn(|| handler_loop(&conn, &router, &mut None));
        }
        handler_loop(&conn, &router, &mut permit);
    });
    router.disconnected(conn.id);
    drop(permit);
}

fn handler_loop(conn: &Arc<Conn>, router: &Router, permit: &mut Option<Permit>) {
    let mut out = BytesMut::with_capacity(1024);
    while let Some(inc) = conn.inbox.pop() {
        if permit.is_none() {
            if let Some(adm) = &conn.services.admission {
                if adm.policy() == WhenFull::Refuse {
                    match adm.try_acquire(conn.peer) {
                        Ok(p) => {
                            conn.place.store(p.ticket() + 1, Ordering::Release);
                            *permit = Some(p);
                        }
                        Err(r) => {
                            refuse(conn, &inc, ErrorCode::BUSY, &r.message);
                            continue;
                        }
                    }
                }
            }
        }
        handle_one(conn, router, inc, &mut out);
        if out.capacity() > KEEP_BUF {
            out = BytesMut::with_capacity(1024);
        }
    }
}

fn refuse(conn: &Conn, inc: &Incoming, code: ErrorCode, message: &str) {
    if inc.header.kind == Kind::Call {
        conn.send_error(inc.header.cmd, inc.header.id, code, message);
        conn.call_done(inc.header.id);
    }
}

fn handle_one(conn: &Arc<Conn>, router: &Router, inc: Incoming, out: &mut BytesMut) {
    let h = inc.header;
    let answer = h.kind == Kind::Call;
    if answer && conn.skip_if_cancelled(h.id) {
        return;
    }
    if conn.shutting_down.load(Ordering::Relaxed) {
        refuse(
            conn,
            &inc,
            ErrorCode::SHUTTING_DOWN,
            "server is shutting down",
        );
        return;
    }
    if conn.is_closed() {
        return;
    }
    let ctx = Ctx { conn, header: h };
    start_frame(out, Kind::Reply, h.cmd, h.id);
    let result = catch_unwind(AssertUnwindSafe(|| router.dispatch(&ctx, inc.payload, out)));
    if answer {
        match result {
            Ok(Ok(())) => match finish_frame(out, &conn.limits) {
                Ok(()) => {
                    let _ = conn.send(out);
                }
                Err(Error::TooLarge { len, max, .. }) => {
                    let msg = format!(
                        "too large: reply of {len} bytes exceeds the server's limit of {max} bytes"
                    );
                    conn.send_error(h.cmd, h.id, ErrorCode::TOO_LARGE, &msg);
                }
                Err(_) => {}
            },
            Ok(Err(e)) => conn.send_error(h.cmd, h.id, e.code(), e.message()),
            Err(panic) => {
                let what = crate::error::panic_message(&*panic);
                let msg = format!("handler for command {} panicked: {what}", h.cmd);
                conn.send_error(h.cmd, h.id, ErrorCode::PANIC, &msg);
            }
        }
        conn.call_done(h.id);
    }
}
