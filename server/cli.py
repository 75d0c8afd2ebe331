"""The ``mimo-server`` command.

    mimo-server [serve] [--bind tcp://127.0.0.1:5555 ...] [--backend preview|mimo] [--weights DIR]
                        [--device cuda|cpu] [--curve DIR] [--insecure] [--heartbeat-timeout S]
                        [--stall-timeout S] [--gpus all|N] [--cluster ADDRESS]
    mimo-server status --connect tcp://HOST:PORT [--curve DIR] [--timeout S]
    mimo-server status --cluster ADDRESS
    mimo-server keys generate DIR [--client NAME]
    mimo-server env
"""
from __future__ import annotations

import argparse
import logging
import sys

SUBCOMMANDS = ("serve", "status", "keys", "env")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="mimo-server", description="MIMO GPU server (ZeroMQ)")
    parser.add_argument("--version", action="version", version=f"mimo-server {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="serve jobs (the default command)")
    serve.add_argument("--bind", action="append", metavar="ENDPOINT",
                       help="ZeroMQ endpoint to listen on, repeatable (default: tcp://127.0.0.1:5555; "
                            "port 0 picks a free one). Only loopback addresses without --curve or "
                            "--insecure")
    from mimo.pipeline.backends import BACKENDS  # the registry: every backend the library knows

    serve.add_argument("--backend", action="append", choices=tuple(BACKENDS),
                       help="backend(s) to load and keep loaded (repeatable; default preview, plus "
                            "mimo when --weights is given)")
    serve.add_argument("--weights", help="folder with the MIMO weights (official layout)")
    serve.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    serve.add_argument("--body-models", metavar="DIR",
                       help="folder with licensed SMPL/SMPL-H/SMPL-X files (default: $MIMO_BODY_MODELS "
                            "or ~/.cache/mimo/body_models); the open body needs none")
    serve.add_argument("--dtype", default=None, choices=("fp16", "bf16", "fp32"))
    serve.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                       help="torch.compile the denoising UNet's blocks and the VAE: ~20%% faster UNet calls "
                            "and ~40%% faster VAE encodes and decodes, about 2.5 minutes of compiling at the "
                            "first job of each size (auto: on CUDA with triton)")
    serve.add_argument("--warmup", type=int, nargs="?", const=784, default=None, metavar="SIZE",
                       help="with compiled blocks, compile them at start for SIZE² jobs (default 784, the "
                            "ROI size of Blender jobs) in exact and fast mode, so the first job does not "
                            "wait; jobs sent meanwhile queue")
    serve.add_argument("--low-memory", action="store_true",
                       help="for 8 GB cards: the networks used once per job leave the GPU between uses and "
                            "windows shrink to fit (slower; mimo/pipeline/memory.py)")
    serve.add_argument("--curve", metavar="DIR", help="CurveZMQ key folder (mimo-server keys generate)")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback --bind without CurveZMQ (trusted networks only)")
    serve.add_argument("--heartbeat-timeout", type=float, default=10.0, metavar="S",
                       help="cancel a client's jobs after S seconds of silence (default %(default)s; "
                            "a client whose connection closes is seen at once)")
    serve.add_argument("--stall-timeout", type=float, default=60.0, metavar="S",
                       help="cancel a running job whose client took no frames for S seconds "
                            "(default %(default)s)")
    serve.add_argument("--max-jobs-per-client", type=int, default=None)
    serve.add_argument("--max-frames", type=int, default=None,
                       help="longest job in frames (default 2000); clients see it in the capabilities, and "
                            "the server checks requests and jobs against it")
    serve.add_argument("--verbose", "-v", action="store_true")
    serve.add_argument("--gpus", default=None, metavar="all|N",
                       help="run jobs on N GPU workers (one long-lived process per GPU, models loaded "
                            "once, one job each; needs the cluster extra): this host's GPUs, or with "
                            "--cluster the cluster's (default there: all). On a cluster without GPUs, "
                            "N CPU workers")
    serve.add_argument("--cluster", metavar="ADDRESS",
                       help="run jobs on the Ray cluster at ADDRESS (e.g. HEAD_HOST:6379, or auto) "
                            "behind this front door; the cluster's network must be private (README)")

    status = sub.add_parser("status", help="ask a running server for its capabilities and queue")
    status.add_argument("--connect", default="tcp://127.0.0.1:5555",
                        help="server endpoint, e.g. tcp://GPU_HOST:5555 (default %(default)s)")
    status.add_argument("--curve", metavar="DIR", help="key folder with server.key and CLIENT.key_secret")
    status.add_argument("--client", default="client", help="client key name in --curve (default client)")
    status.add_argument("--timeout", type=float, default=5.0)
    status.add_argument("--cluster", metavar="ADDRESS",
                        help="instead: list the Ray cluster's workers (host, GPU, job, compiled sizes)")

    keys = sub.add_parser("keys", help="CurveZMQ keys")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = keys_sub.add_parser("generate", help="create server keys and one authorized client key")
    gen.add_argument("folder")
    gen.add_argument("--client", default="client", help="name of the client key pair")

    sub.add_parser("env", help="print versions of Python, torch, CUDA and the GPU")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "serve")
    args = build_parser().parse_args(argv)
    try:
        return {"serve": _serve, "status": _status, "keys": _keys, "env": _env}[args.command](args)
    except ValueError as exc:
        print(f"mimo-server: error: {exc}", file=sys.stderr)
        return 2


