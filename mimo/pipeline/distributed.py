"""One generation over several processes, one per GPU, of a ``torch.distributed`` group.

The context windows of a denoising step are independent given the latents (docs/MIMO.md §7, §7.1),
so every process runs the whole pipeline on the same inputs with the same seed and differs only in
*which* work it does:

* **denoising**: each rank runs the UNet on its own contiguous block of the step's windows (fast
  mode: of the step's window groups), adding into a zero per-frame sum exactly as one process does;
  the sums are then all-reduced (``SUM``) so every rank holds the sum over all windows, divides by
  the per-frame window count (the same on every rank: it depends only on the windows, so it is
  computed locally, not communicated) and takes the same DDIM step. Every rank therefore keeps
  identical latents. A frame covered by at most two windows (the default 24-frame windows with
  overlap 4) gets ``a + b`` on every path, bit for bit; with three or more windows the addition
  order may differ (float rounding).
* **VAE encode of the scene and decode**: split by whole VAE chunks (the same chunks one process
  runs, so each chunk's numbers are the same), gathered so every rank has every frame. Decoding
  runs in rounds of one chunk per rank, so frames still stream out in order as they are decoded.
* **CLIP, reference UNet, pose guider**: computed on every rank (once per job; the pose guider is
  about 35 GFLOP per 784² frame, under 1 % of one denoising step's work per frame, and gathering
  its 320-channel features would move 6 MB per frame).

A process that is cancelled alone would leave the others blocked in a collective, so cancelling
is collective too: :class:`Sharding` holds the real ``cancelled()`` poll and every collective first
all-reduces the ranks' cancel flags; when any is set, every rank raises ``JobCancelled`` at the same
point. The pipeline itself is given a poll that never fires.

Entry points: :func:`sharding_from_env` (under ``torchrun`` or :func:`spawn`), :func:`spawn` (start N
worker processes with ``torch.multiprocessing`` and run a function in each), :func:`open_group`
(join a group at an explicit address, for server workers that gang up for one job).
"""
from __future__ import annotations

import datetime
import os
import socket
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist

from .job import JobCancelled

#: how long a collective may wait for the other ranks before the job fails (a crashed rank)
DEFAULT_TIMEOUT_S = 600.0


