"""The mimo-blender wire protocol, part 1 of 3: every message type, the protocol version, the
default limits and the error codes (the whole protocol: :mod:`server.protocol`, server/PROTOCOL.md).

Vendored byte-identical into the Blender add-on with the other parts: imports only the standard
library and ``numpy``.

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
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Union

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


class ProtocolError(ValueError):
    """A message or field is malformed. ``code`` is one of :data:`ERROR_CODES`; ``field`` names the
    offending field as a dotted path (``"bodies[0].body_pose"``) or is empty."""

    def __init__(self, code: str, message: str, field: str = ""):
        super().__init__(f"{field}: {message}" if field else message)
        self.code, self.message, self.field = code, message, field

    def to_error(self, job_id: str = "") -> Error:
        return Error(code=self.code, message=self.message, field=self.field, job_id=job_id)



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
