"""Training on CPU with tiny networks: the objective matches the sampler, a few steps on a fixed
batch lower the loss, guidance dropout removes both conditions, checkpoints are official-layout
folders that load strictly and generate, runs resume, and dataset errors name the file."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mimo.data.dataset import MimoDataset
from mimo.data.layout import Clip, ClipError, read_clip, write_clip
from mimo.models import load_mimo
from mimo.train.objective import MimoTrainNet, alphas_cumprod, noisy_and_target, trainable_parameters
from mimo.train.trainer import TrainConfig, train


def _clip(seed: int, F: int = 6, S: int = 48, characters: int = 1) -> Clip:
    """A figure (a coloured box that walks right) over a textured background; codes mark it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:S, :S]
    scene = np.stack([(xx * 5 + seed * 40) % 256, (yy * 5) % 256, np.full((S, S), 120)], -1)
    scene = np.repeat(scene[None], F, 0).astype(np.uint8)
    frames, codes = scene.copy(), np.zeros_like(scene)
    colour = rng.integers(30, 255, 3)
    for f in range(F):
        x0 = 8 + 2 * f
        frames[f, 10:40, x0:x0 + 12] = colour
        codes[f, 10:40, x0:x0 + 12] = (yy[10:40, x0:x0 + 12, None] * 4 + np.array([20, 60, 90])) % 256
    occlusion = np.zeros((F, S, S), np.uint8)
    occlusion[:, 30:, :6] = 255
    character = np.full((S, S, 3), 255, np.uint8)
    character[10:40, 18:30] = colour
    return Clip(frames=frames, codes=codes, scene=scene, occlusion=occlusion,
                characters=[character] * characters, meta={"fps": 24.0, "source": "test"})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for k in range(2):
        write_clip(root / f"clip{k}", _clip(k))
    return root


@pytest.fixture(scope="module")
def net(tiny_weights):
    m = load_mimo(tiny_weights)
    return MimoTrainNet(m.vae, m.image_encoder, m.reference_unet, m.denoising_unet, m.pose_guider)


def _batch(dataset, frames=1, size=32, n=2):
    ds = MimoDataset(dataset, num_frames=frames, size=size, seed=3)
    return torch.utils.data.default_collate([ds[i] for i in range(n)])


def test_noisy_sample_and_v_target_are_what_the_ddim_step_inverts():
    abar = alphas_cumprod()
    assert abar[999] == 0 and abs(float(abar[0]) - 0.99915) < 1e-5
    x0, noise = torch.randn(4, 4, 3, 5, 5, dtype=torch.float64), torch.randn(4, 4, 3, 5, 5, dtype=torch.float64)
    t = torch.tensor([0, 39, 500, 999])
    x_t, v = noisy_and_target(x0, noise, t, abar)
    a = abar[t].view(-1, 1, 1, 1, 1)
    # the sampler's x0 and eps estimates from (x_t, v) recover x0 and the noise exactly
    torch.testing.assert_close(a.sqrt() * x_t - (1 - a).sqrt() * v, x0)
    torch.testing.assert_close(a.sqrt() * v + (1 - a).sqrt() * x_t, noise)
    torch.testing.assert_close(x_t[3], noise[3])  # zero terminal SNR: pure noise, v = -x0
    torch.testing.assert_close(v[3], -x0[3])


def test_dataset_items_are_prepared_like_inference_and_deterministic(dataset):
    ds = MimoDataset(dataset, num_frames=4, size=32, seed=5)
    a, b = ds[5], MimoDataset(dataset, num_frames=4, size=32, seed=5)[5]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert a["frames"].shape == (3, 4, 32, 32) and a["codes"].shape == (3, 4, 32, 32)
    assert a["reference"].shape == (3, 32, 32) and a["clip"].shape == (3, 224, 224)
    assert a["frames"].min() >= -1 and a["codes"].min() >= 0
    # the crop is the figure's box: the body fills the middle of the square, padding is white
    body = (a["codes"].sum(0) > 0.05)
    assert body[:, 8:24, 8:24].float().mean() > 0.3 and not body[:, :, :2].any()
    c = ds.clips[0]
    assert len(ds) == sum(clip.num_frames - 3 for clip in ds.clips)
    assert c.occlusion is not None and read_clip(c.path).meta["fps"] == 24.0


