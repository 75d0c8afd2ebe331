"""Wire protocol and server figures over loopback TCP (prints; asserts nothing about speed).

    python benchmarks/protocol.py [--device cpu|cuda] [--size 784] [--frames 32] [--rounds 200]
                                  [--weights DIR]   # also time the "mimo" backend (tiny or real)

1. raw:     Frame messages (size² RGB) encoded, sent DEALER -> ROUTER over tcp://127.0.0.1, received
            and decoded; MB/s of image payload.
2. server:  a preview job of --frames frames streamed by mimo-server with credit 8; MB/s and frames/s.
3. latency: hello -> capabilities round trip through the server (median and p99 over --rounds).
4. overhead per job: wall time of a job through server + client minus a direct
            ``backend.generate(build_job(request))`` of the same job (median of --repeat runs).
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import threading
import time

import numpy as np
import zmq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from server import protocol as P
from server.client import Client


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (256, 384), (180, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


def bench_raw(size: int, frames: int, dev: str) -> None:
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    dealer.send_multipart(P.encode(P.Hello()))
    ident = router.recv_multipart()[0]

    def receive(out: list) -> None:
        for _ in range(frames):
            msg = P.decode(dealer.recv_multipart(copy=False))
            out.append(int(msg.image[0, 0, 0]))

    got: list[int] = []
    t = threading.Thread(target=receive, args=(got,))
    t0 = time.perf_counter()
    t.start()
    for i in range(frames):
        router.send_multipart([ident, *P.encode(P.Frame(job_id="bench", index=i, image=image))], copy=False)
    t.join()
    dt = time.perf_counter() - t0
    mb = frames * image.nbytes / 1e6
    print(f"[{dev}] raw protocol: {frames} frames of {size}x{size}x3 in {dt:.3f} s = {mb / dt:.0f} MB/s "
          f"({frames / dt:.0f} frames/s)")
    ctx.destroy(linger=0)


def codes_request(size: int, frames: int, backend: str = "preview", **kw) -> P.GenerateRequest:
    rng = np.random.default_rng(1)
    codes = np.zeros((frames, size, size, 3), np.uint8)
    q = size // 4
    codes[:, q:3 * q, q:3 * q] = rng.integers(1, 256, (frames, 2 * q, 2 * q, 3), dtype=np.uint8)
    return P.GenerateRequest(character=png(), codes=codes, width=size, height=size, backend=backend, **kw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (body rendering, mimo backend)")
    ap.add_argument("--size", type=int, default=784)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--weights", help="MIMO weights folder: also time a mimo job (raw mode)")
    ap.add_argument("--mimo-size", type=int, default=64)
    ap.add_argument("--mimo-steps", type=int, default=2)
    args = ap.parse_args(argv)

    from mimo.pipeline.backends import load_backend
    from mimo.pipeline.job import JobEvents
    from server.adapter import build_job
    from server.core import Server

    dev = device_name(args.device)
    bench_raw(args.size, args.frames, dev)

    backends = {"preview": load_backend("preview")}
    if args.weights:
        backends["mimo"] = load_backend("mimo", weights=args.weights, device=args.device)
    srv = Server(backends, bind="tcp://127.0.0.1:0", device=args.device, device_name=dev).start()
    try:
        with Client(srv.address, timeout=120) as client:
            client.hello()
            req = codes_request(args.size, args.frames)
            t0 = time.perf_counter()
            frames, _ = client.generate(req, credit=8)
            dt = time.perf_counter() - t0
            mb = frames.nbytes / 1e6
            print(f"[{dev}] server preview job (upload, compositing and streaming): {args.frames} frames of {args.size}x{args.size} in "
                  f"{dt:.3f} s = {mb / dt:.0f} MB/s ({args.frames / dt:.0f} frames/s, credit 8, "
                  f"request {sum(len(f) for f in P.encode(P.Submit(request=req))) / 1e6:.0f} MB)")

            rtts = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                client.hello()
                rtts.append(time.perf_counter() - t0)
            rtts.sort()
            print(f"[{dev}] hello round trip: median {statistics.median(rtts) * 1e6:.0f} us, "
                  f"p99 {rtts[int(0.99 * (len(rtts) - 1))] * 1e6:.0f} us over {args.rounds} rounds")

            jobs = [("preview", codes_request(args.size, 4))]
            if args.weights:
                jobs.append(("mimo", codes_request(args.mimo_size, 4, backend="mimo", raw=True,
                                                   steps=args.mimo_steps, context=4, overlap=0)))
            for name, job_req in jobs:
                direct, served = [], []
                backends[name].generate(build_job(job_req, args.device), JobEvents())  # warm-up
                client.generate(job_req, credit=8)
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    backends[name].generate(build_job(job_req, args.device), JobEvents())
                    direct.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    client.generate(job_req, credit=8)
                    served.append(time.perf_counter() - t0)
                d, s = statistics.median(direct), statistics.median(served)
                print(f"[{dev}] {name} job of 4 frames {job_req.width}x{job_req.height}: direct "
                      f"{d * 1e3:.1f} ms, through server {s * 1e3:.1f} ms, overhead {(s - d) * 1e3:.1f} ms "
                      f"per job (median of {args.repeat})")
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
