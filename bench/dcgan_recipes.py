"""DCGAN recipe study at equal CPU budget: each candidate trains with `train/dcgan.py` for the same
CPU-minutes (one thread each, this process's CPU time: fair when runs share the cores), saving its
generator at every budget mark; each snapshot is then scored with `rsgan evaluate` on a validation
split carved from the train split (never the test split), and a table (markdown), a KID-vs-budget
plot and a sample strip per candidate are written.

    python bench/dcgan_recipes.py --data ../shared/data/aid_train --work /tmp/study        # ~2 h on 2 cores
    python bench/dcgan_recipes.py --work /tmp/study --report-only --figures bench/figures  # table + figures

The validation split: the data's train split (a raw tree is split 90/10 with seed 0, as `rsgan dataset
scenes`) split again 90/10, stratified by class, seed 0. The feature network of the metrics is the
shipped scene classifier (`rsgan evaluate`'s default); it was trained on the whole AID train split,
validation scenes included, which favours no candidate over another.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIGHT = ["--generator_channels", "128", "128", "64", "32", "16", "--discriminator_channels", "16", "32", "64", "128", "128"]
CANDIDATES = {  # name: (what it tests, extra train/dcgan.py flags)
    "default": ("the shipped recipe", []),
    "dihedral": ("+ the 8 symmetries of the square as data augmentation", ["--dihedral"]),
    "light": ("+ dihedral, half the widths in G and D", ["--dihedral", *LIGHT]),
    "kernel3": ("+ dihedral, 3x3 kernels in G and D", ["--dihedral", "--kernel_size", "3"]),
    "batch32": ("+ dihedral, batch 32 (twice the steps)", ["--dihedral", "--train_batch_size", "32"]),
    "no-color": ("+ dihedral, DiffAugment without colour", ["--dihedral", "--diffaugment", "translation,cutout"]),
    # From scratch with bilinear resizes (the 16-px texture's fix) and/or transitional conditioning (Shahbazi et
    # al. 2022: unconditional for 100 steps, the class blended in until step 300) against recall 0.00.
    "bilinear": ("light, bilinear instead of nearest resizes", ["--dihedral", *LIGHT, "--upsample", "bilinear"]),
    "transition": ("light, transitional conditioning 100-300", ["--dihedral", *LIGHT, "--condition_transition", "100,300"]),
    "bilinear-transition": ("light, bilinear resizes and transitional conditioning 100-300",
                            ["--dihedral", *LIGHT, "--upsample", "bilinear", "--condition_transition", "100,300"]),
    # Where the border frame comes from (bench/dcgan_texture.py's frame_strength): the transition recipe
    # with G's kernels seeing replicated edges instead of zeros, or D's inputs never translated (zero fill).
    "replicate": ("transition, G padding replicated edges", ["--dihedral", *LIGHT, "--condition_transition", "100,300",
                                                            "--generator_padding", "replicate"]),
    "no-translation": ("transition, DiffAugment colour and cutout only",
                       ["--dihedral", *LIGHT, "--condition_transition", "100,300", "--diffaugment", "color,cutout"]),
    # Continuing the bundled release (light): as it is, or with bilinear instead of nearest resizes
    # (the same weights; bench/dcgan_texture.py traced its 16-px texture to the nearest-resized start grid).
    "continue": ("the bundled release, trained on", ["--init_from", str(ROOT / "pretrained/dcgan")]),
    "continue-bilinear": ("the bundled release, trained on with bilinear resizes",
                          ["--init_from", str(ROOT / "pretrained/dcgan"), "--upsample", "bilinear"]),
}
SAMPLE_CLASSES = ["Desert", "Forest", "Farmland", "DenseResidential", "Beach", "River", "Airport", "Parking"]


def make_validation_split(data: str, out: Path) -> None:
    from datasets import DatasetDict

    from rsgan_hub.data import load_scene_dataset

    if (out / "dataset_dict.json").is_file():
        return
    whole = load_scene_dataset(data, split=None)
    parts = whole["train"].train_test_split(test_size=0.1, stratify_by_column="label", seed=0)
    DatasetDict({"train": parts["train"], "validation": parts["test"], "test": whole["test"]}).save_to_disk(str(out))


def train(names: list[str], work: Path, minutes: list[float]) -> None:
    """Run the candidates side by side, one thread each, until the largest budget mark."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    marks = ",".join(f"{m:g}" for m in minutes[:-1])
    procs = []
    for name in names:
        cmd = [sys.executable, str(ROOT / "train/dcgan.py"), "--dataset", str(work / "data"), "--conditional",
               "--output_dir", str(work / "runs" / name), "--max_train_steps", "1000000",
               "--max_train_minutes", f"{minutes[-1]:g}", "--budget_clock", "cpu", "--snapshot_minutes", marks,
               "--sample_every", "1000000", "--checkpointing_steps", "1000000", "--dataloader_num_workers", "0",
               "--report_to", "none", *CANDIDATES[name][1]]
        log = open(work / "runs" / f"{name}.log", "w")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
    for proc in procs:
        if proc.wait():
            raise SystemExit(f"a training run failed: {proc.args}")


