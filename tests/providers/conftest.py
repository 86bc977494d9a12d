from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import FakeAnthropicServer, FakeGeminiServer


class Sleeps:
    """Records backoff waits instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropicServer]:
    """A fake Anthropic Messages API on 127.0.0.1, stopped after the test."""
    with FakeAnthropicServer() as server:
        yield server


@pytest.fixture
def fake_gemini() -> Iterator[FakeGeminiServer]:
    """A fake Gemini API on 127.0.0.1, stopped after the test."""
    with FakeGeminiServer() as server:
        yield server
