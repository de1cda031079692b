"""`rsgan evaluate`: score a DCGAN generator on a scene split or a pix2pix generator on a paired split;
print a table beside the baseline, write the JSON, optionally put the numbers in the model card.
`--augmentation-gain` measures instead whether a conditional DCGAN's scenes help a classifier trained on
few real ones (`evaluation/augmentation.py`): a table, the JSON of every run and a plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_overwrite, prepare_output


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate", help="score a generator (FID/KID/SWD/precision/recall, or translation metrics)",
        description="DCGAN generators: FID, KID, SWD, precision and recall in a remote-sensing feature space "
                    "(plus class accuracy and CAS for conditional models), beside real-versus-real scores. "
                    "pix2pix generators: pixel accuracy / legend mIoU / RMSE (sat2map) or L1 / PSNR / SSIM / "
                    "FID / KID (map2sat), beside a trivial baseline.")
    p.add_argument("--model", required=True, help="a saved model folder or a Hub repo id")
    p.add_argument("--dataset", required=True,
                   help="Hub dataset id, `rsgan dataset` folder, or raw folder (class tree / side-by-side pairs)")
    p.add_argument("--split", default="test", help="split to evaluate on (default test)")
    p.add_argument("--out", required=True, help="results JSON file (written atomically)")
    p.add_argument("--num-images", type=int, default=2000, help="generated scenes (default 2000)")
    p.add_argument("--reference-split", default="train",
                   help="real split scored against --split as the floor of FID/KID (scenes; map2sat: as many real "
                        "satellite tiles); 'none' to skip; default train; with --augmentation-gain, the split "
                        "the real subsets are drawn from")
    p.add_argument("--features", choices=["classifier", "inception"], default="classifier",
                   help="feature space of FID/KID/precision/recall (default: the shipped scene classifier)")
    p.add_argument("--classifier", default=None, help="another SceneClassifier folder or repo id")
    p.add_argument("--no-cas", dest="cas", action="store_false",
                   help="conditional scenes: skip the classification accuracy score (it trains two classifiers)")
    p.add_argument("--cas-epochs", type=int, default=10, help="epochs of each CAS classifier (default 10)")
    p.add_argument("--direction", choices=["sat2map", "map2sat"], default=None,
                   help="pix2pix: override the direction recorded in the model")
    p.add_argument("--max-pairs", type=int, default=None, help="pix2pix: score only the first N pairs")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated scenes and of the metric sampling")
    gain = p.add_argument_group("augmentation gain (conditional DCGANs)")
    gain.add_argument("--augmentation-gain", action="store_true",
                      help="train classifiers on k real scenes per class with and without generated ones; test "
                           "both on --split")
    gain.add_argument("--real-per-class", default=None, help="comma-separated k values (default 5,10,25,50)")
    gain.add_argument("--synthetic-per-class", type=int, default=None,
                      help="generated scenes per class added (default 100)")
    gain.add_argument("--repeats", type=int, default=None, help="subsets and seeds per k (default 3)")
    gain.add_argument("--classifier-steps", type=int, default=None,
                      help="optimiser steps of every classifier, batch 64 (default 300)")
    gain.add_argument("--plot", default=None, help="PNG of accuracy against k (default: --out with .png)")
    gain.add_argument("--quick", action="store_true",
                      help="a smoke run: k 5, 10 synthetic per class, 2 repeats, 20 steps (explicit flags win)")
    p.add_argument("--update-card", action="store_true",
                   help="write the numbers into the model folder's README.md as model-index metadata")
    p.add_argument("--dataset-name", default=None, help="how the card names the dataset (default: --dataset)")
    add_overwrite(p)
    return p


def run(args: argparse.Namespace) -> None:
    from ..cli import UserError
    from ..evaluation import (evaluate_scene_generator, evaluate_translator, format_table, update_model_card,
                              write_results)
    from ..models import DCGANGenerator, Pix2PixGenerator
    from ..evaluation.augmentation import written_by_evaluate
    from ..models.hub import _read_config

    if args.num_images < 2:
        raise UserError(f"--num-images must be >= 2, got {args.num_images}")
    if args.update_card and not Path(args.model).is_dir():
        raise UserError("--update-card writes README.md in a local model folder; --model is not one")
    # the output rule: --out (and the plot) never replace an input or a file rsgan evaluate did not write
    inputs = {"the model folder": args.model, "the dataset": args.dataset, "the classifier": args.classifier}
    outputs = [args.out] + ([args.plot or Path(args.out).with_suffix(".png")] if args.augmentation_gain else [])
    for out in outputs:
        prepare_output(out, inputs, args.overwrite, folder=False, ours=written_by_evaluate)
    kind = _read_config(str(args.model), {}).get("model_class")
    if args.augmentation_gain:
        if kind != "DCGANGenerator":
            raise UserError(f"{args.model} holds a {kind or 'model of unknown class'}; --augmentation-gain needs a "
                            "class-conditional DCGANGenerator")
        return run_gain(args, DCGANGenerator.from_pretrained(args.model))
    reference = None if args.reference_split.lower() == "none" else args.reference_split
    if kind == "DCGANGenerator":
        model = DCGANGenerator.from_pretrained(args.model)
        results = evaluate_scene_generator(model, args.dataset, args.split, args.num_images, reference,
                                           args.features, args.classifier, args.cas, args.cas_epochs,
                                           seed=args.seed)
    elif kind == "Pix2PixGenerator":
        model = Pix2PixGenerator.from_pretrained(args.model)
        results = evaluate_translator(model, args.dataset, args.split, args.direction, args.features,
                                      args.classifier, args.max_pairs, seed=args.seed, reference_split=reference)
    else:
        raise UserError(f"{args.model} holds a {kind or 'model of unknown class'}; rsgan evaluate scores "
                        "DCGANGenerator and Pix2PixGenerator models")
    info = results["info"]
    print(format_table(results, f"{args.model} on {args.dataset} ({args.split}): {info['seconds']} s, "
                                f"{info['cpu_seconds']} CPU s"))
    write_results(results, args.out)
    print(f"wrote {args.out}")
    if args.update_card:
        card = update_model_card(args.model, results, args.dataset_name or args.dataset, args.split)
        print(f"updated {card}")


QUICK = {"real_per_class": "5", "synthetic_per_class": 10, "repeats": 2, "classifier_steps": 20}
DEFAULTS = {"real_per_class": "5,10,25,50", "synthetic_per_class": 100, "repeats": 3, "classifier_steps": 300}


def run_gain(args: argparse.Namespace, generator) -> None:
    from ..cli import UserError
    from ..evaluation import augmentation_gain, gain_table, plot_gain, update_card_gain, write_results

    # explicit flags, then --quick, then the defaults
    options = {k: v if getattr(args, k) is None else getattr(args, k)
               for k, v in (QUICK if args.quick else DEFAULTS).items()}
    try:
        ks = [int(k) for k in str(options["real_per_class"]).split(",") if k.strip()]
    except ValueError:
        raise UserError(f"--real-per-class takes comma-separated integers, got {options['real_per_class']!r}")
    plot = Path(args.plot) if args.plot else Path(args.out).with_suffix(".png")
    results = augmentation_gain(generator, args.dataset, ks, options["synthetic_per_class"], options["repeats"],
                                options["classifier_steps"], classifier=args.classifier,
                                train_split=args.reference_split, test_split=args.split, seed=args.seed)
    info = results["info"]
    print(f"{args.model} on {args.dataset}: {info['classifiers_trained']} classifiers in {info['seconds']} s "
          f"({info['cpu_seconds']} CPU s)\n{gain_table(results)}")
    write_results(results, args.out)
    plot_gain(results, plot, f"{Path(args.model).name}: augmentation gain")
    print(f"wrote {args.out} and {plot}")
    if args.update_card:
        print(f"updated {update_card_gain(args.model, results, args.dataset_name or args.dataset)}")
