//! Errors: the wire error codes, decode errors, protocol errors and the one
//! [`Error`] type every fallible framerpc call returns.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// A wire error code, carried in the first two bytes of an ERROR frame.
///
/// Codes below 1000 belong to framerpc (the constants below); codes from
/// 1000 up belong to applications (see [`HandlerError::with_code`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// The command id is not in the receiver's table.
    pub const UNKNOWN_COMMAND: Self = Self(1);
    /// The request did not decode with the command's request codec.
    pub const BAD_PAYLOAD: Self = Self(2);
    /// The handler returned an error.
    pub const HANDLER: Self = Self(3);
    /// The handler panicked; the server lives on.
    pub const PANIC: Self = Self(4);
    /// Admission refused: the server is at its user limit.
    pub const BUSY: Self = Self(5);
    /// Missing or wrong token.
    pub const UNAUTHORIZED: Self = Self(6);
    /// A frame was larger than the receiver's limit.
    pub const TOO_LARGE: Self = Self(7);
    /// The server is shutting down.
    pub const SHUTTING_DOWN: Self = Self(8);
    /// A deadline ran out.
    pub const TIMEOUT: Self = Self(9);
    /// The peer broke the frame protocol.
    pub const PROTOCOL: Self = Self(10);
    /// The first code that belongs to applications.
    pub const FIRST_APPLICATION: Self = Self(1000);

    /// The code's name, or `None` for an application or unknown code.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "UNKNOWN_COMMAND",
            2 => "BAD_PAYLOAD",
            3 => "HANDLER",
            4 => "PANIC",
            5 => "BUSY",
            6 => "UNAUTHORIZED",
            7 => "TOO_LARGE",
            8 => "SHUTTING_DOWN",
            9 => "TIMEOUT",
            10 => "PROTOCOL",
            _ => return None,
        })
    }

    /// True for codes that belong to applications (1000 and up).
    pub fn is_application(self) -> bool {
        self.0 >= 1000
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "code {}", self.0),
        }
    }
}

/// Why a payload did not decode. Small and `Copy` so tests compare exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes remain than the codec needs.
    Truncated {
        /// Bytes the codec needed.
        needed: u64,
        /// Bytes that remained.
        remaining: u64,
    },
    /// Bytes were left over after the value was decoded.
    TrailingBytes(usize),
    /// A bool byte other than 0 or 1.
    InvalidBool(u8),
    /// An option tag other than 0 or 1.
    InvalidOptionTag(u8),
    /// A str was not UTF-8.
    InvalidUtf8,
    /// A value decoded but the `map` conversion rejected it.
    Invalid(&'static str),
    /// Nesting deeper than the decoder allows.
    TooDeep(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, remaining } => {
                write!(f, "truncated: needs {needed} bytes, {remaining} remain")
            }
            Self::TrailingBytes(n) => write!(f, "{n} trailing bytes after the value"),
            Self::InvalidBool(b) => write!(f, "bool byte {b:#04x} is neither 0 nor 1"),
            Self::InvalidOptionTag(b) => write!(f, "option tag {b:#04x} is neither 0 nor 1"),
            Self::InvalidUtf8 => f.write_str("str is not valid UTF-8"),
            Self::Invalid(why) => write!(f, "invalid value: {why}"),
            Self::TooDeep(max) => write!(f, "nesting deeper than {max} levels"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// How a peer broke the frame protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The kind byte is not 1..=5.
    UnknownKind(u8),
    /// A flag bit this version does not know is set.
    UnknownFlags(u8),
    /// The stream ended inside a frame.
    TruncatedFrame {
        /// Bytes the frame needed.
        needed: u64,
        /// Bytes that arrived before the end.
        got: u64,
    },
    /// An ERROR frame shorter than its 2-byte code.
    ShortErrorPayload,
    /// A WebSocket text message (framerpc speaks binary only).
    TextMessage,
    /// A WebSocket message whose size disagrees with the frame's `len`.
    LengthMismatch {
        /// The header's `len`.
        len: u32,
        /// The message size minus the 12-byte header.
        actual: u64,
    },
    /// A frame that is not allowed here (for example a call before `auth`).
    Unexpected(&'static str),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            Self::UnknownFlags(b) => write!(f, "unknown flag bits {b:#04x}"),
            Self::TruncatedFrame { needed, got } => {
                write!(f, "stream ended inside a frame ({got} of {needed} bytes)")
            }
            Self::ShortErrorPayload => f.write_str("ERROR frame shorter than its code"),
            Self::TextMessage => f.write_str("text message (framerpc speaks binary only)"),
            Self::LengthMismatch { len, actual } => {
                write!(f, "frame len {len} but the message carries {actual} bytes")
            }
            Self::Unexpected(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Which side's limit refused a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// This process's own limit (checked before sending, or on receipt).
    Local,
    /// The peer's limit (reported in its TOO_LARGE error).
    Remote,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Local => "this side's",
            Self::Remote => "the peer's",
        })
    }
}

