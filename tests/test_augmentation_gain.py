"""`augmentation_gain` and `rsgan evaluate --augmentation-gain` on synthetic scenes: three classes of
stripes that differ only in their frequency (random colour, orientation and noise), so two real scenes
per class are not enough and more of them help. A "generator" that returns more real scenes of the asked
class must show a gain, one that returns noise must not; both arms see the same real subset; the outputs
are written atomically; bad inputs fail with a clear message."""

import json
import pathlib

import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from matplotlib.figure import Figure
from torch import nn

from conftest import tiny_dcgan
from rsgan_hub import SceneClassifier
from rsgan_hub.cli import main
from rsgan_hub.evaluation import augmentation, augmentation_gain, plot_gain, write_results
from rsgan_hub.evaluation.augmentation import t_quantile_975
from rsgan_hub.io import tensor_to_pil

CLASSES = ["Coarse", "Medium", "Fine"]
SIZE = 32


def stripes(label: int, n: int, seed: int) -> torch.Tensor:
    """(n, 3, SIZE, SIZE) in [-1, 1]: noisy plane waves whose frequency band is the class."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    low, high = [(2, 4), (6, 9), (12, 16)][label]
    freq = (torch.rand(n, generator=g) * (high - low) + low)[:, None, None]
    angle = (torch.rand(n, generator=g) * torch.pi)[:, None, None]
    phase = (torch.rand(n, generator=g) * 2 * torch.pi)[:, None, None]
    wave = torch.sin(2 * torch.pi * freq * (xx * angle.cos() + yy * angle.sin()) + phase)  # (n, S, S)
    colour = torch.rand(n, 3, 1, 1, generator=g) * 1.2 - 0.6
    return (colour + 0.4 * wave[:, None] + 0.2 * torch.randn(n, 3, SIZE, SIZE, generator=g)).clamp(-1, 1)


def scene_split(per_class: int, seed: int) -> Dataset:
    images = [tensor_to_pil(x) for c in range(len(CLASSES)) for x in stripes(c, per_class, seed * 10 + c)]
    return Dataset.from_dict({"image": images, "label": [c for c in range(len(CLASSES)) for _ in range(per_class)]},
                             features=Features({"image": Image(), "label": ClassLabel(names=CLASSES)}))


class PoolGenerator(nn.Module):
    """Stands in for a conditional generator: more real scenes of the asked class, or uniform noise."""

    def __init__(self, noise: bool = False, class_names=CLASSES):
        super().__init__()
        self.noise, self.class_names, self.num_classes = noise, list(class_names), len(class_names)
        self.latent_dim, self.image_size = 4, SIZE
        self.pool = [stripes(c, 50, seed=100 + c) for c in range(len(CLASSES))]  # not in the dataset

    def forward(self, z, labels):
        if self.noise:
            return torch.rand(len(z), 3, SIZE, SIZE) * 2 - 1
        index = (z[:, 0].abs() * 1e4).long() % 50  # a deterministic function of the latent
        return torch.stack([self.pool[int(c)][int(i)] for c, i in zip(labels, index)])


@pytest.fixture(scope="module")
def scenes():
    return DatasetDict({"train": scene_split(20, 1), "test": scene_split(10, 2)})


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    path = tmp_path_factory.mktemp("classifier")
    torch.manual_seed(0)
    SceneClassifier(image_size=SIZE, channels=[8, 16, 32], num_classes=3, class_names=CLASSES).save_pretrained(path)
    return str(path)


def run(generator, scenes, classifier, **kwargs):
    options = dict(real_per_class=[2], synthetic_per_class=30, repeats=3, steps=60, batch_size=32,
                   classifier=classifier)
    return augmentation_gain(generator, scenes, **{**options, **kwargs})


@pytest.fixture(scope="module")
def real_run(scenes, classifier):
    """The pool-of-real-scenes generator, with every classifier's training data and initial weights recorded."""
    calls, fit = [], augmentation.fit_classifier

    def spy(model, images, labels, *args, **kwargs):
        calls.append({"arm": kwargs["description"], "images": images.clone(), "labels": labels.clone(),
                      "init": next(model.parameters()).detach().clone()})
        return fit(model, images, labels, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(augmentation, "fit_classifier", spy)
        return run(PoolGenerator(), scenes, classifier), calls


def test_more_real_scenes_as_synthetic_ones_give_a_positive_gain(real_run):
    results, _ = real_run
    (row,) = results["per_k"]
    assert row["real_per_class"] == 2 and row["synthetic_mean"] > row["baseline_mean"]
    assert row["gain_mean"] > 0.15 and row["gain_ci95"][0] > 0  # the interval excludes zero
    assert set(row["per_class_gain"]) == set(CLASSES)
    assert results["cas"]["mean"] > 0.6 and len(results["cas"]["runs"]) == 3  # trained on the pool alone
    assert results["info"]["classifiers_trained"] == len(results["runs"]) == 9


def test_noise_as_synthetic_scenes_gives_no_gain(scenes, classifier):
    results = run(PoolGenerator(noise=True), scenes, classifier)
    (row,) = results["per_k"]
    assert row["gain_mean"] < 0 and row["synthetic_mean"] < row["baseline_mean"]


def test_both_arms_train_on_the_same_real_subset(real_run):
    results, calls = real_run
    baselines = [c for c in calls if c["arm"].startswith("baseline")]
    synthetics = [c for c in calls if c["arm"].startswith("synthetic")]
    assert len(baselines) == len(synthetics) == 3
    for base, synth in zip(baselines, synthetics):
        n = len(base["images"])
        assert n == 2 * len(CLASSES) and len(synth["images"]) == n + 30 * len(CLASSES)
        assert torch.equal(synth["images"][:n], base["images"]) and torch.equal(synth["labels"][:n], base["labels"])
        assert torch.equal(synth["init"], base["init"])  # and the same initialisation
    assert not torch.equal(baselines[0]["images"], baselines[1]["images"])  # repeats draw other subsets
    rows = {(x["repeat"], x["arm"]): x["real_rows"] for x in results["runs"]}
    assert all(rows[r, "baseline"] == rows[r, "synthetic"] and len(rows[r, "baseline"]) == 6 for r in range(3))


def test_json_and_png_are_written_atomically(real_run, tmp_path, monkeypatch):
    results, _ = real_run
    out, plot = tmp_path / "gain.json", tmp_path / "gain.png"
    out.write_text("old")
    plot.write_bytes(b"old")

    def half_png(self, path, *args, **kwargs):
        open(path, "wb").write(b"\x89PNG half")
        raise OSError("disk full")

    def half_text(self, text):
        open(self, "w").write(text[:10])
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(Figure, "savefig", half_png)
        with pytest.raises(OSError, match="disk full"):
            plot_gain(results, plot)
    assert plot.read_bytes() == b"old"  # an existing file is replaced only when the new one is complete
    with monkeypatch.context() as patch:
        patch.setattr(pathlib.Path, "write_text", half_text)
        with pytest.raises(OSError, match="disk full"):
            write_results(results, out)
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gain.json", "gain.png"]  # no temp files left

    write_results(results, out)
    plot_gain(results, plot)
    assert json.loads(out.read_text())["per_k"][0]["real_per_class"] == 2
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gain.json", "gain.png"]


def test_clear_errors(scenes, classifier):
    unconditional, _ = tiny_dcgan(64)
    with pytest.raises(ValueError, match="needs a class-conditional model"):
        run(unconditional, scenes, classifier)
    with pytest.raises(ValueError, match=r"the dataset's classes Fine are not among the model's class names"):
        run(PoolGenerator(class_names=["coarse", "Medium", "Sand"]), scenes, classifier)
    with pytest.raises(ValueError, match="k = 25 real scenes per class, but class Coarse has only 20 train scenes"):
        run(PoolGenerator(), scenes, classifier, real_per_class=[5, 25])
    with pytest.raises(ValueError, match=">= 2 repeats"):
        run(PoolGenerator(), scenes, classifier, repeats=1)
    assert t_quantile_975(2) == 4.303 and abs(t_quantile_975(31) - 2.0395) < 1e-3  # table, then expansion


def test_rsgan_evaluate_augmentation_gain(tmp_path, classifier, capsys):
    for c, name in enumerate(CLASSES):  # a raw class tree, split 90/10 by the loader
        (tmp_path / "scenes" / name).mkdir(parents=True)
        for i, image in enumerate(stripes(c, 20, seed=c)):
            tensor_to_pil(image).save(tmp_path / "scenes" / name / f"{i}.png")
    generator, _ = tiny_dcgan(64, num_classes=3, class_names=["fine", "Medium", "Coarse"])
    generator.save_pretrained(tmp_path / "g")
    out = tmp_path / "out" / "gain.json"
    args = ["evaluate", "--model", str(tmp_path / "g"), "--dataset", str(tmp_path / "scenes"), "--augmentation-gain",
            "--quick", "--classifier", classifier, "--out", str(out), "--update-card", "--dataset-name", "toy"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| real / class | real only | real + 10 synthetic / class |" in printed and "CAS (10 synthetic" in printed
    results = json.loads(out.read_text())
    assert results["info"]["repeats"] == 2 and results["info"]["steps"] == 20 and len(results["runs"]) == 6
    assert (tmp_path / "out" / "gain.png").read_bytes()[:4] == b"\x89PNG"
    card = (tmp_path / "g" / "README.md").read_text()
    assert "## Augmentation gain" in card and "`toy`" in card and "| 5 |" in card and "How to use" in card

    unconditional, _ = tiny_dcgan(64)
    unconditional.save_pretrained(tmp_path / "u")
    assert main(["evaluate", "--model", str(tmp_path / "u"), "--dataset", str(tmp_path / "scenes"),
                 "--augmentation-gain", "--quick", "--classifier", classifier, "--out", str(tmp_path / "u.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rsgan: error: the augmentation gain needs a class-conditional model")
    assert len(err.splitlines()) == 1 and not (tmp_path / "u.json").exists()
