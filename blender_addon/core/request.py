"""Blender properties -> one plain :class:`GenerateSettings` -> the wire ``GenerateRequest``.

The operator reads ``scene.mimo`` into :class:`GenerateSettings` (bl/operators.py), the rig and
camera readers give numpy arrays, and :func:`build_request` assembles the vendored protocol's
``GenerateRequest`` — the exact dataclass the server receives.

Shapes:
    bodies[i]: global_orient (F, 3), body_pose (F, 21, 3), transl (F, 3), betas (K,),
               left/right_hand_pose (F, 15, 3)
    camera:    K (F, 3, 3), R (F, 3, 3), t (F, 3)
    scene (F, H, W, 3) uint8, occlusion (F, H, W) uint8
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np


@dataclasses.dataclass
class GenerateSettings:
    server: str = "tcp://127.0.0.1:5555"
    timeout: float = 5.0
    backend: str = "preview"
    mode: str = "exact"          # one of the modes the server reports (Capabilities.modes)
    character: str = ""          # absolute path of the reference image
    steps: int | None = None     # None: the mode's default (the server resolves it)
    cfg: float = 3.5
    seed: int = 42
    job_name: str = "shot"
    fps: float = 30.0
    body_model: str = "open"
    roi_size: int | None = None  # side of the square MIMO generates each crop at; None: auto_roi_size

    def validate(self) -> None:
        if not self.server.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"server: expected an address like tcp://host:port, got {self.server!r}")
        if self.roi_size is not None:
            check_roi_size(self.roi_size)
        if not self.character:
            if self.backend == "preview":  # the preview draws the motion codes only
                return
            raise ValueError("character: choose a reference image of the character "
                             "(only the Preview backend works without one)")
        if not os.path.isfile(self.character):
            raise ValueError(f"character: file not found: {self.character}")


#: The ROI side a server uses when the request leaves it unset (server/PROTOCOL.md, ``roi_size``).
AUTO_ROI_SIZE = 784


def auto_roi_size(width: int, height: int) -> int:
    """The ROI side the server picks for an output of ``width`` x ``height`` when the request
    leaves it unset: 784, or the longer side (rounded up to a multiple of 8, at least 64) when
    that is smaller."""
    return int(min(AUTO_ROI_SIZE, max(64, -(-max(width, height) // 8) * 8)))


def check_roi_size(size: int, max_side: int = 0) -> None:
    """``size`` must be what the protocol accepts: a multiple of 8 in 64..``max_side`` (0: the
    protocol's default limit; a server reports its own in its capabilities' ``limits``)."""
    if not max_side:
        from ..vendor.protocol import DEFAULT_LIMITS

        max_side = DEFAULT_LIMITS["max_side"]
    if not (64 <= size <= max_side and size % 8 == 0):
        raise ValueError(f"ROI size: expected a multiple of 8 in 64..{max_side}, got {size}")


def is_loopback(address: str) -> bool:
    """True for ``tcp://127.x.x.x``/``localhost``/``[::1]`` and local transports (ipc, inproc):
    those need no ``bpy.app.online_access``."""
    if not address.startswith("tcp://"):
        return True
    host = address[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def build_request(settings: GenerateSettings, bodies: list[dict], camera: dict,
                  scene: np.ndarray | None = None, occlusion: np.ndarray | None = None):
    """Assemble and validate the wire request (raises ``ValueError`` naming the field).

    Shapes: bodies and camera as in the module docstring (F frames each);
            scene (F, H, W, 3) uint8 or None, occlusion (F, H, W) uint8 or None
    """
    from ..vendor import protocol as P

    settings.validate()
    if settings.character:
        with open(settings.character, "rb") as f:
            character = f.read()
    else:  # Preview without a character image: the wire wants one, the preview never looks at it
        from .png import encode_png

        character = encode_png(np.full((8, 8, 3), 255, np.uint8))
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    body_params = []
    for b in bodies:
        hands = {k: f32(b[k]) for k in ("left_hand_pose", "right_hand_pose") if b.get(k) is not None}
        body_params.append(P.BodyParams(global_orient=f32(b["global_orient"]), body_pose=f32(b["body_pose"]),
                                        transl=f32(b["transl"]), betas=f32(b["betas"]), **hands))
    cam = P.CameraParams(K=f32(camera["K"]), R=f32(camera["R"]), t=f32(camera["t"]),
                        width=int(camera["width"]), height=int(camera["height"]))
    req = P.GenerateRequest(
        character=character, bodies=body_params, body_model=settings.body_model, camera=cam,
        scene=scene, occlusion=occlusion, width=cam.width, height=cam.height, fps=float(settings.fps),
        steps=None if not settings.steps else int(settings.steps), cfg=float(settings.cfg), seed=int(settings.seed),
        backend=settings.backend, mode=settings.mode, roi_size=settings.roi_size, preview=True,
        name=settings.job_name)
    # context, overlap (and steps, roi_size when unset) stay None: the server applies its defaults
    P.validate_request(req)
    return req


#: What a 1.1 server assumed for a setting a 1.2 client leaves to the mode (nil is not 1.1 wire).
LEGACY_DEFAULTS = {"exact": {"steps": 25, "context": 24, "overlap": 4},
                   "fast": {"steps": 25, "context": 32, "overlap": 4}}


def for_server(req, caps):
    """``req`` as the server of ``caps`` (its Capabilities) understands it: a server of protocol
    1.2 or later takes None for "the mode's default"; an older one gets the numbers it reports in
    ``mode_defaults``, else the ones it always used (:data:`LEGACY_DEFAULTS`)."""
    if tuple(caps.protocol_version[:2]) >= (1, 2):
        return req
    import dataclasses

    defaults = dict(caps.mode_defaults.get(req.mode) or LEGACY_DEFAULTS.get(req.mode) or LEGACY_DEFAULTS["exact"])
    fill = {k: v for k, v in defaults.items() if getattr(req, k, 0) is None}
    if req.roi_size is None:
        fill["roi_size"] = 784
    return dataclasses.replace(req, **fill)
