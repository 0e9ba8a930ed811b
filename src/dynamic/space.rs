//! The server side: an object space of named roots, mounted on a
//! [`Router`] under the dynamic-layer command, with one handle table per
//! connection.
//!
//! Each connection has a private table of handles: the results of its
//! calls, under the slot numbers the client chose, and the handles the
//! server made for objects inside replies. Entries leave the table when the
//! client releases them and all at once when the connection ends. The table
//! has a bound; a call that would go past it fails with a clear error (and
//! poisons what depends on it) instead of growing memory.
//!
//! # Order
//! Requests of one connection must run one at a time in arrival order, the
//! default of a [`Router`]: do not raise [`Router::concurrency`] on a router
//! that carries a space.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::{Condvar, Mutex};

use super::describe::describe;
use super::object::{Item, Module};
use super::value::{put_array_len, put_map_len, put_str, put_uint};
use super::value::{Value, DEFAULT_MAX_DEPTH};
use super::wire::{
    handle_ext, ref_from_value, Base, CallOp, Message, Ref, Step, EXT_ENVELOPE, EXT_REF,
    SERVER_HANDLES,
};
use crate::command::CommandInfo;
use crate::error::{Error, ErrorCode, HandlerError};
use crate::frame::Kind;
use crate::router::{Ctx, Router};

/// The command id of the dynamic layer.
pub const DYNAMIC: u16 = 0xFF10;

/// Longest label kept for error messages; longer ones keep their tail.
const MAX_LABEL: usize = 200;

/// A failed call: what every result depending on it reports.
#[derive(Debug)]
struct Failure {
    code: ErrorCode,
    message: String,
}

struct Entry {
    item: Result<Item, Arc<Failure>>,
    label: Arc<str>,
}

/// Refusal records kept for the next reply; later ones are only counted.
const MAX_REFUSALS: usize = 64;
/// Slots a refusal record lists (it also says how many calls there were).
const MAX_REFUSAL_SLOTS: usize = 32;

/// A refused one-way request, reported alongside the next REPLY.
struct Refused {
    request: u64,
    calls: usize,
    slots: Vec<u64>,
    code: ErrorCode,
    message: String,
}

#[derive(Default)]
struct Table {
    entries: HashMap<u64, Entry>,
    next_server_handle: u64,
    /// Requests this connection has sent the space (NOTIFY and CALL).
    requests: u64,
    /// Refused one-way requests not yet reported.
    refused: Vec<Refused>,
    /// Refused one-way requests beyond `MAX_REFUSALS`, not yet reported.
    unlisted: u64,
}

enum Failed {
    /// A dependency failed earlier: its error, unchanged.
    Poisoned(Arc<Failure>),
    /// This step failed.
    Error(HandlerError),
}

impl From<HandlerError> for Failed {
    fn from(e: HandlerError) -> Self {
        Failed::Error(e)
    }
}

/// Counters a test or a dashboard can read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests received (CALL and NOTIFY frames).
    pub messages: u64,
    /// CALL frames: each one is a round trip.
    pub round_trips: u64,
    /// Calls run (successful or not).
    pub calls: u64,
    /// Handles released by clients.
    pub released: u64,
}

#[derive(Default)]
struct Counters {
    messages: AtomicU64,
    round_trips: AtomicU64,
    calls: AtomicU64,
    released: AtomicU64,
}

/// Settings for a [`Space`]; every setter states its default.
#[must_use]
pub struct SpaceBuilder {
    roots: HashMap<String, Item>,
    max_handles: usize,
    max_depth: usize,
    command: u16,
}

impl fmt::Debug for SpaceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpaceBuilder")
            .field("roots", &self.roots.keys())
            .field("max_handles", &self.max_handles)
            .field("max_depth", &self.max_depth)
            .finish()
    }
}

impl SpaceBuilder {
    /// Registers a root (a module reachable by name). Only roots and what
    /// they hold are reachable.
    pub fn root(mut self, name: &str, module: Module) -> Self {
        self.roots
            .insert(name.to_owned(), Item::Module(Arc::new(module)));
        self
    }

