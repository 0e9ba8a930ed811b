//! The dynamic layer's request encoding (see `docs/DYNAMIC.md`).
//!
//! Every request is one msgpack array of 3 items:
//!
//! ```text
//! [releases, calls, fetch]
//! releases  array of uint        handles the client no longer needs
//! calls     array of call        run in order, each exactly once
//! call      [1, slot, ref, args, kwargs]
//!           slot   uint 1..2^32-1 chosen by the client: the handle of the result
//!           args   array of values; a proxy argument is ext type 1
//!           kwargs map str -> value
//! fetch     nil, or a ref whose value the reply carries (CALL frames only)
//! ref       [base, step...]; base is a root name (str) or a handle (uint);
//!           step is [0, "attr"], [1, key] or [2, nil] (describe)
//! ```
//!
//! A reply (to a CALL) is one msgpack value; an object that is not plain
//! data comes back as ext type 2 holding a fresh handle (u64 big-endian).

use bytes::{BufMut, BytesMut};

use super::value::{put_array_len, put_map_len, put_str, put_uint, Value};

/// Ext type of a reference to a remote value, in arguments (data: a
/// msgpack-encoded ref).
pub const EXT_REF: i8 = 1;
/// Ext type of a handle in replies (data: `u64` big-endian handle id).
pub const EXT_HANDLE: i8 = 2;
/// Op code of a call.
pub const OP_CALL: u8 = 1;
/// Step code of an attribute access.
pub const STEP_ATTR: u8 = 0;
/// Step code of an index.
pub const STEP_INDEX: u8 = 1;
/// Step code of a description (`[2, nil]`): what the value before it
/// declares, as plain data.
pub const STEP_DESCRIBE: u8 = 2;
/// Ext type of the reply envelope: the data is `[refusals, unlisted,
/// value]`, sent when one-way requests were refused since the last reply.
pub const EXT_ENVELOPE: i8 = 3;
/// Client-chosen slots are below this; handles the server creates (for
/// objects inside a reply) are at or above it.
pub const SERVER_HANDLES: u64 = 1 << 32;

/// Where a reference starts.
#[derive(Clone, Debug, PartialEq)]
pub enum Base {
    /// A registered root, by name.
    Root(String),
    /// A handle in the connection's table.
    Handle(u64),
}

/// One step of a reference.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `.name`
    Attr(String),
    /// `[key]`
    Index(Value),
    /// The description of what the steps before reach.
    Describe,
}

/// A path to a remote value: a base and steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Ref {
    /// Where it starts.
    pub base: Base,
    /// Attribute and index steps, in order.
    pub steps: Vec<Step>,
}

/// One call in a request.
#[derive(Clone, Debug, PartialEq)]
pub struct CallOp {
    /// The handle the result is stored under.
    pub slot: u64,
    /// What is called.
    pub target: Ref,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Vec<(String, Value)>,
}

/// One request.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Message {
    /// Handles to free first.
    pub releases: Vec<u64>,
    /// Calls to run, in order.
    pub calls: Vec<CallOp>,
    /// What to send back, if anything.
    pub fetch: Option<Ref>,
}

/// Writes a ref.
pub(crate) fn put_ref(dst: &mut BytesMut, base: &Base, steps: &[Step]) {
    put_array_len(dst, 1 + steps.len());
    match base {
        Base::Root(name) => put_str(dst, name),
        Base::Handle(id) => put_uint(dst, *id),
    }
    for s in steps {
        put_array_len(dst, 2);
        match s {
            Step::Attr(name) => {
                put_uint(dst, u64::from(STEP_ATTR));
                put_str(dst, name);
            }
            Step::Index(key) => {
                put_uint(dst, u64::from(STEP_INDEX));
                key.encode(dst);
            }
            Step::Describe => {
                put_uint(dst, u64::from(STEP_DESCRIBE));
                dst.put_u8(0xc0);
            }
        }
    }
}

/// Writes a call op.
pub(crate) fn put_call(
    dst: &mut BytesMut,
    slot: u64,
    base: &Base,
    steps: &[Step],
    args: &[Value],
    kwargs: &[(String, Value)],
) {
    put_array_len(dst, 5);
    put_uint(dst, u64::from(OP_CALL));
    put_uint(dst, slot);
    put_ref(dst, base, steps);
    put_array_len(dst, args.len());
    for a in args {
        a.encode(dst);
    }
    put_map_len(dst, kwargs.len());
    for (k, v) in kwargs {
        put_str(dst, k);
        v.encode(dst);
    }
}

/// Writes the releases array.
pub(crate) fn put_releases(dst: &mut BytesMut, ids: &[u64]) {
    put_array_len(dst, ids.len());
    for id in ids {
        put_uint(dst, *id);
    }
}

impl Message {
    /// Encodes the message as msgpack.
    pub fn encode(&self, dst: &mut BytesMut) {
        put_array_len(dst, 3);
        put_releases(dst, &self.releases);
        put_array_len(dst, self.calls.len());
        for c in &self.calls {
            put_call(
                dst,
                c.slot,
                &c.target.base,
                &c.target.steps,
                &c.args,
                &c.kwargs,
            );
        }
        match &self.fetch {
            None => dst.put_u8(0xc0),
            Some(r) => put_ref(dst, &r.base, &r.steps),
        }
    }

