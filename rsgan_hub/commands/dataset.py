"""`rsgan dataset scenes|pairs`: raw downloads -> a Hugging Face dataset folder (save_to_disk + parquet
shards + dataset card), optionally pushed to the Hub with `DatasetDict.push_to_hub`."""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path

from . import add_overwrite, prepare_output
from ..io import first_line

# Citations of the sources people convert, recognised from the source folder's name.
KNOWN_SOURCES = [
    (r"rsi-?cb", "RSI-CB", "@article{li2020rsicb,\n  title={RSI-CB: A Large-Scale Remote Sensing Image Classification "
     "Benchmark Using Crowdsourced Data},\n  author={Li, Haifeng and Dou, Xin and Tao, Chao and Wu, Zhixiang and Chen, "
     "Jie and Peng, Jian and Deng, Min and Zhao, Ling},\n  journal={Sensors},\n  volume={20},\n  number={6},\n  "
     "pages={1594},\n  year={2020}\n}"),
    (r"(^|[^a-z])aid([^a-z]|$)", "AID", "@article{xia2017aid,\n  title={AID: A Benchmark Data Set for Performance "
     "Evaluation of Aerial Scene Classification},\n  author={Xia, Gui-Song and Hu, Jingwen and Hu, Fan and Shi, "
     "Baoguang and Bai, Xiang and Zhong, Yanfei and Zhang, Liangpei and Lu, Xiaoqiang},\n  journal={IEEE Transactions "
     "on Geoscience and Remote Sensing},\n  volume={55},\n  number={7},\n  pages={3965--3981},\n  year={2017}\n}"),
    (r"uc-?merced|ucm", "UC Merced Land Use", "@inproceedings{yang2010bag,\n  title={Bag-of-visual-words and spatial "
     "extensions for land-use classification},\n  author={Yang, Yi and Newsam, Shawn},\n  booktitle={ACM SIGSPATIAL "
     "GIS},\n  pages={270--279},\n  year={2010}\n}"),
]
PIX2PIX_CITATION = ("@inproceedings{isola2017image,\n  title={Image-to-Image Translation with Conditional Adversarial "
                    "Networks},\n  author={Isola, Phillip and Zhu, Jun-Yan and Zhou, Tinghui and Efros, Alexei A},\n  "
                    "booktitle={CVPR},\n  year={2017}\n}")
MAX_SHARD_BYTES = 500 * 2**20


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("dataset", help="turn raw scene folders or satellite/map pairs into a Hugging Face dataset",
                       description="Convert raw downloads into a datasets.DatasetDict folder (save_to_disk, "
                                   "parquet shards under data/, README.md dataset card).")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("src", help="the raw folder")
    common.add_argument("--out", required=True, help="output folder (written elsewhere, moved into place when complete; "
                                                     "replaces only a folder rsgan wrote)")
    add_overwrite(common)
    common.add_argument("--num-proc", type=int, default=min(2, os.cpu_count() or 1),
                        help="worker processes for decoding (default: up to 2)")
    common.add_argument("--citation", default=None, help="BibTeX of the source, or a file holding it, for the card")
    common.add_argument("--license", default="other", help="licence id of the source images for the card (default other)")
    common.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="also push to this Hub dataset repo")

    s = kinds.add_parser("scenes", parents=[common], help="class-per-folder scenes (RSI-CB, AID, UC Merced, ...)",
                         description="SRC is class/*.jpg|png|tif (AID, UC Merced) or category/class/*.tif (RSI-CB).")
    s.add_argument("--test-fraction", type=float, default=0.1, help="test share of each class (default 0.1)")
    s.add_argument("--seed", type=int, default=0, help="seed of the stratified split (default 0)")

    q = kinds.add_parser("pairs", parents=[common], help="satellite/map pairs (side-by-side JPEGs or two rasters)",
                         description="side-by-side: SRC holds satellite|map JPEGs (or train/ val/ test/ folders "
                                     "of them). two-rasters: SRC holds a *sat* and a *map* raster of the same size.")
    q.add_argument("--layout", choices=["side-by-side", "two-rasters"], default="side-by-side")
    q.add_argument("--satellite-side", choices=["left", "right"], default="left",
                   help="which half of a side-by-side image is the satellite image (default left)")
    q.add_argument("--tile", type=int, default=256, help="tile size for two-rasters (default 256)")
    q.add_argument("--test-rows", default=None, metavar="A:B",
                   help="tile rows A..B-1 form the test split (a spatial hold-out; rasters, or _ROW_COL file names)")
    return p


