"""Where the server's jobs run: an executor owns one or more *slots* (a GPU worker each) and runs
one job at a time on each.

* :class:`LocalExecutor`: one slot, the backends loaded in this process (the single-GPU server).
* :class:`server.cluster.RayExecutor`: one slot per Ray actor, each a long-lived process holding
  its own loaded models on one GPU of a Ray cluster (``mimo-server --cluster`` / ``--gpus``).

The server (:mod:`server.core`; the threads' code is :mod:`server.jobs`) runs one worker thread
per slot. The thread takes the queue's head job when the executor picks its slot for it
(:meth:`Executor.choose`: an idle slot, preferring one that already compiled the job's frame size;
or, for a MIMO job with nothing queued behind it, every slot of a host whose slots are all idle,
led by this one), builds the job, and calls
:meth:`Executor.run`, which reports through the same :class:`~mimo.pipeline.job.JobEvents` as a
local backend: progress, previews and frames in order (each frame waits for the client's credit in
the calling thread).
"""
from __future__ import annotations

import abc
import dataclasses

from mimo.pipeline.job import Backend, GenerationJob, JobEvents


@dataclasses.dataclass(eq=False)
class Slot:
    """One worker: ``name`` (stable id), ``host`` and ``device`` (for status), the job it runs
    (``job_id``, "" when idle) and the call layouts it has compiled (``compiled``, e.g.
    ``"exact 784x784"``)."""

    index: int
    name: str
    host: str = ""
    device: str = ""
    job_id: str = ""
    compiled: set = dataclasses.field(default_factory=set)
    jobs_done: int = 0
    alive: bool = True


def compile_key(mode: str, width: int, height: int, roi_size: int, raw: bool) -> str:
    """The layout a job compiles the UNet for: its mode and generation size (the ROI square, or
    the output size for raw jobs)."""
    w, h = (width, height) if raw else (roi_size, roi_size)
    return f"{mode} {w}x{h}"


class Executor(abc.ABC):
    """Runs jobs on its :attr:`slots`. ``backends`` names what every slot has loaded."""

    slots: list[Slot]
    backends: list[str]
    device_name: str = ""

    def start(self) -> Executor:
        return self

    def stop(self) -> None:  # noqa: B027 (optional hook: executors without resources keep this)
        pass

    def choose(self, key: str, idle: list[Slot], spread: bool = False) -> list[Slot]:
        """The slots for a job whose compile key is ``key``, among the idle ones, the one that leads
        first: one slot that already compiled it, else the one that has compiled the fewest
        layouts (keeping compiled ones for their sizes), lowest index first. ``spread`` (the job can
        be split and nothing waits behind it) lets an executor that can split a job return several
        slots. [] when none is free."""
        live = [s for s in idle if s.alive]
        if not live:
            return []
        warm = [s for s in live if key in s.compiled]
        return [min(warm or live, key=lambda s: (0 if warm else len(s.compiled), s.index))]

    @abc.abstractmethod
    def run(self, slots: list[Slot], backend: str, job: GenerationJob, events: JobEvents,
            job_id: str) -> dict:
        """Run ``job`` on ``slots`` (from :meth:`choose`) with the named backend; report through
        ``events``; return the backend's stats. Raises like :meth:`Backend.generate` (``ValueError`` for bad input,
        ``JobCancelled``), and ``RuntimeError`` when the worker itself fails."""

    def describe(self) -> list[dict]:
        """One row per slot for status displays."""
        return [{"worker": s.name, "host": s.host, "device": s.device, "job": s.job_id,
                 "compiled": sorted(s.compiled), "jobs_done": s.jobs_done, "alive": s.alive}
                for s in self.slots]


class LocalExecutor(Executor):
    """The backends loaded in this process, one job at a time (the server's classic worker)."""

    def __init__(self, backends: dict[str, Backend], device_name: str = ""):
        self._backends = dict(backends)
        self.backends = list(self._backends)
        self.device_name = device_name
        self.slots = [Slot(0, "local", device=device_name)]

    def run(self, slots: list[Slot], backend: str, job: GenerationJob, events: JobEvents,
            job_id: str) -> dict:
        return self._backends[backend].generate(job, events)