    /// Reads a message from a decoded value; the error says what is wrong.
    pub fn from_value(v: Value) -> Result<Self, String> {
        let Value::Array(parts) = v else {
            return Err(format!(
                "a request must be an array of 3, not {}",
                v.kind_name()
            ));
        };
        let [releases, calls, fetch]: [Value; 3] = parts.try_into().map_err(|p: Vec<Value>| {
            format!("a request must be an array of 3, not of {}", p.len())
        })?;
        let Value::Array(releases) = releases else {
            return Err("releases must be an array of handles".into());
        };
        let releases = releases
            .iter()
            .map(|r| as_u64(r).ok_or_else(|| format!("release {r} is not a handle")))
            .collect::<Result<_, _>>()?;
        let Value::Array(calls) = calls else {
            return Err("calls must be an array".into());
        };
        let calls = calls
            .into_iter()
            .map(call_from_value)
            .collect::<Result<_, _>>()?;
        let fetch = match fetch {
            Value::Nil => None,
            r => Some(ref_from_value(r)?),
        };
        Ok(Self {
            releases,
            calls,
            fetch,
        })
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match *v {
        Value::Int(i) => u64::try_from(i).ok(),
        Value::UInt(u) => Some(u),
        _ => None,
    }
}

fn call_from_value(v: Value) -> Result<CallOp, String> {
    let Value::Array(parts) = v else {
        return Err("a call must be an array [1, slot, ref, args, kwargs]".into());
    };
    let [op, slot, target, args, kwargs]: [Value; 5] = parts
        .try_into()
        .map_err(|_| "a call must be an array [1, slot, ref, args, kwargs]".to_string())?;
    if as_u64(&op) != Some(u64::from(OP_CALL)) {
        return Err(format!("unknown op {op}"));
    }
    let slot = as_u64(&slot)
        .filter(|s| (1..SERVER_HANDLES).contains(s))
        .ok_or_else(|| format!("slot {slot} is not in 1..2^32"))?;
    let target = ref_from_value(target)?;
    let Value::Array(args) = args else {
        return Err("args must be an array".into());
    };
    let Value::Map(kw) = kwargs else {
        return Err("kwargs must be a map".into());
    };
    let kwargs = kw
        .into_iter()
        .map(|(k, v)| match k {
            Value::Str(s) => Ok((s, v)),
            other => Err(format!("keyword {other} is not a str")),
        })
        .collect::<Result<_, _>>()?;
    Ok(CallOp {
        slot,
        target,
        args,
        kwargs,
    })
}

/// Reads a ref: `[base, step...]`.
pub(crate) fn ref_from_value(v: Value) -> Result<Ref, String> {
    let Value::Array(parts) = v else {
        return Err(format!(
            "a ref must be an array [base, step...], not {}",
            v.kind_name()
        ));
    };
    let mut it = parts.into_iter();
    let base = match it.next() {
        Some(Value::Str(s)) => Base::Root(s),
        Some(ref h) if as_u64(h).is_some() => Base::Handle(as_u64(h).unwrap_or_default()),
        _ => return Err("a ref starts with a root name or a handle".into()),
    };
    let steps = it
        .map(|s| {
            const STEP: &str = "a step must be [0, name], [1, key] or [2, nil]";
            let Value::Array(s) = s else {
                return Err(STEP.to_string());
            };
            let [code, key]: [Value; 2] = s.try_into().map_err(|_| STEP.to_string())?;
            match (as_u64(&code), key) {
                (Some(0), Value::Str(name)) => Ok(Step::Attr(name)),
                (Some(1), key) => Ok(Step::Index(key)),
                (Some(2), Value::Nil) => Ok(Step::Describe),
                _ => Err(STEP.to_string()),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Ref { base, steps })
}

/// The data of an [`EXT_HANDLE`] value.
pub(crate) fn handle_ext(id: u64) -> Value {
    Value::Ext(EXT_HANDLE, bytes::Bytes::copy_from_slice(&id.to_be_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip() {
        let m = Message {
            releases: vec![3, 4],
            calls: vec![CallOp {
                slot: 1,
                target: Ref {
                    base: Base::Root("math".into()),
                    steps: vec![Step::Attr("pow".into())],
                },
                args: vec![3.into(), 2.into()],
                kwargs: vec![],
            }],
            fetch: Some(Ref {
                base: Base::Handle(1),
                steps: vec![Step::Index(0.into())],
            }),
        };
        let mut b = BytesMut::new();
        m.encode(&mut b);
        let v = Value::decode(b.freeze()).unwrap();
        assert_eq!(Message::from_value(v).unwrap(), m);
    }

    #[test]
    fn pow_request_bytes() {
        // The example in docs/DYNAMIC.md: math.pow(3, 2) into slot 1, fetch slot 1.
        let mut b = BytesMut::new();
        put_array_len(&mut b, 3);
        put_releases(&mut b, &[]);
        put_array_len(&mut b, 1);
        put_call(
            &mut b,
            1,
            &Base::Root("math".into()),
            &[Step::Attr("pow".into())],
            &[3.into(), 2.into()],
            &[],
        );
        put_ref(&mut b, &Base::Handle(1), &[]);
        assert_eq!(
            &b[..],
            [
                0x93, 0x90, 0x91, 0x95, 0x01, 0x01, 0x92, 0xa4, b'm', b'a', b't', b'h', 0x92, 0x00,
                0xa3, b'p', b'o', b'w', 0x92, 0x03, 0x02, 0x80, 0x91, 0x01
            ]
        );
    }
}
