//! What a server registers in its object space: modules, functions with
//! declared parameters, constants, and classes whose objects carry
//! attributes and methods.
//!
//! ```
//! use framerpc::dynamic::{Class, Item, Module, Params};
//!
//! struct Counter { n: i64 }
//! let counter = Class::<Counter>::builder("Counter")
//!     .method("add", Params::new().req("k"), |c: &mut Counter, a| {
//!         c.n += a.get::<i64>("k")?;
//!         Ok(c.n)
//!     })
//!     .attr("n", |c: &Counter| c.n)
//!     .build();
//! let tools = Module::new()
//!     .constant("version", "1.0")
//!     .function("new_counter", Params::new().opt("start", 0), move |a| {
//!         Ok(counter.instance(Counter { n: a.get("start")? }))
//!     });
//! # let _ = tools;
//! ```

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use parking_lot::Mutex;

use super::value::{FromValue, Value};
use crate::error::HandlerError;

/// What a function or method returns.
pub type Ret = Result<Item, HandlerError>;

type FnBox = Arc<dyn Fn(&Input<'_>) -> Ret + Send + Sync>;
type MethodBox = Arc<dyn Fn(&mut dyn Any, &Input<'_>) -> Ret + Send + Sync>;
type GetterBox = Arc<dyn Fn(&dyn Any) -> Item + Send + Sync>;

/// Anything a remote reference can point at on the server.
#[derive(Clone)]
pub enum Item {
    /// Plain data: materialized by value.
    Data(Value),
    /// A module: attributes only.
    Module(Arc<Module>),
    /// A function.
    Function(Arc<Function>),
    /// An object with attributes and methods.
    Object(Object),
    /// A method bound to its object.
    Method(Object, Arc<str>),
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Data(v) => write!(f, "Data({v})"),
            Self::Module(_) => f.write_str("Module"),
            Self::Function(func) => write!(f, "Function({})", func.name),
            Self::Object(o) => write!(f, "Object({})", o.class_name()),
            Self::Method(o, m) => write!(f, "Method({}.{m})", o.class_name()),
        }
    }
}

impl Item {
    /// A short description of the kind, for error messages.
    pub fn kind_name(&self) -> String {
        match self {
            Self::Data(v) => format!("a {} value", v.kind_name()),
            Self::Module(_) => "a module".into(),
            Self::Function(_) => "a function".into(),
            Self::Object(o) => format!("a {} object", o.class_name()),
            Self::Method(..) => "a method".into(),
        }
    }
}

impl<T: Into<Value>> From<T> for Item {
    fn from(v: T) -> Self {
        Item::Data(v.into())
    }
}

impl From<Object> for Item {
    fn from(o: Object) -> Self {
        Item::Object(o)
    }
}

impl From<Module> for Item {
    fn from(m: Module) -> Self {
        Item::Module(Arc::new(m))
    }
}

/// One declared parameter.
#[derive(Clone, Debug)]
pub(crate) struct Param {
    pub(crate) name: String,
    pub(crate) default: Option<Value>,
    pub(crate) kw_only: bool,
}

/// Declared parameters: names in positional order, with optional defaults,
/// keyword-only ones, whether unknown keywords are collected (`**kwargs`),
/// and a doc string. `describe` reports exactly these.
///
/// ```
/// use framerpc::dynamic::Params;
/// // def reset(seed, options=None, *, render=False): "Starts an episode."
/// let p = Params::new()
///     .req("seed")
///     .opt("options", ())
///     .kw_opt("render", false)
///     .doc("Starts an episode.");
/// # let _ = p;
/// ```
#[derive(Clone, Debug, Default)]
pub struct Params {
    pub(crate) list: Vec<Param>,
    pub(crate) var_kwargs: bool,
    pub(crate) doc: Option<String>,
}

