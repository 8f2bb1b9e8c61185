"""engine/child.py: how a child process of wai's is started and how its exit is read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from wai.engines.process.child import (
    EXIT_LOAD_FAILED,
    child_env,
    describe_exit,
    is_crash,
    module_command,
)


def test_exits_are_described() -> None:
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "was killed by SIGSEGV"
    assert describe_exit(-200) == "was killed by signal 200"
    assert describe_exit(3) == "exited with status 3"


@pytest.mark.parametrize(
    ("rc", "crash"),
    [
        (0, False),
        (1, False),
        (EXIT_LOAD_FAILED, False),
        (-11, True),
        (-6, True),
        (139, True),
        (0xC0000005, True),
    ],
)
def test_what_counts_as_a_crash(rc: int, crash: bool) -> None:
    assert is_crash(rc) is crash


def test_a_child_finds_this_copy_of_wai_and_no_client_with_the_engine() -> None:
    code = (
        "import sys, wai, wai.engines.llamacpp.worker; print(wai.__file__, 'httpx' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), cwd="/", capture_output=True, text=True
    )
    where, httpx_loaded = out.stdout.split()
    assert os.path.dirname(where) == os.path.dirname(__import__("wai").__file__)
    assert httpx_loaded == "False"


def test_a_wai_in_the_working_directory_does_not_stand_in_for_this_copy(tmp_path: Path) -> None:
    """The server started from another checkout's directory: its engine processes still run
    this copy's code (`python -m` would put the working directory first)."""
    (tmp_path / "wai").mkdir()
    (tmp_path / "wai" / "__init__.py").write_text("raise SystemExit('the wrong wai')\n")
    out = subprocess.run(
        module_command("wai.engines.process.child"),
        env=child_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    shadowed = subprocess.run(
        [sys.executable, "-m", "wai.engines.process.child"],
        env=child_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert "the wrong wai" in shadowed.stderr  # what -P prevents


def test_a_child_path_starts_at_the_directory_that_holds_the_wai_package() -> None:
    """Not wai/ itself: with `python -P`, a `queue` or `types` import would find wai's own
    subpackages instead of the standard library's."""
    first = Path(child_env()["PYTHONPATH"].split(os.pathsep)[0])
    assert (first / "wai" / "__init__.py").is_file()
    assert not (first / "queue").exists()


def test_a_speech_engine_child_imports_the_standard_library_not_wais_packages() -> None:
    code = "import queue, wai.engines.speech.worker; print(queue.__file__)"
    out = subprocess.run(
        [sys.executable, "-P", "-c", code],
        env=child_env(),
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    assert "/wai/" not in out.stdout, out.stdout
