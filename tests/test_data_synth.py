"""The synthetic yardstick dataset (mimo.data.synth) and ``mimo dataset synth|check``."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mimo.data.layout import read_clip, write_clip
from mimo.data.synth import synth_dataset

TINY = {"clips": 2, "frames": 4, "size": 64, "characters": 2, "occluder_prob": 1.0}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """seed 0 rendered with 1 and with 2 torch threads, and seed 1."""
    root = tmp_path_factory.mktemp("synth")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        synth_dataset(root / "a", seed=0, **TINY)
        torch.set_num_threads(2)
        synth_dataset(root / "b", seed=0, **TINY)
    finally:
        torch.set_num_threads(threads)
    synth_dataset(root / "c", seed=1, **{**TINY, "clips": 1})
    return root


def test_same_seed_gives_identical_files_on_any_thread_count(datasets):
    a, b = _files(datasets / "a"), _files(datasets / "b")
    assert sorted(a) == sorted(b)
    assert {Path(k).name for k in a} >= {"frames.npy", "codes.npy", "scene.npy", "occlusion.npy",
                                          "character_0.png", "motion.npz", "meta.json"}
    for name in a:
        assert a[name] == b[name], name


def test_another_seed_gives_another_clip(datasets):
    a, c = _files(datasets / "a"), _files(datasets / "c")
    for name in ("frames.npy", "codes.npy", "scene.npy", "motion.npz", "character_0.png"):
        assert a[f"train_0000/{name}"] != c[f"train_0000/{name}"], name


def test_pictures_agree_with_the_codes(datasets):
    from mimo.body import load_body
    from mimo.codes import default_code_table, render_clip
    from mimo.data.synth import _render, pose_vertices
    from mimo.motion import load_npz

    body = load_body("open")
    for folder in sorted((datasets / "a").iterdir()):
        clip = read_clip(folder)
        motion, camera = load_npz(folder / "motion.npz")
        verts = pose_vertices(body, motion.bodies[0])
        codes, mask = _render(body, verts, default_code_table(body.rest_vertices.numpy()), camera, "cpu")
        np.testing.assert_array_equal(clip.codes, codes)
        assert mask.mean() > 0.03
        # what mimo codes / the server render for motion.npz (hands kept), but posed in float32
        # torch, whose last bits vary with the thread count: ~1 % of the pixels differ a little
        ref, ref_mask = render_clip(motion, camera, body, remove_hands=False)
        assert (ref_mask != mask).sum() <= 0.005 * mask.sum()
        assert (ref != codes).any(-1).sum() <= 0.02 * mask.sum()
        assert np.abs(ref.astype(int) - codes)[mask].mean() < 0.2
        frames, scene = clip.frames.astype(int), clip.scene.astype(int)
        occ = clip.occlusion
        # outside the body the ground truth is the scene plate; the plate has no body in it
        np.testing.assert_array_equal(frames[~mask], scene[~mask])
        visible = mask & (occ == 0)
        differs = np.abs(frames - scene).sum(-1) > 0
        assert differs[visible].mean() > 0.9
        assert not differs[~mask].any()
        # occluders: drawn over the body, their alpha is occlusion.npy, and they cross the body
        hidden = occ == 255
        assert hidden.any() and (hidden & mask).any()
        np.testing.assert_array_equal(frames[hidden], scene[hidden])
        assert clip.meta["character"].startswith("train-c") and len(clip.characters) == 1
        ref = clip.characters[0]
        assert ref.shape == (64, 64, 3) and (ref == 255).all(-1).mean() > 0.5  # on white
        assert not (ref[:, :3] != 255).any() and not (ref[:3] != 255).any()  # centred, margin


def test_numpy_posing_matches_the_body_model():
    from mimo.body import load_body
    from mimo.codes.render import pose_bodies
    from mimo.data.synth import MOTIONS_DIR, make_motion, pose_vertices

    body = load_body("open")
    rng = np.random.default_rng(3)
    motion, _ = make_motion(body, rng.normal(0, 1, 6), 5, 30.0, rng, MOTIONS_DIR)
    ref = pose_bodies(motion, [body], 0, 5)[0].double().numpy()
    assert np.abs(pose_vertices(body, motion.bodies[0]) - ref).max() < 2e-6


def test_read_clip_round_trips(datasets, tmp_path):
    folder = datasets / "a" / "train_0001"
    clip = read_clip(folder, mmap=False)
    write_clip(tmp_path / "copy", clip, motion_npz=(folder / "motion.npz").read_bytes())
    assert _files(tmp_path / "copy") == _files(folder)


def _main(argv, monkeypatch):
    import mimo.cli

    monkeypatch.setitem(mimo.cli.COMMANDS, "dataset", ("mimo.data.cli", "make or check a dataset"))
    return mimo.cli.main(argv)


def test_check_counts_a_good_dataset(datasets, monkeypatch, capsys):
    assert _main(["dataset", "check", str(datasets / "a")], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "2 clip(s) readable, 0 broken; 8 frames" in out
    assert "64x64 (2)" in out and "2 named characters" in out and "2 with occluded pixels" in out


def test_check_names_the_broken_file(datasets, tmp_path, monkeypatch, capsys):
    root = tmp_path / "ds"
    for name in ("ok", "truncated", "no_meta", "bad_shape"):
        shutil.copytree(datasets / "a" / "train_0000", root / name)
    data = (root / "truncated" / "frames.npy").read_bytes()
    (root / "truncated" / "frames.npy").write_bytes(data[: len(data) // 2])
    (root / "no_meta" / "meta.json").unlink()
    np.save(root / "bad_shape" / "scene.npy", np.zeros((4, 32, 64, 3), np.uint8))
    assert _main(["dataset", "check", str(root)], monkeypatch) == 1
    out = capsys.readouterr().out
    assert f"broken: {root / 'truncated' / 'frames.npy'}: not a readable .npy" in out
    assert f"broken: {root / 'no_meta' / 'meta.json'}: missing" in out
    assert f"broken: {root / 'bad_shape' / 'scene.npy'}: expected (4, 64, 64, 3)" in out
    assert "1 clip(s) readable, 3 broken" in out
    assert _main(["dataset", "check", str(root / "no_meta")], monkeypatch) == 1  # one clip folder
    assert "no_meta/meta.json: missing" in capsys.readouterr().out


def test_usage_errors(tmp_path, monkeypatch, capsys):
    assert _main(["dataset", "check", str(tmp_path / "missing")], monkeypatch) == 2
    assert "DIR:" in capsys.readouterr().err
    assert _main(["dataset", "check", str(tmp_path)], monkeypatch) == 2  # no clip folders
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    assert _main(["dataset", "synth", str(tmp_path / "out"), "--clips", "1"], monkeypatch) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _main(["dataset", "synth", str(tmp_path / "o2"), "--size", "8"], monkeypatch) == 2
    assert _main(["dataset", "synth", str(tmp_path / "o2"), "--occluders", "2"], monkeypatch) == 2
    # a folder that cannot be made is found before any rendering
    assert _main(["dataset", "synth", str(tmp_path / "out" / "x" / "sub"), "--clips", "1"], monkeypatch) == 2
    assert "OUT: cannot create" in capsys.readouterr().err


def test_synth_command_writes_and_reports(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ds"
    argv = ["dataset", "synth", str(out), "--clips", "1", "--frames", "1", "--size", "48x32", "--seed", "5"]
    assert _main(argv, monkeypatch) == 0
    captured = capsys.readouterr()
    assert "clip 1/1: train_0000" in captured.err
    assert "wrote 1 clips of 1 frames at 48x32" in captured.out
    clip = read_clip(out / "train_0000")
    assert clip.frames.shape == (1, 32, 48, 3) and clip.meta["source"] == "mimo dataset synth seed=5 split=train"
    assert _main(argv + ["--overwrite"], monkeypatch) == 0
