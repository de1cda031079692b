"""Releases you can fine-tune: the training scripts write the discriminator beside the generator
(loadable from a folder and from a Hub repo id, here an offline HF cache laid out by hand), and
`--init_from` starts a new run from a release - classes matched by name, Freeze-D, a lossless
0-step round trip - or stops with one line, writing nothing, when the release does not fit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_dcgan, tiny_pix2pix
from rsgan_hub import DCGANDiscriminator, DCGANGenerator, PatchDiscriminator, Pix2PixGenerator
from test_train import ROOT, TINY_DCGAN, TINY_PIX2PIX, check, env, launch

REPO_ID = "user/tiny-dcgan"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Scene trees: the release's (Forest, River), a fine-tuning set sharing Forest and adding
    Desert, a flat (unlabelled) folder; and side-by-side pairs."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for tree, names in (("release", ("Forest", "River")), ("new", ("Desert", "Forest")), ("flat", ("",))):
        for name in names:
            (root / tree / name).mkdir(parents=True, exist_ok=True)
            for i in range(10):
                image = rng.integers(0, 256, (72, 72, 3), dtype=np.uint8)
                Image.fromarray(image).save(root / tree / name / f"{i}.png")
    (root / "pairs").mkdir()
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40, 80, 3), dtype=np.uint8)).save(root / "pairs" / f"tile_{i}.png")
    return root


@pytest.fixture(scope="module")
def release(data, tmp_path_factory):
    """A tiny conditional DCGAN release written by train/dcgan.py, and the same in an HF cache."""
    tmp = tmp_path_factory.mktemp("release")
    check(launch("dcgan.py", ["--dataset", str(data / "release"), "--output_dir", str(tmp / "dcgan"), "--conditional",
                              "--max_train_steps", "2", "--sample_every", "2", *TINY_DCGAN], tmp))
    put_in_hf_cache(tmp / "dcgan", tmp / "hf" / "hub", REPO_ID)
    return tmp / "dcgan"


def put_in_hf_cache(folder: Path, cache: Path, repo_id: str, revision: str = "0123456789abcdef" * 2 + "01234567"):
    """Lay out a release folder (subfolders too) the way a Hub download leaves it in HF_HUB_CACHE."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / revision, ignore=shutil.ignore_patterns("checkpoint-*", "logs"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


def with_cache(release: Path, tmp_path: Path) -> dict:
    """The subprocess environment of test_train, pointed at the release's offline HF cache."""
    return {**env(tmp_path), "HF_HOME": str(release.parent / "hf")}


def test_release_holds_the_discriminator_for_folders_and_repo_ids(release):
    card = (release / "README.md").read_text()
    assert "in `discriminator/`" in card and 'subfolder="discriminator"' in card and "--init_from" in card
    from_folder = DCGANDiscriminator.from_pretrained(release, subfolder="discriminator")
    assert from_folder.class_names == ["Forest", "River"]
    assert DCGANGenerator.from_pretrained(release).class_names == ["Forest", "River"]  # unchanged
    cache = release.parent / "hf" / "hub"
    from_hub = DCGANDiscriminator.from_pretrained(REPO_ID, subfolder="discriminator", cache_dir=cache,
                                                  local_files_only=True)
    for key, value in from_folder.state_dict().items():
        assert torch.equal(value, from_hub.state_dict()[key]), key
    from rsgan_hub import ModelLoadError

    with pytest.raises(ModelLoadError, match="no discriminator/ folder"):
        DCGANDiscriminator.from_pretrained(release / "discriminator", subfolder="discriminator")
    with pytest.raises(ModelLoadError, match="no nothing/ loadable from the Hub"):
        DCGANDiscriminator.from_pretrained(REPO_ID, subfolder="nothing", cache_dir=cache, local_files_only=True)


