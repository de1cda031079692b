"""Helpers shared by the two training scripts (`train/dcgan.py`, `train/pix2pix.py`), which follow
the layout of diffusers' example scripts (accelerator -> models -> optimizers -> data -> prepare ->
resume -> train -> save); the GAN steps themselves stay in the scripts.

* `parse_config`: a `@dataclass` config -> CLI flags, with `--preset` supplying other defaults;
* crash-safe checkpoints: `accelerator.save_state` into a hidden temporary folder that is renamed
  to `checkpoint-<step>` only once every process has written its part, so a run killed by SIGKILL
  at any moment resumes from its last *complete* checkpoint (`find_checkpoint`);
* the loss log (`losses.csv`, trimmed back on resume) and its loss-curve PNG, and sample grids.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import re
import shutil
import sys
import time
import typing
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from .io import atomic_path, make_grid, tensor_to_pil

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


# ---- configuration -------------------------------------------------------------------------------
def flag(default: Any, help: str) -> Any:
    """A config field with its one-line help; list defaults are copied per instance."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def parse_config(config_cls: type, presets: dict[str, dict[str, Any]], argv: list[str] | None = None):
    """Build argparse flags from the dataclass fields (help = the field's `help` metadata), apply
    `--preset NAME` as new defaults, then the explicit flags. Returns a `config_cls` instance."""
    parser = argparse.ArgumentParser(description=(config_cls.__doc__ or "").strip().splitlines()[0])
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        kind, help_text = hints[field.name], field.metadata.get("help", "")
        if field.name == "preset":
            parser.add_argument("--preset", default=default, choices=sorted(presets), help=help_text)
        elif kind is bool:
            parser.add_argument(f"--{field.name}", default=default, action=argparse.BooleanOptionalAction,
                                help=help_text)
        elif kind is list:
            parser.add_argument(f"--{field.name}", default=default, type=type(default[0]), nargs="+", help=help_text)
        else:
            parse = _none_or(kind) if default is None else kind
            parser.add_argument(f"--{field.name}", default=default, type=parse, help=help_text)
    preset = parser.parse_known_args(argv)[0].preset
    parser.set_defaults(**presets[preset])
    return config_cls(**vars(parser.parse_args(argv)))


def _none_or(kind: type):
    """Parse a flag value as `kind`; "none" means None (for optional settings)."""
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)
    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def save_config(config: Any, output_dir: str | os.PathLike) -> None:
    """Print the resolved config and write it to output_dir/training_config.json (atomically)."""
    resolved = dataclasses.asdict(config)
    print("training config:", json.dumps(resolved, indent=2), sep="\n", flush=True)
    with atomic_path(Path(output_dir) / "training_config.json") as tmp:
        tmp.write_text(json.dumps(resolved, indent=2))


def distributed_on_cpu() -> bool:
    """True when launched as several processes (`accelerate launch --multi_gpu`, `torchrun`) on a
    machine with no GPU: pass as `Accelerator(cpu=...)` so the processes join one gloo group.
    (Left alone, accelerate 1.15 runs each process as an independent single-process job; and
    `accelerate launch --cpu --num_processes N` needs mpirun.)"""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available()


