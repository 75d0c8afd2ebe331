"""Jobs on a Ray cluster: one long-lived actor per GPU holding the loaded models (``mimo-server
--cluster ADDRESS``, or ``--gpus N`` on a local Ray instance the server starts).

    Blender ──ZeroMQ (CurveZMQ)──► mimo-server (front door, queue, credit)
                                       │ one thread per actor
                                       ▼
                     Ray actors ``mimo-worker-<i>`` (one per GPU, any host of the cluster)

* Placement: the server's queue is FIFO; the head job goes to an idle actor, preferring one that
  already compiled the job's frame size (:meth:`server.workers.Executor.choose`). With ``spread``
  (the default) a MIMO job that finds nothing queued behind it and every actor of some host idle
  runs on all of them as one job (:mod:`mimo.pipeline.distributed`: the actors join a fresh
  process group for the job, NCCL on GPUs, gloo on CPUs); the first actor streams the frames.
  When jobs wait, each actor takes its own: that gives the most frames per hour, and no GPU
  waits on another; a lone job on an idle host finishes sooner split.
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
        import torch

        from mimo.pipeline.backends import load_backend

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
        except Exception:
            pass
        node = ""
        try:
            import ray

            node = ray.get_runtime_context().get_node_id()
        except Exception:
            pass
        return {"worker": self.name, "host": socket.gethostname(), "pid": os.getpid(), "node": node,
                "device": self.device_name + (f" (GPU {','.join(gpus)})" if gpus else ""),
                "job": self.job_id, "compiled": sorted(self.compiled), "jobs_done": self.jobs_done,
                "backends": sorted(self.backends)}

    def gang_address(self) -> str:
        """A rendezvous address on this actor's host for a split job's process group."""
        import ray

        from mimo.pipeline.distributed import free_port

        ip = ray.util.get_node_ip_address()
        return f"tcp://{ip}:{free_port(ip)}"

    def cancel(self, job_id: str) -> None:
        with self._lock:
            self._cancel.add(job_id)

    def generate(self, job_id: str, backend: str, job: GenerationJob,
                 gang: tuple[str, int, int] | None = None):
        """Run one job; yield ``("progress", stage, step, total)``, ``("preview", index, image)``,
        ``("frame", index, image)`` in order, then ``("done", stats)`` or ``("error", kind,
        message)`` (kind: ``cancelled``, ``value``, ``oom``, ``other``).

        ``gang = (address, rank, world)``: this actor's share of a job split over ``world``
        actors (a MIMO backend); only rank 0 yields progress and frames, the others only the end.
        """
        items: queue.Queue = queue.Queue(maxsize=STREAM_AHEAD)
        sharding = None

        def cancelled() -> bool:
            return job_id in self._cancel

        def put(item) -> None:  # blocks while the server is behind; gives up once cancelled
            while True:
                try:
                    items.put(item, timeout=POLL_S)
                    return
                except queue.Full:
                    if cancelled():
                        if sharding is None:
                            raise JobCancelled() from None
                        sharding.abort = True  # the ranks stop together at the next collective
                        return

        events = JobEvents(progress=lambda s, i, n: put(("progress", str(s), int(i), int(n))),
                           frame=lambda i, im: put(("frame", int(i), np.ascontiguousarray(im))),
                           preview=lambda i, im: put(("preview", int(i), np.ascontiguousarray(im))),
                           cancelled=cancelled)
        if gang is not None:
            from mimo.pipeline.distributed import Sharding, close_group, open_group

            address, rank, world = gang
            if rank:  # the lead actor reports for the job
                events = JobEvents()
            else:
                events = JobEvents(progress=events.progress, frame=events.frame, preview=events.preview)

        def work() -> None:
            nonlocal sharding
            try:
                generator = self.backends[backend]
                if gang is not None:  # every rank must join, or the others wait for it
                    open_group(address, rank, world)
                    sharding = generator.pipeline.sharding = Sharding(cancelled=cancelled)
                try:
                    stats = generator.generate(job, events)
                finally:
                    if gang is not None:
                        generator.pipeline.sharding = None
                        close_group()
                if sharding is not None and sharding.abort:
                    raise JobCancelled()
                if (stats or {}).get("compiled_blocks"):
                    self.compiled.add(compile_key(job.mode, job.width, job.height, job.roi_size, job.raw))
                end = ("done", stats or {})
            except JobCancelled:
                end = ("error", "cancelled", "cancelled")
            except ValueError as exc:
                end = ("error", "value", str(exc))
            except Exception as exc:
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
        spread: run a lone MIMO job over every actor of an idle host (see the module docstring).
    """

    def __init__(self, address: str | None, backends: list[str], weights: str | None = None,
                 dtype: str | None = None, compile: bool | None = None, workers: int | None = None,
                 local_gpus: int | None = None, local_cpus: int | None = None, spread: bool = True):
        self.address, self.backends, self.spread = address, list(backends), spread
        self.weights, self.dtype, self.compile = weights, dtype, compile
        self.workers, self.local_gpus, self.local_cpus = workers, local_gpus, local_cpus
        self.slots: list[Slot] = []
        self._actors: list = []
        self._owns_ray = False

    def start(self) -> RayExecutor:
        ray = _import_ray()
        if not ray.is_initialized():
            if self.address is None:
                ray.init(num_gpus=self.local_gpus, num_cpus=self.local_cpus, namespace=NAMESPACE,
                         include_dashboard=False, log_to_driver=False)
                self._owns_ray = True
            else:
                try:
                    ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=False)
                except Exception as exc:
                    raise ValueError(f"cluster: cannot connect to the Ray cluster at {self.address!r}: "
                                     f"{exc}") from None
        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = self.workers if self.workers is not None else gpus
        if count < 1:
            raise ValueError("gpus: the Ray cluster has no GPUs; give the number of CPU workers "
                             "(--gpus N) to run on CPUs")
        if gpus and count > gpus:
            raise ValueError(f"gpus: {count} workers asked for, the Ray cluster has {gpus} GPUs")
        self._node_of = {}
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
            self._node_of[slot.index] = info["node"]
        hosts = sorted({s.host for s in self.slots})
        self.device_name = (f"ray cluster {self.address or 'local'}: {count} workers "
                            f"({'GPU' if gpus else 'CPU'}) on {', '.join(hosts)}")
        return self

    def stop(self) -> None:
        ray = _import_ray()
        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:
                pass
        self._actors.clear()
        if self._owns_ray:
            ray.shutdown()

    def actor(self, slot: Slot):
        return self._actors[slot.index]

    def choose(self, key: str, idle: list[Slot], spread: bool = False) -> list[Slot]:
        """One idle actor (see :meth:`Executor.choose`), or with ``spread`` and :attr:`spread`
        every actor of a host whose actors are all idle and alive (at least two; the host with the
        most, then the lowest index, leads)."""
        if spread and self.spread:
            free = {s.index for s in idle if s.alive}
            hosts: dict[str, list[Slot]] = {}
            for s in self.slots:
                hosts.setdefault(self._node_of.get(s.index, s.host), []).append(s)
            gangs = [g for g in hosts.values() if len(g) > 1 and all(s.index in free for s in g)]
            if gangs:
                return max(gangs, key=lambda g: (len(g), -g[0].index))
        return super().choose(key, idle)

    def run(self, slots: list[Slot], backend: str, job: GenerationJob, events: JobEvents,
            job_id: str) -> dict:
        ray = _import_ray()
        from ray.exceptions import RayActorError

        lead = slots[0]
        actors = [self._actors[s.index] for s in slots]
        options = dict(num_returns="streaming", _generator_backpressure_num_objects=STREAM_AHEAD)
        if len(slots) == 1:
            streams = [actors[0].generate.options(**options).remote(job_id, backend, job)]
        else:  # one job split over the host's actors: a fresh group at the lead's address
            address = ray.get(actors[0].gang_address.remote())
            streams = [a.generate.options(**options).remote(job_id, backend, job, (address, r, len(slots)))
                       for r, a in enumerate(actors)]
        told, ended = False, {}
        try:
            while True:
                pending = [st for i, st in enumerate(streams) if i not in ended]
                ready, _ = ray.wait(pending, num_returns=1, timeout=POLL_S)
                if events.cancelled() and not told:
                    for a in actors:  # the actor's backend stops at its next check
                        a.cancel.remote(job_id)
                    told = True
                for stream in ready:
                    i = streams.index(stream)
                    try:
                        item = ray.get(next(stream))
                    except StopIteration:
                        raise RuntimeError(f"worker {slots[i].name} on {slots[i].host}: the job's "
                                           "stream ended without a result") from None
                    except RayActorError:
                        self._fail_gang(slots, i)
                        raise
                    if item[0] in ("done", "error"):
                        ended[i] = item
                        if item[0] == "error" and item[1] not in ("cancelled", "value") and len(slots) > 1:
                            self._fail_gang(slots, i)  # one rank failed alone: the others would wait
                            if i:
                                raise RuntimeError(f"worker {slots[i].name} on {slots[i].host}: {item[2]}")
                            break
                    elif i == 0:
                        getattr(events, item[0])(*item[1:])
                if len(ended) == len(streams) or (0 in ended and ended[0][1] not in ("cancelled", "value")
                                                  and ended[0][0] == "error"):
                    break
            for s in slots:
                s.jobs_done += 1
            end = ended[0]
            if end[0] == "done":
                if end[1].get("compiled_blocks"):
                    for s in slots:
                        s.compiled.add(compile_key(job.mode, job.width, job.height, job.roi_size, job.raw))
                return dict(end[1], workers=[s.name for s in slots])
            _, what, message = end
            if what == "cancelled":
                raise JobCancelled()
            if what == "value":
                raise ValueError(message)
            if what == "oom":
                raise MemoryError(message)
            raise RuntimeError(f"worker {lead.name} on {lead.host}: {message}")
        except RayActorError as exc:
            dead = [s.name for s in slots if not s.alive] or [lead.name]
            log.warning("worker %s died during job %s", ", ".join(dead), job_id)
            raise RuntimeError(f"worker {', '.join(dead)} on {lead.host} ({lead.device}) died during "
                               f"the job; it is being restarted and the other workers go on "
                               f"({type(exc).__name__})") from None
        except BaseException:
            if not told:  # the server gave up on the job (frame callback cancelled): stop the actors
                for a in actors:
                    try:
                        a.cancel.remote(job_id)
                    except Exception:
                        pass
            raise

    def _fail_gang(self, slots: list[Slot], failed: int) -> None:
        """A member of ``slots`` died or failed: the others may be blocked in a collective, so
        every member is restarted (Ray reloads its models) and revived."""
        ray = _import_ray()
        for i, s in enumerate(slots):
            if i != failed and len(slots) > 1:
                try:
                    ray.kill(self._actors[s.index], no_restart=False)
                except Exception:
                    pass
            self._revive(s)

    def _revive(self, slot: Slot) -> None:
        """Take ``slot`` out of placement until Ray has restarted its actor (it answers ``info``)."""
        ray = _import_ray()
        slot.alive = False
        slot.compiled.clear()  # a new process compiles anew

        def wait() -> None:
            while self._actors:
                try:
                    info = ray.get(self._actors[slot.index].info.remote(), timeout=60)
                except Exception:
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
            except Exception:
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
    except Exception as exc:
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

