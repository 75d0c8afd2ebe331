"""MimoPipeline and the "mimo" backend on tiny random weights (CPU, 2 steps, 10 frames, 64²).

The central test re-derives the official algorithm (docs/MIMO.md §7) step by step from independent parts —
diffusers' VaeImageProcessor (Lanczos) and transformers' CLIPImageProcessor for preprocessing, a
literal port of the "uniform" context schedule, separate UNet calls for the unconditional half
(zero CLIP token, no reference) and the conditional half, per-frame VAE encode/decode, the DDIM
formula written out — and checks the pipeline's frames against it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mimo.pipeline.job import GenerationJob, JobCancelled, JobEvents
from mimo.pipeline.mimo_backend import MimoBackend
from mimo.pipeline.pipeline import MimoPipeline
from mimo.pipeline.schedule import SCHEDULER_CONFIG, ddim_step_reference

H = W = 64
F = 10
CTX, OVL = 8, 2
STEPS = 2


@pytest.fixture(scope="module")
def pipe(tiny_weights):
    return MimoPipeline.from_pretrained(tiny_weights, device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    char = rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)
    codes = np.zeros((F, H, W, 3), np.uint8)
    for i in range(F):
        codes[i, 14:50, 18 + i:40 + i] = rng.integers(30, 256, 3)
    scene = rng.integers(0, 256, (F, H, W, 3), dtype=np.uint8)
    return char, codes, scene


def _run(pipe, inputs, seed=42, **kw):
    char, codes, scene = inputs
    kw = dict(dict(context_frames=CTX, context_overlap=OVL), **kw)
    return pipe(char, codes, scene, height=H, width=W, num_inference_steps=STEPS, seed=seed, **kw)


@pytest.fixture(scope="module")
def out42(pipe, inputs):
    return _run(pipe, inputs)


def _uniform_windows(step, num_frames, size, stride, overlap, closed_loop=True):
    """Literal port of the AnimateDiff-style 'uniform' schedule (ordered halving of step 0 is 0)."""
    def ordered_halving(val):
        bin_str = f"{val:064b}"
        return int(bin_str[::-1], 2) / (1 << 64)

    if num_frames <= size:
        return [list(range(num_frames))]
    stride = min(stride, int(np.ceil(np.log2(num_frames / size))) + 1)
    out = []
    for context_step in 1 << np.arange(stride):
        pad = int(round(num_frames * ordered_halving(step)))
        for j in range(int(ordered_halving(step) * context_step) + pad,
                       num_frames + pad + (0 if closed_loop else -overlap),
                       (size * context_step - overlap)):
            out.append([e % num_frames for e in range(j, j + size * context_step, context_step)])
    return out


@torch.no_grad()
def _official(pipe, char, codes, scene, seed=42, cfg=3.5):
    from diffusers.image_processor import VaeImageProcessor
    from transformers import CLIPImageProcessorPil

    vae, dtype, dev = pipe.vae, pipe.dtype, pipe.device
    vproc = VaeImageProcessor(vae_scale_factor=8, resample="lanczos")
    pproc = VaeImageProcessor(vae_scale_factor=8, resample="lanczos", do_normalize=False)
    clip_in = CLIPImageProcessorPil()(Image.fromarray(char).resize((224, 224)), return_tensors="pt").pixel_values
    e = pipe.image_encoder(pixel_values=clip_in.to(dev, dtype)).image_embeds[:, None]
    ehs = torch.cat([torch.zeros_like(e), e])
    ref = vproc.preprocess(Image.fromarray(char), height=H, width=W).to(dev, dtype)
    ref_lat = vae.encode(ref).latent_dist.mean * 0.18215
    bank = pipe.reference_unet.write(ref_lat.repeat(2, 1, 1, 1), 0, ehs).to(torch.float16).to(dtype)
    scene_lat = torch.stack([vae.encode(vproc.preprocess(Image.fromarray(s), height=H, width=W).to(dev, dtype))
                             .latent_dist.mean
                             for s in scene], dim=2) * 0.18215
    pose_in = torch.cat([pproc.preprocess(Image.fromarray(c), height=H, width=W) for c in codes])
    pose = pipe.pose_guider(pose_in.transpose(0, 1)[None].to(dev, dtype))
    latents = torch.randn((1, 4, F, H // 8, W // 8), generator=torch.manual_seed(seed), dtype=dtype).to(dev)
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(**SCHEDULER_CONFIG)
    sched.set_timesteps(STEPS, device=dev)
    ts = sched.timesteps.tolist()
    for k, t in enumerate(sched.timesteps):
        acc = torch.zeros((2, 4, F, H // 8, W // 8), dtype=dtype, device=dev)
        cnt = torch.zeros((1, 1, F, 1, 1), dtype=dtype, device=dev)
        for w in _uniform_windows(0, F, CTX, 1, OVL):
            x = torch.cat([latents[:, :, w], scene_lat[:, :, w]], 1)
            p = pose[:, :, w]
            v_u = pipe.denoising_unet(x, t, ehs[:1], pose_cond=p)                 # no reference at all
            v_c = pipe.denoising_unet(x, t, ehs[1:], pose_cond=p, reference=bank.select_rows([1]))
            acc[:, :, w] += torch.cat([v_u, v_c])
            cnt[:, :, w] += 1
        v_u, v_c = (acc / cnt).chunk(2)
        v = v_u + cfg * (v_c - v_u)
        t = int(t)
        latents = ddim_step_reference(v, t, latents, sched.alphas_cumprod, ts[k + 1] if k + 1 < len(ts) else -1)
    frames = [vae.decode(latents[:, :, i] / 0.18215).sample for i in range(F)]
    return torch.cat(frames).div(2).add(0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()


def test_matches_the_official_algorithm(pipe, inputs, out42):
    want = _official(pipe, *inputs)
    assert out42.frames.shape == (F, H, W, 3) and out42.frames.dtype == np.float32
    np.testing.assert_allclose(out42.frames, want, atol=2e-4)
    assert out42.stats["windows"] == 2 and out42.stats["frames"] == F


def test_same_seed_identical_other_seed_different(pipe, inputs, out42):
    again = _run(pipe, inputs, seed=42)
    np.testing.assert_array_equal(again.frames, out42.frames)
    other = _run(pipe, inputs, seed=7)
    assert np.abs(other.frames - out42.frames).mean() > 1e-3


def test_initial_latent_is_cpu_generator_draw(pipe):
    lat = pipe.prepare_latents(5, 32, 48, seed=3)
    want = torch.randn((1, 4, 5, 4, 6), generator=torch.Generator("cpu").manual_seed(3), dtype=pipe.dtype)
    torch.testing.assert_close(lat, want, atol=0, rtol=0)


def test_callbacks_and_cancel(pipe, inputs):
    steps, frames = [], []
    _run(pipe, inputs, seed=1, callback_on_step_end=lambda p, i, t, kw: steps.append((i, t)),
         frame_callback=lambda i, f: frames.append(i))
    assert steps == [(0, 999), (1, 499)] and frames == list(range(F))
    calls = []
    with pytest.raises(JobCancelled):
        _run(pipe, inputs, cancelled=lambda: calls.append(1) or len(calls) > 3)


@pytest.mark.parametrize("kw, match", [
    (dict(context_frames=33), "context_frames: expected 1..32"),
    (dict(height=60), "height: expected a positive multiple of 8"),
    (dict(mode="turbo"), "mode"),
])
def test_check_inputs(pipe, inputs, kw, match):
    char, codes, scene = inputs
    args = dict(height=H, width=W, num_inference_steps=1)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        pipe(char, codes, scene, **args)
    with pytest.raises(ValueError, match="scene: expected 10 frames"):
        pipe(char, codes, scene[:3], height=H, width=W)


def _events(store):
    return JobEvents(progress=lambda s, k, n: store.setdefault("progress", []).append((s, k, n)),
                     frame=lambda i, f: store.setdefault("frames", []).append((i, f)),
                     raw_frames=lambda fr: store.__setitem__("raw", fr))


def test_backend_raw_job_streams_truncated_pipeline_frames(pipe, inputs):
    char, codes, scene = inputs
    # the backend pads the 80x60 character to a white 80x80 square (centred: 10 columns each side)
    square = np.full((80, 80, 3), 255, np.uint8)
    square[:, 10:70] = char
    out42 = _run(pipe, (square, codes, scene))
    job = GenerationJob(character=char, codes=codes, scene=scene, steps=STEPS, context=CTX,
                        overlap=OVL, raw=True)
    store = {}
    stats = MimoBackend(None, pipeline=pipe).generate(job, _events(store))
    assert [i for i, _ in store["frames"]] == list(range(F))
    got = np.stack([f for _, f in store["frames"]])
    np.testing.assert_array_equal(got, (out42.frames * 255).astype(np.uint8))
    np.testing.assert_array_equal(store["raw"], out42.frames)
    assert ("denoise", STEPS, STEPS) in store["progress"] and stats["backend"] == "mimo"


def test_backend_roi_job_composites_into_full_frames(pipe, inputs):
    char, _, _ = inputs
    Fr, Hf, Wf = 6, 96, 128
    codes = np.zeros((Fr, Hf, Wf, 3), np.uint8)
    codes[:, 30:70, 50:74] = (180, 90, 40)
    scene = np.random.default_rng(3).integers(0, 256, (Fr, Hf, Wf, 3), dtype=np.uint8)
    occ = np.zeros((Fr, Hf, Wf), np.uint8)
    occ[:, 50, :] = 255
    job = GenerationJob(character=char, codes=codes, scene=scene, occlusion=occ, steps=1,
                        context=8, overlap=2, roi_size=64)
    store = {}
    stats = MimoBackend(None, pipeline=pipe).generate(job, _events(store))
    frames = np.stack([f for _, f in store["frames"]])
    assert [i for i, _ in store["frames"]] == list(range(Fr)) and frames.shape == (Fr, Hf, Wf, 3)
    assert stats["roi_spans"] == 1 and store["raw"].shape == (Fr, 64, 64, 3)
    # box: mask rows 31..70, cols 51..74 -> margins y 27..75, x 50..76 -> square 48: x 39..87, y 27..75
    outside = np.ones((Hf, Wf), bool)
    outside[27:75, 39:87] = False
    np.testing.assert_array_equal(frames[:, outside], scene[:, outside])
    np.testing.assert_array_equal(frames[:, 50], scene[:, 50])  # the occluder row is in front
    assert np.abs(frames[:, 40, 60].astype(int) - scene[:, 40, 60]).max() > 0  # body pixels changed


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_cuda_half_precision_matches_the_official_algorithm(tmp_path, inputs, dtype):
    from mimo.models import make_tiny

    pipe = MimoPipeline.from_pretrained(make_tiny(tmp_path / "tiny"), device="cuda", dtype=dtype,
                                       compile=False)  # compiled blocks: test_models_gpu.py
    out = _run(pipe, inputs)
    assert np.isfinite(out.frames).all()
    np.testing.assert_array_equal(_run(pipe, inputs).frames, out.frames)
    want = _official(pipe, *inputs)
    assert np.abs(out.frames - want).mean() < 2e-2, np.abs(out.frames - want).mean()
    assert out.stats["peak_memory_gb"] > 0


def test_backend_roi_job_streams_frames_while_it_decodes(pipe, inputs):
    """Composited frames leave during the decode (chunks of 8), not after the whole job."""
    char = inputs[0]
    codes = np.zeros((12, 96, 96, 3), np.uint8)
    codes[:, 20:80, 30:60] = (180, 90, 40)
    order = []
    events = JobEvents(frame=lambda i, f: order.append(("frame", i)),
                       raw_frames=lambda fr: order.append(("raw", len(fr))))
    decoded = []
    real_decode = pipe.decode_vae

    def decode(latents, chunk=8):  # note when each decoded chunk comes out of the VAE
        for frames in real_decode(latents, chunk):
            decoded.append(len(order))
            yield frames

    pipe.decode_vae = decode
    try:
        MimoBackend(None, pipeline=pipe).generate(
            GenerationJob(character=char, codes=codes, steps=1, context=8, overlap=2, roi_size=64), events)
    finally:
        del pipe.decode_vae
    assert [e for e in order if e[0] == "frame"] == [("frame", i) for i in range(12)]
    assert order[-1] == ("raw", 12)          # the float frames are handed over at the very end
    assert decoded == [0, 8]                  # the second chunk was decoded after 8 frames had left


def test_backend_roi_job_with_two_spans(pipe, inputs):
    char = inputs[0]
    codes = np.zeros((8, 96, 96, 3), np.uint8)
    codes[:4, 40:60, 40:52] = (180, 90, 40)   # small body, then a much bigger one: a new span
    codes[4:, 8:90, 10:80] = (180, 90, 40)
    job = GenerationJob(character=char, codes=codes, steps=1, context=8, overlap=2, roi_size=64)
    store = {}
    stats = MimoBackend(None, pipeline=pipe).generate(job, _events(store))
    assert stats["roi_spans"] == 2
    assert len(store["raw"]) == 8 + 4  # the second span starts 4 frames early (crossfaded)
    assert [i for i, _ in store["frames"]] == list(range(8))
    frames = np.stack([f for _, f in store["frames"]])
    assert frames.shape == (8, 96, 96, 3)
    # frame 0 = 0.8 x span 1 (white scene above its box) + 0.2 x span 2 (full frame), truncated
    assert (frames[0, :20] >= 204).all() and (frames[0, :20] < 255).any()


def test_fast_mode_single_window_is_exact_but_for_the_bank_rounding(pipe, inputs):
    exact = _run(pipe, inputs, context_frames=F)          # one window of all frames in both modes
    fast = _run(pipe, inputs, mode="fast", context_frames=F)
    diff = np.abs(fast.frames - exact.frames)
    assert diff.max() < 2e-2  # in fp32 only the fp16 round trip of the exact bank differs
    assert diff.max() > 0
    assert fast.stats["frame_evaluations_per_frame"] == exact.stats["frame_evaluations_per_frame"] == 1


def test_fast_mode_windows_do_not_wrap_and_batch_without_changing_values(pipe, inputs, out42):
    one = _run(pipe, inputs, mode="fast", windows_per_call=1)   # CTX 8, overlap 2: [0..7], [2..9]
    two = _run(pipe, inputs, mode="fast", windows_per_call=2)   # both windows in one UNet call
    assert one.stats["windows"] == two.stats["windows"] == 2
    assert two.stats["windows_per_call"] == 2
    assert one.stats["frame_evaluations_per_frame"] == 1.6
    np.testing.assert_allclose(two.frames, one.frames, atol=1e-5)
    # exact mode wraps ([0..7], [6..9, 0..3]): frames 0..3 are averaged over other windows
    assert np.abs(one.frames - out42.frames).max() > 1e-3
    assert np.isfinite(one.frames).all()


def test_fast_mode_default_window_is_32_frames(pipe, inputs):
    out = _run(pipe, inputs, mode="fast", context_frames=None)  # 10 frames: a single window
    assert out.stats["windows"] == 1 and out.stats["frame_evaluations_per_frame"] == 1


def test_fast_mode_previews_every_n_steps(pipe, inputs):
    seen = []
    _run(pipe, inputs, mode="fast", preview_every=1,
         preview_callback=lambda step, idx, images: seen.append((step, idx, images)))
    assert [s for s, _, _ in seen] == list(range(STEPS))
    for _, idx, images in seen:
        assert idx == [0, F // 2, F - 1] and len(images) == 3
        assert all(im.shape == (H // 2, W // 2, 3) and im.dtype == np.uint8 for im in images)
    assert not np.array_equal(seen[0][2][0], seen[-1][2][0])  # the prediction sharpens over steps


@pytest.mark.gpu
def test_cuda_fast_mode_host_pose_store_equals_device_store(tmp_path, inputs, monkeypatch):
    from mimo.models import make_tiny
    from mimo.pipeline import fast

    pipe = MimoPipeline.from_pretrained(make_tiny(tmp_path / "tiny"), device="cuda", dtype="bf16",
                                       compile=False)
    on_gpu = _run(pipe, inputs, mode="fast")
    monkeypatch.setattr(fast, "POSE_GPU_BUDGET", 0)
    on_host = _run(pipe, inputs, mode="fast")
    np.testing.assert_array_equal(on_host.frames, on_gpu.frames)


def test_compiled_blocks_are_announced_once_per_layout_and_short_clips_run_eagerly(pipe, inputs):
    """With compiled blocks (dynamo's eager backend here: the inductor path needs CUDA), a job
    announces the "compile" stage before its first run of a call layout only, gives the same
    frames, and a clip shorter than one window runs eagerly (no compilation for its length).
    The first job runs in a worker thread, as in the server: torch keeps config overrides per
    thread, and with the default recompile limit (8) a fullgraph block would raise there."""
    import threading

    from mimo.models.compile import BLOCK_TYPES, is_compiled, uncompile_blocks

    torch._dynamo.reset()
    unet = pipe.denoising_unet
    try:
        for m in unet.modules():
            if isinstance(m, BLOCK_TYPES):
                m.compile(backend="eager", fullgraph=True)
        assert is_compiled(unet)
        stages, box = [], {}

        def work():
            try:
                box["out"] = _run(pipe, inputs, stage_callback=stages.append)
            except Exception as exc:  # re-raised below, in the test's thread
                box["error"] = exc

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        if "error" in box:
            raise box["error"]
        first = box["out"]
        assert stages == ["compile"] and first.stats["compiled_blocks"]
        again = _run(pipe, inputs, stage_callback=stages.append)
        assert stages == ["compile"]
        char, codes, scene = inputs
        short = _run(pipe, (char, codes[:CTX - 1], scene[:CTX - 1]), stage_callback=stages.append)
        assert stages == ["compile"] and not short.stats["compiled_blocks"]
    finally:
        uncompile_blocks(unet)
        pipe._compiled_shapes.clear()
        torch._dynamo.reset()
    plain = _run(pipe, inputs)
    np.testing.assert_allclose(first.frames, plain.frames, atol=1e-5)
    np.testing.assert_array_equal(again.frames, first.frames)


def test_backend_warmup_compiles_the_layouts_of_later_jobs(pipe, inputs):
    """MimoBackend.warmup runs one 1-step generation per mode at the ROI size; a later job of that
    size (ROI path, at least one window long) then starts without a "compile" stage."""
    from mimo.models.compile import BLOCK_TYPES, uncompile_blocks

    backend = MimoBackend(None, pipeline=pipe)
    assert backend.warmup(64) == {}  # blocks not compiled: nothing to warm
    torch._dynamo.reset()
    unet = pipe.denoising_unet
    try:
        for m in unet.modules():
            if isinstance(m, BLOCK_TYPES):
                m.compile(backend="eager")
        logs = []
        assert set(backend.warmup(64, log=logs.append)) == {"exact", "fast"}
        assert len(logs) == 2 and "64x64 exact" in logs[0]
        assert {k[:-1] for k in pipe._compiled_shapes} == {("exact", 24, 64, 64), ("fast", 32, 1, 64, 64)}
        char = inputs[0]
        codes = np.zeros((24, 96, 96, 3), np.uint8)
        codes[:, 30:70, 40:60] = (180, 90, 40)
        store = {}
        stats = backend.generate(GenerationJob(character=char, codes=codes, steps=1, roi_size=64),
                                 _events(store))
        stages = [p[0] for p in store["progress"]]
        assert stats["compiled_blocks"] and "denoise" in stages and "compile" not in stages
    finally:
        uncompile_blocks(unet)
        pipe._compiled_shapes.clear()
        torch._dynamo.reset()


@pytest.mark.gpu
def test_cuda_compiled_job_in_a_worker_thread_matches_eager(tmp_path, inputs):
    """The server's path on CUDA: from_pretrained compiles the blocks and the VAE (inductor), a job
    runs in a worker thread, compiles once (announced) and stays within rounding of the eager frames."""
    import threading

    from mimo.models import make_tiny
    from mimo.models.compile import uncompile_blocks, uncompile_vae

    pipe = MimoPipeline.from_pretrained(make_tiny(tmp_path / "tiny"), device="cuda", dtype="fp16")
    box = {}

    def work():
        stages = []
        box["out"], box["stages"] = _run(pipe, inputs, stage_callback=stages.append), stages

    for expect in (["compile"], []):  # the second job reuses the compiled layout
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        assert box["stages"] == expect and box["out"].stats["compiled_blocks"]
        assert box["out"].stats["compiled_vae"]
    uncompile_blocks(pipe.denoising_unet)
    uncompile_vae(pipe.vae)
    diff = np.abs(box["out"].frames - _run(pipe, inputs).frames)
    assert diff.mean() < 5e-3 and diff.max() < 0.1, (diff.mean(), diff.max())
