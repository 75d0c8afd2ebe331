"""``MimoPipeline``: the MIMO edit_bkfill video pipeline (docs/MIMO.md §7), written like a diffusers pipeline.

``__call__`` reads top to bottom: it picks a preset (mimo/pipeline/presets.py) and runs that preset's
:class:`~mimo.pipeline.schedule.Schedule` — :class:`~mimo.pipeline.exact.ExactSchedule` (the
official numerics) or :class:`~mimo.pipeline.fast.FastSchedule` (fast mode and its shortcuts,
every departure listed in mimo/pipeline/fast.py) — around the stages every schedule shares: CLIP
and VAE encodes, the reference pass, pose features, the denoising loop, the VAE decode.

Exact mode reproduces the official ``pipeline_pose2vid_long_edit_bkfill_roiclip`` numerically
(quirks of docs/MIMO.md §11 included: fixed wrapping windows, fp16 bank, accumulation in the latent dtype,
reference pass with [zeros; CLIP] at t = 0, posterior mean, Lanczos resizes, the initial latent
drawn on a CPU generator in the pipeline dtype). What it does differently only changes the speed:

* the unconditional CFG half runs plain self-attention once, instead of the official reference
  attention on all rows followed by a recomputation of the unconditional rows (≈ 16 % of UNet FLOPs);
* VAE encodes and decodes are batched over frames (the official code loops frame by frame), and
  a run of identical scene frames (a static camera, or no scene) is encoded once;
* with compiled blocks (:meth:`MimoPipeline.compile_blocks`) inductor fuses elementwise work,
  and a compiled VAE always runs whole chunks (a short one is padded);
* with a single window the accumulate-and-divide is skipped (dividing by 1 changes no bit).

Low-memory mode (``low_memory=True``) keeps the networks used once per job (CLIP, VAE, reference
UNet, pose guider) off the GPU except while they run, encodes and decodes one frame per VAE call,
and lets fast schedules run the CFG halves as separate UNet calls and shrink their windows to fit
:data:`LOW_MEMORY_BUDGET` (see mimo/pipeline/memory.py).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mimo.errors import FieldError
from mimo.models.compile import can_compile, is_compiled, is_vae_compiled, run_compiled
from mimo.models.kernels import check_backend
from mimo.models.loading import VAE_SCALING_FACTOR

from .exact import ExactSchedule
from .fast import FastSchedule, preview_images
from .frames import frame_chunks, frames_to_tensor, pad_rows, repeat_runs
from .memory import LOW_MEMORY_BUDGET, on_device
from .presets import Preset, default_overlap, preset
from .schedule import MAX_WINDOW, DenoiseInputs, Schedule, make_scheduler

#: the VAE latent scale, the one constant of mimo/models/loading.py (docs/MIMO.md §1)
VAE_SCALE = VAE_SCALING_FACTOR
CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclasses.dataclass
class MimoPipelineOutput:
    """frames: (F, H, W, 3) float32 in [0, 1] (before any quantisation); stats: seconds per stage."""

    frames: np.ndarray
    stats: dict


def resolve_device_dtype(device: str | torch.device | None, dtype: str | torch.dtype | None):
    """Default device: cuda when available, else cpu; default dtype: fp16 on CUDA, fp32 on CPU."""
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {list(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]
    return device, dtype


class MimoPipeline:
    """MIMO video synthesis on the networks of :mod:`mimo.models`.

    Components (named as in diffusers pipelines): ``vae``, ``image_encoder``, ``reference_unet``,
    ``denoising_unet``, ``pose_guider``, ``scheduler``.
    """

    def __init__(self, vae, image_encoder, reference_unet, denoising_unet, pose_guider, scheduler=None,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 low_memory: bool = False, memory_budget: int = LOW_MEMORY_BUDGET):
        self.vae = vae
        self.image_encoder = image_encoder
        self.reference_unet = reference_unet
        self.denoising_unet = denoising_unet
        self.pose_guider = pose_guider
        self.scheduler = scheduler if scheduler is not None else make_scheduler()
        self.device = torch.device(device)
        self.dtype = dtype
        self._compiled_shapes: set[tuple] = set()  # denoising-call layouts run compiled so far
        self.sharding = None  # several GPUs: this process's share of the job (mimo/pipeline/distributed.py)
        self.low_memory = low_memory
        self.memory_budget = memory_budget  # bytes a low-memory job aims to stay under
        if low_memory:  # the networks used once per job wait off the GPU
            for net in (vae, image_encoder, reference_unet, pose_guider):
                net.to("cpu")

    @property
    def vae_is_compiled(self) -> bool:
        return is_vae_compiled(self.vae)

    def _on_device(self, net):
        """Context: ``net`` on the pipeline device while it runs (low-memory mode moves it in and
        back to the CPU afterwards; otherwise nothing happens)."""
        return on_device(net, self.device, self.low_memory)

    @classmethod
    def from_pretrained(cls, weights_dir: str | Path, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, compile: bool | None = None,
                        compile_vae: bool = True, low_memory: bool = False) -> MimoPipeline:
        """Load every network from a weights folder in the official layout (strict, loud on gaps).

        compile: compile the denoising UNet's blocks (:meth:`compile_blocks`); None = where it can
        run (CUDA with Triton), True = required (error if it cannot), False = never.
        compile_vae: when compiling, also compile the VAE's encoder and decoder.
        low_memory: see the module docstring (networks used once per job wait on the CPU).
        """
        from mimo.models import load_mimo

        device, dtype = resolve_device_dtype(device, dtype)
        m = load_mimo(str(weights_dir), device=device, dtype=dtype)
        pipe = cls(m.vae, m.image_encoder, m.reference_unet, m.denoising_unet, m.pose_guider,
                   device=device, dtype=dtype, low_memory=low_memory)
        if compile or (compile is None and can_compile(device)[0]):
            pipe.compile_blocks(vae=compile_vae)
        return pipe

    def compile_blocks(self, vae: bool = True) -> int:
        """``torch.compile`` each block of the denoising UNet in place (see mimo/models/compile.py),
        and with ``vae`` the VAE's encoder and decoder.

        Same math, fused elementwise kernels; the first generation of each new size pays the
        compilation (1-2 minutes for the UNet, about 50 s more for the VAE; ~20 s from inductor's
        disk cache). Returns the number of UNet blocks. CUDA only.
        """
        from mimo.models.compile import compile_blocks, compile_vae

        count = compile_blocks(self.denoising_unet)
        if vae:
            compile_vae(self.vae)
        return count

    # ------------------------------------------------------------------------------------------
    def check_inputs(self, character, codes, scene, height, width, num_inference_steps,
                     guidance_scale, context_frames, context_overlap):
        if not (isinstance(character, np.ndarray) and character.dtype == np.uint8
                and character.ndim == 3 and character.shape[2] == 3):
            raise ValueError(f"character: expected (H, W, 3) uint8, got "
                             f"{getattr(character, 'shape', type(character).__name__)}")
        if len(codes) == 0:
            raise ValueError("codes: expected at least one frame, got 0")
        for name, frames in (("codes", codes), ("scene", scene)):
            if frames is None:
                continue
            for f in frames:
                if not (isinstance(f, np.ndarray) and f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3):
                    raise ValueError(f"{name}: expected frames of (H, W, 3) uint8, got "
                                     f"{getattr(f, 'shape', None)} {getattr(f, 'dtype', type(f).__name__)}")
        if scene is not None and len(scene) != len(codes):
            raise ValueError(f"scene: expected {len(codes)} frames (one per code frame), got {len(scene)}")
        for name, v in (("height", height), ("width", width)):
            if not (isinstance(v, int) and v >= 8 and v % 8 == 0):
                raise ValueError(f"{name}: expected a positive multiple of 8, got {v!r}")
        if not (isinstance(num_inference_steps, int) and 1 <= num_inference_steps <= 1000):
            raise ValueError(f"num_inference_steps: expected 1..1000, got {num_inference_steps!r}")
        if not (isinstance(guidance_scale, (int, float)) and np.isfinite(guidance_scale)):
            raise ValueError(f"guidance_scale: expected a finite number, got {guidance_scale!r}")
        if not (isinstance(context_frames, int) and 1 <= context_frames <= MAX_WINDOW):
            raise ValueError(f"context_frames: expected 1..{MAX_WINDOW} (motion-module positions), "
                             f"got {context_frames!r}")
        if not (isinstance(context_overlap, int) and 0 <= context_overlap < context_frames):
            raise ValueError(f"context_overlap: expected 0..{context_frames - 1}, got {context_overlap!r}")

    @torch.no_grad()
    def encode_image(self, character: np.ndarray) -> torch.Tensor:
        """CLIP image embedding of the character (bicubic 224², OpenAI mean/std).

        Shapes:
            character (Hc, Wc, 3) uint8 -> (1, 1, D)
        """
        img = np.asarray(Image.fromarray(character).resize((CLIP_SIZE, CLIP_SIZE), Image.BICUBIC))
        x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        with self._on_device(self.image_encoder):
            out = self.image_encoder(pixel_values=x.to(self.device, self.dtype))
        return out.image_embeds[:, None, :]

    @torch.no_grad()
    def encode_vae(self, images: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """VAE posterior mean × 0.18215, batched by ``chunk`` frames (a compiled encoder always sees
        ``chunk`` frames: a short chunk is padded with copies of its last frame, then dropped).

        Shapes:
            images (N, 3, H, W) in [-1, 1] -> (N, 4, h, w)
        """
        out = []
        pad = is_vae_compiled(self.vae)
        with run_compiled(pad), self._on_device(self.vae):
            for i in range(0, images.shape[0], chunk):
                x = images[i:i + chunk].to(self.device, self.dtype)
                n = x.shape[0]
                x = pad_rows(x, chunk) if pad else x
                out.append(self.vae.encode(x).latent_dist.mean[:n] * VAE_SCALE)
        return torch.cat(out)

    @torch.no_grad()
    def decode_vae(self, latents: torch.Tensor, chunk: int = 8):
        """Yield decoded frames in order, ``chunk`` at a time: (n, H, W, 3) float32 in [0, 1] on CPU
        (a compiled decoder always sees ``chunk`` frames, as in :meth:`encode_vae`).

        Shapes:
            latents (1, 4, F, h, w)
        """
        frames = latents.shape[2]
        pad = is_vae_compiled(self.vae)
        for i in range(0, frames, chunk):
            z = latents[0, :, i:i + chunk].transpose(0, 1) / VAE_SCALE
            n = z.shape[0]
            with run_compiled(pad), self._on_device(self.vae):
                x = self.vae.decode(pad_rows(z, chunk) if pad else z).sample[:n]
            yield (x / 2 + 0.5).clamp(0, 1).float().permute(0, 2, 3, 1).cpu().numpy()

    @torch.no_grad()
    def encode_pose(self, codes_t: torch.Tensor, chunk: int = 16) -> torch.Tensor:
        """Pose-guider features of all code frames, ``chunk`` frames per call.

        Shapes:
            codes_t (F, 3, H, W) in [0, 1] -> (1, C0, F, h, w)
        """
        out = []
        for i in range(0, codes_t.shape[0], chunk):
            x = codes_t[i:i + chunk].to(self.device, self.dtype).transpose(0, 1)[None]
            out.append(self.pose_guider(x))
        return torch.cat(out, dim=2)

    def prepare_latents(self, num_frames: int, height: int, width: int, seed: int,
                        dtype: torch.dtype | None = None) -> torch.Tensor:
        """The initial noise exactly as the official scripts draw it (CPU generator, pipeline dtype;
        fast schedules draw the same normals in float32).

        Shapes:
            returns (1, 4, F, h, w) on the pipeline device
        """
        g = torch.Generator("cpu").manual_seed(seed)
        shape = (1, 4, num_frames, height // 8, width // 8)
        latents = torch.randn(shape, generator=g, dtype=dtype or self.dtype).to(self.device)
        return latents * self.scheduler.init_noise_sigma

    # ------------------------------------------------------------------------------------------
    def schedule_for(self, mode: str | Preset) -> tuple[Preset, Schedule]:
        """The preset named ``mode`` (a :data:`~mimo.pipeline.presets.PRESETS` name, or a
        :class:`~mimo.pipeline.presets.Preset` itself) and the schedule object it runs."""
        if isinstance(mode, Preset):
            chosen = mode
        else:
            try:
                chosen = preset(mode)
            except ValueError as exc:
                raise FieldError("mode", str(exc)) from None
        if chosen.schedule == "exact":
            return chosen, ExactSchedule()
        check_backend(chosen.shortcuts.attention)  # a missing kernel package: one clear line
        return chosen, FastSchedule(chosen.shortcuts)

    @torch.no_grad()
    def __call__(
        self,
        character: np.ndarray,
        codes: np.ndarray | list[np.ndarray],
        scene: np.ndarray | list[np.ndarray] | None = None,
        height: int = 784,
        width: int = 784,
        num_inference_steps: int | None = None,
        guidance_scale: float = 3.5,
        seed: int = 42,
        context_frames: int | None = None,
        context_overlap: int | None = None,
        mode: str | Preset = "exact",
        callback_on_step_end: Callable[[MimoPipeline, int, int, dict], None] | None = None,
        frame_callback: Callable[[int, np.ndarray], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        windows_per_call: int | None = None,
        preview_every: int = 0,
        preview_callback: Callable[[int, list[int], list[np.ndarray]], None] | None = None,
        stage_callback: Callable[[str], None] | None = None,
    ) -> MimoPipelineOutput:
        """Generate F frames of the character performing the motion codes inside the scene.

        ``mode`` names a preset (mimo/pipeline/presets.py: ``exact``, ``fast``, ``balanced``,
        ``draft``) or is a :class:`Preset`; its schedule runs the denoising (exact:
        mimo/pipeline/exact.py, the official numerics; otherwise mimo/pipeline/fast.py with the
        preset's shortcuts). ``num_inference_steps``, ``context_frames`` and ``context_overlap``
        None take the preset's values. Frames of any size are resized (Lanczos) to
        ``width``×``height``. ``scene`` None means white frames (as run_animate.py).
        ``callback_on_step_end(pipe, step, timestep, info)`` runs after every denoising step;
        ``frame_callback(index, frame)`` receives decoded frames in order; ``cancelled()`` is
        polled between UNet calls and raises :class:`mimo.pipeline.job.JobCancelled` when it
        returns True. ``windows_per_call`` (fast schedules; None: :func:`mimo.pipeline.fast.
        windows_per_call_for`); ``preview_callback(step, frame_indices, images)`` every
        ``preview_every`` steps with cheap half-size previews of a few frames.
        ``stage_callback("compile")`` announces a denoising loop whose first UNet call compiles
        the blocks for shapes not seen before.

        Shapes:
            character (Hc, Wc, 3) uint8
            codes     (F, H', W', 3) uint8, or a list of F (H_i, W_i, 3) uint8
            scene     like codes, or None
            returns   MimoPipelineOutput(frames (F, height, width, 3) float32 in [0, 1])
        """
        from .job import JobCancelled

        def check_cancel():
            if cancelled is not None and cancelled():
                raise JobCancelled()

        stats: dict = {"seconds": {}, "peak_memory_gb_after": {}}
        clock = _Clock(self.device, stats["seconds"], stats["peak_memory_gb_after"])

        # 1. The preset and its schedule; check inputs; plan the windows
        chosen, schedule = self.schedule_for(mode)
        num_inference_steps = chosen.steps if num_inference_steps is None else num_inference_steps
        context_frames = chosen.context if context_frames is None else context_frames
        context_overlap = default_overlap(chosen, context_frames) if context_overlap is None else context_overlap
        self.check_inputs(character, codes, scene, height, width, num_inference_steps, guidance_scale,
                          context_frames, context_overlap)
        num_frames = len(codes)
        if scene is None:
            scene = [np.full((height, width, 3), 255, np.uint8)] * num_frames
        plan = schedule.plan(self, num_frames, height, width, context_frames,
                             min(context_overlap, context_frames - 1), windows_per_call)
        stats.update(mode=chosen.name, schedule=schedule.name, windows=len(plan.windows))
        if schedule.name != "exact":
            stats["windows_per_call"] = plan.per_call
        # Compiled blocks serve clips of at least one full window (shorter clips run eagerly rather
        # than compile for their length); a compiled VAE compiles once per frame size.
        compiled = is_compiled(self.denoising_unet) and num_frames >= context_frames
        stats.update(compiled_blocks=compiled, compiled_vae=self.vae_is_compiled)
        self._announce_compile([plan.layout] * compiled + [("vae", height, width)] * self.vae_is_compiled,
                               stage_callback)

        # 2. Encode the character: CLIP token and reference latent
        with clock("encode"), self._on_device(self.vae):
            clip = self.encode_image(character)                                    # (1, 1, D)
            ref_latent = self.encode_vae(frames_to_tensor([character], width, height, True),
                                         plan.encode_chunk)                        # (1, 4, h, w)

        # 3. Reference UNet write pass (once): the bank of reference tokens
        with clock("reference"), self._on_device(self.reference_unet):
            bank = schedule.reference(self, ref_latent, clip)
        check_cancel()

        # 4. Pose guider on the structured motion codes (all frames, once)
        with clock("pose"), self._on_device(self.pose_guider):
            pose = schedule.pose(self, codes, width, height)

        # 5. Scene latents (one encode per run of identical frames) and the initial noise
        with clock("encode"), self._on_device(self.vae):
            scene_latents, stats["scene_frames_encoded"] = self.encode_scene(scene, width, height,
                                                                             plan.encode_chunk)
        latents = self.prepare_latents(num_frames, height, width, seed,
                                       schedule.latent_dtype(self))                # (1, 4, F, h, w)
        check_cancel()

        # 6. Denoising loop over the context windows
        def on_step(step, t, lat, x0):
            if callback_on_step_end is not None:
                callback_on_step_end(self, step, t, {"latents": lat})
            if preview_callback is not None and preview_every > 0 and (step + 1) % preview_every == 0:
                picks = sorted({0, num_frames // 2, num_frames - 1})
                with torch.compiler.set_stance("force_eager"), self._on_device(self.vae):
                    images = preview_images(self, x0, picks)  # previews never compile
                preview_callback(step, picks, images)

        inputs = DenoiseInputs(latents, scene_latents, pose, clip, bank)
        with clock("denoise"), run_compiled(compiled):
            latents = schedule.denoise(self, inputs, plan, num_inference_steps, guidance_scale,
                                       on_step, check_cancel)
        stats["frame_evaluations_per_frame"] = sum(len(w) for w in plan.windows) / num_frames
        del bank, pose, inputs

        # 7. Decode latents, a chunk of frames at a time
        out = np.empty((num_frames, height, width, 3), np.float32)
        with clock("decode"), self._on_device(self.vae):
            index = 0
            decoded = (self.decode_vae(latents.to(self.dtype), plan.decode_chunk) if self.sharding is None
                       else self.sharding.decode_frames(self, latents.to(self.dtype), plan.decode_chunk))
            for chunk in decoded:
                check_cancel()
                for f in chunk:
                    out[index] = f
                    if frame_callback is not None:
                        frame_callback(index, f)
                    index += 1

        # 8. Return the float frames and timings
        if self.device.type == "cuda":
            stats["peak_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        stats.update(frames=num_frames, steps=num_inference_steps, height=height, width=width,
                     device=_device_name(self.device), dtype=str(self.dtype).replace("torch.", ""))
        return MimoPipelineOutput(frames=out, stats=stats)

    @torch.no_grad()
    def encode_scene(self, scene, width: int, height: int, chunk: int) -> tuple[torch.Tensor, int]:
        """Scene latents of every frame, one VAE encode per run of identical frames (a static
        camera, or the white scene); returns them and how many frames were encoded.

        Shapes:
            scene: F frames (H_i, W_i, 3) uint8 -> (1, 4, F, h, w)
        """
        runs = repeat_runs(scene)
        starts = np.cumsum([0] + runs[:-1])
        unique = [scene[i] for i in starts]
        if self.sharding is not None:  # each rank encodes a block of whole chunks
            latents = self.sharding.encode_frames(self, unique, width, height, chunk)
        else:
            latents = torch.cat([self.encode_vae(c, chunk)
                                 for c in frame_chunks(unique, width, height, True, chunk)])
        if len(unique) < len(scene):
            latents = latents.repeat_interleave(torch.tensor(runs, device=latents.device), dim=0)
        return latents.transpose(0, 1)[None], len(unique)

    def _announce_compile(self, layouts: list[tuple], stage_callback) -> None:
        """Call ``stage_callback("compile")`` once before a call that runs compiled code for a
        layout (UNet call layout, VAE frame size) not run before."""
        keys = {layout + (self.dtype,) for layout in layouts} - self._compiled_shapes
        if keys:
            self._compiled_shapes |= keys
            if stage_callback is not None:
                stage_callback("compile")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


class _Clock:
    """Accumulates wall seconds per stage (synchronising CUDA so the figures are real); on CUDA it
    also notes the peak allocated memory *so far* after each stage in ``peaks`` (GiB; never resets
    the counter, so a caller's own peak measurement stays valid): the stage where it jumps is
    where the peak happened."""

    def __init__(self, device: torch.device, into: dict, peaks: dict | None = None):
        self.device, self.into, self.peaks = device, into, peaks

    def __call__(self, stage: str):
        clock = self

        class _Ctx:
            def __enter__(self):
                clock._sync()
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                clock._sync()
                clock.into[stage] = clock.into.get(stage, 0.0) + time.perf_counter() - self.t0
                if clock.peaks is not None and clock.device.type == "cuda":
                    clock.peaks[stage] = torch.cuda.max_memory_allocated(clock.device) / 2**30

        return _Ctx()

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
