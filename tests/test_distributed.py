"""One generation over several processes (mimo/pipeline/distributed.py) on CPU with gloo: the
frames of N processes equal those of one process (same seed), in exact and fast mode, for clips
whose window count is not a multiple of N, clips of one window (some ranks idle), and scene
encodes / decodes split by chunks. Plus collective cancelling and ``mimo generate --gpus``."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from mimo.pipeline.pipeline import MimoPipeline
from mimo.pipeline.schedule import context_windows

H = W = 64
STEPS = 2
# name -> (frames, mode, context, overlap, windows per call (fast))
# Run by 3 processes: 2 and 4 windows (not multiples of 3; an idle rank), 1 window (two idle ranks),
# 3 fast-mode windows (one each).
CASES = {
    "exact_2_windows": (10, "exact", 8, 2, None),
    "exact_1_window": (5, "exact", 8, 2, None),
    "exact_4_windows": (10, "exact", 8, 5, None),  # frames in 3 windows: equal up to rounding
    "fast_3_windows": (16, "fast", 8, 2, 1),
}
WORLD = 3


def _inputs(frames: int):
    rng = np.random.default_rng(frames)
    char = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    codes = np.zeros((frames, H, W, 3), np.uint8)
    for i in range(frames):
        codes[i, 14:50, 10 + 2 * i % 30:30 + 2 * i % 30] = rng.integers(30, 256, 3)
    scene = rng.integers(0, 256, (frames, H, W, 3), dtype=np.uint8)  # every frame differs: 2+ chunks
    return char, codes, scene


def _generate(pipe, name):
    frames, mode, ctx, ovl, per_call = CASES[name]
    char, codes, scene = _inputs(frames)
    return pipe(char, codes, scene, height=H, width=W, num_inference_steps=STEPS, seed=7, mode=mode,
                context_frames=ctx, context_overlap=ovl, windows_per_call=per_call).frames


def _rank_main(weights: str, out_dir: str) -> None:
    """Runs in each spawned process: every case, then a cancel that only rank 1 sees."""
    from mimo.pipeline.distributed import Sharding, init_from_env
    from mimo.pipeline.job import JobCancelled

    torch.set_num_threads(1)
    init_from_env("cpu")
    pipe = MimoPipeline.from_pretrained(weights, device="cpu", dtype="fp32")
    pipe.sharding = Sharding()
    rank = pipe.sharding.rank
    results = {name: _generate(pipe, name) for name in CASES}
    polls = [0]

    def cancelled():  # only rank 1 is asked to stop, after a few collectives
        polls[0] += 1
        return rank == 1 and polls[0] > 3

    pipe.sharding = Sharding(cancelled=cancelled)
    try:
        _generate(pipe, "exact_4_windows")
        results["cancel"] = np.array(0)
    except JobCancelled:
        results["cancel"] = np.array(1)
    results["reduces"] = np.array(pipe.sharding.stats["reduces"])
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **results)


@pytest.fixture(scope="module")
def single(tiny_weights):
    """One process, one thread like each rank (so equal sums give equal bits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipe = MimoPipeline.from_pretrained(tiny_weights, device="cpu", dtype="fp32")
        return {name: _generate(pipe, name) for name in CASES}
    finally:
        torch.set_num_threads(threads)


def test_window_blocks_cover_every_window_once():
    """The split the ranks use: contiguous, disjoint, covering, sizes differing by at most one."""
    from mimo.pipeline.distributed import Sharding

    class _Fake(Sharding):  # only the arithmetic, no group
        def __init__(self, rank, world):
            self.rank, self.world = rank, world

    for count in range(0, 12):
        for world in range(1, 6):
            blocks = [list(_Fake(r, world).block(count)) for r in range(world)]
            assert [i for b in blocks for i in b] == list(range(count))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


@pytest.mark.slow
def test_n_processes_equal_one_process(tiny_weights, single, tmp_path):
    from mimo.pipeline.distributed import spawn

    spawn(_rank_main, (str(tiny_weights), str(tmp_path)), nprocs=WORLD)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(WORLD)]
    for name, (frames, mode, ctx, ovl, _) in CASES.items():
        windows = context_windows(frames, ctx, ovl, closed_loop=mode == "exact")
        ref = single[name]
        for r in ranks:  # every rank holds the whole video, identical across ranks
            np.testing.assert_array_equal(r[name], ranks[0][name])
        cover = max(sum(f in w for w in windows) for f in range(frames))
        if cover <= 2:  # a + b on every path: the same bits
            np.testing.assert_array_equal(ranks[0][name], ref, err_msg=name)
        else:
            np.testing.assert_allclose(ranks[0][name], ref, rtol=0, atol=1e-5, err_msg=name)
        assert np.abs(ref).max() > 0
    # a cancel seen by one rank stops every rank at the same collective
    assert all(int(r["cancel"]) == 1 for r in ranks)
    assert len({int(r["reduces"]) for r in ranks}) == 1


@pytest.mark.slow
def test_mimo_generate_gpus_2_on_cpu_matches_one_process(tiny_weights, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from mimo.cli import main

    char, codes, _ = _inputs(10)
    codes_dir = tmp_path / "codes"
    codes_dir.mkdir()
    for i, c in enumerate(codes):
        Image.fromarray(c).save(codes_dir / f"{i:04d}.png")
    Image.fromarray(char).save(tmp_path / "char.png")
    common = ["generate", "--weights", str(tiny_weights),
              "--character", str(tmp_path / "char.png"), "--codes", str(codes_dir), "--raw",
              "--steps", "2", "--context", "8", "--overlap", "2", "--device", "cpu", "--quiet"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the spawned processes' torch threads
    threads = torch.get_num_threads()
    outs = {}
    try:
        torch.set_num_threads(1)  # this process runs --gpus 1 like each rank: one thread
        for gpus in (1, 2):
            npy = tmp_path / f"out{gpus}.npy"
            code = main(common + ["--gpus", str(gpus), "--out", str(tmp_path / f"out{gpus}"),
                                  "--out-npy", str(npy)])
            assert code == 0, capsys.readouterr().err[-3000:]
            outs[gpus] = np.load(npy)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(outs[2], outs[1], rtol=0, atol=1e-6)
    assert len(list((tmp_path / "out2").glob("*.png"))) == 10
