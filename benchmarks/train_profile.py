"""Where a stage-1 (image) training step of a tiny yardstick model spends its time on a GPU:
items/s at several batch sizes, the share of preparing the batch, and the profiler's top
kernels and kernel launches per step. Nothing is asserted; every line carries the device.

    python benchmarks/train_profile.py --weights runs/ys/init --data runs/ys/train --batches 64,128,256

``--weights``: an official-layout folder (``benchmarks/quality.py`` writes ``OUT/init``);
``--data``: a dataset folder of 128² clips (its train split). On CPU it prints the profiler's
operator table and count instead (nested calls, views and the unfused CPU optimizer included);
counted as leaf operators that compute, a step of the default tiny model's forward and backward
is about 4,800 kernels (2,100 forward, 2,700 backward) whatever the batch, which is what bounds a
GPU step of a model this small.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimo.data.dataset import MimoDataset
from mimo.data.preload import PreloadedData
from mimo.models import load_mimo
from mimo.train.objective import MimoTrainNet, trainable_parameters


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batches", default="64,128,256")
    p.add_argument("--steps", type=int, default=10, help="timed steps per batch size (after 5 warm-up steps)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    m = load_mimo(Path(args.weights), device=dev)
    net = MimoTrainNet(*(x.float() for x in (m.vae, m.image_encoder, m.reference_unet, m.denoising_unet,
                                             m.pose_guider))).to(dev)
    params = trainable_parameters(net, "image", True)
    opt = torch.optim.AdamW(params, lr=1e-4, fused=dev.type == "cuda" or None)
    net.train()
    net.vae.eval()
    data = PreloadedData(MimoDataset(args.data, num_frames=1, size=args.size, items_per_epoch=10**7, seed=0), dev)
    g = torch.Generator()

    def step(i: int, B: int) -> float:
        t0 = time.perf_counter()
        batch = data.batch(range(i * B, (i + 1) * B))
        sync()
        prep = time.perf_counter() - t0
        g.manual_seed(i)
        net(batch, "image", g)["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return prep

    for B in [int(b) for b in args.batches.split(",")]:
        for i in range(5):
            step(i, B)
        sync()
        t = time.perf_counter()
        prep = sum(step(i, B) for i in range(5, 5 + args.steps))
        sync()
        dt = (time.perf_counter() - t) / args.steps
        print(f"[{name}] batch {B}: {1 / dt:.2f} it/s, {B / dt:.0f} items/s, batch preparation "
              f"{1000 * prep / args.steps:.0f} of {1000 * dt:.0f} ms per step", flush=True)
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for i in range(3):
            step(100 + i, int(args.batches.split(",")[0]))
        sync()
    ka = prof.key_averages()
    if dev.type == "cuda":
        print(ka.table(sort_by="self_cuda_time_total", row_limit=12))
        launches = sum(e.count for e in ka if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
        print(f"[{name}] kernel launches per step: {launches / 3:.0f}")
    else:
        print(ka.table(sort_by="self_cpu_time_total", row_limit=12))
        ops = sum(e.count for e in ka if e.key.startswith("aten::"))
        print(f"[{name}] aten operator calls per step (nested calls, views and the optimizer included): {ops / 3:.0f}")


if __name__ == "__main__":
    main()