def _env(args) -> int:
    from mimo.env import environment_report

    for key, value in environment_report().items():
        print(f"{key:>20}: {value}")
    return 0


def _keys(args) -> int:
    from .security import generate_keys

    paths = generate_keys(args.folder, args.client)
    print(f"server public key (give to clients): {paths['server_public']}")
    print(f"server secret key (keep here):      {paths['server_secret']}")
    print(f"client key pair (give to client):   {paths['client_secret']} (+ {paths['server_public'].name})")
    print(f"authorized client keys:             {paths['authorized']}/")
    return 0


def _status(args) -> int:
    from .client import Client, MimoClientError, load_curve_keys

    if args.cluster:  # the workers, asked through Ray (server/cluster.py)
        from .cluster import cluster_status, format_rows

        rows = cluster_status(args.cluster, args.timeout)
        print(f"{len(rows)} workers on the Ray cluster at {args.cluster}")
        for line in format_rows(rows):
            print(line)
        return 0
    scheme, sep, rest = args.connect.partition("://")
    if not sep or scheme not in ("tcp", "ipc", "inproc") or not rest:
        hint = f" (did you mean tcp://{args.connect}?)" if not sep else ""
        raise ValueError(f"connect: expected an endpoint like tcp://HOST:PORT, got {args.connect!r}{hint}")
    if not (isinstance(args.timeout, float) and args.timeout > 0):
        raise ValueError(f"timeout: expected seconds > 0, got {args.timeout}")
    curve = None
    if args.curve:
        import pathlib

        root = pathlib.Path(args.curve)
        curve = load_curve_keys(str(root / "server.key"), str(root / f"{args.client}.key_secret"))
    with Client(args.connect, timeout=args.timeout, curve=curve, name="mimo-server-status") as client:
        try:
            caps = client.hello()
            st = client.status()
        except MimoClientError as exc:
            print(f"mimo-server status: {exc}", file=sys.stderr)
            return 1
    print(f"server {caps.server} at {args.connect}, protocol {'.'.join(map(str, caps.protocol_version))}")
    print(f"  device: {caps.device or '?'}   weights: {caps.weights or '-'}")
    print(f"  backends: {', '.join(caps.backends)}   body models: {', '.join(caps.body_models)}")
    if caps.modes:
        print(f"  modes: {', '.join(caps.modes)}")
    print(f"  uptime {st.uptime_s:.0f} s, {st.jobs_done} jobs done, {st.queued} queued, "
          f"running: {st.running or '-'}; jobs of other clients: {st.other_jobs}")
    for row in st.jobs:
        print(f"    {row['job_id']} {row['state']:>8} {row['frames_sent']}/{row['num_frames']} frames "
              f"({row['backend']})")
    return 0


def _device_name(device: str | None) -> tuple[str | None, str]:
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        return device, f"{device} {torch.cuda.get_device_name(dev)}"
    return device, device


def _runs_locally(args) -> bool:
    """Whether the networks run in this process (no --cluster, at most one --gpus worker)."""
    return args.cluster is None and args.gpus in (None, "1")


