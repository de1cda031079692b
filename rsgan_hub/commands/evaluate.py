"""`rsgan evaluate`: score a DCGAN generator on a scene split or a pix2pix generator on a paired split;
print a table beside the baseline, write the JSON, optionally put the numbers in the model card."""

from __future__ import annotations

import argparse
from pathlib import Path


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
                   help="scenes: real split scored against --split as the floor ('none' to skip; default train)")
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
    p.add_argument("--update-card", action="store_true",
                   help="write the numbers into the model folder's README.md as model-index metadata")
    p.add_argument("--dataset-name", default=None, help="how the card names the dataset (default: --dataset)")
    return p


def run(args: argparse.Namespace) -> None:
    from ..cli import UserError
    from ..evaluation import (evaluate_scene_generator, evaluate_translator, format_table, update_model_card,
                              write_results)
    from ..models import DCGANGenerator, Pix2PixGenerator
    from ..models.hub import _read_config

    if args.num_images < 2:
        raise UserError(f"--num-images must be >= 2, got {args.num_images}")
    if args.update_card and not Path(args.model).is_dir():
        raise UserError("--update-card writes README.md in a local model folder; --model is not one")
    kind = _read_config(str(args.model), {}).get("model_class")
    if kind == "DCGANGenerator":
        model = DCGANGenerator.from_pretrained(args.model)
        reference = None if args.reference_split.lower() == "none" else args.reference_split
        results = evaluate_scene_generator(model, args.dataset, args.split, args.num_images, reference,
                                           args.features, args.classifier, args.cas, args.cas_epochs,
                                           seed=args.seed)
    elif kind == "Pix2PixGenerator":
        model = Pix2PixGenerator.from_pretrained(args.model)
        results = evaluate_translator(model, args.dataset, args.split, args.direction, args.features,
                                      args.classifier, args.max_pairs, seed=args.seed)
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
