"""The `rsgan` command (also `python -m rsgan_hub`): one sub-command per module in `commands/`.

Expected failures (bad input, a missing model) print one line, `rsgan: error: ...`, and exit 1;
set RSGAN_DEBUG=1 to see the traceback instead. Ctrl-C and SIGTERM unwind the same way (temporary
files and folders are removed by their `finally` blocks), print `rsgan: interrupted` and exit
128 + the signal number. Worker processes (the `--num-proc` of `rsgan dataset`) die with the
command, even when it is killed with SIGKILL.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import os
import signal
import sys
import threading

from .models.hub import ModelLoadError
from .io import first_line

# Sub-command modules, each with `add_parser(subparsers)` and `run(args) -> int | None`.
COMMANDS = ["generate", "translate", "synthesize", "dataset", "evaluate", "publish"]


class UserError(Exception):
    """A problem with the user's input, reported as one line."""


EXPECTED = (UserError, ModelLoadError, ValueError, OSError)


class Interrupted(KeyboardInterrupt):
    """Raised by the SIGINT / SIGTERM handler, so that a terminated run cleans up as a Ctrl-C'd one does."""


UNWIND_SECONDS = 15  # an interrupted run that has not unwound by then is stopped the hard way
_state = {"pid": None, "signum": None, "timer": None, "libc": None, "unraisablehook": None, "forking": None}


def _interrupt(signum, frame):
    """Ctrl-C or SIGTERM: unwind with Interrupted. Repeats are ignored, so that the cleanup itself is
    not cut short; a cleanup that hangs (multiprocessing's Pool.terminate can deadlock on a lock a
    worker held when it was cut off) is ended by `_give_up`."""
    if _state["signum"] is not None or os.getpid() != _state["pid"]:
        return  # a repeat, or a child forked a moment ago that has not yet set its own handlers
    _state["signum"] = signum
    if _state["timer"] is None:
        _state["timer"] = threading.Timer(UNWIND_SECONDS, _give_up, args=(signum,))
        _state["timer"].daemon = True
        _state["timer"].start()
    raise Interrupted


def _redeliver(unraisable) -> None:
    """An Interrupted raised where Python cannot propagate it (a library's fork hook, a finaliser) is
    only printed; send the signal again, so that it lands in code that can unwind."""
    if isinstance(unraisable.exc_value, Interrupted) and os.getpid() == _state["pid"]:
        signum, _state["signum"] = _state["signum"], None
        threading.Timer(0.01, os.kill, args=(os.getpid(), signum)).start()  # from outside this hook
        return
    _state["unraisablehook"](unraisable)


def _give_up(signum: int) -> None:
    from .io import remove_temporaries

    _stop_children()
    remove_temporaries()
    _close_progress_bars()
    print("rsgan: interrupted; no partial output was kept", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def _stop_children() -> None:
    """Kill the worker processes an interrupted library left behind (a pool or queue manager whose
    shutdown was cut short), so that the interpreter does not wait for them at exit."""
    for name in ("multiprocess", "multiprocessing"):  # datasets' pools use multiprocess
        module = sys.modules.get(name)
        for child in module.active_children() if module else []:
            child.kill()
            child.join(10)


def _close_progress_bars() -> None:
    """Close the bars an interrupted loop left open, so that the last message has a line of its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", [])):
        with contextlib.suppress(Exception):
            bar.close()


def _before_fork() -> None:
    _state["forking"] = os.getpid()


def _in_forked_child() -> None:
    """Fork hook, in every child forked once a command has run in this process (the `--num-proc`
    workers of `rsgan dataset`, datasets' queue manager, and a pool's replacements for workers it
    lost, which can be forked after `main` has returned): ignore Ctrl-C (the parent stops its
    workers), die on SIGTERM, and get SIGKILL when the parent dies, even by SIGKILL (Linux
    PR_SET_PDEATHSIG)."""
    _state["pid"] = None  # this process runs no command: its handler must not act
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # a pool worker's task errors travel to the parent, which reports them; what a worker would print
    # itself is the noise of being cut off mid-task ("generator ignored GeneratorExit")
    sys.unraisablehook = lambda unraisable: None
    _state["libc"].prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != _state["forking"]:  # the parent died before prctl: nobody will send the signal
        os._exit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rsgan", description="Remote-sensing GANs on the Hugging Face stack.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"rsgan_hub.commands.{name}")
        module.add_parser(sub).set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM) if in_main_thread}
    if _state["libc"] is None and sys.platform.startswith("linux"):  # once per process
        _state["libc"] = ctypes.CDLL(None)  # loaded here, never in a fresh child
        os.register_at_fork(before=_before_fork, after_in_child=_in_forked_child)
    _state.update(pid=os.getpid(), signum=None, timer=None, unraisablehook=sys.unraisablehook)
    sys.unraisablehook = _redeliver
    try:
        return int(args._run(args) or 0)
    except BaseException as err:
        # after a signal, whatever the unwinding raised (a library's cleanup may replace our
        # KeyboardInterrupt with its own error) is the interruption
        signum = _state["signum"] or (signal.SIGINT if isinstance(err, KeyboardInterrupt) else None)
        if signum is not None:
            _stop_children()
            _close_progress_bars()
            print("rsgan: interrupted; no partial output was kept", file=sys.stderr)
            return 128 + signum
        if not isinstance(err, EXPECTED) or os.environ.get("RSGAN_DEBUG"):
            raise
        message = first_line(err)
        print(f"rsgan: error: {message}", file=sys.stderr)
        return 1
    finally:
        if _state["timer"] is not None:
            _state["timer"].cancel()
        sys.unraisablehook = _state["unraisablehook"]
        _state.update(pid=None, unraisablehook=None)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