impl Params {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, name: &str, default: Option<Value>, kw_only: bool) -> Self {
        self.list.push(Param {
            name: name.to_owned(),
            default,
            kw_only,
        });
        self
    }

    /// A required parameter (positional or keyword).
    #[must_use]
    pub fn req(self, name: &str) -> Self {
        self.push(name, None, false)
    }

    /// An optional parameter with a default (positional or keyword).
    #[must_use]
    pub fn opt(self, name: &str, default: impl Into<Value>) -> Self {
        self.push(name, Some(default.into()), false)
    }

    /// A required keyword-only parameter (Python's `*, name`): it cannot
    /// be given positionally.
    #[must_use]
    pub fn kw(self, name: &str) -> Self {
        self.push(name, None, true)
    }

    /// An optional keyword-only parameter with a default.
    #[must_use]
    pub fn kw_opt(self, name: &str, default: impl Into<Value>) -> Self {
        self.push(name, Some(default.into()), true)
    }

    /// Accepts keywords that are not declared (see [`Input::extra_kwargs`]).
    #[must_use]
    pub fn var_kwargs(mut self) -> Self {
        self.var_kwargs = true;
        self
    }

    /// The doc string `describe` reports for the function or method.
    #[must_use]
    pub fn doc(mut self, text: &str) -> Self {
        self.doc = Some(text.to_owned());
        self
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|p| p.name == name)
    }

    /// Matches positional and keyword arguments to the parameters, or says
    /// which rule they break (`fname` names the callee in the message).
    pub(crate) fn bind(
        &self,
        fname: &str,
        args: Vec<Item>,
        kwargs: Vec<(String, Item)>,
    ) -> Result<Input<'_>, HandlerError> {
        let positional: Vec<usize> = (0..self.list.len())
            .filter(|&i| !self.list[i].kw_only)
            .collect();
        let n = positional.len();
        if args.len() > n {
            return Err(format!(
                "wrong arity: {fname}() takes {n} positional argument{} but {} were given",
                if n == 1 { "" } else { "s" },
                args.len()
            )
            .into());
        }
        let mut values: Vec<Option<Item>> = vec![None; self.list.len()];
        for (v, &i) in args.into_iter().zip(&positional) {
            values[i] = Some(v);
        }
        let mut extra = Vec::new();
        for (k, v) in kwargs {
            match self.index(&k) {
                Some(i) if values[i].is_some() => {
                    return Err(format!("{fname}() got multiple values for argument '{k}'").into());
                }
                Some(i) => values[i] = Some(v),
                None if self.var_kwargs => extra.push((k, v)),
                None => {
                    return Err(format!(
                        "unknown keyword: {fname}() got an unexpected keyword argument '{k}'"
                    )
                    .into())
                }
            }
        }
        let values = values
            .into_iter()
            .zip(&self.list)
            .map(|(v, p)| match (v, &p.default) {
                (Some(v), _) => Ok(v),
                (None, Some(d)) => Ok(Item::Data(d.clone())),
                (None, None) => Err(HandlerError::from(format!(
                    "wrong arity: {fname}() missing required {}argument '{}'",
                    if p.kw_only { "keyword-only " } else { "" },
                    p.name
                ))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Input {
            params: self,
            values,
            extra,
        })
    }
}

/// The arguments of one call, matched to the declared parameters.
#[derive(Debug)]
pub struct Input<'a> {
    params: &'a Params,
    values: Vec<Item>,
    extra: Vec<(String, Item)>,
}

impl Input<'_> {
    /// The argument for parameter `name` (given or defaulted).
    pub fn item(&self, name: &str) -> Option<&Item> {
        self.params.index(name).and_then(|i| self.values.get(i))
    }

    /// The argument as plain data, if it is.
    pub fn value(&self, name: &str) -> Option<&Value> {
        match self.item(name)? {
            Item::Data(v) => Some(v),
            _ => None,
        }
    }

    /// The argument converted to `T`; the error names the parameter.
    pub fn get<T: FromValue>(&self, name: &str) -> Result<T, HandlerError> {
        match self.item(name) {
            Some(Item::Data(v)) => T::from_value(v.clone())
                .map_err(|e| HandlerError::from(format!("argument '{name}': {e}"))),
            Some(other) => Err(format!(
                "argument '{name}': expected data, found {}",
                other.kind_name()
            )
            .into()),
            None => Err(format!("no parameter named '{name}'").into()),
        }
    }

    /// The argument as an array of `T` of exactly `shape`; the error
    /// names the parameter and both dtypes and shapes (`argument 'action':
    /// expected float32 array of shape (1,), found float64 array of shape
    /// (1, 1)`). See docs/DYNAMIC.md, "Arrays", for the rules.
    #[cfg(feature = "ndarray")]
    pub fn array<T: crate::ndarray::Element, D: ndarray::Dimension>(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<ndarray::Array<T, D>, HandlerError> {
        match self.item(name) {
            Some(Item::Data(v)) => crate::ndarray::array_of_shape(v, shape)
                .map_err(|e| HandlerError::from(format!("argument '{name}': {e}"))),
            Some(other) => Err(format!(
                "argument '{name}': expected data, found {}",
                other.kind_name()
            )
            .into()),
            None => Err(format!("no parameter named '{name}'").into()),
        }
    }

    /// The argument as a remote object (a proxy the client passed back).
    pub fn object(&self, name: &str) -> Result<&Object, HandlerError> {
        match self.item(name) {
            Some(Item::Object(o)) => Ok(o),
            Some(other) => Err(format!(
                "argument '{name}': expected an object, found {}",
                other.kind_name()
            )
            .into()),
            None => Err(format!("no parameter named '{name}'").into()),
        }
    }

    /// Runs `f` on the state of the object passed as `name`, which must be
    /// a `T`. Fails (instead of deadlocking) if that object is the one whose
    /// method is running.
    pub fn with_object<T: Any, R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, HandlerError> {
        let o = self.object(name)?;
        let mut guard = o.0.state.try_lock().ok_or_else(|| {
            HandlerError::from(format!(
                "argument '{name}': the object is in use by this call"
            ))
        })?;
        let t = guard.downcast_mut::<T>().ok_or_else(|| {
            HandlerError::from(format!(
                "argument '{name}': wrong object type {}",
                o.class_name()
            ))
        })?;
        Ok(f(t))
    }

    /// Keywords not declared, when the parameters accept them.
    pub fn extra_kwargs(&self) -> &[(String, Item)] {
        &self.extra
    }
}

