"""Jobs on a Ray cluster: one long-lived actor per GPU holding the loaded models (``mimo-server
--cluster ADDRESS``, or ``--gpus N`` on a local Ray instance the server starts).

    Blender ──ZeroMQ (CurveZMQ)──► mimo-server (front door, queue, credit)
                                       │ one thread per actor
                                       ▼
                     Ray actors ``mimo-worker-<i>`` (one per GPU, any host of the cluster)

* Placement: the server's queue is FIFO; the head job goes to an idle actor, preferring one that
  already compiled the job's frame size (:meth:`server.workers.Executor.choose`).
* Streaming: :meth:`MimoWorker.generate` is a Ray streaming generator. The backend runs in a
  thread of the actor and its events (progress, previews, frames, then the end) are yielded in
  order; Ray's generator back-pressure (:data:`STREAM_AHEAD` unconsumed items) pauses the actor
  when the server waits for the client's credit, so neither side buffers a whole job.
* Cancel and client death: the server's cancel flag (client cancel, disconnect, stall) is polled
  while waiting for the next item and forwarded to the actor (:meth:`MimoWorker.cancel`, served by a
  second thread of the actor), whose backend then stops at its next check.
* Failures: an actor that dies (process killed, host lost) fails only the job it was running, with
  an error naming the worker and host; Ray restarts the actor (reloading its models) and it takes
  jobs again. The other actors' jobs go on.

Security: Ray's own ports carry no authentication the server relies on; the cluster's network must
be private (a VPC, a firewall that admits only the cluster's hosts). Clients never talk to Ray:
the ZeroMQ front door keeps CurveZMQ (README, "Scaling out").

Ray is an optional dependency (the ``cluster`` extra); this module imports it only when used.
"""
from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time

import numpy as np

from mimo.pipeline.job import GenerationJob, JobCancelled, JobEvents

from .workers import Executor, Slot, compile_key

log = logging.getLogger("mimo.server")

NAMESPACE = "mimo"
ACTOR_PREFIX = "mimo-worker-"
#: items (frames, progress) an actor may produce ahead of the server's consumption
STREAM_AHEAD = 4
#: seconds between cancel-flag polls while waiting for the actor's next item
POLL_S = 0.1


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("cluster: Ray is not installed; install the cluster extra "
                         "(pip install 'mimo-blender[cluster]')") from None
    return ray


class MimoWorker:
    """The actor body (wrapped with ``ray.remote`` by :class:`RayExecutor`): the backends loaded
    once on this process's GPU (or the CPU), one job at a time, a second thread for cancel and info.
    """

    def __init__(self, name: str, backends: list[str], weights: str | None = None,
                 dtype: str | None = None, compile: bool | None = None):
        from mimo.pipeline.backends import load_backend

        import torch

        self.name = name
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device_name = (f"cuda {torch.cuda.get_device_name(0)}" if self.device == "cuda"
                            else "cpu")
        self.backends = {b: load_backend(b, weights=weights, device=self.device, dtype=dtype,
                                         compile=compile) for b in backends}
        self.job_id = ""
        self.compiled: set[str] = set()
        self.jobs_done = 0
        self._cancel: set[str] = set()
        self._lock = threading.Lock()

    def info(self) -> dict:
        gpus = []
        try:
            import ray

            gpus = [str(g) for g in ray.get_gpu_ids()]
        except Exception:  # noqa: BLE001 - outside Ray (tests of the class itself)
            pass
        return {"worker": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                "device": self.device_name + (f" (GPU {','.join(gpus)})" if gpus else ""),
                "job": self.job_id, "compiled": sorted(self.compiled), "jobs_done": self.jobs_done,
                "backends": sorted(self.backends)}

    def cancel(self, job_id: str) -> None:
        with self._lock:
            self._cancel.add(job_id)

    def generate(self, job_id: str, backend: str, job: GenerationJob):
        """Run one job; yield ``("progress", stage, step, total)``, ``("preview", index, image)``,
        ``("frame", index, image)`` in order, then ``("done", stats)`` or ``("error", kind,
        message)`` (kind: ``cancelled``, ``value``, ``oom``, ``other``)."""
        items: queue.Queue = queue.Queue(maxsize=STREAM_AHEAD)

        def cancelled() -> bool:
            return job_id in self._cancel

        def put(item) -> None:  # blocks while the server is behind; gives up once cancelled
            while True:
                try:
                    items.put(item, timeout=POLL_S)
                    return
                except queue.Full:
                    if cancelled():
                        raise JobCancelled()

        events = JobEvents(progress=lambda s, i, n: put(("progress", str(s), int(i), int(n))),
                           frame=lambda i, im: put(("frame", int(i), np.ascontiguousarray(im))),
                           preview=lambda i, im: put(("preview", int(i), np.ascontiguousarray(im))),
                           cancelled=cancelled)

        def work() -> None:
            try:
                stats = self.backends[backend].generate(job, events)
                if (stats or {}).get("compiled_blocks"):
                    self.compiled.add(compile_key(job.mode, job.width, job.height, job.roi_size, job.raw))
                end = ("done", stats or {})
            except JobCancelled:
                end = ("error", "cancelled", "cancelled")
            except ValueError as exc:
                end = ("error", "value", str(exc))
            except Exception as exc:  # noqa: BLE001 - reported to the server as the job's failure
                oom = "out of memory" in str(exc).lower() or isinstance(exc, MemoryError)
                end = ("error", "oom" if oom else "other", f"{type(exc).__name__}: {exc}")
            while True:  # the end always goes out, even past a full queue
                try:
                    items.put(end, timeout=POLL_S)
                    return
                except queue.Full:
                    continue

        self.job_id = job_id
        thread = threading.Thread(target=work, name=f"job-{job_id}", daemon=True)
        thread.start()
        try:
            while True:
                item = items.get()
                yield item
                if item[0] in ("done", "error"):
                    break
        finally:
            thread.join()
            with self._lock:
                self._cancel.discard(job_id)
            self.job_id = ""
            self.jobs_done += 1


