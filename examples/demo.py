"""`make demo`: the product end to end on embedded defaults, no weights and no GPU needed.

1. Starts `mimo-server` on 127.0.0.1 (a free port) with the preview backend, or the MIMO backend
   when MIMO_WEIGHTS=DIR is set.
2. Sends it the example walk (real mocap, examples/motions/walk.npz) on the open body with a
   camera that frames the motion, and a character image, exactly as the Blender add-on does
   (server.client over ZeroMQ); the server renders the motion codes and streams frames back.
3. Renders the same clip's motion codes with `mimo codes`, and the same video with
   `mimo generate` from the CLI alone.
4. Writes demo_out/: demo.mp4 (server frames), frames/, codes.mp4, cli.mp4, contact_sheet.png.

The character image is drawn here (a plain figure on white); use your own with the CLI.
The full Blender path (add-on -> server -> VSE) is exercised by tests/blender/test_generate.py.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
from PIL import Image, ImageDraw

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "demo_out"
SIZE = 256


def _stage(name: str, t0: float) -> float:
    now = time.perf_counter()
    print(f"  [{now - t0:6.1f} s] {name}")
    return now


def character_image(path: pathlib.Path) -> bytes:
    """A simple figure on white (RGB, 384x512), saved to ``path``; returns PNG bytes."""
    img = Image.new("RGB", (384, 512), "white")
    d = ImageDraw.Draw(img)
    d.ellipse((152, 40, 232, 120), fill=(224, 180, 150))          # head
    d.rectangle((140, 125, 244, 290), fill=(40, 90, 170))        # shirt
    d.rectangle((100, 130, 140, 270), fill=(40, 90, 170))        # arms
    d.rectangle((244, 130, 284, 270), fill=(40, 90, 170))
    d.rectangle((145, 290, 190, 470), fill=(50, 50, 60))         # trousers
    d.rectangle((194, 290, 239, 470), fill=(50, 50, 60))
    img.save(path)
    return path.read_bytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def contact_sheet(rows: list[np.ndarray], path: pathlib.Path, columns: int = 6) -> None:
    """One row per (F,H,W,3) sequence, ``columns`` evenly spaced frames each."""
    tiles = []
    for frames in rows:
        idx = np.linspace(0, len(frames) - 1, columns).round().astype(int)
        tiles.append(np.concatenate([frames[i] for i in idx], axis=1))
    Image.fromarray(np.concatenate(tiles, axis=0)).save(path)


def main() -> int:
    from mimo.body import load_body
    from mimo.codes.clip import auto_camera_track
    from mimo.motion import MotionClip
    from mimo.video import read_frames, write_frames
    from server import protocol as P
    from server.client import Client

    t0 = last = time.perf_counter()
    weights = os.environ.get("MIMO_WEIGHTS")
    backend = "mimo" if weights else "preview"
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    bindir = pathlib.Path(sys.executable).parent
    print(f"mimo-blender demo ({backend} backend, {SIZE}x{SIZE})")

    clip_path = ROOT / "examples" / "motions" / "walk.npz"
    clip = MotionClip.load(clip_path)
    body = load_body("open")
    camera = auto_camera_track(clip, body, SIZE, SIZE)
    char_png = character_image(OUT / "character.png")
    last = _stage(f"loaded {clip_path.name}: {clip.num_frames} frames at {clip.fps:g} fps", t0)

    address = f"tcp://127.0.0.1:{free_port()}"
    cmd = [str(bindir / "mimo-server"), "serve", "--bind", address, "--backend", backend]
    if weights:
        cmd += ["--weights", weights]
    server = subprocess.Popen(cmd)
    try:
        with Client(address, timeout=120) as client:
            caps = client.hello()
            last = _stage(f"mimo-server up at {address}: backends {caps.backends}", t0)
            b = clip.bodies[0]
            req = P.GenerateRequest(
                character=char_png, width=SIZE, height=SIZE, fps=clip.fps, backend=backend,
                body_model="open", steps=25 if weights else 1,
                bodies=[P.BodyParams(global_orient=b.global_orient, body_pose=b.body_pose,
                                     transl=b.transl,
                                     betas=b.betas if b.betas.size else np.zeros(body.num_betas))],
                camera=P.CameraTrack(K=camera.K, R=camera.R, t=camera.t, width=SIZE, height=SIZE))
            frames, stats = client.generate(req, timeout=3600)
        last = _stage(f"server streamed {len(frames)} frames back ({stats})", t0)
    finally:
        server.terminate()
        server.wait(timeout=30)
    write_frames(OUT / "frames", frames, fps=clip.fps)
    write_frames(OUT / "demo.mp4", frames, fps=clip.fps)
    last = _stage("wrote demo_out/frames/ and demo_out/demo.mp4", t0)

    subprocess.run([str(bindir / "mimo"), "codes", "--motion", str(clip_path), "--auto-camera",
                    "--size", f"{SIZE}x{SIZE}", "--device", "cpu", "--out", str(OUT / "codes.mp4")],
                   check=True)
    codes = read_frames(OUT / "codes.mp4")
    last = _stage("mimo codes -> demo_out/codes.mp4", t0)

    gen = [str(bindir / "mimo"), "generate", "--character", str(OUT / "character.png"),
           "--motion", str(clip_path), "--size", f"{SIZE}x{SIZE}", "--out", str(OUT / "cli.mp4"),
           "--quiet"]
    gen += ["--weights", weights] if weights else ["--preview"]
    subprocess.run(gen, check=True)
    last = _stage("mimo generate -> demo_out/cli.mp4", t0)

    contact_sheet([codes, frames], OUT / "contact_sheet.png")
    moving = float(np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean())
    covered = float(np.any(frames[0] != 255, axis=-1).mean())
    _stage(f"contact sheet -> demo_out/contact_sheet.png (body covers {covered:.0%} of frame 0; "
           f"first vs last frame differ by {moving:.1f} levels on average)", t0)
    print(f"outputs in {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
