"""Tiny random ``transformers`` models of the four stages, built from configs (no download): for
tests, and (``full=True``: the default configs of the real architectures, random weights) for
timing the stages on a machine that has no weights."""
from __future__ import annotations

from pathlib import Path

import torch


def build(stage: str, full: bool = False):
    """(model, processor) of ``stage`` with random weights."""
    import transformers as tf

    if stage == "detector":
        if full:
            cfg = tf.RTDetrConfig(num_labels=80, id2label={i: ("person" if i == 0 else f"c{i}") for i in range(80)})
        else:
            bb = tf.RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1],
                                       out_features=["stage2", "stage3", "stage4"])
            cfg = tf.RTDetrConfig(backbone_config=bb, d_model=16, encoder_hidden_dim=16,
                                  encoder_in_channels=[16, 16, 16], encoder_ffn_dim=16, encoder_attention_heads=2,
                                  decoder_layers=1, decoder_ffn_dim=16, decoder_attention_heads=2, num_queries=10,
                                  decoder_in_channels=[16, 16, 16], num_denoising=0, decoder_n_points=1,
                                  hidden_expansion=0.5, id2label={0: "person", 1: "car"},
                                  label2id={"person": 0, "car": 1})
        size = 640 if full else 64
        return tf.RTDetrForObjectDetection(cfg).eval(), tf.RTDetrImageProcessor(size={"height": size, "width": size})
    if stage == "pose":
        if full:
            cfg = tf.VitPoseConfig(backbone_config=tf.VitPoseBackboneConfig(out_indices=[12]), num_labels=17)
            size = {"height": 256, "width": 192}
        else:
            bb = tf.VitPoseBackboneConfig(image_size=[64, 48], patch_size=[16, 16], hidden_size=16,
                                          num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, out_indices=[1])
            cfg = tf.VitPoseConfig(backbone_config=bb, num_labels=17)
            size = {"height": 64, "width": 48}
        return tf.VitPoseForPoseEstimation(cfg).eval(), tf.VitPoseImageProcessor(size=size)
    if stage == "segmenter":
        if full:
            cfg = tf.SamConfig()
            proc = tf.SamProcessor(tf.SamImageProcessor())
        else:
            cfg = tf.SamConfig(
                vision_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=64,
                                   patch_size=16, output_channels=8, global_attn_indexes=[0], mlp_dim=16,
                                   window_size=0, num_pos_feats=4),
                prompt_encoder_config=dict(hidden_size=8, image_size=64, patch_size=16, mask_input_channels=4),
                mask_decoder_config=dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, mlp_dim=16,
                                         iou_head_hidden_dim=8))
            proc = tf.SamProcessor(tf.SamImageProcessor(size={"longest_edge": 64},
                                                        pad_size={"height": 64, "width": 64},
                                                        mask_size={"longest_edge": 16}))
        return tf.SamModel(cfg).eval(), proc
    if stage == "depth":
        if full:
            dino = tf.Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, image_size=518,
                                   patch_size=14, out_indices=[3, 6, 9, 12], reshape_hidden_states=False,
                                   apply_layernorm=True)
            cfg = tf.DepthAnythingConfig(backbone_config=dino, reassemble_hidden_size=384,
                                         neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64)
            size = 518
        else:
            dino = tf.Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                                   image_size=28, patch_size=14, out_indices=[1, 2], reshape_hidden_states=False)
            cfg = tf.DepthAnythingConfig(backbone_config=dino, reassemble_hidden_size=16, neck_hidden_sizes=[8, 16],
                                         reassemble_factors=[2, 1], fusion_hidden_size=8, head_hidden_size=8)
            size = 28
        proc = tf.DPTImageProcessor(size={"height": size, "width": size}, keep_aspect_ratio=True,
                                    ensure_multiple_of=14, do_pad=False)
        return tf.DepthAnythingForDepthEstimation(cfg).eval(), proc
    raise ValueError(f"stage: expected detector, segmenter, pose or depth, got {stage!r}")


def save_tiny(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write the four tiny models (``from_pretrained`` folders) under ``folder``; returns their paths."""
    out = {}
    for stage in ("detector", "segmenter", "pose", "depth"):
        torch.manual_seed(seed)
        model, proc = build(stage)
        path = Path(folder) / stage
        model.save_pretrained(path)
        proc.save_pretrained(path)
        out[stage] = path
    return out


def build_inpainter():
    """A tiny random Stable Diffusion inpainting pipeline (9-channel UNet, 2-level VAE, one-layer
    CLIP text encoder, a character-level CLIP tokenizer, no safety checker), built from configs."""
    import transformers as tf
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz,.":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    tokenizer = tf.CLIPTokenizer(vocab=vocab, merges=[], model_max_length=64)
    text = tf.CLIPTextModel(tf.CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                              num_attention_heads=2, num_hidden_layers=1, max_position_embeddings=64,
                                              bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    unet = UNet2DConditionModel(sample_size=16, in_channels=9, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=16,
                                attention_head_dim=2, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        layers_per_block=1, norm_num_groups=4, sample_size=32,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2).eval()
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionInpaintPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                          scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)


def save_tiny_inpainter(folder: str | Path, seed: int = 0) -> Path:
    """Write :func:`build_inpainter`'s pipeline (a ``from_pretrained`` folder) to ``folder``."""
    torch.manual_seed(seed)
    build_inpainter().save_pretrained(folder)
    return Path(folder)