/// A schema mismatch: found by [`Client::check`](crate::Client::check)
/// at connect, or by a reply that did not decode with the command's
/// response codec.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mismatch {
    /// The command's name as the client knows it.
    pub name: String,
    /// The command id.
    pub id: u16,
    /// What differs, in words, with both schemas.
    pub detail: String,
    /// The decode error, when a reply did not decode.
    pub decode: Option<DecodeError>,
}

impl Mismatch {
    pub(crate) fn new(name: impl Into<String>, id: u16, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            id,
            detail: detail.into(),
            decode: None,
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "schema mismatch for command {:?} (id {}): {}",
            self.name, self.id, self.detail
        )
    }
}

impl std::error::Error for Mismatch {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.decode.as_ref().map(|e| e as _)
    }
}

/// Why a connection ended: carried by [`Error::Disconnected`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disconnect {
    /// This side closed it: [`Client::close`](crate::Client::close), the
    /// last clone of a client dropped, [`Peer::close`](crate::Peer::close),
    /// or this server shutting down.
    Closed,
    /// The peer closed the connection (or reset it) without saying why.
    PeerClosed,
    /// The peer said why in an ERROR frame, then closed: BUSY,
    /// SHUTTING_DOWN, UNAUTHORIZED, TOO_LARGE or PROTOCOL, with its message.
    Refused {
        /// The wire code the peer sent.
        code: ErrorCode,
        /// The peer's message.
        message: Arc<str>,
    },
    /// Nothing arrived from the peer for this long
    /// ([`Limits::heartbeat`](crate::Limits::heartbeat)).
    Silent {
        /// How long the peer was silent.
        after: Duration,
    },
    /// The peer sent a frame over this side's
    /// [`Limits::max_frame_len`](crate::Limits::max_frame_len).
    TooLarge {
        /// The frame's payload length.
        len: u64,
        /// This side's limit.
        max: u64,
    },
    /// The peer broke the frame protocol.
    Protocol(ProtocolError),
    /// The transport failed: the error's kind and what it said (a TLS
    /// alert, a reset, a write timeout).
    Io {
        /// The error's kind.
        kind: io::ErrorKind,
        /// Its message.
        message: Arc<str>,
    },
    /// A reconnecting client is between connections and
    /// [`Outage::FailFast`](crate::Outage::FailFast) fails calls at once.
    Reconnecting,
    /// A reconnecting client gave up after
    /// [`Reconnect::max_attempts`](crate::Reconnect::max_attempts).
    GaveUp,
}

impl Disconnect {
    /// The reason for a transport error.
    pub(crate) fn io(e: &io::Error) -> Self {
        Self::Io {
            kind: e.kind(),
            message: e.to_string().into(),
        }
    }
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("this side closed the connection"),
            Self::PeerClosed => f.write_str("the peer closed the connection"),
            Self::Refused { code, message } => {
                write!(f, "the peer closed the connection after {code}: {message}")
            }
            Self::Silent { after } => write!(
                f,
                "nothing received from the peer for {after:?} (Limits::heartbeat sets when a \
                 silent peer is dropped)"
            ),
            Self::TooLarge { len, max } => write!(
                f,
                "the peer sent a frame of {len} bytes, over this side's limit of {max} bytes \
                 (Limits::max_frame_len)"
            ),
            Self::Protocol(e) => write!(f, "the peer broke the protocol: {e}"),
            Self::Io { message, .. } => write!(f, "transport error: {message}"),
            Self::Reconnecting => f.write_str(
                "the connection is down and the client is reconnecting (Outage::FailFast \
                 fails calls at once; Outage::Wait makes them wait for the reconnect)",
            ),
            Self::GaveUp => {
                f.write_str("the client gave up reconnecting (Reconnect::max_attempts)")
            }
        }
    }
}