def snapshot(work: Path, name: str, minute: float, minutes: list[float]) -> Path:
    run = work / "runs" / name
    return run if minute == minutes[-1] else run / f"snapshot-{minute:g}min"


def evaluate(names: list[str], work: Path, minutes: list[float], num_images: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in names:
        for minute in minutes:
            out = work / "eval" / f"{name}-{minute:g}min.json"
            if not out.is_file():
                subprocess.run([sys.executable, "-m", "rsgan_hub", "evaluate", "--model",
                                str(snapshot(work, name, minute, minutes)), "--dataset", str(work / "data"),
                                "--split", "validation", "--reference-split", "none", "--num-images",
                                str(num_images), "--no-cas", "--out", str(out)], check=True, env=env)


def steps_of(run: Path) -> int:
    """The last step in the run's loss log."""
    import csv

    with open(run / "losses.csv") as f:
        return max(int(row[0]) for row in list(csv.reader(f))[1:])


def report(names: list[str], work: Path, minutes: list[float], figures: Path | None) -> str:
    results = {n: {m: json.loads((work / "eval" / f"{n}-{m:g}min.json").read_text()) for m in minutes}
               for n in names}
    head = " | ".join(f"KID @ {m:g} min" for m in minutes)
    lines = [f"| candidate | steps @ {minutes[-1]:g} min | {head} | FID | precision | recall | class accuracy |",
             "|---" * (6 + len(minutes)) + "|"]
    for n in names:
        last = results[n][minutes[-1]]
        kids = " | ".join(f"{results[n][m]['kid_mean']:.3f}" for m in minutes)
        lines.append(f"| {n}: {CANDIDATES[n][0]} | {steps_of(work / 'runs' / n)} | {kids} | {last['fid']:.1f} | "
                     f"{last['precision']:.2f} | {last['recall']:.3f} | {last['class_accuracy']:.3f} |")
    table = "\n".join(lines)
    if figures is not None:
        figures.mkdir(parents=True, exist_ok=True)
        plot(results, minutes, figures / "dcgan_recipes_kid.png")
        sample_strip(names, work, minutes, figures / "dcgan_recipes_samples.png")
    return table


def plot(results: dict, minutes: list[float], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rsgan_hub.io import atomic_path

    figure, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    for name, by_minute in results.items():
        ax.plot(minutes, [by_minute[m]["kid_mean"] for m in minutes], marker="o", label=name)
    ax.set(xlabel="training budget (CPU minutes, one thread)", ylabel="KID on the validation split (lower is better)",
           xticks=minutes, yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def sample_strip(names: list[str], work: Path, minutes: list[float], path: Path) -> None:
    """One row per candidate at the largest budget: seed 0 of each of SAMPLE_CLASSES, 64 px each."""
    from PIL import Image

    from rsgan_hub import DCGANGenerator, make_grid
    from rsgan_hub.io import atomic_path, label_rows
    from rsgan_hub.pipelines import generate_images

    side, scenes = 64, []
    for name in names:
        generator = DCGANGenerator.from_pretrained(snapshot(work, name, minutes[-1], minutes))
        scenes += [generate_images(generator, 1, seed=0, label=label)[0].resize((side, side), Image.Resampling.BOX)
                   for label in SAMPLE_CLASSES]
    sheet = label_rows(make_grid(scenes, columns=len(SAMPLE_CLASSES)), names, side)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/aid_train", help="scene dataset (raw tree or folder)")
    parser.add_argument("--work", type=Path, required=True, help="folder for the split, runs and scores")
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated names")
    parser.add_argument("--minutes", default="5,10", help="budget marks in CPU minutes; the last one ends each run")
    parser.add_argument("--parallel", type=int, default=2, help="candidates trained side by side")
    parser.add_argument("--num-images", type=int, default=1000, help="generated scenes per evaluation")
    parser.add_argument("--report-only", action="store_true", help="only build the table/figures from --work")
    parser.add_argument("--figures", type=Path, default=None, help="write the plot and the sample strip here")
    args = parser.parse_args()
    names = [n for n in args.candidates.split(",") if n]
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        raise SystemExit(f"error: unknown candidates {unknown}; known: {', '.join(CANDIDATES)}")
    minutes = sorted(float(m) for m in args.minutes.split(","))
    if not args.report_only:
        (args.work / "runs").mkdir(parents=True, exist_ok=True)
        (args.work / "eval").mkdir(exist_ok=True)
        make_validation_split(args.data, args.work / "data")
        for i in range(0, len(names), args.parallel):
            train(names[i:i + args.parallel], args.work, minutes)
        evaluate(names, args.work, minutes, args.num_images)
    print(report(names, args.work, minutes, args.figures))


if __name__ == "__main__":
    main()
