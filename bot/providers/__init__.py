"""Model providers behind one interface, and the choice of which one serves a model."""

from __future__ import annotations

from collections.abc import Iterable

from bot.engine import ModelInfo
from bot.settings import Settings

from .base import (
    ChatProvider,
    Completion,
    ImageProvider,
    ProviderError,
    ReasoningDelta,
    StreamPart,
    TextDelta,
    complete,
)
from .openai_compat import NO_KEY_REASON, OpenAICompatProvider

__all__ = [
    "ChatProvider", "Completion", "ImageProvider", "ProviderError", "ReasoningDelta", "StreamPart",
    "TextDelta", "complete", "OpenAICompatProvider", "ProviderPool", "make_chat_provider", "route_for",
]


def route_for(model: ModelInfo, settings: Settings) -> str:
    """The service that will run ``model``: for now OpenRouter, the route every model has."""
    if settings.openrouter_api_key is None:
        raise ProviderError(NO_KEY_REASON, pause=True)
    if "openrouter" not in model.routes:
        raise ProviderError(f"{model.name} has no OpenRouter model id in the catalog")
    return "openrouter"


def make_chat_provider(model: ModelInfo, settings: Settings) -> ChatProvider:
    """A new provider able to run ``model``; a ProviderPool shares them instead."""
    return _build(route_for(model, settings), settings)


def _build(route: str, settings: Settings) -> ChatProvider:
    if route == "openrouter":
        return OpenAICompatProvider.for_openrouter(settings)
    raise ProviderError(f"no provider is set up for the {route} route")


class ProviderPool:
    """One provider per route, so every model on a service shares one connection pool."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._providers: dict[str, ChatProvider] = {}

    def check(self, models: Iterable[ModelInfo]) -> None:
        """Raise the ProviderError a room would hit, before the room starts."""
        for model in models:
            route_for(model, self._settings)

    def get(self, model: ModelInfo) -> ChatProvider:
        route = route_for(model, self._settings)
        if route not in self._providers:
            self._providers[route] = _build(route, self._settings)
        return self._providers[route]

    async def aclose(self) -> None:
        providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            await provider.aclose()
