//! Introspection: what a root, module, object, function or method declares
//! (the `describe` step of a ref, `[2, nil]`; see `docs/DYNAMIC.md`).
//!
//! A description is plain data, built only from what the [`Space`]
//! declares: member names and kinds, parameters with their defaults and
//! keyword-only markers, doc strings, class names and the kind of a
//! constant's value. Attribute getters are never run, values never read,
//! nothing else on the server is reachable through it.
//!
//! [`Space`]: super::Space

use std::fmt;

use super::object::{Item, Module, Object, Params};
use super::value::{FromValue, TypeMismatch, Value};

fn s(v: &str) -> Value {
    Value::Str(v.to_owned())
}

fn doc(d: Option<&String>) -> Value {
    d.map_or(Value::Nil, |d| s(d))
}

fn params(p: &Params) -> Value {
    let mut out: Vec<Value> = p
        .list
        .iter()
        .map(|p| {
            let kind = if p.kw_only {
                ParamKind::KeywordOnly
            } else {
                ParamKind::PositionalOrKeyword
            };
            let mut m = vec![(s("name"), s(&p.name)), (s("kind"), s(kind.as_str()))];
            if let Some(d) = &p.default {
                m.push((s("default"), d.clone()));
            }
            Value::Map(m)
        })
        .collect();
    if p.var_kwargs {
        out.push(Value::Map(vec![
            (s("name"), s("kwargs")),
            (s("kind"), s(ParamKind::VarKeyword.as_str())),
        ]));
    }
    Value::Array(out)
}

fn callable(kind: &str, name: &str, p: &Params, class: Option<&str>) -> Vec<(Value, Value)> {
    let mut m = vec![(s("kind"), s(kind)), (s("name"), s(name))];
    if let Some(c) = class {
        m.push((s("class"), s(c)));
    }
    m.push((s("doc"), doc(p.doc.as_ref())));
    m.push((s("params"), params(p)));
    m
}

/// One member of a module or object: its name, kind and (for functions
/// and methods) signature and doc; nested modules and objects are only
/// named (describe them to see inside).
fn member(name: &str, item: &Item) -> Value {
    Value::Map(match item {
        Item::Data(v) => vec![
            (s("kind"), s("constant")),
            (s("name"), s(name)),
            (s("type"), s(v.kind_name())),
        ],
        Item::Module(_) => vec![(s("kind"), s("module")), (s("name"), s(name))],
        Item::Function(f) => callable("function", name, &f.params, None),
        Item::Object(o) => vec![
            (s("kind"), s("object")),
            (s("name"), s(name)),
            (s("class"), s(o.class_name())),
        ],
        Item::Method(o, m) => match o.0.class.methods.get(&**m) {
            Some(def) => callable("method", name, &def.params, Some(o.class_name())),
            None => vec![(s("kind"), s("method")), (s("name"), s(name))],
        },
    })
}

fn module(label: &str, m: &Module) -> Vec<(Value, Value)> {
    let members = m.items.iter().map(|(n, i)| member(n, i)).collect();
    vec![
        (s("kind"), s("module")),
        (s("name"), s(label)),
        (s("doc"), doc(m.doc.as_ref())),
        (s("members"), Value::Array(members)),
    ]
}

fn object(label: &str, o: &Object) -> Vec<(Value, Value)> {
    let class = &o.0.class;
    let mut members: Vec<(&str, Value)> = class
        .attrs
        .keys()
        .map(|n| {
            (
                n.as_str(),
                Value::Map(vec![(s("kind"), s("attribute")), (s("name"), s(n))]),
            )
        })
        .collect();
    members.extend(class.methods.iter().map(|(n, def)| {
        (
            n.as_str(),
            Value::Map(callable("method", n, &def.params, Some(&class.name))),
        )
    }));
    members.sort_by(|a, b| a.0.cmp(b.0));
    vec![
        (s("kind"), s("object")),
        (s("name"), s(label)),
        (s("class"), s(&class.name)),
        (s("doc"), doc(class.doc.as_ref())),
        (
            s("members"),
            Value::Array(members.into_iter().map(|(_, v)| v).collect()),
        ),
    ]
}

