from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import FakeLLMServer


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    """A fake OpenAI-compatible server on 127.0.0.1, stopped after the test."""
    with FakeLLMServer() as server:
        yield server
