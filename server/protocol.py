"""The mimo-blender wire protocol: the one definition of every message (server/PROTOCOL.md).

Import it from here (``from server import protocol as P``); it is defined in three parts:

* :mod:`server.protocol_messages`: the message types, ``PROTOCOL_VERSION``, ``DEFAULT_LIMITS``,
  ``ERROR_CODES``, ``ProtocolError``, and the conventions and shapes of every field;
* :mod:`server.protocol_wire`: ``encode(msg) -> frames`` and ``decode(frames) -> msg`` (inverses;
  the wire format, and how decoding stays strict without ever crashing);
* :mod:`server.protocol_checks`: ``validate_request``, the field-by-field check of a request that
  client and server both run.

The Blender add-on vendors byte-identical copies of these four files and of ``client.py``
(``VENDOR`` in blender_addon/build.py); they may import only the standard library, ``zmq``,
``msgpack``, ``numpy`` and each other (relatively).
"""
from __future__ import annotations

from .protocol_checks import (
    MAX_ANGLE,
    MAX_BETA,
    MAX_CONTEXT,
    MAX_METRES,
    MAX_PIXELS_K,
    validate_request,
)
from .protocol_messages import (
    BODY_MODELS,
    DEFAULT_LIMITS,
    ERROR_CODES,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Accepted,
    BodyParams,
    CameraParams,
    Cancel,
    Capabilities,
    Credit,
    Done,
    Error,
    Frame,
    GenerateRequest,
    Heartbeat,
    Hello,
    Message,
    Preview,
    Progress,
    ProtocolError,
    Status,
    StatusReply,
    Submit,
)
from .protocol_wire import (
    MAX_BUFFERS,
    MAX_ELEMENTS,
    decode,
    decode_strict,
    encode,
)

__all__ = [
    "Accepted",
    "BODY_MODELS",
    "BodyParams",
    "CameraParams",
    "Cancel",
    "Capabilities",
    "Credit",
    "DEFAULT_LIMITS",
    "Done",
    "ERROR_CODES",
    "Error",
    "Frame",
    "GenerateRequest",
    "Heartbeat",
    "Hello",
    "MAX_ANGLE",
    "MAX_BETA",
    "MAX_BUFFERS",
    "MAX_CONTEXT",
    "MAX_ELEMENTS",
    "MAX_METRES",
    "MAX_PIXELS_K",
    "MESSAGE_TYPES",
    "Message",
    "PROTOCOL_VERSION",
    "Preview",
    "Progress",
    "ProtocolError",
    "Status",
    "StatusReply",
    "Submit",
    "decode",
    "decode_strict",
    "encode",
    "validate_request",
]
