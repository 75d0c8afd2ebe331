"""The mimo-blender wire protocol, part 2 of 3: ``encode`` and ``decode`` (the whole protocol:
:mod:`server.protocol`, server/PROTOCOL.md).

Vendored byte-identical into the Blender add-on with the other parts: imports only the standard
library, ``msgpack``, ``numpy`` and its sibling :mod:`protocol_messages`.

Wire format (one ZeroMQ multipart message per protocol message; a ROUTER prepends the peer id):

    frame 0      msgpack map: {"v": [major, minor], "type": <name>, <field>: <value>, ...}
    frames 1..N  raw buffers. A field holding an array is written in the map as
                 {"$buf": i, "dtype": "<f4", "shape": [...]} and its C-order little-endian bytes
                 travel as frame 1 + i; a ``bytes`` field (PNG/JPEG) as {"$buf": i}.

``encode(msg) -> list[bytes]`` and ``decode(frames) -> msg`` are inverses:
``decode(encode(m)) == m`` for every message (``encode`` refuses a map with the reserved key
``"$buf"``). Decoding never executes anything from the wire
(no pickle), checks every field's type and every buffer's size, ignores fields it does not know
(forward compatibility) and raises :class:`ProtocolError` for anything malformed. A peer whose
major version differs is refused with code ``"version"``.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Union

import msgpack
import numpy as np

from .protocol_messages import MESSAGE_TYPES, PROTOCOL_VERSION, GenerateRequest, Message, ProtocolError

#: Most buffers one message may carry (a submit with every layer and max_bodies bodies needs 56).
MAX_BUFFERS = 256
#: Arrays on the wire: at most 8 dimensions, each < 2**40, and the product of the non-zero ones
#: < 2**40 (a zero-size array may not declare absurd dimensions either).
MAX_ELEMENTS = 2**40
_DTYPES = {"|u1", "|i1", "|b1", "<u2", "<i2", "<f2", "<u4", "<i4", "<f4", "<u8", "<i8", "<f8"}


def encode(msg: Message) -> list[bytes | memoryview]:
    """Message -> ``[header, *buffers]``, ready for ``socket.send_multipart(frames, copy=False)``.

    Shapes:
        arrays travel unchanged (C order, little endian); no array is copied if it already is.
    """
    if type(msg) not in MESSAGE_TYPES.values():
        raise TypeError(f"msg: expected a protocol message, got {type(msg).__name__}")
    buffers: list[bytes | memoryview] = []
    header = {"v": list(PROTOCOL_VERSION), "type": msg.TYPE}
    header.update(_to_wire(msg, buffers))
    return [msgpack.packb(header, use_bin_type=True), *buffers]


def _to_wire(value: Any, buffers: list) -> Any:
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value).reshape(value.shape)  # (ascontiguousarray makes 0-d 1-d)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        if arr.dtype.str not in _DTYPES:
            raise TypeError(f"arrays of dtype {arr.dtype} cannot travel on the wire")
        buffers.append(memoryview(arr).cast("B") if arr.size else b"")
        return {"$buf": len(buffers) - 1, "dtype": arr.dtype.str, "shape": list(arr.shape)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        buffers.append(bytes(value))
        return {"$buf": len(buffers) - 1}
    if dataclasses.is_dataclass(value):
        return {f.name: _to_wire(getattr(value, f.name), buffers)
                for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_wire(v, buffers) for v in value]
    if isinstance(value, dict):
        if "$buf" in value:  # decode would read the map as a buffer reference
            raise ValueError("'$buf' marks a buffer on the wire; a map may not use it as a key")
        return {k: _to_wire(v, buffers) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def decode(frames: list) -> Message:
    """``[header, *buffers]`` (bytes, memoryviews or ``zmq.Frame``) -> message. Arrays are
    read-only views of the received buffers (zero copy). Raises :class:`ProtocolError` and
    nothing else, whatever the frames hold."""
    try:
        return decode_strict(frames)
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError("bad_message", "header nested too deeply") from None
    except Exception as exc:  # a decoder bug must not reach the caller as another type
        raise ProtocolError("bad_message", f"undecodable message ({type(exc).__name__})") from None


def decode_strict(frames: list) -> Message:
    """:func:`decode` without its last-resort conversion of unexpected exceptions (for tests:
    every malformed input must be caught by a named check)."""
    if not isinstance(frames, (list, tuple)) or not frames:
        raise ProtocolError("bad_message", "expected at least one frame (the header)")
    if len(frames) > 1 + MAX_BUFFERS:
        raise ProtocolError("bad_message", f"{len(frames) - 1} buffers, limit {MAX_BUFFERS}")
    views = [_as_view(f) for f in frames]
    try:
        header = msgpack.unpackb(views[0], raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises many types on garbage
        raise ProtocolError("bad_message", f"header is not msgpack ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_message", "header is not a map")
    version = header.get("v")
    if not (isinstance(version, list) and len(version) >= 2
            and all(type(x) is int for x in version[:2])):
        raise ProtocolError("bad_message", "header has no protocol version 'v'", "v")
    if version[0] != PROTOCOL_VERSION[0]:
        raise ProtocolError("version", f"peer speaks protocol {version[0]}.{version[1]}, "
                            f"this side {PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}", "v")
    name = header.get("type")
    cls = MESSAGE_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ProtocolError("unknown_type", f"unknown message type {_short(name)}", "type")
    used: set[int] = set()
    try:
        msg = _from_wire(cls, header, views[1:], used, "")
    except RecursionError:
        raise ProtocolError("bad_message", "header nested too deeply") from None
    if len(used) != len(views) - 1:
        raise ProtocolError("bad_message", f"{len(views) - 1} buffers sent, {len(used)} used")
    return msg


def _short(v: Any) -> str:
    """A value from the wire, quoted for an error message and cut to 80 characters."""
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _as_view(frame: Any) -> memoryview:
    if hasattr(frame, "buffer"):  # zmq.Frame
        frame = frame.buffer
    try:
        return memoryview(frame).cast("B")
    except TypeError:
        raise ProtocolError("bad_message", f"frame of type {type(frame).__name__} is not bytes") from None


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)  # names resolved in the class's own module
    return _HINTS[cls]


def _from_wire(cls: type, data: Any, bufs: list, used: set, path: str, prefix: str | None = None) -> Any:
    """Build record ``cls`` from a header map. ``path`` names ``data`` in errors; its fields are
    named ``prefix + field`` (default ``path + "."``)."""
    if not isinstance(data, dict):
        raise ProtocolError("invalid_field", f"expected a map, got {_type_name(data)}", path)
    prefix = (f"{path}." if path else "") if prefix is None else prefix
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        sub = prefix + f.name
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError("invalid_field", "missing", sub)
            continue
        kwargs[f.name] = _value(hints[f.name], data[f.name], bufs, used, sub)
    return cls(**kwargs)  # unknown keys in ``data`` are ignored


def _type_name(v: Any) -> str:
    """Wire terms for the type of a decoded msgpack value."""
    names = {dict: "a map", list: "a list", str: "a string", bytes: "binary data", bool: "a bool",
             int: "an integer", float: "a number", type(None): "nil"}
    return names.get(type(v), type(v).__name__)


def _value(hint: Any, v: Any, bufs: list, used: set, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _value(inner, v, bufs, used, path)
    if hint is np.ndarray:
        return _array(v, bufs, used, path)
    if hint is bytes:
        return _bytes(v, bufs, used, path)
    if hint is GenerateRequest:  # the request's fields are named as in the request: "width"
        return _from_wire(hint, v, bufs, used, path, prefix="")
    if dataclasses.is_dataclass(hint):
        return _from_wire(hint, v, bufs, used, path)
    if origin is list:
        if not isinstance(v, list):
            raise ProtocolError("invalid_field", f"expected a list, got {_type_name(v)}", path)
        return [_value(args[0], x, bufs, used, f"{path}[{i}]") for i, x in enumerate(v)]
    if origin is dict:
        if not isinstance(v, dict):
            raise ProtocolError("invalid_field", f"expected a map, got {_type_name(v)}", path)
        _check_keys(v, path)
        if args and args[1] is not Any:
            return {k: _value(args[1], x, bufs, used, f"{path}.{k}") for k, x in v.items()}
        return _plain(v, path)
    if hint is Any:
        return _plain(v, path)
    if hint is bool:
        if type(v) is not bool:
            raise ProtocolError("invalid_field", f"expected a bool, got {_type_name(v)}", path)
        return v
    if hint is int:
        if type(v) is not int:
            raise ProtocolError("invalid_field", f"expected an integer, got {_type_name(v)}", path)
        return v
    if hint is float:
        if type(v) not in (int, float):
            raise ProtocolError("invalid_field", f"expected a number, got {_type_name(v)}", path)
        return float(v)
    if hint is str:
        if type(v) is not str:
            raise ProtocolError("invalid_field", f"expected a string, got {_type_name(v)}", path)
        return v
    raise TypeError(f"unsupported field type {hint!r} at {path}")  # a bug in this module


def _check_keys(v: dict, path: str) -> None:
    if "$buf" in v:  # a map read as a map may not carry the buffer marker (encode refuses it too)
        raise ProtocolError("invalid_field", "buffers are not allowed here", path)
    for k in v:
        if type(k) is not str:
            raise ProtocolError("invalid_field", f"expected string keys, got {_type_name(k)}", path)


def _plain(v: Any, path: str) -> Any:
    """Free-form values (stats, status rows): msgpack scalars, lists and string-keyed maps, no
    buffers and no extension types."""
    if isinstance(v, dict):
        if "$buf" in v:
            raise ProtocolError("invalid_field", "buffers are not allowed here", path)
        _check_keys(v, path)
        return {k: _plain(x, f"{path}.{k}") for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x, f"{path}[{i}]") for i, x in enumerate(v)]
    if v is None or type(v) in (bool, int, float, str, bytes):
        return v
    raise ProtocolError("invalid_field", f"unsupported value of type {type(v).__name__}", path)


def _buffer(ref: Any, bufs: list, used: set, path: str) -> memoryview:
    i = ref.get("$buf") if isinstance(ref, dict) else None
    if type(i) is not int or not 0 <= i < len(bufs):
        raise ProtocolError("bad_message", f"expected a buffer reference, got {_short(ref)}", path)
    if i in used:
        raise ProtocolError("bad_message", f"buffer {i} referenced twice", path)
    used.add(i)
    return bufs[i]


def _array(ref: Any, bufs: list, used: set, path: str) -> np.ndarray:
    buf = _buffer(ref, bufs, used, path)
    dtype, shape = ref.get("dtype"), ref.get("shape")
    if type(dtype) is not str or dtype not in _DTYPES:
        raise ProtocolError("invalid_field", f"dtype {_short(dtype)} is not allowed on the wire", path)
    if not (isinstance(shape, list) and len(shape) <= 8
            and all(type(n) is int and 0 <= n < MAX_ELEMENTS for n in shape)
            and math.prod(max(n, 1) for n in shape) < MAX_ELEMENTS):
        raise ProtocolError("invalid_field", f"bad shape {_short(shape)}", path)
    dt = np.dtype(dtype)
    if math.prod(shape) * dt.itemsize != len(buf):
        raise ProtocolError("bad_message", f"buffer holds {len(buf)} bytes, shape {shape} of "
                            f"{dtype} needs {math.prod(shape) * dt.itemsize}", path)
    return np.frombuffer(buf, dtype=dt).reshape(shape)


def _bytes(ref: Any, bufs: list, used: set, path: str) -> bytes:
    return bytes(_buffer(ref, bufs, used, path))