class RayExecutor(Executor):
    """One :class:`MimoWorker` actor per GPU of a Ray cluster (or ``workers`` CPU actors on a
    cluster without GPUs, for tests and previews).

    Args:
        address: Ray address (``ray://HOST:10001``, ``HOST:6379``, ``auto``) or None to start a
            local Ray instance in this process (with ``local_gpus`` GPUs).
        backends, weights, dtype, compile: what every actor loads (the weights folder must exist
            at that path on every host).
        workers: number of actors (None: one per GPU of the cluster).
    """

    def __init__(self, address: str | None, backends: list[str], weights: str | None = None,
                 dtype: str | None = None, compile: bool | None = None, workers: int | None = None,
                 local_gpus: int | None = None, local_cpus: int | None = None):
        self.address, self.backends = address, list(backends)
        self.weights, self.dtype, self.compile = weights, dtype, compile
        self.workers, self.local_gpus, self.local_cpus = workers, local_gpus, local_cpus
        self.slots: list[Slot] = []
        self._actors: list = []
        self._owns_ray = False

    def start(self) -> "RayExecutor":
        ray = _import_ray()
        if not ray.is_initialized():
            if self.address is None:
                ray.init(num_gpus=self.local_gpus, num_cpus=self.local_cpus, namespace=NAMESPACE,
                         include_dashboard=False, log_to_driver=False)
                self._owns_ray = True
            else:
                try:
                    ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=False)
                except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ...
                    raise ValueError(f"cluster: cannot connect to the Ray cluster at {self.address!r}: "
                                     f"{exc}") from None
        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = self.workers if self.workers is not None else gpus
        if count < 1:
            raise ValueError("gpus: the Ray cluster has no GPUs; give the number of CPU workers "
                             "(--gpus N) to run on CPUs")
        if gpus and count > gpus:
            raise ValueError(f"gpus: {count} workers asked for, the Ray cluster has {gpus} GPUs")
        remote = ray.remote(MimoWorker)
        options = dict(max_restarts=-1, max_task_retries=0, max_concurrency=4, namespace=NAMESPACE,
                       **({"num_gpus": 1} if gpus else {"num_cpus": 1}))
        for i in range(count):
            name = f"{ACTOR_PREFIX}{i}"
            try:  # a previous server's actor of the same name is replaced
                ray.kill(ray.get_actor(name, namespace=NAMESPACE))
            except ValueError:
                pass
            self._actors.append(remote.options(name=name, **options).remote(
                name, self.backends, self.weights, self.dtype, self.compile))
            self.slots.append(Slot(i, name))
        infos = ray.get([a.info.remote() for a in self._actors])  # waits for the models to load
        for slot, info in zip(self.slots, infos):
            slot.host, slot.device = info["host"], info["device"]
        hosts = sorted({s.host for s in self.slots})
        self.device_name = (f"ray cluster {self.address or 'local'}: {count} workers "
                            f"({'GPU' if gpus else 'CPU'}) on {', '.join(hosts)}")
        return self

    def stop(self) -> None:
        ray = _import_ray()
        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001
                pass
        self._actors.clear()
        if self._owns_ray:
            ray.shutdown()

    def actor(self, slot: Slot):
        return self._actors[slot.index]

    def run(self, slot: Slot, backend: str, job: GenerationJob, events: JobEvents, job_id: str) -> dict:
        ray = _import_ray()
        from ray.exceptions import RayActorError

        actor = self._actors[slot.index]
        stream = actor.generate.options(num_returns="streaming",
                                        _generator_backpressure_num_objects=STREAM_AHEAD
                                        ).remote(job_id, backend, job)
        told = False
        try:
            while True:
                ready, _ = ray.wait([stream], timeout=POLL_S)
                if events.cancelled() and not told:
                    actor.cancel.remote(job_id)  # the actor's backend stops at its next check
                    told = True
                if not ready:
                    continue
                try:
                    item = ray.get(next(stream))
                except StopIteration:
                    raise RuntimeError(f"worker {slot.name} on {slot.host}: the job's stream ended "
                                       "without a result") from None
                kind = item[0]
                if kind == "progress":
                    events.progress(*item[1:])
                elif kind == "frame":
                    events.frame(*item[1:])
                elif kind == "preview":
                    events.preview(*item[1:])
                elif kind == "done":
                    if job.mode and item[1].get("compiled_blocks"):
                        slot.compiled.add(compile_key(job.mode, job.width, job.height, job.roi_size, job.raw))
                    slot.jobs_done += 1
                    return item[1]
                else:
                    _, what, message = item
                    if what == "cancelled":
                        raise JobCancelled()
                    if what == "value":
                        raise ValueError(message)
                    if what == "oom":
                        raise MemoryError(message)
                    raise RuntimeError(f"worker {slot.name} on {slot.host}: {message}")
        except RayActorError as exc:
            slot.jobs_done += 1
            log.warning("worker %s on %s died during job %s", slot.name, slot.host, job_id)
            self._revive(slot)
            raise RuntimeError(f"worker {slot.name} on {slot.host} ({slot.device}) died during the "
                               f"job; it is being restarted and the other workers go on "
                               f"({type(exc).__name__})") from None
        except BaseException:
            if not told:  # the server gave up on the job (frame callback cancelled): stop the actor
                try:
                    actor.cancel.remote(job_id)
                except Exception:  # noqa: BLE001
                    pass
            raise

    def _revive(self, slot: Slot) -> None:
        """Take ``slot`` out of placement until Ray has restarted its actor (it answers ``info``)."""
        ray = _import_ray()
        slot.alive = False
        slot.compiled.clear()  # a new process compiles anew

        def wait() -> None:
            while self._actors:
                try:
                    info = ray.get(self._actors[slot.index].info.remote(), timeout=60)
                except Exception:  # noqa: BLE001 - still restarting
                    time.sleep(0.5)
                    continue
                slot.host, slot.device, slot.alive = info["host"], info["device"], True
                log.info("worker %s on %s is back", slot.name, slot.host)
                return

        threading.Thread(target=wait, name=f"revive-{slot.name}", daemon=True).start()

    def describe(self, timeout_s: float = 2.0) -> list[dict]:
        """The actors' own view (host, device, job, compiled sizes); a worker that does not answer
        in ``timeout_s`` (restarting, or busy loading) is shown from the server's records."""
        return worker_rows(self._actors, self.slots, timeout_s)