def test_broken_clips_are_named_by_file(tmp_path):
    write_clip(tmp_path / "a", _clip(0))
    (tmp_path / "a" / "scene.npy").unlink()
    with pytest.raises(ClipError, match=r"a/scene\.npy: missing"):
        MimoDataset(tmp_path)
    write_clip(tmp_path / "a", _clip(0))
    np.save(tmp_path / "a" / "codes.npy", np.zeros((5, 48, 48, 3), np.uint8))
    with pytest.raises(ClipError, match=r"a/codes\.npy: expected \(6, 48, 48, 3\)"):
        MimoDataset(tmp_path)
    (tmp_path / "a" / "meta.json").write_text("{not json")
    with pytest.raises(ClipError, match=r"a/meta\.json: not readable JSON"):
        MimoDataset(tmp_path)
    with pytest.raises(ClipError, match="fewer than a window of 8"):
        write_clip(tmp_path / "a", _clip(0))
        MimoDataset(tmp_path, num_frames=8)


def test_guidance_dropout_removes_the_clip_token_and_the_reference(net, dataset):
    batch = _batch(dataset)
    other = dict(batch, reference=-batch["reference"], clip=batch["clip"].flip(-1))
    net.drop = 1.0
    with torch.no_grad():
        a = net(batch, "image", torch.Generator().manual_seed(1))["loss"]
        b = net(other, "image", torch.Generator().manual_seed(1))["loss"]
        net.drop = 0.0
        c = net(other, "image", torch.Generator().manual_seed(1))["loss"]
    net.drop = 0.1
    assert float(a) == pytest.approx(float(b), rel=1e-6)  # nothing of the reference reaches a dropped row
    assert float(c) != pytest.approx(float(a), rel=1e-3)  # a kept row sees it


@pytest.mark.parametrize("stage, frames", [("image", 1), ("motion", 3)])
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(net, dataset, stage, frames):
    batch = _batch(dataset, frames=frames)
    params = trainable_parameters(net, stage)
    assert params and all(("motion_modules" in n) == (stage == "motion")
                          for n, p in net.denoising_unet.named_parameters() if p.requires_grad)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.Adam(params, lr=2e-3)
    net.train()
    losses = []
    for _ in range(8):
        loss = net(batch, stage, torch.Generator().manual_seed(0))["loss"]  # same t and noise
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    net.load_state_dict(state)
    net.eval()
    assert losses[-1] < 0.8 * losses[0], losses


def test_train_writes_official_checkpoints_that_load_strictly_generate_and_resume(tiny_weights, dataset, tmp_path):
    from mimo.pipeline.pipeline import MimoPipeline

    out = tmp_path / "run"
    cfg = TrainConfig(data=str(dataset), out=str(out), stage="image", weights=str(tiny_weights),
                      size=32, batch=2, steps=2, log_every=1, save_every=1, ema=0.9, lr=1e-3,
                      validate_every=2, val_data=str(dataset), val_steps=2)
    final = train(cfg, log=lambda *_: None)
    for folder in (out / "checkpoint-1", final):
        m = load_mimo(folder)  # strict: every key of every file, nothing missing
        assert m.report.ok
    before, after = load_mimo(tiny_weights), load_mimo(final)
    moved = [k for k, v in after.pose_guider.state_dict().items()
             if not torch.equal(v, before.pose_guider.state_dict()[k])]
    assert moved, "training did not change the pose guider"
    assert all(torch.equal(v, before.vae.state_dict()[k]) for k, v in after.vae.state_dict().items())
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    assert any("val_psnr" in r for r in log) and (out / "val" / "step-2.png").is_file()
    pipe = MimoPipeline.from_pretrained(final, device="cpu", compile=False)
    frames = pipe(np.full((32, 32, 3), 200, np.uint8), np.zeros((2, 32, 32, 3), np.uint8),
                  height=32, width=32, num_inference_steps=2, context_frames=2,
                  context_overlap=0).frames
    assert frames.shape == (2, 32, 32, 3) and np.isfinite(frames).all()
    # the same command with more steps continues where the run stopped
    lines = []
    train(TrainConfig(**{**cfg.__dict__, "steps": 3, "validate_every": 0}), log=lines.append)
    assert lines[0] == f"resuming {out} at step 2"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 3


