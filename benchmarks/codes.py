"""Frames per second of the motion-code rasterizer (mimo.codes.render_codes) for the open body.

    .venv/bin/python benchmarks/codes.py --device cpu --sizes 512 784 --frames 32
    .venv/bin/python benchmarks/codes.py --device cuda --sizes 512 784 --frames 512
    .venv/bin/python benchmarks/codes.py --device cpu --opengl     # also time Mesa OSMesa OpenGL

The body is posed with a synthetic swinging motion (arms and legs), framed by auto_camera with
the official focal length (5000/256 · max(W, H)) so it fills the frame as in training data.
Every figure is printed with the device name. Timings are the best of --repeats runs, after one
warm-up run, with CUDA synchronised; "raster" excludes body skinning, "body+raster" includes it.
"""
from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import torch

from mimo.codes import auto_camera, default_code_table, render_codes


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def load_open_body(device):
    try:
        from mimo.body import load_body
    except ImportError:
        from mimo.body.loading import load_body
    return load_body("open", device=device)


def swing_motion(frames: int, num_body_joints: int = 21) -> dict[str, torch.Tensor]:
    """A walking-like swing of shoulders, elbows, hips and knees (SMPL-H body joint order)."""
    t = torch.arange(frames, dtype=torch.float32) / 30.0
    ph = 2 * math.pi * 1.0 * t
    pose = torch.zeros(frames, num_body_joints, 3)
    pose[:, 0, 0] = 0.5 * torch.sin(ph)   # left hip
    pose[:, 1, 0] = -0.5 * torch.sin(ph)  # right hip
    pose[:, 3, 0] = 0.6 * (1 - torch.cos(ph)) / 2  # left knee
    pose[:, 4, 0] = 0.6 * (1 + torch.cos(ph)) / 2  # right knee
    pose[:, 15, 2] = -1.1 + 0.2 * torch.sin(ph)  # left shoulder down from the T-pose
    pose[:, 16, 2] = 1.1 + 0.2 * torch.sin(ph)  # right shoulder
    pose[:, 17, 1] = -0.4 * (1 + torch.sin(ph))  # left elbow
    pose[:, 18, 1] = 0.4 * (1 - torch.sin(ph))  # right elbow
    go = torch.zeros(frames, 3)
    go[:, 1] = 0.4 * torch.sin(ph / 4)  # slow turn
    transl = torch.zeros(frames, 3)
    transl[:, 0] = 0.3 * torch.sin(ph / 2)
    return dict(global_orient=go, body_pose=pose, transl=transl)


def timed(fn, device, repeats: int) -> float:
    fn()  # warm-up
    best = math.inf
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 784], help="square image sides")
    ap.add_argument("--frames", type=int, default=None, help="frames per batch (default 32 cpu, 512 cuda)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--opengl", action="store_true", help="also time Mesa OSMesa OpenGL on one frame")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    frames = args.frames or (512 if device.type == "cuda" else 32)
    body = load_open_body(device)
    motion = {k: v.to(device) for k, v in swing_motion(frames).items()}
    verts = body(**motion).vertices
    faces = body.faces
    colors = torch.as_tensor(default_code_table(body.rest_vertices.cpu().numpy()), device=device)
    name = device_name(device)
    print(f"open body: V={body.num_vertices}, T={faces.shape[0]}, {frames} frames per batch; {name}")
    for S in args.sizes:
        K, R, t = (torch.as_tensor(x, dtype=torch.float32, device=device)
                   for x in auto_camera(verts.cpu().numpy(), S, S, num_frames=frames))
        codes, mask = render_codes(verts, faces, colors, K, R, t, S, S, return_mask=True)
        cover = float(mask.float().mean())
        dt = timed(lambda: render_codes(verts, faces, colors, K, R, t, S, S), device, args.repeats)
        dt_all = timed(lambda: render_codes(body(**motion).vertices, faces, colors, K, R, t, S, S),
                       device, args.repeats)
        print(f"{S}x{S}: raster {frames / dt:8.1f} frames/s ({dt / frames * 1e3:7.3f} ms/frame), "
              f"body+raster {frames / dt_all:8.1f} frames/s; body covers {cover:.1%} of pixels; {name}")
        if args.opengl:
            from mimo.codes import opengl

            if not opengl.available():
                print("  OSMesa OpenGL not available")
                continue
            v0 = verts[0].cpu().numpy()
            c0 = colors.cpu().numpy()
            K0, R0, t0 = (x[0].cpu().numpy().astype(np.float64) for x in (K, R, t))
            with opengl.OSMesaRenderer(S, S) as gl:
                dt_gl = timed(lambda: gl.render(v0, faces.cpu().numpy(), c0, K0, R0, t0),
                              torch.device("cpu"), max(args.repeats, 5))
                ref = gl.render(v0, faces.cpu().numpy(), c0, K0, R0, t0)
            ours = codes[0].cpu().numpy().astype(np.float64)
            mse = np.mean((ours - ref) ** 2)
            psnr = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
            print(f"  OSMesa OpenGL (Mesa, CPU, one frame): {dt_gl * 1e3:.2f} ms/frame; "
                  f"PSNR ours vs OpenGL {psnr:.1f} dB, pixels differing > 1: "
                  f"{int((np.abs(ours - ref).max(-1) > 1).sum())} of {int(mask[0].sum())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