impl std::error::Error for Disconnect {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

/// What was waited for when a deadline ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// The TCP connection ([`ClientBuilder::connect_timeout`](crate::ClientBuilder::connect_timeout)).
    Connect,
    /// The WebSocket upgrade (the same deadline as the connect).
    Handshake,
    /// A call's reply ([`ClientBuilder::timeout`](crate::ClientBuilder::timeout),
    /// or the one given to `call_timeout`).
    Call,
}

/// A deadline that ran out: carried by [`Error::Timeout`], the one shape
/// for a call, a connect and a WebSocket handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeout {
    /// What was waited for.
    pub stage: Stage,
    /// The command's name (or its id in hex for an untyped call), or the
    /// address or URL connected to.
    pub what: Box<str>,
    /// The call id (0 for a connect or a handshake).
    pub id: u32,
    /// The deadline that ran out.
    pub after: Duration,
    /// What the server said of this connection's admission when the
    /// client asked after a call's timeout (the holder and the queue
    /// place, if it was waiting), when it answered in time.
    pub server: Option<Box<str>>,
}

impl Timeout {
    pub(crate) fn new(stage: Stage, what: impl Into<Box<str>>, after: Duration) -> Self {
        Self {
            stage,
            what: what.into(),
            id: 0,
            after,
            server: None,
        }
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            stage,
            what,
            id,
            after,
            server,
        } = self;
        match stage {
            Stage::Connect => write!(
                f,
                "timeout: connecting to {what} took longer than {after:?} \
                 (ClientBuilder::connect_timeout)"
            )?,
            Stage::Handshake => write!(
                f,
                "timeout: no WebSocket upgrade answer from {what} within {after:?} \
                 (ClientBuilder::connect_timeout bounds connect and handshake together)"
            )?,
            Stage::Call => write!(
                f,
                "timeout: no reply to {what} (call id {id}) within {after:?}; \
                 the call may still be running on the peer"
            )?,
        }
        match server {
            Some(s) => write!(f, "; server: {s}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Timeout {}

/// Every failure a framerpc call can report.
///
/// Each variant names what failed, the values and the limit or peer
/// involved, and where you can act, what to do. `Debug` prints the same
/// text as `Display`, so `fn main() -> Result<(), framerpc::Error>` reports
/// a readable message. At most 32 bytes: big payloads are boxed.
///
/// ```
/// use framerpc::codec::U32;
/// use framerpc::{Client, Command, Error, ErrorCode, HandlerError, Router, Server};
/// const HALF: Command<u32, u32> = Command::new(1, "half", &U32, &U32);
///
/// let router = Router::new().handle(&HALF, |x| match x % 2 {
///     0 => Ok(x / 2),
///     _ => Err(HandlerError::with_code(1001, format!("{x} is odd"))),
/// });
/// let server = Server::bind("127.0.0.1:0", router)?;
/// let client = Client::connect(server.local_addr())?;
/// match client.call(&HALF, &3) {
///     Ok(half) => println!("{half}"),
///     Err(Error::Remote { code, message }) if code == ErrorCode(1001) => {
///         assert_eq!(&*message, "3 is odd")
///     }
///     Err(Error::Timeout(t)) => println!("{} took longer than {:?}", t.what, t.after),
///     Err(Error::Disconnected(why)) => println!("connection lost: {why}"),
///     Err(other) => return Err(other),
/// }
/// # Ok::<(), framerpc::Error>(())
/// ```
#[non_exhaustive]
pub enum Error {
    /// A local I/O error.
    Io(io::Error),
    /// The connection could not be opened: the address and the socket's
    /// error (refused, unreachable, a name that does not resolve, a URL
    /// given where `host:port` is expected).
    Connect {
        /// The address as given (or as resolved, when one was tried).
        addr: Box<str>,
        /// The socket's error.
        source: io::Error,
    },
    /// The connection is closed, and why; calls pending on it fail with
    /// this at once.
    Disconnected(Box<Disconnect>),
    /// A deadline ran out: a call (which may still be running remotely),
    /// a connect or a WebSocket handshake.
    Timeout(Box<Timeout>),
    /// A frame over a size limit: this side's (a request checked before
    /// sending, or a reply on receipt) or the peer's.
    TooLarge {
        /// The frame's payload length.
        len: u64,
        /// The limit it broke.
        max: u64,
        /// Whose limit.
        side: Side,
    },
    /// The peer broke the protocol.
    Protocol(ProtocolError),
    /// A payload did not decode.
    Decode(DecodeError),
    /// The peer answered with an ERROR frame.
    Remote {
        /// The wire code.
        code: ErrorCode,
        /// The peer's message.
        message: Box<str>,
    },
    /// The server's command table differs from the client's specs (at
    /// connect, or a reply that did not decode with the spec's codec).
    SchemaMismatch(Box<Mismatch>),
    /// A router was built wrong (duplicate id or name, reserved id), or a
    /// setting is invalid.
    Config(Box<str>),
    /// The transport refused the connection (WebSocket upgrade, auth).
    Handshake(Box<str>),
    /// A dynamic value did not convert to the type asked for: what was
    /// expected and what was found.
    #[cfg(feature = "msgpack")]
    Value(Box<crate::dynamic::TypeMismatch>),
}

impl Error {
    /// The wire code this error corresponds to, when there is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Remote { code, .. } => Some(*code),
            Self::Timeout(_) => Some(ErrorCode::TIMEOUT),
            Self::TooLarge { .. } => Some(ErrorCode::TOO_LARGE),
            Self::Protocol(_) => Some(ErrorCode::PROTOCOL),
            Self::Decode(_) => Some(ErrorCode::BAD_PAYLOAD),
            #[cfg(feature = "msgpack")]
            Self::Value(_) => Some(ErrorCode::BAD_PAYLOAD),
            _ => None,
        }
    }

    /// True if the error says the connection is gone.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, Self::Disconnected(_)) || matches!(self, Self::Io(e) if is_disconnect_io(e))
    }

