"""The training objective of the networks the pipeline runs: DDPM forward noising with the
pipeline's own scheduler settings and an MSE on the v target.

* The noise schedule is the one :func:`mimo.pipeline.schedule.make_scheduler` samples with
  (scaled-linear betas rescaled to zero terminal SNR), so ``alphas_cumprod[999] = 0``: at the
  last timestep the network sees pure noise and must predict ``v = -x0``.
* ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps`` and ``v = sqrt(a_t) eps - sqrt(1 - a_t) x0``, the
  target of a v-prediction network (the DDIM step of inference inverts exactly this).
* Classifier-free guidance dropout: with probability ``drop`` a sample loses both conditions the
  inference's unconditional row lacks -- its CLIP token becomes zeros and its rows do not read
  the reference bank. The scene latent and the pose features are never dropped (inference gives
  them to both rows).

:class:`MimoTrainNet` holds the five networks and returns the loss of one batch of
:class:`mimo.data.MimoDataset` items; one module, so torch DDP can wrap it whole.

Stages (which parameters train; the rest are frozen):
    ``vae``     the VAE as an autoencoder (reconstruction + a small KL term) -- only for models
                trained from scratch, such as the yardstick's tiny MIMO;
    ``image``   stage 1 on single frames: reference UNet, the denoising UNet's spatial layers,
                pose guider (and the CLIP tower when ``train_image_encoder``);
    ``motion``  stage 2 on windows: the denoising UNet's motion modules only;
    ``full``    fine-tuning everything but the VAE and CLIP tower (one character, windows).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F_
from torch import nn

from mimo.pipeline.pipeline import VAE_SCALE

STAGES = ("vae", "image", "motion", "full")
KL_WEIGHT = 1e-6


def alphas_cumprod() -> torch.Tensor:
    """ā_t of the pipeline's scheduler (1000 values, float64; ā_999 = 0)."""
    from mimo.pipeline.schedule import make_scheduler

    return make_scheduler().alphas_cumprod.double()


