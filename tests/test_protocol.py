"""server/protocol.py: encode/decode are inverses, decoding is strict but never crashes, requests
are validated field by field, and the module imports only what the Blender add-on can vendor."""
from __future__ import annotations

import ast
import dataclasses
import pathlib
import re

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server import protocol as P

ROOT = pathlib.Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


def _camera(F=2, W=64, H=48, f=80.0):
    K = np.tile(np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]]), (F, 1, 1))
    return P.CameraParams(K=K, R=np.tile(np.eye(3), (F, 1, 1)), t=np.tile([0, 0, 3.0], (F, 1)),
                         width=W, height=H)


def _body(F=2, J=21, hands=True):
    rng = np.random.default_rng(0)
    return P.BodyParams(
        global_orient=rng.normal(size=(F, 3)).astype(np.float32),
        body_pose=rng.normal(size=(F, J, 3)).astype(np.float32),
        transl=rng.normal(size=(F, 3)),
        betas=rng.normal(size=(10,)).astype(np.float32),
        left_hand_pose=rng.normal(size=(F, 15, 3)).astype(np.float32) if hands else None,
        right_hand_pose=None)


def body_request(F=2, **kw):
    return P.GenerateRequest(character=PNG, bodies=[_body(F)], camera=_camera(F), width=64,
                             height=48, **kw)


def codes_request(F=3, W=32, H=16, **kw):
    rng = np.random.default_rng(1)
    return P.GenerateRequest(character=b"\xff\xd8\xff" + b"1" * 10,
                             codes=rng.integers(0, 256, (F, H, W, 3), dtype=np.uint8),
                             scene=rng.integers(0, 256, (F, H, W, 3), dtype=np.uint8),
                             occlusion=rng.integers(0, 256, (F, H, W), dtype=np.uint8),
                             width=W, height=H, **kw)


def every_message():
    img = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    return [
        P.Hello(client="me"),
        P.Capabilities(server="s", backends=["preview"], body_models=["open"],
                       limits=dict(P.DEFAULT_LIMITS), device="cpu", weights="", heartbeat_timeout_s=3.0),
        P.Submit(request=body_request(), credit=3, tag="t1"),
        P.Submit(request=codes_request(), credit=1),
        P.Accepted(job_id="j1", queue_position=2, num_frames=5, tag="t1"),
        P.Progress(job_id="j1", stage="denoise", step=3, total=25, eta_s=1.5),
        P.Preview(job_id="j1", index=0, image=img[:2]),
        P.Frame(job_id="j1", index=4, image=img),
        P.Done(job_id="j1", num_frames=5, stats={"seconds": 1.25, "stages": {"denoise": 1.0}}),
        P.Error(code="invalid_field", message="bad", field="bodies[0].betas", job_id="", tag="t"),
        P.Cancel(job_id="j1"),
        P.Credit(job_id="j1", frames=4),
        P.Status(),
        P.StatusReply(queued=1, running="j1", jobs=[{"job_id": "j1", "state": "running"}],
                      uptime_s=2.0, jobs_done=3, device="cpu"),
        P.Heartbeat(time=123.5),
    ]


def test_every_message_type_round_trips():
    msgs = every_message()
    assert {type(m) for m in msgs} == set(P.MESSAGE_TYPES.values())
    for m in msgs:
        frames = P.encode(m)
        back = P.decode([bytes(f) for f in frames])
        assert back == m, type(m).__name__
        assert msgpack.unpackb(frames[0])["v"] == list(P.PROTOCOL_VERSION)


def test_equality_sees_array_differences():
    a = P.Frame(job_id="j", index=0, image=np.zeros((2, 2, 3), np.uint8))
    b = P.Frame(job_id="j", index=0, image=np.ones((2, 2, 3), np.uint8))
    c = P.Frame(job_id="j", index=0, image=np.zeros((2, 2, 3), np.float32))
    assert a != b and a != c and a == P.decode(P.encode(a))


def test_arrays_travel_as_raw_frames_not_in_the_header():
    req = codes_request(F=2, W=64, H=64)
    frames = P.encode(P.Submit(request=req))
    assert len(frames[0]) < 1000  # the header stays small
    sizes = sorted(len(f) for f in frames[1:])
    assert sizes == sorted([len(req.character), 2 * 64 * 64 * 3, 2 * 64 * 64 * 3, 2 * 64 * 64])
    back = P.decode(frames).request
    assert back.codes.dtype == np.uint8 and back.codes.shape == (2, 64, 64, 3)