    /// Why the connection ended, for [`Error::Disconnected`].
    pub fn disconnect_reason(&self) -> Option<&Disconnect> {
        match self {
            Self::Disconnected(why) => Some(why),
            _ => None,
        }
    }

    /// The remote message, for [`Error::Remote`].
    pub fn remote_message(&self) -> Option<&str> {
        match self {
            Self::Remote { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Turns the error into an `io::Error`, keeping I/O errors as they are.
    pub fn into_io(self) -> io::Error {
        match self {
            Self::Io(e) => e,
            Self::Connect { .. } => io::Error::new(io::ErrorKind::ConnectionRefused, self),
            Self::Disconnected(_) => io::Error::new(io::ErrorKind::ConnectionAborted, self),
            Self::Timeout(_) => io::Error::new(io::ErrorKind::TimedOut, self),
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }

    pub(crate) fn remote(code: ErrorCode, message: impl Into<Box<str>>) -> Self {
        Self::Remote {
            code,
            message: message.into(),
        }
    }

    /// Adds what the caller of command `name` (id `cmd`) knows to an
    /// UNKNOWN_COMMAND or BAD_PAYLOAD answer: its name and what to do.
    pub(crate) fn for_call(self, name: &str, cmd: u16) -> Self {
        match self {
            Self::Remote { code, message } if code == ErrorCode::UNKNOWN_COMMAND => Self::Remote {
                code,
                message: format!(
                    "{message} (this client calls it {name:?}): the server has no command \
                     with id {cmd}; Client::connect_checked compares the server's commands \
                     with your specs at connect"
                )
                .into(),
            },
            Self::Remote { code, message } if code == ErrorCode::BAD_PAYLOAD => Self::Remote {
                code,
                message: format!(
                    "{message}; if the server is built from other specs than this client's \
                     {name:?}, Client::connect_checked finds it at connect"
                )
                .into(),
            },
            other => other,
        }
    }

    pub(crate) fn disconnected(why: Disconnect) -> Self {
        Self::Disconnected(Box::new(why))
    }

    pub(crate) fn timeout(t: Timeout) -> Self {
        Self::Timeout(Box::new(t))
    }

    /// A failed connect to `addr`: a timeout is [`Error::Timeout`], the
    /// rest [`Error::Connect`].
    pub(crate) fn connect(addr: impl Into<Box<str>>, e: io::Error, after: Duration) -> Self {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                Self::timeout(Timeout::new(Stage::Connect, addr, after))
            }
            _ => Self::Connect {
                addr: addr.into(),
                source: e,
            },
        }
    }
}

pub(crate) fn is_disconnect_io(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected
    )
}

/// What to do about a connect error, when the address says it.
fn connect_hint(addr: &str, e: &io::Error) -> &'static str {
    if addr.starts_with("ws://") || addr.starts_with("wss://") {
        "; this is a WebSocket URL: use Client::connect_ws (feature `ws`); \
         Client::connect takes host:port"
    } else if addr.contains("://") {
        "; Client::connect takes host:port, not a URL"
    } else if e.kind() == io::ErrorKind::ConnectionRefused {
        "; is the server running and listening on this address?"
    } else {
        ""
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::Connect { addr, source } => write!(
                f,
                "cannot connect to {addr}: {source}{}",
                connect_hint(addr, source)
            ),
            Self::Disconnected(why) => write!(f, "disconnected: {why}"),
            Self::Timeout(t) => t.fmt(f),
            Self::TooLarge { len, max, side } => {
                write!(
                    f,
                    "too large: payload of {len} bytes exceeds {side} limit of {max} bytes"
                )?;
                match side {
                    Side::Local => f.write_str(" (Limits::max_frame_len)"),
                    Side::Remote => Ok(()),
                }
            }
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Decode(e) => write!(f, "bad payload: {e}"),
            Self::Remote { code, message } => write!(f, "remote error {code}: {message}"),
            Self::SchemaMismatch(m) => m.fmt(f),
            Self::Config(why) => write!(f, "configuration error: {why}"),
            Self::Handshake(why) => write!(f, "handshake refused: {why}"),
            #[cfg(feature = "msgpack")]
            Self::Value(m) => write!(f, "type mismatch: {m}"),
        }
    }
}

