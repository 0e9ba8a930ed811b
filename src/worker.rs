//! Running a connection's calls: each under `catch_unwind`, in arrival
//! order, on whichever of the connection's threads read it (or finished
//! the call before it); and the jobs that spare threads do for a
//! connection (take over reading, wait for admission, run `on_connect`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;

use crate::admission::WhenFull;
use crate::conn::{Conn, Incoming, Role, Step};
use crate::error::{Error, ErrorCode};
use crate::frame::{finish_frame_with_tail, start_frame, Kind};
use crate::router::{Ctx, Router};

/// Keep at most this much reply buffer between calls.
const KEEP_BUF: usize = 1 << 20;

/// Which thread of a connection runs [`serve`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The connection's own thread: it stays until the connection ends.
    Home,
    /// A spare thread: it leaves as soon as the connection is quiet (no
    /// call running or queued) or another thread reads.
    Spare,
}

/// Before a server connection's calls may run: the `on_connect` hook, then
/// an admission permit. Done at once when nothing waits; otherwise on a
/// spare thread, so the connection is read (ping, status, queue) while it
/// waits.
pub(crate) fn start(
    conn: &Arc<Conn>,
    on_connect: Option<impl FnOnce(&Arc<Conn>) + Send + 'static>,
) {
    if on_connect.is_none() && admit_now(conn) {
        return;
    }
    let c = Arc::clone(conn);
    conn.inbox.guest(true);
    let spawned = conn.services.helpers.as_ref().is_some_and(|h| {
        h.pool.run(move || {
            if let Some(hook) = on_connect {
                hook(&c);
                c.started();
            }
            if admit_now(&c) || wait_for_permit(&c) {
                spare(c);
            } else {
                c.inbox.guest(false);
            }
        })
    });
    if !spawned {
        conn.inbox.guest(false);
        conn.close();
    }
}

/// Takes a permit if one is free now (always, without a user limit).
/// False when the connection must wait in the queue.
fn admit_now(conn: &Arc<Conn>) -> bool {
    let Some(adm) = &conn.services.admission else {
        return true;
    };
    if adm.policy() == WhenFull::Refuse {
        return true; // admitted by its first call that finds a slot
    }
    let ticket = conn
        .seat
        .ticket
        .lock()
        .take()
        .unwrap_or_else(|| adm.enter(conn.peer));
    conn.seat.place.store(ticket.id() + 1, Ordering::Release);
    match adm.try_admit(ticket) {
        Ok(p) => {
            *conn.seat.permit.lock() = Some(p);
            conn.inbox.admit();
            true
        }
        Err(ticket) => {
            *conn.seat.ticket.lock() = Some(ticket);
            false
        }
    }
}

/// Waits in the admission queue; on a refusal answers what is queued with
/// BUSY and closes the connection. True once admitted.
fn wait_for_permit(conn: &Arc<Conn>) -> bool {
    let Some(adm) = &conn.services.admission else {
        return true;
    };
    let WhenFull::Queue { max_wait } = adm.policy() else {
        return true;
    };
    let Some(ticket) = conn.seat.ticket.lock().take() else {
        return true;
    };
    match adm.wait(ticket, max_wait, &|| conn.is_closed()) {
        Ok(p) => {
            *conn.seat.permit.lock() = Some(p);
            conn.inbox.admit();
            true
        }
        Err(refusal) => {
            // Answer what is queued, then let the connection go.
            conn.inbox.close();
            for inc in conn.inbox.drain() {
                refuse(conn, &inc, ErrorCode::BUSY, &refusal.message);
            }
            conn.close();
            false
        }
    }
}

/// A spare thread's job for a connection: read and run its calls until
/// it is quiet again.
/// Counted as a guest of the connection (see [`Conn::spawn_helper`]).
pub(crate) fn spare(conn: Arc<Conn>) {
    if let Some(router) = conn.services.router.clone() {
        serve(&conn, &router, None, Part::Spare);
    }
    conn.inbox.guest(false);
}

/// The loop a connection's threads run: run a call that may run; else
/// take the reader role if it is free and read (running a call at once
/// when nothing else runs); else wait for work or for the role (the home
/// thread) or leave (a spare thread). The home thread returns when the
/// connection ends.
pub(crate) fn serve(conn: &Arc<Conn>, router: &Router, mut role: Option<Role>, part: Part) {
    let mut out = BytesMut::new();
    loop {
        if let Some(item) = conn.inbox.try_take() {
            if let Some(r) = role.take() {
                conn.put_role(r, true);
            }
            run(conn, router, item, &mut out);
            continue;
        }
        if role.is_none() && conn.shares_reading() {
            role = conn.role.lock().take();
        }
        let Some(mut r) = role.take() else {
            if part == Part::Spare || !conn.inbox.wait_for_work() {
                return;
            }
            continue;
        };
        if part == Part::Spare && conn.inbox.is_quiet() {
            // Reading goes back to the home thread.
            conn.put_role(r, false);
            conn.inbox.hand_over();
            return;
        }
        match conn.read_step(&mut r) {
            Step::Continue => role = Some(r),
            Step::Run(item) => {
                // Reading is free for another thread while this one runs
                // the call; the watchdog hands it over if the call is long.
                conn.put_role(r, true);
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
        *out = BytesMut::new();
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
    if answer && conn.calls.skip_if_cancelled(h.id) {
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
            Ok(Ok(tail)) => match finish_frame_with_tail(out, tail_len(&tail), &conn.limits) {
                Ok(()) => {
                    let _ = conn.send_parts(out, tail.as_deref().unwrap_or_default());
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

fn tail_len(tail: &Option<bytes::Bytes>) -> usize {
    tail.as_ref().map_or(0, |t| t.len())
}
