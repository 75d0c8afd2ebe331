"""`make demo`: the product end to end on embedded defaults, no weights and no GPU needed.

1. Starts `mimo-server` on 127.0.0.1 (a free port) with the preview backend and, on the CPU, the
   MIMO backend with the shipped tiny model (examples/tiny_mimo: a MIMO trained from scratch on
   synthetic data, see its README); or only the MIMO backend when MIMO_WEIGHTS=DIR is set.
2. Runs headless Blender (the `bpy` wheel) in its own process (examples/demo_blender.py): the
   add-on is installed from its built zip (dist/, built when missing or stale) into a temporary
   user folder; a scene (ground, a pillar that crosses in front of the body, a sun) gets the open
   body, the example walk (Import Motion), an animated camera and the example character; scene
   plate and occlusion are on; Generate streams the shot to the server and the frames come back
   into the sequencer of demo_out/demo.blend. With the tiny model, Generate runs a second time on
   the MIMO backend (a few steps, small ROI crops): a real generation, a second strip.
3. Renders the motion codes of exactly that request (its bodies and camera, saved as shot.npz)
   with `mimo codes`, and the example walk from the CLI alone with `mimo generate` (cli.mp4).
4. Writes a contact sheet: motion codes / scene plate with the occlusion mask / returned frames
   (/ the tiny MIMO's frames).

    python examples/demo.py [--out DIR] [--size PX] [--frames N] [--step S] [--steps N]
                            [--mimo-steps N] [--mimo-roi PX] [--no-mimo]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TINY_MIMO = EXAMPLES / "tiny_mimo"
BIN = pathlib.Path(sys.executable).parent
MARKER = ".mimo-demo-output"
SERVER_START_S = 120  # loading MIMO weights can take a while; the preview backend starts in ~2 s
#: Blender's per-render log lines ("00:02.01  render | Saved: ...", "Fra:1 Mem:..."; headless
#: Workbench also reports a harmless EGL_BAD_MATCH once per context)
RENDER_NOISE = re.compile(r"^(\d\d:\d\d\.\d+\s+render\s|Fra:\d+ |Info: Saved |EGL Error )")


class Stages:
    """Prints each stage with its own duration; keeps them for the summary."""

    def __init__(self):
        self.t0 = self.last = time.perf_counter()
        self.rows: list[tuple[str, float]] = []

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.rows.append((name, now - self.last))
        print(f"  [{now - self.t0:6.1f} s] {name} ({now - self.last:.1f} s)", flush=True)
        self.last = now


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="mimo-blender end-to-end demo (see the module docstring)")
    p.add_argument("--out", default=str(ROOT / "demo_out"),
                   help="output folder (replaced when it holds an earlier demo's output; any other "
                        "non-empty folder is refused)")
    p.add_argument("--size", type=int, default=256, help="square output size (multiple of 8)")
    p.add_argument("--frames", type=int, default=0, help="first N frames of the walk (0: all 39)")
    p.add_argument("--step", type=int, default=1, help="generate every S-th scene frame")
    p.add_argument("--steps", type=int, default=25, help="sampling steps of the MIMO backend")
    p.add_argument("--mimo-steps", type=int, default=4,
                   help="sampling steps of the second Generate, on the tiny MIMO (default 4)")
    p.add_argument("--mimo-roi", type=int, default=128,
                   help="ROI crop side of that job (default 128, the tiny model's training size)")
    p.add_argument("--no-mimo", action="store_true", help="skip the tiny MIMO's Generate")
    a = p.parse_args(argv)
    if a.mimo_steps < 1:
        p.error(f"--mimo-steps: expected at least 1, got {a.mimo_steps}")
    if a.mimo_roi < 64 or a.mimo_roi % 8:
        p.error(f"--mimo-roi: expected a multiple of 8, at least 64, got {a.mimo_roi}")
    if a.size < 16 or a.size % 8:
        p.error(f"--size: expected a multiple of 8, at least 16, got {a.size}")
    if a.frames < 0:
        p.error(f"--frames: expected 0 (all) or a positive count, got {a.frames}")
    if a.step < 1:
        p.error(f"--step: expected at least 1, got {a.step}")
    if a.steps < 1:
        p.error(f"--steps: expected at least 1, got {a.steps}")
    return a


def addon_zip() -> pathlib.Path:
    """dist/mimo_blender-<version>.zip, (re)built when missing or older than any add-on source."""
    sys.path.insert(0, str(ROOT))
    from blender_addon import build

    version = re.search(r'(?m)^version = "([^"]+)"',
                        (ROOT / "blender_addon" / "blender_manifest.toml").read_text())[1]
    zpath = ROOT / "dist" / f"mimo_blender-{version}.zip"
    sources = [p for p in (ROOT / "blender_addon").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    sources += [ROOT / s for s in build.VENDOR.values()]
    if zpath.exists() and zpath.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return zpath
    try:
        return pathlib.Path(build.build(str(ROOT / "dist"), str(ROOT / "build" / "addon-wheels")))
    except build.WheelFetchError as exc:
        raise SystemExit(f"demo: cannot build the add-on zip (`make addon` needs PyPI once): {exc}") from exc


def start_server(backends: list[str], weights: str | None, log_path: pathlib.Path, device: str | None = None):
    """mimo-server on 127.0.0.1, port chosen by the OS; returns (process, address)."""
    cmd = [str(BIN / "mimo-server"), "serve", "--bind", "tcp://127.0.0.1:0"]
    for backend in backends:
        cmd += ["--backend", backend]
    if weights:
        cmd += ["--weights", weights]
    if device:
        cmd += ["--device", device]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    first: list[str] = []  # "mimo-server listening on tcp://127.0.0.1:PORT"
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(SERVER_START_S)
    line = first[0] if first else f"no answer within {SERVER_START_S} s"
    m = re.search(r"tcp://127\.0\.0\.1:\d+", line)
    if not m:
        proc.kill()
        raise SystemExit(f"demo: mimo-server did not start ({line.strip()!r}); see {log_path}")
    threading.Thread(target=lambda: shutil.copyfileobj(proc.stdout, log), daemon=True).start()
    return proc, m.group(0)


def run_blender(args, address: str, zpath: pathlib.Path, out: pathlib.Path, backend: str,
                tiny: bool = False) -> dict:
    """examples/demo_blender.py in a fresh process with a throw-away Blender user folder."""
    with tempfile.TemporaryDirectory(prefix="mimo-demo-blender-") as res:
        env = {**os.environ, "BLENDER_USER_RESOURCES": res}
        cmd = [sys.executable, str(EXAMPLES / "demo_blender.py"), "--zip", str(zpath), "--server", address,
               "--character", str(EXAMPLES / "character.png"), "--motion", str(EXAMPLES / "motions" / "walk.npz"),
               "--out", str(out), "--size", str(args.size), "--frames", str(args.frames),
               "--step", str(args.step), "--steps", str(args.steps), "--backend", backend,
               "--timeout", "7200" if backend == "mimo" else "900"]  # MIMO on a CPU takes long
        if tiny:
            cmd += ["--mimo-steps", str(args.mimo_steps), "--mimo-roi", str(args.mimo_roi)]
        with open(out / "blender.log", "w") as log:
            proc = subprocess.Popen(cmd, env=env, cwd=str(out), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            try:
                for line in proc.stdout:  # the demo's own lines; Blender's render chatter only in the log
                    log.write(line)
                    if not RENDER_NOISE.match(line):
                        print(line, end="", flush=True)
                rc = proc.wait(timeout=60)
            finally:
                if proc.poll() is None:  # interrupted: never leave a Blender behind
                    proc.kill()
                    proc.wait()
    if rc != 0:
        raise SystemExit(f"demo: Blender exited with status {rc}; see {out / 'blender.log'}")
    return json.loads((out / "blender_result.json").read_text())


def save_shot(request_npz: pathlib.Path, shot_npz: pathlib.Path) -> dict[str, np.ndarray]:
    """The request's bodies + camera as a mimo.motion clip file (for `mimo codes`); returns the
    request arrays (scene plate (F, H, W, 3), occlusion (F, H, W), ...)."""
    from mimo.motion import BodyTrack, CameraTrack, MotionClip

    with np.load(request_npz) as z:
        req = {k: z[k] for k in z.files}
    fps = float(req["fps"])
    bodies = [BodyTrack(model=str(req["body_model"]), **{
        k.split(".", 1)[1]: v for k, v in req.items() if k.startswith(f"body{i}.")})
        for i in range(int(req["num_bodies"]))]
    camera = CameraTrack(K=req["K"], R=req["R"], t=req["t"], width=int(req["width"]),
                         height=int(req["height"]), fps=fps)
    MotionClip(fps=fps, bodies=bodies).save(shot_npz, camera=camera)
    return req


def tinted(plate: np.ndarray, occlusion: np.ndarray) -> np.ndarray:
    """The plate with the occlusion mask shown in magenta at 60 %. Shapes: (F,H,W,3), (F,H,W)."""
    a = (occlusion.astype(np.float32) / 255.0 * 0.6)[..., None]
    return np.round(plate * (1 - a) + np.array([255, 0, 255]) * a).astype(np.uint8)


def contact_sheet(rows: list[np.ndarray], path: pathlib.Path, must_show: int = 0, columns: int = 6,
                  tile: int = 160) -> None:
    """One row per (F,H,W,3) sequence, ``columns`` evenly spaced frames (the nearest one replaced
    by frame ``must_show``), tiles at most ``tile`` px."""
    F = min(len(r) for r in rows)
    idx = np.linspace(0, F - 1, min(columns, F)).round().astype(int)
    idx[np.abs(idx - must_show).argmin()] = must_show
    lines = []
    for frames in rows:
        tiles = [Image.fromarray(frames[i]) for i in idx]
        scale = min(1.0, tile / max(tiles[0].size))
        size = (round(tiles[0].width * scale), round(tiles[0].height * scale))
        lines.append(np.concatenate([np.asarray(t.resize(size, Image.LANCZOS)) for t in tiles], axis=1))
    Image.fromarray(np.concatenate(lines, axis=0)).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally: below (stops the server)
    from mimo.video import read_frames, write_frames

    st = Stages()
    weights = os.environ.get("MIMO_WEIGHTS")
    backend = "mimo" if weights else "preview"
    tiny = not weights and not args.no_mimo and (TINY_MIMO / "denoising_unet.pth").is_file()
    out = pathlib.Path(args.out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise SystemExit(f"demo: {out} is not empty and was not written by the demo; "
                         f"pick another --out (nothing was changed)")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by examples/demo.py; the next demo run replaces this folder\n")
    also = f" + tiny MIMO on the CPU ({args.mimo_steps} steps, ROI {args.mimo_roi}²)" if tiny else ""
    print(f"mimo-blender demo ({backend} backend{also}, {args.size}x{args.size}) -> {out}", flush=True)

    zpath = addon_zip()
    st.done(f"add-on zip {zpath.relative_to(ROOT)}")
    backends = ["preview", "mimo"] if tiny else [backend]
    server, address = start_server(backends, str(TINY_MIMO) if tiny else weights, out / "server.log",
                                   device="cpu" if tiny else None)
    try:
        st.done(f"mimo-server ({' + '.join(backends)}) listening on {address}")
        result = run_blender(args, address, zpath, out, backend, tiny)
        mimo_note = f", then {len(result['mimo']['files'])} from the tiny MIMO" if tiny else ""
        st.done(f"Blender: add-on installed, shot built, Generate -> {result['num_frames']} frames"
                f"{mimo_note} -> demo.blend")

        frames = read_frames(result["job_dir"])
        fps = 30.0 / args.step
        write_frames(out / "demo.mp4", frames, fps=fps)
        mimo_frames = None
        if tiny:
            mimo_frames = read_frames(result["mimo"]["job_dir"])
            write_frames(out / "demo_mimo.mp4", mimo_frames, fps=fps)
        req = save_shot(out / "request.npz", out / "shot.npz")
        subprocess.run([str(BIN / "mimo"), "codes", "--motion", str(out / "shot.npz"), "--device", "cpu",
                        "--out", str(out / "codes")], check=True)  # the camera (and size) stored in shot.npz
        codes = read_frames(out / "codes")
        write_frames(out / "codes.mp4", codes, fps=fps)
        st.done("demo.mp4 (returned frames); mimo codes of the sent bodies + camera -> codes/, codes.mp4")

        gen = [str(BIN / "mimo"), "generate", "--character", str(EXAMPLES / "character.png"), "--motion",
               str(EXAMPLES / "motions" / "walk.npz"), "--size", f"{args.size}x{args.size}",
               "--out", str(out / "cli.mp4"), "--quiet"]
        gen += ["--weights", weights, "--steps", str(args.steps)] if weights else ["--preview"]
        subprocess.run(gen, check=True)
        st.done("mimo generate (CLI only, example walk) -> cli.mp4")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    plate, occ = req["scene"], req["occlusion"]
    body = np.any(codes != 0, axis=-1)
    hidden = (body & (occ > 0)).sum(axis=(1, 2))
    rows = [codes, tinted(plate, occ), frames] + ([mimo_frames] if mimo_frames is not None else [])
    contact_sheet(rows, out / "contact_sheet.png", must_show=int(hidden.argmax()))
    st.done(f"contact_sheet.png (rows: motion codes / plate + occlusion in magenta / returned frames"
            f"{' / tiny MIMO frames' if tiny else ''}); "
            f"body covers {body.mean():.0%} of the frame on average, the pillar hides up to "
            f"{hidden.max()} body pixels (frame {hidden.argmax()})")

    print("\nstages:")
    for name, secs in st.rows:
        print(f"  {secs:7.1f} s  {name}")
    print(f"  {time.perf_counter() - st.t0:7.1f} s  total\n\noutputs in {out}:")
    names = ["demo.blend", "demo.mp4", "mimo/demo/"] + (["demo_mimo.mp4", "mimo/demo_mimo/"] if tiny else [])
    for name in names + ["codes/", "codes.mp4", "cli.mp4", "contact_sheet.png", "shot.npz", "request.npz",
                         "server.log", "blender.log"]:
        print(f"  {name}")
    strips = repr(result["strip"]) + (f" and {result['mimo']['strip']!r}" if tiny else "")
    print(f"open demo.blend in Blender 4.2+ (Video Sequencer shows strip {strips})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
