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


REFUSAL_STATUSES = frozenset({400, 413, 422})


class ProviderError(Exception):
    """A failed request, described in a sentence a moderator understands.

    ``pause`` marks failures that retrying cannot fix (a rejected key, no
    credit, an unknown model, a used-up daily quota): the room pauses instead
    of carrying on. ``usage`` is what the failed request was billed for and
    was not already handed over as a ``Usage`` part (a refusal, a safety stop
    and a stream that died after a usage report all cost tokens); after
    ``complete`` it is the whole turn's usage, so the room can count it.
    ``reason`` is for the host (which key to set, the provider's own words, a
    balance); ``public`` is the plain sentence a channel may see.
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        pause: bool = False,
        usage: Usage | None = None,
        public: str | None = None,
    ):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.pause = pause
        self.usage = usage
        self._public = public

    @property
    def refused(self) -> bool:
        """The service refused the request as written; the same request will be refused again."""
        return self.status in REFUSAL_STATUSES

    @property
    def public(self) -> str:
        """What spectators and the AIs are told: given, or told apart by status; else the reason,
        which for failures without a status (timeouts, safety stops) is plain already."""
        if self._public is not None:
            return self._public
        return _plain(self.status, self.pause) or self.reason

    def but(self, reason: str) -> ProviderError:
        """The same failure told differently (retries counted, a key blanked)."""
        return ProviderError(reason, status=self.status, pause=self.pause, usage=self.usage, public=self._public)


_PLAIN_STATUS = {
    403: "the provider's moderation refused the request",
    404: "the provider does not know this model",
    400: "the provider refused the request",
    413: "the provider refused the request as too large",
    422: "the provider refused the request",
    408: "the provider timed out",
    429: "the provider is rate limiting requests",
}
_PLAIN_PAUSE = {
    401: "the provider rejected the host's API key",
    403: "the provider rejected the host's API key",
    402: "the host's account with the provider is out of credit",
    400: "the host's account with the provider is out of credit",  # Anthropic says so with a 400
    404: "the provider does not know this model",
    429: "the host's quota with the provider is used up",
}


def _plain(status: int | None, pause: bool) -> str | None:
    if pause:
        if status is None:
            return "no API key set on this host can run this model"
        return _PLAIN_PAUSE.get(status, "the host's account with the provider needs attention")
    if status is None:
        return None
    if status >= 500:
        return f"the provider is having trouble (HTTP {status})"
    return _PLAIN_STATUS.get(status, f"the provider answered HTTP {status}")


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
    provider: ChatProvider, request: ChatRequest, on_text: Callable[[list[str]], None] | None = None
) -> Completion:
    """Run a streamed request to the end.

    ``on_text`` is called after each text delta with the reply's pieces so far: one
    list that keeps growing, so whoever shows it joins it only when it shows it
    (joining the whole reply for every delta made streaming quadratic).

    On failure the ProviderError leaves with every token the turn was billed
    for: the usage parts already received plus the error's own.
    """
    result = Completion()
    parts: list[str] = []
    thoughts: list[str] = []
    billed = False
    try:
        stream = provider.stream(request)
        del request  # the provider keeps it only until it has encoded it (see Turn)
        async with contextlib.aclosing(stream):  # hang up if we stop early
            async for part in stream:
                if isinstance(part, TextDelta):
                    parts.append(part.text)
                    if on_text is not None:
                        on_text(parts)
                elif isinstance(part, ReasoningDelta):
                    thoughts.append(part.text)
                else:
                    result.usage.add(part)
                    billed = True
    except ProviderError as error:
        if billed:
            if error.usage is not None:
                result.usage.add(error.usage)
            error.usage = result.usage
        raise
    result.text = "".join(parts)
    result.reasoning = "".join(thoughts)
    return result
