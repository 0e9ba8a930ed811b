//! Running a connection's calls: each under `catch_unwind`, in arrival
//! order, on whichever of the connection's threads read it (or finished
//! the call before it); and the jobs that spare threads do for a
//! connection (take over reading, wait for admission, run `on_connect`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;

use crate::admission::ReleaseReason;
use crate::conn::{Conn, Incoming, Role, Step, When};
use crate::error::{Error, ErrorCode};
use crate::frame::{finish_frame_with_tail, start_frame, Kind};
use crate::router::{builtin, Ctx, Router};

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

/// Before a server connection's calls may run: the `on_connect` hook, on
/// a spare thread, so the connection is read (ping, status) while it runs.
pub(crate) fn start(
    conn: &Arc<Conn>,
    on_connect: Option<impl FnOnce(&Arc<Conn>) + Send + 'static>,
) {
    let Some(hook) = on_connect else {
        return;
    };
    let c = Arc::clone(conn);
    conn.inbox.guest(true);
    let spawned = conn.services.helpers.as_ref().is_some_and(|h| {
        h.pool.run(move || {
            hook(&c);
            c.started();
            spare(c);
        })
    });
    if !spawned {
        conn.inbox.guest(false);
        conn.close();
    }
}

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
            run(conn, router, item, &mut out, When::Now);
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
                // More calls already read: the reply goes out with the next
                // write (one write for a batch of pipelined calls), at the
                // latest before a reader waits on the socket again.
                let when = if r.has_buffered_frame() {
                    When::Later
                } else {
                    When::Now
                };
                // Reading is free for another thread while this one runs
                // the call; the watchdog hands it over if the call is long.
                conn.put_role(r, true);
                run(conn, router, item, &mut out, when);
            }
            Step::End => {
                conn.finish();
                return;
            }
        }
    }
}

/// Runs one call (already counted as running) and marks it done.
fn run(conn: &Arc<Conn>, router: &Router, item: Incoming, out: &mut BytesMut, when: When) {
    let needs_device = item.needs_device;
    handle_one(conn, router, item, out, when);
    if needs_device {
        conn.device_call_done();
    }
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

fn handle_one(conn: &Arc<Conn>, router: &Router, inc: Incoming, out: &mut BytesMut, when: When) {
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
    if h.cmd == builtin::RELEASE {
        // `release` in its turn behind this connection's calls.
        conn.release_device(ReleaseReason::Released);
        if answer {
            let _ = conn.send_with(Kind::Reply, h.cmd, h.id, |_| {});
            conn.call_done(h.id);
        }
        return;
    }
    let ctx = Ctx { conn, header: h };
    start_frame(out, Kind::Reply, h.cmd, h.id);
    let result = catch_unwind(AssertUnwindSafe(|| router.dispatch(&ctx, inc.payload, out)));
    if answer {
        match result {
            Ok(Ok(tail)) => match finish_frame_with_tail(out, tail_len(&tail), &conn.limits) {
                Ok(()) => {
                    let _ = conn.send_when(out, tail.as_deref().unwrap_or_default(), when);
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