@pytest.mark.parametrize("argv, fragment", [
    (["--size", "30"], "--size: expected a multiple of 8"),
    (["--steps", "0"], "--steps: expected at least 1"),
    (["--frames", "40"], "--frames: expected 1..32"),
    (["--drop", "2"], "--drop: out of range"),
    (["--validate-every", "5"], "--validate-every: needs --val-data"),
    (["--weights", "/no/such/folder"], "--weights: /no/such/folder is not a folder"),
    (["--lr", "inf"], "--lr: out of range"),
    (["--max-minutes", "nan"], "--max-minutes: out of range"),
    (["--warmup", "-1"], "--warmup: expected at least 0"),
    (["--save-every", "-1"], "--save-every: expected at least 0"),
    (["--workers", "-1"], "--workers: expected at least 0"),
    (["--seed", "-1"], "--seed: expected 0..4294967295"),
    (["--val-data", "."], "--val-data: needs --validate-every"),
    (["--stage", "full"], "--stage: full fine-tunes existing weights"),
    (["--device", "bogus"], "--device: expected cpu, cuda or cuda:N"),
])
def test_train_command_refuses_bad_arguments_in_one_line(dataset, tmp_path, capsys, argv, fragment):
    from mimo.cli import main

    assert main(["train", str(dataset), "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and not (tmp_path / "o").exists()


def test_train_command_names_a_broken_dataset(tmp_path, capsys):
    from mimo.cli import main

    write_clip(tmp_path / "d" / "c", _clip(0))
    (tmp_path / "d" / "c" / "frames.npy").write_bytes(b"garbage")
    assert main(["train", str(tmp_path / "d"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "c/frames.npy" in err


def test_lora_trains_adapters_only_and_checkpoints_merge_them(tiny_weights, dataset, tmp_path):
    pytest.importorskip("peft")
    from mimo.train.lora import add_lora, merged_state_dict

    m = load_mimo(tiny_weights)
    net = MimoTrainNet(m.vae, m.image_encoder, m.reference_unet, m.denoising_unet, m.pose_guider)
    batch = _batch(dataset, frames=2)
    with torch.no_grad():
        before = net(batch, "full", torch.Generator().manual_seed(0))["loss"]
    params = add_lora(net, "full", rank=4)
    assert params and all(".lora_" in n for n, p in net.named_parameters() if p.requires_grad)
    with torch.no_grad():  # B starts at zero: the same network until it trains
        after = net(batch, "full", torch.Generator().manual_seed(0))["loss"]
        assert float(after) == pytest.approx(float(before), rel=1e-6)
    opt = torch.optim.Adam(params, lr=1e-2)
    net.train()
    for _ in range(3):
        loss = net(batch, "full", torch.Generator().manual_seed(0))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    merged = merged_state_dict(net.denoising_unet)
    assert set(merged) == set(m.denoising_unet.__class__(m.unet_config).state_dict())
    plain = m.denoising_unet.__class__(m.unet_config)
    plain.load_state_dict(merged, strict=True)
    x = torch.randn(1, 8, 2, 4, 4)
    clip = torch.randn(1, 1, m.unet_config.cross_attention_dim)
    with torch.no_grad():
        torch.testing.assert_close(plain(x, 10, clip), net.denoising_unet(x, 10, clip), atol=1e-5, rtol=1e-4)
    # through mimo train: the checkpoint is plain official-layout weights, changed only where adapters sat
    cfg = TrainConfig(data=str(dataset), out=str(tmp_path / "lora"), stage="full", frames=2,
                      weights=str(tiny_weights), size=32, batch=1, steps=2, lora=4, lr=1e-2)
    base, tuned = load_mimo(tiny_weights), load_mimo(train(cfg, log=lambda *_: None))
    changed = {k for k, v in tuned.denoising_unet.state_dict().items()
               if not torch.equal(v, base.denoising_unet.state_dict()[k])}
    assert changed and all(k.rsplit(".", 2)[-2] in ("to_q", "to_k", "to_v", "0") for k in changed), changed


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_weights, dataset):
    from mimo.train.objective import enable_gradient_checkpointing

    batch = _batch(dataset, frames=2)
    grads = []
    for checkpointed in (False, True):
        m = load_mimo(tiny_weights)
        net = MimoTrainNet(m.vae, m.image_encoder, m.reference_unet, m.denoising_unet, m.pose_guider)
        params = trainable_parameters(net, "full")
        if checkpointed:
            assert enable_gradient_checkpointing(net.denoising_unet) == 9
            enable_gradient_checkpointing(net.reference_unet)
        loss = net(batch, "full", torch.Generator().manual_seed(0))["loss"]
        loss.backward()
        grads.append((float(loss), [None if p.grad is None else p.grad.clone() for p in params]))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-6)
    assert sum(g is not None for g in grads[0][1]) > 1000
    for a, b in zip(grads[0][1], grads[1][1]):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_two_processes_train_one_model_through_torchrun(tiny_weights, dataset, tmp_path):
    """torch DDP on CPU (gloo): the script that runs on one GPU runs on several."""
    import os
    import subprocess
    import sys

    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    out = tmp_path / "ddp"
    result = subprocess.run([torchrun, "--nproc-per-node", "2", "-m", "mimo.train.cli", str(dataset),
                             "--out", str(out), "--stage", "image", "--weights", str(tiny_weights),
                             "--size", "32", "--batch", "1", "--steps", "2", "--log-every", "1",
                             "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("weights (official layout)") == 1  # rank 0 speaks for the run
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert load_mimo(out / "final").report.ok


def _train_cli(*argv):
    from mimo.cli import main

    return main(["train", *map(str, argv), "--size", "32", "--batch", "1", "--device", "cpu"])


def test_train_command_checks_out_weights_and_state_before_any_work(dataset, tiny_weights, tmp_path, capsys):
    # a folder of the user's is never written into
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": 1}')
    assert _train_cli(dataset, "--out", mine, "--steps", "1") == 2
    assert "--out:" in capsys.readouterr().err and (mine / "config.json").read_text() == '{"my": 1}'
    assert _train_cli(dataset, "--out", dataset, "--steps", "1") == 2
    assert "inside it" in capsys.readouterr().err
    # a weights folder that does not load strictly (here: a run folder, not its final/)
    run = tmp_path / "run"
    assert _train_cli(dataset, "--out", run, "--stage", "vae", "--steps", "1") == 0
    capsys.readouterr()
    assert _train_cli(dataset, "--out", tmp_path / "o", "--weights", run, "--steps", "1") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--weights:" in err and "did you mean it" in err
    assert not (tmp_path / "o").exists()
    # a finished run is not trained again, and its final weights are left as they are
    stamp = (run / "final" / "denoising_unet.pth").stat().st_mtime_ns
    assert _train_cli(dataset, "--out", run, "--stage", "vae", "--steps", "1") == 0
    assert "nothing to train" in capsys.readouterr().out
    assert (run / "final" / "denoising_unet.pth").stat().st_mtime_ns == stamp
    # a damaged state.pt names itself and says what to do
    (run / "state.pt").write_bytes(b"garbage")
    assert _train_cli(dataset, "--out", run, "--stage", "vae", "--steps", "2") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "state.pt is damaged" in err and "delete it" in err


def test_interrupted_training_keeps_its_state_and_resumes(dataset, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(dataset), out=str(out), stage="vae", size=32, batch=1, steps=5, log_every=1)

    def stop_after_two(line):
        if line.startswith("step 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, log=stop_after_two)
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 2
    assert load_mimo(out / "checkpoint-2").report.ok
    lines = []
    train(cfg, log=lines.append)
    assert lines[0] == f"resuming {out} at step 2"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5]


def test_every_clip_folder_counts_and_meta_json_types_are_checked(tmp_path):
    write_clip(tmp_path / "a", _clip(0))
    write_clip(tmp_path / "b", _clip(1))
    (tmp_path / "b" / "meta.json").unlink()  # a broken clip is reported, never skipped
    with pytest.raises(ClipError, match=r"b/meta\.json: missing"):
        MimoDataset(tmp_path)
    write_clip(tmp_path / "b", _clip(1))
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    for bad, fragment in (({"characters": 5}, '"characters" must be a list'),
                          ({"characters": ["/etc/passwd"]}, "inside the clip folder"),
                          ({"characters": ["../a/character_0.png"]}, "inside the clip folder"),
                          ({"fps": "fast"}, '"fps" must be a positive number'),
                          ({"num_frames": "6"}, '"num_frames" must be a positive integer')):
        (tmp_path / "b" / "meta.json").write_text(json.dumps({**meta, **bad}))
        with pytest.raises(ClipError, match=fragment):
            read_clip(tmp_path / "b")
