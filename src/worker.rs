//! Running a connection's calls: admission first, then each call under
//! `catch_unwind`, in arrival order, on whichever of the connection's
//! threads read it (or finished the call before it).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;

use crate::admission::WhenFull;
use crate::conn::{Conn, Incoming, Role, Step};
use crate::error::{Error, ErrorCode};
use crate::frame::{finish_frame, start_frame, Kind};
use crate::router::{Ctx, Router};

/// Keep at most this much reply buffer between calls.
const KEEP_BUF: usize = 1 << 20;

/// The handler thread of a connection: admission first (a queued server
/// connection waits here, while its reader answers `ping` and `status`),
/// then [`serve`] until the connection ends.
pub(crate) fn run_handlers(conn: Arc<Conn>, router: Arc<Router>) {
    if let Some(adm) = &conn.services.admission {
        if let WhenFull::Queue { max_wait } = adm.policy() {
            let ticket = conn
                .ticket
                .lock()
                .take()
                .unwrap_or_else(|| adm.enter(conn.peer));
            conn.place.store(ticket.id() + 1, Ordering::Release);
            match adm.wait(ticket, max_wait, &|| conn.is_closed()) {
                Ok(p) => {
                    *conn.permit.lock() = Some(p);
                    conn.inbox.admit();
                }
                Err(refusal) => {
                    // Answer what is queued, then let the connection go.
                    conn.inbox.close();
                    for inc in conn.inbox.drain() {
                        refuse(&conn, &inc, ErrorCode::BUSY, &refusal.message);
                    }
                    conn.close();
                    return;
                }
            }
        }
    }
    serve(&conn, &router, None);
}

/// The loop every thread of a connection runs: run a call that may run;
/// else take the reader role if it is free and read (running a call at
/// once when nothing else runs); else wait for work or for a request to
/// take over reading. Returns when the connection ends.
pub(crate) fn serve(conn: &Arc<Conn>, router: &Router, mut role: Option<Role>) {
    let mut out = BytesMut::with_capacity(1024);
    loop {
        if let Some(item) = conn.inbox.try_take() {
            if let Some(r) = role.take() {
                *conn.role.lock() = Some(r);
            }
            run(conn, router, item, &mut out);
            continue;
        }
        if role.is_none() && conn.shares_reading() {
            role = conn.role.lock().take();
        }
        let Some(mut r) = role.take() else {
            if !conn.inbox.wait_for_work() {
                return;
            }
            continue;
        };
        match conn.read_step(&mut r) {
            Step::Continue => role = Some(r),
            Step::Run(item) => {
                // Reading is free for another thread while this one runs
                // the call; the watchdog hands it over if the call is long.
                *conn.role.lock() = Some(r);
                run(conn, router, item, &mut out);
            }
            Step::End => {
                conn.finish();
                return;
            }
        }
    }
}

/// Runs one call (already counted as running) and marks it done.
fn run(conn: &Arc<Conn>, router: &Router, item: Incoming, out: &mut BytesMut) {
    conn.mark_running(true);
    handle_one(conn, router, item, out);
    conn.mark_running(false);
    conn.inbox.done();
    if out.capacity() > KEEP_BUF {
        *out = BytesMut::with_capacity(1024);
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