def test_big_endian_and_non_contiguous_arrays_arrive_equal():
    a = np.arange(24, dtype=">f4").reshape(2, 3, 4)[:, ::2, ::-1]
    msg = P.Frame(job_id="j", index=0, image=a)
    back = P.decode(P.encode(msg))
    assert back.image.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(back.image, a)


def test_unknown_fields_are_ignored_and_missing_optional_ones_default():
    header = {"v": [1, 7], "type": "progress", "job_id": "j", "stage": "x", "step": 1,
              "total": 2, "future_field": {"nested": [1, 2]}}
    msg = P.decode([msgpack.packb(header)])
    assert msg == P.Progress(job_id="j", stage="x", step=1, total=2, eta_s=-1.0)


def test_other_major_version_is_refused_with_code_version():
    frames = P.encode(P.Hello())
    header = msgpack.unpackb(frames[0])
    header["v"] = [P.PROTOCOL_VERSION[0] + 1, 0]
    with pytest.raises(P.ProtocolError) as e:
        P.decode([msgpack.packb(header)])
    assert e.value.code == "version"


@pytest.mark.parametrize("frames, code", [
    ([], "bad_message"),
    ([b"\xc1garbage"], "bad_message"),
    ([msgpack.packb([1, 2])], "bad_message"),
    ([msgpack.packb({"type": "hello"})], "bad_message"),
    ([msgpack.packb({"v": [1, 0], "type": "nope"})], "unknown_type"),
    ([msgpack.packb({"v": [1, 0], "type": "cancel"})], "invalid_field"),
    ([msgpack.packb({"v": [1, 0], "type": "credit", "job_id": "j", "frames": "3"})], "invalid_field"),
    ([msgpack.packb({"v": [1, 0], "type": "credit", "job_id": "j", "frames": True})], "invalid_field"),
    ([msgpack.packb({"v": [1, 0], "type": "frame", "job_id": "j", "index": 0,
                     "image": {"$buf": 0, "dtype": "|u1", "shape": [2, 2, 3]}}), b"short"], "bad_message"),
    ([msgpack.packb({"v": [1, 0], "type": "frame", "job_id": "j", "index": 0,
                     "image": {"$buf": 0, "dtype": "|O", "shape": [1]}}), b"12345678"], "invalid_field"),
    ([msgpack.packb({"v": [1, 0], "type": "frame", "job_id": "j", "index": 0,
                     "image": {"$buf": 3, "dtype": "|u1", "shape": [1]}}), b"1"], "bad_message"),
    ([msgpack.packb({"v": [1, 0], "type": "hello"}), b"extra"], "bad_message"),
])
def test_malformed_frames_raise_protocol_errors(frames, code):
    with pytest.raises(P.ProtocolError) as e:
        P.decode(frames)
    assert e.value.code == code


@pytest.mark.parametrize("depth", [600, 5000])
def test_deeply_nested_headers_are_bad_messages(depth):
    head = msgpack.packb({"v": [1, 0], "type": "done", "job_id": "j", "num_frames": 1})
    frame = b"\x85" + head[1:] + msgpack.packb("stats") + b"\x81\xa1a" + b"\x91" * depth + b"\xc0"
    with pytest.raises(P.ProtocolError) as e:
        P.decode([frame])
    assert e.value.code == "bad_message"


def test_decoder_never_unpickles():
    import pickle

    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("unpickled from the wire",))

    with pytest.raises(P.ProtocolError):
        P.decode([pickle.dumps(Boom())])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=4))
def test_decoder_fuzz_random_frames(frames):
    try:
        P.decode(frames)
    except P.ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_decoder_fuzz_truncated_and_mutated_messages(data):
    msgs = every_message()
    frames = [bytes(f) for f in P.encode(data.draw(st.sampled_from(msgs)))]
    i = data.draw(st.integers(0, len(frames) - 1))
    f = frames[i]
    cut = data.draw(st.integers(0, len(f)))
    flip = data.draw(st.integers(0, 255))
    frames[i] = f[:cut] + (bytes([f[cut] ^ flip]) + f[cut + 1:] if cut < len(f) and flip else b"")
    if data.draw(st.booleans()):
        frames = frames[: data.draw(st.integers(1, len(frames)))]
    try:
        P.decode(frames)
    except P.ProtocolError:
        pass


# --- validation ---------------------------------------------------------------------------------
def test_valid_requests_pass():
    P.validate_request(body_request())
    P.validate_request(codes_request())
    smpl = body_request()
    smpl.body_model = "smpl"
    smpl.bodies = [_body(J=23, hands=False)]
    P.validate_request(smpl)