def worker_rows(actors: list, slots: list[Slot] | None = None, timeout_s: float = 2.0) -> list[dict]:
    ray = _import_ray()
    refs = [a.info.remote() for a in actors]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    rows = []
    for i, ref in enumerate(refs):
        if ref in ready:
            try:
                rows.append(dict(ray.get(ref), alive=True))
                continue
            except Exception:  # noqa: BLE001 - died meanwhile
                pass
        s = slots[i] if slots else None
        rows.append({"worker": s.name if s else f"{ACTOR_PREFIX}{i}", "host": s.host if s else "?",
                     "device": s.device if s else "?", "job": s.job_id if s else "",
                     "compiled": sorted(s.compiled) if s else [], "alive": False})
    return rows


def cluster_status(address: str, timeout_s: float = 5.0) -> list[dict]:
    """Rows for ``mimo-server status --cluster ADDRESS``: every ``mimo-worker-*`` actor of the
    cluster, asked directly (host, device, running job, compiled sizes, jobs done)."""
    ray = _import_ray()
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cluster: cannot connect to the Ray cluster at {address!r}: {exc}") from None
    try:
        names = sorted((a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                        if isinstance(a, dict) and a.get("namespace") == NAMESPACE
                        and a["name"].startswith(ACTOR_PREFIX)),
                       key=lambda n: int(n[len(ACTOR_PREFIX):]))
        actors = [ray.get_actor(n, namespace=NAMESPACE) for n in names]
        return worker_rows(actors, None, timeout_s)
    finally:
        ray.shutdown()


def format_rows(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        state = r.get("job") or ("idle" if r.get("alive", True) else "not answering")
        out.append(f"  {r['worker']:<14} {r['host']:<20} {r['device']:<28} {state:<18} "
                   f"jobs {r.get('jobs_done', '?')}, compiled: {', '.join(r.get('compiled', [])) or '-'}")
    return out

