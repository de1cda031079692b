"""pix2pix recipe study at equal CPU budget, satellite -> map or (`--direction map2sat`) map -> satellite:
each candidate trains with `train/pix2pix.py` for the same CPU-minutes (one thread each, this process's
CPU time, data decoding included: fair when runs share the cores), saving its generator at every budget
mark; each snapshot is scored with `rsgan evaluate` on a validation band of tile rows carved from the
train split (never the test rows), and a table (markdown), a plot of the main metric (legend mIoU; L1
for map2sat) against budget and each candidate's translation of the drawn example
(`examples/drawn_scene.png` or `drawn_map.png`: the Mumbai imagery has no licence to show) are written.

    rsgan dataset pairs <mumbai_train with tile rows 30-37 left out> --test-rows 26:30 --out /tmp/p2p/study
    python bench/pix2pix_recipes.py --data /tmp/p2p/study --work /tmp/p2p/runs          # ~45 min on 2 cores
    python bench/pix2pix_recipes.py --data /tmp/p2p/study --work /tmp/p2p/runs --report-only --figures bench/figures
    python bench/pix2pix_recipes.py --direction map2sat --data /tmp/p2p/study --work /tmp/m2s/runs --minutes 5 10

The study dataset's "test" split is the validation band (rows 26-29 of the Mumbai grid); its "train"
split is every other row above 30. The shipped models' test rows (30-37) are not in it at all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = {  # name: (what it tests, extra train/pix2pix.py flags)
    "rgb": ("the shipped recipe: RGB through tanh, 100 x L1 + GAN", []),
    "legend": ("legend classes: 10 x class-weighted cross-entropy + GAN on the palette rendering", ["--legend"]),
    "legend-ce": ("legend classes, cross-entropy only (no discriminator: more steps)", ["--legend", "--lambda_gan", "0"]),
    "legend-b4": ("legend classes + GAN, 4 pairs per step", ["--legend", "--train_batch_size", "4"]),
    "legend-ce-dihedral": ("legend-ce with the 8 symmetries of the square as augmentation (8x the pairs)",
                           ["--legend", "--lambda_gan", "0", "--dihedral"]),
    "legend-ce-dice": ("legend-ce + 5 x soft Dice (each present class counts equally: aimed at IoU and thin roads)",
                       ["--legend", "--lambda_gan", "0", "--lambda_dice", "5"]),
}
MAP2SAT_CANDIDATES = {  # map -> satellite: the paper's L1 + GAN throughout
    "rgb": ("the shipped recipe: 1 pair per step, transposed-conv decoder", []),
    "b4": ("4 pairs per step", ["--train_batch_size", "4"]),
    "b4-lr": ("4 pairs per step, learning rate 4e-4", ["--train_batch_size", "4", "--learning_rate", "4e-4"]),
    "resize-b4": ("4 pairs per step, nearest resize + 3x3 conv decoder",
                  ["--train_batch_size", "4", "--upsample", "resize"]),
    # The L1 / GAN balance (the shipped resize-b4 is 100 x L1 + 1 x GAN): L1 and SSIM reward a blur,
    # FID rewards texture; these move the weight towards L1.
    "resize-b4-gan0.3": ("resize-b4, GAN weight 0.3", ["--train_batch_size", "4", "--upsample", "resize",
                                                       "--lambda_gan", "0.3"]),
    "resize-b4-gan0.1": ("resize-b4, GAN weight 0.1", ["--train_batch_size", "4", "--upsample", "resize",
                                                       "--lambda_gan", "0.1"]),
    "resize-b4-l1": ("resize-b4, L1 only (no discriminator)", ["--train_batch_size", "4", "--upsample", "resize",
                                                               "--lambda_gan", "0"]),
    # An SSIM term (Zhao et al. 2017's L1 + SSIM) beside the GAN: can structure be bought without the blur?
    "resize-b4-ssim": ("resize-b4 + 100 x (1 - SSIM)", ["--train_batch_size", "4", "--upsample", "resize",
                                                       "--lambda_ssim", "100"]),
    "resize-b4-gan0.3-ssim": ("resize-b4, GAN weight 0.3, + 100 x (1 - SSIM)",
                              ["--train_batch_size", "4", "--upsample", "resize", "--lambda_gan", "0.3",
                               "--lambda_ssim", "100"]),
}
COMMON = ["--base_channels", "32", "--discriminator_channels", "32"]  # the shipped model's widths
KEYS = {"sat2map": ["legend_miou", "nonbg_legend_acc", "iou_building", "iou_road", "iou_water", "pixel_acc_16"],
        "map2sat": ["l1", "ssim", "fid", "kid_mean", "psnr"]}
BASELINE = {"sat2map": "constant background", "map2sat": "blurred legend-mean satellite"}


def train(names: list[str], data: str, work: Path, minutes: list[float], direction: str) -> None:
    """Run the candidates side by side, one thread each, until the largest budget mark."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    marks = ",".join(f"{m:g}" for m in minutes[:-1])
    procs = []
    for name in names:
        cmd = [sys.executable, str(ROOT / "train/pix2pix.py"), "--dataset", data, "--direction", direction,
               "--output_dir", str(work / name), "--max_train_steps", "10000000", "--validation_split", "test",
               "--max_train_minutes", f"{minutes[-1]:g}", "--budget_clock", "cpu", "--snapshot_minutes", marks,
               "--sample_every", "500", "--checkpointing_steps", "10000000", "--dataloader_num_workers", "0",
               "--report_to", "none", *COMMON, *candidates(direction)[name][1]]
        log = open(work / f"{name}.log", "w")
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    for p in procs:
        if p.wait():
            raise SystemExit(f"a candidate failed: see {work}/*.log")


