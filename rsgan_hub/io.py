"""Small I/O helpers shared by the commands, the training scripts and the app.

Pixel convention, stated once for the whole project: networks take and return RGB tensors of shape
(B, 3, H, W) with values in [-1, 1]; `pil_to_tensor` / `tensor_to_pil` convert from / to 8-bit
PIL images. Every file or folder a command produces is written through `atomic_path` /
`atomic_dir`, so an interrupted or failed run never leaves a half-written output behind, and
`check_output` decides where a command may write at all: never over, around or inside an input,
and never over a folder or file rsgan did not write unless the user says `--overwrite`.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """8-bit PIL image -> (3, H, W) float tensor in [-1, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).div(127.5).sub(1.0)


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """(3, H, W) tensor in [-1, 1] -> 8-bit RGB PIL image (values are clamped)."""
    array = tensor.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).numpy(), mode="RGB")


def first_line(err: BaseException, with_type: bool = False) -> str:
    """The error's message cut to its first line - what a one-line CLI or app error shows; the
    exception's type name when it has no message. with_type: "TypeName: first line"."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return f"{type(err).__name__}: {line}" if with_type and text else line


def make_grid(images: Sequence[Image.Image], columns: int | None = None, padding: int = 2) -> Image.Image:
    """Tile same-sized PIL images into one image, `columns` wide (default: near-square)."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    grid = Image.new("RGB", (columns * (w + padding) + padding, rows * (h + padding) + padding), "white")
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid.paste(image, (padding + c * (w + padding), padding + r * (h + padding)))
    return grid


