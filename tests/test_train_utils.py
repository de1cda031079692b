"""The pieces the training scripts are built from: losses, DiffAugment, config parsing with presets,
checkpoint discovery and the loss log."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from rsgan_hub.augment import diff_augment
from rsgan_hub.losses import (bce_discriminator_loss, bce_generator_loss, hinge_discriminator_loss,
                              hinge_generator_loss, l1_loss, ssim_loss)
from rsgan_hub.training import LossLog, find_checkpoint, flag, list_checkpoints, parse_config, save_config


def test_bce_losses_and_label_smoothing():
    logits = torch.zeros(1000)
    # at D = 0.5 everywhere: -log(0.5) per term
    assert bce_discriminator_loss(logits, logits).item() == pytest.approx(2 * 0.6931, abs=1e-3)
    assert bce_generator_loss(logits).item() == pytest.approx(0.6931, abs=1e-3)
    # a confident, correct D: loss near 0 with hard labels, but not with targets ~ U(0.9, 1)
    real, fake = torch.full((1000,), 12.0), torch.full((1000,), -12.0)
    assert bce_discriminator_loss(real, fake).item() < 1e-4
    smoothed = bce_discriminator_loss(real, fake, (0.9, 1.0)).item()
    assert 0.3 < smoothed < 0.9  # mean target 0.95 -> about 0.05 * 12 = 0.6
    # bf16 logits come back as an fp32 loss
    assert bce_generator_loss(logits.bfloat16()).dtype == torch.float32


def test_hinge_and_l1():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert hinge_discriminator_loss(real, fake).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert hinge_generator_loss(fake).item() == pytest.approx(1.0)
    assert l1_loss(torch.ones(2, 3), torch.zeros(2, 3)).item() == 1.0


def test_ssim_loss_is_the_evaluated_ssim_and_learns_structure():
    from rsgan_hub.evaluation.translation import SatelliteScores

    torch.manual_seed(0)
    target = torch.rand(2, 3, 32, 32) * 2 - 1
    assert ssim_loss(target, target).item() == pytest.approx(0.0, abs=1e-5)
    # the same SSIM `rsgan evaluate` reports on 8-bit tiles
    noisy = (target + 0.3 * torch.randn_like(target)).clamp(-1, 1)
    scores = SatelliteScores()
    scores.update(((noisy + 1) * 127.5).round(), ((target + 1) * 127.5).round())
    assert 1 - ssim_loss(noisy, target).item() == pytest.approx(scores.compute()["ssim"], abs=2e-3)
    # a flat image at the target's mean has the L1-optimal colour but no structure: SSIM says so
    flat = torch.full_like(target, target.mean().item())
    assert ssim_loss(flat, target).item() > 0.9
    # fp32 inside bf16 autocast, and gradient descent on it raises the SSIM
    prediction = flat.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([prediction], lr=0.05)
    for _ in range(30):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = ssim_loss(prediction, target)
        assert loss.dtype == torch.float32
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert ssim_loss(prediction, target).item() < 0.5


def test_diff_augment_is_random_per_image_and_differentiable():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    assert torch.equal(diff_augment(x, ""), x)
    y = diff_augment(x)
    assert y.shape == x.shape
    assert not torch.allclose(y[0] - x[0], y[1] - x[1])  # each image gets its own draw
    cut = diff_augment(x.detach(), "cutout")
    zero_fraction = (cut == 0).float().mean().item()
    assert 0.1 < zero_fraction < 0.3  # a 16x16 square of 32x32 (clipped at the border): <= 25 %
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown DiffAugment operation 'blur'"):
        diff_augment(x, "color,blur")


@dataclass
class Config:
    """A test config."""

    preset: str = flag("default", "recipe")
    lr: float = flag(1e-3, "learning rate")
    steps: int = flag(None, "optional steps")
    widths: list = flag([8, 16], "widths")
    ema: bool = flag(True, "use EMA")
    norm: str = flag("none", "a string whose value is 'none'", choices=["none", "batch"])
    batch: int = flag(4, "batch size", minimum=1)


PRESETS = {"default": {}, "seed": {"lr": 4e-5, "widths": [1, 2, 3], "ema": False}}


def test_parse_config_presets_and_flags(tmp_path, capsys):
    assert parse_config(Config, PRESETS, []) == Config()
    seed = parse_config(Config, PRESETS, ["--preset", "seed"])
    assert (seed.lr, seed.widths, seed.ema, seed.steps) == (4e-5, [1, 2, 3], False, None)
    explicit = parse_config(Config, PRESETS, ["--lr", "0.5", "--preset", "seed", "--ema", "--steps", "7", "--widths", "4"])
    assert (explicit.lr, explicit.ema, explicit.steps, explicit.widths) == (0.5, True, 7, [4])  # flags beat the preset
    assert parse_config(Config, PRESETS, ["--steps", "none"]).steps is None
    assert parse_config(Config, PRESETS, []).norm == "none"  # only optional fields turn "none" into None
    with pytest.raises(SystemExit):
        parse_config(Config, PRESETS, ["--steps", "many"])
    assert explicit.explicit_flags == {"lr", "preset", "ema", "steps", "widths"}  # what --init_from may not override
    assert parse_config(Config, PRESETS, ["--no-ema"]).explicit_flags == {"ema"}
    for bad in (["--batch", "0"], ["--norm", "group"], ["--ba", "2"]):  # below the minimum, not a choice, abbreviated
        with pytest.raises(SystemExit):
            parse_config(Config, PRESETS, bad)
    assert "must be at least 1, got 0" in capsys.readouterr().err
    save_config(explicit, tmp_path)
    assert json.loads((tmp_path / "training_config.json").read_text())["widths"] == [4]
    assert '"lr": 0.5' in capsys.readouterr().out


def test_find_checkpoint_ignores_incomplete_ones(tmp_path):
    assert find_checkpoint(tmp_path, "latest") == (None, 0)
    assert find_checkpoint(tmp_path, None) == (None, 0)
    for name in ("checkpoint-10", "checkpoint-200", "checkpoint-30", ".checkpoint-400.tmp", "checkpoint-x"):
        (tmp_path / name).mkdir()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-10", "checkpoint-30", "checkpoint-200"]
    assert find_checkpoint(tmp_path, "latest") == (tmp_path / "checkpoint-200", 200)
    assert find_checkpoint(tmp_path, str(tmp_path / "checkpoint-30")) == (tmp_path / "checkpoint-30", 30)
    with pytest.raises(ValueError, match="not a checkpoint-<step> folder"):
        find_checkpoint(tmp_path, str(tmp_path / ".checkpoint-400.tmp"))


def test_loss_log_trims_on_resume_and_plots(tmp_path):
    log = LossLog(tmp_path)
    for step in range(1, 11):
        log.append(step, {"loss_d": 1.0 / step, "loss_g": float(step), "lr": 1e-4})
    resumed = LossLog(tmp_path, resume_step=6)  # a run killed after step 10, resumed from checkpoint-6
    assert sorted({s for s, _, _ in resumed.read()}) == [1, 2, 3, 4, 5, 6]
    resumed.append(7, {"loss_d": 0.1, "loss_g": 7.0})
    assert [s for s, n, _ in resumed.read() if n == "loss_g"] == [1, 2, 3, 4, 5, 6, 7]
    resumed.plot(tmp_path / "curves.png", title="t")
    from PIL import Image

    assert Image.open(tmp_path / "curves.png").size == (800, 300)  # two loss panels (lr is not plotted)
    assert LossLog(tmp_path).read() == []  # a fresh run starts a fresh log
