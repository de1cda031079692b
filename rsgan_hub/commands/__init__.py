"""Sub-commands of `rsgan`; each module has `add_parser(subparsers)` and `run(args)`.

The output rule every writing command follows (`rsgan_hub.io.check_output`): `--out` never equals,
holds or lies inside an input (the model folder, the source, the input file) or the working
directory, and an existing output is replaced only if rsgan wrote it, unless `--overwrite`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out that rsgan did not write (never an input)")


def prepare_output(out: str | os.PathLike, inputs: dict, overwrite: bool, folder: bool = True,
                   ours=None) -> Path:
    """Check `out` against the output rule before any work, and remove the scratch folders that
    killed runs left beside it (saying so)."""
    from ..io import check_output, remove_stale_scratch

    out = check_output(out, inputs, overwrite, folder, ours)
    for stale in remove_stale_scratch(out):
        print(f"rsgan: removed {stale}, left by an interrupted run", file=sys.stderr)
    return out