def label_rows(grid: Image.Image, labels: Sequence[str], row_height: int, padding: int = 2) -> Image.Image:
    """`grid` (rows of `row_height` px, `padding` apart, as `make_grid` lays them) with a label left of
    each row, in a font scaled to the row: the class overviews of the card, the README, the app and the
    recipe studies."""
    from PIL import ImageDraw, ImageFont

    if not labels:
        raise ValueError("label_rows needs at least one label")
    font = ImageFont.load_default(size=max(12, row_height // 8))
    width = padding * 4 + math.ceil(max(ImageDraw.Draw(grid).textlength(label, font=font) for label in labels))
    labelled = Image.new("RGB", (width + grid.width, grid.height), "white")
    labelled.paste(grid, (width, 0))
    draw = ImageDraw.Draw(labelled)
    for row, label in enumerate(labels):
        draw.text((padding * 2, padding + row * (row_height + padding) + row_height / 2), label, fill="black",
                  font=font, anchor="lm")
    return labelled


def umask() -> int:
    """The process's file-creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


# The temporary files and folders in use now, so that `remove_temporaries` can delete them when an
# interrupted library hangs instead of unwinding (the CLI's last resort before it exits).
TEMPORARIES: set[Path] = set()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    TEMPORARIES.discard(path)


def remove_temporaries() -> None:
    for path in list(TEMPORARIES):
        _remove(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    TEMPORARIES.add(tmp)
    os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; the result should look like any new file
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        _remove(tmp)


# ---- outputs: what a command may write, and where ---------------------------------------------
# Every folder a command writes carries MARKER, a small JSON naming the command. An existing folder
# is replaced only when it carries the marker (or the user passed --overwrite); an output never
# equals, holds or lies inside an input, compared as resolved paths so that links count too.
MARKER = ".rsgan-output"
_SCRATCH = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|cache|old)\.(?P<pid>\d+)\.[^.]+$")


def write_marker(folder: Path, command: str) -> None:
    """MARKER in `folder`: the command only (no time, no arguments), so that a rerun is byte-identical."""
    (Path(folder) / MARKER).write_text(json.dumps({"written_by": command}) + "\n")


def _existing_folder_problem(path: Path, flag: str = "--out", overwrite_flag: str = "--overwrite") -> str | None:
    """Why `path` may not be replaced by a new output folder, or None if it may."""
    if not path.exists():
        return None
    if not path.is_dir():
        return f"{path} is a file, not a folder"
    if (path / MARKER).is_file():
        return None
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return None
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    return (f"{path} already holds {len(entries)} entries rsgan did not write ({shown}); choose another "
            f"{flag} or pass {overwrite_flag} to replace it")


def check_output(out: str | os.PathLike, inputs: dict[str, str | os.PathLike | None], overwrite: bool = False,
                 folder: bool = True, ours: Callable[[Path], bool] | None = None, flag: str = "--out",
                 overwrite_flag: str = "--overwrite") -> Path:
    """Refuse an output that would replace, hold or lie inside one of `inputs` ({what: path}; paths
    that do not exist locally, such as Hub repo ids, are skipped), that would replace or hold the
    working directory, or that would replace something rsgan did not write: a folder without
    MARKER (and that `ours` does not recognise), or (for a file output, `folder=False`) a file `ours`
    does not recognise. `overwrite` lifts only the last rule. `flag` / `overwrite_flag` name the
    command's flags in the messages. Returns `out` as a Path; raises ValueError / FileExistsError."""
    out = Path(out)
    real = out.resolve()
    here = Path.cwd().resolve()
    if real == here or real in here.parents:
        raise ValueError(f"{flag} {out} is or holds the working directory; choose a new folder for the output")
    for what, path in inputs.items():
        if path is None or not os.path.exists(path):
            continue
        source = Path(path).resolve()
        if real == source or (out.exists() and os.path.samefile(out, source)):
            raise ValueError(f"{flag} {out} is {what} ({path}); choose another path")
        if real in source.parents:
            raise ValueError(f"{flag} {out} holds {what} ({path}); choose a path outside it")
        if source in real.parents:
            raise ValueError(f"{flag} {out} lies inside {what} ({path}); choose a path outside it")
    if overwrite:
        if out.exists() and out.is_dir() != folder:
            raise FileExistsError(f"{out} is a {'file' if folder else 'folder'}, not a {'folder' if folder else 'file'}")
        return out
    if folder:
        problem = None if ours and out.is_dir() and ours(out) else _existing_folder_problem(out, flag, overwrite_flag)
    elif out.is_dir():
        problem = f"{out} is a folder, not a file"
    elif out.exists() and not (ours and ours(out)):
        problem = f"{out} exists and was not written by rsgan; choose another {flag} or pass {overwrite_flag} to replace it"
    else:
        problem = None
    if problem:
        raise FileExistsError(problem)
    return out


def _scratch(path: Path, kind: str) -> Path:
    """A new hidden folder `.NAME.KIND.PID.XXXX` beside `path`, carrying MARKER; the pid lets a later
    run tell a scratch folder of a killed run from one a running process is filling."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{kind}.{os.getpid()}.", dir=path.parent))
    TEMPORARIES.add(tmp)
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700
    write_marker(tmp, f"scratch folder of {path.name}")
    return tmp


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_scratch(path: str | os.PathLike) -> list[Path]:
    """Remove the scratch folders beside `path` left by runs that were killed (SIGKILL, power loss:
    no cleanup could run); an interrupted replacement is rolled back first. Returns what was removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for p in sorted(path.parent.glob(f".{glob.escape(path.name)}.*")):
        match = _SCRATCH.fullmatch(p.name)
        if not match or match["name"] != path.name or not p.is_dir() or _alive(int(match["pid"])):
            continue
        if not (p / MARKER).is_file():
            continue
        if match["kind"] == "old" and (p / "x").is_dir() and not path.exists():
            os.replace(p / "x", path)  # killed between moving the old output aside and the new one in
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


@contextlib.contextmanager
def scratch_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A scratch folder beside `path` (same disk), removed when the block ends, however it ends."""
    tmp = _scratch(Path(path), "cache")
    try:
        yield tmp
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, command: str = "rsgan", overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`, marked as written by `command`; it replaces `path`
    only if the block succeeds. An existing `path` must be a folder rsgan wrote (MARKER), be empty,
    or `overwrite` must be given."""
    path = Path(path)
    problem = _existing_folder_problem(path)
    if problem and not (overwrite and path.is_dir()):
        raise FileExistsError(problem)
    tmp = _scratch(path, "tmp")
    write_marker(tmp, command)  # the output's own marker, in place of the scratch one
    try:
        yield tmp
        if path.exists():
            old = _scratch(path, "old")
            TEMPORARIES.discard(old)  # if killed in between, it holds the only copy: `remove_stale_scratch` restores it
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)