/// A function: a name, declared parameters and a Rust closure.
pub struct Function {
    pub(crate) name: String,
    pub(crate) params: Params,
    pub(crate) f: FnBox,
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.name)
            .field("params", &self.params)
            .finish()
    }
}

impl Function {
    /// A function named `name` (used in error messages).
    pub fn new<R: Into<Item>>(
        name: &str,
        params: Params,
        f: impl Fn(&Input<'_>) -> Result<R, HandlerError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.to_owned(),
            params,
            f: Arc::new(move |a| f(a).map(Into::into)),
        }
    }
}

/// A module: named functions, constants, submodules and objects.
#[derive(Default)]
pub struct Module {
    pub(crate) items: BTreeMap<String, Item>,
    pub(crate) doc: Option<String>,
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module")
            .field("items", &self.items.keys())
            .finish()
    }
}

impl Module {
    /// An empty module.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a function.
    #[must_use]
    pub fn function<R: Into<Item>>(
        self,
        name: &str,
        params: Params,
        f: impl Fn(&Input<'_>) -> Result<R, HandlerError> + Send + Sync + 'static,
    ) -> Self {
        let func = Function::new(name, params, f);
        self.item(name, Item::Function(Arc::new(func)))
    }

    /// Adds a constant.
    #[must_use]
    pub fn constant(self, name: &str, v: impl Into<Value>) -> Self {
        self.item(name, Item::Data(v.into()))
    }

    /// Adds a submodule.
    #[must_use]
    pub fn module(self, name: &str, m: Module) -> Self {
        self.item(name, Item::Module(Arc::new(m)))
    }

    /// The doc string `describe` reports for the module.
    #[must_use]
    pub fn doc(mut self, text: &str) -> Self {
        self.doc = Some(text.to_owned());
        self
    }

    /// Adds any item (an object shared by every connection, for example).
    #[must_use]
    pub fn item(mut self, name: &str, item: impl Into<Item>) -> Self {
        self.items.insert(name.to_owned(), item.into());
        self
    }
}

pub(crate) struct Method {
    pub(crate) params: Params,
    pub(crate) f: MethodBox,
}

pub(crate) struct ClassInner {
    pub(crate) name: String,
    pub(crate) methods: BTreeMap<String, Method>,
    pub(crate) attrs: BTreeMap<String, GetterBox>,
    pub(crate) doc: Option<String>,
}

/// A class of objects whose state is a `T`: methods and attributes.
/// Cheap to clone.
pub struct Class<T> {
    inner: Arc<ClassInner>,
    _t: PhantomData<fn(T)>,
}

impl<T> Clone for Class<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Class<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Class")
            .field("name", &self.inner.name)
            .field("methods", &self.inner.methods.keys())
            .field("attrs", &self.inner.attrs.keys())
            .finish()
    }
}

/// Builds a [`Class`].
#[must_use]
pub struct ClassBuilder<T> {
    inner: ClassInner,
    _t: PhantomData<fn(T)>,
}

impl<T> fmt::Debug for ClassBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassBuilder")
            .field("name", &self.inner.name)
            .finish()
    }
}

impl<T: Any + Send> Class<T> {
    /// Starts a class named `name` (used in error messages).
    pub fn builder(name: &str) -> ClassBuilder<T> {
        ClassBuilder {
            inner: ClassInner {
                name: name.to_owned(),
                methods: BTreeMap::new(),
                attrs: BTreeMap::new(),
                doc: None,
            },
            _t: PhantomData,
        }
    }

    /// A new object of this class holding `state`.
    pub fn instance(&self, state: T) -> Object {
        Object(Arc::new(ObjectInner {
            class: Arc::clone(&self.inner),
            state: Mutex::new(Box::new(state)),
        }))
    }
}