    /// Handles one connection may hold at once (default 1024).
    pub fn max_handles(mut self, n: usize) -> Self {
        self.max_handles = n.max(1);
        self
    }

    /// msgpack nesting depth accepted in requests (default 128).
    pub fn max_depth(mut self, n: usize) -> Self {
        self.max_depth = n;
        self
    }

    /// The command id the space answers on (default [`DYNAMIC`], 0xFF10;
    /// use 0xFF11.. for a second space on the same router).
    pub fn command(mut self, id: u16) -> Self {
        self.command = id;
        self
    }

    /// Finishes the space.
    pub fn build(self) -> Space {
        Space(Arc::new(Inner {
            roots: self.roots,
            max_handles: self.max_handles,
            max_depth: self.max_depth,
            command: self.command,
            tables: Mutex::new(HashMap::new()),
            emptied: Condvar::new(),
            counters: Counters::default(),
        }))
    }
}

struct Inner {
    roots: HashMap<String, Item>,
    max_handles: usize,
    max_depth: usize,
    command: u16,
    tables: Mutex<HashMap<u64, Arc<Mutex<Table>>>>,
    emptied: Condvar,
    counters: Counters,
}

/// A space of remote objects: named roots, served on one command id.
/// Cheap to clone.
///
/// ```
/// use framerpc::dynamic::{Module, Params, Session, Space};
/// use framerpc::{Client, Router, Server};
///
/// let math = Module::new().function("pow", Params::new().req("x").req("y"), |a| {
///     Ok(a.get::<f64>("x")?.powf(a.get::<f64>("y")?))
/// });
/// let space = Space::builder().root("math", math).build();
/// let server = Server::bind("127.0.0.1:0", space.install(Router::new())?)?;
///
/// let client = Client::connect(server.local_addr())?;
/// let session = Session::new(&client);
/// let nine = session.root("math").attr("pow").call((3, 2));
/// assert_eq!(nine.materialize::<f64>()?, 9.0);
/// # Ok::<(), framerpc::Error>(())
/// ```
#[derive(Clone)]
pub struct Space(Arc<Inner>);

impl fmt::Debug for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Space")
            .field("roots", &self.0.roots.keys())
            .field("handles", &self.handle_count())
            .finish()
    }
}

impl Space {
    /// Settings for a new space.
    pub fn builder() -> SpaceBuilder {
        SpaceBuilder {
            roots: HashMap::new(),
            max_handles: 1024,
            max_depth: DEFAULT_MAX_DEPTH,
            command: DYNAMIC,
        }
    }

    /// Mounts the space on `router`: a handler for its command id, and a
    /// hook that frees a connection's handles when it ends.
    pub fn install(&self, router: Router) -> Result<Router, Error> {
        let info = CommandInfo {
            id: self.0.command,
            name: format!("dynamic:{:#06x}", self.0.command),
            request_schema: "msgpack".into(),
            response_schema: "msgpack".into(),
        };
        let me = self.clone();
        let router = router.try_handle_raw(
            info,
            Arc::new(move |ctx, payload, out| me.handle(ctx, payload, out)),
        )?;
        let me = self.clone();
        Ok(router.on_disconnect(move |conn_id| me.drop_connection(conn_id)))
    }

    /// Handles held by every connection together.
    pub fn handle_count(&self) -> usize {
        let tables: Vec<_> = self.0.tables.lock().values().cloned().collect();
        tables.iter().map(|t| t.lock().entries.len()).sum()
    }

    /// Connections that have a handle table.
    pub fn connection_count(&self) -> usize {
        self.0.tables.lock().len()
    }

    /// Waits until no connection has a table (all have ended), up to
    /// `timeout`; true if that happened.
    pub fn wait_no_connections(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut t = self.0.tables.lock();
        while !t.is_empty() {
            if self.0.emptied.wait_until(&mut t, deadline).timed_out() {
                return t.is_empty();
            }
        }
        true
    }

