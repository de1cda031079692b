"""Evaluation results out: the terminal table, the JSON file, and `model-index` metadata in a model card
(huggingface_hub's `ModelCard` / `EvalResult`, the format the Hub's leaderboards and model pages read)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard

from ..io import atomic_path
from ..models.hub import is_hub_dataset_id


def card_metrics(results: dict) -> dict[str, float]:
    """The model's own finite numbers of a results dict (no baseline, no info): what a card records."""
    return {k: float(v) for k, v in results.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def reference_line(results: dict) -> str:
    """A translator's real-vs-real floor of FID/KID (map2sat with a reference split), in words; "" if none."""
    ref = results.get("reference")
    if not isinstance(ref, dict):
        return ""
    return (f"real vs real: {ref['num_images']} real {ref['split']} tiles against the real tiles score "
            f"FID {ref['fid']:.4g}, KID {ref['kid_mean']:.4g} (the floor at this sample size)")


def format_table(results: dict, title: str = "") -> str:
    """A plain-text table: metric | model | baseline."""
    baseline = results.get("baseline") or {}
    name = (results.get("info") or {}).get("baseline", "baseline")
    rows = [(k, v, baseline.get(k)) for k, v in card_metrics(results).items()]
    width = max([len(k) for k, _, _ in rows] + [6])
    lines = [title] if title else []
    lines.append(f"{'metric':<{width}}  {'model':>10}  {'baseline':>10}")
    lines += [f"{k:<{width}}  {v:>10.4f}  {'' if b is None else format(b, '>10.4f')}" for k, v, b in rows]
    lines.append(f"baseline: {name}")
    if line := reference_line(results):
        lines.append(line)
    return "\n".join(lines)


def write_results(results: dict, path: str | Path) -> None:
    """Write the results JSON atomically (NaN, e.g. a class absent from the split, becomes null)."""
    clean = json.loads(json.dumps(results, default=float).replace("NaN", "null"))
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(clean, indent=2) + "\n")


def update_model_card(model_dir: str | Path, results: dict, dataset: str, split: str) -> Path:
    """Write `results` into `model_dir/README.md`: `model-index` metadata naming `dataset` and `split`,
    and an "Evaluation" section with the model's and the baseline's numbers. Other sections are kept."""
    path = Path(model_dir) / "README.md"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model card to update (save the model with save_pretrained first)")
    card = ModelCard.load(path)
    metrics = card_metrics(results)
    if not metrics:
        raise ValueError("no numeric results to write into the model card")
    data = card.data
    data.model_name = data.model_name or Path(model_dir).resolve().name
    data.datasets = sorted(d for d in {*(data.datasets or []), dataset} if is_hub_dataset_id(d)) or None
    task = data.pipeline_tag or "image-generation"
    data.eval_results = [
        EvalResult(task_type=task, dataset_type=dataset, dataset_name=dataset, dataset_split=split,
                   metric_type=name, metric_name=name, metric_value=value)
        for name, value in metrics.items()
    ]
    baseline = results.get("baseline") or {}
    label = (results.get("info") or {}).get("baseline", "baseline")
    rows = "\n".join(f"| {k} | {v:.4g} | {'' if baseline.get(k) is None else format(baseline[k], '.4g')} |"
                     for k, v in metrics.items())
    section = (f"\n## Evaluation\n\nMeasured with `rsgan evaluate` on `{dataset}` ({split} split). Baseline: "
               f"{label}.\n\n| metric | model | baseline |\n|---|---|---|\n{rows}\n")
    if line := reference_line(results):
        section += f"\n{line[0].upper() + line[1:]}.\n"
    card.text = put_section(card.text, "Evaluation", section)
    with atomic_path(path) as tmp:
        card.save(tmp)
    return path


def put_section(text: str, heading: str, section: str) -> str:
    """`text` (a card's markdown) with its `## heading` section replaced by `section` (which starts with
    "\\n## heading\\n"), or `section` added before the closing code link of the rsgan_hub card template."""
    pattern = re.compile(rf"\n## {re.escape(heading)}\n.*?(?=\n## |\nCode: |\Z)", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: section, text, count=1)
    if "\nCode: " in text:
        return text.replace("\nCode: ", section + "\nCode: ", 1)
    return text.rstrip("\n") + "\n" + section
