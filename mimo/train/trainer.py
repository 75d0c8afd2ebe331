"""The training loop behind ``mimo train``: one GPU or many (torch DDP under ``torchrun``), resumable,
checkpoints in the official weights layout.

Out folder::

    OUT/config.json         the TrainConfig of the run
    OUT/log.jsonl           one JSON object per logged step (step, loss, lr, it/s, seconds, ...)
                            and per validation (step, val_psnr, ...)
    OUT/state.pt            what resuming needs: trained parameters, optimizer, EMA, step
    OUT/checkpoint-STEP/    every ``save_every`` steps: the official layout (``load_mimo`` and
                            ``mimo generate --weights`` read it strictly); EMA weights when on
    OUT/final/              the same, at the end
    OUT/val/step-STEP.png   validation: ground truth (top) and generated frames (bottom)

A run started again with the same OUT continues from ``state.pt`` (``resume``), drawing the same
items it would have drawn without the interruption.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from mimo.data.layout import ClipError
from mimo.errors import FieldError  # bad input found before any work, its field the option (--out)

from .objective import MimoTrainNet, enable_gradient_checkpointing, trainable_parameters

DEFAULT_FRAMES = {"vae": 1, "image": 1, "motion": 16, "full": 16}


@dataclasses.dataclass
class TrainConfig:
    """Settings of one training run (``mimo train --help`` explains each)."""

    data: str
    out: str
    stage: str = "image"
    weights: str | None = None          # official-layout folder to start from; None: from scratch
    frames: int | None = None           # frames per item (None: 1 for vae/image, 16 for motion/full)
    size: int = 64                      # square side the frames are cropped and resized to
    batch: int = 4                      # items per step (per GPU)
    steps: int = 1000
    lr: float = 1e-4
    weight_decay: float = 1e-2
    warmup: int = 0                     # linear learning-rate warm-up steps
    drop: float = 0.1                   # classifier-free guidance dropout of CLIP + reference
    precision: str = "fp32"             # fp32 | bf16 (autocast on CUDA)
    checkpointing: bool = False         # gradient checkpointing of the UNets' blocks
    adam8bit: bool = False              # bitsandbytes 8-bit AdamW (CUDA)
    ema: float = 0.0                    # EMA decay of the trained parameters (0: off)
    train_image_encoder: bool = False   # train the CLIP tower too (stage image, from scratch)
    lora: int = 0                       # LoRA rank on the attention projections (0: train weights)
    save_every: int = 0
    log_every: int = 10
    validate_every: int = 0
    val_data: str | None = None
    val_steps: int = 10                 # denoising steps of the validation generation
    seed: int = 0
    workers: int = 0
    preload: bool = False               # whole dataset in device memory, batches prepared there
    device: str | None = None
    max_minutes: float = 0.0            # stop (and save) after this much training time (0: no limit)


def _dist() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (0, 1, 0 without it)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def _load_models(cfg: TrainConfig, device: torch.device):
    """The five networks: from ``cfg.weights`` (strict official-layout loader), or random tiny
    ones written to ``OUT/init`` first (training from scratch)."""
    from mimo.models import load_mimo, make_tiny

    folder = cfg.weights
    if folder is None:
        folder = Path(cfg.out) / "init"
        if not (folder / "denoising_unet.pth").is_file():
            make_tiny(folder, seed=cfg.seed)
    m = load_mimo(folder, device=device)
    for module in (m.vae, m.image_encoder, m.reference_unet, m.denoising_unet, m.pose_guider):
        module.float()
    return m


def train(cfg: TrainConfig, log=print) -> Path:
    """Run (or resume) training. Returns the folder of the final checkpoint.

    Shapes: batches from :class:`mimo.data.MimoDataset` (see there).
    """
    rank, world, local = _dist()
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(cfg.device or (f"cuda:{local}" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if cfg.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision: expected fp32 or bf16, got {cfg.precision!r}")
    frames = cfg.frames or DEFAULT_FRAMES.get(cfg.stage, 1)
    # everything the run reads is checked before anything is written
    dataset = _dataset(cfg.data, frames, cfg, items=cfg.steps * cfg.batch * world)
    if cfg.validate_every:
        try:
            _dataset(cfg.val_data, frames, cfg)
        except ClipError as exc:
            raise FieldError("--val-data", str(exc)) from None
    if cfg.weights is not None:
        _check_weights(cfg.weights)
    out = Path(cfg.out)
    if rank == 0:  # the first process checks OUT and marks it as this run's, then the others read it
        state = _read_state(out, cfg.stage)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FieldError("--out", f"cannot create {out} ({exc.strerror or exc})") from None
        if state is None:
            (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
    if world > 1:
        torch.distributed.barrier()
        if rank > 0:
            state = _read_state(out, cfg.stage)
    models = _load_models(cfg, device)
    net = MimoTrainNet(models.vae, models.image_encoder, models.reference_unet,
                       models.denoising_unet, models.pose_guider, drop=cfg.drop).to(device)
    params = trainable_parameters(net, cfg.stage, cfg.train_image_encoder)
    if cfg.lora:
        from .lora import add_lora

        params = add_lora(net, cfg.stage, cfg.lora)
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    if cfg.checkpointing:
        enable_gradient_checkpointing(net.denoising_unet)
        enable_gradient_checkpointing(net.reference_unet)
    net.train()
    net.vae.train(cfg.stage == "vae")
    optimizer = _optimizer(cfg, params)
    ema = {n: p.detach().float().clone() for n, p in zip(names, params)} if cfg.ema > 0 else None
    step = 0
    final = out / "final"
    if state is not None:
        missing = sorted(set(names) - set(state["params"]))
        if missing:
            lora = any(".lora_" in n for n in state["params"])
            hint = (f"; it was trained {'with' if lora else 'without'} --lora, give the same setting"
                    if lora != bool(cfg.lora) else "")
            raise FieldError("--out", f"{out / 'state.pt'} lacks trained parameters such as "
                                           f"{missing[0]}{hint}")
        try:
            net.load_state_dict({k: v.to(device) for k, v in state["params"].items()}, strict=False)
            optimizer.load_state_dict(state["optimizer"])  # the frozen rest comes from the weights
        except (RuntimeError, ValueError, KeyError) as exc:
            raise FieldError("--out", f"{out / 'state.pt'} does not fit this run's networks "
                                           f"({_first_line(exc)}); use another folder") from None
        ema = {k: v.to(device) for k, v in state["ema"].items()} if state.get("ema") else ema
        step = int(state["step"])
        if step >= cfg.steps:
            log(f"{out} is already at step {step} of --steps {cfg.steps}: nothing to train "
                f"(give more --steps to continue)")
            if rank == 0 and not (final / "denoising_unet.pth").is_file():
                _save(net, names, ema, optimizer, cfg, step, models, final)
            return final
        log(f"resuming {out} at step {step}")
        if rank == 0:  # a new run's was written when its folder was made
            (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
    model = net
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True)  # a batch whose rows all drop the reference skips its UNet
    # a range, not a list: ten million steps must not cost gigabytes before the first one
    indices = range(step * cfg.batch * world + rank, cfg.steps * cfg.batch * world, world)
    if cfg.preload:  # the same items, prepared on the device a batch at a time
        from mimo.data.preload import PreloadedData

        data = PreloadedData(dataset, device)
        loader = (data.batch(indices[i:i + cfg.batch])
                  for i in range(0, len(indices) - cfg.batch + 1, cfg.batch))
    else:
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch, sampler=indices,
                                             num_workers=cfg.workers, drop_last=True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    generator = torch.Generator()  # noise, timesteps and dropout: seeded per step and rank
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    logfile = open(out / "log.jsonl", "a") if rank == 0 else None
    start, last = time.perf_counter(), time.perf_counter()
    last_step = first_step = step
    trained = sum(p.numel() for p in params)
    log(f"training stage {cfg.stage}: {len(dataset.clips)} clip(s), {frames} frame(s) at {cfg.size}² "
        f"per item, batch {cfg.batch}{f' x {world} processes' if world > 1 else ''}, "
        f"{trained / 1e6:.2f} M trained parameters, on {device}; steps {step + 1}..{cfg.steps}")
    try:
        for batch in loader:
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else cfg.lr
            generator.manual_seed((cfg.seed * 1_000_003 + step) * 1009 + rank)
            with autocast:
                result = model(batch, cfg.stage, generator)
            loss = result["loss"]
            # no host sync per step: the first step's loss is checked at once, later ones where
            # they are logged (a non-finite loss poisons every later one)
            if step == first_step and not torch.isfinite(loss):
                raise FloatingPointError(f"step {step}: the loss is {float(loss)}; lower --lr or use fp32")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                with torch.no_grad():
                    for n, p in zip(names, params):
                        ema[n].mul_(cfg.ema).add_(p.detach().float(), alpha=1 - cfg.ema)
            step += 1
            over = cfg.max_minutes > 0 and time.perf_counter() - start > 60 * cfg.max_minutes
            if world > 1:  # every rank stops at the same step
                flag = torch.tensor([float(over)], device=device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                over = bool(flag.item())
            if over:
                log(f"time budget of {cfg.max_minutes:g} min reached at step {step}")
            if rank != 0:
                if over:
                    break
                continue
            now = time.perf_counter()
            if step % cfg.log_every == 0 or step == cfg.steps or over or step == first_step + 1:
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"step {step}: the loss is {float(loss)}; lower --lr or use fp32")
                row = {"step": step, "loss": float(loss.detach()), "lr": optimizer.param_groups[0]["lr"],
                       "it_s": (step - last_step) / max(now - last, 1e-9), "seconds": now - start,
                       **{k: v for k, v in result.items() if k != "loss"}}
                if device.type == "cuda":
                    row["peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                logfile.write(json.dumps(row) + "\n")
                logfile.flush()
                log(f"step {step}/{cfg.steps}  loss {row['loss']:.4f}  {row['it_s']:.2f} it/s")
                last, last_step = now, step
            if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
                _save(net, names, ema, optimizer, cfg, step, models, out / f"checkpoint-{step}")
            if cfg.validate_every and cfg.val_data and step % cfg.validate_every == 0:
                row = validate(net, cfg, step, out / "val")
                logfile.write(json.dumps(row) + "\n")
                logfile.flush()
                log(f"validation at step {step}: PSNR {row['val_psnr']:.2f} dB")
                net.train()
                net.vae.train(cfg.stage == "vae")
            if over:
                break
    except KeyboardInterrupt:
        if rank == 0 and step > first_step:  # keep what was trained: the same command resumes
            folder = out / f"checkpoint-{step}"
            _save(net, names, ema, optimizer, cfg, step, models, folder)
            log(f"interrupted at step {step}: saved {out / 'state.pt'} and the weights in {folder}; "
                "run the same command to continue")
        raise
    finally:
        if logfile is not None:
            logfile.close()
    if rank == 0:
        _save(net, names, ema, optimizer, cfg, step, models, final)
    if world > 1:
        torch.distributed.barrier()
    return final


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _dataset(folder: str, frames: int, cfg: TrainConfig, items: int | None = None):
    """``MimoDataset`` of ``folder``; a clip shorter than a window says where the window came from."""
    from mimo.data.dataset import MimoDataset

    try:
        return MimoDataset(folder, num_frames=frames, size=cfg.size, items_per_epoch=items, seed=cfg.seed)
    except ClipError as exc:
        if cfg.frames is None and "fewer than a window" in str(exc):
            raise ClipError(f"{exc} (the {cfg.stage} stage's default --frames)") from None
        raise


def _check_weights(folder: str) -> None:
    """A weights folder that does not load strictly is bad input, found before any work."""
    from mimo.models.loading import check_weights

    try:
        report = check_weights(folder)
    except (OSError, ValueError) as exc:
        raise FieldError("--weights", f"{folder}: {_first_line(exc)}") from None
    if not report.ok:
        hint = (f"; {Path(folder) / 'final'} holds a run's weights: did you mean it?"
                if (Path(folder) / "final" / "denoising_unet.pth").is_file() else
                f" (`mimo weights check {folder}` lists them)")
        raise FieldError("--weights", f"{folder} is not a loadable weights folder: "
                                           f"{len(report.problems)} problem(s), the first: "
                                           f"{report.problems[0]}{hint}")


def _read_state(out: Path, stage: str) -> dict | None:
    """What ``OUT/state.pt`` holds (None for a new run). ``OUT`` must be new, empty, or a run of
    ``mimo train`` of the same stage: anything else there is the user's and is not written into."""
    if str(out) in ("", "."):
        raise FieldError("--out", "give the run a folder of its own (not the current folder)")
    if out.exists() and not out.is_dir():
        raise FieldError("--out", f"{out} exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return None
    config, path = out / "config.json", out / "state.pt"
    try:
        previous = json.loads(config.read_text())
        if not (isinstance(previous, dict) and "stage" in previous and "data" in previous):
            raise ValueError("not a run's config")
    except (OSError, ValueError):
        raise FieldError("--out", f"{out} is not empty and is not a run of mimo train (no run's "
                                       "config.json); give a new or empty folder") from None
    if previous["stage"] != stage:
        raise FieldError("--out", f"{out} holds a '{previous['stage']}' run; use another folder "
                                       f"for stage '{stage}'")
    if not path.is_file():
        return None  # stopped before its first save: starts again from step 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        ok = (isinstance(state, dict) and state.get("stage") == stage and isinstance(state.get("params"), dict)
              and isinstance(state.get("optimizer"), dict) and isinstance(state.get("step"), int)
              and state["step"] >= 0)
        why = "" if ok else "unexpected contents"
    except Exception as exc:  # a damaged file, whatever torch raises for it
        why = _first_line(exc)
    if why:
        raise FieldError("--out", f"{path} is damaged ({why}); delete it to start the run over") from None
    return state


