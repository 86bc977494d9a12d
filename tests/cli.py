"""Several ``python -m bot`` commands in one child process, each with its own arguments and environment.

Starting a Python process that imports Séance costs about a second of CPU, so a
test of several commands runs them all through ``bot.__main__.main`` in one child
(``run_commands``): each command sees its own environment variables and has its own
standard output, standard error and exit code. The child is a real process started
from the test's environment and folder, like ``python -m bot``: a ``.env`` in the
repository is not read, and nothing a command does to the process reaches the tests.
Tests that need the real entry point (signals, ``sys.exit``) still start
``python -m bot`` themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Outcome:
    """What one command did: its exit code (-1 for an exception main() let out) and its output."""

    code: int
    stdout: str
    stderr: str


def run_commands(
    commands: list[tuple[list[str], dict[str, str]]],
    *,
    env: dict[str, str],
    cwd: Path,
    prefix: list[str] | None = None,
    timeout: float = 120,
) -> list[Outcome]:
    """Run each (argv, environment changes) in order in one child started with ``env`` in ``cwd``;
    ``prefix`` goes before the interpreter (e.g. setpriv). Fails with the child's stderr if it dies."""
    payload = json.dumps([{"argv": argv, "env": changes} for argv, changes in commands])
    child = subprocess.run(
        [*(prefix or []), sys.executable, "-c", "from tests.cli import drive; drive()"],
        input=payload, capture_output=True, text=True, env=env | {"PYTHONPATH": str(ROOT)}, cwd=cwd,
        timeout=timeout,
    )
    assert child.returncode == 0, child.stderr
    return [Outcome(**outcome) for outcome in json.loads(child.stdout.splitlines()[-1])]


def drive() -> None:
    """In the child: run main() for each {"argv", "env"} read from stdin; print the outcomes as JSON.

    Output is caught at the file descriptors, as a parent reading a pipe would catch it: the
    console prints to the ``sys.stdout`` it was imported with, and export writes bytes."""
    from bot.__main__ import main

    outcomes = []
    for case in json.loads(sys.stdin.read()):
        before = dict(os.environ)
        os.environ.update(case["env"])
        with _caught(1, sys.stdout) as out, _caught(2, sys.stderr) as err:
            try:
                code = main(case["argv"])
            except BaseException:  # a crash is an outcome to report, not the end of the table
                code = -1
                traceback.print_exc()
        os.environ.clear()
        os.environ.update(before)
        outcomes.append({"code": code, "stdout": out.read(), "stderr": err.read()})
    print(json.dumps(outcomes))


class _Caught:
    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()

    def read(self) -> str:
        self.file.seek(0)
        return self.file.read().decode("utf-8")


@contextlib.contextmanager
def _caught(fd: int, stream: TextIO) -> Iterator[_Caught]:
    """Everything written to ``fd`` (through ``stream`` or not) while inside, kept in a temporary file."""
    caught, saved = _Caught(), os.dup(fd)
    stream.flush()
    os.dup2(caught.file.fileno(), fd)
    try:
        yield caught
    finally:
        stream.flush()
        os.dup2(saved, fd)
        os.close(saved)
