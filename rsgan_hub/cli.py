"""The `rsgan` command (also `python -m rsgan_hub`): one sub-command per module in `commands/`.

Expected failures (bad input, a missing model) print one line, `rsgan: error: ...`, and exit 1;
set RSGAN_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .models.hub import ModelLoadError

# Sub-command modules, each with `add_parser(subparsers)` and `run(args) -> int | None`.
COMMANDS = ["generate", "translate", "synthesize", "dataset", "evaluate"]


class UserError(Exception):
    """A problem with the user's input, reported as one line."""


EXPECTED = (UserError, ModelLoadError, ValueError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rsgan", description="Remote-sensing GANs on the Hugging Face stack.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"rsgan_hub.commands.{name}")
        module.add_parser(sub).set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except EXPECTED as err:
        if os.environ.get("RSGAN_DEBUG"):
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"rsgan: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rsgan: interrupted; no partial output was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