def test_fine_tune_matches_classes_by_name_and_freezes_d(data, release, tmp_path):
    """Forest is shared, Desert is new: Forest keeps its embeddings (checked after 0 steps), the
    output knows Desert; with Freeze-D the first two blocks are bit-identical after training."""
    before, after = tmp_path / "zero", tmp_path / "two"
    args = ["--dataset", str(data / "new"), "--init_from", str(release), *TINY_DCGAN[-4:]]
    check(launch("dcgan.py", [*args, "--output_dir", str(before), "--max_train_steps", "0"], tmp_path))
    check(launch("dcgan.py", [*args, "--output_dir", str(after), "--max_train_steps", "2", "--sample_every", "2",
                              "--freeze_discriminator_layers", "2"], tmp_path))
    old_g, old_d = DCGANGenerator.from_pretrained(release), DCGANDiscriminator.from_pretrained(release, subfolder="discriminator")
    new_g, new_d = DCGANGenerator.from_pretrained(before), DCGANDiscriminator.from_pretrained(before, subfolder="discriminator")
    assert new_g.class_names == ["Desert", "Forest"] and new_d.class_names == ["Desert", "Forest"]
    assert torch.equal(new_g.embed.weight[1], old_g.embed.weight[0])  # Forest
    assert torch.equal(new_d.embed.weight_orig[1], old_d.embed.weight_orig[0])
    assert not torch.equal(new_g.embed.weight[0], old_g.embed.weight[1])  # Desert did not inherit River's row
    trained = DCGANGenerator.from_pretrained(after)
    assert trained.class_names == ["Desert", "Forest"] and trained.num_classes == 2
    frozen = DCGANDiscriminator.from_pretrained(after, subfolder="discriminator").state_dict()
    released = old_d.state_dict()
    for key in released:
        if key.startswith(("body.0.", "body.2.")):  # the first two convolutions (no norm layers in this D)
            assert torch.equal(frozen[key], released[key]), key
    assert not torch.equal(frozen["body.4.weight_orig"], released["body.4.weight_orig"])  # the third trained


def test_zero_step_continue_from_a_repo_id_loses_nothing(data, release, tmp_path):
    out = tmp_path / "again"
    cmd = [sys.executable, str(ROOT / "train" / "dcgan.py"), "--report_to", "none", "--dataloader_num_workers", "0",
           "--dataset", str(data / "release"), "--init_from", REPO_ID, "--output_dir", str(out),
           "--max_train_steps", "0", *TINY_DCGAN[-4:]]
    check(subprocess.run(cmd, env=with_cache(release, tmp_path), capture_output=True, text=True, timeout=300))
    z, labels = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        assert torch.equal(DCGANGenerator.from_pretrained(out)(z, labels), DCGANGenerator.from_pretrained(release)(z, labels))
    again = DCGANDiscriminator.from_pretrained(out, subfolder="discriminator").state_dict()
    for key, value in DCGANDiscriminator.from_pretrained(release, subfolder="discriminator").state_dict().items():
        assert torch.equal(again[key], value), key
    # the release's history (one fresh run of 2 steps) continued by this run, in the file and in the card
    history = json.loads((out / "training_history.json").read_text())
    assert [(run["init_from"], run["steps"]) for run in history] == [(None, 2), (REPO_ID, 0)]
    assert json.loads((release / "training_history.json").read_text()) == history[:1]
    assert "2 runs, 2 optimizer steps" in (out / "README.md").read_text()


def test_a_release_switches_between_nearest_and_bilinear_resizes(data, release, tmp_path):
    """Nearest and bilinear resize + conv share their weights, so --upsample may switch between them
    on --init_from (the weights carry over unchanged, the function changes - batch norm's statistics
    are re-estimated for it); transposed may not."""
    out = tmp_path / "bilinear"
    check(launch("dcgan.py", ["--dataset", str(data / "release"), "--init_from", str(release), "--output_dir", str(out),
                              "--upsample", "bilinear", "--max_train_steps", "0", *TINY_DCGAN[-4:]], tmp_path))
    old, new = DCGANGenerator.from_pretrained(release), DCGANGenerator.from_pretrained(out)
    assert (old.init_config["upsample"], new.init_config["upsample"]) == ("resize", "bilinear")
    weights = dict(new.named_parameters())
    for key, value in old.named_parameters():
        assert torch.equal(weights[key], value), key
    z, labels = torch.randn(2, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1])
    with torch.no_grad():
        assert not torch.allclose(new(z, labels), old(z, labels), atol=1e-3)
    assert "bilinear" in (out / "README.md").read_text()


