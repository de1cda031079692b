"""Smoke runs of train/dcgan.py and train/pix2pix.py as subprocesses under `accelerate launch`, on
tiny synthetic datasets and tiny networks: one and two processes (world size checked from what
the script wrote), a run killed with SIGKILL and resumed, and the final folders loading."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsgan_hub import DCGANGenerator, Pix2PixGenerator, class_grid

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
TINY_DCGAN = ["--image_size", "64", "--latent_dim", "8", "--generator_channels", "16", "8", "8", "8",
              "--discriminator_channels", "8", "8", "16", "16", "16", "--train_batch_size", "4", "--num_samples", "8"]
TINY_PIX2PIX = ["--load_size", "36", "--crop_size", "32", "--base_channels", "4", "--num_downs", "5",
                "--discriminator_channels", "4", "--num_samples", "2"]
COMMON = ["--report_to", "none", "--mixed_precision", "auto", "--dataloader_num_workers", "0", "--logging_steps", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Synthetic data: a 2-class scene tree (72 px) and a folder of side-by-side pairs (80x40)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for name in ("Forest", "River"):
        (root / "scenes" / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (72, 72, 3), dtype=np.uint8)).save(root / "scenes" / name / f"{i}.png")
    (root / "pairs").mkdir()
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40, 80, 3), dtype=np.uint8)).save(root / "pairs" / f"tile_{i}.png")
    return root


def env(tmp_path):
    return {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT)}


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def launch(script: str, args: list[str], tmp_path: Path, processes: int = 1, **kwargs):
    """`accelerate launch` a training script; two processes go through --multi_gpu (gloo on CPU)."""
    launcher = ["--num_processes", "1"] if processes == 1 else \
        ["--multi_gpu", "--num_processes", str(processes), "--main_process_port", free_port()]
    cmd = [*ACCELERATE, *launcher, "--num_machines", "1", "--dynamo_backend", "no", str(ROOT / "train" / script),
           *COMMON, *args]
    return subprocess.run(cmd, env=env(tmp_path), capture_output=True, text=True, timeout=300, cwd=tmp_path, **kwargs)


def check(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def says(card: str, number: int, noun: str) -> bool:
    """The card states `number` `noun` ("4 optimizer steps", "16 training images"), however worded around it."""
    return re.search(rf"\b{number:,}\W+(?:\w+\W+){{0,3}}?{noun}", card) is not None


def logged_steps(output_dir: Path) -> list[int]:
    rows = (output_dir / "losses.csv").read_text().splitlines()[1:]
    return sorted({int(r.split(",")[0]) for r in rows})


def test_dcgan_conditional_one_process(data, tmp_path):
    out = tmp_path / "run"
    check(launch("dcgan.py", ["--dataset", str(data / "scenes"), "--output_dir", str(out), "--conditional",
                              "--max_train_steps", "4", "--checkpointing_steps", "2", "--sample_every", "2",
                              *TINY_DCGAN], tmp_path))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert {"optimizer.bin", "optimizer_1.bin", "model.safetensors", "model_1.safetensors",
            "custom_checkpoint_0.pkl", "random_states_0.pkl"} <= {p.name for p in (out / "checkpoint-4").iterdir()}
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    assert Image.open(out / "loss_curves.png").size[0] > 0
    config = json.loads((out / "training_config.json").read_text())
    assert config["conditional"] is True and config["generator_channels"] == [16, 8, 8, 8] and config["loss"] == "hinge"
    assert logged_steps(out) == [1, 2, 3, 4]
    generator = DCGANGenerator.from_pretrained(out)
    assert generator.class_names == ["Forest", "River"]
    assert json.loads((out / "config.json").read_text())["upsample"] == "resize"
    with torch.no_grad():
        images = generator(torch.randn(2, 8), torch.tensor([0, 1]))
    assert images.shape == (2, 3, 64, 64) and torch.isfinite(images).all()
    # the card's picture: a row of 8 scenes (96 px, 2 px padding) per class, the released generator's
    samples = np.asarray(Image.open(out / "samples.png"))
    assert samples.shape[0] == 2 * 98 + 2 and samples.shape[1] > 2 + 8 * 98  # the class names left of the rows
    assert np.abs(samples.astype(int) - np.asarray(class_grid(generator, per_class=8, side=96), int)).max() <= 1
    card = (out / "README.md").read_text()
    assert says(card, 4, "optimizer steps") and says(card, 16, "training images") and "](samples.png)" in card


def test_dcgan_transitional_conditioning_ramps_the_class_in(data, tmp_path):
    """--condition_transition 1,3: the class weight logged per step is 0 until step 1, then rises
    linearly to 1 at step 3; the release is an ordinary conditional generator."""
    out = tmp_path / "run"
    check(launch("dcgan.py", ["--dataset", str(data / "scenes"), "--output_dir", str(out), "--conditional",
                              "--condition_transition", "1,3", "--max_train_steps", "4", "--sample_every", "4",
                              *TINY_DCGAN], tmp_path))
    rows = [r.split(",") for r in (out / "losses.csv").read_text().splitlines()[1:]]
    weights = {int(step): float(value) for step, name, value in rows if name == "condition"}
    assert weights == {1: 0.0, 2: 0.0, 3: 0.5, 4: 1.0}  # logged after step n: the weight step n trained with
    assert json.loads((out / "training_config.json").read_text())["condition_transition"] == "1,3"
    assert DCGANGenerator.from_pretrained(out).class_names == ["Forest", "River"]


def test_dcgan_seed_preset_two_processes(data, tmp_path):
    out = tmp_path / "run"
    result = check(launch("dcgan.py", ["--preset", "seed", "--dataset", str(data / "scenes"), "--output_dir", str(out),
                                       "--max_train_steps", "3", "--checkpointing_steps", "3", "--sample_every", "3",
                                       *TINY_DCGAN], tmp_path, processes=2))
    assert "world size 2" in result.stdout
    card = (out / "README.md").read_text()
    # 3 steps x 4 images x 2 processes: the two processes really trained as one data-parallel job
    assert says(card, 3, "optimizer steps") and says(card, 24, "training images") and says(card, 2, "process")
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in (out / "checkpoint-3").iterdir()}
    config = json.loads((out / "training_config.json").read_text())
    assert (config["loss"], config["upsample"], config["learning_rate_discriminator"]) == ("bce", "transposed", 4e-5)
    assert DCGANGenerator.from_pretrained(out).num_classes == 0


def test_pix2pix_two_processes(data, tmp_path):
    out = tmp_path / "run"
    result = check(launch("pix2pix.py", ["--dataset", str(data / "pairs"), "--output_dir", str(out), "--direction",
                                         "map2sat", "--max_train_steps", "2", "--checkpointing_steps", "2",
                                         "--sample_every", "2", "--save_fp16", "--dihedral", "--lambda_ssim", "10",
                                         *TINY_PIX2PIX],
                          tmp_path, processes=2))
    assert "world size 2" in result.stdout
    card = (out / "README.md").read_text()
    assert "- `dihedral`: `true`" in card
    assert "loss_ssim" in (out / "losses.csv").read_text()
    assert says(card, 2, "optimizer steps") and says(card, 4, "training images") and says(card, 2, "process")
    generator = Pix2PixGenerator.from_pretrained(out)
    assert generator.direction == "map2sat" and next(generator.parameters()).dtype == torch.float32
    assert Image.open(out / "samples.png").size == (3 * 34 + 2, 2 * 34 + 2)  # source | fake | target rows


def test_pix2pix_killed_and_resumed(data, tmp_path):
    """SIGKILL mid-training, with a half-written checkpoint lying around: `--resume_from_checkpoint
    latest` picks the last complete one, and the step count continues to the end."""
    out = tmp_path / "run"
    args = ["--dataset", str(data / "pairs"), "--output_dir", str(out), "--checkpointing_steps", "2",
            "--sample_every", "1000", "--checkpoints_total_limit", "0", *TINY_PIX2PIX]
    cmd = [*ACCELERATE, "--num_processes", "1", "--num_machines", "1", "--dynamo_backend", "no",
           str(ROOT / "train" / "pix2pix.py"), *COMMON, *args, "--max_train_steps", "100000"]
    process = subprocess.Popen(cmd, env=env(tmp_path), cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 240
    while not (out / "checkpoint-6").exists():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint-6 within 4 minutes"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    killed_at = max(logged_steps(out))
    (out / ".checkpoint-100000.tmp").mkdir()  # what a kill during save_state leaves: never picked up
    (out / ".checkpoint-100000.tmp" / "model.safetensors").write_bytes(b"partial")
    latest = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert latest >= 6
    assert json.loads((out / f"checkpoint-{latest}" / "training_state.json").read_text())["train_seconds"] > 0

    result = check(launch("pix2pix.py", [*args, "--resume_from_checkpoint", "latest", "--max_train_steps",
                                         str(latest + 4)], tmp_path))
    assert f"resuming from {out / f'checkpoint-{latest}'} (step {latest})" in result.stdout
    assert logged_steps(out) == list(range(1, latest + 5))  # rows after the checkpoint were dropped and redone
    assert len((out / "losses.csv").read_text().splitlines()) == 1 + 4 * (latest + 4)  # no step logged twice
    assert killed_at >= latest
    card = (out / "README.md").read_text()
    assert says(card, latest + 4, "optimizer steps") and says(card, 4, "of the steps")  # in all; this session
    assert Pix2PixGenerator.from_pretrained(out).direction == "sat2map"
    # resuming a finished run at its last step only saves: how a run stopped early is finished; with
    # --eval_split the final generator is scored by rsgan_hub.evaluation and the card records it
    result = check(launch("pix2pix.py", [*args, "--resume_from_checkpoint", "latest", "--max_train_steps",
                                         str(latest + 4), "--eval_split", "train"], tmp_path))
    assert "pixel_acc_16" in result.stdout
    card = (out / "README.md").read_text()
    assert says(card, 0, "of the steps")
    assert "model-index" in card and "pixel_acc_16" in card and "legend_miou" in card
    assert logged_steps(out)[-1] == latest + 4


def run_script(script: str, args: list[str], tmp_path: Path):
    """A training script run directly (no launcher), for the cases that stop before training."""
    return subprocess.run([sys.executable, str(ROOT / "train" / script), "--report_to", "none", *args],
                          env=env(tmp_path), capture_output=True, text=True, timeout=300)


def test_bad_flags_fail_before_anything_is_written(data, tmp_path):
    """Each bad flag: its exit code, one line naming it, and no --output_dir."""
    out = tmp_path / "out"
    (tmp_path / "a_file").write_text("mine")
    (tmp_path / "mine").mkdir()  # a folder of the user's own, which no training run wrote
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    scenes, pairs = ["dcgan.py", "--dataset", str(data / "scenes")], ["pix2pix.py", "--dataset", str(data / "pairs")]
    cases = [  # (script and flags, exit code, the line)
        (scenes + ["--train_batch_size", "0"], 2, "argument --train_batch_size: must be at least 1, got 0"),
        (scenes + ["--learning_rate_generator", "-0.0001"], 2, "--learning_rate_generator: must be at least 0"),
        (pairs + ["--learning_rate", "-1"], 2, "argument --learning_rate: must be at least 0, got -1"),
        (scenes + ["--checkpointing_steps", "0"], 2, "argument --checkpointing_steps: must be at least 1"),
        (pairs + ["--gradient_accumulation_steps", "0"], 2, "--gradient_accumulation_steps: must be at least 1"),
        (scenes + ["--checkpoints_total_limit", "-1"], 2, "--checkpoints_total_limit: must be at least 0"),
        (scenes + ["--loss", "wasserstein"], 2, "argument --loss: invalid choice: 'wasserstein'"),
        (scenes + ["--image_size", "96"], 2, "invalid choice: 96 (choose from 64, 128, 256)"),
        (pairs + ["--direction", "sideways"], 2, "argument --direction: invalid choice: 'sideways'"),
        (["dcgan.py", "--preset", "nope"], 2, "argument --preset: invalid choice: 'nope'"),
        (scenes + ["--max_train_steps", "0"], 1, "error: --max_train_steps 0 trains nothing"),
        (scenes + ["--condition_transition", "10,20"], 1, "error: --condition_transition needs --conditional"),
        (scenes + ["--conditional", "--condition_transition", "20,10"], 1, "needs 0 <= START < END, got '20,10'"),
        (scenes + ["--conditional", "--condition_transition", "ten"], 1, "takes START,END optimizer steps"),
        (pairs + ["--legend", "--lambda_ssim", "1"], 1, "error: --lambda_ssim weighs a loss on RGB output"),
        (pairs + ["--crop_size", "300", "--load_size", "286"], 1, "error: --crop_size 300 is larger than --load_size 286"),
        (scenes + ["--upsample", "transposed", "--generator_padding", "replicate"], 1,
         "error: --upsample transposed --generator_padding replicate: transposed convolutions pad with zeros only"),
        (scenes + ["--generator_padding", "reflect"], 2, "argument --generator_padding: invalid choice: 'reflect'"),
        (scenes + ["--generator_channels", "8", "8"], 1, "--generator_channels needs 5 widths at --image_size 128"),
        (scenes + ["--output_dir", str(tmp_path / "a_file")], 1, f"{tmp_path / 'a_file'} is a file, not a folder"),
        (scenes + ["--output_dir", str(tmp_path / "a_file" / "run")], 1, "is a file, not a folder"),
        (["dcgan.py"], 1, "error: --dataset is required"),
        (scenes + ["--output_dir", str(data / "scenes" / "run")], 1, "lies inside --dataset"),
        (scenes + ["--output_dir", str(data)], 1, "holds the --dataset folder"),
        (scenes + ["--output_dir", str(tmp_path / "mine")], 1, "already holds 1 entries rsgan did not write "
         "(notes.txt); choose another --output_dir or pass --overwrite_output_dir"),
    ]
    processes = []
    for (script, *args), code, expected in cases:
        cmd = [sys.executable, str(ROOT / "train" / script), "--report_to", "none", *args]
        if "--output_dir" not in args:
            cmd += ["--output_dir", str(out)]
        processes.append((code, expected, subprocess.Popen(cmd, env=env(tmp_path), stdout=subprocess.PIPE,
                                                           stderr=subprocess.PIPE, text=True)))
    for code, expected, process in processes:
        _, stderr = process.communicate(timeout=300)
        lines = stderr.strip().splitlines()
        assert (process.returncode, len(lines)) == (code, 1) and expected in lines[0], (expected, stderr[-2000:])
    assert not out.exists() and (tmp_path / "a_file").read_text() == "mine"
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    assert not (data / "scenes" / "run").exists()
    help_text = run_script("dcgan.py", ["--help"], tmp_path).stdout
    assert "{hinge,bce}" in help_text and "{wall,cpu}" in help_text and "--init_from" in help_text


def test_default_widths_fit_every_image_size(data, tmp_path):
    """`--image_size 64` with the default network trains; the default widths build at every size."""
    out = tmp_path / "run"
    check(launch("dcgan.py", ["--dataset", str(data / "scenes"), "--output_dir", str(out), "--image_size", "64",
                              "--max_train_steps", "1", "--train_batch_size", "2", "--num_samples", "1"], tmp_path))
    assert DCGANGenerator.from_pretrained(out).image_size == 64
    sys.path.insert(0, str(ROOT / "train"))
    try:
        import dcgan as script
    finally:
        sys.path.remove(str(ROOT / "train"))
    from rsgan_hub import DCGANDiscriminator
    from rsgan_hub.models.dcgan import GENERATOR_CHANNELS, discriminator_layers

    for preset in script.PRESETS:
        config = script.TrainConfig(**script.PRESETS[preset])
        for size in (64, 128, 256):
            with torch.device("meta"):
                DCGANGenerator(image_size=size, channels=GENERATOR_CHANNELS[preset][size])
                DCGANDiscriminator(image_size=size, layers=discriminator_layers(size, config.discriminator_channels))


def test_resume_from_a_damaged_checkpoint_names_the_file(data, tmp_path):
    out = tmp_path / "run"
    args = ["--dataset", str(data / "scenes"), "--output_dir", str(out), "--checkpointing_steps", "2",
            "--checkpoints_total_limit", "0", "--sample_every", "1000", *TINY_DCGAN]
    check(launch("dcgan.py", [*args, "--max_train_steps", "6"], tmp_path))
    weights = out / "checkpoint-6" / "model_1.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, as a full disk leaves it
    (out / "checkpoint-4" / "optimizer.bin").unlink()
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    result = run_script("dcgan.py", [*args, "--max_train_steps", "8", "--resume_from_checkpoint", "latest"], tmp_path)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"error: cannot resume from {out / 'checkpoint-6'}: model_1.safetensors is truncated or altered (100 bytes, "
        f"{json.loads((out / 'checkpoint-6' / 'training_state.json').read_text())['files']['model_1.safetensors']} "
        f"saved); the previous complete checkpoint is --resume_from_checkpoint {out / 'checkpoint-2'}"]
    result = run_script("dcgan.py", [*args, "--resume_from_checkpoint", str(out / "checkpoint-4")], tmp_path)
    assert result.returncode == 1 and result.stderr.strip() == (
        f"error: cannot resume from {out / 'checkpoint-4'}: optimizer.bin is missing; the previous complete "
        f"checkpoint is --resume_from_checkpoint {out / 'checkpoint-2'}")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing written
    result = check(launch("dcgan.py", [*args, "--max_train_steps", "3", "--resume_from_checkpoint",
                                       str(out / "checkpoint-2")], tmp_path))
    assert f"resuming from {out / 'checkpoint-2'} (step 2)" in result.stdout


def test_dcgan_time_budget_stops_and_snapshots(data, tmp_path):
    """--max_train_minutes stops the run on its clock (CPU time here) and --snapshot_minutes saves the
    release generator when each mark passes; the final model is the stopped run's."""
    out = tmp_path / "run"
    check(launch("dcgan.py", ["--dataset", str(data / "scenes"), "--output_dir", str(out), "--conditional",
                              "--dihedral", "--kernel_size", "3", "--max_train_steps", "1000",
                              "--max_train_minutes", "0.0001", "--budget_clock", "cpu", "--snapshot_minutes", "0",
                              "--sample_every", "1000", "--checkpointing_steps", "1000", *TINY_DCGAN], tmp_path))
    assert logged_steps(out) == [1]  # the budget was spent after the first step, not after 1000
    snapshot = DCGANGenerator.from_pretrained(out / "snapshot-0min")
    final = DCGANGenerator.from_pretrained(out)
    assert json.loads((out / "config.json").read_text())["kernel_size"] == 3
    z = torch.randn(2, final.latent_dim)
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.allclose(snapshot(z, labels), final(z, labels))  # both taken after the same single step
