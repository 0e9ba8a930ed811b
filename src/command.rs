//! Command specs: an id, a name and the two codecs, defined once in a module
//! that server and client both import.

use std::fmt;

use crate::codec::Codec;
use crate::frame::RESERVED_START;

/// A command: id, name, request codec and response codec.
///
/// `Command::new` is a `const fn` and refuses reserved ids (`0xFF00` and
/// up) at compile time when used in a `const`. Server and client share the
/// same value, so their codecs cannot disagree.
///
/// ```
/// use framerpc::codec::{U32, U32Codec};
/// use framerpc::Command;
/// pub const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
/// assert_eq!(ADD.info().request_schema, "(u32,u32)");
/// ```
///
/// ```compile_fail
/// use framerpc::codec::U32;
/// use framerpc::Command;
/// const BAD: Command<u32, u32> = Command::new(0xFF02, "ping", &U32, &U32);
/// ```
pub struct Command<Req: 'static, Resp: 'static> {
    id: u16,
    name: &'static str,
    request: &'static dyn Codec<Value = Req>,
    response: &'static dyn Codec<Value = Resp>,
}

impl<Req, Resp> Command<Req, Resp> {
    /// A command spec. Panics (at compile time in a `const`) for ids in the
    /// reserved range `0xFF00..=0xFFFF`.
    pub const fn new(
        id: u16,
        name: &'static str,
        request: &'static dyn Codec<Value = Req>,
        response: &'static dyn Codec<Value = Resp>,
    ) -> Self {
        assert!(
            id < RESERVED_START,
            "command ids 0xFF00..=0xFFFF are reserved"
        );
        Self {
            id,
            name,
            request,
            response,
        }
    }

    /// The command id.
    pub const fn id(&self) -> u16 {
        self.id
    }

    /// The command name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The request codec.
    pub fn request(&self) -> &'static dyn Codec<Value = Req> {
        self.request
    }

    /// The response codec.
    pub fn response(&self) -> &'static dyn Codec<Value = Resp> {
        self.response
    }

    /// Id, name and schemas, as `list` reports them.
    pub fn info(&self) -> CommandInfo {
        CommandInfo {
            id: self.id,
            name: self.name.to_owned(),
            request_schema: self.request.schema_string(),
            response_schema: self.response.schema_string(),
        }
    }
}

impl<Req, Resp> Clone for Command<Req, Resp> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<Req, Resp> Copy for Command<Req, Resp> {}

impl<Req, Resp> fmt::Debug for Command<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("request", &self.request.schema_string())
            .field("response", &self.response.schema_string())
            .finish()
    }
}

/// A command's id, name and schema strings: one row of the `list` reply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CommandInfo {
    /// The command id.
    pub id: u16,
    /// The command name.
    pub name: String,
    /// The request codec's schema.
    pub request_schema: String,
    /// The response codec's schema.
    pub response_schema: String,
}

/// Anything that describes a command; lets `Client::check` take a list of
/// specs with different request and response types.
pub trait Spec {
    /// The command's id, name and schemas.
    fn info(&self) -> CommandInfo;
}

impl<Req, Resp> Spec for Command<Req, Resp> {
    fn info(&self) -> CommandInfo {
        Command::info(self)
    }
}

impl Spec for CommandInfo {
    fn info(&self) -> CommandInfo {
        self.clone()
    }
}
