"""BVH (Biovision hierarchy) reader -> :class:`~.retarget.SourceSkeleton`. numpy only.

Rotations: each joint's rotation channels are applied in the order listed, as matrices multiplied
left to right (``Zrotation Xrotation Yrotation`` -> ``Rz @ Rx @ Ry``), degrees. Rest rotations are
the identity (BVH offsets are in the parent's frame). The root's position channels give the root
position per frame; position channels on other joints are ignored (rare; their offsets are used).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from .retarget import SourceSkeleton
from .rotations import euler_to_matrix


@dataclasses.dataclass
class BVH:
    """Parsed BVH.

    Shapes:
        offsets (N, 3), motion (F, C) with C = total channel count
    """

    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    channels: list[list[str]]
    frame_time: float
    motion: np.ndarray

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    def to_skeleton(self) -> SourceSkeleton:
        """Source skeleton for retargeting (units of the file).

        Shapes:
            -> rest_positions (N, 3), local_rotations (F, N, 3, 3), root_positions (F, 3)
        """
        N, F = len(self.names), self.motion.shape[0]
        rest = np.zeros((N, 3))
        for i, p in enumerate(self.parents):
            rest[i] = self.offsets[i] + (rest[p] if p >= 0 else 0.0)
        local = np.broadcast_to(np.eye(3), (F, N, 3, 3)).copy()
        root = np.broadcast_to(rest[0], (F, 3)).copy()
        col = 0
        for i, ch in enumerate(self.channels):
            vals = self.motion[:, col:col + len(ch)]
            col += len(ch)
            rot = [k for k, c in enumerate(ch) if c.lower().endswith("rotation")]
            pos = [k for k, c in enumerate(ch) if c.lower().endswith("position")]
            if rot:
                order = "".join(ch[k][0].upper() for k in rot)
                local[:, i] = euler_to_matrix(vals[:, rot], order)
            if pos and self.parents[i] < 0:
                for k in pos:
                    root[:, "XYZ".index(ch[k][0].upper())] = vals[:, k]
        return SourceSkeleton(names=list(self.names), parents=list(self.parents),
                              rest_positions=rest, local_rotations=local, root_positions=root)


def read_bvh(path: str | os.PathLike) -> BVH:
    """Parse a BVH file; ValueError naming what is malformed.

    Shapes:
        -> BVH with offsets (N, 3), motion (F, C)
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    return parse_bvh(text, source=os.fspath(path))


def parse_bvh(text: str, source: str = "<bvh>") -> BVH:
    """Parse BVH text (see :func:`read_bvh`).

    Shapes:
        -> BVH with offsets (N, 3), motion (F, C)
    """
    tokens = text.split()
    pos = 0

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"{source}: unexpected end of file")
        pos += 1
        return tokens[pos - 1]

    def expect(word: str) -> None:
        got = take()
        if got.upper() != word:
            raise ValueError(f"{source}: expected {word!r}, got {got!r}")

    names, parents, offsets, channels = [], [], [], []
    expect("HIERARCHY")
    stack: list[int] = []
    word = take()
    if word.upper() != "ROOT":
        raise ValueError(f"{source}: expected 'ROOT', got {word!r}")
    while True:
        if word.upper() in ("ROOT", "JOINT"):
            names.append(take())
            parents.append(stack[-1] if stack else -1)
            expect("{")
            expect("OFFSET")
            offsets.append([float(take()) for _ in range(3)])
            expect("CHANNELS")
            n = int(take())
            channels.append([take() for _ in range(n)])
            stack.append(len(names) - 1)
        elif word.upper() == "END":
            take()  # "Site"
            expect("{")
            expect("OFFSET")
            for _ in range(3):
                take()
            expect("}")
        elif word == "}":
            stack.pop()
            if not stack:
                break
        else:
            raise ValueError(f"{source}: unexpected {word!r} in HIERARCHY")
        word = take()
    expect("MOTION")
    expect("FRAMES:")
    frames = int(take())
    expect("FRAME")
    expect("TIME:")
    frame_time = float(take())
    count = sum(len(c) for c in channels)
    values = tokens[pos:pos + frames * count]
    if len(values) != frames * count:
        raise ValueError(f"{source}: expected {frames} frames of {count} channels, got "
                         f"{len(values)} values")
    motion = np.asarray(values, dtype=np.float64).reshape(frames, count)
    if not (frame_time > 0 and np.all(np.isfinite(motion))):
        raise ValueError(f"{source}: bad frame time {frame_time} or non-finite motion values")
    return BVH(names, parents, np.asarray(offsets), channels, frame_time, motion)


def write_bvh(bvh: BVH, path: str | os.PathLike) -> None:
    """Write ``bvh`` as text (End Sites are not kept); joints are written depth first, which
    may reorder them relative to ``bvh.names`` (motion columns are reordered to match)."""
    lines = ["HIERARCHY"]
    children = {i: [k for k, p in enumerate(bvh.parents) if p == i] for i in range(len(bvh.names))}

    def emit(i: int, depth: int) -> None:
        ind = "  " * depth
        kind = "ROOT" if bvh.parents[i] < 0 else "JOINT"
        lines.append(f"{ind}{kind} {bvh.names[i]}")
        lines.append(f"{ind}{{")
        lines.append(f"{ind}  OFFSET " + " ".join(f"{v:.6f}" for v in bvh.offsets[i]))
        lines.append(f"{ind}  CHANNELS {len(bvh.channels[i])} " + " ".join(bvh.channels[i]))
        for c in children[i]:
            emit(c, depth + 1)
        lines.append(f"{ind}}}")

    emit(0, 0)
    # motion columns follow the order joints appear in the hierarchy (depth first)
    order: list[int] = []
    todo = [0]
    while todo:
        i = todo.pop()
        order.append(i)
        todo.extend(reversed(children[i]))
    start = np.cumsum([0] + [len(c) for c in bvh.channels])
    cols = np.concatenate([np.arange(start[i], start[i + 1]) for i in order])
    lines += ["MOTION", f"Frames: {bvh.motion.shape[0]}", f"Frame Time: {bvh.frame_time:.8f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in bvh.motion[:, cols]]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
