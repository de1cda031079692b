"""How far to take back the class weighting of a legend (sat -> map) model: post-hoc logit adjustment.

A legend model trained with class-weighted cross-entropy (`train/pix2pix.py --legend`, weights
1/sqrt(pixel share)) learns logits shifted by log(weight): it draws rare classes (roads, water) where a
calibrated model would draw background. Shifting the logits by -A x log(weight) (Menon et al. 2021)
moves that: A = 0 is the model as trained, A = 1 takes the push fully back, A < 0 pushes further (on
the Mumbai validation band, A < 0 raised building and road IoU; A > 0 lowered them). This scores each
model at each A on a split (the study's validation band: never the test rows) and prints a table;
`train/pix2pix.py --logit_adjustment A` applies the chosen A to a release.

    python bench/logit_adjustment.py --data /tmp/p2p/study --models /tmp/s2m/runs/legend-ce \\
        /tmp/s2m/runs/legend-ce-dice --adjustments 0 0.25 0.5 0.75 1 --out /tmp/s2m/adjustment.json

The class weights are recomputed from the `train` split of --data, as training computed them. To
write a release with the chosen A (a copy of the model folder - card, discriminator, history - with
the shifted weights, in the dtype they were saved in; `--out` must not exist yet):

    python bench/logit_adjustment.py --data /tmp/p2p/study --models /tmp/long_s2m/sat2map \\
        --apply -0.5 --out /tmp/long_s2m/sat2map-adjusted
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
from pathlib import Path

import safetensors.torch

from rsgan_hub.data import load_pair_dataset
from rsgan_hub.evaluation import evaluate_translator
from rsgan_hub.evaluation.translation import (PREDICTED_CLASSES, describe_class_weights,
                                              legend_class_weights)
from rsgan_hub.io import atomic_dir
from rsgan_hub.models import Pix2PixGenerator

KEYS = ["legend_miou", "nonbg_legend_acc", "pixel_acc_16"] + [f"iou_{name}" for name in PREDICTED_CLASSES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="pairs dataset: class weights from 'train', scores on --split")
    parser.add_argument("--split", default="test", help="the split to score on (the study's validation band)")
    parser.add_argument("--models", nargs="+", required=True, help="legend model folders (or Hub ids)")
    parser.add_argument("--adjustments", nargs="+", type=float, default=[0, 0.25, 0.5, 0.75, 1])
    parser.add_argument("--out", type=Path, help="write the scores here as JSON (with --apply: the new model folder)")
    parser.add_argument("--apply", type=float, help="write the one --models folder with this A to --out instead")
    args = parser.parse_args()
    if args.apply is not None and (len(args.models) != 1 or args.out is None or args.out.exists()):
        raise SystemExit("error: --apply takes one --models folder and an --out that does not exist yet")

    weights, share = legend_class_weights(load_pair_dataset(args.data, split="train"))
    print("class weights: " + describe_class_weights(weights, share))
    if args.apply is not None:
        return apply(Path(args.models[0]), args.out, args.apply, weights)
    pairs = load_pair_dataset(args.data, split=args.split)
    results = {}
    for model in args.models:
        for adjustment in args.adjustments:
            generator = Pix2PixGenerator.from_pretrained(model)
            if not generator.predicts_classes:
                raise SystemExit(f"error: {model} predicts RGB, not legend classes")
            generator.shift_class_logits(-adjustment * weights.log())
            scores = evaluate_translator(generator, pairs, split=args.split)
            results[f"{model} A={adjustment:g}"] = {k: scores[k] for k in KEYS}
    print("| model | A | " + " | ".join(KEYS) + " |\n|" + "---|" * (len(KEYS) + 2))
    for name, scores in results.items():
        model, adjustment = name.rsplit(" A=", 1)
        print(f"| `{Path(model).name}` | {adjustment} | " + " | ".join(f"{scores[k]:.3f}" for k in KEYS) + " |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


def apply(model: Path, out: Path, adjustment: float, weights) -> None:
    """Copy the release folder `model` to `out` with its class logits shifted by -adjustment x log(weights),
    recorded as `logit_adjustment` in its training_config.json (what `train/pix2pix.py --logit_adjustment`
    does at save time). The copy is completed beside `out` and renamed into place (`atomic_dir`)."""
    flags = json.loads((model / "training_config.json").read_text())
    if flags.get("logit_adjustment"):
        raise SystemExit(f"error: {model} was already adjusted (logit_adjustment {flags['logit_adjustment']})")
    flags["logit_adjustment"] = adjustment
    offsets = -adjustment * weights.log()
    generator = Pix2PixGenerator.from_pretrained(model)
    if not generator.predicts_classes:
        raise SystemExit(f"error: {model} predicts RGB, not legend classes")
    saved_dtype = next(iter(safetensors.torch.load_file(model / "model.safetensors").values())).dtype
    generator.shift_class_logits(offsets)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so the scratch copy is removed
    with atomic_dir(out, command="bench/logit_adjustment.py") as copy:
        shutil.copytree(model, copy, ignore=shutil.ignore_patterns("checkpoint-*", "snapshot-*"), dirs_exist_ok=True)
        safetensors.torch.save_model(generator.to(saved_dtype), str(copy / "model.safetensors"))
        (copy / "training_config.json").write_text(json.dumps(flags, indent=2))
    print(f"wrote {out}: class logits shifted by " + ", ".join(f"{o:+.3f}" for o in offsets.tolist()))


if __name__ == "__main__":
    main()
