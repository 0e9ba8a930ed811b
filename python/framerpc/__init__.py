"""framerpc: a Python client for framerpc servers (raw TCP or WebSocket).

>>> import framerpc                                  # doctest: +SKIP
>>> c = framerpc.connect("tcp://127.0.0.1:7878")     # doctest: +SKIP
>>> c.call("add_2_words", 2, 3)                      # doctest: +SKIP
5
"""

from .client import (
    FAIL_FAST,
    WAIT,
    CallContext,
    Client,
    CommandInfo,
    Handlers,
    Reconnect,
    Status,
    connect,
    decode_list,
    encode_list,
)
from .errors import (
    BadPayload,
    Busy,
    CallTimeout,
    DecodeError,
    Disconnected,
    EncodeError,
    FramerpcError,
    FrameTooLarge,
    HandlerError,
    Panic,
    ProtocolError,
    ProtocolViolation,
    RemoteError,
    RemoteTimeout,
    SchemaError,
    ShuttingDown,
    Timeout,
    TooLarge,
    Unauthorized,
    UnknownCommand,
)
from .dynamic import Proxy, RemoteFunction, describe, is_proxy, materialize, remote_module
from .hold import Hold
from .schema import compile_schema, decode, encode
from .transport import ConnectError

__version__ = "0.1.0"

__all__ = [
    "Proxy", "RemoteFunction", "is_proxy", "materialize", "describe", "remote_module",
    "Hold", "connect", "Client", "Handlers", "CallContext", "Reconnect", "FAIL_FAST", "WAIT", "CommandInfo", "Status", "compile_schema", "encode", "decode",
    "decode_list", "encode_list", "FramerpcError", "RemoteError", "UnknownCommand", "BadPayload",
    "HandlerError", "Panic", "Busy", "Unauthorized", "TooLarge", "ShuttingDown", "RemoteTimeout",
    "ProtocolError", "Timeout", "CallTimeout", "Disconnected", "FrameTooLarge", "SchemaError",
    "EncodeError", "DecodeError", "ProtocolViolation", "ConnectError",
]
