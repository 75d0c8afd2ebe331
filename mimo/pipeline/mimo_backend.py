"""The ``"mimo"`` backend: a :class:`GenerationJob` through :class:`MimoPipeline`.

The character is padded to a centred white square (side a multiple of 16) as the official scripts
do, so it keeps its aspect ratio when resized. Raw jobs (``job.raw``) run the pipeline at the codes' own size and return its frames (uint8 by
truncation, as the official scripts). Other jobs follow the editing scripts (docs/MIMO.md §8.3–§8.4): split
into human ROI spans, crop and pad each span to a square (codes black, scene white), generate at
``job.roi_size``², and paste every crop back into its full frame with a feather mask, the occlusion
layer on top and a crossfade over span overlaps. Frames go out as soon as they are decoded and
composited (a frame in a span overlap waits for the next span), not after the whole job.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .composite import SpanCompositor
from .job import Backend, GenerationJob, JobEvents
from .pipeline import MimoPipeline
from .presets import PRESETS
from .roi import crop, pad_square, roi_spans


class MimoBackend(Backend):
    name = "mimo"

    def __init__(self, weights: str, device: str | None = None, dtype: str | None = None,
                 pipeline: MimoPipeline | None = None, compile: bool | None = None,
                 compile_vae: bool = True, low_memory: bool = False):
        """low_memory: networks used once per job leave the GPU between uses, windows shrink to a
        peak of about 8 GB (mimo/pipeline/memory.py); ignored when ``pipeline`` is given."""
        self.pipeline = (pipeline if pipeline is not None
                         else MimoPipeline.from_pretrained(weights, device, dtype, compile=compile,
                                                           compile_vae=compile_vae, low_memory=low_memory))

    def warmup(self, size: int = GenerationJob.roi_size, modes: tuple[str, ...] = ("exact", "fast"),
               log=None) -> dict[str, float]:
        """Compile the UNet's blocks (and a compiled VAE) for ``size``² jobs before the first real one asks.

        Runs one 1-step generation per mode (a PRESETS name) on blank inputs, one full window
        long (the preset's context: 24 frames exact, 32 fast), which is the call layout of any
        job of at least a window at that size (the ROI size, 784 by default, for jobs from
        Blender). Returns seconds per mode; nothing when the blocks are not compiled (there is
        nothing to warm). ``log(message)`` reports.
        """
        from mimo.models.compile import is_compiled

        if not is_compiled(self.pipeline.denoising_unet):
            return {}
        seconds = {}
        for mode in modes:
            frames = PRESETS[mode].context
            if log is not None:
                log(f"warm-up: compiling the UNet for {size}x{size} {mode}-mode jobs ({frames}-frame windows)")
            t0 = time.perf_counter()
            blank = np.zeros((frames, size, size, 3), np.uint8)
            self.pipeline(np.full((size, size, 3), 255, np.uint8), blank, None, height=size, width=size,
                          num_inference_steps=1, context_frames=frames, mode=mode)
            seconds[mode] = time.perf_counter() - t0
        return seconds

    def generate(self, job: GenerationJob, events: JobEvents) -> dict:
        job.validate()
        t0 = time.perf_counter()
        F, H, W = job.num_frames, job.height, job.width
        scene = job.scene if job.scene is not None else np.full((F, H, W, 3), 255, np.uint8)

        if job.raw:
            if H % 8 or W % 8:
                raise ValueError(f"codes: raw mode generates at the input size, which must be a "
                                 f"multiple of 8 on both sides, got {W}x{H}")
            codes_in, scene_in, size = job.codes, scene, (H, W)
            spans = layout = None
        else:
            spans = roi_spans(job.codes)
            codes_in, scene_in, layout = [], [], []
            for span in spans:
                pads = None
                for i in span.frames:
                    c, pads = pad_square(crop(job.codes[i], span.box), 0)
                    s, _ = pad_square(crop(scene[i], span.box), 255)
                    codes_in.append(c)
                    scene_in.append(s)
                layout.append((codes_in[-1].shape[0], pads))
            size = (job.roi_size, job.roi_size)

        # unset fields take the preset's defaults (the job builder normally fills them already)
        chosen = PRESETS.get(job.mode)
        steps = job.steps if job.steps is not None or chosen is None else chosen.steps

        def on_step(pipe, step, timestep, info):
            events.progress("denoise", step + 1, steps)

        compositor = None if job.raw else SpanCompositor(spans, layout, scene, job.occlusion,
                                                         job.occlusion_source)
        composite_seconds, sent = [0.0], [0]

        def on_frame(index, frame):  # called as frames are decoded: stream them out right away
            if job.raw:
                events.frame(index, (frame * 255).astype(np.uint8))  # truncation, as official
                return
            t1 = time.perf_counter()
            for i, out_frame in compositor.push(frame):
                events.frame(i, out_frame)
                sent[0] += 1
                events.progress("composite", sent[0], F)
            composite_seconds[0] += time.perf_counter() - t1

        def on_preview(step, indices, images):  # fast schedules: half-size x0 previews a few times
            for index, image in zip(indices, images):
                events.preview(min(index, F - 1), image)

        # the reference image is padded to a white square (multiple of 16), as the official scripts
        character, _ = pad_square(job.character, 255)
        events.progress("encode", 0, 1)
        out = self.pipeline(
            character, codes_in, scene_in, height=size[0], width=size[1],
            num_inference_steps=steps, guidance_scale=job.cfg, seed=job.seed,
            context_frames=job.context, context_overlap=job.overlap, mode=job.mode,
            callback_on_step_end=on_step, frame_callback=on_frame, cancelled=events.cancelled,
            preview_every=max(1, steps // 5) if job.mode != "exact" else 0, preview_callback=on_preview,
            stage_callback=lambda stage: events.progress(stage, 0, 1))
        events.raw_frames(out.frames)
        stats = dict(out.stats, backend=self.name, roi_spans=None if spans is None else len(spans))
        if not job.raw:
            if sent[0] != F:
                raise RuntimeError(f"composite: {sent[0]} of {F} frames came out of the ROI spans")
            stats["seconds"]["composite"] = composite_seconds[0]
        stats["seconds"]["total"] = time.perf_counter() - t0
        stats["seconds_per_frame"] = stats["seconds"]["total"] / F
        return stats

    @property
    def device(self) -> torch.device:
        return self.pipeline.device