def candidates(direction: str) -> dict:
    return CANDIDATES if direction == "sat2map" else MAP2SAT_CANDIDATES


def snapshot(work: Path, name: str, minute: float, minutes: list[float]) -> Path:
    """The generator of `name` at `minute`: a snapshot folder, or the release at the last mark."""
    return work / name if minute == minutes[-1] else work / name / f"snapshot-{minute:g}min"


def evaluate(names: list[str], data: str, work: Path, minutes: list[float]) -> None:
    for name in names:
        for minute in minutes:
            out = work / "eval" / f"{name}-{minute:g}.json"
            if not out.is_file():
                out.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run([sys.executable, "-m", "rsgan_hub", "evaluate", "--model",
                                str(snapshot(work, name, minute, minutes)), "--dataset", data, "--split", "test",
                                "--out", str(out)], check=True)


def steps_of(run: Path) -> int:
    """Optimizer steps the run took (its loss log's last step)."""
    lines = (run / "losses.csv").read_text().splitlines()
    return int(lines[-1].split(",")[0]) if len(lines) > 1 else 0


PRIMARY = {"sat2map": ("legend_miou", "mIoU", "legend mIoU (validation rows)"),
           "map2sat": ("l1", "L1", "L1 to the real tile, 0-255 (validation rows)")}
FIGURES = {"sat2map": ("pix2pix_recipes_miou.png", "pix2pix_recipes_samples.png", "drawn_scene.png"),
           "map2sat": ("map2sat_recipes_l1.png", "map2sat_recipes_samples.png", "drawn_map.png")}


