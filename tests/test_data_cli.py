"""`rsgan dataset scenes|pairs`: outputs that load_from_disk and load_dataset open, the card, bad input."""

import os
import subprocess
import sys

import yaml
from datasets import load_dataset, load_from_disk

from rsgan_hub.cli import main
from test_data import make_rasters, make_rsicb_tree, make_side_by_side


def rsgan(*args, env=None):
    """The command in a subprocess, as users run it."""
    return subprocess.run([sys.executable, "-m", "rsgan_hub", "dataset", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def rsgan_here(capfd, *args):
    """The command in this process (faster), with its exit code and output."""
    code = main(["dataset", *map(str, args)])
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def test_scenes_command(tmp_path):
    make_rsicb_tree(tmp_path / "RSI-CB256")
    r = rsgan("scenes", tmp_path / "RSI-CB256", "--test-fraction", 0.25, "--seed", 3, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == (
        f"wrote {tmp_path / 'out'}: train 12, test 4; skipped 4: 1 not an image (water/lake/notes.txt); "
        "1 not in a class folder (README.txt); 1 transparent pixels (water/lake/lake_nodata.png); "
        "1 truncated or corrupt (vegetation/forest/forest_corrupt.tif)")
    disk = load_from_disk(str(tmp_path / "out"))
    assert {s: len(d) for s, d in disk.items()} == {"train": 12, "test": 4}
    assert disk["train"].features["label"].names == ["airport_runway", "avenue", "forest", "lake"]
    assert disk["test"].features["category"].names == ["transportation", "vegetation", "water"]
    assert sorted(disk["test"]["label"]) == [0, 1, 2, 3]  # stratified: every class in test
    parquet = load_dataset(str(tmp_path / "out"), cache_dir=str(tmp_path / "pq"))
    assert parquet["train"].features == disk["train"].features and len(parquet["test"]) == 4
    card = (tmp_path / "out" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["license"] == "other" and "remote-sensing" in meta["tags"]
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*.parquet"},
                                                {"split": "test", "path": "data/test-*.parquet"}]
    assert "| transportation | avenue | 4 | 1 |" in card and "|  | **total** | 12 | 4 |" in card
    assert "looks like **RSI-CB**" in card and "Li, Haifeng" in card and "check the source's terms" in card
    assert "1 truncated or corrupt (vegetation/forest/forest_corrupt.tif)" in card
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RSI-CB256", "out", "pq"]  # no leftovers


def test_pairs_commands(tmp_path, capfd):
    make_side_by_side(tmp_path / "tiles")
    r = rsgan_here(capfd, "pairs", tmp_path / "tiles", "--test-rows", "4:5", "--out", tmp_path / "sbs")
    assert r.returncode == 0, r.stderr
    assert "train 9, test 3; skipped 2: " in r.stdout
    disk = load_from_disk(str(tmp_path / "sbs"))
    assert list(disk["test"].features) == ["satellite", "map", "row", "col"] and set(disk["test"]["row"]) == {4}
    card = (tmp_path / "sbs" / "README.md").read_text()
    assert "**Spatial hold-out**: tile rows 4:5" in card and "isola2017image" in card

    make_rasters(tmp_path / "city")
    r = rsgan_here(capfd, "pairs", tmp_path / "city", "--layout", "two-rasters", "--tile", 32, "--test-rows", "3:4",
              "--out", tmp_path / "tiles32")
    assert r.returncode == 0, r.stderr
    disk = load_from_disk(str(tmp_path / "tiles32"))
    assert {s: len(d) for s, d in disk.items()} == {"train": 17, "test": 6}
    assert disk["train"][0]["satellite"].size == (32, 32)
    assert load_dataset(str(tmp_path / "tiles32"), cache_dir=str(tmp_path / "pq"))["test"]["row"] == [3] * 6


def test_errors_are_one_line_and_leave_nothing(tmp_path, capfd):
    make_rasters(tmp_path / "city")
    (tmp_path / "city" / "city_map.png").write_bytes((tmp_path / "city" / "city_map.png").read_bytes()[:100])
    bad = (tmp_path / "bad")
    bad.mkdir()
    (bad / "Forest").mkdir()
    (bad / "Forest" / "a.jpg").write_bytes(b"not a jpeg")
    cases = [
        (["scenes", tmp_path / "missing"], "rsgan: error: " + str(tmp_path / "missing") + ": no such folder"),
        (["scenes", bad], "rsgan: error: no usable images: skipped 1: 1 not an image (Forest/a.jpg)"),
        (["scenes", bad, "--test-fraction", "1.5"], "rsgan: error: --test-fraction must be in [0, 1), got 1.5"),
        (["pairs", tmp_path / "city", "--layout", "two-rasters", "--test-rows", "x"],
         "rsgan: error: --test-rows must be A:B"),
        (["pairs", tmp_path / "city", "--layout", "two-rasters"], "rsgan: error: the rasters (200x136) are smaller "
                                                                  "than one 256² tile"),
        (["pairs", tmp_path / "city", "--layout", "two-rasters", "--tile", "32"],
         "rsgan: error: no usable images: skipped 24: 24 unreadable raster data (tile row 0 col 0, tile row 0 col 1,"),
    ]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".rsgan-output").write_text("{}")  # an earlier output, which rsgan may replace
    (tmp_path / "out" / "keep.txt").write_text("an earlier dataset")
    for args, message in cases:
        r = rsgan_here(capfd, *args, "--out", tmp_path / "out")
        lines = r.stderr.strip().splitlines()  # progress bars, then one error line
        assert r.returncode == 1 and lines[-1].startswith(message), (args, r.stderr)
        assert "Traceback" not in r.stderr and sum(line.startswith("rsgan:") for line in lines) == 1
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".rsgan-output", "keep.txt"]  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "city", "out"]  # no temporary folders


def test_push_to_hub_uses_the_hub_and_reports_failure(tmp_path):
    make_side_by_side(tmp_path / "tiles", rows=1, cols=2)
    r = rsgan("pairs", tmp_path / "tiles", "--push-to-hub", "someone/pairs", "--out", tmp_path / "out",
              env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(
        "rsgan: error: push to someone/pairs failed (the local dataset is complete): ")
    assert len(load_from_disk(str(tmp_path / "out"))["train"]) == 2
