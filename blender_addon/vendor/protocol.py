"""The mimo-blender wire protocol: the one definition of every message (server/PROTOCOL.md).

The Blender add-on vendors a byte-identical copy of this file and of ``client.py``; both may
import only the standard library, ``zmq``, ``msgpack``, ``numpy`` and each other (relatively).

Wire format (one ZeroMQ multipart message per protocol message; a ROUTER prepends the peer id):

    frame 0      msgpack map: {"v": [major, minor], "type": <name>, <field>: <value>, ...}
    frames 1..N  raw buffers. A field holding an array is written in the map as
                 {"$buf": i, "dtype": "<f4", "shape": [...]} and its C-order little-endian bytes
                 travel as frame 1 + i; a ``bytes`` field (PNG/JPEG) as {"$buf": i}.

``encode(msg) -> list[bytes]`` and ``decode(frames) -> msg`` are inverses:
``decode(encode(m)) == m`` for every message. Decoding never executes anything from the wire
(no pickle), checks every field's type and every buffer's size, ignores fields it does not know
(forward compatibility) and raises :class:`ProtocolError` for anything malformed. A peer whose
major version differs is refused with code ``"version"``.

Conventions (docs/CONVENTIONS.md): metres and seconds; frame indices start at 0; SMPL axes (Y up, the body
faces +Z, +X is the body's left) for bodies and the world; OpenCV cameras: ``K`` in pixels for the
camera's ``width`` x ``height`` image, world-to-camera ``R|t`` (x right, y down, z forward), pixel
(u, v) covering [u, u+1) x [v, v+1) so its centre is (u + 0.5, v + 0.5); images uint8 RGB
``(H, W, 3)`` top row first; masks uint8 0..255.

Shapes:
    F frames, H x W output pixels (``height`` x ``width``), NB shape coefficients.
    BodyParams: global_orient (F, 3), body_pose (F, 21, 3) [(F, 23, 3) for "smpl"],
                transl (F, 3), betas (NB,) or (F, NB), left/right_hand_pose (F, 15, 3)
    CameraParams: K (F, 3, 3), R (F, 3, 3), t (F, 3)
    GenerateRequest: codes (F, H, W, 3) uint8, scene (F, H, W, 3) uint8, occlusion (F, H, W) uint8,
                     occlusion_source (F, H, W, 3) uint8
    Frame / Preview: image (H, W, 3) uint8
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Union

import msgpack
import numpy as np

PROTOCOL_VERSION = (1, 2)

#: Limits a server enforces unless configured otherwise (it reports its own in ``Capabilities``).
#: ``max_frames``, ``min_side`` and ``max_side`` are the job's limits (mimo.pipeline.job.JobLimits,
#: same defaults; a test keeps them equal): the server checks a job against the ones it reports.
DEFAULT_LIMITS: dict[str, int] = {
    "max_frames": 2000,
    "min_side": 8,
    "max_side": 2048,
    "max_bodies": 8,
    "max_betas": 400,
    "max_image_bytes": 64 << 20,
    "max_message_bytes": 2 << 30,
    "max_jobs_per_client": 8,
    "max_credit": 256,
    "max_queued_bytes": 4 << 30,
    "max_jobs": 64,
}

#: Error codes carried by :class:`Error` (documented in PROTOCOL.md).
ERROR_CODES = {
    "bad_message": "a frame could not be decoded (not msgpack, missing type, wrong buffer size)",
    "version": "the peer speaks another major protocol version",
    "unknown_type": "the message type is not known to the receiver",
    "invalid_field": "a field has the wrong type, shape, dtype or value; `field` names it",
    "too_large": "the message exceeds the server's max_message_bytes",
    "busy": "the server holds max_queued_bytes of requests or max_jobs jobs; retry later",
    "unknown_backend": "the requested backend is not available on this server",
    "queue_full": "this client already has max_jobs_per_client jobs queued or running",
    "unknown_job": "no job with this id belongs to this client",
    "cancelled": "the job was cancelled: by the client, because the client went away (its "
                 "connection closed or its heartbeats stopped), or because it stopped taking frames",
    "oom": "the GPU ran out of memory; the job failed, the server keeps serving",
    "model_error": "the backend failed on this job; the server keeps serving",
    "internal": "a bug in the server; the server keeps serving",
}

#: Body model kinds the wire knows (the library's registry, mimo/body/kinds.py; a test keeps them
#: equal). A server accepts those it lists in ``Capabilities.body_models``.
BODY_MODELS = ("open", "smpl", "smplh", "smplx")
#: Largest magnitude a finite request value may have (wider than any real scene; keeps float32
#: maths on the server finite).
MAX_ANGLE, MAX_METRES, MAX_BETA, MAX_PIXELS_K = 1e3, 1e5, 1e3, 1e8
#: Most buffers one message may carry (a submit with every layer and max_bodies bodies needs 56).
MAX_BUFFERS = 256
#: Longest context window (the motion modules' positional table).
MAX_CONTEXT = 32
#: Arrays on the wire: at most 8 dimensions, each < 2**40, and the product of the non-zero ones
#: < 2**40 (a zero-size array may not declare absurd dimensions either).
MAX_ELEMENTS = 2**40
_DTYPES = {"|u1", "|i1", "|b1", "<u2", "<i2", "<f2", "<u4", "<i4", "<f4", "<u8", "<i8", "<f8"}


class ProtocolError(ValueError):
    """A message or field is malformed. ``code`` is one of :data:`ERROR_CODES`; ``field`` names the
    offending field as a dotted path (``"bodies[0].body_pose"``) or is empty."""

    def __init__(self, code: str, message: str, field: str = ""):
        super().__init__(f"{field}: {message}" if field else message)
        self.code, self.message, self.field = code, message, field

    def to_error(self, job_id: str = "") -> Error:
        return Error(code=self.code, message=self.message, field=self.field, job_id=job_id)


# ------------------------------------------------------------------------------------------------
# Message types
# ------------------------------------------------------------------------------------------------
class _Record:
    """Base of every message and nested record: equality that understands numpy arrays."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and _deep_eq(
            dataclasses.asdict(self), dataclasses.asdict(other))  # type: ignore[arg-type]

    __hash__ = None  # type: ignore[assignment]