class Sharding:
    """This process's share of one generation, and the collectives that combine the shares.

    Set ``pipeline.sharding = Sharding(...)`` on a :class:`~mimo.pipeline.pipeline.MimoPipeline`
    (None, the default, is the one-process path). ``cancelled()`` is polled at every collective
    (see the module docstring). ``stats`` accumulates seconds spent in collectives.
    """

    def __init__(self, group=None, cancelled: Callable[[], bool] | None = None):
        if not dist.is_initialized():
            raise RuntimeError("Sharding: torch.distributed is not initialised (use sharding_from_env, "
                               "spawn or open_group)")
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        self.cancelled = cancelled or (lambda: False)
        self.abort = False  # set by a rank that must stop (e.g. its client left): the others follow
        backend = dist.get_backend(group)
        self.device = (torch.device("cuda", torch.cuda.current_device()) if backend == "nccl"
                       else torch.device("cpu"))
        self.stats = {"reduce_s": 0.0, "reduces": 0, "gather_s": 0.0, "gathers": 0}

    # -- which work is mine --------------------------------------------------------------------
    def block(self, count: int, rank: int | None = None) -> range:
        """Indices of this rank's contiguous block of ``count`` items (blocks differ by at most one;
        ranks past the items get an empty block)."""
        r = self.rank if rank is None else rank
        return range(count * r // self.world, count * (r + 1) // self.world)

    def mine(self, items: list) -> list:
        """This rank's contiguous block of ``items`` (windows, or fast mode's window groups)."""
        return [items[i] for i in self.block(len(items))]

    # -- collectives ---------------------------------------------------------------------------
    def check_cancel(self) -> None:
        """Collective: raise ``JobCancelled`` on every rank when any rank's poll says so."""
        flag = torch.tensor([1.0 if (self.abort or self.cancelled()) else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group)
        if flag.item() > 0:
            raise JobCancelled()

    def reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Collective: ``t`` summed over the ranks (every rank gets the sum).

        Shapes:
            t: any; returned with the same shape, dtype and device
        """
        self.check_cancel()
        t0 = time.perf_counter()
        x = t.to(self.device).contiguous()
        dist.all_reduce(x, op=dist.ReduceOp.SUM, group=self.group)
        x = x.to(t.device)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        self.stats["reduce_s"] += time.perf_counter() - t0
        self.stats["reduces"] += 1
        return x

    def gather_rows(self, mine: torch.Tensor | None, counts: list[int], row_shape: tuple,
                    dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Collective: every rank's rows (rank order) concatenated; rank r contributes ``counts[r]``
        rows of ``row_shape`` (``mine`` may be None when its count is 0).

        Shapes:
            mine (counts[rank], *row_shape) -> (sum(counts), *row_shape) on ``device``
        """
        self.check_cancel()
        t0 = time.perf_counter()
        most = max(counts)
        buf = torch.zeros((most, *row_shape), dtype=dtype, device=self.device)
        if counts[self.rank]:
            buf[:counts[self.rank]] = mine.to(self.device, dtype)
        parts = [torch.empty_like(buf) for _ in range(self.world)]
        dist.all_gather(parts, buf, group=self.group)
        out = torch.cat([p[:n] for p, n in zip(parts, counts) if n]).to(device)
        self.stats["gather_s"] += time.perf_counter() - t0
        self.stats["gathers"] += 1
        return out

    # -- the pipeline's stages, split by frames -------------------------------------------------
    def encode_frames(self, pipe, frames: list[np.ndarray], width: int, height: int,
                      chunk: int) -> torch.Tensor:
        """VAE latents of ``frames`` (as ``pipe.encode_vae`` chunk by chunk), each rank encoding a
        contiguous block of whole chunks.

        Shapes:
            frames: n (H_i, W_i, 3) uint8 -> (n, 4, height/8, width/8) on the pipeline device
        """
        from .frames import frame_chunks

        n = len(frames)
        chunks = -(-n // chunk)
        spans = [self.block(chunks, r) for r in range(self.world)]
        counts = [min(n, s.stop * chunk) - min(n, s.start * chunk) for s in spans]
        a, b = min(n, spans[self.rank].start * chunk), min(n, spans[self.rank].stop * chunk)
        mine = None
        if b > a:
            mine = torch.cat([pipe.encode_vae(c, chunk)
                              for c in frame_chunks(frames[a:b], width, height, True, chunk)])
        return self.gather_rows(mine, counts, (4, height // 8, width // 8), pipe.dtype, pipe.device)

    def decode_frames(self, pipe, latents: torch.Tensor, chunk: int):
        """Like ``pipe.decode_vae``: yield (n, H, W, 3) float32 frames in order, ``chunk`` at a time,
        on every rank; in each round every rank decodes one chunk.

        Shapes:
            latents (1, 4, F, h, w)
        """
        frames, h, w = latents.shape[2], latents.shape[3], latents.shape[4]
        starts = list(range(0, frames, chunk))
        for first in range(0, len(starts), self.world):
            round_starts = starts[first:first + self.world]
            counts = [min(chunk, frames - s) for s in round_starts] + [0] * (self.world - len(round_starts))
            mine = None
            if self.rank < len(round_starts):
                s = round_starts[self.rank]
                mine = torch.from_numpy(next(iter(pipe.decode_vae(latents[:, :, s:s + chunk], chunk))))
            out = self.gather_rows(mine, counts, (h * 8, w * 8, 3), torch.float32, torch.device("cpu"))
            for i, s in enumerate(round_starts):
                yield out[s - round_starts[0]:s - round_starts[0] + counts[i]].numpy()
        self.check_cancel()  # a rank stopped after the last round: all stop


# -- joining a group -------------------------------------------------------------------------------
def env_rank() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (0, 1, 0 without it)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def init_from_env(device: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> torch.device | None:
    """Under ``torchrun`` (or :func:`spawn`) with more than one process: join the default group
    (NCCL on CUDA, gloo on the CPU) and return this rank's device (``cuda:LOCAL_RANK``, or the CPU
    when ``device`` says cpu). None with one process."""
    rank, world, local = env_rank()
    if world <= 1:
        return None
    cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if cuda:
        if local >= torch.cuda.device_count():
            raise ValueError(f"gpus: rank {rank} wants cuda:{local}, but this host has "
                             f"{torch.cuda.device_count()} GPUs")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s),
                                **({"device_id": torch.device("cuda", local)} if cuda else {}))
    return torch.device("cuda", local) if cuda else torch.device("cpu")


def sharding_from_env(pipe, device: str | None = None, cancelled=None) -> Sharding | None:
    """Under several processes: join the group and set ``pipe.sharding``; None with one process."""
    if init_from_env(device) is None:
        return None
    pipe.sharding = Sharding(cancelled=cancelled)
    return pipe.sharding


def open_group(address: str, rank: int, world: int, backend: str | None = None,
               timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Join a fresh default group at ``tcp://HOST:PORT`` (closing any previous one): how server
    workers that already hold their models gang up for one job."""
    if dist.is_initialized():
        dist.destroy_process_group()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend, init_method=address, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))


def close_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for a group's rendezvous on this host)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def spawn(fn: Callable, args: tuple, nprocs: int) -> None:
    """Run ``fn(*args)`` in ``nprocs`` new processes that form one group (the environment torchrun
    would give them: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Raises when a process
    fails (the others are then terminated by ``torch.multiprocessing``)."""
    import torch.multiprocessing as mp

    port = free_port()
    mp.spawn(_spawned, args=(nprocs, port, fn, args), nprocs=nprocs, join=True)


def _spawned(rank: int, world: int, port: int, fn: Callable, args: tuple) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        fn(*args)
    finally:
        close_group()


# -- `mimo generate --gpus N` ----------------------------------------------------------------------
def under_launcher() -> bool:
    """True inside a process started by ``torchrun`` or :func:`spawn` (its group is to be joined)."""
    return "WORLD_SIZE" in os.environ


def launch_cli(run: Callable, args) -> int:
    """``mimo generate --gpus N``: check the request, then run ``run(args)`` in N processes (one per
    GPU, or N CPU processes with ``--device cpu``) that generate the job together; rank 0 writes."""
    import torch.multiprocessing as mp

    from mimo.cli_errors import CommandFailed, UsageError

    n = args.gpus
    if args.preview:
        raise UsageError("--gpus", "splits the MIMO pipeline over GPUs; the preview backend has nothing "
                                   "to split (drop --gpus or use --weights)")
    if args.device is None or torch.device(args.device).type == "cuda":
        have = torch.cuda.device_count()
        if have < n:
            cpu = " (--device cpu runs N CPU processes instead, for testing)" if not have else ""
            raise UsageError("--gpus", f"{n} GPUs asked for, this host has {have}{cpu}")
        if args.device not in (None, "cuda"):
            raise UsageError("--device", f"with --gpus each process takes its own GPU (cuda:0.."
                                         f"cuda:{n - 1}); give --device cuda or leave it out, "
                                         f"got {args.device!r}")
    elif torch.device(args.device).type != "cpu":
        raise UsageError("--device", f"--gpus runs on cuda or cpu, got {args.device!r}")
    try:
        spawn(run, (args,), nprocs=n)
    except mp.ProcessRaisedException as exc:  # one line: the failing rank's own message
        lines = [line for line in str(exc).splitlines() if line.strip()]
        last = lines[-1] if lines else str(exc)
        kind, _, message = last.partition(": ")
        if kind.endswith("UsageError"):
            arg, _, rest = message.partition(": ")
            raise UsageError(arg, rest) from None
        raise CommandFailed(message or last) from None
    except mp.ProcessExitedException as exc:
        raise CommandFailed(f"a worker process died ({exc}); the job was not finished") from None
    return 0


def join_cli(args) -> int:
    """In each of ``--gpus N``'s processes: join the group, point ``args.device`` at this rank's
    device, silence ranks other than 0. Returns the rank (0 with one process)."""
    import sys

    device = init_from_env(args.device)
    if device is None:
        return 0
    args.device = str(device)
    rank = dist.get_rank()
    if rank:
        args.quiet = True
        sys.stderr = open(os.devnull, "w")  # rank 0 reports for the job (failures reach the launcher)
    return rank


def attach(backend) -> Sharding | None:
    """Give a loaded MIMO backend's pipeline this process's share of the job (no-op alone)."""
    if not dist.is_initialized() or not hasattr(backend, "pipeline"):  # the preview has no pipeline
        return None
    backend.pipeline.sharding = Sharding()
    return backend.pipeline.sharding