/// The description of `item`, reached as `label`.
pub(crate) fn describe(item: &Item, label: &str) -> Value {
    Value::Map(match item {
        Item::Module(m) => module(label, m),
        Item::Object(o) => object(label, o),
        Item::Function(f) => callable("function", label, &f.params, None),
        Item::Method(o, m) => match o.0.class.methods.get(&**m) {
            Some(def) => callable("method", label, &def.params, Some(o.class_name())),
            None => vec![(s("kind"), s("method")), (s("name"), s(label))],
        },
        Item::Data(v) => vec![
            (s("kind"), s("value")),
            (s("name"), s(label)),
            (s("type"), s(v.kind_name())),
        ],
    })
}

/// How a parameter takes its argument (Python's `inspect.Parameter` kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// By position or by keyword.
    PositionalOrKeyword,
    /// By keyword only (after `*` in Python).
    KeywordOnly,
    /// Collects undeclared keywords (`**kwargs`).
    VarKeyword,
}

impl ParamKind {
    /// The wire name: `positional_or_keyword`, `keyword_only`, `var_keyword`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PositionalOrKeyword => "positional_or_keyword",
            Self::KeywordOnly => "keyword_only",
            Self::VarKeyword => "var_keyword",
        }
    }
}

/// One declared parameter, as `describe` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// Its name.
    pub name: String,
    /// How it takes its argument.
    pub kind: ParamKind,
    /// Its default, if it has one (a default of nil is `Some(Value::Nil)`).
    pub default: Option<Value>,
}

/// What [`Proxy::describe`](super::Proxy::describe) returns: a root,
/// module, object, function, method or value, and its members (each a
/// `Description` of its own with `members` empty).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Description {
    /// `module`, `object`, `function`, `method` or `value`; for members
    /// also `constant` (a plain value) and `attribute` (an object's).
    pub kind: String,
    /// How it was reached (`sim.make().step`); for a member, its name.
    pub name: String,
    /// The declared doc string.
    pub doc: Option<String>,
    /// The class, for objects and methods.
    pub class: Option<String>,
    /// The msgpack kind of a value or constant (`int`, `float`, `str`, ...).
    pub value_type: Option<String>,
    /// Parameters of a function or method, in declaration order.
    pub params: Vec<ParamInfo>,
    /// Members of a module or object, sorted by name.
    pub members: Vec<Description>,
}

impl Description {
    /// The member called `name`.
    pub fn member(&self, name: &str) -> Option<&Description> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Member names, sorted (what Python's `dir()` would list).
    pub fn member_names(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.name.as_str()).collect()
    }
}

/// A Python-like signature: `step(action, *, render=false)`.
impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !matches!(self.kind.as_str(), "function" | "method") {
            return write!(f, "{} {}", self.kind, self.name);
        }
        write!(f, "{}(", self.name)?;
        let mut star = false;
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match p.kind {
                ParamKind::KeywordOnly if !star => {
                    f.write_str("*, ")?;
                    star = true;
                }
                ParamKind::VarKeyword => f.write_str("**")?,
                _ => {}
            }
            f.write_str(&p.name)?;
            if let Some(d) = &p.default {
                write!(f, "={d}")?;
            }
        }
        f.write_str(")")
    }
}

fn bad(v: &Value) -> TypeMismatch {
    TypeMismatch::new("a description map", v.kind_name())
}

fn opt_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl FromValue for ParamInfo {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        let kind = match v.get("kind").and_then(Value::as_str) {
            Some("positional_or_keyword") => ParamKind::PositionalOrKeyword,
            Some("keyword_only") => ParamKind::KeywordOnly,
            Some("var_keyword") => ParamKind::VarKeyword,
            _ => return Err(bad(&v)),
        };
        Ok(Self {
            name: opt_str(&v, "name").ok_or_else(|| bad(&v))?,
            kind,
            default: v.get("default").cloned(),
        })
    }
}

impl FromValue for Description {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        let list = |key: &str| match v.get(key) {
            Some(Value::Array(a)) => Ok(a.clone()),
            None | Some(Value::Nil) => Ok(Vec::new()),
            Some(_) => Err(bad(&v)),
        };
        let params = list("params")?
            .into_iter()
            .map(ParamInfo::from_value)
            .collect::<Result<_, _>>()?;
        let members = list("members")?
            .into_iter()
            .map(Description::from_value)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            kind: opt_str(&v, "kind").ok_or_else(|| bad(&v))?,
            name: opt_str(&v, "name").ok_or_else(|| bad(&v))?,
            doc: opt_str(&v, "doc"),
            class: opt_str(&v, "class"),
            value_type: opt_str(&v, "type"),
            params,
            members,
        })
    }
}
