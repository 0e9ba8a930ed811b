//! Errors: the wire error codes, decode errors, protocol errors and the one
//! [`Error`] type every fallible framerpc call returns.

use std::fmt;
use std::io;
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

/// Which side's limit refused a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// This process's own limit (checked before sending, or on receipt).
    Local,
    /// The peer's limit (reported in its TOO_LARGE error).
    Remote,
}

/// A schema mismatch found by [`Client::check`](crate::Client::check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The command's name as the client knows it.
    pub name: String,
    /// The command id.
    pub id: u16,
    /// What differs, in words, with both schemas.
    pub detail: String,
}

/// Every failure a framerpc call can report.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A local I/O error.
    Io(io::Error),
    /// The connection is closed (by either side, or the peer died); calls
    /// that were pending on it fail with this at once.
    Disconnected,
    /// A call's deadline ran out. The call may still be running remotely.
    Timeout {
        /// The command's name (or id in hex for untyped calls).
        command: Box<str>,
        /// The call id.
        id: u32,
        /// The deadline that ran out.
        after: Duration,
        /// What the server said of this connection's admission when the
        /// client asked after the timeout (the holder and the queue place,
        /// if it was waiting), when it answered in time.
        server: Option<Box<str>>,
    },
    /// A frame over a size limit.
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
    /// The server's command table differs from the client's specs.
    SchemaMismatch(Box<Mismatch>),
    /// A router was built wrong (duplicate id or name, reserved id).
    Config(Box<str>),
    /// The transport refused the connection (WebSocket handshake, auth).
    Handshake(Box<str>),
}

impl Error {
    /// The wire code this error corresponds to, when there is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Remote { code, .. } => Some(*code),
            Self::Timeout { .. } => Some(ErrorCode::TIMEOUT),
            Self::TooLarge { .. } => Some(ErrorCode::TOO_LARGE),
            Self::Protocol(_) => Some(ErrorCode::PROTOCOL),
            Self::Decode(_) => Some(ErrorCode::BAD_PAYLOAD),
            _ => None,
        }
    }

    /// True if the error says the connection is gone.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, Self::Disconnected) || matches!(self, Self::Io(e) if is_disconnect_io(e))
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
            Self::Disconnected => io::Error::new(io::ErrorKind::ConnectionAborted, self),
            Self::Timeout { .. } => io::Error::new(io::ErrorKind::TimedOut, self),
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }

    pub(crate) fn remote(code: ErrorCode, message: impl Into<Box<str>>) -> Self {
        Self::Remote {
            code,
            message: message.into(),
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::Disconnected => f.write_str("disconnected: the connection is closed"),
            Self::Timeout {
                command,
                id,
                after,
                server,
            } => {
                write!(
                    f,
                    "timeout: no reply to {command} (call id {id}) within {after:?}; \
                     the call may still be running on the peer"
                )?;
                match server {
                    Some(s) => write!(f, "; server: {s}"),
                    None => Ok(()),
                }
            }
            Self::TooLarge { len, max, side } => {
                let whose = match side {
                    Side::Local => "this side's",
                    Side::Remote => "the peer's",
                };
                write!(
                    f,
                    "too large: payload of {len} bytes exceeds {whose} limit of {max} bytes"
                )
            }
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Decode(e) => write!(f, "bad payload: {e}"),
            Self::Remote { code, message } => write!(f, "remote error {code}: {message}"),
            Self::SchemaMismatch(m) => write!(
                f,
                "schema mismatch for command {:?} (id {}): {}",
                m.name, m.id, m.detail
            ),
            Self::Config(why) => write!(f, "configuration error: {why}"),
            Self::Handshake(why) => write!(f, "handshake refused: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Decode(e) => Some(e),
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
        // Timeout carries a Duration (16 bytes) beside two boxed strings.
        assert!(std::mem::size_of::<Error>() <= 56);
    }

    #[test]
    fn application_codes_cannot_impersonate_library_codes() {
        assert_eq!(HandlerError::with_code(5, "x").code(), ErrorCode::HANDLER);
        assert_eq!(HandlerError::with_code(1000, "x").code(), ErrorCode(1000));
    }
}
