//! The client side: a [`Session`] on one connection and lazy [`Proxy`]
//! values.
//!
//! Attribute access, indexing and calls return a new proxy at once. A call
//! is sent right away as a one-way NOTIFY frame that names the handle its
//! result will have on the server (the client numbers them), so later calls
//! can use the result before it exists, as Cap'n Proto pipelines promises.
//! Only [`Proxy::materialize`] (and [`Session::sync`]) sends a CALL and
//! waits: k chained calls and one materialize cost one round trip.
//!
//! Dropping the last proxy of a handle queues its release; queued releases
//! ride on the next request, so a drop never costs a message of its own.
//! The server frees every handle of the connection when it ends.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use parking_lot::Mutex;

use super::describe::Description;
use super::space::DYNAMIC;
use super::value::{put_array_len, put_ext, FromValue, Value, DEFAULT_MAX_DEPTH};
use super::wire::{put_call, put_ref, put_releases, Base, Step, EXT_ENVELOPE, EXT_HANDLE, EXT_REF};
use crate::client::Client;
use crate::error::{DecodeError, Error, ErrorCode};
use crate::peer::Peer;

struct SessionInner {
    peer: Peer,
    command: u16,
    next_slot: AtomicU64,
    releases: Mutex<Vec<u64>>,
    refusals: Mutex<Vec<Refusal>>,
}

/// A one-way request the server refused: none of its calls ran, and the
/// slots it named hold this refusal (materializing them, or anything that
/// depends on them, returns it). Reported once, alongside the next reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The request's number on this connection and command, counting
    /// every NOTIFY and CALL the server received from 1 (0: a summary of
    /// refusals the server did not list).
    pub request: u64,
    /// How many calls it carried (0 if it did not decode).
    pub calls: u64,
    /// The slots its calls named (at most the first 32).
    pub slots: Vec<u64>,
    /// The error code (2 BAD_PAYLOAD for a malformed request or a reused
    /// slot, 3 HANDLER for a full handle table).
    pub code: ErrorCode,
    /// Why, naming the rule it broke.
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request {}: {}", self.request, self.message)
    }
}

impl SessionInner {
    fn take_releases(&self) -> Vec<u64> {
        std::mem::take(&mut *self.releases.lock())
    }

    /// Requeues releases whose message could not be sent.
    fn requeue(&self, ids: Vec<u64>) {
        self.releases.lock().extend(ids);
    }
}

impl Drop for SessionInner {
    fn drop(&mut self) {
        // Last words: free what this session still holds, if the
        // connection is up (best effort; disconnecting frees it anyway).
        let ids = self.take_releases();
        if !ids.is_empty() && self.peer.is_connected() {
            let _ = self
                .peer
                .notify_with(self.command, |b| put_releases_only(b, &ids));
        }
    }
}

/// The dynamic layer on one connection. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Session(Arc<SessionInner>);

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.0.peer)
            .field("command", &self.0.command)
            .field("pending_releases", &self.pending_releases())
            .finish()
    }
}

impl Session {
    /// A session on `client`'s connection, using command [`DYNAMIC`].
    pub fn new(client: &Client) -> Self {
        Self::with_command(client.peer().clone(), DYNAMIC)
    }

    /// A session on any connection (a server can drive a client's space
    /// through [`Ctx::peer`](crate::Ctx::peer)), on command id `command`.
    pub fn with_command(peer: Peer, command: u16) -> Self {
        Self(Arc::new(SessionInner {
            peer,
            command,
            next_slot: AtomicU64::new(1),
            releases: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
        }))
    }

    /// A proxy for the registered root `name`. Sends nothing.
    pub fn root(&self, name: &str) -> Proxy {
        Proxy {
            session: Arc::clone(&self.0),
            base: PBase::Root(name.into()),
            steps: Vec::new(),
        }
    }

    /// Waits until the server has run every call sent so far (one round
    /// trip). If one-way requests were refused and not yet taken with
    /// [`Session::take_refusals`], returns them as one error (code of the
    /// first) and forgets them: each refusal is reported once.
    pub fn sync(&self) -> Result<(), Error> {
        request(&self.0, None)?;
        let refused = self.take_refusals();
        let Some(first) = refused.first() else {
            return Ok(());
        };
        let all: Vec<String> = refused.iter().map(ToString::to_string).collect();
        Err(Error::remote(
            first.code,
            format!(
                "{} one-way request{} refused (none of {} calls ran): {}",
                refused.len(),
                if refused.len() == 1 { " was" } else { "s were" },
                if refused.len() == 1 { "its" } else { "their" },
                all.join("; ")
            ),
        ))
    }