    /// Counters since the space was built.
    pub fn stats(&self) -> Stats {
        let c = &self.0.counters;
        Stats {
            messages: c.messages.load(Ordering::Relaxed),
            round_trips: c.round_trips.load(Ordering::Relaxed),
            calls: c.calls.load(Ordering::Relaxed),
            released: c.released.load(Ordering::Relaxed),
        }
    }

    /// Frees connection `conn_id`'s table as its end does. For tests and
    /// fuzzing, with [`Space::serve`].
    #[doc(hidden)]
    pub fn end_connection(&self, conn_id: u64) {
        self.drop_connection(conn_id);
    }

    fn drop_connection(&self, conn_id: u64) {
        let removed = self.0.tables.lock().remove(&conn_id);
        drop(removed); // objects are dropped outside the tables lock
        self.0.emptied.notify_all();
    }

    fn table(&self, conn_id: u64) -> Arc<Mutex<Table>> {
        let mut tables = self.0.tables.lock();
        Arc::clone(tables.entry(conn_id).or_insert_with(|| {
            Arc::new(Mutex::new(Table {
                next_server_handle: SERVER_HANDLES,
                ..Table::default()
            }))
        }))
    }

    fn handle(
        &self,
        ctx: &Ctx<'_>,
        payload: Bytes,
        out: &mut BytesMut,
    ) -> Result<(), HandlerError> {
        self.serve(ctx.conn_id(), ctx.header.kind == Kind::Call, payload, out)
    }

    /// Serves one request of connection `conn_id` as the handler does (a
    /// CALL if `is_call`, else a NOTIFY), appending the reply payload to
    /// `out`. For tests and fuzzing: the handler calls this.
    #[doc(hidden)]
    pub fn serve(
        &self,
        conn_id: u64,
        is_call: bool,
        payload: Bytes,
        out: &mut BytesMut,
    ) -> Result<(), HandlerError> {
        let c = &self.0.counters;
        c.messages.fetch_add(1, Ordering::Relaxed);
        if is_call {
            c.round_trips.fetch_add(1, Ordering::Relaxed);
        }
        let table = self.table(conn_id);
        let mut t = table.lock();
        t.requests += 1;
        let msg = Value::decode_with_depth(payload, self.0.max_depth)
            .map_err(|e| e.to_string())
            .and_then(Message::from_value);
        let msg = match msg {
            Ok(m) => m,
            Err(why) => {
                let why = format!("bad dynamic request: {why}");
                return self.refuse(&mut t, is_call, &[], ErrorCode::BAD_PAYLOAD, why);
            }
        };
        if let Some((code, why)) = self.check(&t, is_call, &msg) {
            return self.refuse(&mut t, is_call, &msg.calls, code, why);
        }
        // Accepted: releases first, then every call in order.
        for id in &msg.releases {
            if t.entries.remove(id).is_some() {
                c.released.fetch_add(1, Ordering::Relaxed);
            }
        }
        for call in msg.calls {
            c.calls.fetch_add(1, Ordering::Relaxed);
            let entry = self.run_call(&mut t, &call.target, call.args, call.kwargs, call.slot);
            t.entries.insert(call.slot, entry);
        }
        if !is_call {
            return Ok(());
        }
        let v = match msg.fetch {
            Some(r) => self.fetch(&mut t, &r)?,
            None => Value::Nil,
        };
        self.reply(&mut t, &v, out);
        Ok(())
    }