def _executor(args, names: list[str]):
    """``--gpus``/``--cluster``: a started :class:`server.cluster.RayExecutor`, else None (the
    backends run in this process)."""
    gpus = args.gpus
    if gpus is not None and gpus != "all" and not (gpus.isdigit() and int(gpus) >= 1):
        raise ValueError(f"gpus: expected all or a number of workers >= 1, got {gpus!r}")
    if _runs_locally(args):
        return None
    if args.warmup is not None:
        raise ValueError("warmup: not available with --gpus/--cluster yet (each worker compiles at its "
                         "first job of a size; later jobs of that size prefer it)")
    if args.low_memory:
        raise ValueError("low-memory: not available with --gpus/--cluster yet (the workers load the "
                         "networks on their GPUs; run one mimo-server per 8 GB card instead)")
    from mimo.pipeline.backends import COMPILE_CHOICES

    from .cluster import RayExecutor

    workers = None if gpus in (None, "all") else int(gpus)
    local = None
    if args.cluster is None:
        import torch

        have = torch.cuda.device_count()
        if workers is None and have <= 1:  # --gpus all on a host of one GPU: the classic server
            return None
        if have < (workers or 2):
            raise ValueError(f"gpus: {gpus} GPU workers asked for, this host has {have} GPUs "
                             "(--cluster ADDRESS runs on a Ray cluster)")
        local = workers or have
    logging.getLogger("mimo.server").info("starting %s workers on %s", gpus or "all",
                                          args.cluster or "a local Ray instance")
    return RayExecutor(args.cluster, list(dict.fromkeys(names)), weights=args.weights, dtype=args.dtype,
                       compile=COMPILE_CHOICES[args.compile], workers=workers, local_gpus=local).start()


def _serve(args) -> int:
    from mimo.pipeline.backends import COMPILE_CHOICES, load_backend

    from .core import Server
    from .security import check_bind, load_server_keys, probe_tcp_port

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.body_models:
        import os

        from mimo.body.loading import MODELS_ENV

        os.environ[MODELS_ENV] = args.body_models
    binds = check_bind(args.bind or ["tcp://127.0.0.1:5555"], bool(args.curve), args.insecure)
    for endpoint in binds:  # before any weights load: a taken port is the likeliest mistake
        probe_tcp_port(endpoint)
    for name in ("heartbeat_timeout", "stall_timeout"):
        value = getattr(args, name)
        if not value > 0:
            raise ValueError(f"{name.replace('_', '-')}: expected seconds > 0, got {value}")
    names = args.backend or (["preview", "mimo"] if args.weights else ["preview"])
    if "mimo" in names and not args.weights:
        raise ValueError("weights: --backend mimo needs --weights DIR")
    if args.warmup is not None:  # checked before the weights load
        if "mimo" not in names:
            raise ValueError("warmup: --warmup needs the mimo backend (--weights DIR)")
        if not (64 <= args.warmup and args.warmup % 8 == 0):
            raise ValueError(f"warmup: expected a multiple of 8 from 64, got {args.warmup}")
    if args.low_memory and "mimo" not in names:
        raise ValueError("low-memory: --low-memory is for the mimo backend (--weights DIR)")
    from mimo.cli_errors import check_device

    device = check_device("--device", args.device)  # one line, before any weights load
    if _runs_locally(args) and "mimo" in names and COMPILE_CHOICES[args.compile] is True:
        import torch

        from mimo.models.compile import can_compile

        ok, why = can_compile(torch.device(device))
        if not ok:
            raise ValueError(f"--compile: --compile on cannot run here: {why}")
    curve = load_server_keys(args.curve) if args.curve else None
    device, device_name = _device_name(device)
    backends, executor = {}, _executor(args, names)  # --gpus / --cluster: Ray workers
    for name in dict.fromkeys(names) if executor is None else ():
        logging.getLogger("mimo.server").info("loading backend %s", name)
        backends[name] = load_backend(name, weights=args.weights, device=device, dtype=args.dtype,
                                      compile=COMPILE_CHOICES[args.compile], low_memory=args.low_memory)
    limits = {}
    if args.max_jobs_per_client is not None:
        limits["max_jobs_per_client"] = args.max_jobs_per_client
    if args.max_frames is not None:
        limits["max_frames"] = args.max_frames
    warmup = None
    if args.warmup is not None:
        log = logging.getLogger("mimo.server")

        def warmup():
            seconds = backends["mimo"].warmup(args.warmup, log=log.info)
            log.info("warm-up: %s", ", ".join(f"{m} {s:.0f} s" for m, s in seconds.items())
                     or "nothing to do (blocks not compiled)")
    if executor is not None:
        backends, device_name = dict.fromkeys(names), executor.device_name
    server = Server(backends, bind=binds, executor=executor, limits=limits, curve=curve,
                    insecure=args.insecure,
                    heartbeat_timeout_s=args.heartbeat_timeout, stall_timeout_s=args.stall_timeout,
                    device=device,
                    device_name=device_name, weights=args.weights or "", warmup=warmup)
    server.start()
    print(f"mimo-server listening on {', '.join(server.addresses)}", flush=True)

    def _terminate(signum, frame):  # SIGTERM: stop like Ctrl-C, telling clients of running jobs
        raise KeyboardInterrupt

    import signal

    signal.signal(signal.SIGTERM, _terminate)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
