"""The machinery shared by the two training scripts (`train/dcgan.py`, `train/pix2pix.py`), which
follow the layout of diffusers' example scripts (flags -> accelerator -> data -> models ->
optimizers -> prepare -> resume -> train -> save); the data, the networks and the GAN steps stay in
the scripts.

* `parse_config`: a `@dataclass` config -> CLI flags (`flag(..., choices=, minimum=)` are checked
  by argparse and listed in `--help`), with `--preset` supplying other defaults; a bad flag is one
  line and exit code 2, before anything is read or written;
* releases: `load_release` (`--init_from` a folder or Hub repo id holding a generator and, in
  `discriminator/`, its discriminator), `adopt_release_flags`, `freeze_blocks` (Freeze-D) and
  `TrainingRun.save_release`, which writes both networks and the model card;
* crash-safe checkpoints: `accelerator.save_state` into a hidden temporary folder that is renamed
  to `checkpoint-<step>` only once every process has written its part, with the size of every file
  recorded, so a run killed at any moment resumes from its last complete checkpoint and a damaged
  one is named with the previous complete one offered (`resolve_resume`);
* `TrainingRun`: the Accelerator, the epoch/step loop around the script's step, logging (the loss
  log `losses.csv`, trimmed back on resume, and its curves), checkpoints and the release.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .hardware import MIXED_PRECISIONS
from .io import atomic_path, check_output, first_line, make_grid, tensor_to_pil

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
DISCRIMINATOR_FOLDER = "discriminator"  # a release's discriminator: <release>/discriminator/


# ---- configuration -------------------------------------------------------------------------------
def flag(default: Any, help: str, choices: list | None = None, minimum: float | None = None) -> Any:
    """A config field with its one-line help; `choices` and `minimum` (inclusive; per element of a
    list) are checked when the flags are parsed. List defaults are copied per instance."""
    metadata = {"help": help, "choices": choices, "minimum": minimum}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class RunFlags:
    """The flags every training script shares (where the run starts, how long it runs, speed and
    bookkeeping); a script's config subclasses it and adds its data, network and objective flags."""

    # data and output
    eval_split: str = flag(None, "split to evaluate the final generator on, e.g. 'test' (none: skip)")
    dataset_name: str = flag(None, "how the model card names the data (default: the --dataset value)")
    overwrite_output_dir: bool = flag(False, "write into an existing --output_dir that no training run wrote "
                                             "(never the --dataset or --init_from folder)")
    seed: int = flag(0, "seed of the run (each process adds its rank)")
    # starting point
    init_from: str = flag(None, "fine-tune a release (folder or Hub repo id with discriminator/): a new run with "
                                "fresh optimizers; the network flags come from the release")
    fresh_discriminator: bool = flag(False, "with --init_from: a new discriminator (for releases saved without one)")
    freeze_discriminator_layers: int = flag(0, "with --init_from: keep the first N discriminator blocks fixed "
                                               "(Freeze-D, Mo et al. 2020; for very small data)", minimum=0)
    # length of the run
    gradient_accumulation_steps: int = flag(1, "micro-steps per optimizer step", minimum=1)
    max_train_steps: int = flag(None, "optimizer steps (none: --num_epochs epochs; 0 only with --init_from: "
                                      "write the release back out)", minimum=0)
    max_train_minutes: float = flag(None, "also stop after this many minutes of this session (--budget_clock)",
                                    minimum=0)
    budget_clock: str = flag("wall", "clock of --max_train_minutes / --snapshot_minutes: wall, or this process's "
                                     "CPU time (fair between runs sharing the cores)", choices=["wall", "cpu"])
    snapshot_minutes: str = flag("", "comma-separated minutes at which to save the release generator to "
                                     "snapshot-<M>min/, e.g. '5,10' (budget studies)")
    ema_decay: float = flag(0.999, "generator EMA decay, warmed up from 0 (0: no EMA)", minimum=0)
    # speed
    mixed_precision: str = flag("auto", "auto: bf16 where the CPU/GPU has it natively, else fp32",
                                choices=list(MIXED_PRECISIONS))
    channels_last: bool = flag(None, "channels_last memory format (none: on under bf16/fp16 or on a GPU, off in fp32 on a CPU)")
    dataloader_num_workers: int = flag(1, "DataLoader worker processes per training process", minimum=0)
    # bookkeeping
    checkpointing_steps: int = flag(500, "save a resumable checkpoint every N steps", minimum=1)
    checkpoints_total_limit: int = flag(2, "keep at most N checkpoints (0: all)", minimum=0)
    resume_from_checkpoint: str = flag(None, "continue this run exactly (weights, optimizers, schedules, EMA, data "
                                             "order, RNG): 'latest' or a checkpoint-<step> folder")
    logging_steps: int = flag(10, "log losses every N steps", minimum=1)
    report_to: str = flag("tensorboard", "where to log", choices=["tensorboard", "trackio", "none"])
    save_fp16: bool = flag(False, "store the released weights in fp16 (half the size; loading casts to fp32)")
    push_to_hub: bool = flag(False, "push the release (generator and discriminator) to the Hub")
    hub_model_id: str = flag(None, "repo id for --push_to_hub (default: output_dir's name)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line instead of the full usage block."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_config(config_cls: type, presets: dict[str, dict[str, Any]], argv: list[str] | None = None):
    """Build argparse flags from the dataclass fields (help = the field's `help` metadata), apply
    `--preset NAME` as new defaults, then the explicit flags. Returns a `config_cls` instance whose
    `explicit_flags` attribute holds the names given on the command line."""
    parser = _Parser(description=(config_cls.__doc__ or "").strip().splitlines()[0], allow_abbrev=False)
    hints = typing.get_type_hints(config_cls)
    own = set(vars(config_cls).get("__annotations__", {}))  # the script's own flags first, then RunFlags'
    for field in sorted(dataclasses.fields(config_cls), key=lambda f: f.name not in own):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        kind, meta = hints[field.name], field.metadata
        options = dict(default=default, help=meta.get("help", ""))
        if field.name == "preset":
            parser.add_argument("--preset", choices=sorted(presets), **options)
        elif kind is bool:
            parser.add_argument(f"--{field.name}", action=argparse.BooleanOptionalAction, **options)
        elif kind is list:
            element = type(default[0]) if default else int  # a list defaulting to None holds ints
            parser.add_argument(f"--{field.name}", type=_parser(element, False, meta.get("minimum")), nargs="+",
                                **options)
        else:
            parser.add_argument(f"--{field.name}", type=_parser(kind, default is None, meta.get("minimum")),
                                choices=meta.get("choices"), **options)
    argv = sys.argv[1:] if argv is None else argv
    preset = parser.parse_known_args(argv)[0].preset
    parser.set_defaults(**presets[preset])
    config = config_cls(**vars(parser.parse_args(argv)))
    names = {f.name for f in dataclasses.fields(config_cls)}
    given = {a[2:].split("=")[0] for a in argv if a.startswith("--")}
    config.explicit_flags = frozenset(n for n in names if n in given or f"no-{n}" in given)
    return config


def _parser(kind: type, optional: bool, minimum: float | None):
    """Parse a flag value as `kind`; "none" means None for optional settings; values below
    `minimum` are refused."""
    def parse(text: str):
        if optional and text.lower() == "none":
            return None
        value = kind(text)
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value
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


def written_by_training(folder: Path) -> bool:
    """An --output_dir a training script wrote (it saves training_config.json first): runs resume there."""
    return (Path(folder) / "training_config.json").is_file()


def check_common_flags(config: Any) -> None:
    """The checks both scripts share that argparse cannot do alone; SystemExit with one line."""
    if not config.dataset:
        raise SystemExit("error: --dataset is required")
    output_dir = Path(config.output_dir).resolve()
    blocking = next((p for p in [output_dir, *output_dir.parents] if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise SystemExit(f"error: --output_dir {config.output_dir}: {blocking} is a file, not a folder")
    if config.init_from and Path(config.init_from).is_dir() and Path(config.init_from).resolve() == output_dir:
        raise SystemExit("error: --output_dir is the --init_from release; write the fine-tuned model elsewhere")
    dataset = Path(config.dataset).resolve()
    if dataset.is_dir() and (output_dir == dataset or dataset in output_dir.parents):
        raise SystemExit(f"error: --output_dir {config.output_dir} lies inside --dataset {config.dataset}")
    try:  # the output rule of every rsgan command (rsgan_hub.io): never an input's or a user's folder
        check_output(config.output_dir, {"the --dataset folder": config.dataset, "the --init_from release":
                                         config.init_from}, config.overwrite_output_dir, ours=written_by_training,
                     flag="--output_dir", overwrite_flag="--overwrite_output_dir")
    except (ValueError, FileExistsError) as err:
        raise SystemExit(f"error: {err}") from None
    snapshot_minutes(config.snapshot_minutes)  # a bad list fails here, before anything is read
    if config.max_train_steps == 0 and not config.init_from:
        raise SystemExit("error: --max_train_steps 0 trains nothing (0 is only for --init_from: write the release "
                         "back out); none trains --num_epochs epochs")
    if config.freeze_discriminator_layers and (not config.init_from or config.fresh_discriminator):
        raise SystemExit("error: --freeze_discriminator_layers keeps a released discriminator's blocks: it needs "
                         "--init_from a release with one (not --fresh_discriminator)")


# ---- releases: --init_from -----------------------------------------------------------------------
def load_release(init_from: str, generator_cls: type, discriminator_cls: type, fresh_discriminator: bool = False,
                 freeze_discriminator_layers: int = 0):
    """(generator, discriminator) of a release folder or Hub repo id, in train mode; the
    discriminator is None with `fresh_discriminator`. Any problem - also a Freeze-D depth the
    discriminator does not have - is one line (SystemExit)."""
    from .models import ModelLoadError

    try:
        generator = generator_cls.from_pretrained(init_from)
        if fresh_discriminator:
            return generator.train(), None
        try:
            discriminator = discriminator_cls.from_pretrained(init_from, subfolder=DISCRIMINATOR_FOLDER)
        except ModelLoadError as err:
            raise SystemExit(f"error: --init_from {init_from}: no loadable {DISCRIMINATOR_FOLDER}/ beside the "
                             f"generator ({err}); pass --fresh_discriminator to fine-tune its generator against a "
                             f"new discriminator") from err
    except ModelLoadError as err:
        raise SystemExit(f"error: --init_from {init_from}: {err}") from err
    _first_blocks(discriminator, freeze_discriminator_layers)
    return generator.train(), discriminator.train()


HISTORY_FILE = "training_history.json"  # beside a release: one entry per run that trained it, oldest first
HISTORY_KEYS = ("script", "init_from", "dataset", "steps", "images_seen", "minutes", "hardware")


def release_history(init_from: str | None) -> list[dict[str, Any]]:
    """The runs behind the `--init_from` release, from its training_history.json (folder or Hub
    repo id); [] for a fresh run or a release without one. A damaged file is one line (SystemExit)."""
    if not init_from:
        return []
    path = Path(init_from) / HISTORY_FILE
    if not path.is_file():
        if Path(init_from).exists():
            return []
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

        try:
            path = Path(hf_hub_download(init_from, HISTORY_FILE))
        except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, ValueError):
            return []  # an older release, saved before the history was kept
    try:
        history = json.loads(path.read_text())
        if not isinstance(history, list) or not all(
                isinstance(run, dict) and set(HISTORY_KEYS) <= set(run)
                and all(isinstance(run[k], (int, float)) for k in ("steps", "images_seen", "minutes"))
                for run in history):
            raise ValueError(f"not a list of runs with {', '.join(HISTORY_KEYS)} (steps, images seen and minutes "
                             "as numbers)")
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: --init_from {init_from}: {HISTORY_FILE} is damaged ({first_line(err)}); "
                         "move it aside to continue without the earlier runs' record") from err
    return history


def history_markdown(history: list[dict[str, Any]]) -> str:
    """The card's paragraph on a release trained over several runs: the totals and one row per run."""
    if len(history) < 2:
        return ""
    rows = "\n".join(f"| {i} | `{run['script']}` | {run['init_from'] or 'new networks'} | {run['dataset']} | "
                     f"{run['steps']:,} | {run['images_seen']:,} | {run['minutes']:.1f} | {run['hardware']} |"
                     for i, run in enumerate(history, 1))
    return (f"This release continues earlier runs (`{HISTORY_FILE}`): {len(history)} runs, "
            f"{sum(run['steps'] for run in history):,} optimizer steps, "
            f"{sum(run['images_seen'] for run in history):,} training images seen and "
            f"{sum(run['minutes'] for run in history):.1f} minutes of training in all.\n\n"
            "| run | script | from | data | steps | images seen | minutes | hardware |\n|---|---|---|---|---|---|---|---|\n"
            f"{rows}")


def adopt_release_flags(config: Any, release: dict[str, Any], init_from: str) -> None:
    """Set the network flags to the release's values (`release`: flag name -> value); a flag
    given on the command line with another value is an error, not a silent override."""
    for name, value in release.items():
        given = getattr(config, name)
        if name in getattr(config, "explicit_flags", ()) and given != value:
            shown = (f"--{name}" if given else f"--no-{name}") if isinstance(given, bool) else \
                f"--{name} {' '.join(map(str, given)) if isinstance(given, list) else given}"
            raise SystemExit(f"error: {shown} contradicts the release --init_from {init_from} "
                             f"({json.dumps(value)}); drop the flag (the release's network is used as it is)")
        setattr(config, name, value)


def plain_copy(model: torch.nn.Module, **overrides: Any) -> torch.nn.Module:
    """A fresh, contiguous fp32 copy of a hub model (its config with `overrides`) with its weights."""
    copy = type(model)(**{**model.init_config, **overrides})
    copy.load_state_dict(model.state_dict())
    return copy.to(next(model.parameters()).device)


def freeze_blocks(discriminator: torch.nn.Module, num_blocks: int) -> list[torch.nn.Parameter]:
    """Freeze-D (Mo et al. 2020): the first `num_blocks` blocks of a discriminator - each a
    convolution with the norm after it - keep their weights, spectral-norm vectors and norm
    statistics (they run in eval mode). Returns the parameters left to train."""
    for module in (m for block in _first_blocks(discriminator, num_blocks) for m in block):
        module.requires_grad_(False)
        module.eval()
    return [p for p in discriminator.parameters() if p.requires_grad]


def _first_blocks(discriminator: torch.nn.Module, num_blocks: int) -> list[list[torch.nn.Module]]:
    """The first `num_blocks` (convolution or linear layer, then its norm) of a discriminator;
    SystemExit when that leaves nothing to train."""
    blocks: list[list[torch.nn.Module]] = []
    for module in discriminator.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            blocks.append([module])
        elif blocks and isinstance(module, torch.nn.modules.batchnorm._NormBase):  # batch and instance norm
            blocks[-1].append(module)
    if num_blocks >= len(blocks):
        raise SystemExit(f"error: --freeze_discriminator_layers {num_blocks}: the discriminator has {len(blocks)} "
                         f"blocks and the last must train; use at most {len(blocks) - 1}")
    return blocks[:num_blocks]


# ---- checkpoints ---------------------------------------------------------------------------------
def save_checkpoint(accelerator, output_dir: str | os.PathLike, step: int, total_limit: int | None,
                    extra: dict | None = None) -> Path:
    """`accelerator.save_state` -> output_dir/checkpoint-<step>, complete or not at all.

    Every process writes into `.checkpoint-<step>.tmp` (models, optimizers, schedulers, EMA and its
    own RNG state); after a barrier the main process writes training_state.json (`extra` and the
    size of every file, for `checkpoint_problem`), renames the folder and deletes the oldest
    checkpoints beyond `total_limit`. Must be called on every process.
    """
    output_dir = Path(output_dir)
    final, tmp = output_dir / f"checkpoint-{step}", output_dir / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)  # left over by a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        files = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / "training_state.json").write_text(json.dumps({**(extra or {}), "files": files}))
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


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed - a missing or truncated file - or None."""
    try:
        files = json.loads((checkpoint / "training_state.json").read_text()).get("files", {})
    except FileNotFoundError:
        return "training_state.json is missing"
    except (OSError, json.JSONDecodeError, AttributeError):
        return "training_state.json is unreadable"
    for name, size in files.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} is truncated or altered ({path.stat().st_size} bytes, {size} saved)"
    return None


def resolve_resume(output_dir: str | os.PathLike, resume_from: str | None) -> tuple[Path | None, int]:
    """`find_checkpoint`, and a one-line SystemExit when the checkpoint is not one or is damaged,
    naming the file and the previous complete checkpoint to resume from instead."""
    try:
        checkpoint, step = find_checkpoint(output_dir, resume_from)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from err
    problem = checkpoint_problem(checkpoint) if checkpoint is not None else None
    if problem:
        raise SystemExit(f"error: cannot resume from {checkpoint}: {problem}; {previous_checkpoint_hint(checkpoint)}")
    return checkpoint, step


def previous_checkpoint_hint(checkpoint: Path) -> str:
    """Where to resume from instead of a damaged `checkpoint` (one clause)."""
    step = int(CHECKPOINT.match(checkpoint.name)[1])
    earlier = [p for p in list_checkpoints(checkpoint.parent) if int(CHECKPOINT.match(p.name)[1]) < step]
    complete = next((p for p in reversed(earlier) if checkpoint_problem(p) is None), None)
    if complete is None:
        return "there is no earlier complete checkpoint: start again without --resume_from_checkpoint"
    return f"the previous complete checkpoint is --resume_from_checkpoint {complete}"


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


def snapshot_minutes(text: str) -> list[float]:
    """'5,10' -> [5.0, 10.0] (sorted); a SystemExit naming the flag for anything else."""
    try:
        return sorted(float(m) for m in text.split(",") if m.strip())
    except ValueError:
        raise SystemExit(f"error: --snapshot_minutes must be comma-separated numbers, got {text!r}") from None


# ---- the run -------------------------------------------------------------------------------------
class TrainingRun:
    """One session of a training script around its own D and G steps: the Accelerator, the
    epoch/step loop (resumed mid-epoch), logging, checkpoints and the release. Create it after the
    flag checks; nothing is written until `begin`."""

    def __init__(self, config: Any, name: str):
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

        from .hardware import channels_last_default, training_precision

        self.config, self.name, self.output_dir = config, name, Path(config.output_dir)
        self.accelerator = Accelerator(
            cpu=distributed_on_cpu(),  # several CPU processes over gloo when there is no GPU
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            mixed_precision=training_precision(config.mixed_precision),
            log_with=None if config.report_to == "none" else config.report_to,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir),
                                                logging_dir=str(self.output_dir / "logs")),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
        )
        # the "auto" speed settings as resolved for this machine, so the saved config says what ran
        config.mixed_precision = self.accelerator.mixed_precision
        config.channels_last = channels_last_default(config.channels_last, config.mixed_precision,
                                                     self.accelerator.device)
        set_seed(config.seed, device_specific=True)  # different latents per process
        self.device, self.step = self.accelerator.device, 0
        self.snapshots_due = snapshot_minutes(config.snapshot_minutes)  # marks not yet saved
        self.total_batch = config.train_batch_size * self.accelerator.num_processes * config.gradient_accumulation_steps
        self.history = release_history(config.init_from)  # the runs before this one, for the card

    def check_data(self, num_items: int, what: str) -> None:
        """One optimizer step needs train_batch_size x processes x accumulation items (drop_last)."""
        if num_items < self.total_batch:
            raise SystemExit(f"error: {num_items} {what} are fewer than one optimizer step ({self.total_batch}: "
                             "--train_batch_size x processes x --gradient_accumulation_steps)")

    def schedule(self, train_dataloader) -> int:
        """Steps per epoch of the prepared dataloader and the run's length; returns max_train_steps."""
        self.steps_per_epoch = len(train_dataloader) // self.config.gradient_accumulation_steps
        self.max_train_steps = self.config.num_epochs * self.steps_per_epoch \
            if self.config.max_train_steps is None else self.config.max_train_steps
        self.num_epochs = math.ceil(self.max_train_steps / self.steps_per_epoch)
        return self.max_train_steps

    def begin(self, checkpoint: Path | None, step: int) -> None:
        """Write the resolved config, resume from `checkpoint` (models, optimizers, registered
        objects, the sampler and every process's RNG; the step is in its name) and start the logs."""
        from tqdm.auto import tqdm

        accelerator, config = self.accelerator, self.config
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.output_dir)
        self.step = self.start_step = step
        if checkpoint is not None:
            accelerator.print(f"resuming from {checkpoint} (step {step})")
            try:
                accelerator.load_state(str(checkpoint))
            except Exception as err:  # damaged in a way the recorded sizes do not show
                reason = first_line(err, with_type=True)
                raise SystemExit(f"error: cannot resume from {checkpoint} ({reason}); "
                                 f"{previous_checkpoint_hint(checkpoint)}") from err
        self.clock = TrainingClock(load_training_state(checkpoint).get("train_seconds", 0.0))  # for the card
        if accelerator.is_main_process:
            accelerator.init_trackers(self.name, config={k: str(v) if isinstance(v, (list, type(None))) else v
                                                         for k, v in dataclasses.asdict(config).items()})
            self.loss_log = LossLog(self.output_dir, resume_step=step)
            (self.output_dir / "samples").mkdir(exist_ok=True)
        self.progress = tqdm(total=self.max_train_steps, initial=step, desc=self.name,
                             disable=not accelerator.is_main_process)

    def batches(self, train_dataloader):
        """The batches still to train on, epoch after epoch, from a resumed step's place in its
        epoch; stops at max_train_steps (at once when resuming a finished run: it just saves)."""
        first_epoch = self.step // self.steps_per_epoch
        skip = (self.step % self.steps_per_epoch) * self.config.gradient_accumulation_steps
        for epoch in range(first_epoch, self.num_epochs):
            train_dataloader.set_epoch(epoch)
            batches = self.accelerator.skip_first_batches(train_dataloader, skip) if epoch == first_epoch \
                else train_dataloader
            for batch in batches:
                if self.step >= self.max_train_steps:
                    return
                yield batch

    def end_step(self, logs: dict[str, Any], sample: Callable[[Path], None],
                 release: Callable[[], torch.nn.Module]) -> bool:
        """After an optimizer step, on every process: count it; every --logging_steps (and at the end)
        log `logs` (scalar tensors averaged over the processes, floats as they are); every
        --checkpointing_steps save a checkpoint; every --sample_every call `sample(path)` of a grid
        under samples/ (main process); save `release()` at each --snapshot_minutes mark. Returns True
        when the --max_train_minutes budget has run out (training stops at this step)."""
        self.step += 1
        self.progress.update(1)
        if self.due(self.config.logging_steps) or self.step == self.max_train_steps:
            names = [k for k, v in logs.items() if isinstance(v, torch.Tensor)]
            means = self.accelerator.reduce(torch.stack([logs[k].detach().float() for k in names]), reduction="mean")
            values = {**logs, **dict(zip(names, means.tolist()))}
            self.progress.set_postfix({k: f"{v:.3f}" for k, v in values.items() if k.startswith("loss")})
            self.accelerator.log(values, step=self.step)
            if self.accelerator.is_main_process:
                self.loss_log.append(self.step, values)
        if self.due(self.config.checkpointing_steps):
            save_checkpoint(self.accelerator, self.output_dir, self.step, self.config.checkpoints_total_limit,
                            extra={"train_seconds": self.clock.total()})
        if self.accelerator.is_main_process and self.due(self.config.sample_every):
            sample(self.output_dir / "samples" / f"step_{self.step:07d}.png")
        self.save_snapshots(release)
        return self.out_of_time()

    def due(self, every: int) -> bool:
        return self.step % every == 0

    def stop(self) -> None:
        """End training at this step (a time budget ran out)."""
        self.max_train_steps = self.step

    def save_snapshots(self, release: Callable[[], torch.nn.Module]) -> None:
        """After a step, main process: save `release()` to snapshot-<M>min/ for each of
        --snapshot_minutes (on --budget_clock) that has passed (budget studies)."""
        due = self.snapshots_due
        minutes = self.clock.session_minutes(self.config.budget_clock) if due else 0.0
        while self.accelerator.is_main_process and due and minutes >= due[0]:
            release().save_pretrained(self.output_dir / f"snapshot-{due.pop(0):g}min")

    def out_of_time(self) -> bool:
        """After a step: has --max_train_minutes (on --budget_clock) run out? The main process's clock
        decides for every process, so they all stop at the same step; then `stop()` has been called."""
        limit = self.config.max_train_minutes
        if limit is None:
            return False
        says = self.clock.session_minutes(self.config.budget_clock) >= limit
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast

            says = bool(broadcast(torch.tensor([float(says)], device=self.device), from_process=0).item())
        if says:
            self.stop()
        return says

    def finish(self) -> None:
        self.progress.close()
        self.accelerator.wait_for_everyone()

    def save_release(self, generator: torch.nn.Module, discriminator: torch.nn.Module, metrics: dict, title: str,
                     sample_image: str | None = "samples.png") -> None:
        """Main process: the loss curves, then the release - the generator (a plain copy, e.g. with
        the EMA weights) and its model card in output_dir, a plain copy of the discriminator in
        output_dir/discriminator/ - and, with --push_to_hub, both to the Hub."""
        config, accelerator = self.config, self.accelerator
        self.loss_log.plot(self.output_dir / "loss_curves.png", title=title)
        note = (f"The discriminator is saved beside the generator, in `{DISCRIMINATOR_FOLDER}/` "
                f"(`{type(discriminator).__name__}.from_pretrained(this_repo_or_folder, "
                f"subfolder=\"{DISCRIMINATOR_FOLDER}\")`): `{Path(sys.argv[0]).name} --init_from` needs it to "
                "fine-tune this GAN on new data or train it further. It judges real against generated images "
                "during training; it is not a scene classifier.")
        hardware = f"{accelerator.num_processes} process(es) on {accelerator.device.type}"
        training = training_markdown(config, self.step, self.step * self.total_batch, self.step - self.start_step,
                                     self.clock.session(), hardware, total_seconds=self.clock.total())
        history = self.history + [{
            "script": Path(sys.argv[0]).name, "init_from": config.init_from,
            "dataset": config.dataset_name or str(config.dataset), "steps": self.step,
            "images_seen": self.step * self.total_batch, "minutes": round(self.clock.total() / 60, 1),
            "hardware": hardware, "mixed_precision": config.mixed_precision,
            "finished": time.strftime("%Y-%m-%d", time.gmtime())}]
        if paragraph := history_markdown(history):
            training = f"{paragraph}\n\nThe last run: {training[0].lower()}{training[1:]}"
        card = {"training": f"{note}\n\n{training}", "metrics": metrics, "dataset": config.dataset,
                "dataset_split": config.eval_split, "sample_image": sample_image, "repo_id": config.hub_model_id}
        discriminator = plain_copy(accelerator.unwrap_model(discriminator)).float()
        if config.save_fp16:  # safetensors keeps fp16; from_pretrained copies into fp32 parameters
            generator.half()
            discriminator.half()
        generator.save_pretrained(self.output_dir, model_card_kwargs=card)
        discriminator.save_pretrained(self.output_dir / DISCRIMINATOR_FOLDER)
        with atomic_path(self.output_dir / HISTORY_FILE) as tmp:
            tmp.write_text(json.dumps(history, indent=2) + "\n")
        if config.push_to_hub:
            push_release(self.output_dir, config.hub_model_id or self.output_dir.name)
        print(f"saved the generator and discriminator to {self.output_dir} ({self.step} steps, "
              f"world size {accelerator.num_processes})")


def push_release(folder: Path, repo_id: str) -> None:
    """Upload a release (generator, card, samples, discriminator/) - not the checkpoints and logs."""
    from huggingface_hub import HfApi

    api = HfApi()
    repo_id = api.create_repo(repo_id, exist_ok=True).repo_id
    api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="rsgan_hub release",
                      allow_patterns=["config.json", "model.safetensors", "README.md", "samples.png",
                                      HISTORY_FILE, f"{DISCRIMINATOR_FOLDER}/*"])