def _mutations():
    F = 2
    return [
        ("character", lambda r: setattr(r, "character", b"GIF89a")),
        ("character", lambda r: setattr(r, "character", b"")),
        ("width", lambda r: setattr(r, "width", 60)),
        ("height", lambda r: setattr(r, "height", 4096)),
        ("fps", lambda r: setattr(r, "fps", float("nan"))),
        ("steps", lambda r: setattr(r, "steps", 0)),
        ("cfg", lambda r: setattr(r, "cfg", -1.0)),
        ("seed", lambda r: setattr(r, "seed", -3)),
        ("overlap", lambda r: setattr(r, "overlap", 32)),  # no window is that long
        ("overlap", lambda r: (setattr(r, "context", 24), setattr(r, "overlap", 24))),
        ("context", lambda r: setattr(r, "context", 33)),
        ("mode", lambda r: setattr(r, "mode", "turbo")),
        ("roi_size", lambda r: setattr(r, "roi_size", 100)),
        ("raw", lambda r: setattr(r, "raw", 1)),
        ("backend", lambda r: setattr(r, "backend", "")),
        ("body_model", lambda r: setattr(r, "body_model", "mano")),
        ("camera", lambda r: setattr(r, "camera", None)),
        ("bodies", lambda r: setattr(r, "bodies", [])),
        ("bodies[0].body_pose", lambda r: setattr(r.bodies[0], "body_pose", np.zeros((F, 23, 3)))),
        ("bodies[0].body_pose", lambda r: setattr(r.bodies[0], "body_pose", np.zeros((F, 21, 3), np.int32))),
        ("bodies[0].global_orient", lambda r: setattr(r.bodies[0], "global_orient", np.full((F, 3), np.inf))),
        ("bodies[0].transl", lambda r: setattr(r.bodies[0], "transl", np.zeros((F + 1, 3)))),
        ("bodies[0].betas", lambda r: setattr(r.bodies[0], "betas", np.zeros((F, 3, 3)))),
        ("bodies[0].betas", lambda r: setattr(r.bodies[0], "betas", np.zeros((F + 1, 10)))),
        ("bodies[0].left_hand_pose", lambda r: setattr(r.bodies[0], "left_hand_pose", np.zeros((F, 14, 3)))),
        ("camera.R", lambda r: setattr(r.camera, "R", r.camera.R * 2)),
        ("camera.R", lambda r: setattr(r.camera, "R", -r.camera.R)),
        ("camera.K", lambda r: r.camera.K.__setitem__((0, 0, 0), -5.0)),
        ("camera.K", lambda r: r.camera.K.__setitem__((1, 2, 2), 2.0)),
        ("camera.t", lambda r: setattr(r.camera, "t", np.zeros((F, 4)))),
        ("camera.width", lambda r: setattr(r.camera, "width", 0)),
        ("scene", lambda r: setattr(r, "scene", np.zeros((F, 48, 64, 3), np.float32))),
        ("scene", lambda r: setattr(r, "scene", np.zeros((F + 1, 48, 64, 3), np.uint8))),
        ("occlusion", lambda r: setattr(r, "occlusion", np.zeros((F, 48, 64), np.uint8))),
        ("codes", lambda r: setattr(r, "codes", np.zeros((F, 48, 64, 3), np.uint8))),
        ("occlusion_source", lambda r: setattr(r, "occlusion_source", np.zeros((F, 48, 60, 3), np.uint8))),
    ]


@pytest.mark.parametrize("field, mutate", _mutations(), ids=[m[0] for m in _mutations()])
def test_invalid_requests_name_the_field(field, mutate):
    req = body_request(F=2)
    mutate(req)
    with pytest.raises(P.ProtocolError) as e:
        P.validate_request(req, modes=("exact", "fast"))
    assert e.value.code == "invalid_field" and e.value.field == field, str(e.value)
    assert str(e.value).startswith(field)


def test_frame_count_limit_is_enforced():
    req = codes_request(F=5)
    with pytest.raises(P.ProtocolError) as e:
        P.validate_request(req, {"max_frames": 4})
    assert e.value.field == "codes" and "1..4 frames" in e.value.message


def test_codes_must_match_the_output_size():
    req = codes_request(W=32, H=16)
    req.width = 40
    with pytest.raises(P.ProtocolError) as e:
        P.validate_request(req)
    assert e.value.field == "codes"