def report(names: list[str], work: Path, minutes: list[float], figures: Path | None, direction: str = "sat2map",
           figure_tag: str = "") -> str:
    results = {(n, m): json.loads((work / "eval" / f"{n}-{m:g}.json").read_text()) for n in names for m in minutes}
    key, short, _ = PRIMARY[direction]
    rest = [k for k in KEYS[direction] if k != key]
    head = ["candidate", "steps"] + [f"{short}@{m:g}" for m in minutes] + rest
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(metrics: dict) -> list[str]:
        return [f"{metrics[k]:.3f}" if metrics.get(k) is not None else "-" for k in rest]

    for n in names:
        lines.append("| " + " | ".join([f"`{n}`", str(steps_of(work / n))]
                                       + [f"{results[(n, m)][key]:.3f}" for m in minutes]
                                       + cells(results[(n, minutes[-1])])) + " |")
    base = results[(names[0], minutes[-1])]["baseline"]
    lines.append(f"| {BASELINE[direction]} | - | " + " | ".join([f"{base[key]:.3f}"] * len(minutes)) + " | "
                 + " | ".join(cells(base)) + " |")
    if figures is not None:
        figures.mkdir(parents=True, exist_ok=True)
        plot_name, strip_name, example = FIGURES[direction]
        if figure_tag:  # a later study's figures beside the first's: map2sat_recipes_<tag>_l1.png
            plot_name, strip_name = (n.replace("_recipes_", f"_recipes_{figure_tag}_") for n in (plot_name, strip_name))
        plot(results, names, minutes, figures / plot_name, direction)
        sample_strip(names, work, figures / strip_name, example)
    return "\n".join(lines)


def plot(results: dict, names: list[str], minutes: list[float], path: Path, direction: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key, _, label = PRIMARY[direction]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for n in names:
        ax.plot(minutes, [results[(n, m)][key] for m in minutes], marker="o", label=n)
    ax.axhline(results[(names[0], minutes[-1])]["baseline"][key], color="grey", ls="--", label=BASELINE[direction])
    ax.set_xlabel("CPU-minutes of training (one thread)")
    ax.set_ylabel(label)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def sample_strip(names: list[str], work: Path, path: Path, example: str) -> None:
    """The drawn example (scene or map), then each candidate's translation of it (fp32), side by side, labelled."""
    from PIL import Image, ImageDraw

    from rsgan_hub import Pix2PixGenerator, translate_image

    source = Image.open(ROOT / "examples" / example).convert("RGB")
    tiles = [(f"drawn {Path(example).stem.split('_')[1]}", source)] + [
        (n, translate_image(Pix2PixGenerator.from_pretrained(work / n), source, precision="fp32")) for n in names]
    side, label = 256, 18
    strip = Image.new("RGB", (len(tiles) * (side + 4), side + label), "white")
    draw = ImageDraw.Draw(strip)
    for i, (name, image) in enumerate(tiles):
        strip.paste(image.resize((side, side), Image.Resampling.LANCZOS), (i * (side + 4), label))
        draw.text((i * (side + 4) + 4, 3), name, fill="black")
    strip.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="paired dataset whose 'test' split is the validation band")
    parser.add_argument("--work", required=True, type=Path, help="runs, snapshots and evaluations (outside the repo)")
    parser.add_argument("--direction", choices=["sat2map", "map2sat"], default="sat2map")
    parser.add_argument("--candidates", nargs="+", default=None,
                        help=f"sat2map: {', '.join(CANDIDATES)}; map2sat: {', '.join(MAP2SAT_CANDIDATES)} (default: all)")
    parser.add_argument("--minutes", nargs="+", type=float, default=[5, 10, 20], help="budget marks (CPU-minutes)")
    parser.add_argument("--report-only", action="store_true", help="only the table (and --figures) from the evaluations")
    parser.add_argument("--figures", type=Path, default=None, help="write the plot here")
    parser.add_argument("--figure-tag", default="", help="put TAG in the figures' names (a later study beside the first)")
    args = parser.parse_args()
    known = candidates(args.direction)
    args.candidates = args.candidates or list(known)
    unknown = sorted(set(args.candidates) - set(known))
    if unknown:
        parser.error(f"unknown {args.direction} candidates {unknown}; known: {', '.join(known)}")
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        train(args.candidates, args.data, args.work, args.minutes, args.direction)
        evaluate(args.candidates, args.data, args.work, args.minutes)
    print(report(args.candidates, args.work, args.minutes, args.figures, args.direction, args.figure_tag))


if __name__ == "__main__":
    main()
