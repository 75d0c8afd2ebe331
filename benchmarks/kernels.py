"""The two kernel questions behind fast mode's speed limit, at the UNet's own shapes (CUDA), and
where a UNet call's FLOP go (any machine).

    python benchmarks/kernels.py                       # attention and fp8, 784² (98² latents), 32 frames
    python benchmarks/kernels.py --part attention --frames 16
    python benchmarks/kernels.py --part flops          # no GPU needed: meta tensors

``flops``: one fast-mode denoising-UNet call at SD1.5 size (CFG batch 2 x ``--frames``, the
reference bank read by the conditional row, fast mode's token chunks), counted by
``torch.utils.flop_counter`` on meta tensors, split by operator: attention (bmm / SDPA),
convolutions, linear layers (addmm, mm).

``attention``: the level-0 reference-reading self-attention of one 32-frame UNet call's
conditional rows (rows = frames, 8 heads of 40 dimensions, queries = 98² tokens, keys = twice
that: own tokens plus the reference's) under each SDPA backend (cuDNN, flash, memory-efficient),
with the heads as they are and zero-padded to 48 and 64, and FlexAttention (compiled, padded to
64). Printed: ms per call and *useful* TFLOP/s (4·rows·heads·queries·keys·40, padding not
counted). Then the FlashAttention kernels the pipeline can select (``Shortcuts.attention``, through
``mimo.models.kernels.sdpa``: ``fa3`` from ``pip install fa3-fwd``, ``fa4`` from
``pip install flash-attn-4``; a missing package is reported, not an error), and cuDNN with the
keys/values of the ``kv_pool`` shortcut (own and reference tokens pooled 2x2 and 4x4).

    python benchmarks/kernels.py --part attention      # GPU run owed (issue #21): fa3/fa4 vs cuDNN

``fp8``: the UNet's linear layers as bf16 ``F.linear`` against ``torch._scaled_mm`` in FP8 e4m3
with row-wise scales (per token, per output channel), plus the cost of quantizing the activation
(compiled: amax, scale, cast) and the relative error of the FP8 product. Shapes are (tokens,
in, out) of the feed-forwards and projections at each level, with fast mode's feed-forward
chunks at level 0.

Every line carries the device name; nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimo.pipeline.pipeline import _device_name

HEADS, HEAD_DIM = 8, 40


def _median_seconds(fn, repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def attention(frames: int, tokens: int, repeats: int, name: str) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(frames, HEADS, tokens, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(frames, HEADS, 2 * tokens, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    useful = 4 * frames * HEADS * tokens * 2 * tokens * HEAD_DIM
    print(f"attention: {frames} rows x {HEADS} heads x {tokens} queries x {2 * tokens} keys, head dim "
          f"{HEAD_DIM}, bf16 [{name}]")
    backends = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION}
    for label, backend in backends.items():
        for dim in (HEAD_DIM, 48, 64):
            qq, kk, vv = (F.pad(t, (0, dim - HEAD_DIM)) for t in (q, k, v))
            try:
                with sdpa_kernel(backend):
                    sec = _median_seconds(lambda: F.scaled_dot_product_attention(
                        qq, kk, vv, scale=HEAD_DIM ** -0.5), repeats)
            except RuntimeError as exc:  # a backend refusing the shape is a finding
                print(f"  {label:9s} head dim {dim}: refused: {str(exc).splitlines()[0][:100]} [{name}]")
                continue
            print(f"  {label:9s} head dim {dim}: {sec * 1e3:7.2f} ms  {useful / sec / 1e12:5.0f} useful "
                  f"TFLOP/s [{name}]")
    from mimo.models import kernels

    for label in ("fa3", "fa4"):
        try:
            kernels.check_backend(label)
        except ValueError as exc:
            print(f"  {label:9s} not installed: {exc} [{name}]")
            continue
        if not kernels.supported(label, q):
            print(f"  {label:9s} does not take bf16 head dim {HEAD_DIM} here: SDPA would run [{name}]")
            continue
        sec = _median_seconds(lambda: kernels.sdpa(q, k, v, label), repeats)
        err = (kernels.sdpa(q, k, v, label).float() - F.scaled_dot_product_attention(q, k, v).float()).abs().max()
        print(f"  {label:9s} head dim {HEAD_DIM}: {sec * 1e3:7.2f} ms  {useful / sec / 1e12:5.0f} useful "
              f"TFLOP/s, max |diff| vs SDPA {err.item():.1e} [{name}]")
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        for pool in (2, 4):
            kk, vv = k[:, :, :2 * tokens // pool ** 2], v[:, :, :2 * tokens // pool ** 2]
            sec = _median_seconds(lambda: F.scaled_dot_product_attention(q, kk, vv), repeats)
            print(f"  cudnn     keys pooled {pool}x{pool} ({kk.shape[2]} keys): {sec * 1e3:7.2f} ms [{name}]")
    try:
        from torch.nn.attention.flex_attention import flex_attention
    except ImportError:
        print(f"  flex: not in this torch [{name}]")
        return
    flex = torch.compile(flex_attention)
    qq, kk, vv = (F.pad(t, (0, 64 - HEAD_DIM)) for t in (q, k, v))
    sec = _median_seconds(lambda: flex(qq, kk, vv, scale=HEAD_DIM ** -0.5), repeats)
    print(f"  flex      head dim 64: {sec * 1e3:7.2f} ms  {useful / sec / 1e12:5.0f} useful TFLOP/s [{name}]")


def _rowwise_fp8(x: torch.Tensor):
    """x (M, K) -> (x / s in float8 e4m3, s (M, 1) float32), s = row amax / 448."""
    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / 448.0
    return (x.float() / scale).to(torch.float8_e4m3fn), scale


def fp8(frames: int, tokens: int, repeats: int, name: str) -> None:
    chunk = 6 * tokens  # fast mode's feed-forward chunk at level 0 (CHUNK_TOKENS = 65536)
    shapes = [(chunk, 320, 2560), (chunk, 1280, 320), (2 * frames * tokens, 320, 320),
              (2 * frames * tokens // 4, 640, 5120), (2 * frames * tokens // 4, 2560, 640),
              (2 * frames * tokens // 16, 1280, 10240), (2 * frames * tokens // 16, 5120, 1280)]
    quantize = torch.compile(_rowwise_fp8)
    print(f"linear layers, bf16 vs FP8 e4m3 (row-wise scales) [{name}]")
    for m, k, n in shapes:
        a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k ** -0.5
        b = torch.randn(n, device="cuda", dtype=torch.bfloat16)
        flop = 2 * m * k * n
        t_bf16 = _median_seconds(lambda: F.linear(a, w, b), repeats)
        aq, a_scale = _rowwise_fp8(a)
        wq, w_scale = _rowwise_fp8(w)

        def product():
            return torch._scaled_mm(aq, wq.t(), scale_a=a_scale, scale_b=w_scale.t(), bias=b,
                                    out_dtype=torch.bfloat16)

        try:
            t_fp8 = _median_seconds(product, repeats)
        except RuntimeError as exc:
            print(f"  {m}x{k}x{n}: FP8 refused: {str(exc).splitlines()[0][:100]} [{name}]")
            continue
        t_quant = _median_seconds(lambda: quantize(a), repeats)
        ref = F.linear(a.float(), w.float(), b.float())
        err = ((product().float() - ref).norm() / ref.norm()).item()
        print(f"  {m:7d} x {k:5d} -> {n:5d}: bf16 {t_bf16 * 1e3:6.3f} ms ({flop / t_bf16 / 1e12:4.0f} "
              f"TFLOP/s); fp8 {t_fp8 * 1e3:6.3f} ms ({flop / t_fp8 / 1e12:4.0f}) + quantize "
              f"{t_quant * 1e3:6.3f} ms; relative error {err:.3f} [{name}]")


def flops(frames: int, size: int) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from mimo.models import SD15_UNET, DenoisingUNet, ReferenceUNet
    from mimo.models.blocks import token_chunking
    from mimo.pipeline.fast import CHUNK_TOKENS

    h, bf16 = size // 8, torch.bfloat16
    with torch.device("meta"):
        ref_unet, unet = ReferenceUNet(SD15_UNET).to(bf16), DenoisingUNet(SD15_UNET).to(bf16)
        x = torch.empty(2, 8, frames, h, h, dtype=bf16)
        pose = torch.empty(2, SD15_UNET.block_out_channels[0], frames, h, h, dtype=bf16)
        clip = torch.empty(2, 1, SD15_UNET.cross_attention_dim, dtype=bf16)
        ref = torch.empty(1, 4, h, h, dtype=bf16)
    with torch.no_grad():
        bank = ref_unet.write(ref, 0, clip[1:2])
        with FlopCounterMode(display=False) as counter, token_chunking(CHUNK_TOKENS):
            unet(x, 999, clip, pose_cond=pose, reference=bank, reference_rows=[False, True])
    ops = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    total = counter.get_total_flops()
    print(f"one denoising-UNet call, CFG batch 2 x {frames} frames, {size}², fast-mode chunks: "
          f"{total / 1e12:.1f} TFLOP")
    for label, names in (("attention", ("aten.bmm", "aten._scaled_dot_product_flash_attention",
                                        "aten._scaled_dot_product_efficient_attention",
                                        "aten._scaled_dot_product_cudnn_attention")),
                         ("convolutions", ("aten.convolution",)), ("linear layers", ("aten.addmm", "aten.mm"))):
        part = sum(ops.get(n, 0) for n in names)
        print(f"  {label:14s} {part / 1e12:6.1f} TFLOP ({100 * part / total:4.1f} %)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("attention", "fp8", "both", "flops"), default="both")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=784)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if args.part == "flops":
        flops(args.frames, args.size)
        return 0
    if not torch.cuda.is_available():
        print("benchmarks/kernels.py measures CUDA kernels; no CUDA device here", file=sys.stderr)
        return 2
    name = _device_name(torch.device("cuda"))
    tokens = (args.size // 8) ** 2
    torch.manual_seed(0)
    if args.part in ("attention", "both"):
        attention(args.frames, tokens, args.repeats, name)
    if args.part in ("fp8", "both"):
        fp8(args.frames, tokens, args.repeats, name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
