"""Do generated scenes help a classifier that has few real ones? The augmentation gain of a
class-conditional generator, measured as remote-sensing GAN papers do (e.g. Lin et al. 2017, "MARTA
GANs"; Ma et al. 2019, "SiftingGAN"): train the same classifier on k real scenes per class with
classic augmentation only, and on the same k real scenes plus m generated ones per class, and compare
their accuracy on the real test split.

Design, per k and repeat r:
* the real subset is the first k of a seeded permutation of each class's train scenes (one
  permutation per repeat, so the subsets of one repeat are nested across k); both arms get exactly it;
* both arms start from the same initialisation, train for the same fixed number of steps with the same
  schedule and seed (`fit_classifier`: AdamW 3e-3, one-cycle, label smoothing 0.1, batches of up to 64)
  and the same classic augmentation (the 8 flips/90° rotations of the square and random square crops);
* the synthetic arm adds m generated scenes per class (drawn once per repeat, asked by class name);
  CAS (Ravuri & Vinyals 2019) trains the same recipe on those generated scenes alone.
The gain is the paired difference synthetic - baseline; its 95 % confidence interval is Student's t over
the repeats. The classifier is the shipped `SceneClassifier` architecture with fresh weights.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard
from tqdm.auto import tqdm

from ..io import atomic_path
from ..models import SceneClassifier
from .classify import accuracy, fit_classifier, to_uint8, to_unit_range
from .features import DEFAULT_CLASSIFIER
from .report import put_section
from .scenes import _load_split, generated_tensors, scene_tensors

# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (scipy is not a dependency).
T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]


def t_quantile_975(dof: int) -> float:
    """The 0.975 quantile of Student's t with `dof` degrees of freedom (table; Cornish-Fisher above 30)."""
    if dof <= len(T_975):
        return T_975[dof - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


def _mean_ci(values: list[float]) -> tuple[float, float, float, float]:
    """Mean, standard deviation and the 95 % t interval of the mean."""
    mean, std = statistics.fmean(values), statistics.stdev(values)
    half = t_quantile_975(len(values) - 1) * std / math.sqrt(len(values))
    return mean, std, mean - half, mean + half


def _classes(generator, names: list[str]) -> list[int]:
    """For each dataset class, the generator's class index (by name, case-insensitive); clear errors."""
    if not getattr(generator, "num_classes", 0):
        raise ValueError("the augmentation gain needs a class-conditional model (its scenes are asked for by class "
                         "name); this one has no classes")
    lowered = [c.lower() for c in generator.class_names]
    missing = [n for n in names if n.lower() not in lowered]
    if missing:
        raise ValueError(f"the dataset's classes {', '.join(missing)} are not among the model's class names "
                         f"({', '.join(generator.class_names)})")
    return [lowered.index(n.lower()) for n in names]


def augmentation_gain(
    generator,
    dataset,
    real_per_class: tuple[int, ...] = (5, 10, 25, 50),
    synthetic_per_class: int = 100,
    repeats: int = 3,
    steps: int = 300,
    batch_size: int = 64,
    crop_scale: float = 0.75,
    classifier: str | None = None,
    train_split: str = "train",
    test_split: str = "test",
    label_column: str = "label",
    seed: int = 0,
) -> dict:
    """Test accuracy of a classifier trained on k real scenes per class, with and without m generated ones.

    Args:
        generator: a class-conditional `DCGANGenerator` (or any module with `class_names`, `latent_dim` and
            `generator(z, labels)` -> (B, 3, S, S) in [-1, 1]); every dataset class must be among its names.
        dataset: a spec for `load_scene_dataset` or a DatasetDict with `train_split` and `test_split`.
        real_per_class (`tuple[int]`, defaults to (5, 10, 25, 50)): the k values.
        synthetic_per_class (`int`, defaults to 100): m, generated scenes per class in the synthetic arm.
        repeats (`int`, defaults to 3): subsets and seeds per k (>= 2, for the confidence interval).
        steps / batch_size: optimiser steps and batch size of every classifier, whatever its data size.
        crop_scale (`float`, defaults to 0.75): smallest side of the random crops, as a fraction.
        classifier (`str`, *optional*): a `SceneClassifier` folder or repo id whose architecture is trained
            (default: the shipped one).

    Returns:
        {"per_k": [{"real_per_class", "baseline_mean"/"_std", "synthetic_mean"/"_std", "gain_mean",
        "gain_std", "gain_ci95", "per_class_gain"}], "cas": {"mean", "std", "runs"}, "runs": one record per
        classifier (k, repeat, arm, seed, accuracy, per-class accuracy, the real train rows used),
        "info": the configuration, counts and timings}
    """
    ks = sorted(set(int(k) for k in real_per_class))
    if not ks or ks[0] < 1:
        raise ValueError(f"real scenes per class must be >= 1, got {list(real_per_class)}")
    if synthetic_per_class < 1:
        raise ValueError(f"synthetic scenes per class must be >= 1, got {synthetic_per_class}")
    if repeats < 2:
        raise ValueError(f"a confidence interval needs >= 2 repeats, got {repeats}")
    wall, cpu = time.perf_counter(), time.process_time()
    recipe = SceneClassifier.from_pretrained(classifier or DEFAULT_CLASSIFIER).init_config
    size = recipe["image_size"]

    # 1. Data: the dataset's classes, each mapped to a generator class by name.
    train_ds = _load_split(dataset, train_split, label_column)
    test_ds = _load_split(dataset, test_split, label_column)
    names = train_ds.features["label"].names
    to_generator = _classes(generator, names)
    train_labels = torch.tensor(train_ds["label"])
    rows_of = [torch.nonzero(train_labels == c).flatten() for c in range(len(names))]
    smallest = min(range(len(names)), key=lambda c: len(rows_of[c]))
    if ks[-1] > len(rows_of[smallest]):
        raise ValueError(f"k = {ks[-1]} real scenes per class, but class {names[smallest]} has only "
                         f"{len(rows_of[smallest])} {train_split} scenes")
    # one permutation of each class's train rows per repeat; subset (k, r) = the first k of each
    rng = torch.Generator().manual_seed(seed)
    orders = [[rows[torch.randperm(len(rows), generator=rng)[:ks[-1]]] for rows in rows_of] for _ in range(repeats)]
    used = sorted({int(i) for order in orders for rows in order for i in rows})
    real, _ = scene_tensors(train_ds.select(used), size, description=f"real {train_split} subsets")
    position = {row: i for i, row in enumerate(used)}
    test_images, test_labels = scene_tensors(test_ds, size, description=f"real {test_split}")
    recipe = {**recipe, "num_classes": len(names), "class_names": list(names)}

    # 2. Train 2 classifiers per (k, repeat) and one CAS classifier per repeat.
    runs, m = [], synthetic_per_class
    synthetic_labels = torch.arange(len(names)).repeat_interleave(m)  # (C * m,) dataset indices
    progress = tqdm(total=repeats * (2 * len(ks) + 1), desc="augmentation gain", unit="classifier")

    def train_and_test(k, r, arm, run_seed, images, labels, rows):
        progress.set_postfix(k=k, repeat=r, arm=arm)
        torch.manual_seed(run_seed)  # the initialisation: the same for both arms of a (k, repeat)
        model = fit_classifier(SceneClassifier(**recipe), images, labels, batch_size=batch_size, seed=run_seed,
                               steps=steps, crop_scale=crop_scale, leave=False, description=f"{arm}, k={k}")
        overall, per_class = accuracy(model, test_images, test_labels)
        runs.append({"real_per_class": k, "repeat": r, "arm": arm, "seed": run_seed, "accuracy": overall,
                     "per_class_accuracy": dict(zip(names, per_class.tolist())), "real_rows": rows})
        progress.update()

    for r in range(repeats):
        generator_labels = torch.tensor(to_generator)[synthetic_labels]
        synthetic = generated_tensors(generator, len(synthetic_labels), seed + r * len(synthetic_labels),
                                      labels=generator_labels)  # latents of seeds disjoint across repeats
        if synthetic.shape[-1] != size:  # to the classifier's side, as the real scenes were decoded
            synthetic = to_uint8(F.interpolate(to_unit_range(synthetic), size=size, mode="bilinear",
                                               antialias=True, align_corners=False))
        for i, k in enumerate(ks):
            rows = torch.cat([order[:k] for order in orders[r]]).tolist()
            images = real[[position[row] for row in rows]]
            labels = torch.arange(len(names)).repeat_interleave(k)
            run_seed = seed + r * len(ks) + i
            train_and_test(k, r, "baseline", run_seed, images, labels, rows)
            train_and_test(k, r, "synthetic", run_seed, torch.cat([images, synthetic]),
                           torch.cat([labels, synthetic_labels]), rows)
        train_and_test(0, r, "cas", seed + repeats * len(ks) + r, synthetic, synthetic_labels, [])
    progress.close()

    # 3. Summaries: per k, both arms and the paired gain.
    per_k = []
    for k in ks:
        base = sorted((x for x in runs if x["real_per_class"] == k and x["arm"] == "baseline"),
                      key=lambda x: x["repeat"])
        synth = sorted((x for x in runs if x["real_per_class"] == k and x["arm"] == "synthetic"),
                       key=lambda x: x["repeat"])
        gains = [s["accuracy"] - b["accuracy"] for b, s in zip(base, synth)]
        gain_mean, gain_std, low, high = _mean_ci(gains)
        per_k.append({
            "real_per_class": k,
            "baseline_mean": statistics.fmean(x["accuracy"] for x in base),
            "baseline_std": statistics.stdev(x["accuracy"] for x in base),
            "synthetic_mean": statistics.fmean(x["accuracy"] for x in synth),
            "synthetic_std": statistics.stdev(x["accuracy"] for x in synth),
            "gain_mean": gain_mean, "gain_std": gain_std, "gain_ci95": [low, high],
            "per_class_gain": {n: statistics.fmean(s["per_class_accuracy"][n] - b["per_class_accuracy"][n]
                                                   for b, s in zip(base, synth)) for n in names},
        })
    cas = [x["accuracy"] for x in runs if x["arm"] == "cas"]
    info = {"classes": list(names), "num_test": len(test_images), "train_split": train_split,
            "test_split": test_split, "real_per_class": ks, "synthetic_per_class": m, "repeats": repeats,
            "steps": steps, "batch_size": batch_size, "crop_scale": crop_scale, "seed": seed,
            "classifier": {k: v for k, v in recipe.items() if k != "class_names"},
            "chance": 1 / len(names), "classifiers_trained": len(runs),
            "seconds": round(time.perf_counter() - wall, 1), "cpu_seconds": round(time.process_time() - cpu, 1)}
    return {"per_k": per_k, "cas": {"mean": statistics.fmean(cas), "std": statistics.stdev(cas), "runs": cas},
            "runs": runs, "info": info}


def gain_table(results: dict) -> str:
    """The per-k summary as a markdown table (it reads in a terminal too), CAS and chance below it."""
    m = results["info"]["synthetic_per_class"]
    lines = [f"| real / class | real only | real + {m} synthetic / class | gain (95 % CI) | best / worst class |",
             "|---|---|---|---|---|"]
    for row in results["per_k"]:
        low, high = row["gain_ci95"]
        ranked = sorted(row["per_class_gain"].items(), key=lambda kv: kv[1])
        lines.append(f"| {row['real_per_class']} | {row['baseline_mean']:.3f} ± {row['baseline_std']:.3f} | "
                     f"{row['synthetic_mean']:.3f} ± {row['synthetic_std']:.3f} | {row['gain_mean']:+.3f} "
                     f"[{low:+.3f}, {high:+.3f}] | {ranked[-1][0]} {ranked[-1][1]:+.2f} / "
                     f"{ranked[0][0]} {ranked[0][1]:+.2f} |")
    info = results["info"]
    lines.append(f"\nCAS ({m} synthetic / class only): {results['cas']['mean']:.3f} ± {results['cas']['std']:.3f}; "
                 f"chance {info['chance']:.3f}. Mean ± std over {info['repeats']} repeats, {info['num_test']} real "
                 f"{info['test_split']} scenes, {info['steps']} steps × {info['batch_size']} per classifier.")
    return "\n".join(lines)


def plot_gain(results: dict, path: str | Path, title: str = "") -> None:
    """Test accuracy against k, both arms (mean ± std over repeats), CAS and chance; a PNG written atomically."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    ks = [row["real_per_class"] for row in results["per_k"]]
    figure = Figure(figsize=(6, 4), dpi=120)
    ax = figure.add_subplot()
    for arm, label in (("baseline", "real only"),
                       ("synthetic", f"real + {results['info']['synthetic_per_class']} synthetic / class")):
        ax.errorbar(ks, [row[f"{arm}_mean"] for row in results["per_k"]],
                    yerr=[row[f"{arm}_std"] for row in results["per_k"]], marker="o", capsize=4, label=label)
    cas = results["cas"]
    ax.axhline(cas["mean"], color="tab:green", linestyle="--", label=f"synthetic only (CAS) {cas['mean']:.2f}")
    ax.axhline(results["info"]["chance"], color="grey", linestyle=":", label="chance")
    ax.set(xscale="log", xticks=ks, xticklabels=[str(k) for k in ks], xlabel="real train scenes per class",
           ylabel=f"accuracy on real {results['info']['test_split']} scenes", ylim=(0, None), title=title)
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=f"mean ± std over {results['info']['repeats']} repeats", title_fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": PLOT_SOFTWARE})  # so a rerun may replace it


PLOT_SOFTWARE = "rsgan_hub evaluate"


def written_by_evaluate(path: str | Path) -> bool:
    """Whether `path` is a results JSON or a plot that `rsgan evaluate` wrote (so a rerun may replace it)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as image:
                return getattr(image, "text", {}).get("Software") == PLOT_SOFTWARE
        results = json.loads(path.read_text())
        return isinstance(results, dict) and isinstance(results.get("info"), dict)
    except Exception:  # unreadable, not JSON, not an image: not ours
        return False


def update_card_gain(model_dir: str | Path, results: dict, dataset: str) -> Path:
    """Put the table into `model_dir/README.md` as an "Augmentation gain" section (other sections kept)."""
    path = Path(model_dir) / "README.md"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model card to update (save the model with save_pretrained first)")
    card = ModelCard.load(path)
    section = (f"\n## Augmentation gain\n\nMeasured with `rsgan evaluate --augmentation-gain` on `{dataset}`: a "
               f"classifier trained on k real scenes per class, with and without generated ones, tested on "
               f"the real {results['info']['test_split']} split.\n\n{gain_table(results)}\n")
    card.text = put_section(card.text, "Augmentation gain", section)
    with atomic_path(path) as tmp:
        card.save(tmp)
    return path