def run(args: argparse.Namespace) -> None:
    from ..cli import UserError
    from ..data import build_pair_dataset, build_scene_dataset, summarize_skipped
    from ..io import scratch_dir

    src = Path(args.src)
    if not src.is_dir():
        raise UserError(f"{src}: no such folder")
    out = prepare_output(args.out, {"the source folder": src, "the citation file": args.citation}, args.overwrite)
    # the Arrow files are generated in a scratch folder on the same disk, then saved into --out
    with scratch_dir(out) as cache:
        if args.kind == "scenes":
            dsdict, skipped = build_scene_dataset(src, args.test_fraction, args.seed, args.num_proc, str(cache))
        else:
            dsdict, skipped = build_pair_dataset(src, args.layout, args.satellite_side, args.tile, args.test_rows,
                                                 args.num_proc, str(cache))
        card = dataset_card(args, dsdict, skipped)
        write_dataset(dsdict, out, card, f"rsgan dataset {args.kind}", args.overwrite)
    counts = ", ".join(f"{split} {len(ds)}" for split, ds in dsdict.items())
    print(f"wrote {out}: {counts}; {summarize_skipped(skipped)}")
    if args.push_to_hub:
        push_dataset(dsdict, args.push_to_hub, card)
        print(f"pushed to https://huggingface.co/datasets/{args.push_to_hub}")


def write_dataset(dsdict, out: Path, card: str, command: str = "rsgan dataset", overwrite: bool = False) -> None:
    """save_to_disk + data/{split}-NNNNN-of-NNNNN.parquet + README.md, all moved into `out` at once
    (an existing `out` is replaced only if rsgan wrote it, or with `overwrite`)."""
    from ..io import atomic_dir

    with atomic_dir(out, command, overwrite) as tmp:
        dsdict.save_to_disk(str(tmp))
        for split, ds in dsdict.items():
            num_shards = max(1, math.ceil(ds.data.nbytes / MAX_SHARD_BYTES))
            for i in range(num_shards):
                shard = ds.shard(num_shards, i, contiguous=True)
                shard.to_parquet(str(tmp / "data" / f"{split}-{i:05d}-of-{num_shards:05d}.parquet"))
        (tmp / "README.md").write_text(card, encoding="utf-8")


def push_dataset(dsdict, repo_id: str, card: str) -> None:
    """The card goes first; `DatasetDict.push_to_hub` then adds its parquet files and metadata to it."""
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
        api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo_id, repo_type="dataset")
        dsdict.push_to_hub(repo_id)
    except Exception as err:  # network / auth errors come in many types; the local dataset is already complete
        raise OSError(f"push to {repo_id} failed (the local dataset is complete): "
                      f"{first_line(err, with_type=True)}") from err


def _citation(args, src_name: str) -> tuple[str | None, str | None]:
    if args.citation:
        path = Path(args.citation)
        return None, path.read_text() if path.is_file() else args.citation
    for pattern, name, bibtex in KNOWN_SOURCES:
        if re.search(pattern, src_name.lower()):
            return name, bibtex
    return None, None