    /// One-way requests the server reported refused since the last call
    /// of this (or of [`Session::sync`]); each is reported once.
    pub fn take_refusals(&self) -> Vec<Refusal> {
        std::mem::take(&mut *self.0.refusals.lock())
    }

    /// Sends queued releases now, as one NOTIFY (they otherwise wait for
    /// the next request). Does nothing when none are queued.
    pub fn flush(&self) -> Result<(), Error> {
        let ids = self.0.take_releases();
        if ids.is_empty() {
            return Ok(());
        }
        self.0
            .peer
            .notify_with(self.0.command, |b| put_releases_only(b, &ids))
            .inspect_err(|_| self.0.requeue(ids))
    }

    /// Releases queued and not yet sent.
    pub fn pending_releases(&self) -> usize {
        self.0.releases.lock().len()
    }
}

/// Keeps a server handle alive; its drop queues the release.
struct HandleGuard {
    id: u64,
    session: Arc<SessionInner>,
}

impl Drop for HandleGuard {
    fn drop(&mut self) {
        self.session.releases.lock().push(self.id);
    }
}

#[derive(Clone)]
enum PBase {
    Root(Arc<str>),
    Handle(Arc<HandleGuard>),
    /// The call could not be sent: the error every dependent reports.
    Failed(Arc<(ErrorCode, String)>),
}

/// A lazy reference to a remote value: a root, the result of a call, or a
/// path from one of them. Cheap to clone; never waits except in
/// [`Proxy::materialize`].
#[derive(Clone)]
pub struct Proxy {
    session: Arc<SessionInner>,
    base: PBase,
    steps: Vec<Step>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Proxy").field(&self.label()).finish()
    }
}

