"""Every ``mimo`` command answers bad input with one line naming the argument and exit status 2
(a failed run: 1), never a traceback. One table of cases; a test checks that every command and
action of ``mimo`` has rows in it, so a new command cannot skip this."""
from __future__ import annotations

import argparse
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mimo.cli import build_parser, main
from mimo.motion import CameraTrack, save_npz

WALK = Path(__file__).parents[1] / "examples" / "motions" / "walk.npz"


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A folder of wrong, corrupt and odd files (names used by the table below)."""
    d = tmp_path_factory.mktemp("bad")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(d / "image.png")
    shutil.copy(d / "image.png", d / "image.npz")  # a PNG renamed: what the name says is not what it is
    (d / "truncated.npz").write_bytes(WALK.read_bytes()[:300])
    (d / "text.npz").write_text("not an archive\n")
    (d / "empty.npz").write_bytes(b"")
    with zipfile.ZipFile(d / "archive.bvh", "w") as z:  # a zip given as BVH
        z.writestr("take.bvh", "HIERARCHY\n")
    (d / "broken.bvh").write_text("HIERARCHY\nROOT Hips\n{\n")
    np.savez(d / "pickled.npz", objects=np.array([{"a": 1}], dtype=object))
    np.savez(d / "other.npz", something=np.zeros(3))
    save_npz(d / "camera_only.npz", camera=CameraTrack.look_at([0, 1, 3], [0, 1, 0], 64, 64, num_frames=2))
    (d / "folder").mkdir()
    (d / "a_file").write_text("x")  # an --out below a file cannot be written
    (d / "exists.mp4").write_bytes(b"x")
    (d / "exists.npz").write_bytes(b"x")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(d / "char.png")
    (d / "codes").mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(d / "codes" / f"frame_{i:05d}.png")
    (d / "two").mkdir()
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(d / "two" / f"frame_{i:05d}.png")
    (d / "weights").mkdir()
    (d / "weights" / "denoising_unet.pth").write_bytes(b"x")
    return d


OUT = "{tmp}/out"  # a fresh output folder per case
# (arguments, exit status, the argument the message must name, a phrase it must contain)
CASES = [
    # mimo (no command), mimo env
    ([], 2, "", "required: COMMAND"),
    (["bogus"], 2, "", "invalid choice"),
    (["env", "--bogus"], 2, "", "unrecognized arguments: --bogus"),
    # mimo codes
    (["codes", "--out", OUT], 2, "", "required: --motion"),
    (["codes", "--motion", "{bad}/missing.npz", "--out", OUT], 2, "--motion", "not found"),
    (["codes", "--motion", "{bad}/folder", "--out", OUT], 2, "--motion", "is a folder"),
    (["codes", "--motion", "{bad}/image.npz", "--out", OUT], 2, "--motion", "is a PNG image"),
    (["codes", "--motion", "{bad}/truncated.npz", "--out", OUT], 2, "--motion", "damaged zip archive"),
    (["codes", "--motion", "{bad}/text.npz", "--out", OUT], 2, "--motion", "is text"),
    (["codes", "--motion", "{bad}/empty.npz", "--out", OUT], 2, "--motion", "is an empty file"),
    (["codes", "--motion", "{bad}/pickled.npz", "--out", OUT], 2, "--motion", "pickled Python objects"),
    (["codes", "--motion", "{bad}/other.npz", "--out", OUT], 2, "--motion", "is not a mimo.motion"),
    (["codes", "--motion", "{bad}/camera_only.npz", "--out", OUT], 2, "--motion", "no motion clip"),
    (["codes", "--motion", "{walk}", "--camera", "{bad}/image.png", "--out", OUT], 2, "--camera", "PNG image"),
    (["codes", "--motion", "{walk}", "--camera", "{walk}", "--out", OUT], 2, "--camera", "no camera track"),
    (["codes", "--motion", "{walk}", "--codes", "{bad}/image.png", "--out", OUT], 2, "--codes", "PNG image"),
    (["codes", "--motion", "{walk}", "--body", "smplx", "--out", OUT], 2, "--body", "licensed"),
    (["codes", "--motion", "{walk}", "--body", "{bad}/missing.pkl", "--out", OUT], 2, "--body", "does not exist"),
    (["codes", "--motion", "{walk}", "--size", "0x0", "--out", OUT], 2, "--size", "8..8192"),
    (["codes", "--motion", "{walk}", "--size", "big", "--out", OUT], 2, "--size", "WIDTHxHEIGHT"),
    (["codes", "--motion", "{walk}", "--frames", "5", "--out", OUT], 2, "--frames", "START:END"),
    (["codes", "--motion", "{walk}", "--frames", "50:60", "--out", OUT], 2, "--frames", "selects no frame"),
    (["codes", "--motion", "{walk}", "--frames", "0:9:0", "--out", OUT], 2, "--frames", "STEP of at least 1"),
    (["codes", "--motion", "{walk}", "--device", "tpu", "--out", OUT], 2, "--device", "expected cpu, cuda"),
    (["codes", "--motion", "{walk}", "--out", "{bad}/exists.mp4"], 2, "--out", "--overwrite"),
    (["codes", "--motion", "{walk}", "--out", "{bad}/a_file/x.mp4"], 2, "--out", "cannot write"),
    (["codes", "--motion", "{walk}", "--out", "{tmp}/x.avi"], 2, "--out", "expected a .mp4 file or a folder"),
    (["codes", "--motion", "{walk}", "--size", "65x64", "--out", "{tmp}/x.mp4"], 2, "--out", "even width"),
    # mimo export
    (["export", "--out", OUT], 2, "", "required: --motion"),
    (["export", "--motion", "{bad}/image.npz", "--out", OUT], 2, "--motion", "is a PNG image"),
    (["export", "--motion", "{walk}", "--size", "0x0", "--out", OUT], 2, "--size", "8..8192"),
    (["export", "--motion", "{walk}", "--frames", "50:60", "--out", OUT], 2, "--frames", "selects no frame"),
    (["export", "--motion", "{walk}", "--out", "{bad}/exists.mp4"], 2, "--out", "is a file"),
    # mimo generate
    (["generate", "--preview", "--out", OUT], 2, "", "one of the arguments --motion --codes --template is required"),
    (["generate", "--preview", "--motion", "{bad}/image.npz", "--out", OUT], 2, "--motion", "PNG image"),
    (["generate", "--preview", "--motion", "{bad}/missing.npz", "--out", OUT], 2, "--motion", "not found"),
    (["generate", "--preview", "--motion", "{walk}", "--frames", "x:y", "--out", OUT], 2, "--frames", "START:END"),
    (["generate", "--preview", "--codes", "{bad}/missing", "--out", OUT], 2, "--codes", "not found"),
    (["generate", "--preview", "--codes", "{bad}/text.npz", "--out", OUT], 2, "--codes", "cannot read"),
    (["generate", "--preview", "--codes", "{bad}/folder", "--out", OUT], 2, "--codes", "holds no image frames"),
    (["generate", "--preview", "--template", "{bad}/folder", "--out", OUT], 2, "--template", "lacks vid.mp4"),
    (["generate", "--preview", "--template", "{bad}/image.png", "--out", OUT], 2, "--template", "expected a template"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--scene", "{bad}/text.npz", "--out", OUT], 2, "--scene",
     "cannot read"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--scene", "{bad}/codes", "--occlusion", "{bad}/two",
      "--out", OUT], 2, "--occlusion", "expected 3 frames"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--occlusion", "{bad}/codes", "--out", OUT], 2,
     "--occlusion", "needs --scene"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--camera", "{walk}", "--out", OUT], 2, "--camera",
     "goes with --motion"),
    (["generate", "--weights", "{bad}/missing", "--character", "{bad}/char.png", "--codes", "{bad}/codes",
      "--out", OUT], 2, "--weights", "mimo weights download"),
    (["generate", "--weights", "{bad}/weights", "--character", "{bad}/char.png", "--codes", "{bad}/codes",
      "--device", "cpu", "--out", OUT], 2, "--weights", "mimo weights download"),
    (["generate", "--weights", "{bad}/weights", "--codes", "{bad}/codes", "--out", OUT], 2, "--character",
     "required with --weights"),
    (["generate", "--weights", "{bad}/weights", "--character", "{bad}/text.npz", "--codes", "{bad}/codes",
      "--out", OUT], 2, "--character", "cannot identify image"),
    (["generate", "--weights", "{bad}/weights", "--character", "{bad}/char.png", "--character-mask",
      "{bad}/image.png", "--codes", "{bad}/codes", "--out", OUT], 2, "--character-mask", "expected 30x40"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--size", "0x0", "--out", OUT], 2, "--size", "8..8192"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--raw", "--size", "60x60", "--out", OUT], 2, "--size",
     "multiple of 8"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--steps", "0", "--out", OUT], 2, "--steps", "1..1000"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--gpus", "0", "--out", OUT], 2, "--gpus", "1..64"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--gpus", "2", "--out", OUT], 2, "--gpus",
     "nothing to split"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--cfg", "-1", "--out", OUT], 2, "--cfg", "[0, 50]"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--cfg", "nan", "--out", OUT], 2, "--cfg", "[0, 50]"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--seed", "-1", "--out", OUT], 2, "--seed", "integer in"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--context", "40", "--out", OUT], 2, "--context", "1..32"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--out", "{bad}/codes", "--overwrite"], 2, "--out",
     "also the --codes input"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--overlap", "24", "--out", OUT], 2, "--overlap",
     "fewer frames than a context window"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--roi-size", "100", "--out", OUT], 2, "--roi-size",
     "multiple of 8"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--fps", "0", "--out", OUT], 2, "--fps", "(0, 240]"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--mode", "slow", "--out", OUT], 2, "--mode",
     "invalid choice"),
    (["generate", "--preview", "--motion", "{walk}", "--device", "cuda:x", "--out", OUT], 2, "--device",
     "expected cpu, cuda"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--out", "{bad}/exists.mp4"], 2, "--out", "--overwrite"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--out", "{bad}/a_file/o"], 2, "--out", "cannot write"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--size", "101x77", "--out", "{tmp}/odd.mp4"], 2, "--out",
     "even width and height, got 101x77"),
    (["generate", "--preview", "--codes", "{bad}/codes", "--out", OUT, "--out-npy", "{tmp}/f.png"], 2, "--out-npy",
     "expected a .npy file"),
    # mimo motion info | convert | export-rig
    (["motion", "info", "{bad}/missing.npz"], 2, "path", "not found"),
    (["motion", "info", "{bad}/image.npz"], 2, "path", "PNG image"),
    (["motion", "info", "{bad}/truncated.npz"], 2, "path", "damaged zip archive"),
    (["motion", "info", "{bad}/pickled.npz"], 2, "path", "pickled Python objects"),
    (["motion", "convert", "{bad}/missing.npz", "{tmp}/o.npz"], 2, "input", "not found"),
    (["motion", "convert", "{bad}/image.png", "{tmp}/o.npz"], 2, "input", "PNG image"),
    (["motion", "convert", "{bad}/archive.bvh", "{tmp}/o.npz"], 2, "input", "is a zip archive, expected a BVH"),
    (["motion", "convert", "{bad}/broken.bvh", "{tmp}/o.npz"], 2, "input", ""),
    (["motion", "convert", "{bad}/other.npz", "{tmp}/o.npz"], 2, "input", "cannot tell what"),
    (["motion", "convert", "{bad}/other.npz", "{tmp}/o.npz", "--kind", "amass"], 2, "input", "missing from AMASS"),
    (["motion", "convert", "{walk}", "{tmp}/o.npz", "--kind", "hmr2"], 2, "input", "missing from SMPL parameters"),
    (["motion", "convert", "{walk}", "{tmp}/o.npz", "--fps", "0"], 2, "--fps", "(0, 1000]"),
    (["motion", "convert", "{walk}", "{tmp}/o.npz", "--fps", "fast"], 2, "--fps", "expected a number"),
    (["motion", "convert", "{walk}", "{tmp}/o.npz", "--frames", "40:"], 2, "--frames", "selects no frame"),
    (["motion", "convert", "{walk}", "{tmp}/o.npz", "--size", "1x1"], 2, "--size", "8..8192"),
    (["motion", "convert", "{walk}", "{tmp}/o.npz", "--preset", "maya"], 2, "--preset", "invalid choice"),
    (["motion", "convert", "{walk}", "{bad}/exists.npz"], 2, "output", "--overwrite"),
    (["motion", "convert", "{walk}", "{tmp}/o.bvh"], 2, "output", "expected a .npz file"),
    (["motion", "convert", "{walk}", "{bad}/a_file/o.npz"], 2, "output", "cannot write"),
    (["motion", "export-rig", "{bad}/exists.npz"], 2, "output", "--overwrite"),
    (["motion", "export-rig", "{tmp}/rig.npz", "--body", "smpl"], 2, "--body", "licensed"),
    # mimo weights check | download | make-tiny
    (["weights", "check", "{bad}/missing"], 2, "dir", "not found"),
    (["weights", "check", "{bad}/a_file"], 2, "dir", "is a file"),
    (["weights", "download", "{bad}/a_file", "--dry-run"], 2, "dir", "is a file"),
    (["weights", "download", OUT, "--inpaint-model", "a/b", "--dry-run"], 2, "--inpaint-model", "--decompose"),
    (["weights", "make-tiny", "{bad}/weights"], 2, "dir", "--overwrite"),
    (["weights", "make-tiny", "{bad}/a_file"], 2, "dir", "is a file"),
    (["weights", "make-tiny", "{tmp}/w", "--seed", "-3"], 2, "--seed", "integer in"),
    # mimo dataset synth | check
    (["dataset", "synth", "{bad}/a_file"], 2, "OUT", "is not a folder"),
    (["dataset", "synth", "{bad}/weights"], 2, "OUT", "is not empty"),
    (["dataset", "synth", OUT, "--size", "4"], 2, "--size", "16..2048"),
    (["dataset", "synth", OUT, "--occluders", "2"], 2, "--occluders", "[0, 1]"),
    (["dataset", "check", "{bad}/missing"], 2, "DIR", "is not a folder"),
    (["dataset", "check", "{bad}/folder"], 2, "DIR", "holds no clip folders"),
    # mimo decompose
    (["decompose", "{bad}/missing.mp4", "--out", OUT], 2, "video", "not found"),
    (["decompose", "{bad}/folder", "--out", OUT], 2, "video", "is a folder"),
    (["decompose", "{bad}/image.png", "--out", OUT, "--detector", "{bad}/weights", "--segmenter", "{bad}/weights",
      "--pose", "{bad}/weights", "--depth", "{bad}/weights"], 2, "--detector", "no config.json"),
    (["decompose", "{bad}/exists.mp4", "--out", "{bad}/a_file"], 2, "--out", "not a folder"),
    (["decompose", "{bad}/exists.mp4", "--out", "{bad}"], 2, "--out", "--overwrite"),
    (["decompose", "{bad}/exists.mp4", "--out", OUT, "--fov", "0"], 2, "--fov", "(0, 179]"),
    (["decompose", "{bad}/exists.mp4", "--out", OUT, "--track", "-1"], 2, "--track", "integer in"),
    (["decompose", "{bad}/exists.mp4", "--out", OUT, "--device", "tpu"], 2, "--device", "expected cpu, cuda"),
    (["decompose", "{bad}/exists.mp4", "--out", OUT, "--body", "smplx"], 2, "--body", "licensed"),
    (["decompose", "{bad}/exists.mp4", "--out", OUT, "--models", "{bad}/missing"], 2, "--models", "not found"),
    (["decompose", "{bad}/exists.mp4", "--out", OUT, "--models", "{bad}/folder"], 2, "--detector",
     "mimo weights download"),
    (["decompose", "{bad}/exists.mp4", "--out", OUT, "--detector", "{bad}/folder"], 2, "--detector",
     "no config.json"),
    (["decompose", "{bad}/exists.mp4", "--out", OUT, "--inpaint-model", "{bad}/folder"], 2, "--inpaint-model",
     "no model_index.json"),
    (["decompose", "{bad}/exists.mp4", "--out", OUT, "--inpaint-model", "nobody/no-such-inpainter"], 2,
     "--inpaint-model", "mimo weights download DIR --decompose --inpaint-model ID"),
    (["decompose", "{bad}/exists.mp4", "--out", OUT, "--inpaint-model", "{bad}/folder", "--moving-camera"], 2,
     "--inpaint-model", "no plate"),
    (["decompose", "{bad}/exists.mp4", "--out", OUT, "--inpaint-steps", "0"], 2, "--inpaint-steps", "integer in"),
    # mimo train
    (["train", "{bad}/missing", "--out", OUT], 2, "data", "not a folder"),
    (["train", "{bad}/folder", "--out", OUT, "--size", "60"], 2, "--size", "multiple of 8"),
    (["train", "{bad}/folder", "--out", "{bad}/a_file"], 2, "--out", "not a folder"),
    (["train", "{bad}/folder", "--out", OUT, "--steps", "0"], 2, "--steps", "at least 1"),
]


def _ids():
    return [" ".join(c[0][:2] + [c[2] or "-", c[3][:20]]) for c in CASES]


@pytest.mark.parametrize("argv, code, arg, phrase", CASES, ids=_ids())
def test_bad_input_is_one_line_naming_the_argument(bad, tmp_path, capsys, argv, code, arg, phrase):
    argv = [a.replace("{bad}", str(bad)).replace("{tmp}", str(tmp_path)).replace("{walk}", str(WALK))
            for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    command = _prog(argv)
    assert lines[0].startswith(f"{command}: error: {arg}" if arg else f"{command}: error: "), err
    assert phrase in lines[0], err
    assert "Traceback" not in err and "run with --verbose" not in err
    assert not (tmp_path / "out").exists()  # nothing was written


def _prog(argv: list[str]) -> str:
    """The command words of ``argv``: 'mimo', 'mimo codes', 'mimo motion info'."""
    commands = dict(_commands())
    words = ["mimo"]
    if argv and argv[0] in commands:
        words.append(argv[0])
        if len(argv) > 1 and argv[1] in commands[argv[0]]:
            words.append(argv[1])
    return " ".join(words)


def _commands() -> list[tuple[str, list[str]]]:
    """(command, [its actions]) for every command of ``mimo``."""
    parser = build_parser()
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, p in action.choices.items():
                nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
                out.append((name, list(nested[0].choices) if nested else []))
    return out


def test_every_command_and_action_has_bad_input_cases():
    covered = {tuple(c[0][:2]) for c in CASES} | {(c[0][0],) for c in CASES if c[0]}
    for command, actions in _commands():
        assert (command,) in covered, f"mimo {command} has no row in CASES"
        for action in actions:
            assert (command, action) in covered, f"mimo {command} {action} has no row in CASES"


def test_verbose_adds_the_traceback_and_keeps_the_exit_status(bad, tmp_path, capsys):
    argv = ["codes", "--motion", str(bad / "image.npz"), "--out", str(tmp_path / "o")]
    assert main(argv + ["--verbose"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("mimo codes: error: --motion:")
    assert main(["--verbose"] + argv) == 2  # before the command name too
    assert "Traceback" in capsys.readouterr().err


def test_an_unexpected_exception_is_one_line_with_a_hint(monkeypatch, capsys):
    import mimo.env

    monkeypatch.setattr(mimo.env, "run", lambda args: {}["boom"])
    assert main(["env"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "mimo env: error: KeyError: 'boom' (unexpected; run with --verbose for the traceback)"


def test_version(capsys):
    import mimo

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mimo {mimo.__version__}"


def test_download_offline_is_one_line_and_fast(tmp_path, monkeypatch, capsys):
    """No network here (or pretend there is none): one line, exit 1, no retries."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    assert main(["weights", "download", str(tmp_path / "w"), "--dry-run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mimo weights download: error: cannot reach https://")
    assert "Network is unreachable" in err[0]


def test_progress_lines_in_a_log_every_few_seconds():
    from mimo.progress import Progress

    now = [0.0]
    log = io.StringIO()  # not a terminal
    with Progress("denoise", 100, unit="step", stream=log, interval=5.0, clock=lambda: now[0]) as bar:
        for i in range(1, 101):
            now[0] = i * 0.25  # 25 s in all
            bar.update(i)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0] == "denoise: 20/100 steps (20%), 5.0 s"
    assert len(lines) == 5 and lines[-1] == "denoise: 100/100 steps (100%), 25.0 s"
    quiet = io.StringIO()
    with Progress("x", 3, stream=quiet, quiet=True, clock=lambda: now[0]) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""


def test_weights_check_reports_a_corrupt_file_on_one_line(bad, capsys):
    """`mimo weights check` is a report (exit 1 on any problem): each problem is one line."""
    assert main(["weights", "check", str(bad / "weights")]) == 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "denoising_unet.pth:" in line]
    assert len(lines) == 1 and "not a weights-only PyTorch file" in lines[0], out
    assert "Unsupported operand" in lines[0] and "missing file: pose_guider.pth" in out
