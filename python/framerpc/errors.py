"""The exceptions framerpc raises.

Hierarchy::

    FramerpcError
    ├── RemoteError            the peer answered with an ERROR frame (.code, .message)
    │   ├── UnknownCommand     1
    │   ├── BadPayload         2
    │   ├── HandlerError       3  (codes >= 1000 are plain RemoteError)
    │   ├── Panic              4
    │   ├── Busy               5
    │   ├── Unauthorized       6
    │   ├── TooLarge           7
    │   ├── ShuttingDown       8
    │   ├── RemoteTimeout      9  (also a Timeout)
    │   └── ProtocolError      10
    ├── Timeout (TimeoutError) any deadline
    │   ├── CallTimeout        a local per-call timeout ran out (CANCEL was sent)
    │   └── RemoteTimeout
    ├── Disconnected (ConnectionError)
    ├── FrameTooLarge (ValueError)   refused locally before sending
    ├── SchemaError (ValueError)     a schema string does not parse
    ├── EncodeError (TypeError)      an argument does not fit the command's schema
    ├── DecodeError (ValueError)     bytes do not decode with a schema
    └── ProtocolViolation            the peer broke the frame protocol
"""

from __future__ import annotations

CODE_NAMES = {
    1: "UNKNOWN_COMMAND",
    2: "BAD_PAYLOAD",
    3: "HANDLER",
    4: "PANIC",
    5: "BUSY",
    6: "UNAUTHORIZED",
    7: "TOO_LARGE",
    8: "SHUTTING_DOWN",
    9: "TIMEOUT",
    10: "PROTOCOL",
}


class FramerpcError(Exception):
    """Base of every framerpc exception."""


class Timeout(FramerpcError, TimeoutError):
    """A deadline ran out (locally: :class:`CallTimeout`; remotely: :class:`RemoteTimeout`)."""


class CallTimeout(Timeout):
    """A call got no answer within its timeout.

    The client sent CANCEL; the call may still be running on the server, and
    its late reply is dropped."""

    def __init__(self, command: str, call_id: int, after: float, server: str | None = None):
        self.command = command
        self.call_id = call_id
        self.after = after
        #: What the server said of this connection's admission (holder,
        #: queue place) when the call timed out while waiting, else None.
        self.server = server
        text = (
            f"call {command} (id {call_id}) timed out after {after:g} s; "
            "it may still be running on the server"
        )
        if server:
            text += f"; server: {server}"
        super().__init__(text)


class Disconnected(FramerpcError, ConnectionError):
    """The connection is closed (or closed while the call was waiting)."""


class FrameTooLarge(FramerpcError, ValueError):
    """A frame to send is over this client's own limit; nothing was sent."""

    def __init__(self, size: int, limit: int, what: str = "request"):
        self.size = size
        self.limit = limit
        super().__init__(
            f"{what} payload of {size} bytes is over the client's frame limit of {limit} bytes "
            "(set max_frame_len); nothing was sent"
        )


class SchemaError(FramerpcError, ValueError):
    """A schema string does not parse."""


class EncodeError(FramerpcError, TypeError):
    """A value does not fit the schema it is encoded with."""


class DecodeError(FramerpcError, ValueError):
    """Bytes do not decode with the schema (truncated, trailing, invalid)."""


class ProtocolViolation(FramerpcError):
    """The peer sent something the frame protocol does not allow."""


class RemoteError(FramerpcError):
    """The peer answered a call with an ERROR frame.

    ``code`` is the wire code (1..10 framerpc's, >= 1000 the application's),
    ``message`` the peer's message, ``command`` and ``call_id`` the call."""

    code: int = 0

    def __init__(self, code: int, message: str, command: str | None = None, call_id: int | None = None):
        self.code = code
        self.message = message
        self.command = command
        self.call_id = call_id
        name = CODE_NAMES.get(code, "APPLICATION" if code >= 1000 else "UNKNOWN")
        where = f"{command}: " if command else ""
        super().__init__(f"{where}{name} ({code}): {message}")

    @property
    def code_name(self) -> str | None:
        """The code's wire name (``"BUSY"``), or None for application codes."""
        return CODE_NAMES.get(self.code)

    @staticmethod
    def from_code(code: int, message: str, command: str | None = None, call_id: int | None = None) -> "RemoteError":
        """The exception for a wire code: the code's subclass, else RemoteError."""
        cls = _BY_CODE.get(code, RemoteError)
        return cls(code, message, command, call_id)


class UnknownCommand(RemoteError):
    code = 1


class BadPayload(RemoteError):
    code = 2


class HandlerError(RemoteError):
    code = 3


class Panic(RemoteError):
    code = 4


class Busy(RemoteError):
    code = 5


class Unauthorized(RemoteError):
    code = 6


class TooLarge(RemoteError):
    code = 7


class ShuttingDown(RemoteError):
    code = 8


class RemoteTimeout(RemoteError, Timeout):
    code = 9


class ProtocolError(RemoteError):
    code = 10


_BY_CODE = {
    c.code: c
    for c in (
        UnknownCommand,
        BadPayload,
        HandlerError,
        Panic,
        Busy,
        Unauthorized,
        TooLarge,
        ShuttingDown,
        RemoteTimeout,
        ProtocolError,
    )
}