# ---- checkpoints ---------------------------------------------------------------------------------
def save_checkpoint(accelerator, output_dir: str | os.PathLike, step: int, total_limit: int | None,
                    extra: dict | None = None) -> Path:
    """`accelerator.save_state` -> output_dir/checkpoint-<step>, complete or not at all.

    Every process writes into `.checkpoint-<step>.tmp` (models, optimizers, schedulers, EMA and its
    own RNG state; `extra` goes to training_state.json); after a barrier the main process renames it
    and deletes the oldest checkpoints beyond `total_limit`. Must be called on every process.
    """
    output_dir = Path(output_dir)
    final, tmp = output_dir / f"checkpoint-{step}", output_dir / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)  # left over by a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "training_state.json").write_text(json.dumps(extra or {}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if total_limit:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_training_state(checkpoint: Path | None) -> dict:
    """The `extra` dict saved with a checkpoint ({} for none, or for checkpoints without one)."""
    path = Path(checkpoint or "") / "training_state.json"
    return json.loads(path.read_text()) if checkpoint is not None and path.is_file() else {}


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints (`checkpoint-<step>` folders), oldest first."""
    folder = Path(output_dir)
    found = [p for p in folder.iterdir() if p.is_dir() and CHECKPOINT.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name)[1]))


def find_checkpoint(output_dir: str | os.PathLike, resume_from: str | None) -> tuple[Path | None, int]:
    """Resolve `--resume_from_checkpoint`: "latest" (None when there is none yet) or a path.
    Returns (folder, step)."""
    if not resume_from:
        return None, 0
    if resume_from == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            return None, 0
        path = found[-1]
    else:
        path = Path(resume_from)
        if not path.is_dir() or not CHECKPOINT.match(path.name):
            raise ValueError(f"--resume_from_checkpoint {resume_from}: not a checkpoint-<step> folder")
    return path, int(CHECKPOINT.match(path.name)[1])


class TrainingClock:
    """Training wall-clock time summed over resumed sessions (saved with each checkpoint), so the
    model card states the time the weights really took."""

    def __init__(self, previous: float = 0.0):
        self.previous, self.start, self.cpu_start = previous, time.time(), time.process_time()

    def session(self) -> float:
        return time.time() - self.start

    def session_minutes(self, clock: str = "wall") -> float:
        """Minutes of this session on the wall clock, or of this process's CPU time ("cpu": all its
        threads; fair between runs that share the cores)."""
        return (time.process_time() - self.cpu_start if clock == "cpu" else self.session()) / 60

    def total(self) -> float:
        return self.previous + self.session()



# ---- loss log, curves and samples ----------------------------------------------------------------
class LossLog:
    """Append-only `losses.csv` (step,name,value) in output_dir; on resume, rows after the resumed
    step are dropped so the log matches the restored state. Main process only."""

    def __init__(self, output_dir: str | os.PathLike, resume_step: int = 0):
        self.path = Path(output_dir) / "losses.csv"
        rows = self.read() if resume_step and self.path.exists() else []
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as f:
                csv.writer(f).writerows([("step", "name", "value")] + [r for r in rows if r[0] <= resume_step])

    def append(self, step: int, values: dict[str, float]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerows((step, name, f"{value:.6g}") for name, value in values.items())

    def read(self) -> list[tuple[int, str, float]]:
        with open(self.path, newline="") as f:
            return [(int(s), n, float(v)) for s, n, v in list(csv.reader(f))[1:]]

    def plot(self, path: str | os.PathLike, title: str = "") -> None:
        """One panel per loss name, raw values faint and a moving average on top."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        series = defaultdict(list)
        for step, name, value in self.read():
            series[name].append((step, value))
        names = [n for n in series if not n.startswith("lr")] or list(series)
        if not names:
            return
        fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
        for ax, name in zip(axes[0], names):
            steps, values = zip(*series[name])
            ax.plot(steps, values, alpha=0.3, linewidth=0.8)
            window = max(1, len(values) // 20)
            smooth = torch.tensor(values).unfold(0, window, 1).mean(1).tolist() if len(values) >= window else values
            ax.plot(steps[window - 1:], smooth, linewidth=1.5)
            ax.set_title(name)
            ax.set_xlabel("step")
        fig.suptitle(title)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)


def save_grid(images: torch.Tensor, path: str | os.PathLike, columns: int | None = None) -> None:
    """(N, 3, H, W) tensor in [-1, 1] -> a PNG grid, written atomically."""
    grid = make_grid([tensor_to_pil(x) for x in images], columns=columns or math.ceil(math.sqrt(len(images))))
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")


def training_markdown(config: Any, steps: int, images_seen: int, session_steps: int, seconds: float,
                      hardware: str, total_seconds: float | None = None) -> str:
    """The model card's Training section: data, steps, time, hardware and the full recipe."""
    recipe = "\n".join(f"- `{k}`: `{json.dumps(v)}`" for k, v in dataclasses.asdict(config).items())
    data = config.dataset_name or f"`{config.dataset}`"
    total = f"{total_seconds / 60:.1f} minutes of training in all; " if total_seconds is not None else ""
    return (f"Trained with `{Path(sys.argv[0]).name}` (preset `{config.preset}`) on {data} for {steps} optimizer "
            f"steps ({images_seen} training images seen), on {hardware}: {total}the last session ran "
            f"{session_steps} of the steps in {seconds / 60:.1f} minutes.\n\nFull configuration:\n\n{recipe}")
