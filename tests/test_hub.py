"""save_pretrained / from_pretrained: round-trips, model cards, offline repo ids, clear errors."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from conftest import tiny_dcgan, tiny_pix2pix
from rsgan_hub import DCGANDiscriminator, DCGANGenerator, ModelLoadError, PatchDiscriminator, Pix2PixGenerator


def card_metadata(folder):
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1]), text


@pytest.mark.parametrize("which", ["dcgan", "dcgan_conditional", "pix2pix"])
def test_save_load_bit_identical(tmp_path, which, seeded):
    if which == "pix2pix":
        models = tiny_pix2pix(direction="sat2map")
        inputs = [torch.rand(1, 3, 40, 48) * 2 - 1, torch.rand(1, 6, 40, 48)]
        labels = None
    else:
        kw = {"num_classes": 2, "class_names": ["Forest", "River"]} if which == "dcgan_conditional" else {}
        models = tiny_dcgan(64, **kw)
        inputs = [torch.randn(2, 8), torch.rand(2, 3, 64, 64)]
        labels = torch.tensor([0, 1]) if kw else None
    for i, (model, x) in enumerate(zip(models, inputs)):
        model.eval()
        args = (x,) if labels is None else (x, labels)
        with torch.no_grad():
            before = model(*args)
        model.save_pretrained(tmp_path / str(i))
        assert sorted(os.listdir(tmp_path / str(i))) == ["README.md", "config.json", "model.safetensors"]
        loaded = type(model).from_pretrained(tmp_path / str(i))
        assert not loaded.training
        assert loaded._hub_mixin_config == {k: v for k, v in json.loads((tmp_path / str(i) / "config.json")
                                                                       .read_text()).items() if k != "model_class"}
        with torch.no_grad():
            assert torch.equal(loaded(*args), before)
    if which == "dcgan_conditional":
        assert DCGANGenerator.from_pretrained(tmp_path / "0").class_names == ["Forest", "River"]


def test_config_round_trips_every_argument(tmp_path):
    g, _ = tiny_dcgan(128, num_classes=2, class_names=["a", "b"], upsample="resize")
    g.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config == {"channels": [32, 16, 8, 8, 8], "class_names": ["a", "b"], "embed_dim": 4, "image_size": 128,
                      "kernel_size": 5, "latent_dim": 8, "model_class": "DCGANGenerator", "num_classes": 2,
                      "padding": "zeros", "upsample": "resize"}


def test_pix2pix_loaded_matches_training_time_sample(tmp_path, seeded):
    """A generator sampled in eval mode during training gives the same output after save/load,
    even though it was trained with dropout and batch size 1."""
    g, _ = tiny_pix2pix()
    g.train()
    opt = torch.optim.Adam(g.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        g(torch.rand(1, 3, 32, 32)).abs().mean().backward()
        opt.step()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    g.eval()  # training-time sampling in rsgan_hub is done in eval mode
    with torch.no_grad():
        sample = g(x)
    g.train()
    g.save_pretrained(tmp_path)
    loaded = Pix2PixGenerator.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(x), sample)


def test_model_card(tmp_path):
    g, _ = tiny_dcgan(64)
    (tmp_path / "m").mkdir()
    g.save_pretrained(tmp_path / "m", model_card_kwargs={
        "training": "Trained for 10 steps.", "metrics": {"fid": 12.5, "kid_mean": 0.01},
        "dataset": "user/aid-scenes", "sample_image": "grid.png", "repo_id": "me/rs-dcgan"})
    meta, text = card_metadata(tmp_path / "m")
    assert meta["library_name"] == "rsgan_hub"
    assert meta["pipeline_tag"] == "unconditional-image-generation"
    assert {"remote-sensing", "gan", "dcgan"} <= set(meta["tags"])
    assert meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["user/aid-scenes"]
    results = meta["model-index"][0]["results"][0]
    assert results["dataset"]["name"] == "user/aid-scenes"
    assert {m["type"]: m["value"] for m in results["metrics"]} == {"fid": 12.5, "kid_mean": 0.01}
    assert 'DCGANGenerator.from_pretrained("me/rs-dcgan")' in text
    assert "not ground truth" in text and "Trained for 10 steps." in text and "![samples](grid.png)" in text
    g.save_pretrained(tmp_path / "local", model_card_kwargs={"dataset": str(tmp_path / "m"), "metrics": {"fid": 1.0}})
    meta, _ = card_metadata(tmp_path / "local")
    assert "datasets" not in meta  # a local folder is no Hub dataset to link to
    assert meta["model-index"][0]["results"][0]["dataset"]["name"] == str(tmp_path / "m")
    # pix2pix card tags
    p, _ = tiny_pix2pix()
    p.save_pretrained(tmp_path / "p")
    meta, text = card_metadata(tmp_path / "p")
    assert meta["pipeline_tag"] == "image-to-image" and "pix2pix" in meta["tags"]
    assert "model-index" not in meta


def put_in_hf_cache(folder, cache, repo_id, revision="0123456789abcdef0123456789abcdef01234567"):
    """Lay out `folder` the way a Hub download leaves it in HF_HUB_CACHE."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for f in folder.iterdir():
        shutil.copy(f, snapshot / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


def test_load_by_repo_id_offline(tmp_path, seeded):
    g, _ = tiny_dcgan(64, num_classes=2, class_names=["Forest", "River"])
    g.save_pretrained(tmp_path / "saved")
    put_in_hf_cache(tmp_path / "saved", tmp_path / "hub", "user/rs-dcgan")
    code = ("import torch; from rsgan_hub import DCGANGenerator; "
            "g = DCGANGenerator.from_pretrained('user/rs-dcgan'); "
            "print(g.class_names, float(g(torch.ones(1, 8), torch.tensor([1])).sum()))")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    g.eval()
    with torch.no_grad():
        expected = float(g(torch.ones(1, 8), torch.tensor([1])).sum())
    names, value = out.stdout.strip().rsplit(" ", 1)
    assert names == "['Forest', 'River']" and float(value) == pytest.approx(expected, abs=1e-4)
    # an id that is not in the offline cache fails clearly
    code = "from rsgan_hub import DCGANGenerator; DCGANGenerator.from_pretrained('user/missing')"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "ModelLoadError: user/missing: not a local folder" in out.stderr


def test_load_errors_are_clear(tmp_path):
    g, d = tiny_dcgan(64)
    g.save_pretrained(tmp_path / "g")
    d.save_pretrained(tmp_path / "d")
    with pytest.raises(ModelLoadError, match="holds a DCGANGenerator, not a Pix2PixGenerator"):
        Pix2PixGenerator.from_pretrained(tmp_path / "g")
    with pytest.raises(ModelLoadError, match="holds a DCGANDiscriminator, not a DCGANGenerator"):
        DCGANGenerator.from_pretrained(tmp_path / "d")
    # no config.json
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="has no config.json"):
        DCGANGenerator.from_pretrained(tmp_path / "empty")
    # missing weights
    shutil.copytree(tmp_path / "g", tmp_path / "noweights")
    (tmp_path / "noweights" / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no weights file"):
        DCGANGenerator.from_pretrained(tmp_path / "noweights")
    # mismatched shapes: config says one width, weights have another
    shutil.copytree(tmp_path / "g", tmp_path / "shape")
    config = json.loads((tmp_path / "shape" / "config.json").read_text())
    config["channels"] = [32, 16, 8, 4]
    (tmp_path / "shape" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="weights do not fit DCGANGenerator.*size mismatch"):
        DCGANGenerator.from_pretrained(tmp_path / "shape")
    # missing tensors: no silent partial load
    shutil.copytree(tmp_path / "g", tmp_path / "partial")
    tensors = load_file(tmp_path / "partial" / "model.safetensors")
    tensors.pop("to_rgb.0.weight")
    save_file(tensors, tmp_path / "partial" / "model.safetensors")
    with pytest.raises(ModelLoadError, match="Missing key"):
        DCGANGenerator.from_pretrained(tmp_path / "partial")
    # a config written by an older/other model without model_class, with foreign arguments
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text(json.dumps({"base_channels": 4, "num_downs": 5}))
    with pytest.raises(ModelLoadError, match="does not take: \\['base_channels', 'num_downs'\\]"):
        DCGANGenerator.from_pretrained(tmp_path / "foreign")
    with pytest.raises(ModelLoadError, match="no such folder"):
        DCGANGenerator.from_pretrained(tmp_path / "nope" / "deeper")


def test_save_is_atomic(tmp_path, monkeypatch):
    g, _ = tiny_dcgan(64)
    g.save_pretrained(tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    g2, _ = tiny_dcgan(64)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_model", boom)
    with pytest.raises(OSError, match="disk full"):
        g2.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folders left


def test_atomic_outputs_get_normal_permissions(tmp_path):
    from rsgan_hub.io import atomic_dir, atomic_path

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("x")
        with atomic_path(tmp_path / "f.txt") as f:
            f.write_text("y")
        g, _ = tiny_dcgan(64)
        g.save_pretrained(tmp_path / "m")
    finally:
        os.umask(old)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "m").iterdir()} == {
        "model.safetensors": 0o644, "config.json": 0o644, "README.md": 0o644}
