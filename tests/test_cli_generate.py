"""`rsgan generate`: determinism, error paths, nothing half-written."""

import subprocess
import sys

import pytest
from PIL import Image

from conftest import tiny_dcgan


def rsgan(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "rsgan_hub", *map(str, args)], capture_output=True, text=True,
                          **kwargs)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    g, _ = tiny_dcgan(64, num_classes=2, class_names=["Forest", "River"])
    g.save_pretrained(folder)
    return folder


def test_generate_is_reproducible(model_dir, tmp_path):
    for out in ("a", "b"):
        r = rsgan("generate", "--model", model_dir, "--num-images", 5, "--seed", 7, "--label", "River",
                  "--out", tmp_path / out)
        assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == [".rsgan-output", "000000.png", "000001.png", "000002.png", "000003.png", "000004.png", "grid.png"]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert Image.open(tmp_path / "a" / "000000.png").size == (64, 64)
    # image i of seed s is image 0 of seed s + i
    r = rsgan("generate", "--model", model_dir, "--num-images", 1, "--seed", 9, "--label", "River",
              "--out", tmp_path / "c")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "c" / "000000.png").read_bytes() == (tmp_path / "a" / "000002.png").read_bytes()
    # another seed gives other images
    rsgan("generate", "--model", model_dir, "--num-images", 1, "--seed", 8, "--label", "River", "--out", tmp_path / "d")
    assert (tmp_path / "d" / "000000.png").read_bytes() != (tmp_path / "a" / "000000.png").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--label", "Desert"], "unknown class 'Desert'; known classes: Forest, River"),
    (["--label", "River", "--num-images", "0"], "--num-images must be > 0"),
    (["--label", "River", "--num-images", "-3"], "--num-images must be > 0"),
    ([], "the model is class-conditional: choose one of Forest, River"),
])
def test_generate_errors(model_dir, tmp_path, args, message):
    r = rsgan("generate", "--model", model_dir, "--out", tmp_path / "out", *args)
    assert r.returncode == 1
    assert r.stderr.startswith(f"rsgan: error: {message}") and len(r.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_generate_missing_model(tmp_path):
    r = rsgan("generate", "--model", tmp_path / "nothing", "--out", tmp_path / "out")
    assert r.returncode == 1 and r.stderr.startswith("rsgan: error:") and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
