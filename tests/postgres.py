"""A throwaway PostgreSQL cluster for the test session: a real server, no mocks.

``initdb`` into a temporary folder, ``pg_ctl start`` on a free port of 127.0.0.1 with
durability switched off (a test database need not survive a power cut), one fresh
schema per test. PostgreSQL refuses to run as root, so as root the cluster belongs to
the ``postgres`` user and its commands run through ``runuser``.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg


def find_binaries() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """One server for the session; ``new_database`` gives each test its own database."""

    def __init__(self, binaries: Path):
        self.binaries = binaries
        self.root = Path(tempfile.mkdtemp(prefix="seance-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = None if os.geteuid() else pwd.getpwnam("postgres")
        self._names = itertools.count(1)

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.user else []
        subprocess.run(prefix + list(command), check=True, capture_output=True, text=True, timeout=120)

    def start(self, durable: bool = False, template: Path | None = None) -> None:
        """Start the server; ``durable`` keeps PostgreSQL's default fsync and synchronous commits
        (benchmarks: figures a real server would give), else both are off (tests: speed).
        ``template``: a data folder shared by the test workers of one run; the first to start
        runs initdb and leaves its folder there, the others copy it (initdb takes seconds of CPU)."""
        if self.user:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        if template is None:
            self._initdb()
        else:
            with _locked(template.with_name(template.name + ".lock")):
                if template.is_dir():
                    self._copy(template, self.data)
                else:
                    self._initdb()
                    staging = template.with_name(template.name + ".partial")  # never a half copy
                    shutil.rmtree(staging, ignore_errors=True)
                    self._copy(self.data, staging)
                    staging.rename(template)
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c max_connections=200"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                  "-o", options, "-w", "start")

    def _initdb(self) -> None:
        self._run(str(self.binaries / "initdb"), "-D", str(self.data), "-U", "seance", "-A", "trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")

    @staticmethod
    def _copy(source: Path, target: Path) -> None:
        """A data folder copied with its owner and modes (PostgreSQL wants its own 0700 folder)."""
        subprocess.run(["cp", "-a", str(source), str(target)], check=True, capture_output=True, timeout=60)

    def stop(self) -> None:
        try:
            self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://seance@127.0.0.1:{self.port}/{database}"

    async def new_database(self) -> str:
        """A new, empty database of its own for one test: a schema (made in milliseconds, where a
        CREATE DATABASE takes a third of a second), named in the URL so every connection uses it."""
        name = f"test_{next(self._names)}"
        connection = await asyncpg.connect(self.url())
        try:
            await connection.execute(f"CREATE SCHEMA {name}")
        finally:
            await connection.close()
        return f"postgresql://seance@/postgres?host={self.root}&port={self.port}&search_path={name}&application_name={name}"

    async def terminate(self, url: str) -> int:
        """Kill every server process serving the test's database (a dropped connection, as a server
        restart or a network cut makes); returns how many there were."""
        name = url.rsplit("application_name=", 1)[1]
        connection = await asyncpg.connect(self.url())
        try:
            return await connection.fetchval(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = $1", name
            )
        finally:
            await connection.close()


@contextlib.contextmanager
def bench_databases(where: str | None) -> Iterator[Callable[[], str | None]]:
    """A benchmark's ``--postgres``: ``local`` starts a throwaway cluster with PostgreSQL's default
    durability (stopped on leaving) and each call makes a fresh database in it; a URL is used as
    it is; None (SQLite) gives None. Exits with a sentence when ``local`` finds no PostgreSQL."""
    if where != "local":
        yield lambda: where
        return
    if (binaries := find_binaries()) is None:
        sys.exit("PostgreSQL is not installed here (no initdb); pass --postgres URL")
    cluster = Cluster(binaries)
    cluster.start(durable=True)
    try:
        yield lambda: _run_once(cluster.new_database())
    finally:
        cluster.stop()


def _run_once(coroutine: Any) -> Any:
    import asyncio

    return asyncio.run(coroutine)


def count_statements(patch: Callable[[Any, str, Any], None] = setattr) -> Counter[str]:
    """Counts every statement any PostgreSQL connection sends, by method (a round trip each; an
    ``executemany`` is one, asyncpg pipelines its rows). Tests pass ``monkeypatch.setattr``."""
    sent: Counter[str] = Counter()
    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
        original = getattr(asyncpg.connection.Connection, name)

        async def counted(self: Any, *args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            sent[_name] += 1
            return await _original(self, *args, **kwargs)

        patch(asyncpg.connection.Connection, name, counted)
    return sent


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if need be) while inside: one process at a time."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