    /// Why a request that decoded must be refused whole, if it must.
    fn check(&self, t: &Table, is_call: bool, msg: &Message) -> Option<(ErrorCode, String)> {
        if !is_call && msg.fetch.is_some() {
            return Some((
                ErrorCode::BAD_PAYLOAD,
                "a one-way request (NOTIFY) cannot fetch: its fetch must be nil (send a CALL \
                 to get a value back)"
                    .into(),
            ));
        }
        let released: HashSet<u64> = msg
            .releases
            .iter()
            .copied()
            .filter(|id| t.entries.contains_key(id))
            .collect();
        let mut named = HashSet::with_capacity(msg.calls.len().min(4096));
        for call in &msg.calls {
            if !named.insert(call.slot) {
                return Some((
                    ErrorCode::BAD_PAYLOAD,
                    format!(
                        "slot {} is named by two calls of this request: each call needs a \
                         slot of its own",
                        call.slot
                    ),
                ));
            }
            if let Some(e) = t.entries.get(&call.slot) {
                if !released.contains(&call.slot) {
                    return Some((
                        ErrorCode::BAD_PAYLOAD,
                        format!(
                            "slot {} is in use (it holds {}): a call must name a free slot, \
                             one never used on this connection or released (by an earlier \
                             request or by this one's releases)",
                            call.slot, e.label
                        ),
                    ));
                }
            }
        }
        let live = t.entries.len() - released.len();
        if !msg.calls.is_empty() && live + msg.calls.len() > self.0.max_handles {
            return Some((
                ErrorCode::HANDLER,
                format!(
                    "handle table full ({} handles, the bound; {live} held, {} more needed); \
                     drop proxies to release them",
                    self.0.max_handles,
                    msg.calls.len()
                ),
            ));
        }
        None
    }

    /// Refuses a request whole: none of its calls runs and its releases
    /// are not applied. The free slots its calls named hold the refusal
    /// (so what depends on them reports it); a CALL is answered with the
    /// error, a NOTIFY's refusal waits for the next reply.
    fn refuse(
        &self,
        t: &mut Table,
        is_call: bool,
        calls: &[CallOp],
        code: ErrorCode,
        why: String,
    ) -> Result<(), HandlerError> {
        let n = calls.len();
        let message = format!(
            "{why}; the request was refused and none of its {n} call{} ran",
            if n == 1 { "" } else { "s" }
        );
        for call in calls {
            if t.entries.contains_key(&call.slot) || t.entries.len() >= 2 * self.0.max_handles {
                continue;
            }
            let label = ref_label(t, &call.target);
            let f = Failure {
                code,
                message: format!(
                    "call {label}() (handle {}) not run: its request was refused: {why}",
                    call.slot
                ),
            };
            t.entries.insert(
                call.slot,
                Entry {
                    item: Err(Arc::new(f)),
                    label: clip(format!("{label}()")).into(),
                },
            );
        }
        if is_call {
            return Err(HandlerError::library(code, message));
        }
        if t.refused.len() < MAX_REFUSALS {
            let request = t.requests;
            t.refused.push(Refused {
                request,
                calls: n,
                slots: calls
                    .iter()
                    .take(MAX_REFUSAL_SLOTS)
                    .map(|c| c.slot)
                    .collect(),
                code,
                message,
            });
        } else {
            t.unlisted += 1;
        }
        Ok(())
    }

    /// The value `fetch` names; an object gets a server-made handle.
    fn fetch(&self, t: &mut Table, r: &Ref) -> Result<Value, HandlerError> {
        let item = match self.resolve(t, r) {
            Ok(item) => item,
            Err(Failed::Poisoned(f)) => {
                return Err(HandlerError::library(f.code, f.message.clone()))
            }
            Err(Failed::Error(e)) => return Err(e),
        };
        Ok(match item {
            Item::Data(v) => v,
            other => {
                if t.entries.len() >= self.0.max_handles {
                    return Err(format!(
                        "handle table full ({} handles, the bound): cannot hand out {}; the \
                         request's calls ran, only this fetch failed (release handles and fetch \
                         again)",
                        self.0.max_handles,
                        other.kind_name()
                    )
                    .into());
                }
                let id = t.next_server_handle;
                t.next_server_handle += 1;
                let label: Arc<str> = ref_label(t, r).into();
                t.entries.insert(
                    id,
                    Entry {
                        item: Ok(other),
                        label,
                    },
                );
                handle_ext(id)
            }
        })
    }

