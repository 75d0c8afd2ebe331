"""Property: whatever arrives on the wire, the decoder (and the request validator behind it) raises
only ``ProtocolError`` -- never another exception type, which the server would answer as
``internal`` and the add-on's client would not catch.

The inputs are generated, deterministically from fixed seeds: every field of every message type
(and of nested bodies, cameras, buffer references) replaced by values of every wrong type, keys
deleted, absurd dtypes, shapes and sizes, truncated and extra frames, then random combinations of
those mutations. ``decode_strict`` is used so that the decoder's last-resort conversion of
unexpected exceptions cannot hide a missing check.
"""
from __future__ import annotations

import importlib
import pathlib
import random
import sys

import msgpack
import numpy as np
import pytest
from test_protocol import body_request, codes_request, every_message

from server import protocol as P

ROOT = pathlib.Path(__file__).resolve().parents[1]
N_INPUTS = 100_000

# Values of every wire type, including ones that look like buffer references.
WRONG = [
    None, True, False, 0, 1, -1, 7, 2**31, 2**63 - 1, -2**63, 2**64 - 1, 0.5, -1e300,
    float("nan"), float("inf"), "", "x", "é" * 3, "open", "<f4", "|O", b"", b"\x00\xff",
    [], [0], [1, 2, 3], [[[]]], ["a", None], {}, {"a": 1}, {"$buf": 0}, {"$buf": -1},
    {"$buf": 2**64 - 1}, {"$buf": "0"}, {"$buf": None}, {"$buf": 0, "dtype": ["<f4"], "shape": [1]},
    {"$buf": 0, "dtype": {"<f4": 1}, "shape": [1]}, {"$buf": 0, "dtype": None, "shape": [1]},
    {"$buf": 0, "dtype": "<f4", "shape": [0, 2**39, 2**39]},
    {"$buf": 0, "dtype": "|u1", "shape": [0, 2**40 - 1, 2**40 - 1, 3]},
    {"$buf": 0, "dtype": "<f8", "shape": [2**63]}, {"$buf": 0, "dtype": "<f4", "shape": [-1]},
    {"$buf": 0, "dtype": "<f4", "shape": "abc"}, {"$buf": 0, "dtype": "<f4", "shape": [1.5]},
    {"$buf": 0, "dtype": "<f4", "shape": {"a": 1}}, {"$buf": 0, "dtype": "<f4", "shape": [1] * 9},
    {"$buf": 0, "dtype": "<f4", "shape": [True]}, {"$buf": 0, "dtype": "<f4", "shape": None},
    {"$buf": 0, "dtype": "<f4", "shape": []}, {"$buf": 0, "dtype": "|u1", "shape": [0]},
    {"$buf": 0, "dtype": "<f8", "shape": [1, 3]}, {"$buf": 0, "dtype": "|b1", "shape": [2, 3, 3]},
    {"$buf": 0, "dtype": "<f4", "shape": [0, 3, 3]}, {"$buf": 0, "dtype": "<f4", "shape": [0, 21, 3]},
    {"$buf": 0, "dtype": ">f4", "shape": [1]}, {"$buf": 0, "dtype": "<c8", "shape": [1]},
    {"$buf": 0, "dtype": "<f4", "shape": [2**40, 0]},
    {"$buf": 0, "dtype": "|u1", "shape": [2**20, 2**20, 0, 2**10]},
    msgpack.ExtType(5, b"ext"), msgpack.Timestamp(1, 2),
]
# Extra buffers that the wrong values above may point at (an empty one and a few bytes).
EXTRA_BUFFERS = [b"", b"\x00" * 12, b"\x3f\x80\x00\x00" * 9]


def _load_vendored():
    """The add-on's copy (blender_addon/vendor/protocol.py and its sibling parts), imported as the
    add-on imports it."""
    sys.path.insert(0, str(ROOT))
    return importlib.import_module("blender_addon.vendor.protocol")


def _seed_messages() -> list[list[bytes]]:
    """Valid encoded messages of every type, plus requests exercising every optional field."""
    two_bodies = body_request(F=3)
    two_bodies.bodies.append(two_bodies.bodies[0])
    extra = [P.Submit(request=two_bodies, credit=2, tag="b"),
             P.Submit(request=codes_request(F=2, occlusion_source=np.zeros((2, 16, 32, 3), np.uint8)))]
    return [[bytes(f) for f in P.encode(m)] for m in every_message() + extra]


