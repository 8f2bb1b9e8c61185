"""What the server needs to run a child process of wai's (an engine process, a warm-up probe):
its environment, and how to read its exit."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

# A child that could not load the model file: not a crash, nothing safer to fall back to.
EXIT_LOAD_FAILED = 3

# The directory that holds the `wai` package, so that `python -m wai.engines...` finds this
# very copy (a source checkout run without installing included).
_ROOT = str(Path(__file__).resolve().parents[3])


def module_command(module: str, *args: str) -> list[str]:
    """`python -P -m module args`: -P keeps the working directory off the child's path, so a
    `wai/` (another checkout) or a `numpy.py` where the server was started cannot stand in for
    this copy's modules; child_env puts this copy first instead."""
    return [sys.executable, "-P", "-m", module, *args]


def child_env() -> dict[str, str]:
    """This process's environment, with wai's own package first on the child's path."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")])),
    }


def signal_name(rc: int) -> str | None:
    """The signal that ended a child (a negative POSIX return code), by name; None if it
    exited."""
    if rc >= 0:
        return None
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def describe_exit(rc: int) -> str:
    sig = signal_name(rc)
    return f"was killed by {sig}" if sig else f"exited with status {rc}"


def is_crash(rc: int) -> bool:
    """A signal (POSIX), a shell-style 128+n, or a Windows NTSTATUS crash code."""
    return rc < 0 or 128 <= rc < 256 or rc >= 0xC0000000
