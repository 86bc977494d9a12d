"""Model providers behind one interface, and the choice of which one serves a model."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.engine import ModelInfo
from bot.settings import Settings

from .anthropic import AnthropicProvider
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
from .gemini import GeminiProvider
from .http import limits_from
from .local import EMBEDDED_ROUTE, LocalProvider
from .openai_compat import OpenAICompatProvider

__all__ = [
    "ChatProvider", "Completion", "ImageProvider", "ProviderError", "ReasoningDelta", "StreamPart",
    "TextDelta", "complete", "AnthropicProvider", "GeminiProvider", "OpenAICompatProvider",
    "ProviderPool", "ROUTES", "make_chat_provider", "route_for", "routes_in_order",
]


@dataclass(frozen=True)
class Route:
    """A service a model can run on: what makes it usable, and how to reach it."""

    needs: str | None  # the setting that must be set, as its environment name
    ready: Callable[[Settings], bool]
    build: Callable[[Settings], ChatProvider]


def _openai(settings: Settings) -> ChatProvider:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return OpenAICompatProvider(
        "openai", settings.openai_base_url, key, route="openai", key_env="OPENAI_API_KEY",
        token_field="max_completion_tokens", **limits_from(settings),
    )


def _deepseek(settings: Settings) -> ChatProvider:
    key = settings.deepseek_api_key.get_secret_value() if settings.deepseek_api_key else None
    return OpenAICompatProvider(
        "deepseek", settings.deepseek_base_url, key, route="deepseek", key_env="DEEPSEEK_API_KEY",
        **limits_from(settings),
    )


def _local(settings: Settings) -> ChatProvider:
    key = settings.local_api_key.get_secret_value() if settings.local_api_key else None
    return OpenAICompatProvider(
        "local", settings.local_base_url or "", key, route="local", key_env="LOCAL_API_KEY",
        **limits_from(settings),
    )


ROUTES: dict[str, Route] = {
    EMBEDDED_ROUTE: Route(None, lambda s: True, LocalProvider),
    "anthropic": Route("ANTHROPIC_API_KEY", lambda s: s.anthropic_api_key is not None, AnthropicProvider.from_settings),
    "gemini": Route("GEMINI_API_KEY", lambda s: s.gemini_api_key is not None, GeminiProvider.from_settings),
    "openai": Route("OPENAI_API_KEY", lambda s: s.openai_api_key is not None, _openai),
    "deepseek": Route("DEEPSEEK_API_KEY", lambda s: s.deepseek_api_key is not None, _deepseek),
    "local": Route("LOCAL_BASE_URL", lambda s: s.local_base_url is not None, _local),
    "openrouter": Route(
        "OPENROUTER_API_KEY", lambda s: s.openrouter_api_key is not None, OpenAICompatProvider.for_openrouter
    ),
}


def routes_in_order(model: ModelInfo) -> list[str]:
    """The routes to try for ``model``: its ``preferred`` ones, then the embedded one,
    then the native ones in catalog order, OpenRouter last (the fallback that runs all)."""
    first = [route for route in model.preferred if route in model.routes]
    rest = [route for route in model.routes if route not in first]
    rest.sort(key=lambda route: (route != EMBEDDED_ROUTE, route == "openrouter"))  # stable: keeps catalog order
    return [route for route in first + rest if route in ROUTES]


def route_for(model: ModelInfo, settings: Settings) -> str:
    """The first route in ``routes_in_order`` whose key (or address) is set."""
    candidates = routes_in_order(model)
    for route in candidates:
        if ROUTES[route].ready(settings):
            return route
    raise ProviderError(_no_route_reason(model, candidates), pause=True)


def _no_route_reason(model: ModelInfo, candidates: list[str]) -> str:
    if not candidates:
        return f"{model.name} has no route Séance knows in the catalog ({', '.join(model.routes) or 'none'})"
    settings = " or ".join(f"{ROUTES[route].needs}=..." for route in candidates)
    hint = " (get an OpenRouter key at https://openrouter.ai/keys)" if "openrouter" in candidates else ""
    return f"No API key is set that can run {model.name}. Put {settings} in .env{hint} and start again."


def make_chat_provider(model: ModelInfo, settings: Settings) -> ChatProvider:
    """A new provider able to run ``model``; a ProviderPool shares them instead."""
    return _build(route_for(model, settings), settings)


def _build(route: str, settings: Settings) -> ChatProvider:
    return ROUTES[route].build(settings)


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
