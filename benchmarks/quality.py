"""The yardstick: train a tiny MIMO from scratch on synthetic data and measure generated frames
against ground truth in dB. Nothing is asserted; every figure is printed with the device.

    python benchmarks/quality.py --device cuda --out runs/yardstick --minutes 9
    python benchmarks/quality.py --out runs/ys --fit-in 8.9 --export runs/ys/tiny_mimo  # one 10-min call
    python benchmarks/quality.py --out runs/ys --trained DIR --evals trained,fast       # measure DIR only
    python benchmarks/quality.py --device cpu --out /tmp/ys --minutes 0.6 --train-clips 2 \
        --test-clips 1 --frames 16 --size 64 --eval-frames 8 --batches 2,2,1   # smoke run

Recipe (deterministic from ``--seed``; the same command reproduces the figure up to GPU
non-determinism in training):

1. ``mimo dataset synth`` train split (``--train-clips`` clips of ``--frames`` frames at
   ``--size``², made in ``--synth-workers`` parts of seed ``1000 * seed + k``, each part with its
   own characters, up to 8) and test split (``--test-clips`` clips: new characters, motions and
   camera views from held-out yaw bins).
2. ``mimo train --preload`` from random tiny networks (``make_tiny`` with UNet widths
   ``--widths``, 32/48/56/56 by default: the real module tree, 18 MB in fp16), on one GPU, every
   clip in GPU memory and each batch prepared there (:mod:`mimo.data.preload`: the same items as
   ``MimoDataset``, bit for bit). The training time (``--minutes``, or what ``--fit-in`` leaves)
   is split over three stages (:data:`STAGES`): ``vae`` 20 % (the tiny VAE as an autoencoder,
   batch 32, lr 3e-4), ``image`` 55 % (stage 1, single frames, CLIP tower trained too, batch 64,
   lr 2e-4), ``motion`` 25 % (stage 2, 16-frame windows, batch 8, lr 1e-4).
3. On the first ``--eval-frames`` frames of every test clip, prepared as training prepares them
   (crop to the window's body box, padded square, resized), generate with the inference pipeline
   (25 DDIM steps, CFG 3.5, exact mode, 24-frame windows with overlap 4), composite the
   occlusion over the result as the backend does, and compare with the ground truth:
   PSNR of the whole frame and of the body (the body pixels of the codes, as the ROI rule finds
   them: luma > 10, closed and opened), SSIM (Gaussian 11x11,
   sigma 1.5, on luma), and a temporal error (RMS difference between the generated and the true
   frame-to-frame changes, in 8-bit levels). The same for the untrained networks and a trivial
   baseline (the reference image's figure pasted at the body's box over the scene).
4. The trained model again with one setting changed at a time: fast mode, 10 and 5 steps, 32-frame
   windows: the dB each costs.
5. Two references that need no generation: ``ceiling`` (the ground truth encoded and decoded by
   the trained VAE: the best any generation with this autoencoder can score) and ``scene`` (the
   scene plate alone, no person: what the whole-frame figures give for the background).

Writes ``OUT/quality.json`` and ``OUT/quality.png`` (rows: ground truth, trained, untrained,
trivial; a few frames of the first test clip).

Measured on one NVIDIA H100 80GB HBM3 (torch 2.11, fp32; the README's table and picture; the
trained weights ship as ``examples/tiny_mimo``), one 6.7-minute device call:

    python benchmarks/quality.py --out runs/ys --fit-in 6.0 --eval-reserve 1.4 --train-clips 48 \
        --synth-workers 16 --export runs/ys/tiny_mimo
        # datasets 33 s; training 4.06 min: vae 1334 steps of 32 (49 s, 40 it/s), image 299 steps
        # of 64 (134 s, 2.2-2.6 it/s), motion 311 steps of 8x16 frames (61 s, 5.8 it/s);
        # trained 15.32 dB (body 12.48), SSIM 0.578, temporal 32.5 (35 s to evaluate);
        # untrained 10.38 dB (body 9.52), SSIM 0.155, temporal 59.3;
        # paste 13.80 dB (body 6.79), SSIM 0.741, temporal 26.4. No time was left for the
        # ablations (they run only while --fit-in allows).

On CPU, the same test split (``--synth-workers 16``): VAE ceiling of that model 16.84 dB (body
14.07 dB), SSIM 0.713, temporal 11.7 -- below the paste baseline's SSIM, so that model cannot beat
paste on SSIM however long stage 1 and 2 train; the scene plate alone 22.46 dB (body 11.13),
SSIM 0.869, temporal 10.8. A stage-1 step of the tiny model is about 4,800 kernels (2,100
forward, 2,700 backward, counted with the profiler on CPU) whatever the batch, so a bigger batch
should be nearly free on a GPU (``benchmarks/train_profile.py`` measures it).

The second run (one NVIDIA H100 80GB HBM3; the first call ran out of time in stage 2, the second
resumed it with ``--minutes 6.52``; finished stages are kept):

    python benchmarks/quality.py --out runs/ys2 --fit-in 9.0 --eval-reserve 1.7 --train-clips 64 \
        --synth-workers 16 --vae-widths 48,48,48,48 --batches 64,256,16 --export runs/ys2/tiny_mimo
        # vae 965 steps of 64 (78 s), image 246 steps of 256 (216 s, 1.14 it/s: 2x the frames/s
        # of batch 64, not 4x), motion 332 steps of 16 (98 s); VAE ceiling 19.75 dB (body 14.99),
        # SSIM 0.759; trained 15.18 dB (body 11.97), SSIM 0.518, temporal 40.9 -- below the
        # shipped model; fast mode +0.01 dB, 10 steps +0.14 dB, 32-frame windows -0.12 dB.

The next run (owed): stage 1 at batch 64 for about 10 minutes over two calls on one warm machine,
``--extend`` resuming it from ``runs/ys3/image/state.pt``:

    python benchmarks/quality.py --out runs/ys3 --fit-in 9.3 --eval-reserve 0.3 --train-clips 64 \
        --synth-workers 16 --vae-widths 48,48,48,48 --batches 64,64,16 --shares 0.2,0.8,0.3 \
        --stop-after image
    python benchmarks/quality.py --out runs/ys3 --fit-in 9.3 --eval-reserve 2.5 --batches 64,64,16 \
        --shares 0.2,0.65,0.35 --extend image --export runs/ys3/tiny_mimo \
        --evals trained,untrained,trivial,scene,ceiling,fast,steps10,window32

Not yet measured: the ablations of the shipped model (``examples/tiny_mimo``), owed (a warm GPU, about 3 minutes):

    python benchmarks/quality.py --out runs/ys --trained examples/tiny_mimo --evals trained,fast,steps10,steps5,window32

Earlier, a wider model (``--widths 32,48,64,64``), items prepared by 12 loader processes, 16
minutes of training in all (stage 1 at 3.5 it/s, batch 48): trained 18.07 dB (body 12.27),
SSIM 0.687, temporal 22.2; its ablations: fast mode -0.00 dB, 10 steps +0.13 dB, 5 steps
+0.19 dB, 32-frame windows -0.50 dB (fewer steps scoring higher: the yardstick cannot yet see
what sampling steps buy in an undertrained model).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimo.data.dataset import MimoDataset
from mimo.data.synth import synth_dataset
from mimo.pipeline.pipeline import MimoPipeline
from mimo.train.trainer import TrainConfig, train

#: (stage, share of the training time, settings). Batches are prepared on the GPU (``preload``).
STAGES = (("vae", 0.20, dict(lr=3e-4, batch=32, frames=1)),
          ("image", 0.55, dict(lr=2e-4, batch=64, frames=1, warmup=100, train_image_encoder=True)),
          ("motion", 0.25, dict(lr=1e-4, batch=8, frames=16, warmup=50)))
EVALS = ("trained", "untrained", "trivial", "scene", "ceiling", "fast", "steps10", "steps5", "window32")
#: the evaluations that are not a setting of the trained model
BASE_EVALS = EVALS[:5]


def _u8(x: torch.Tensor) -> np.ndarray:
    """(3, N, S, S) in [-1, 1] -> (N, S, S, 3) uint8."""
    return np.rint((x.clamp(-1, 1) + 1) * 127.5).byte().permute(1, 2, 3, 0).numpy()


def test_windows(test_dir: Path, size: int, frames: int, seed: int) -> list[dict]:
    ds = MimoDataset(test_dir, num_frames=frames, size=size, seed=seed)
    out = []
    for clip in ds.clips:
        window = np.arange(frames)
        ref = clip.characters[0] if clip.characters else ds._reference(clip, window, np.random.default_rng(seed))
        item = ds.prepare(clip, window, ref)
        out.append({"truth": _u8(item["frames"]), "scene": _u8(item["scene"]),
                    "codes": np.rint(item["codes"].permute(1, 2, 3, 0).numpy() * 255).astype(np.uint8),
                    "occlusion": item["occlusion"].numpy(), "reference": _u8(item["reference"][:, None])[0],
                    "clip": clip.path})
    return out


def generate(pipe: MimoPipeline, w: dict, steps: int, mode: str, context: int, seed: int) -> np.ndarray:
    S = w["truth"].shape[1]
    frames = pipe(w["reference"], w["codes"], w["scene"], height=S, width=S, num_inference_steps=steps,
                  seed=seed, context_frames=min(context, len(w["codes"])),
                  context_overlap=min(4, min(context, len(w["codes"])) - 1), mode=mode).frames
    a = w["occlusion"][..., None]
    return np.rint(np.clip(frames * (1 - a) + w["scene"] / 255.0 * a, 0, 1) * 255).astype(np.uint8)


def trivial(w: dict) -> np.ndarray:
    """The reference's figure (non-white pixels' box) pasted at each frame's body box (the
    bounding box of the body pixels of the codes)."""
    from PIL import Image

    from mimo.pipeline.roi import human_mask

    ref = w["reference"]
    fig = np.argwhere((ref < 250).any(-1))
    y0, x0 = fig.min(0) if len(fig) else (0, 0)
    y1, x1 = fig.max(0) + 1 if len(fig) else ref.shape[:2]
    figure = ref[y0:y1, x0:x1]
    out = w["scene"].copy()
    for i, m in enumerate(human_mask(w["codes"])):
        ys, xs = np.nonzero(m)
        if len(ys) == 0:
            continue
        bx0, bx1, by0, by1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        patch = np.asarray(Image.fromarray(figure).resize((bx1 - bx0, by1 - by0), Image.BILINEAR))
        out[i, by0:by1, bx0:bx1] = patch
    a = w["occlusion"][..., None]
    return np.rint(out * (1 - a) + w["scene"] * a).astype(np.uint8)


def reconstruct(vae, w: dict, device) -> np.ndarray:
    """The ground truth through the trained VAE (encode to the posterior mean, decode): the best
    any generation with this autoencoder can score."""
    x = torch.from_numpy(w["truth"]).permute(0, 3, 1, 2).to(device, torch.float32) / 127.5 - 1
    with torch.no_grad():
        out = torch.cat([vae.decode(vae.encode(c).latent_dist.mean).sample for c in x.split(16)])
    return np.rint(((out.clamp(-1, 1) + 1) * 127.5).float().cpu().numpy()).astype(np.uint8).transpose(0, 2, 3, 1)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = d[mask].mean() if mask is not None else d.mean()
    return 10 * math.log10(255.0 ** 2 / max(float(mse), 1e-10))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM on luma with an 11x11 Gaussian window (sigma 1.5), 8-bit constants."""
    def luma(x):
        return torch.from_numpy(x.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))[:, None]

    x, y = luma(a), luma(b)
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5 ** 2))
    k = (g[:, None] * g[None]) / (g.sum() ** 2)
    k = k[None, None]
    f = lambda z: torch.nn.functional.conv2d(z, k)  # noqa: E731
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


