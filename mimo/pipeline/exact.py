"""Exact mode: the official pipeline's numerics (docs/MIMO.md §7), as a :class:`Schedule`.

Quirks of docs/MIMO.md §11 included: fixed windows that wrap around the clip end, the reference
bank written from [zeros; CLIP] rows and rounded to fp16, window sums and averages in the latent
(model) dtype, DDIM. What differs from the official code only changes the speed (see
``mimo/pipeline/pipeline.py``).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .fast import DECODE_CHUNK, ENCODE_CHUNK
from .frames import frames_to_tensor
from .schedule import DenoiseInputs, Plan, Schedule, context_windows

#: frames per VAE call of the official scripts' batch (eager VAE)
EXACT_VAE_CHUNK = 8


class ExactSchedule(Schedule):
    name = "exact"
    default_context = 24

    def latent_dtype(self, pipe) -> torch.dtype:
        return pipe.dtype

    def plan(self, pipe, num_frames, height, width, context, overlap, windows_per_call) -> Plan:
        windows = context_windows(num_frames, context, overlap, closed_loop=True)
        # a compiled VAE runs fast mode's chunks (one shape each); eager, the official batch of 8;
        # low-memory mode one frame per call (the windows stay: they are the official numerics)
        compiled_vae = pipe.vae_is_compiled
        encode, decode = (ENCODE_CHUNK, DECODE_CHUNK) if compiled_vae else (EXACT_VAE_CHUNK,) * 2
        if pipe.low_memory:
            encode = decode = 1
        return Plan(windows=windows, per_call=1, encode_chunk=encode, decode_chunk=decode,
                    layout=("exact", len(windows[0]), height, width))

    def reference(self, pipe, ref_latent, clip):
        clip2 = torch.cat([torch.zeros_like(clip), clip])                       # (2, 1, D)
        bank = pipe.reference_unet.write(ref_latent.repeat(2, 1, 1, 1), 0, clip2)
        return bank.to(torch.float16).to(pipe.dtype)  # the official fp16 cast (docs/MIMO.md §5)

    def pose(self, pipe, codes, width, height) -> torch.Tensor:
        return pipe.encode_pose(frames_to_tensor(codes, width, height, False))  # (1, C0, F, h, w)

    def denoise(self, pipe, inputs: DenoiseInputs, plan: Plan, steps: int, guidance_scale: float,
                on_step: Callable, check_cancel: Callable) -> torch.Tensor:
        """The official loop: fixed wrapping windows, plain mean in the latent dtype, CFG, DDIM.

        Shapes:
            inputs.latents, inputs.scene_latents (1, 4, F, h, w); inputs.pose (1, C0, F, h, w)
            returns latents (1, 4, F, h, w)
        """
        scheduler = pipe.scheduler
        scheduler.set_timesteps(steps, device=pipe.device)
        latents = inputs.latents
        clip2 = torch.cat([torch.zeros_like(inputs.clip), inputs.clip])          # (2, 1, D)
        for step, t in enumerate(scheduler.timesteps):
            v_sum, count = self.window_sums(pipe, latents, inputs, clip2, t, plan.windows, check_cancel)
            v = v_sum if count is None else v_sum / count
            v_uncond, v_cond = v.chunk(2)
            v = v_uncond + guidance_scale * (v_cond - v_uncond)
            out = scheduler.step(v, t, latents, eta=0.0)
            latents = out.prev_sample
            on_step(step, int(t), latents, out.pred_original_sample)
        return latents

    def window_sums(self, pipe, latents, inputs: DenoiseInputs, clip2, t, windows, check_cancel):
        """The per-window accumulation of one step: the sum of every window's v over the frames it
        covers and how many windows cover each frame, both in the latent dtype (these two are what
        a split across processes reduces). A single window returns its v and ``None`` (dividing by
        1 changes no bit).

        Shapes:
            returns v_sum (2, 4, F, h, w) [uncond; cond], count (1, 1, F, 1, 1) or None
        """
        device = pipe.device
        rows = [False, True]  # [uncond; cond]: only the conditional row reads the reference
        sharding = pipe.sharding  # several GPUs: mimo/pipeline/distributed.py
        if len(windows) == 1 and sharding is None:
            check_cancel()
            return self._unet(pipe, latents, inputs.scene_latents, inputs.pose, t, clip2, inputs.bank,
                              rows), None
        num_frames = latents.shape[2]
        v_sum = torch.zeros((2,) + latents.shape[1:], dtype=latents.dtype, device=device)
        count = torch.zeros((1, 1, num_frames, 1, 1), dtype=latents.dtype, device=device)
        for w in windows:
            count[:, :, torch.tensor(w, device=device)] += 1
        for w in windows if sharding is None else sharding.mine(windows):
            idx = torch.tensor(w, device=device)
            check_cancel()
            v_sum[:, :, idx] += self._unet(pipe, latents[:, :, idx], inputs.scene_latents[:, :, idx],
                                           inputs.pose[:, :, idx], t, clip2, inputs.bank, rows)
        if sharding is not None:  # the other ranks' windows
            v_sum = sharding.reduce_sum(v_sum)
        return v_sum, count

    @staticmethod
    def _unet(pipe, latents, scene_latents, pose, t, clip2, bank, rows) -> torch.Tensor:
        """One denoising-UNet call on a window, CFG halves [uncond; cond] in one batch.

        Shapes:
            latents, scene_latents (1, 4, f, h, w); pose (1, C0, f, h, w) -> v (2, 4, f, h, w)
        """
        x = torch.cat([latents, scene_latents], dim=1).repeat(2, 1, 1, 1, 1)
        x = pipe.scheduler.scale_model_input(x, t)
        return pipe.denoising_unet(x, t, clip2, pose_cond=pose.repeat(2, 1, 1, 1, 1),
                                   reference=bank, reference_rows=rows)
