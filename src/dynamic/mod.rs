//! Remote objects through lazy, pipelined proxies (feature `msgpack`).
//!
//! A server registers named roots in a [`Space`]: modules holding
//! functions with declared parameters, constants, and objects (instances
//! of a [`Class`]) with attributes and methods. A client reaches them
//! through [`Proxy`] values from a [`Session`]:
//!
//! - attribute access, indexing and calls return new proxies at once;
//! - every call runs exactly once on the server, in the client's order;
//! - only [`Proxy::materialize`] waits: k chained calls and one
//!   materialize cost one round trip, because the client names the handle
//!   of each call's result itself (like Cap'n Proto's promise pipelining);
//! - a failed call poisons every result that depends on it, and
//!   materializing any of them returns the error naming the failed call;
//! - results stay on the server as handles in a table private to the
//!   connection, released in batches when proxies drop and all at once at
//!   disconnect; the table has a bound;
//! - only registered roots and what they hold are reachable.
//!
//! ```
//! use framerpc::dynamic::{Args, Class, Module, Params, Session, Space, Value};
//! use framerpc::{Client, Router, Server};
//!
//! struct Env { t: i64 }
//! let env = Class::<Env>::builder("Env")
//!     .method("step", Params::new().req("dt"), |e: &mut Env, a| { e.t += a.get::<i64>("dt")?; Ok(e.t) })
//!     .build();
//! let sim = Module::new().function("make", Params::new().req("name"), move |_| Ok(env.instance(Env { t: 0 })));
//! let space = Space::builder().root("sim", sim).build();
//! let server = Server::bind("127.0.0.1:0", space.install(Router::new())?)?;
//!
//! let client = Client::connect(server.local_addr())?;
//! let s = Session::new(&client);
//! let env = s.root("sim").method("make", ("pendulum",));   // no wait
//! env.method("step", Args::new().kw("dt", 2));              // no wait
//! let t = env.method("step", (3,));                         // no wait
//! assert_eq!(t.materialize::<i64>()?, 5);                   // one round trip
//! assert!(env.materialize::<Value>()?.is_proxy());
//! # Ok::<(), framerpc::Error>(())
//! ```
//!
//! The bytes on the wire are specified in `docs/DYNAMIC.md`.

mod describe;
mod object;
mod proxy;
mod space;
mod value;
pub mod wire;

pub use describe::{Description, ParamInfo, ParamKind};
pub use object::{Class, ClassBuilder, Function, Input, Item, Module, Object, Params, Ret};
pub use proxy::{materialize, Args, Proxy, Refusal, Session};
pub use space::{Space, SpaceBuilder, Stats, DYNAMIC};
pub use value::{FromValue, TypeMismatch, Value, DEFAULT_MAX_DEPTH};
