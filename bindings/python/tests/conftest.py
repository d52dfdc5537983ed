import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

import honker

HERE = Path(__file__).resolve().parent


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "app.db")


@pytest.fixture
def db(path: str) -> Iterator[honker.Database]:
    d = honker.open(path)
    yield d
    d.close()


def wait_until(cond: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``cond`` until true; a generous deadline, never a timing assert."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def child_env(**extra: str) -> dict:  # type: ignore[type-arg]
    """This process's environment for a child, with tests/ on the path (absolute, so any cwd works)."""
    env = dict(os.environ, **extra)
    parts = [str(HERE)] + [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def child(script: str, *args: str, **kw: object) -> "subprocess.Popen[str]":
    """Run ``tests/children/<script>`` with this interpreter (same env, so the same driver)."""
    return subprocess.Popen([sys.executable, str(HERE / "children" / script), *args], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]