def _optimizer(cfg: TrainConfig, params: list):
    if cfg.adam8bit:
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ValueError("adam8bit: needs the bitsandbytes package (pip install bitsandbytes; "
                             "CUDA only)") from None
        return bnb.optim.AdamW8bit(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    fused = all(p.is_cuda for p in params)  # one kernel for the whole update on a GPU
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


def _save(net, names, ema, optimizer, cfg: TrainConfig, step: int, models, folder: Path) -> None:
    """The official layout in ``folder`` (EMA values where on) and ``state.pt`` beside it."""
    from mimo.models.tiny import write_official_layout

    trained = {n: p for n, p in net.named_parameters() if p.requires_grad}
    state = {"stage": cfg.stage, "step": step, "optimizer": optimizer.state_dict(), "ema": ema,
             "params": {n: p.detach() for n, p in trained.items()}}
    tmp = Path(cfg.out) / "state.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, Path(cfg.out) / "state.pt")

    from .lora import merged_state_dict

    def weights(module, prefix):
        if ema is None:
            return merged_state_dict(module)
        live = {n: p.detach().clone() for n, p in module.named_parameters() if prefix + n in ema}
        with torch.no_grad():  # the EMA values in place, merged, then the live values back
            for n, p in module.named_parameters():
                if n in live:
                    p.copy_(ema[prefix + n])
            sd = merged_state_dict(module)
            for n, p in module.named_parameters():
                if n in live:
                    p.copy_(live[n])
        return sd

    write_official_layout(folder, weights(net.denoising_unet, "denoising_unet."),
                          weights(net.reference_unet, "reference_unet."),
                          weights(net.pose_guider, "pose_guider."), weights(net.vae, "vae."),
                          weights(net.image_encoder, "image_encoder."), models.unet_config,
                          models.vae_config, models.image_encoder_config)


@torch.no_grad()
def validate(net: MimoTrainNet, cfg: TrainConfig, step: int, folder: Path, clip_index: int = 0) -> dict:
    """Generate the first window of a validation clip with the pipeline of inference (the live
    networks, ``cfg.val_steps`` DDIM steps, CFG 3.5) and compare it with the ground truth."""
    from PIL import Image

    from mimo.data.dataset import MimoDataset
    from mimo.pipeline.pipeline import MimoPipeline

    frames = cfg.frames or DEFAULT_FRAMES.get(cfg.stage, 1)
    val = MimoDataset(cfg.val_data, num_frames=max(frames, 1), size=cfg.size, seed=cfg.seed)
    clip = val.clips[clip_index]
    item = val.prepare(clip, np.arange(frames), val._reference(clip, np.arange(frames),
                                                               np.random.default_rng(cfg.seed)))
    u8 = lambda x: np.rint((x.clamp(-1, 1) + 1) * 127.5).byte().permute(1, 2, 3, 0).numpy()  # noqa: E731
    truth, scene = u8(item["frames"]), u8(item["scene"])
    codes = np.rint(item["codes"].permute(1, 2, 3, 0).numpy() * 255).astype(np.uint8)
    reference = u8(item["reference"][:, None])[0]
    net.eval()
    pipe = MimoPipeline(net.vae, net.image_encoder, net.reference_unet, net.denoising_unet,
                        net.pose_guider, device=net.abar.device, dtype=next(net.parameters()).dtype)
    out = pipe(reference, codes, scene, height=cfg.size, width=cfg.size,
               num_inference_steps=cfg.val_steps, seed=cfg.seed, context_frames=min(frames, 24) if frames > 1 else 1,
               context_overlap=0).frames
    gen = np.rint(out * 255).astype(np.uint8)
    mse = float(np.mean((gen.astype(np.float64) - truth) ** 2))
    psnr = 10 * math.log10(255.0 ** 2 / max(mse, 1e-10))
    folder.mkdir(parents=True, exist_ok=True)
    strip = np.concatenate([np.concatenate(list(truth), 1), np.concatenate(list(gen), 1)], 0)
    Image.fromarray(strip).save(folder / f"step-{step}.png")
    return {"step": step, "val_psnr": psnr, "val_clip": clip.path}
