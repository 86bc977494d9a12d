"""The interface every model provider adapter implements, and what they share."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from bot.engine import ChatRequest, Picture, Usage


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """Thinking that must never become reply text."""

    text: str


StreamPart = TextDelta | ReasoningDelta | Usage


class ProviderError(Exception):
    """A failed request, described in a sentence a moderator understands.

    ``pause`` marks failures that retrying cannot fix (a rejected key, no
    credit): the room pauses instead of carrying on.
    """

    def __init__(self, reason: str, *, status: int | None = None, pause: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.pause = pause


class ChatProvider(Protocol):
    name: str

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamPart]:
        """Yield the reply as it arrives; raise ProviderError on failure."""
        ...

    async def aclose(self) -> None: ...


class ImageProvider(Protocol):
    name: str

    async def generate(self, prompt: str) -> Picture:
        """Make a picture for ``prompt``; raise ProviderError on failure."""
        ...


@dataclass
class Completion:
    text: str = ""
    reasoning: str = ""
    usage: Usage = field(default_factory=Usage)


async def complete(
    provider: ChatProvider, request: ChatRequest, on_text: Callable[[str], None] | None = None
) -> Completion:
    """Run a streamed request to the end; ``on_text`` sees the text so far after each delta."""
    result = Completion()
    parts: list[str] = []
    thoughts: list[str] = []
    async with contextlib.aclosing(provider.stream(request)) as stream:  # hang up if we stop early
        async for part in stream:
            if isinstance(part, TextDelta):
                parts.append(part.text)
                if on_text is not None:
                    on_text("".join(parts))
            elif isinstance(part, ReasoningDelta):
                thoughts.append(part.text)
            else:
                result.usage.add(part)
    result.text = "".join(parts)
    result.reasoning = "".join(thoughts)
    return result
