"""Nothing a user owns is deleted or overwritten, no input hangs, and interruptions clean up.

Each case asserts the exit code, the one-line message, that every input is byte-identical afterwards
(a hash of the whole tree) and that nothing is left beside the output.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import rasterio
from PIL import Image

from conftest import tiny_dcgan, tiny_pix2pix
from rsgan_hub import DCGANGenerator, ModelLoadError, Pix2PixGenerator
from rsgan_hub.cli import main
from rsgan_hub.io import MARKER
from rsgan_hub.pipelines import MIN_TRUNCATION, latents

ROOT = Path(__file__).resolve().parents[1]


def tree(root: Path) -> dict[str, tuple]:
    """{relative path: what it is} for everything under root, hidden files and links included."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir",)
            else:
                found[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def rsgan(*args, cwd=None, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rsgan_hub", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, **kwargs)


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("rsgan:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def refused(tmp_path, capsys, argv, message, cwd=None):
    """Run `rsgan argv` in this process; assert exit 1, one line containing `message`, nothing changed."""
    before = tree(tmp_path)
    old = os.getcwd()
    os.chdir(cwd or tmp_path)
    try:
        code = main([str(a) for a in argv])
    finally:
        os.chdir(old)
    err = capsys.readouterr().err
    assert code == 1, err
    line = one_line(err)
    assert line.startswith("rsgan: error: ") and message in line, line
    assert tree(tmp_path) == before


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tiny_dcgan(64, num_classes=2, class_names=["Forest", "River"])[0].save_pretrained(root / "dcgan")
    tiny_pix2pix(direction="sat2map")[0].save_pretrained(root / "sat2map")
    return root


@pytest.fixture
def work(tmp_path, models):
    """tmp_path with a copy of the DCGAN folder (an input the user owns) and a working directory."""
    (tmp_path / "model").mkdir()
    for f in (models / "dcgan").iterdir():
        (tmp_path / "model" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "notes.txt").write_text("mine")
    return tmp_path


# ---- data loss: --out at the wrong place --------------------------------------------------------
@pytest.mark.parametrize("out, message", [
    ("cwd", "is or holds the working directory"),
    (".", "is or holds the working directory"),
    ("model", "is the model folder"),
    ("link-to-model", "is the model folder"),
    ("model/samples", "lies inside the model folder"),
    ("link-to-model/samples", "lies inside the model folder"),
])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_generate_out_at_an_input_is_refused_even_with_overwrite(work, capsys, out, message, overwrite):
    (work / "link-to-model").symlink_to(work / "model")
    out = work / "cwd" if out == "." else work / out
    refused(work, capsys, ["generate", "--model", work / "model", "--label", "Forest", "--num-images", 1,
                           "--out", out, *overwrite], message, cwd=work / "cwd")


def test_generate_out_above_the_working_directory_is_refused(work, capsys):
    refused(work, capsys, ["generate", "--model", work / "model", "--label", "Forest", "--out", work, "--overwrite"],
            "is or holds the working directory", cwd=work / "cwd")


def test_generate_replaces_only_its_own_folders(work, capsys):
    (work / "mine").mkdir()
    for name in ("a.txt", "b.txt", ".hidden"):
        (work / "mine" / name).write_text(name)
    refused(work, capsys, ["generate", "--model", work / "model", "--label", "Forest", "--out", work / "mine"],
            f"{work / 'mine'} already holds 3 entries rsgan did not write (.hidden, a.txt, b.txt); choose another "
            "--out or pass --overwrite to replace it")
    (work / "afile").write_text("x")
    refused(work, capsys, ["generate", "--model", work / "model", "--label", "Forest", "--out", work / "afile"],
            "is a file, not a folder")
    args = ["generate", "--model", work / "model", "--label", "Forest", "--num-images", 2]
    assert main([str(a) for a in [*args, "--out", work / "mine", "--overwrite"]]) == 0
    assert json.loads((work / "mine" / MARKER).read_text()) == {"written_by": "rsgan generate"}
    assert main([str(a) for a in [*args, "--seed", 5, "--out", work / "mine"]]) == 0  # its own: replaced
    assert sorted(p.name for p in (work / "mine").iterdir()) == [MARKER, "000000.png", "000001.png", "grid.png"]
    assert sorted(p.name for p in work.iterdir()) == ["afile", "cwd", "mine", "model"]  # nothing beside it


def test_synthesize_out_at_the_model_folder_is_refused(work, capsys):
    refused(work, capsys, ["synthesize", "--model", work / "model", "--per-class", 1, "--out", work / "model",
                           "--overwrite"], "is the model folder")


def test_synthesize_refuses_a_user_folder(work, capsys):
    (work / "data").mkdir()
    (work / "data" / "x.csv").write_text("1,2")
    refused(work, capsys, ["synthesize", "--model", work / "model", "--per-class", 1, "--out", work / "data"],
            "already holds 1 entries rsgan did not write (x.csv)")


@pytest.fixture
def raw(tmp_path):
    """data/raw/{Forest,River}/*.png: a dataset source inside a folder of the user's."""
    rng = np.random.default_rng(0)
    for c in ("Forest", "River"):
        (tmp_path / "data" / "raw" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "data/raw" / c / f"{i}.png")
    (tmp_path / "data" / "notes.md").write_text("my notes")
    return tmp_path / "data" / "raw"


@pytest.mark.parametrize("out, message", [
    ("data", "holds the source folder"),  # the issue's `rsgan dataset scenes data/raw --out data`
    ("data/raw", "is the source folder"),
    ("data/raw/Forest", "lies inside the source folder"),
    ("link", "is the source folder"),
    ("link/out", "lies inside the source folder"),
    (".", "is or holds the working directory"),
])
def test_dataset_out_around_or_inside_the_source_is_refused(tmp_path, raw, capsys, out, message):
    (tmp_path / "link").symlink_to(raw)
    refused(tmp_path, capsys, ["dataset", "scenes", raw, "--out", tmp_path / out, "--overwrite"], message)


def test_dataset_out_holding_the_citation_file_is_refused(tmp_path, raw, capsys):
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "aid.bib").write_text("@article{x}")
    refused(tmp_path, capsys, ["dataset", "scenes", raw, "--citation", tmp_path / "refs" / "aid.bib", "--out",
                               tmp_path / "refs", "--overwrite"], "holds the citation file")


def test_translate_never_replaces_its_input_or_a_users_file(tmp_path, models, capsys):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    os.link(tmp_path / "x.png", tmp_path / "hardlink.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "x.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    (tmp_path / "x.tif").write_bytes(b"II*\0")
    args = ["translate", tmp_path / "x.png", "--model", models / "sat2map", "--tile", 32, "--overlap", 8]
    for out, message in [("x.png", "is the input"), ("link.png", "is the input"), ("hardlink.png", "is the input"),
                         ("photo.png", "photo.png exists and was not written by rsgan; choose another --out or "
                                       "pass --overwrite to replace it")]:
        refused(tmp_path, capsys, [*args, "--out", tmp_path / out], message)
    refused(tmp_path, capsys, ["translate", tmp_path / "x.tif", "--model", models / "sat2map", "--out",
                               tmp_path / "x.tif", "--overwrite"], "is the input")
    assert main([str(a) for a in [*args, "--out", tmp_path / "map.png"]]) == 0
    assert main([str(a) for a in [*args, "--out", tmp_path / "map.png"]]) == 0  # its own output: replaced
    assert main([str(a) for a in [*args, "--out", tmp_path / "photo.png", "--overwrite"]]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hardlink.png", "link.png", "map.png", "photo.png",
                                                          "x.png", "x.tif"]


# ---- hangs and resource exhaustion --------------------------------------------------------------
def test_tiny_truncation_is_refused_at_once(work):
    start = time.monotonic()
    r = rsgan("generate", "--model", work / "model", "--label", "Forest", "--truncation", "1e-9", "--out", work / "o")
    assert r.returncode == 1 and one_line(r.stderr) == "rsgan: error: --truncation must be at least 0.05 (or off), got 1e-09"
    assert time.monotonic() - start < 60 and not (work / "o").exists()
    with pytest.raises(ValueError, match="at least 0.05"):
        latents([0], 8, float("nan"))


def test_truncation_redraw_is_bounded(monkeypatch):
    start = time.monotonic()
    z = latents(range(64), 100, MIN_TRUNCATION)  # the app's largest request, at the floor
    assert time.monotonic() - start < 30 and z.abs().max() <= MIN_TRUNCATION
    monkeypatch.setattr("rsgan_hub.pipelines.MAX_REDRAWS", 1)  # then survivors are clamped, never redrawn forever
    assert latents([0], 10_000, MIN_TRUNCATION).abs().max() <= MIN_TRUNCATION


def test_huge_num_images_is_refused_and_large_runs_stream(work):
    r = rsgan("generate", "--model", work / "model", "--label", "Forest", "--num-images", 1_000_000_000,
              "--out", work / "o")
    assert r.returncode == 1 and "at most 100,000 per run" in one_line(r.stderr) and not (work / "o").exists()
    r = rsgan("generate", "--model", work / "model", "--label", "Forest", "--num-images", 70, "--out", work / "o")
    assert r.returncode == 0, r.stderr
    assert len(list((work / "o").glob("0*.png"))) == 70
    assert Image.open(work / "o" / "grid.png").size == (8 * 66 + 2, 8 * 66 + 2)  # the first 64


def write_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def test_huge_widths_are_refused_before_allocating(work):
    write_config(work / "model", channels=[2**20, 2**20, 2**20, 2**20])
    start = time.monotonic()
    r = rsgan("generate", "--model", work / "model", "--label", "Forest", "--out", work / "o")
    assert r.returncode == 1 and "parameters, over the limit of 2,000,000,000" in one_line(r.stderr)
    assert time.monotonic() - start < 60 and not (work / "o").exists()


# ---- one-line errors ----------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_damaged_weights_are_one_line(work, damage):
    weights = work / "model" / "model.safetensors"
    weights.write_bytes(b"" if damage == "empty" else weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="damaged or truncated weights file"):
        DCGANGenerator.from_pretrained(work / "model")
    before = tree(work)
    r = rsgan("generate", "--model", work / "model", "--label", "Forest", "--out", work / "o")
    assert r.returncode == 1 and "model.safetensors: damaged or truncated weights file" in one_line(r.stderr)
    assert tree(work) == before


def test_config_value_of_the_wrong_type_is_one_line(tmp_path, models):
    (tmp_path / "m").mkdir()
    for f in (models / "sat2map").iterdir():
        (tmp_path / "m" / f.name).write_bytes(f.read_bytes())
    write_config(tmp_path / "m", base_channels="32")
    with pytest.raises(ModelLoadError, match='config.json has base_channels = "32", which is not int'):
        Pix2PixGenerator.from_pretrained(tmp_path / "m")
    Image.new("RGB", (40, 40)).save(tmp_path / "in.png")
    r = rsgan("translate", tmp_path / "in.png", "--model", tmp_path / "m", "--out", tmp_path / "out.png")
    assert r.returncode == 1 and 'config.json has base_channels = "32", which is not int' in one_line(r.stderr)
    assert not (tmp_path / "out.png").exists()


def test_app_start_with_damaged_weights_is_one_line(tmp_path, models):
    (tmp_path / "m").mkdir()
    for f in (models / "sat2map").iterdir():
        (tmp_path / "m" / f.name).write_bytes(f.read_bytes()[:100] if f.suffix == ".safetensors" else f.read_bytes())
    out = subprocess.run([sys.executable, str(ROOT / "app.py"), "--sat2map", str(tmp_path / "m")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.strip().startswith("app.py: error: ")
    assert "damaged or truncated weights file" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_complex_geotiff_is_one_line(tmp_path, models):
    data = (np.ones((1, 40, 40)) * (1 + 2j)).astype(np.complex64)
    with rasterio.open(tmp_path / "sar.tif", "w", driver="GTiff", height=40, width=40, count=1,
                       dtype="complex64") as dst:
        dst.write(data)
    before = tree(tmp_path)
    r = rsgan("translate", tmp_path / "sar.tif", "--model", models / "sat2map", "--out", tmp_path / "map.tif")
    assert r.returncode == 1
    assert one_line(r.stderr).endswith("sar.tif: band 1 is complex-valued (complex64); translate needs real-valued "
                                       "bands - convert it first (e.g. to amplitude)")
    assert tree(tmp_path) == before


def test_seed_overflow_is_one_line(work, capsys):
    refused(work, capsys, ["synthesize", "--model", work / "model", "--per-class", 1, "--seed",
                           9223372036854775807, "--out", work / "o"],
            "seeds must lie in -9223372036854775808..9223372036854775807; this run would use seeds "
            "9223372036854775807..9223372036854775808")
    refused(work, capsys, ["generate", "--model", work / "model", "--label", "Forest", "--num-images", 2, "--seed",
                           2**63 - 1, "--out", work / "o"], "seeds must lie in")


# ---- interruptions ------------------------------------------------------------------------------
def start(*args, cwd):
    """`rsgan args` in a session of its own (so a group signal acts like Ctrl-C in a terminal)."""
    return subprocess.Popen([sys.executable, "-m", "rsgan_hub", *map(str, args)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_sigterm_of_translate_leaves_no_temporary_file(tmp_path, models):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    before = tree(tmp_path)
    process = start("translate", tmp_path / "in.png", "--model", models / "sat2map", "--out", tmp_path / "map.tif",
                    "--tile", 32, "--overlap", 16, cwd=tmp_path)
    wait_for(lambda: any(p.name.startswith(".map.") for p in tmp_path.iterdir()))  # writing has begun
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert one_line(err) == "rsgan: interrupted; no partial output was kept"
    assert tree(tmp_path) == before  # the input alone: no temporary file, no output


HANGING_CLEANUP = """
import argparse, sys, threading, time
from rsgan_hub import cli
from rsgan_hub.io import atomic_path, scratch_dir

def run(args):
    with scratch_dir("out"), atomic_path("out.png") as tmp:
        tmp.write_text("partial")
        try:
            print("ready", flush=True)
            time.sleep(120)
        finally:
            threading.Event().wait()  # a library's cleanup that never returns

parser = argparse.ArgumentParser()
parser.set_defaults(_run=run)
cli.build_parser, cli.UNWIND_SECONDS = lambda: parser, 1
sys.exit(cli.main([]))
"""


def test_a_cleanup_that_hangs_is_cut_short(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", HANGING_CLEANUP], cwd=tmp_path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert one_line(err) == "rsgan: interrupted; no partial output was kept"
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def big_raw(tmp_path):
    """Enough noise images for `rsgan dataset --num-proc 2` to run for a few seconds in two workers."""
    rng = np.random.default_rng(0)
    for c in ("Forest", "River"):
        (tmp_path / "raw" / c).mkdir(parents=True)
        for i in range(80):
            Image.fromarray(rng.integers(0, 256, (192, 192, 3), dtype=np.uint8)).save(tmp_path / "raw" / c / f"{i}.png")
    return tmp_path / "raw"


def workers_of(process) -> list[psutil.Process]:
    try:
        return psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def processes_of(source: Path) -> list[psutil.Process]:
    """Every process whose command line names `source` (workers forked at any time, by anyone)."""
    return [p for p in psutil.process_iter(["cmdline"]) if str(source) in " ".join(p.info["cmdline"] or [])]


def running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running, after waiting up to 30 s (a zombie left to an init that does not reap is dead)."""
    def alive(p):
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 30
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in processes if alive(p)]


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupted_dataset_stops_its_workers_and_cleans_up(tmp_path, big_raw, how):
    before = tree(tmp_path)
    process = start("dataset", "scenes", big_raw, "--num-proc", 2, "--out", tmp_path / "out", cwd=tmp_path)
    wait_for(lambda: len(workers_of(process)) >= 3)  # datasets' queue manager and two workers
    workers = workers_of(process)
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)  # the terminal sends it to the whole group
    else:
        process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + (signal.SIGINT if how == "ctrl-c" else signal.SIGTERM), err
    assert one_line(err) == "rsgan: interrupted; no partial output was kept"
    assert running(workers) == [] and running(processes_of(big_raw)) == []
    assert tree(tmp_path) == before


def test_sigkill_of_dataset_kills_its_workers_and_the_next_run_cleans_up(tmp_path, big_raw):
    before = tree(tmp_path)
    process = start("dataset", "scenes", big_raw, "--num-proc", 2, "--out", tmp_path / "out", cwd=tmp_path)
    wait_for(lambda: len(workers_of(process)) >= 3)
    workers = workers_of(process)
    process.kill()
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert running(workers) == [] and running(processes_of(big_raw)) == []  # they died with their parent
    [stale] = [p for p in tmp_path.iterdir() if p.name.startswith(".out.cache.")]  # SIGKILL runs no cleanup
    r = rsgan("dataset", "scenes", big_raw, "--num-proc", 2, "--out", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"rsgan: removed {stale}, left by an interrupted run" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out")} == before


def test_app_refuses_a_hanging_truncation_and_keeps_serving(tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from test_app_server import running_app, save_tiny_models

    with running_app(tmp_path, [], save_tiny_models(tmp_path)) as (url, _):
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"), analytics_enabled=False)

        def timed(truncation):
            began = time.monotonic()
            result = client.predict("River", 4, 3, truncation, api_name="/generate")
            return result, time.monotonic() - began

        _, usual = timed(0.5)
        for _ in range(2):  # two used to fill both workers for good
            began = time.monotonic()
            with pytest.raises(AppError, match="from 0.05 to 3.0"):
                client.predict("River", 4, 3, 1e-9, api_name="/generate")
            assert time.monotonic() - began < 5 * usual + 5
        (gallery, _, _), again = timed(0.5)
        assert len(gallery) == 4 and again < 3 * usual + 2


# ---- rsgan evaluate: the results JSON (and the gain plot) follow the same rule ---------------------
@pytest.mark.parametrize("target, message", [
    ("dcgan/config.json", "lies inside the model folder"), ("dcgan", "is the model folder"),
    ("notes.json", "exists and was not written by rsgan"),
])
def test_evaluate_never_replaces_an_input_or_a_users_file(models, tmp_path, capsys, target, message):
    work = tmp_path / "work"
    (work / "dcgan").mkdir(parents=True)
    for f in (models / "dcgan").iterdir():
        (work / "dcgan" / f.name).write_bytes(f.read_bytes())
    (work / "notes.json").write_text('{"mine": 1}\n')
    refused(tmp_path, capsys, ["evaluate", "--model", work / "dcgan", "--dataset", work / "nowhere",
                               "--out", work / target], message, cwd=work)


def test_evaluate_may_replace_its_own_results_but_not_a_users_plot(models, tmp_path, capsys):
    from rsgan_hub.evaluation.augmentation import written_by_evaluate

    ours = tmp_path / "r.json"
    ours.write_text(json.dumps({"fid": 1.0, "info": {"split": "test"}}))
    assert written_by_evaluate(ours) and not written_by_evaluate(tmp_path / "missing.json")
    Image.new("RGB", (4, 4)).save(tmp_path / "r.png")  # a user's picture where the gain plot would go
    assert not written_by_evaluate(tmp_path / "r.png")
    refused(tmp_path, capsys, ["evaluate", "--model", models / "dcgan", "--dataset", tmp_path / "nowhere",
                               "--augmentation-gain", "--out", ours], "r.png exists and was not written by rsgan")