def temporal_error(gen: np.ndarray, truth: np.ndarray) -> float:
    dg = np.diff(gen.astype(np.float64), axis=0)
    dt = np.diff(truth.astype(np.float64), axis=0)
    return float(np.sqrt(((dg - dt) ** 2).mean())) if len(dg) else 0.0


def score(windows: list[dict], outputs: list[np.ndarray]) -> dict:
    from mimo.pipeline.roi import human_mask

    rows = []
    for w, out in zip(windows, outputs):
        body = human_mask(w["codes"])
        rows.append([psnr(out, w["truth"]), psnr(out, w["truth"], body), ssim(out, w["truth"]),
                     temporal_error(out, w["truth"])])
    m = np.mean(rows, 0)
    return {"psnr": m[0], "psnr_body": m[1], "ssim": m[2], "temporal_error": m[3]}


def _synth_part(job) -> None:
    folder, split, seed, clips, frames, size = job
    torch.set_num_threads(1)
    synth_dataset(folder, seed=seed, clips=clips, frames=frames, size=size, split=split)


def make_split(out: Path, split: str, clips: int, args) -> None:
    """``clips`` synthetic clips in ``out/split``, made by ``--synth-workers`` processes: part k
    is ``synth_dataset(seed=1000 * seed + k)`` with its own characters (so the recipe does not
    depend on how fast each process runs), clips renamed ``<split>_<k>_<i>``."""
    import multiprocessing
    import shutil

    parts = max(1, min(args.synth_workers, clips))
    sizes = [clips // parts + (k < clips % parts) for k in range(parts)]
    tmp = out / f"{split}.parts"
    jobs = [(tmp / str(k), split, 1000 * args.seed + k, n, args.frames, args.size)
            for k, n in enumerate(sizes)]
    with multiprocessing.get_context("spawn").Pool(parts) as pool:
        pool.map(_synth_part, jobs)
    (out / split).mkdir(parents=True)
    for k, job in enumerate(jobs):
        for clip in sorted(Path(job[0]).iterdir()):
            clip.rename(out / split / f"{split}_{k:02d}_{clip.name.split('_')[-1]}")
    shutil.rmtree(tmp)


def export_fp16(src: Path, dst: Path) -> Path:
    """The weights folder ``src`` again in float16 (official layout, what ships as
    ``examples/tiny_mimo``)."""
    from mimo.models import load_mimo
    from mimo.models.tiny import write_official_layout

    m = load_mimo(src)
    half = lambda net: {k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}  # noqa: E731
    return write_official_layout(dst, half(m.denoising_unet), half(m.reference_unet), half(m.pose_guider),
                                 half(m.vae), half(m.image_encoder), m.unet_config, m.vae_config,
                                 m.image_encoder_config)


def train_stages(args, out: Path, weights: str, report: dict, name: str, t_start: float) -> tuple[str, bool]:
    """Train the stages in turn from ``weights`` (a stage whose ``OUT/STAGE/final`` exists is kept);
    returns the last stage's weights and whether ``--stop-after`` ended the run early."""
    batches = [int(b) for b in args.batches.split(",")] if args.batches else [s[2]["batch"] for s in STAGES]
    shares = [float(x) for x in args.shares.split(",")] if args.shares else [s[1] for s in STAGES]
    names = [s[0] for s in STAGES]
    last_stage = names.index(args.stop_after) if args.stop_after else len(STAGES) - 1
    if args.extend:
        k = names.index(args.extend)
        if not (out / args.extend / "state.pt").is_file():
            raise SystemExit(f"--extend {args.extend}: {out / args.extend / 'state.pt'} is missing; train that stage first")
        for stage in names[k:]:  # the extended stage resumes from state.pt; the later ones start again
            for gone in ([out / stage / "final"] if stage == args.extend else [out / stage]):
                if gone.exists():
                    print(f"[{name}] --extend {args.extend}: removing {gone}", flush=True)
                    shutil.rmtree(gone)
    todo = [i for i in range(last_stage + 1) if not (out / names[i] / "final").is_dir()]
    if any(shares[i] <= 0 for i in todo):
        raise SystemExit(f"--shares: {', '.join(names[i] for i in todo if shares[i] <= 0)} still has to train "
                         "but its share is 0")
    deadline = t_start + 60 * (args.fit_in - args.eval_reserve) if args.fit_in else None
    overhead = 0.0  # seconds the last stage spent outside its training loop (set-up, saving)
    for i, (stage, _, kw) in enumerate(STAGES[:last_stage + 1]):
        kw = {**kw, "batch": batches[i]}
        run = out / stage
        minutes = args.minutes * shares[i]
        if deadline is not None and i in todo:  # its share of what is left, less the last set-up
            left = deadline - time.perf_counter() - overhead
            minutes = max(0.05, left / 60 * shares[i] / sum(shares[j] for j in todo if j >= i))
        log_file = run / "log.jsonl"
        before = [json.loads(line) for line in log_file.read_text().splitlines()] if log_file.is_file() else []
        # the trainer resumes from state.pt (else starts at 0) and appends to the log
        start_step = max([r["step"] for r in before if "loss" in r], default=0) if (run / "state.pt").is_file() else 0
        t = time.perf_counter()
        if i in todo:
            cfg = TrainConfig(data=str(out / "train"), out=str(run), stage=stage, weights=weights,
                              size=args.size, steps=10**7, max_minutes=minutes,
                              log_every=100, seed=args.seed, workers=args.workers, device=args.device,
                              preload=not args.no_preload, ema=0.0, **kw)
            train(cfg, log=lambda s, stage=stage: print(f"[{name}] {stage}: {s}", flush=True))
        log = [json.loads(line) for line in log_file.read_text().splitlines()]
        last = [r for r in log if "loss" in r][-1]
        ran = i in todo and len(log) > len(before)
        steps = last["step"] - start_step if ran else last["step"]
        report[stage] = {"steps": last["step"], "loss": last["loss"], "seconds": time.perf_counter() - t,
                         "it_s": steps / max(last["seconds"], 1e-9), "batch": kw["batch"]}
        resumed = f" (resumed at step {start_step})" if ran and start_step else ""
        print(f"[{name}] {stage}: {last['step']} steps of {kw['batch']}{resumed}, {steps} in {last['seconds']:.0f} s "
              f"({report[stage]['it_s']:.1f} it/s)", flush=True)
        if ran:
            overhead = report[stage]["seconds"] - last["seconds"]
        weights = str(run / "final")
    return weights, last_stage < len(STAGES) - 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/yardstick")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--minutes", type=float, default=9.0, help="training time, all stages")
    p.add_argument("--fit-in", type=float, metavar="MIN",
                   help="instead of --minutes: train for what is left of MIN minutes after making the "
                        "datasets, keeping --eval-reserve minutes for the evaluation; each stage gets its "
                        "share of what is left when it starts, less the set-up time the stage before took "
                        "(leave a margin for Python's start: MIN counts from the script's first line)")
    p.add_argument("--eval-reserve", type=float, default=1.5, help="minutes kept for --fit-in's evaluation")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--train-clips", type=int, default=64)
    p.add_argument("--test-clips", type=int, default=8)
    p.add_argument("--eval-frames", type=int, default=48)
    p.add_argument("--widths", default="32,48,56,56",
                   help="UNet block widths of the tiny MIMO (default: ~18 MB in fp16)")
    p.add_argument("--vae-widths", default="16,16,32,32",
                   help="block widths of the tiny VAE (the shipped model's: 16,16,32,32)")
    p.add_argument("--shares", help="shares of the training time of the stages vae,image,motion "
                                    f"(default {','.join(str(s[1]) for s in STAGES)})")
    p.add_argument("--batches", help="batch sizes of the three stages, e.g. 2,2,1 for a CPU smoke run "
                                     f"(default {','.join(str(s[2]['batch']) for s in STAGES)})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-preload", action="store_true",
                   help="prepare items in data loader processes (MimoDataset) instead of on the device")
    p.add_argument("--workers", type=int, default=4, help="data loader processes (with --no-preload)")
    p.add_argument("--synth-workers", type=int, default=8, help="processes making the datasets")
    p.add_argument("--trained", help="evaluate this weights folder as the trained model (no training)")
    p.add_argument("--evals", default=",".join(EVALS),
                   help=f"what to measure, comma-separated from {','.join(EVALS)} (default: all)")
    p.add_argument("--skip-ablations", action="store_true", help="only trained, untrained, trivial")
    p.add_argument("--export", help="also write the trained weights in fp16 to this folder")
    p.add_argument("--stop-after", choices=[s[0] for s in STAGES],
                   help="end after this training stage (the same command later continues)")
    p.add_argument("--extend", choices=[s[0] for s in STAGES],
                   help="train this finished stage further from its saved state (OUT/STAGE/state.pt) for its "
                        "share of the time, and the stages after it again: a stage longer than one call")
    args = p.parse_args()
    t_start = time.perf_counter()
    evals = [e for e in args.evals.split(",") if e]
    if args.skip_ablations:
        evals = [e for e in evals if e in BASE_EVALS]
    bad = [e for e in evals if e not in EVALS]
    if bad:
        p.error(f"--evals: unknown {bad[0]!r}; expected some of {','.join(EVALS)}")
    out = Path(args.out)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report: dict = {"device": name, "args": vars(args)}

    t0 = time.perf_counter()
    for split, n in (("train", args.train_clips), ("test", args.test_clips)):
        if split == "train" and args.trained:
            continue
        if not (out / split).is_dir():
            make_split(out, split, n, args)
    report["synth_s"] = time.perf_counter() - t0
    print(f"[{name}] datasets ready in {report['synth_s']:.0f} s", flush=True)
    if args.fit_in:
        args.minutes = args.fit_in - args.eval_reserve - (time.perf_counter() - t_start) / 60
        if args.minutes <= 0:
            p.error(f"--fit-in {args.fit_in}: no time left to train after {time.perf_counter() - t_start:.0f} s")
        print(f"[{name}] training for {args.minutes:.2f} min (--fit-in {args.fit_in})", flush=True)

    from mimo.models import make_tiny
    from mimo.models.config import UNetConfig

    widths = tuple(int(w) for w in args.widths.split(","))
    init = out / "init"
    if not (init / "denoising_unet.pth").is_file():
        from mimo.models.tiny import TINY_VAE_CONFIG

        vae_config = {**TINY_VAE_CONFIG, "block_out_channels": [int(w) for w in args.vae_widths.split(",")]}
        make_tiny(init, seed=args.seed, unet_config=UNetConfig(block_out_channels=widths, cross_attention_dim=32,
                                                               norm_num_groups=8), vae_config=vae_config)
    weights = args.trained
    report["training"] = {}
    if weights is None:
        weights, stopped = train_stages(args, out, str(init), report["training"], name, t_start)
        if stopped:
            print(f"[{name}] stopping after stage {args.stop_after} (--stop-after); run again to continue "
                  "(--extend to give a stage more time); measuring only what needs no generation", flush=True)
            evals = [e for e in evals if e in ("trivial", "scene", "ceiling")]
    if args.export:
        export_fp16(Path(weights), Path(args.export))
        print(f"[{name}] wrote {args.export} (fp16)", flush=True)

    windows = test_windows(out / "test", args.size, args.eval_frames, args.seed)
    results, pictures = {}, {}

    def save() -> list[str]:  # after every evaluation: a run cut short keeps what it measured
        from PIL import Image

        report["results"] = results
        (out / "quality.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
        shown = [k for k in ("trained", "untrained", "trivial") if k in pictures]
        picks = np.linspace(0, len(windows[0]["truth"]) - 1, min(6, len(windows[0]["truth"]))).astype(int)
        rows = [windows[0]["truth"]] + [pictures[k] for k in shown]
        sheet = np.concatenate([np.concatenate(list(r[picks]), 1) for r in rows], 0)
        Image.fromarray(sheet).save(out / "quality.png")
        return shown

    def evaluate(label, folder, steps=25, mode="exact", context=24):
        pipe = MimoPipeline.from_pretrained(folder, device=device, dtype=torch.float32, compile=False)
        t = time.perf_counter()
        outs = [generate(pipe, w, steps, mode, context, args.seed) for w in windows]
        results[label] = {**score(windows, outs), "seconds": time.perf_counter() - t}
        pictures[label] = outs[0]
        r = results[label]
        print(f"[{name}] {label:>22}: PSNR {r['psnr']:.2f} dB, body {r['psnr_body']:.2f} dB, "
              f"SSIM {r['ssim']:.3f}, temporal error {r['temporal_error']:.2f} ({r['seconds']:.0f} s)",
              flush=True)
        save()

    if "trained" in evals or any(e in evals for e in EVALS[5:]):
        evaluate("trained", weights)
    if "untrained" in evals:
        evaluate("untrained", str(init))
    if "ceiling" in evals:
        from mimo.models import load_mimo

        vae = load_mimo(Path(weights), device=device).vae.float().eval()
        outs = [reconstruct(vae, w, device) for w in windows]
        results["ceiling"] = score(windows, outs)
        r = results["ceiling"]
        print(f"[{name}] {'VAE ceiling':>22}: PSNR {r['psnr']:.2f} dB, body {r['psnr_body']:.2f} dB, "
              f"SSIM {r['ssim']:.3f}, temporal error {r['temporal_error']:.2f}", flush=True)
    if "scene" in evals:
        results["scene"] = score(windows, [w["scene"] for w in windows])
        r = results["scene"]
        print(f"[{name}] {'scene plate only':>22}: PSNR {r['psnr']:.2f} dB, body {r['psnr_body']:.2f} dB, "
              f"SSIM {r['ssim']:.3f}, temporal error {r['temporal_error']:.2f}", flush=True)
    if "trivial" in evals:
        outs = [trivial(w) for w in windows]
        results["trivial"] = score(windows, outs)
        pictures["trivial"] = outs[0]
        save()
        r = results["trivial"]
        print(f"[{name}] {'trivial (paste)':>22}: PSNR {r['psnr']:.2f} dB, body {r['psnr_body']:.2f} dB, "
              f"SSIM {r['ssim']:.3f}, temporal error {r['temporal_error']:.2f}", flush=True)
    for key, label, kw in (("fast", "trained, fast mode", dict(mode="fast")),
                           ("steps10", "trained, 10 steps", dict(steps=10)),
                           ("steps5", "trained, 5 steps", dict(steps=5)),
                           ("window32", "trained, 32-frame win", dict(context=32))):
        if key not in evals:
            continue
        if args.fit_in and time.perf_counter() - t_start + 1.2 * results["trained"]["seconds"] > 60 * args.fit_in:
            print(f"[{name}] {label}: skipped, it would not end within --fit-in {args.fit_in} min", flush=True)
            continue
        evaluate(label, weights, **kw)
    base = results.get("trained")
    for label in [k for k in results if k.startswith("trained,")]:
        print(f"[{name}] {label}: {results[label]['psnr'] - base['psnr']:+.2f} dB whole frame, "
              f"{results[label]['psnr_body'] - base['psnr_body']:+.2f} dB body, "
              f"SSIM {results[label]['ssim'] - base['ssim']:+.3f} vs exact/25/24", flush=True)
    shown = save()
    print(f"[{name}] wrote {out / 'quality.json'} and {out / 'quality.png'} (rows: truth, "
          f"{', '.join(shown)})", flush=True)


if __name__ == "__main__":
    main()