def test_pix2pix_continues_a_release_and_checks_its_direction(data, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    check(launch("pix2pix.py", ["--dataset", str(data / "pairs"), "--output_dir", str(first), "--direction", "map2sat",
                                "--max_train_steps", "2", "--sample_every", "2", *TINY_PIX2PIX], tmp_path))
    assert PatchDiscriminator.from_pretrained(first, subfolder="discriminator").num_layers == 3
    common = ["--dataset", str(data / "pairs"), "--init_from", str(first), "--load_size", "36", "--crop_size", "32",
              "--num_samples", "2", "--max_train_steps", "0"]
    result = subprocess.run([sys.executable, str(ROOT / "train" / "pix2pix.py"), *common, "--output_dir", str(second)],
                            env=env(tmp_path), capture_output=True, text=True, timeout=300)  # default: sat2map
    assert result.returncode == 1 and not second.exists()
    assert result.stderr.strip().splitlines() == [
        f"error: --init_from {first} translates map2sat, not sat2map: pass --direction map2sat to fine-tune it, "
        "or --direction sat2map to retrain it the other way"]
    check(launch("pix2pix.py", [*common, "--output_dir", str(second), "--direction", "map2sat"], tmp_path))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(Pix2PixGenerator.from_pretrained(second)(x), Pix2PixGenerator.from_pretrained(first)(x))


def test_bad_init_from_is_one_line_and_writes_nothing(data, release, tmp_path):
    g, d = tiny_dcgan(64)  # unconditional, saved without its discriminator
    g.save_pretrained(tmp_path / "generator_only")
    g.save_pretrained(tmp_path / "unconditional")
    d.save_pretrained(tmp_path / "unconditional" / "discriminator")
    p, pd = tiny_pix2pix(direction="sat2map")
    p.save_pretrained(tmp_path / "pix2pix")
    pd.save_pretrained(tmp_path / "pix2pix" / "discriminator")
    shutil.copytree(release, tmp_path / "damaged", ignore=shutil.ignore_patterns("checkpoint-*", "logs"))
    (tmp_path / "damaged" / "training_history.json").write_text('{"steps": 2')
    scenes, out = str(data / "release"), tmp_path / "out"
    cases = {  # script, flags -> the line it must print
        ("dcgan.py", str(tmp_path / "damaged")): "training_history.json is damaged",
        ("dcgan.py", str(tmp_path / "pix2pix")): "holds a Pix2PixGenerator, not a DCGANGenerator",
        ("pix2pix.py", str(release)): "holds a DCGANGenerator, not a Pix2PixGenerator",
        ("dcgan.py", str(tmp_path / "generator_only")): "no loadable discriminator/ beside the generator",
        ("dcgan.py", "user/tiny-dcgn"): "user/tiny-dcgn: not a local folder, and not loadable from the Hub",
        ("dcgan.py", f"{release} --image_size 128"): "--image_size 128 contradicts the release",
        ("dcgan.py", f"{release} --no-conditional"): "--no-conditional contradicts the release",
        ("dcgan.py", f"{release} --upsample transposed"): "--upsample transposed contradicts the release",
        ("dcgan.py", f"{tmp_path / 'unconditional'} --conditional"): "--conditional contradicts the release",
        ("dcgan.py", f"{release} --dataset {data / 'flat'}"): f"is class-conditional, but {data / 'flat'} has none",
        ("dcgan.py", f"{release} --freeze_discriminator_layers 6"): "the discriminator has 6 blocks",
    }
    processes = {}
    for (script, flags), expected in cases.items():
        init_from, *more = flags.split(" ")
        dataset = scenes if script == "dcgan.py" else str(data / "pairs")
        cmd = [sys.executable, str(ROOT / "train" / script), "--report_to", "none", "--dataloader_num_workers", "0",
               "--dataset", dataset, "--output_dir", str(out), "--init_from", init_from, *more]
        processes[expected] = subprocess.Popen(cmd, env=with_cache(release, tmp_path), stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True)
    for expected, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        errors = [line for line in stderr.splitlines() if "error" in line.lower()]  # (datasets' progress bars aside)
        assert process.returncode == 1 and len(errors) == 1 and expected in errors[0], (expected, stderr[-2000:])
        assert errors[0] == stderr.strip().splitlines()[-1] and errors[0].startswith("error: ")
    assert not out.exists()


@pytest.mark.parametrize("name", ["dcgan", "sat2map", "map2sat"])
def test_bundled_release_carries_its_training_history(name):
    """Each bundled GAN release says how it was trained, in a form `--init_from` reads back."""
    from rsgan_hub.training import history_markdown, release_history

    release = ROOT / "pretrained" / name
    history = release_history(str(release))
    assert history, f"{release} has no training_history.json"
    assert all(run["steps"] > 0 and run["images_seen"] >= run["steps"] and run["minutes"] > 0 for run in history)
    config = json.loads((release / "training_config.json").read_text())
    assert history[-1]["init_from"] == config["init_from"]  # the newest run is the one the card's flags describe
    if len(history) > 1:
        assert f"{len(history)} runs" in history_markdown(history)
