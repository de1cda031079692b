"""The `rsgan` command (also `python -m rsgan_hub`): one sub-command per module in `commands/`.

Expected failures (bad input, a missing model) print one line, `rsgan: error: ...`, and exit 1;
set RSGAN_DEBUG=1 to see the traceback instead. Ctrl-C and SIGTERM unwind the same way (temporary
files and folders are removed by their `finally` blocks), print `rsgan: interrupted` and exit
128 + the signal number. Worker processes (the `--num-proc` of `rsgan dataset`) die with the
command, even when it is killed with SIGKILL.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import os
import signal
import sys

from .models.hub import ModelLoadError

# Sub-command modules, each with `add_parser(subparsers)` and `run(args) -> int | None`.
COMMANDS = ["generate", "translate", "synthesize", "dataset", "evaluate", "publish"]


class UserError(Exception):
    """A problem with the user's input, reported as one line."""


EXPECTED = (UserError, ModelLoadError, ValueError, OSError)


class Interrupted(KeyboardInterrupt):
    """Raised by the SIGTERM handler, so that a terminated run cleans up as a Ctrl-C'd one does."""

    signum = signal.SIGTERM


def _raise_interrupted(signum, frame):
    raise Interrupted


_fork_guard = {"active": False, "parent": None, "libc": None}


def _remember_parent() -> None:
    _fork_guard["parent"] = os.getpid()


def _die_with_parent() -> None:
    """In every child forked during a command (the dataset workers, datasets' queue manager): get
    SIGKILL when the process that forked it dies (Linux PR_SET_PDEATHSIG), and leave Ctrl-C and
    SIGTERM to the parent, which stops its workers itself."""
    if not _fork_guard["active"]:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _fork_guard["libc"] is None:  # not Linux: no such call
        return
    _fork_guard["libc"].prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != _fork_guard["parent"]:  # the parent died before prctl: nobody will send the signal
        os._exit(1)


def _guard_forks() -> None:
    """Install the fork hooks once per process (loading libc here, never in a fresh child)."""
    if _fork_guard["libc"] is None and sys.platform.startswith("linux"):
        _fork_guard["libc"] = ctypes.CDLL(None)
        os.register_at_fork(before=_remember_parent, after_in_child=_die_with_parent)
    _fork_guard["active"] = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rsgan", description="Remote-sensing GANs on the Hugging Face stack.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"rsgan_hub.commands.{name}")
        module.add_parser(sub).set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    _guard_forks()
    try:
        return int(args._run(args) or 0)
    except EXPECTED as err:
        if os.environ.get("RSGAN_DEBUG"):
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"rsgan: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        print("rsgan: interrupted; no partial output was kept", file=sys.stderr)
        return 128 + getattr(err, "signum", signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
        _fork_guard["active"] = False


if __name__ == "__main__":
    sys.exit(main())