impl<T: Any + Send> ClassBuilder<T> {
    /// Adds a method. A method named `__call__` makes the objects callable,
    /// `__getitem__` (one parameter) makes them indexable.
    pub fn method<R: Into<Item>>(
        mut self,
        name: &str,
        params: Params,
        f: impl Fn(&mut T, &Input<'_>) -> Result<R, HandlerError> + Send + Sync + 'static,
    ) -> Self {
        let f: MethodBox = Arc::new(move |state, input| match state.downcast_mut::<T>() {
            Some(t) => f(t, input).map(Into::into),
            None => Err("internal error: object state of the wrong type".into()),
        });
        self.inner
            .methods
            .insert(name.to_owned(), Method { params, f });
        self
    }

    /// The doc string `describe` reports for objects of the class.
    pub fn doc(mut self, text: &str) -> Self {
        self.inner.doc = Some(text.to_owned());
        self
    }

    /// Adds a read-only attribute computed from the state.
    pub fn attr<R: Into<Item>>(
        mut self,
        name: &str,
        f: impl Fn(&T) -> R + Send + Sync + 'static,
    ) -> Self {
        let g: GetterBox = Arc::new(move |state| match state.downcast_ref::<T>() {
            Some(t) => f(t).into(),
            None => Item::Data(Value::Nil),
        });
        self.inner.attrs.insert(name.to_owned(), g);
        self
    }

    /// Finishes the class.
    pub fn build(self) -> Class<T> {
        Class {
            inner: Arc::new(self.inner),
            _t: PhantomData,
        }
    }
}

pub(crate) struct ObjectInner {
    pub(crate) class: Arc<ClassInner>,
    pub(crate) state: Mutex<Box<dyn Any + Send>>,
}

/// An object: an instance of a [`Class`]. Cheap to clone (shared).
#[derive(Clone)]
pub struct Object(pub(crate) Arc<ObjectInner>);

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Object").field(&self.class_name()).finish()
    }
}

impl Object {
    /// The class name.
    pub fn class_name(&self) -> &str {
        &self.0.class.name
    }

    /// Runs `f` on the state if it is a `T` (waits for a running method).
    pub fn with<T: Any, R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut g = self.0.state.lock();
        g.downcast_mut::<T>().map(f)
    }

    pub(crate) fn getattr(&self, name: &str) -> Option<Item> {
        if let Some(g) = self.0.class.attrs.get(name) {
            let state = self.0.state.lock();
            return Some(g(&**state));
        }
        if self.0.class.methods.contains_key(name) {
            return Some(Item::Method(self.clone(), name.into()));
        }
        None
    }

    pub(crate) fn has_method(&self, name: &str) -> bool {
        self.0.class.methods.contains_key(name)
    }

    /// Binds the arguments and runs method `name`.
    pub(crate) fn call_method(
        &self,
        name: &str,
        label: &str,
        args: Vec<Item>,
        kwargs: Vec<(String, Item)>,
    ) -> Ret {
        let m = self.0.class.methods.get(name).ok_or_else(|| {
            HandlerError::from(format!(
                "unknown attribute '{name}' on {} object {label}",
                self.class_name()
            ))
        })?;
        let input = m.params.bind(label, args, kwargs)?;
        let mut state = self.0.state.lock();
        (m.f)(&mut **state, &input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(v: impl Into<Value>) -> Item {
        Item::Data(v.into())
    }

    #[test]
    fn bind_checks_arity_and_keywords() {
        let p = Params::new().req("x").opt("y", 2);
        let e = p
            .bind("f", vec![data(1), data(2), data(3)], vec![])
            .unwrap_err();
        assert_eq!(
            e.message(),
            "wrong arity: f() takes 2 positional arguments but 3 were given"
        );
        let e = p.bind("f", vec![], vec![]).unwrap_err();
        assert_eq!(
            e.message(),
            "wrong arity: f() missing required argument 'x'"
        );
        let e = p
            .bind("f", vec![data(1)], vec![("z".into(), data(1))])
            .unwrap_err();
        assert_eq!(
            e.message(),
            "unknown keyword: f() got an unexpected keyword argument 'z'"
        );
        let e = p
            .bind("f", vec![data(1)], vec![("x".into(), data(1))])
            .unwrap_err();
        assert_eq!(e.message(), "f() got multiple values for argument 'x'");
        let i = p.bind("f", vec![], vec![("x".into(), data(5))]).unwrap();
        assert_eq!(
            (i.get::<i64>("x").unwrap(), i.get::<i64>("y").unwrap()),
            (5, 2)
        );
    }
}