# --- the vendoring constraint and the docs ------------------------------------------------------
PROTOCOL_PARTS = ["protocol.py", "protocol_messages.py", "protocol_wire.py", "protocol_checks.py"]


@pytest.mark.parametrize("name", [*PROTOCOL_PARTS, "client.py"])
def test_vendored_modules_import_only_stdlib_zmq_msgpack_numpy(name):
    import sys

    allowed = {"zmq", "msgpack", "numpy"} | set(sys.stdlib_module_names)
    tree = ast.parse((ROOT / "server" / name).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: only the sibling protocol modules (`from .protocol import X`
                # or `from . import protocol as P`)
                siblings = [node.module] if node.module else [a.name for a in node.names]
                assert node.level == 1 and all(f"{m}.py" in PROTOCOL_PARTS for m in siblings), ast.dump(node)
                continue
            roots = {node.module.split(".")[0]}
        else:
            continue
        assert roots <= allowed, f"{name} imports {roots - allowed}"


def test_vendored_copies_in_the_addon_are_byte_identical():
    """Any copy of the protocol's files / client.py inside the add-on must equal the source byte for
    byte."""
    # a copy is recognised by the source's first line (its docstring's title)
    sources = {(ROOT / "server" / n).read_text().splitlines()[0]: ROOT / "server" / n
               for n in (*PROTOCOL_PARTS, "client.py")}
    assert len(sources) == len(PROTOCOL_PARTS) + 1, "each source needs its own first line"
    for path in (ROOT / "blender_addon").rglob("*.py"):
        text = path.read_text(errors="replace")
        for marker, source in sources.items():
            if marker in text:
                assert path.read_bytes() == source.read_bytes(), f"{path} differs from {source}"


def test_documented_version_matches_the_code():
    doc = (ROOT / "server" / "PROTOCOL.md").read_text()
    m = re.search(r"Protocol version:\s*\*\*(\d+)\.(\d+)\*\*", doc)
    assert m, "PROTOCOL.md must state 'Protocol version: **X.Y**'"
    assert (int(m.group(1)), int(m.group(2))) == P.PROTOCOL_VERSION
    for cls in P.MESSAGE_TYPES.values():
        assert f"`{cls.TYPE}`" in doc, f"PROTOCOL.md does not document `{cls.TYPE}`"
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in doc, f"PROTOCOL.md does not document field `{f.name}` of {cls.TYPE}"
    for code in P.ERROR_CODES:
        assert f"`{code}`" in doc, f"PROTOCOL.md does not document error code `{code}`"


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_encode_decode_round_trip_property(data):
    from hypothesis.extra import numpy as hnp

    dtype = data.draw(st.sampled_from(["u1", "<i2", "<f4", "<f8", "<i8", "?", ">f4", ">i4"]))
    arr = data.draw(hnp.arrays(np.dtype(dtype), hnp.array_shapes(min_dims=0, max_dims=4, max_side=5)))
    text = st.text(max_size=8)
    stats = data.draw(st.dictionaries(text.filter(lambda k: k != "$buf"), st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
                                      | st.floats(allow_nan=False) | text, max_size=4))
    msgs = [P.Frame(job_id=data.draw(text), index=data.draw(st.integers(0, 2**31)), image=arr),
            P.Done(job_id="j", num_frames=data.draw(st.integers(0, 10)), stats=stats),
            P.Progress(job_id="j", stage=data.draw(text), step=1, total=2,
                       eta_s=data.draw(st.floats(allow_nan=False)))]
    for m in msgs:
        back = P.decode(P.encode(m))
        if isinstance(m, P.Frame):  # the wire is little endian: big-endian arrays arrive swapped
            m.image = m.image.astype(m.image.dtype.newbyteorder("<"))
        assert back == m


def test_encode_refuses_the_buffer_marker_as_a_map_key():
    """A free-form map (stats) with the key "$buf" would decode as a buffer reference: refused
    when encoding, with the key named, rather than sent and refused by the peer."""
    with pytest.raises(ValueError, match=r"\$buf"):
        P.encode(P.Done(job_id="j", num_frames=1, stats={"$buf": None}))


def test_a_bad_mode_is_named_without_echoing_it_whole():
    for mode in (["draft"], "x" * 100_000):
        req = body_request(F=2)
        req.mode = mode
        with pytest.raises(P.ProtocolError) as e:
            P.validate_request(req, modes=("exact", "fast"))
        assert e.value.field == "mode" and len(str(e.value)) < 200, str(e.value)[:300]
