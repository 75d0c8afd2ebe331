"""One door into the library (mimo.pipeline.prepare): the same shot through ``mimo generate``'s
files and through a wire request gives the same job, and each way the two front ends used to
disagree has its own check."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mimo.errors import FieldError
from mimo.pipeline.job import GenerationJob, JobLimits
from mimo.pipeline.presets import PRESETS
from server import protocol as P
from server.adapter import build_job as build_wire_job

F, W, H = 3, 64, 48  # output size; the camera is expressed for twice that (its K gets rescaled)


def _character_png() -> bytes:
    """An RGBA character: an opaque figure inside a transparent margin."""
    rgba = np.zeros((60, 40, 4), np.uint8)
    rgba[10:50, 12:28] = (180, 60, 30, 255)
    rgba[10:20, 12:28, 3] = 128  # a soft edge: compositing on white must show in the result
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


def _shot():
    """float32-exact body and camera values (the wire carries float32), the left hand unposed."""
    rng = np.random.default_rng(7)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    body = dict(global_orient=f32(rng.normal(0, 0.1, (F, 3))), body_pose=f32(rng.normal(0, 0.2, (F, 21, 3))),
                transl=f32(np.tile([0.0, 0.2, 0.0], (F, 1))), betas=f32(rng.normal(0, 0.5, 6)),
                right_hand_pose=f32(rng.normal(0, 0.3, (F, 15, 3))))
    K = np.tile(np.array([[120.0, 0, 64], [0, 120, 48], [0, 0, 1]], np.float32), (F, 1, 1))
    R = np.tile(np.diag([1.0, -1.0, -1.0]).astype(np.float32), (F, 1, 1))  # looking at the body's front
    t = np.tile(np.array([0.0, 0.0, 3.5], np.float32), (F, 1))
    return body, dict(K=K, R=R, t=t, width=2 * W, height=2 * H)


def _cli_job(tmp_path, *extra):
    from mimo.cli import build_parser
    from mimo.motion import BodyTrack, CameraTrack, MotionClip
    from mimo.pipeline.cli import build_job

    body, cam = _shot()
    clip = MotionClip(fps=24.0, bodies=[BodyTrack(**{k: v.astype(np.float64) for k, v in body.items()})])
    clip.validate().save(tmp_path / "clip.npz")
    CameraTrack(**{k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in cam.items()},
                fps=24.0).validate().save(tmp_path / "cam.npz")
    (tmp_path / "char.png").write_bytes(_character_png())
    args = build_parser().parse_args(
        ["generate", "--preview", "--character", str(tmp_path / "char.png"), "--motion", str(tmp_path / "clip.npz"),
         "--camera", str(tmp_path / "cam.npz"), "--size", f"{W}x{H}", "--device", "cpu",
         "--out", str(tmp_path / "out"), *extra])
    return build_job(args)[0]


def _wire_request(**kw) -> P.GenerateRequest:
    body, cam = _shot()
    return P.GenerateRequest(character=_character_png(), bodies=[P.BodyParams(**body)], body_model="open",
                             camera=P.CameraParams(**cam), width=W, height=H, fps=24.0, **kw)


def _same_job(a: GenerationJob, b: GenerationJob) -> None:
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.code_mask, b.code_mask)
    np.testing.assert_array_equal(a.character, b.character)
    for name in ("fps", "steps", "cfg", "seed", "context", "overlap", "mode", "raw", "roi_size", "limits"):
        assert getattr(a, name) == getattr(b, name), name


def test_cli_and_wire_build_the_same_job(tmp_path):
    cli = _cli_job(tmp_path, "--mode", "fast")
    req = _wire_request(mode="fast")
    P.validate_request(req, modes=PRESETS)
    wire = build_wire_job(req, device="cpu")
    _same_job(cli, wire)
    from server.adapter import render_request_codes

    np.testing.assert_array_equal(render_request_codes(req, "cpu")[0], wire.codes)
    assert cli.code_mask.any() and cli.codes.shape == (F, H, W, 3)
    # the settings nobody gave are the mode's, on both doors
    fast = PRESETS["fast"]
    assert (wire.steps, wire.context, wire.overlap) == (fast.steps, fast.context, fast.overlap)
    assert wire.roi_size == 64  # the output's longer side, rounded up to a multiple of 8


def test_rgba_character_is_cropped_to_the_figure_on_both_doors(tmp_path):
    """Drift: the CLI cropped a transparent PNG to the figure, the server only flattened it."""
    cli, wire = _cli_job(tmp_path), build_wire_job(_wire_request(), device="cpu")
    np.testing.assert_array_equal(cli.character, wire.character)
    # the figure is 40 x 16 at (10, 12); rows grow by int(0.05 * 40) = 2 on each side, columns do not
    assert wire.character.shape == (44, 16, 3)
    assert (wire.character[0] == 255).all() and (wire.character[-1] == 255).all()  # the added rows: white
    # the soft edge (alpha 128) is composited on white: (180 * 128 + 255 * 127) / 255 rounded
    np.testing.assert_array_equal(wire.character[2, 0], np.rint((np.array([180, 60, 30]) * 128 + 255 * 127) / 255))
    np.testing.assert_array_equal(wire.character[20, 5], (180, 60, 30))


def test_a_hand_without_a_pose_is_left_out_on_both_doors(tmp_path):
    """Drift: the CLI drew a flat hand where the clip had no hand pose, the server removed it. One
    rule now (the official renderer's): no pose, no hand; zeros give a visible flat hand."""
    from mimo.body import load_body
    from mimo.codes.render import render_clip
    from mimo.motion import BodyTrack, CameraTrack, MotionClip

    cli = _cli_job(tmp_path)
    body, cam = _shot()
    clip = MotionClip(fps=24.0, bodies=[BodyTrack(**body)])
    camera = CameraTrack(**cam, fps=24.0)
    open_body = load_body("open", device="cpu")
    kept, kept_mask = render_clip(clip, camera, open_body, remove_hands=False, size=(W, H))
    left_out, left_out_mask = render_clip(clip, camera, open_body, remove_hands="auto", size=(W, H))
    assert kept_mask.sum() > left_out_mask.sum()  # the unposed left hand is visible in this view
    np.testing.assert_array_equal(cli.codes, left_out)
    np.testing.assert_array_equal(build_wire_job(_wire_request(), device="cpu").codes, left_out)
    # a zero (flat) hand pose keeps the hand
    body["left_hand_pose"] = np.zeros((F, 15, 3), np.float32)
    flat = MotionClip(fps=24.0, bodies=[BodyTrack(**body)])
    np.testing.assert_array_equal(render_clip(flat, camera, open_body, remove_hands="auto", size=(W, H))[1],
                                  kept_mask)


def test_the_servers_max_frames_is_the_jobs_max_frames():
    """Drift: ``mimo-server --max-frames 5000`` passed the wire check, then the job refused at 2000."""
    from mimo.pipeline.backends import load_backend
    from server.core import Server

    codes = np.zeros((2001, 8, 8, 3), np.uint8)
    req = P.GenerateRequest(character=_character_png(), codes=codes, width=8, height=8)
    srv = Server({"preview": load_backend("preview")}, bind="tcp://127.0.0.1:0", limits={"max_frames": 5000})
    try:
        P.validate_request(req, srv.limits)
        job = srv._build(req)  # what the worker runs, with the server's own limits
        assert job.num_frames == 2001 and job.limits.max_frames == 5000
        assert srv.capabilities().limits["max_frames"] == 5000
    finally:
        srv._ctx.destroy(linger=0)
    with pytest.raises(FieldError) as e:  # the library's default limit, named as the wire names it
        build_wire_job(req)
    assert e.value.field == "codes" and "1..2000 frames" in e.value.message


def test_fast_mode_takes_an_overlap_up_to_its_own_window(tmp_path):
    """Drift: ``mimo generate --mode fast --overlap 28`` was refused (the job assumed 24 frames)."""
    from mimo.cli_errors import UsageError

    job = _cli_job(tmp_path, "--mode", "fast", "--overlap", "28")
    assert (job.context, job.overlap) == (32, 28)
    job.validate()
    wire = build_wire_job(_wire_request(mode="fast", overlap=28), device="cpu")
    assert (wire.context, wire.overlap) == (32, 28)
    with pytest.raises(UsageError, match="--overlap"):
        _cli_job(tmp_path, "--mode", "exact", "--overlap", "28")
    with pytest.raises(FieldError) as e:
        build_wire_job(_wire_request(mode="exact", overlap=28), device="cpu")
    assert e.value.field == "overlap"


def test_the_wire_can_leave_context_and_overlap_to_the_mode():
    """Drift: the wire could not say "the mode's default", so the add-on hard-coded 24/32."""
    for mode, p in PRESETS.items():
        req = _wire_request(mode=mode)
        assert (req.context, req.overlap, req.steps) == (None, None, None)
        frames = P.encode(P.Submit(request=req))
        assert P.decode(frames).request.context is None
        job = build_wire_job(req, device="cpu")
        assert (job.context, job.overlap, job.steps) == (p.context, p.overlap, p.steps)
    # a 1.1 client sends numbers: they mean what they meant
    old = build_wire_job(_wire_request(mode="exact", context=16, overlap=2, steps=3, roi_size=784), device="cpu")
    assert (old.context, old.overlap, old.steps, old.roi_size) == (16, 2, 3, 784)
    # a window given shorter than the mode's overlap halves it, instead of blaming an overlap never set
    for context in (1, 2, 4):
        job = build_wire_job(_wire_request(mode="draft", context=context), device="cpu")
        job.validate()
        assert job.overlap == context // 2


def test_job_errors_reach_the_client_field_without_parsing_text():
    """Drift: the server found ``field`` by splitting ``"field: msg"`` out of ValueError text."""
    from server.jobs import _job_error

    err = _job_error("j1", FieldError("bodies[0].betas", "too many"))
    assert (err.code, err.field, err.message) == ("invalid_field", "bodies[0].betas", "too many")
    # a ValueError whose text merely looks like "field: message" is the backend's failure
    err = _job_error("j1", ValueError("width: something deep inside the backend"))
    assert err.code == "model_error" and err.field == ""
    # the adapter names the request's fields
    req = _wire_request()
    req.character = b"\x89PNG\r\n\x1a\n" + b"not really a png"
    with pytest.raises(FieldError) as e:
        build_wire_job(req, device="cpu")
    assert e.value.field == "character"
    bad = _wire_request()  # (the wire check refuses this first; the library names it the same way)
    bad.bodies[0].global_orient = np.full((F, 3), np.nan, np.float32)
    with pytest.raises(FieldError) as e:
        build_wire_job(bad, device="cpu")
    assert e.value.field == "bodies[0].global_orient"


def test_modes_come_from_the_presets_everywhere():
    from mimo.cli import build_parser
    from mimo.pipeline.backends import load_backend
    from server.core import Server

    gen = build_parser()._subparsers._group_actions[0].choices["generate"]
    mode = next(a for a in gen._actions if a.dest == "mode")
    assert list(mode.choices) == list(PRESETS)
    srv = Server({"preview": load_backend("preview")}, bind="tcp://127.0.0.1:0")
    try:
        caps = srv.capabilities()
    finally:
        srv._ctx.destroy(linger=0)
    assert caps.modes == {m: p.summary for m, p in PRESETS.items()}
    assert caps.mode_defaults == {m: {"steps": p.steps, "context": p.context, "overlap": p.overlap}
                                  for m, p in PRESETS.items()}
    req = _wire_request(mode="turbo")
    with pytest.raises(P.ProtocolError) as e:
        P.validate_request(req, modes=caps.modes)
    assert e.value.field == "mode"
    with pytest.raises(FieldError) as e:
        build_wire_job(req, device="cpu")
    assert e.value.field == "mode"


def test_registries_and_defaults_are_one_list_each():
    from mimo.body import BODY_KINDS
    from mimo.motion import clip as motion_clip
    from mimo.pipeline.backends import BACKENDS
    from server.cli import build_parser as server_parser

    assert tuple(BODY_KINDS) == P.BODY_MODELS == motion_clip.BODY_MODELS
    assert all(BODY_KINDS[k].body_joints == (23 if k == "smpl" else 21) for k in BODY_KINDS)
    lim = JobLimits()
    assert (lim.max_frames, lim.min_side, lim.max_side) == tuple(
        P.DEFAULT_LIMITS[k] for k in ("max_frames", "min_side", "max_side"))
    serve = server_parser()._subparsers._group_actions[0].choices["serve"]
    backend = next(a for a in serve._actions if a.dest == "backend")
    assert list(backend.choices) == list(BACKENDS)
