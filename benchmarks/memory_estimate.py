"""Estimate GPU memory at full size without a GPU: SD1.5-size networks built on PyTorch's ``meta``
device (shapes, no data), run once while every tensor storage the run creates is tracked from its
allocation to its release. Prints the estimated peak and the largest tensors alive at that moment.
An estimate, not a measurement: ``benchmarks/presets.py`` and ``benchmarks/train.py`` measure on a GPU.

    python benchmarks/memory_estimate.py --part denoise                 # one fast-mode UNet call
    python benchmarks/memory_estimate.py --part train --stage motion    # a stage-2 training step
    python benchmarks/memory_estimate.py --part train --stage image --checkpointing

What it counts: the networks' weights, the inputs, and every activation alive at once (tensors
saved for backward included). Attention is counted as a fused kernel (its output only, as cuDNN's
and flash kernels allocate; the meta device would otherwise build the full score matrix). What it
leaves out: kernel workspaces (cuDNN convolutions, cuBLAS), the caching allocator's rounding and
fragmentation, and, for training, autocast's float32 ops (activations are counted in bf16), so
it can only read low; how low is known for one case (below), not in general.

Checked against one NVIDIA H100 80GB HBM3 (2026-12-07, eager, bf16): a 32-frame fast-mode job at
784² peaked at 11.07 GiB in its denoising stage; this script's ``--part denoise`` gives 5.56 GiB of
activations (inside a motion module of the highest-resolution up block) + 0.43 GiB of inputs and
reference bank on top of the job's 4.84 GiB of networks and about 0.3 GiB of latents and pose
features: about 11.1 GiB, within 1 %
(an attempt to lower that peak by chunking the motion modules lowered this estimate by 1 GiB and
the measured peak not at all, so the estimate does not locate the GPU's peak reliably).
Training (not yet measured on a GPU, ``benchmarks/train.py --device cuda`` owes it), 784², fp32
weights with bf16 activations, AdamW:

    stage 2, one 24-frame window:  64.7 GiB of activations (+ 14.6 GiB weights, grads, AdamW) --
                                   79.3 GiB, at the limit of an 80 GB card (79.6 GiB) before
                                   workspaces and float32 tensors: expect it not to fit;
                                   with --checkpointing 23.9 GiB (38.5 GiB in all)
    stage 1, batch of 4 frames:    17.5 GiB (+ 28.8 GiB) -- 46.3 GiB; with --checkpointing 8.8 GiB (37.5)
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import weakref
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GIB = 2**30


class LiveStorages(TorchDispatchMode):
    """Bytes of the tensor storages created inside the mode and still alive; the peak, and what
    was alive at the peak. Storages made before the mode (weights, inputs) are not counted."""

    def __init__(self, known: list[torch.Tensor]):
        super().__init__()
        self.known = {t.untyped_storage()._cdata for t in known}
        self.live: dict[int, tuple[int, str]] = {}  # storage -> (bytes, "op shape dtype")
        self.now = self.peak = 0
        self.at_peak: list[tuple[int, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage._cdata
            if key in self.known or key in self.live:
                continue
            nbytes = storage.nbytes()
            self.live[key] = (nbytes, f"{func.__name__} {tuple(t.shape)} {str(t.dtype).replace('torch.', '')}")
            self.now += nbytes
            weakref.finalize(storage, self._free, key)
            if self.now > self.peak:
                self.peak, self.at_peak = self.now, list(self.live.values())
        return out

    def _free(self, key: int) -> None:
        self.now -= self.live.pop(key)[0]

    def report(self, top: int) -> str:
        lines = [f"  {b / 2**20:9.0f} MiB  {what}" for b, what in sorted(self.at_peak, reverse=True)[:top]]
        return "\n".join(lines)


@contextlib.contextmanager
def fused_attention():
    """``F.scaled_dot_product_attention`` as a fused kernel allocates: the output (autograd still
    connects it to q, k and v, whose gradients backward then makes, as a fused backward does)."""
    real = F.scaled_dot_product_attention

    def fused(q, k, v, *args, **kwargs):  # one output-sized tensor; small ones tie it to q, k, v
        if not (q.requires_grad or k.requires_grad or v.requires_grad):
            return torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype, device=q.device)
        return q[..., :1] * 0 + (v.mean(-2, keepdim=True) + k.mean() * 0)

    F.scaled_dot_product_attention = fused
    try:
        yield
    finally:
        F.scaled_dot_product_attention = real


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def denoise(args) -> None:
    """One fast-mode denoising UNet call: ``--frames`` frames, both CFG halves, token chunking."""
    from mimo.models import SD15_UNET, DenoisingUNet, ReferenceUNet
    from mimo.models.blocks import token_chunking
    from mimo.pipeline.fast import CHUNK_TOKENS
    from mimo.pipeline.memory import network_bytes

    dtype, lat = torch.bfloat16, args.size // 8
    with torch.device("meta"):
        unet = DenoisingUNet(SD15_UNET).to(dtype).eval().requires_grad_(False)
        ref = ReferenceUNet(SD15_UNET).to(dtype).eval().requires_grad_(False)
        clip = torch.empty(1, 1, SD15_UNET.cross_attention_dim, dtype=dtype)
        bank = ref.write(torch.empty(1, 4, lat, lat, dtype=dtype), 0, clip)
        x = torch.empty(2, 8, args.frames, lat, lat, dtype=dtype)
        pose = torch.empty(2, SD15_UNET.block_out_channels[0], args.frames, lat, lat, dtype=dtype)
        rows = torch.empty(2, 1, SD15_UNET.cross_attention_dim, dtype=dtype)
    inputs = [x, pose, rows, *bank.tensors.values()]
    mode = LiveStorages(list(unet.parameters()) + list(unet.buffers()) + inputs)
    with fused_attention(), torch.no_grad(), mode, token_chunking(CHUNK_TOKENS):
        unet(x, 500, rows, pose_cond=pose, reference=bank, reference_rows=[False, True])
    print(f"denoising UNet call, {args.frames} frames x 2 CFG rows at {args.size}², bf16 (estimate): "
          f"activations {mode.peak / GIB:.2f} GiB at the peak; inputs and bank {nbytes(inputs) / GIB:.2f} GiB; "
          f"this UNet {network_bytes(unet) / GIB:.2f} GiB (the job also holds the reference UNet, "
          f"CLIP and VAE)\n{mode.report(args.top)}")


def train_step(args) -> None:
    """Forward and backward of one training step (``benchmarks/train.py``'s networks and batch)."""
    import train as bench  # benchmarks/train.py

    from mimo.train.objective import enable_gradient_checkpointing, trainable_parameters

    net = bench.build("meta", False).to(torch.bfloat16)
    trained = trainable_parameters(net, args.stage)
    if args.checkpointing:
        enable_gradient_checkpointing(net.denoising_unet)
        enable_gradient_checkpointing(net.reference_unet)
    net.train()
    B, N = (args.batch, 1) if args.stage == "image" else (1, args.frames)
    with torch.device("meta"):
        data = {k: v.to(torch.bfloat16) for k, v in bench.batch(B, N, args.size).items()}
    mode = LiveStorages(list(net.parameters()) + list(data.values()))
    with fused_attention(), mode:
        loss = net(data, args.stage, torch.Generator().manual_seed(0))["loss"]
        after_forward = mode.now
        loss.backward()
    n_all, n_trained = sum(p.numel() for p in net.parameters()), sum(p.numel() for p in trained)
    state = 4 * n_all + 4 * n_trained + 8 * n_trained  # fp32 weights, grads of the trained ones, AdamW
    print(f"stage {args.stage}, {B} x {N} frames at {args.size}², checkpointing "
          f"{'on' if args.checkpointing else 'off'} (estimate): activations {mode.peak / GIB:.1f} GiB at the "
          f"peak ({after_forward / GIB:.1f} saved by the forward); fp32 weights, grads and AdamW "
          f"{state / GIB:.1f} GiB ({n_trained / 1e6:.0f} M of {n_all / 1e6:.0f} M parameters trained); "
          f"about {(mode.peak + state) / GIB:.1f} GiB in all\n{mode.report(args.top)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("denoise", "train"), default="denoise")
    p.add_argument("--size", type=int, default=784)
    p.add_argument("--frames", type=int, default=32, help="denoise: window frames; train: stage-2 window")
    p.add_argument("--stage", choices=("image", "motion"), default="motion")
    p.add_argument("--batch", type=int, default=4, help="stage-1 frames per step")
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--top", type=int, default=8, help="largest tensors alive at the peak to list")
    args = p.parse_args()
    if args.part == "train" and args.frames == 32 and args.stage == "motion":
        args.frames = 24  # benchmarks/train.py's stage-2 window
    (denoise if args.part == "denoise" else train_step)(args)


if __name__ == "__main__":
    main()