    /// Writes the reply: the value, or the envelope (ext type 3 holding
    /// `[refusals, unlisted, value]`) when one-way requests were refused
    /// since the last reply, or when the value is itself an ext 3.
    fn reply(&self, t: &mut Table, v: &Value, out: &mut BytesMut) {
        let wrap =
            !t.refused.is_empty() || t.unlisted > 0 || matches!(v, Value::Ext(EXT_ENVELOPE, _));
        if !wrap {
            v.encode(out);
            return;
        }
        // ext 32 with its length filled in afterwards: no copy of the value.
        out.put_u8(0xc9);
        let len_at = out.len();
        out.put_u32(0);
        out.put_i8(EXT_ENVELOPE);
        let start = out.len();
        put_array_len(out, 3);
        put_array_len(out, t.refused.len());
        for r in t.refused.drain(..) {
            put_map_len(out, 5);
            put_str(out, "request");
            put_uint(out, r.request);
            put_str(out, "calls");
            put_uint(out, r.calls as u64);
            put_str(out, "slots");
            put_array_len(out, r.slots.len());
            for s in r.slots {
                put_uint(out, s);
            }
            put_str(out, "code");
            put_uint(out, u64::from(r.code.0));
            put_str(out, "message");
            put_str(out, &r.message);
        }
        put_uint(out, std::mem::take(&mut t.unlisted));
        v.encode(out);
        let len = (out.len() - start) as u32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Runs one call; the entry holds its result or why it failed.
    fn run_call(
        &self,
        t: &mut Table,
        target: &Ref,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        slot: u64,
    ) -> Entry {
        let label = ref_label(t, target);
        let result = self.try_call(t, target, args, kwargs, &label);
        let item = match result {
            Ok(item) => Ok(item),
            Err(Failed::Poisoned(f)) => Err(f),
            Err(Failed::Error(e)) => Err(Arc::new(Failure {
                code: e.code(),
                message: format!("call {label}() (handle {slot}) failed: {}", e.message()),
            })),
        };
        Entry {
            item,
            label: clip(format!("{label}()")).into(),
        }
    }

    fn try_call(
        &self,
        t: &Table,
        target: &Ref,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        label: &str,
    ) -> Result<Item, Failed> {
        let callee = self.resolve(t, target)?;
        let args = args
            .into_iter()
            .map(|a| self.arg(t, a))
            .collect::<Result<Vec<_>, _>>()?;
        let kwargs = kwargs
            .into_iter()
            .map(|(k, v)| Ok((k, self.arg(t, v)?)))
            .collect::<Result<Vec<_>, Failed>>()?;
        let run = || match &callee {
            Item::Function(f) => {
                let input = f.params.bind(label, args, kwargs)?;
                (f.f)(&input)
            }
            Item::Method(o, name) => o.call_method(name, label, args, kwargs),
            Item::Object(o) if o.has_method("__call__") => {
                o.call_method("__call__", label, args, kwargs)
            }
            other => Err(format!("not callable: {label} is {}", other.kind_name()).into()),
        };
        match catch_unwind(AssertUnwindSafe(run)) {
            Ok(r) => r.map_err(Failed::Error),
            Err(panic) => {
                let what = crate::error::panic_message(&*panic);
                Err(Failed::Error(HandlerError::library(
                    ErrorCode::PANIC,
                    format!("panicked: {what}"),
                )))
            }
        }
    }

    /// An argument: plain data, or (ext type 1) a reference resolved here.
    fn arg(&self, t: &Table, v: Value) -> Result<Item, Failed> {
        match v {
            Value::Ext(EXT_REF, data) => {
                let r = Value::decode_with_depth(data, self.0.max_depth)
                    .map_err(|e| e.to_string())
                    .and_then(ref_from_value)
                    .map_err(|e| {
                        HandlerError::library(
                            ErrorCode::BAD_PAYLOAD,
                            format!("bad reference argument: {e}"),
                        )
                    })?;
                Ok(self.resolve(t, &r)?)
            }
            v => Ok(Item::Data(v)),
        }
    }

    fn resolve(&self, t: &Table, r: &Ref) -> Result<Item, Failed> {
        let mut label = String::new();
        let mut item = match &r.base {
            Base::Root(name) => {
                label.push_str(name);
                self.0
                    .roots
                    .get(name)
                    .cloned()
                    .ok_or_else(|| HandlerError::from(format!("unknown root '{name}'")))?
            }
            Base::Handle(id) => match t.entries.get(id) {
                Some(Entry { item: Ok(item), label: l }) => {
                    label.push_str(l);
                    item.clone()
                }
                Some(Entry { item: Err(f), .. }) => return Err(Failed::Poisoned(Arc::clone(f))),
                None => {
                    return Err(HandlerError::from(format!(
                        "unknown handle {id} (never created, already released, or refused when the table was full)"
                    ))
                    .into())
                }
            },
        };
        for step in &r.steps {
            item = match step {
                Step::Attr(name) => getattr(item, name, &label)?,
                Step::Index(key) => index(item, key, &label)?,
                Step::Describe => Item::Data(describe(&item, &label)),
            };
            push_step(&mut label, step);
        }
        Ok(item)
    }
}

fn getattr(item: Item, name: &str, label: &str) -> Result<Item, HandlerError> {
    let found = match &item {
        Item::Module(m) => m.items.get(name).cloned(),
        Item::Object(o) => o.getattr(name),
        _ => None,
    };
    found.ok_or_else(|| {
        format!(
            "unknown attribute '{name}' on {label} ({})",
            item.kind_name()
        )
        .into()
    })
}

fn index(item: Item, key: &Value, label: &str) -> Result<Item, HandlerError> {
    match item {
        Item::Data(Value::Array(a)) => {
            let i = key.as_i64().ok_or_else(|| {
                HandlerError::from(format!(
                    "index {key} of {label}: an array index must be an integer"
                ))
            })?;
            let n = a.len() as i64;
            let at = if i < 0 { i + n } else { i };
            if !(0..n).contains(&at) {
                return Err(format!("index {i} out of range for {label} (an array of {n})").into());
            }
            Ok(Item::Data(
                a.into_iter().nth(at as usize).unwrap_or_default(),
            ))
        }
        Item::Data(Value::Map(m)) => {
            let found = m
                .into_iter()
                .find(|(k, _)| k == key || key.as_str().is_some_and(|s| k.key_is(s)));
            found
                .map(|(_, v)| Item::Data(v))
                .ok_or_else(|| format!("key {key} not found in {label}").into())
        }
        Item::Object(o) if o.has_method("__getitem__") => {
            o.call_method("__getitem__", label, vec![Item::Data(key.clone())], vec![])
        }
        other => Err(format!("{label} ({}) cannot be indexed", other.kind_name()).into()),
    }
}

fn push_step(label: &mut String, step: &Step) {
    match step {
        Step::Attr(name) => {
            label.push('.');
            label.push_str(name);
        }
        Step::Index(key) => {
            label.push('[');
            label.push_str(&key.to_string());
            label.push(']');
        }
        Step::Describe => label.push_str(".<describe>"),
    }
}

fn ref_label(t: &Table, r: &Ref) -> String {
    let mut label = match &r.base {
        Base::Root(name) => name.clone(),
        Base::Handle(id) => match t.entries.get(id) {
            Some(e) => e.label.to_string(),
            None => format!("<handle {id}>"),
        },
    };
    for s in &r.steps {
        push_step(&mut label, s);
    }
    clip(label)
}

fn clip(s: String) -> String {
    if s.len() <= MAX_LABEL {
        return s;
    }
    let mut cut = s.len() - MAX_LABEL;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    format!("…{}", &s[cut..])
}
