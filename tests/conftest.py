from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.fakes import FakeLLMServer
from tests.postgres import Cluster, find_binaries


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than the cores. Some tests mostly wait (real bot processes
    keeping leases, consoles killed and restarted), and a spare worker fills those waits: on two
    cores the suite took 125 s with two workers, 108 s with three, 116 s with four."""
    return (os.cpu_count() or 1) + 1


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "settings(**overrides): Settings values for the Discord test bot")
    config.addinivalue_line(
        "markers", "logs_errors: the test expects ERROR log records (it injects a failure that must be logged)"
    )


# Seconds each long module takes on one idle core (measured with --durations; update when one grows).
HEAVY = {
    "tests/providers/test_local.py": 30,  # the real embedded model, in a console child
    "tests/test_restart.py": 22,  # console children killed and resumed
    "tests/engine/test_commands.py": 12,  # hostile input, a quarter megabyte per case
    "tests/test_processes.py": 16,  # two bot processes and a lease's real seconds
    "tests/engine/test_context.py": 15,
    "tests/test_storage.py": 15,
    "tests/cogs/test_restart.py": 15,
    "tests/cogs/test_moderation.py": 13,
    "tests/cogs/test_coordinator.py": 12,
    "tests/test_console.py": 10,
    "tests/test_stage.py": 8,
    "tests/test_export.py": 8,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest modules first. ``--dist loadfile`` runs a whole module on one worker and hands out
    modules in collection order (``--no-loadscope-reorder``; xdist's own order, most tests first,
    started the two-process and console-restart modules last, so one worker ran them alone for
    half a minute after the other had finished). The modules in HEAVY go first, longest first;
    the rest follow with the most tests first, so the short ones fill in at the end."""
    tests = Counter(item.nodeid.split("::", 1)[0] for item in items)
    items.sort(key=lambda item: (-HEAVY.get(m := item.nodeid.split("::", 1)[0], 0), -tests[m], m))


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    """A fake OpenAI-compatible server on 127.0.0.1, stopped after the test."""
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One real PostgreSQL server for the whole session (of each xdist worker), started on first
    use; the workers of one run share one initdb (its data folder, copied) in the run's temp folder."""
    binaries = find_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql); .ci/run installs it")
    cluster = Cluster(binaries)
    shared = os.environ.get("PYTEST_XDIST_WORKER") and tmp_path_factory.getbasetemp().parent
    cluster.start(template=shared / "postgres-template" if shared else None)
    yield cluster
    cluster.stop()


@pytest.fixture
async def pg_url(postgres_cluster: Cluster) -> str:
    """The URL of a new, empty database of the session's PostgreSQL server."""
    return await postgres_cluster.new_database()


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, monkeypatch) -> None:
    """Every test (and any subprocess it starts) keeps its database and pictures in its own tmp dir."""
    monkeypatch.setenv("DATABASE_PATH", str(tmp_path / "data" / "seance.sqlite3"))
    monkeypatch.setenv("PICTURES_DIR", str(tmp_path / "data" / "pictures"))


class ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def error_logs(request: pytest.FixtureRequest) -> Iterator[list[logging.LogRecord]]:
    """Fails a test that logs at ERROR unless it is marked ``logs_errors``: an error logged where
    nobody looks (a traceback behind a passing test) is a defect. A marked test gets the records
    to check. Also undoes any logging setup the test made (``python -m bot`` run in-process)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    collector = ErrorRecords()
    root.addHandler(collector)
    yield collector.records
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)
    if collector.records and request.node.get_closest_marker("logs_errors") is None:
        lines = "\n".join(f"  {r.name}: {r.getMessage()}" for r in collector.records)
        pytest.fail(f"ERROR logged (mark the test logs_errors if it is expected):\n{lines}", pytrace=False)