def dataset_card(args, dsdict, skipped: dict[str, list[str]]) -> str:
    """README.md: YAML metadata (licence, task, configs for the parquet shards) and counts, source,
    citation, licence note and how to load."""
    from huggingface_hub import DatasetCardData

    from ..data import summarize_skipped

    src_name = Path(args.src).resolve().name
    source_name, citation = _citation(args, src_name)
    name = Path(args.out).resolve().name
    total = sum(len(ds) for ds in dsdict.values())
    size = next(c for n, c in [(1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"),
                               (float("inf"), "n>1M")] if total < n)
    scenes = args.kind == "scenes"
    meta = DatasetCardData(
        license=args.license, pretty_name=name, size_categories=[size],
        task_categories=["image-classification", "unconditional-image-generation"] if scenes else ["image-to-image"],
        tags=["remote-sensing", "satellite-imagery", "rsgan_hub"] + ([] if scenes else ["pix2pix", "maps"]),
        configs=[{"config_name": "default",
                  "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in dsdict]}])
    first = next(iter(dsdict.values()))
    columns = ", ".join(f"`{c}` ({type(f).__name__})" for c, f in first.features.items())
    lines = [f"---\n{meta.to_yaml()}\n---\n", f"# {name}\n",
             f"Converted with `rsgan dataset {args.kind}` (rsgan_hub) from the folder `{src_name}`"
             + (f", which looks like **{source_name}**." if source_name else ".")
             + f" {total} examples; columns: {columns}. Pixels are 8-bit RGB.\n"]
    lines += ["## Counts\n"] + (_class_table(dsdict) if scenes and "label" in first.features else
                                ["| split | examples |", "|---|---|"] + [f"| {s} | {len(d)} |" for s, d in dsdict.items()])
    if not scenes:
        if args.layout == "two-rasters":
            lines.append(f"\nTiles of {args.tile}×{args.tile} px cut from two co-registered rasters; `row`/`col` give "
                         "each tile's place in the grid.")
        if args.test_rows:
            lines.append(f"\n**Spatial hold-out**: tile rows {args.test_rows} (A:B, B excluded) form the test split; "
                         "no test tile overlaps a train tile (the band's edge tiles do border train tiles).")
    lines += ["\n## Conversion\n",
              f"Split: {_split_note(args, dsdict)}. "
              "Files that could not be read as 8-bit RGB were skipped: " + summarize_skipped(skipped) + ".",
              "\n## How to load\n", "```python", "from datasets import load_from_disk, load_dataset",
              f'ds = load_from_disk("{name}")       # this folder (Arrow)',
              f'ds = load_dataset("{name}")         # the parquet shards; also how a Hub copy loads',
              f"from rsgan_hub.data import {'load_scene_dataset' if scenes else 'load_pair_dataset'}",
              f"train = {'load_scene_dataset' if scenes else 'load_pair_dataset'}(\"{name}\", split=\"train\")",
              "```", "\n## Source and citation\n",
              (f"```bibtex\n{citation}\n```" if citation else
               "The source dataset was not recognised; add its citation here (`--citation`)."),
              *([] if scenes else [f"\nThe pix2pix method:\n\n```bibtex\n{PIX2PIX_CITATION}\n```"]),
              "\n## Licence\n",
              f"The images keep the licence of their source (declared here as `{args.license}`). rsgan_hub's own "
              "licence does not cover them: check the source's terms before redistributing or pushing this dataset."]
    return "\n".join(lines) + "\n"


def _split_note(args, dsdict) -> str:
    if args.kind == "scenes":
        return f"stratified per class, {args.test_fraction} of each class in test, seed {args.seed}"
    if args.test_rows:
        return f"tile rows {args.test_rows} are the test split, the rest train (spatial hold-out)"
    return "the source's own split folders" if len(dsdict) > 1 or "train" not in dsdict else "train only"


def _class_table(dsdict) -> list[str]:
    first = next(iter(dsdict.values()))
    names = first.features["label"].names
    counts = {s: [0] * len(names) for s in dsdict}
    categories = {}
    for split, ds in dsdict.items():
        labels = ds["label"]
        for label in labels:
            counts[split][label] += 1
        if "category" in ds.features:
            for label, category in zip(labels, ds["category"]):
                categories[names[label]] = ds.features["category"].names[category]
    splits = list(dsdict)
    head = (["category"] if categories else []) + ["class"] + splits
    rows = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    for i, name in enumerate(names):
        rows.append("| " + " | ".join(([categories.get(name, "")] if categories else []) + [name]
                                      + [str(counts[s][i]) for s in splits]) + " |")
    rows.append("| " + " | ".join(([""] if categories else []) + ["**total**"] + [str(len(dsdict[s])) for s in splits])
                + " |")
    return rows
