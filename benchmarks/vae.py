"""VAE encode and decode speed at the pipeline's sizes (random SD VAE weights, no downloads).

    python benchmarks/vae.py --device cuda --frames 32 --size 784
    python benchmarks/vae.py --device cuda --variants eager cl cl-compile --decode-chunks 4 8
    python benchmarks/vae.py --device cpu --tiny --frames 4 --size 64      # smoke run

The pipeline encodes every scene frame and decodes every output frame, so these two stages are
the part of a job that does not shrink with fewer denoising steps. For each variant and chunk
size: seconds per frame to encode (images in [-1, 1] -> posterior mean) and to decode (latents
-> frames in [0, 1] as float32 on the host, what the pipeline streams out), achieved TFLOP/s
(FLOP of one chunk counted by ``torch.utils.flop_counter``), peak GPU memory of the stage, the
largest difference from the first variant's output, and the largest and mean difference from a
float32 eager run (how much of a difference is rounding: random weights amplify it). Every line
carries the device name; nothing is asserted.

Variants: ``eager`` (diffusers' modules as they are), ``cl`` (channels-last weights and
activations; slower than eager on an H200, so the pipeline does not use it),
``compile`` / ``cl-compile`` (``torch.compile`` of the encoder and decoder, static shapes, what
:func:`mimo.models.compile.compile_vae` does;
the first chunk's compile time is printed separately).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimo.pipeline.pipeline import _device_name

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _timed(device, fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=784)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--variants", nargs="+", default=["eager", "cl", "compile", "cl-compile"],
                   choices=["eager", "cl", "compile", "cl-compile"])
    p.add_argument("--encode-chunks", nargs="+", type=int, default=[2, 8])
    p.add_argument("--decode-chunks", nargs="+", type=int, default=[4, 8])
    args = p.parse_args(argv)
    from diffusers import AutoencoderKL

    from mimo.models.tiny import SD_VAE_CONFIG, TINY_VAE_CONFIG

    device = torch.device(args.device)
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    name = _device_name(device)
    torch.manual_seed(0)
    with torch.device(device):
        vae = AutoencoderKL.from_config(TINY_VAE_CONFIG if args.tiny else SD_VAE_CONFIG)
    vae = vae.to(dtype).eval().requires_grad_(False)
    g = torch.Generator(device).manual_seed(1)
    n, s = args.frames, args.size
    images = (torch.rand(n, 3, s, s, device=device, generator=g) * 2 - 1).to(dtype)
    latents = torch.randn(n, 4, s // 8, s // 8, device=device, generator=g).to(dtype)
    print(f"VAE {'tiny' if args.tiny else 'SD'} {dtype} {n} frames {s}² [{name}]")
    first: dict = {}
    exact = {}  # float32 eager outputs: the yardstick for every variant's rounding
    vae32 = AutoencoderKL.from_config(vae.config).to(device).eval().requires_grad_(False)
    vae32.load_state_dict({k: v.float() for k, v in vae.state_dict().items()})
    with torch.no_grad():
        exact["encode"] = torch.cat([vae32.quant_conv(vae32.encoder(x.float()))[:, :4].cpu()
                                     for x in images.split(2)])
        exact["decode"] = torch.cat([(vae32.decoder(vae32.post_quant_conv(z.float())) / 2 + 0.5)
                                     .clamp(0, 1).permute(0, 2, 3, 1).cpu() for z in latents.split(2)])
    del vae32
    for variant in args.variants:
        fmt = torch.channels_last if variant.startswith("cl") else torch.contiguous_format
        vae.to(memory_format=fmt)
        torch._dynamo.reset()
        encoder, decoder = vae.encoder, vae.decoder
        if variant.endswith("compile"):
            encoder, decoder = torch.compile(vae.encoder, dynamic=False), torch.compile(vae.decoder, dynamic=False)

        def encode(x):
            moments = vae.quant_conv(encoder(x.contiguous(memory_format=fmt)))
            return moments[:, :4]                                       # posterior mean

        def decode(z):
            x = decoder(vae.post_quant_conv(z.contiguous(memory_format=fmt)))
            return (x / 2 + 0.5).clamp(0, 1).float().permute(0, 2, 3, 1).cpu()

        for stage, fn, data, chunks in (("encode", encode, images, args.encode_chunks),
                                        ("decode", decode, latents, args.decode_chunks)):
            for chunk in chunks:
                parts = list(data.split(chunk))

                def run_all():
                    with torch.no_grad():
                        return [fn(x) for x in parts]

                try:
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        fn(parts[0])
                    _sync(device)
                    warm = time.perf_counter() - t0
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    sec = _timed(device, run_all, args.repeats)
                    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
                    with torch.no_grad():
                        flop = _flops(lambda: vae.encoder(parts[0]) if stage == "encode" else
                                      vae.decoder(vae.post_quant_conv(parts[0])))  # eager modules
                        out = torch.cat([o.float().cpu() for o in run_all()])
                except Exception as exc:  # a variant that fails here is a finding, not a crash
                    print(f"  {variant:10s} {stage} chunk {chunk}: failed: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160]} [{name}]")
                    continue
                ref = first.setdefault((stage, chunk), out)
                diff = (out - ref).abs().max().item()
                err = (out - exact[stage]).abs()
                tflops = flop * len(parts) / sec / 1e12
                print(f"  {variant:10s} {stage} chunk {chunk:2d}: {sec / n * 1000:7.1f} ms/frame "
                      f"{tflops:6.1f} TFLOP/s  first chunk {warm:6.2f} s  peak {peak:5.2f} GiB  "
                      f"max diff {diff:.3g}; vs fp32 max {err.max().item():.3g} mean {err.mean().item():.2g} [{name}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
