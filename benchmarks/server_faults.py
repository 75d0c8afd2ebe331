"""How fast mimo-server frees the worker from a client that went away, on this machine (CPU,
preview backend, loopback). Nothing is asserted; every line says what was measured.

    python benchmarks/server_faults.py --repeats 5 --heartbeat-timeout 10

For each repeat a client process submits an 8-frame job with one frame of credit, takes the
first frame and then holds the job (no more credit) until it is stopped; a second client has a
job queued behind it. The figure is the time from stopping the first client to the first
``progress`` message of the second client's job (the worker has moved on):

- ``SIGKILL``: the process dies, its connection closes; the server sees the peer gone.
- ``SIGSTOP``: the process freezes with its connection open (like a hung machine); only the
  heartbeat timeout frees the job.

It also times the decoder on the 100,000 generated malformed messages of
``tests/test_protocol_fuzz.py`` (inputs per second).
"""
from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mimo.pipeline.backends import load_backend  # noqa: E402
from server import protocol as P  # noqa: E402
from server.client import Client  # noqa: E402
from server.core import Server  # noqa: E402

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
       b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\r\xefF\xb8\x00\x00"
       b"\x00\x00IEND\xaeB`\x82")


def _holder(address: str) -> subprocess.Popen:
    script = f"""
import sys, time, numpy as np
sys.path.insert(0, {str(ROOT)!r})
from server.client import Client
from server import protocol as P
c = Client({address!r}, timeout=5, heartbeat_s=0.2)
req = P.GenerateRequest(character={PNG!r}, codes=np.full((8, 16, 16, 3), 9, np.uint8), width=16, height=16)
job = c.submit(req, credit=1)
for e in c.events(job.job_id):
    if isinstance(e, P.Frame):
        print("holding", flush=True)
        while True:
            c.heartbeat()
            time.sleep(0.2)
"""
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def time_to_free(sig: int, heartbeat_timeout: float) -> float:
    srv = Server({"preview": load_backend("preview")}, bind="tcp://127.0.0.1:0",
                 heartbeat_timeout_s=heartbeat_timeout, stall_timeout_s=3600).start()
    proc = _holder(srv.address)
    try:
        with Client(srv.address, timeout=heartbeat_timeout + 30, heartbeat_s=0.2) as other:
            assert proc.stdout.readline().strip() == "holding"
            req = P.GenerateRequest(character=PNG, codes=np.full((2, 16, 16, 3), 9, np.uint8),
                                    width=16, height=16)
            job = other.submit(req)
            proc.send_signal(sig)
            t0 = time.monotonic()
            for event in other.events(job.job_id):
                if isinstance(event, P.Progress):
                    return time.monotonic() - t0
            raise RuntimeError("the queued job ended without progress")
    finally:
        proc.kill()
        proc.wait()
        srv.stop()


def decoder_rate() -> tuple[int, float]:
    import random

    import test_protocol_fuzz as fuzz

    seeds = fuzz._seed_messages()
    inputs = list(fuzz._structured_inputs(seeds))
    gen = fuzz._random_inputs(seeds, random.Random(1234))
    inputs += [next(gen) for _ in range(fuzz.N_INPUTS - len(inputs))]
    t0 = time.perf_counter()
    for frames in inputs:
        try:
            P.decode(frames)
        except P.ProtocolError:
            pass
    return len(inputs), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--heartbeat-timeout", type=float, default=10.0)
    parser.add_argument("--skip-sigstop", action="store_true", help="skip the slow heartbeat case")
    args = parser.parse_args()
    cases = [("SIGKILL", signal.SIGKILL)] + ([] if args.skip_sigstop else [("SIGSTOP", signal.SIGSTOP)])
    for name, sig in cases:
        times = [time_to_free(sig, args.heartbeat_timeout) for _ in range(args.repeats)]
        print(f"{name}: worker free for the next client after median {statistics.median(times):.3f} s, "
              f"max {max(times):.3f} s over {len(times)} runs (heartbeat timeout "
              f"{args.heartbeat_timeout:g} s; CPU, preview backend, loopback)")
    n, seconds = decoder_rate()
    print(f"decoder: {n} generated malformed messages in {seconds:.2f} s "
          f"({n / seconds:,.0f} per s), every one a ProtocolError or a message")


if __name__ == "__main__":
    main()