impl PartialEq for Proxy {
    fn eq(&self, other: &Self) -> bool {
        let same_base = match (&self.base, &other.base) {
            (PBase::Root(a), PBase::Root(b)) => a == b,
            (PBase::Handle(a), PBase::Handle(b)) => a.id == b.id,
            (PBase::Failed(a), PBase::Failed(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        Arc::ptr_eq(&self.session, &other.session) && same_base && self.steps == other.steps
    }
}

/// Positional and keyword arguments of a call. Tuples of values convert:
/// `proxy.call((3, 2))`; `()` is no argument.
///
/// ```
/// use framerpc::dynamic::Args;
/// let a = Args::new().arg(1.5).kw("seed", 1);
/// # let _ = a;
/// ```
#[derive(Clone, Debug, Default)]
pub struct Args {
    pos: Vec<Value>,
    kw: Vec<(String, Value)>,
}

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a positional argument (a `&Proxy` passes a remote value).
    #[must_use]
    pub fn arg(mut self, v: impl Into<Value>) -> Self {
        self.pos.push(v.into());
        self
    }

    /// Adds a keyword argument.
    #[must_use]
    pub fn kw(mut self, name: &str, v: impl Into<Value>) -> Self {
        self.kw.push((name.to_owned(), v.into()));
        self
    }
}

impl From<()> for Args {
    fn from(_: ()) -> Self {
        Args::new()
    }
}

impl From<Vec<Value>> for Args {
    fn from(pos: Vec<Value>) -> Self {
        Args {
            pos,
            kw: Vec::new(),
        }
    }
}

macro_rules! args_from_tuple {
    ($($n:tt $t:ident),+) => {
        impl<$($t: Into<Value>),+> From<($($t,)+)> for Args {
            fn from(t: ($($t,)+)) -> Self {
                Args { pos: vec![$(t.$n.into()),+], kw: Vec::new() }
            }
        }
    };
}
args_from_tuple!(0 A);
args_from_tuple!(0 A, 1 B);
args_from_tuple!(0 A, 1 B, 2 C);
args_from_tuple!(0 A, 1 B, 2 C, 3 D);
args_from_tuple!(0 A, 1 B, 2 C, 3 D, 4 E);
args_from_tuple!(0 A, 1 B, 2 C, 3 D, 4 E, 5 F);

fn failed_of(v: &Value) -> Option<&Arc<(ErrorCode, String)>> {
    match v {
        Value::Proxy(Proxy {
            base: PBase::Failed(f),
            ..
        }) => Some(f),
        _ => None,
    }
}

impl Proxy {
    fn derive(&self, step: Step) -> Proxy {
        let mut steps = self.steps.clone();
        steps.push(step);
        Proxy {
            session: Arc::clone(&self.session),
            base: self.base.clone(),
            steps,
        }
    }

    /// `self.name`: a new proxy at once.
    pub fn attr(&self, name: &str) -> Proxy {
        self.derive(Step::Attr(name.to_owned()))
    }

    /// `self[key]`: a new proxy at once. Materializing it fetches only
    /// that part.
    pub fn index(&self, key: impl Into<Value>) -> Proxy {
        self.derive(Step::Index(key.into()))
    }

    /// `self.name(args)`: shorthand for `self.attr(name).call(args)`.
    pub fn method(&self, name: &str, args: impl Into<Args>) -> Proxy {
        self.attr(name).call(args)
    }

    /// `self(args)`: sends the call at once (one NOTIFY, no wait) and
    /// returns a proxy for its result. The call runs exactly once on the
    /// server, after every call sent before it on this connection.
    pub fn call(&self, args: impl Into<Args>) -> Proxy {
        let args = args.into();
        let failed = match &self.base {
            PBase::Failed(f) => Some(Arc::clone(f)),
            _ => args
                .pos
                .iter()
                .chain(args.kw.iter().map(|(_, v)| v))
                .find_map(failed_of)
                .cloned(),
        };
        if let Some(f) = failed {
            return self.with_base(PBase::Failed(f));
        }
        let s = &self.session;
        let slot = s.next_slot.fetch_add(1, Ordering::Relaxed);
        let ids = s.take_releases();
        let base = self.wire_base();
        // Written straight into the frame: an array argument is copied once.
        let sent = s.peer.notify_with(s.command, |b| {
            put_array_len(b, 3);
            put_releases(b, &ids);
            put_array_len(b, 1);
            put_call(b, slot, &base, &self.steps, &args.pos, &args.kw);
            b.put_u8(0xc0);
        });
        match sent {
            Ok(()) => self.with_base(PBase::Handle(Arc::new(HandleGuard {
                id: slot,
                session: Arc::clone(s),
            }))),
            Err(e) => {
                s.requeue(ids);
                let code = e.code().unwrap_or(ErrorCode::HANDLER);
                let msg = format!("call {}() was not sent: {e}", self.label());
                self.with_base(PBase::Failed(Arc::new((code, msg))))
            }
        }
    }

    fn with_base(&self, base: PBase) -> Proxy {
        Proxy {
            session: Arc::clone(&self.session),
            base,
            steps: Vec::new(),
        }
    }

    fn wire_base(&self) -> Base {
        match &self.base {
            PBase::Root(name) => Base::Root(name.to_string()),
            PBase::Handle(h) => Base::Handle(h.id),
            PBase::Failed(_) => Base::Handle(0),
        }
    }

    /// Fetches the value (one round trip). Objects inside it come back as
    /// [`Value::Proxy`]. A failed call, or one that depends on a failed
    /// call, returns the error of the call that failed.
    pub fn materialize<T: FromValue>(&self) -> Result<T, Error> {
        if let PBase::Failed(f) = &self.base {
            return Err(Error::remote(f.0, f.1.clone()));
        }
        let v = request(&self.session, Some((self, None)))?;
        T::from_value(v).map_err(Error::from)
    }

    /// What this root, module, object, function or method declares: its
    /// kind, members, parameters (defaults, keyword-only markers) and doc
    /// string. One round trip; nothing runs on the server.
    ///
    /// ```
    /// use framerpc::dynamic::{Module, Params, Session, Space};
    /// use framerpc::{Client, Router, Server};
    /// let math = Module::new().doc("Numbers.").function(
    ///     "pow",
    ///     Params::new().req("x").opt("y", 2).doc("x to the power y."),
    ///     |a| Ok(a.get::<f64>("x")?.powf(a.get("y")?)),
    /// );
    /// let space = Space::builder().root("math", math).build();
    /// let server = Server::bind("127.0.0.1:0", space.install(Router::new())?)?;
    /// let client = Client::connect(server.local_addr())?;
    /// let d = Session::new(&client).root("math").describe()?;
    /// assert_eq!((d.kind.as_str(), d.doc.as_deref()), ("module", Some("Numbers.")));
    /// assert_eq!(d.member("pow").unwrap().to_string(), "pow(x, y=2)");
    /// # Ok::<(), framerpc::Error>(())
    /// ```
    pub fn describe(&self) -> Result<Description, Error> {
        if let PBase::Failed(f) = &self.base {
            return Err(Error::remote(f.0, f.1.clone()));
        }
        let v = request(&self.session, Some((self, Some(Step::Describe))))?;
        Description::from_value(v).map_err(Error::from)
    }

    /// A readable name: the root or handle, then the steps.
    pub fn label(&self) -> String {
        let mut s = match &self.base {
            PBase::Root(name) => name.to_string(),
            PBase::Handle(h) => format!("<handle {}>", h.id),
            PBase::Failed(_) => "<failed>".into(),
        };
        for step in &self.steps {
            match step {
                Step::Attr(n) => {
                    s.push('.');
                    s.push_str(n);
                }
                Step::Index(k) => s.push_str(&format!("[{k}]")),
                Step::Describe => s.push_str(".<describe>"),
            }
        }
        s
    }

    /// The session this proxy belongs to.
    pub fn session(&self) -> Session {
        Session(Arc::clone(&self.session))
    }

    /// Writes this proxy as an argument: ext type 1 holding its ref.
    pub(crate) fn encode_ref_ext(&self, dst: &mut BytesMut) {
        let mut r = BytesMut::new();
        put_ref(&mut r, &self.wire_base(), &self.steps);
        put_ext(dst, EXT_REF, &r);
    }
}

/// Fetches the value of `p` (see [`Proxy::materialize`]).
pub fn materialize<T: FromValue>(p: &Proxy) -> Result<T, Error> {
    p.materialize()
}

fn put_releases_only(b: &mut BytesMut, ids: &[u64]) {
    put_array_len(b, 3);
    put_releases(b, ids);
    put_array_len(b, 0);
    b.put_u8(0xc0);
}

/// One CALL: queued releases, no calls, and `fetch` (or nil), with one
/// more step after the proxy's own if given.
fn request(s: &Arc<SessionInner>, fetch: Option<(&Proxy, Option<Step>)>) -> Result<Value, Error> {
    let ids = s.take_releases();
    let reply = s.peer.call_with(s.command, None, |b| {
        put_array_len(b, 3);
        put_releases(b, &ids);
        put_array_len(b, 0);
        match fetch {
            Some((p, None)) => put_ref(b, &p.wire_base(), &p.steps),
            Some((p, Some(extra))) => {
                let mut steps = p.steps.clone();
                steps.push(extra);
                put_ref(b, &p.wire_base(), &steps);
            }
            None => b.put_u8(0xc0),
        }
    });
    if matches!(&reply, Err(e) if e.code().is_none()) {
        // Not sent (or no answer): keep the releases for later.
        s.requeue(ids);
    }
    let v = Value::decode_with_depth(reply?, DEFAULT_MAX_DEPTH)?;
    let v = match v {
        Value::Ext(EXT_ENVELOPE, data) => open_envelope(s, data)?,
        v => v,
    };
    Ok(adopt(s, v))
}

/// The reply envelope `[refusals, unlisted, value]`: keeps the refusals
/// for [`Session::take_refusals`] and returns the value.
fn open_envelope(s: &Arc<SessionInner>, data: bytes::Bytes) -> Result<Value, Error> {
    let bad = || {
        Error::Decode(DecodeError::Invalid(
            "a reply envelope [refusals, unlisted, value]",
        ))
    };
    let Value::Array(parts) = Value::decode_with_depth(data, DEFAULT_MAX_DEPTH)? else {
        return Err(bad());
    };
    let [refusals, unlisted, value]: [Value; 3] = parts.try_into().map_err(|_| bad())?;
    let Value::Array(refusals) = refusals else {
        return Err(bad());
    };
    let mut got: Vec<Refusal> = refusals
        .iter()
        .map(|r| Refusal {
            request: r.get("request").and_then(Value::as_i64).unwrap_or(0) as u64,
            calls: r.get("calls").and_then(Value::as_i64).unwrap_or(0) as u64,
            slots: match r.get("slots") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|x| x.as_i64())
                    .map(|x| x as u64)
                    .collect(),
                _ => Vec::new(),
            },
            code: ErrorCode(
                r.get("code")
                    .and_then(Value::as_i64)
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(ErrorCode::BAD_PAYLOAD.0),
            ),
            message: r
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("refused")
                .to_owned(),
        })
        .collect();
    if let Some(n) = unlisted.as_i64().filter(|&n| n > 0) {
        got.push(Refusal {
            request: 0,
            calls: 0,
            slots: Vec::new(),
            code: ErrorCode::BAD_PAYLOAD,
            message: format!("{n} more one-way requests were refused (the server lists 64)"),
        });
    }
    s.refusals.lock().extend(got);
    Ok(value)
}

/// Turns handles (ext type 2) in a reply into proxies.
fn adopt(s: &Arc<SessionInner>, v: Value) -> Value {
    match v {
        Value::Ext(EXT_HANDLE, data) if data.len() == 8 => {
            let mut id = [0u8; 8];
            id.copy_from_slice(&data);
            Value::Proxy(Proxy {
                session: Arc::clone(s),
                base: PBase::Handle(Arc::new(HandleGuard {
                    id: u64::from_be_bytes(id),
                    session: Arc::clone(s),
                })),
                steps: Vec::new(),
            })
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|x| adopt(s, x)).collect()),
        Value::Map(m) => Value::Map(m.into_iter().map(|(k, x)| (k, adopt(s, x))).collect()),
        other => other,
    }
}