def noisy_and_target(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                     abar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DDPM forward noising and the v target.

    Shapes: x0, noise (B, ...) ; t (B,) int64 -> x_t, v (B, ...) in x0's dtype
    """
    a = abar.to(x0.device)[t].view(-1, *([1] * (x0.ndim - 1)))
    sa, sb = a.sqrt().to(x0.dtype), (1 - a).sqrt().to(x0.dtype)
    return sa * x0 + sb * noise, sa * noise - sb * x0


def trainable_parameters(net: MimoTrainNet, stage: str, train_image_encoder: bool = False) -> list:
    """Set ``requires_grad`` for ``stage`` (see the module docstring) and return what trains."""
    if stage not in STAGES:
        raise ValueError(f"stage: expected one of {STAGES}, got {stage!r}")
    net.requires_grad_(False)
    if stage == "vae":
        net.vae.requires_grad_(True)
    elif stage == "image":
        for name, p in net.denoising_unet.named_parameters():
            p.requires_grad_(".motion_modules." not in name)
        net.reference_unet.requires_grad_(True)
        net.pose_guider.requires_grad_(True)
        net.image_encoder.requires_grad_(train_image_encoder)
    elif stage == "motion":
        for name, p in net.denoising_unet.named_parameters():
            p.requires_grad_(".motion_modules." in name)
    else:
        for module in (net.denoising_unet, net.reference_unet, net.pose_guider):
            module.requires_grad_(True)
    return [p for p in net.parameters() if p.requires_grad]


class MimoTrainNet(nn.Module):
    """The five networks and the loss of one batch.

    ``forward(batch, stage, generator=None)`` -> ``{"loss": scalar, ...}``. ``batch`` is a
    collated :class:`mimo.data.MimoDataset` batch: frames, scene (B, 3, N, S, S) in [-1, 1],
    codes (B, 3, N, S, S) in [0, 1], reference (B, 3, S, S), clip (B, 3, 224, 224).
    """

    def __init__(self, vae, image_encoder, reference_unet, denoising_unet, pose_guider,
                 drop: float = 0.1):
        super().__init__()
        self.vae, self.image_encoder = vae, image_encoder
        self.reference_unet, self.denoising_unet, self.pose_guider = reference_unet, denoising_unet, pose_guider
        self.drop = float(drop)
        self.register_buffer("abar", alphas_cumprod().float(), persistent=False)

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        """VAE posterior mean x 0.18215, as inference encodes (gradients only if the VAE trains).

        Shapes: (M, 3, S, S) -> (M, 4, S/8, S/8)
        """
        grad = any(p.requires_grad for p in self.vae.parameters())
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return self.vae.encode(images).latent_dist.mean * VAE_SCALE

    def forward(self, batch: dict, stage: str, generator: torch.Generator | None = None) -> dict:
        dev = self.abar.device
        dtype = next(self.denoising_unet.parameters()).dtype
        frames = batch["frames"].to(dev, dtype)
        B, _, N, S, _ = frames.shape
        if stage == "vae":
            return self._vae_loss(frames.transpose(1, 2).reshape(B * N, 3, S, S), generator)

        def latents(x):  # (B, 3, N, S, S) -> (B, 4, N, s, s)
            z = self._encode(x.transpose(1, 2).reshape(B * N, 3, S, S))
            return z.reshape(B, N, *z.shape[1:]).transpose(1, 2)

        x0 = latents(frames)
        scene = latents(batch["scene"].to(dev, dtype))
        ref = self._encode(batch["reference"].to(dev, dtype))                         # (B, 4, s, s)
        clip = self.image_encoder(pixel_values=batch["clip"].to(dev, dtype)).image_embeds[:, None]
        keep = torch.rand(B, generator=generator, device="cpu") >= self.drop            # (B,) bool
        # the dropped rows go last: the denoising UNet reads the bank one contiguous run of rows at
        # a time (an attention call per run and layer), and the items of a batch are independent
        # draws, so which rows drop does not matter -- only how many
        keep = torch.arange(B) < int(keep.sum())
        clip = clip * keep.to(dev, clip.dtype).view(B, 1, 1)
        bank = self.reference_unet.write(ref, 0, clip)
        pose = self.pose_guider(batch["codes"].to(dev, dtype))                        # (B, C0, N, s, s)
        t = torch.randint(0, self.abar.shape[0], (B,), generator=generator, device="cpu").to(dev)
        noise = torch.randn(x0.shape, generator=generator, device="cpu").to(dev, dtype)
        x_t, v = noisy_and_target(x0, noise, t, self.abar)
        if torch.is_grad_enabled() and stage == "motion":
            # torch 2.13 on CPU crashes (SIGSEGV) in GroupNorm's backward for a channels-last input
            # that needs no gradient while the norm's weights do: the motion modules' first norm
            # sees exactly that. Asking for the input's gradient takes torch's other code path.
            x_t.requires_grad_(True)
        v_hat = self.denoising_unet(torch.cat([x_t, scene], 1), t, clip, pose_cond=pose,
                                    reference=bank, reference_rows=keep.tolist())
        loss = F_.mse_loss(v_hat.float(), v.float())
        return {"loss": loss, "dropped": float((~keep).float().mean())}

    def _vae_loss(self, images: torch.Tensor, generator) -> dict:
        """Reconstruction (L1 + MSE) of a sample of the posterior, plus a small KL term."""
        posterior = self.vae.encode(images).latent_dist
        eps = torch.randn(posterior.mean.shape, generator=generator, device="cpu").to(images)
        z = posterior.mean + posterior.std * eps
        recon = self.vae.decode(z).sample
        rec = F_.l1_loss(recon.float(), images.float()) + F_.mse_loss(recon.float(), images.float())
        kl = posterior.kl().mean() / images[0].numel()
        return {"loss": rec + KL_WEIGHT * kl, "reconstruction": float(rec.detach())}


def enable_gradient_checkpointing(unet: nn.Module) -> int:
    """Recompute each down, mid and up block of a UNet in the backward pass instead of keeping
    its activations (less memory, about a third more compute). Returns the blocks wrapped."""
    from torch.utils.checkpoint import checkpoint

    blocks = list(unet.down_blocks) + [unet.mid_block] + list(unet.up_blocks)
    for block in blocks:
        if getattr(block, "_mimo_checkpointed", False):
            continue
        forward = block.forward

        def wrapped(*args, _forward=forward, **kwargs):
            if not torch.is_grad_enabled():
                return _forward(*args, **kwargs)

            def again(*a, **k):  # up blocks pop their skip list: give each run its own copy
                return _forward(*[list(x) if isinstance(x, list) else x for x in a], **k)

            return checkpoint(again, *args, use_reentrant=False, **kwargs)

        block.forward = wrapped
        block._mimo_checkpointed = True
    return len(blocks)