/// The same text as `Display`: what `main` prints when it returns the error.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Connect { source, .. } => Some(source),
            Self::Disconnected(why) => Some(&**why),
            Self::Timeout(t) => Some(&**t),
            Self::Protocol(e) => Some(e),
            Self::Decode(e) => Some(e),
            Self::SchemaMismatch(m) => Some(&**m),
            #[cfg(feature = "msgpack")]
            Self::Value(m) => Some(&**m),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl From<Timeout> for Error {
    fn from(t: Timeout) -> Self {
        Self::timeout(t)
    }
}

impl From<Disconnect> for Error {
    fn from(why: Disconnect) -> Self {
        Self::disconnected(why)
    }
}

#[cfg(feature = "msgpack")]
impl From<crate::dynamic::TypeMismatch> for Error {
    fn from(e: crate::dynamic::TypeMismatch) -> Self {
        Self::Value(Box::new(e))
    }
}

/// What a handler returns on failure: a wire code and a message.
///
/// Any `Display` error converts into one with code HANDLER (3), so `?` works
/// in handlers; [`HandlerError::with_code`] picks an application code.
///
/// ```
/// use framerpc::HandlerError;
/// let e: HandlerError = "motor stalled".into();
/// assert_eq!(e.code().0, 3);
/// let e = HandlerError::with_code(1001, "out of range");
/// assert_eq!(e.code().0, 1001);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    code: ErrorCode,
    message: String,
}

impl HandlerError {
    /// An error with an application code (1000 and up; lower codes are
    /// clamped to HANDLER so applications cannot impersonate the library).
    pub fn with_code(code: u16, message: impl Into<String>) -> Self {
        let code = if code >= 1000 {
            ErrorCode(code)
        } else {
            ErrorCode::HANDLER
        };
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn library(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: fmt::Display> From<E> for HandlerError {
    fn from(e: E) -> Self {
        Self {
            code: ErrorCode::HANDLER,
            message: e.to_string(),
        }
    }
}

/// The text of a panic payload (`&str` or `String`, as `panic!` makes).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        assert!(
            std::mem::size_of::<Error>() <= 32,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn application_codes_cannot_impersonate_library_codes() {
        assert_eq!(HandlerError::with_code(5, "x").code(), ErrorCode::HANDLER);
        assert_eq!(HandlerError::with_code(1000, "x").code(), ErrorCode(1000));
    }
}