def _paths(node, prefix=()):
    """Every path (tuple of keys / indices) inside a decoded header."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def _replace(node, path, value, delete=False):
    """A copy of ``node`` with the value at ``path`` replaced (or deleted); copies only the spine."""
    if not path:
        return value
    key, rest = path[0], path[1:]
    new = dict(node) if isinstance(node, dict) else list(node)
    if not rest and delete:
        del new[key]
    else:
        new[key] = _replace(node[key], rest, value, delete)
    return new


def _structured_inputs(seeds):
    """Every path of every seed message replaced by every wrong value, or deleted; plus every
    wrong value under a new key and as the whole header."""
    for frames in seeds:
        header = msgpack.unpackb(frames[0], raw=False)
        bufs = frames[1:]
        for path in _paths(header):
            yield [msgpack.packb(_replace(header, path, None, delete=True)), *bufs]
            for value in WRONG:
                head = msgpack.packb(_replace(header, path, value), use_bin_type=True)
                yield [head, *bufs]
                yield [head, *bufs, *EXTRA_BUFFERS[:1]]
                if isinstance(value, dict) and "$buf" in value:  # zero-size arrays
                    yield [head, *(b"" for _ in bufs), *EXTRA_BUFFERS[:1]]
        for value in WRONG:
            yield [msgpack.packb({**header, "unknown_field": value}, use_bin_type=True), *bufs]
            yield [msgpack.packb(value, use_bin_type=True), *bufs]
        for n in range(len(frames)):  # truncated and extra frames
            yield frames[:n]
            yield frames[: n + 1] + EXTRA_BUFFERS


def _random_inputs(seeds, rng: random.Random):
    """Random combinations: several fields replaced at once, bytes flipped or cut, frames dropped,
    duplicated, reordered or added."""
    headers = [(msgpack.unpackb(f[0], raw=False), f[1:]) for f in seeds]
    all_paths = [list(_paths(h)) for h, _ in headers]
    while True:
        k = rng.randrange(len(headers))
        header, bufs = headers[k]
        for _ in range(rng.randint(1, 4)):
            path = rng.choice(all_paths[k])
            try:
                header = _replace(header, path, rng.choice(WRONG), delete=rng.random() < 0.1)
            except (KeyError, IndexError, TypeError):
                continue  # the path went away with an earlier mutation
        frames = [msgpack.packb(header, use_bin_type=True), *bufs]
        r = rng.random()
        if r < 0.2:
            i = rng.randrange(len(frames))
            cut = rng.randint(0, len(frames[i]))
            frames[i] = frames[i][:cut]
        elif r < 0.4:
            i = rng.randrange(len(frames))
            if frames[i]:
                j = rng.randrange(len(frames[i]))
                frames[i] = frames[i][:j] + bytes([frames[i][j] ^ rng.randint(1, 255)]) + frames[i][j + 1:]
        elif r < 0.5:
            rng.shuffle(frames)
        elif r < 0.6:
            frames = frames + rng.sample(EXTRA_BUFFERS, rng.randint(1, 3))
        elif r < 0.7 and len(frames) > 1:
            frames = frames[:rng.randint(1, len(frames) - 1)]
        yield frames


def _check_one(proto, frames, failures: list) -> None:
    try:
        msg = proto.decode_strict(frames)
        if isinstance(msg, proto.Submit):
            proto.validate_request(msg.request, None, {"open": 6, "smplh": 16})
        proto.encode(msg)  # whatever decodes can be sent on
    except proto.ProtocolError as exc:
        if exc.code not in proto.ERROR_CODES or not isinstance(exc.field, str):
            failures.append((frames, f"untyped ProtocolError {exc.code!r} {exc.field!r}"))
    except Exception as exc:
        failures.append((frames, f"{type(exc).__name__}: {exc}"))


@pytest.mark.parametrize("which", ["server", "addon"])
def test_decoder_raises_only_protocol_errors_on_100k_inputs(which):
    proto = P if which == "server" else _load_vendored()
    seeds = _seed_messages()
    failures: list = []
    count = 0
    for frames in _structured_inputs(seeds):
        _check_one(proto, frames, failures)
        count += 1
    structured = count
    for frames in _random_inputs(seeds, random.Random(1234)):
        if count >= N_INPUTS:
            break
        _check_one(proto, frames, failures)
        count += 1
    assert structured > 20_000 and count == N_INPUTS
    assert not failures, (f"{len(failures)} of {count} inputs raised something other than "
                          f"ProtocolError; first: {failures[:3]}")


@pytest.mark.parametrize("ref", [
    {"$buf": 0, "dtype": ["<f4"], "shape": [1]},
    {"$buf": 0, "dtype": {"<f4": 1}, "shape": [1]},
    {"$buf": 0, "dtype": "<f4", "shape": [0, 2**39, 2**39]},
    {"$buf": 0, "dtype": "|u1", "shape": [0, 2**40 - 1, 2**40 - 1, 3]},
])
def test_array_headers_of_absurd_dtype_or_shape_name_the_field(ref):
    head = {"v": list(P.PROTOCOL_VERSION), "type": "frame", "job_id": "j", "index": 0, "image": ref}
    with pytest.raises(P.ProtocolError) as e:
        P.decode_strict([msgpack.packb(head), b""])
    assert e.value.code == "invalid_field" and e.value.field == "image"


def test_request_fields_are_named_as_the_request_names_them():
    frames = [bytes(f) for f in P.encode(P.Submit(request=body_request()))]
    header = msgpack.unpackb(frames[0], raw=False)
    for path, field in [(("request", "width"), "width"),
                        (("request", "bodies", 0, "betas"), "bodies[0].betas"),
                        (("request", "camera", "K"), "camera.K"),
                        (("credit",), "credit")]:
        bad = msgpack.packb(_replace(header, path, "oops"))
        with pytest.raises(P.ProtocolError) as e:
            P.decode_strict([bad, *frames[1:]])
        assert e.value.field == field, path
    with pytest.raises(P.ProtocolError) as e:
        P.decode_strict([msgpack.packb({**header, "request": 3}), *frames[1:]])
    assert e.value.field == "request"