def _deep_eq(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f")))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_deep_eq(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_deep_eq(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@dataclasses.dataclass(eq=False)
class BodyParams(_Record):
    """One body's per-frame SMPL parameters (axis-angle, radians; metres): the wire form of the
    library's ``mimo.motion.BodyTrack``. A hand pose left out (None) removes that hand from the
    motion codes (as the official renderer did for undetected hands); zeros give a flat hand."""

    global_orient: np.ndarray
    body_pose: np.ndarray
    transl: np.ndarray
    betas: np.ndarray
    left_hand_pose: np.ndarray | None = None
    right_hand_pose: np.ndarray | None = None


@dataclasses.dataclass(eq=False)
class CameraParams(_Record):
    """Per-frame OpenCV pinhole camera; ``K`` is in pixels of a ``width`` x ``height`` image: the
    wire form of the library's ``mimo.motion.CameraTrack`` (its fps is the request's)."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int


@dataclasses.dataclass(eq=False)
class GenerateRequest(_Record):
    """Everything one generation needs. Motion comes either as ``bodies`` + ``camera`` (the server
    poses the body model and renders the motion codes) or as ready ``codes`` frames.

    ``steps``, ``context``, ``overlap`` None: the defaults of ``mode`` (``Capabilities.modes``);
    ``roi_size`` None: 784, or the output's longer side when smaller (since 1.2; 1.1 clients
    always send numbers)."""

    character: bytes
    bodies: list[BodyParams] = dataclasses.field(default_factory=list)
    body_model: str = "open"
    camera: CameraParams | None = None
    codes: np.ndarray | None = None
    scene: np.ndarray | None = None
    occlusion: np.ndarray | None = None
    occlusion_source: np.ndarray | None = None
    width: int = 512
    height: int = 512
    fps: float = 30.0
    steps: int | None = None
    cfg: float = 3.5
    seed: int = 42
    context: int | None = None
    overlap: int | None = None
    backend: str = "preview"
    mode: str = "exact"
    roi_size: int | None = None
    raw: bool = False
    preview: bool = False
    name: str = ""

    @property
    def num_frames(self) -> int:
        if self.codes is not None:
            return int(self.codes.shape[0])
        return int(self.camera.K.shape[0]) if self.camera is not None else 0


@dataclasses.dataclass(eq=False)
class Hello(_Record):
    """client -> server: who am I; the reply is :class:`Capabilities`."""

    TYPE: typing.ClassVar[str] = "hello"
    client: str = ""


@dataclasses.dataclass(eq=False)
class Capabilities(_Record):
    """server -> client: answer to :class:`Hello`. ``backends`` and ``body_models`` are the ones
    this server loaded; ``modes`` maps each generation mode to a one-line summary and
    ``mode_defaults`` to its ``{"steps", "context", "overlap"}``; ``limits`` are the ones the
    server checks requests and jobs against (since 1.2: ``modes``, ``mode_defaults``,
    ``backend_summaries``)."""

    TYPE: typing.ClassVar[str] = "capabilities"
    protocol_version: list[int] = dataclasses.field(default_factory=lambda: list(PROTOCOL_VERSION))
    server: str = ""
    backends: list[str] = dataclasses.field(default_factory=list)
    body_models: list[str] = dataclasses.field(default_factory=list)
    limits: dict[str, int] = dataclasses.field(default_factory=dict)
    device: str = ""
    weights: str = ""
    heartbeat_timeout_s: float = 10.0
    body_betas: dict[str, int] = dataclasses.field(default_factory=dict)  # shape coefficients per model
    modes: dict[str, str] = dataclasses.field(default_factory=dict)
    mode_defaults: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    backend_summaries: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(eq=False)
class Submit(_Record):
    """client -> server: queue a job. ``credit`` = frames the server may send before the client
    grants more with :class:`Credit` (back-pressure)."""

    TYPE: typing.ClassVar[str] = "submit"
    request: GenerateRequest
    credit: int = 8
    tag: str = ""


@dataclasses.dataclass(eq=False)
class Accepted(_Record):
    """server -> client: the job is queued; ``queue_position`` 0 means it runs now."""

    TYPE: typing.ClassVar[str] = "accepted"
    job_id: str
    queue_position: int
    num_frames: int = 0
    tag: str = ""


@dataclasses.dataclass(eq=False)
class Progress(_Record):
    """server -> client: ``stage`` is "build", then the backend's ("denoise", "composite", ...);
    ``eta_s`` < 0 when unknown."""

    TYPE: typing.ClassVar[str] = "progress"
    job_id: str
    stage: str
    step: int
    total: int
    eta_s: float = -1.0


@dataclasses.dataclass(eq=False)
class Preview(_Record):
    """server -> client: a low-cost preview of frame ``index`` (any size, may be skipped)."""

    TYPE: typing.ClassVar[str] = "preview"
    job_id: str
    index: int
    image: np.ndarray


@dataclasses.dataclass(eq=False)
class Frame(_Record):
    """server -> client: final frame ``index`` (H, W, 3) uint8; in order, each exactly once."""

    TYPE: typing.ClassVar[str] = "frame"
    job_id: str
    index: int
    image: np.ndarray


@dataclasses.dataclass(eq=False)
class Done(_Record):
    """server -> client: the job finished; ``stats`` holds seconds per stage, peak memory, ..."""

    TYPE: typing.ClassVar[str] = "done"
    job_id: str
    num_frames: int
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(eq=False)
class Error(_Record):
    """server -> client: ``code`` from :data:`ERROR_CODES`; ``job_id`` empty when no job."""

    TYPE: typing.ClassVar[str] = "error"
    code: str
    message: str
    field: str = ""
    job_id: str = ""
    tag: str = ""


@dataclasses.dataclass(eq=False)
class Cancel(_Record):
    """client -> server: cancel a queued or running job (answered by an ``Error("cancelled")``)."""

    TYPE: typing.ClassVar[str] = "cancel"
    job_id: str


@dataclasses.dataclass(eq=False)
class Credit(_Record):
    """client -> server: allow ``frames`` more :class:`Frame` messages for ``job_id``."""

    TYPE: typing.ClassVar[str] = "credit"
    job_id: str
    frames: int


@dataclasses.dataclass(eq=False)
class Status(_Record):
    """client -> server: ask for a :class:`StatusReply`."""

    TYPE: typing.ClassVar[str] = "status"


@dataclasses.dataclass(eq=False)
class StatusReply(_Record):
    """server -> client: queue and worker state. ``queued`` counts every client's queued jobs;
    ``running`` and ``jobs`` ({job_id, state, frames_sent, ...}) show only the asking client's
    own jobs; ``other_jobs`` counts the queued or running jobs of other clients."""

    TYPE: typing.ClassVar[str] = "status_reply"
    queued: int
    running: str
    jobs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    uptime_s: float = 0.0
    jobs_done: int = 0
    device: str = ""
    other_jobs: int = 0


@dataclasses.dataclass(eq=False)
class Heartbeat(_Record):
    """both ways: a client sends one every ~1 s while it has jobs; the server echoes it."""

    TYPE: typing.ClassVar[str] = "heartbeat"
    time: float = 0.0


MESSAGE_TYPES: dict[str, type] = {cls.TYPE: cls for cls in (
    Hello, Capabilities, Submit, Accepted, Progress, Preview, Frame, Done, Error, Cancel, Credit,
    Status, StatusReply, Heartbeat)}
Message = Union[Hello, Capabilities, Submit, Accepted, Progress, Preview, Frame, Done, Error,
                Cancel, Credit, Status, StatusReply, Heartbeat]


# ------------------------------------------------------------------------------------------------
# encode / decode
# ------------------------------------------------------------------------------------------------
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
        _HINTS[cls] = typing.get_type_hints(cls, globalns=globals())
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


# ------------------------------------------------------------------------------------------------
# Request validation (shared by client and server: the client checks before it sends)
# ------------------------------------------------------------------------------------------------
def validate_request(req: GenerateRequest, limits: dict[str, int] | None = None,
                     body_betas: dict[str, int] | None = None, modes: typing.Iterable[str] | None = None) -> None:
    """Check every field of a request against ``limits`` (default :data:`DEFAULT_LIMITS`) and,
    where given, the number of shape coefficients each body model takes (``body_betas``) and the
    generation modes (``modes``), as in :class:`Capabilities`. Raises :class:`ProtocolError`
    with code ``"invalid_field"`` naming the first bad field as the request names it
    (``"bodies[0].betas"``). Whether the image decodes, whether the backend exists and what the
    mode's own context allows is for the server to check.

    Shapes:
        see the module docstring; every per-frame array has the same F.
    """
    lim = {**DEFAULT_LIMITS, **(limits or {})}

    def bad(field: str, message: str) -> ProtocolError:
        return ProtocolError("invalid_field", message, field)

    if not isinstance(req, GenerateRequest):
        raise bad("request", f"expected a GenerateRequest, got {type(req).__name__}")
    if not isinstance(req.character, bytes) or not req.character:
        raise bad("character", "expected PNG or JPEG bytes, got nothing")
    if len(req.character) > lim["max_image_bytes"]:
        raise bad("character", f"{len(req.character)} bytes, limit {lim['max_image_bytes']}")
    if not (req.character.startswith(b"\x89PNG\r\n\x1a\n") or req.character.startswith(b"\xff\xd8")):
        raise bad("character", "expected PNG or JPEG bytes (by their signature)")
    for name in ("width", "height"):
        v = getattr(req, name)
        if not (type(v) is int and lim["min_side"] <= v <= lim["max_side"] and v % 8 == 0):
            raise bad(name, f"expected a multiple of 8 in {lim['min_side']}..{lim['max_side']}, got {v!r}")
    H, W = req.height, req.width
    _check_number(bad, "fps", req.fps, 0, 240, low_open=True)
    if req.steps is not None:
        _check_int(bad, "steps", req.steps, 1, 1000)
    _check_number(bad, "cfg", req.cfg, 0, 50)
    _check_int(bad, "seed", req.seed, 0, 2**63 - 1)
    if req.context is not None:
        _check_int(bad, "context", req.context, 1, MAX_CONTEXT)
    if req.overlap is not None:  # against the mode's own context the job checks it once more
        _check_int(bad, "overlap", req.overlap, 0, (req.context or MAX_CONTEXT) - 1)
    if modes is not None and req.mode not in modes:
        raise bad("mode", f"expected one of {', '.join(modes)}, got {req.mode!r}")
    if not (isinstance(req.mode, str) and req.mode):
        raise bad("mode", f"expected a mode name, got {req.mode!r}")
    if not (isinstance(req.backend, str) and req.backend):
        raise bad("backend", f"expected a backend name, got {req.backend!r}")
    if req.roi_size is not None and not (
            type(req.roi_size) is int and 64 <= req.roi_size <= lim["max_side"] and req.roi_size % 8 == 0):
        raise bad("roi_size", f"expected a multiple of 8 in 64..{lim['max_side']}, got {req.roi_size!r}")
    for name in ("raw", "preview"):
        if type(getattr(req, name)) is not bool:
            raise bad(name, f"expected a bool, got {getattr(req, name)!r}")

    if req.codes is not None:
        if req.bodies or req.camera is not None:
            raise bad("codes", "give either codes or bodies + camera, not both")
        F = _check_array(bad, "codes", req.codes, (None, H, W, 3), "u")
    else:
        if req.body_model not in BODY_MODELS:
            raise bad("body_model", f"expected one of {BODY_MODELS}, got {req.body_model!r}")
        if req.camera is None:
            raise bad("camera", "required when motion comes as bodies (or send codes)")
        F = _check_camera(bad, req.camera, lim)
        if not 1 <= len(req.bodies) <= lim["max_bodies"]:
            raise bad("bodies", f"expected 1..{lim['max_bodies']} bodies, got {len(req.bodies)}")
        joints = 23 if req.body_model == "smpl" else 21
        max_betas = min(lim["max_betas"], (body_betas or {}).get(req.body_model, lim["max_betas"]))
        for i, body in enumerate(req.bodies):
            _check_body(bad, f"bodies[{i}]", body, F, joints, req.body_model, max_betas)
    if not 1 <= F <= lim["max_frames"]:
        raise bad("codes" if req.codes is not None else "camera.K",
                  f"expected 1..{lim['max_frames']} frames, got {F}")
    if req.scene is not None:
        _check_array(bad, "scene", req.scene, (F, H, W, 3), "u")
    if req.occlusion is not None:
        _check_array(bad, "occlusion", req.occlusion, (F, H, W), "u")
        if req.scene is None:
            raise bad("occlusion", "needs the scene frames whose pixels it puts in front")
    if req.occlusion_source is not None:
        _check_array(bad, "occlusion_source", req.occlusion_source, (F, H, W, 3), "u")


def _check_int(bad, name, v, lo, hi):
    if not (type(v) is int and lo <= v <= hi):
        raise bad(name, f"expected an integer in {lo}..{hi}, got {v!r}")


def _check_number(bad, name, v, lo, hi, low_open=False):
    ok = type(v) in (int, float) and math.isfinite(v) and (lo < v if low_open else lo <= v) and v <= hi
    if not ok:
        raise bad(name, f"expected a number in {'(' if low_open else '['}{lo}, {hi}], got {v!r}")


def _check_array(bad, name, a, shape, kinds, bound: float = math.inf) -> int:
    """Check type, dtype kind ("u": uint8 only; "f": float32/float64, finite, magnitude at most
    ``bound``) and shape, where ``None`` in ``shape`` matches any size. Returns the first
    dimension."""
    if not isinstance(a, np.ndarray):
        raise bad(name, f"expected an array, got {type(a).__name__}")
    if kinds == "u" and a.dtype != np.uint8:
        raise bad(name, f"expected dtype uint8, got {a.dtype}")
    if kinds == "f":
        if a.dtype not in (np.float32, np.float64):
            raise bad(name, f"expected dtype float32 or float64, got {a.dtype}")
        if not np.isfinite(a).all():
            raise bad(name, "contains NaN or infinite values")
        if a.size and float(np.abs(a).max()) > bound:
            raise bad(name, f"values up to {float(np.abs(a).max()):.3g}, limit ±{bound:g}")
    want = "(" + ", ".join("F" if n is None else str(n) for n in shape) + ")"
    if a.ndim != len(shape) or any(n is not None and n != m for n, m in zip(shape, a.shape)):
        raise bad(name, f"expected shape {want}, got {tuple(a.shape)}")
    if a.size == 0 and a.ndim and a.shape[0] == 0:
        raise bad(name, "has no frames")
    return int(a.shape[0]) if a.ndim else 0


def _check_camera(bad, cam: CameraParams, lim) -> int:
    if not isinstance(cam, CameraParams):
        raise bad("camera", f"expected CameraParams, got {type(cam).__name__}")
    for name in ("width", "height"):
        v = getattr(cam, name)
        if not (type(v) is int and 1 <= v <= 8 * lim["max_side"]):
            raise bad(f"camera.{name}", f"expected pixels in 1..{8 * lim['max_side']}, got {v!r}")
    F = _check_array(bad, "camera.K", cam.K, (None, 3, 3), "f", MAX_PIXELS_K)
    _check_array(bad, "camera.R", cam.R, (F, 3, 3), "f", 2.0)
    _check_array(bad, "camera.t", cam.t, (F, 3), "f", MAX_METRES)
    K = cam.K.astype(np.float64)
    if not (np.all(K[:, 0, 0] > 0) and np.all(K[:, 1, 1] > 0)):
        raise bad("camera.K", "focal lengths K[0,0] and K[1,1] must be positive")
    if not (np.allclose(K[:, 1, 0], 0) and np.allclose(K[:, 2, :2], 0) and np.allclose(K[:, 2, 2], 1)):
        raise bad("camera.K", "expected rows [fx s cx], [0 fy cy], [0 0 1]")
    R = cam.R.astype(np.float64)
    err = np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max()
    if err > 1e-3 or np.any(np.linalg.det(R) < 0):
        raise bad("camera.R", f"expected rotation matrices (orthonormal, det +1); max error {err:.3g}")
    return F


def _check_body(bad, name, body, F, joints, model, max_betas) -> None:
    if not isinstance(body, BodyParams):
        raise bad(name, f"expected BodyParams, got {type(body).__name__}")
    _check_array(bad, f"{name}.global_orient", body.global_orient, (F, 3), "f", MAX_ANGLE)
    _check_array(bad, f"{name}.body_pose", body.body_pose, (F, joints, 3), "f", MAX_ANGLE)
    _check_array(bad, f"{name}.transl", body.transl, (F, 3), "f", MAX_METRES)
    b = body.betas
    if not isinstance(b, np.ndarray) or b.ndim not in (1, 2):
        raise bad(f"{name}.betas", f"expected shape (NB,) or (F, NB), got "
                  f"{getattr(b, 'shape', type(b).__name__)}")
    if not 1 <= b.shape[-1] <= max_betas:
        raise bad(f"{name}.betas", f"expected 1..{max_betas} coefficients for the {model!r} body "
                  f"model, got {b.shape[-1]}")
    shape = (b.shape[0],) if b.ndim == 1 else (F, b.shape[1])
    _check_array(bad, f"{name}.betas", b, shape, "f", MAX_BETA)
    for hand in ("left_hand_pose", "right_hand_pose"):
        h = getattr(body, hand)
        if h is not None:
            if model == "smpl":
                raise bad(f"{name}.{hand}", "the 'smpl' body model has no hand joints")
            _check_array(bad, f"{name}.{hand}", h, (F, 15, 3), "f", MAX_ANGLE)
