from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import FakeLLMServer


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    """A fake OpenAI-compatible server on 127.0.0.1, stopped after the test."""
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, monkeypatch) -> None:
    """Every test (and any subprocess it starts) keeps its database and pictures in its own tmp dir."""
    monkeypatch.setenv("DATABASE_PATH", str(tmp_path / "data" / "seance.sqlite3"))
    monkeypatch.setenv("PICTURES_DIR", str(tmp_path / "data" / "pictures"))
