"""The model catalog: the display names AIs and moderators type, and what each means.

The catalog is data (``bot/data/models.toml``); this module only parses and
searches it, so the engine never reads files itself.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import Usage


@dataclass(frozen=True)
class ModelInfo:
    """One catalog entry. ``routes`` maps a provider name to that provider's model id."""

    name: str
    routes: dict[str, str]
    context_window: int = 128_000
    max_output: int = 1024
    vision: bool = False
    temperature: bool = True
    reasoning: bool = False
    max_temperature: float = 2.0  # Claude models accept at most 1.0
    input_price: float = 0.0  # dollars per million input tokens
    output_price: float = 0.0  # dollars per million output tokens
    cached_input_price: float | None = None  # per million cache reads; None: input_price
    cache_write_price: float | None = None  # per million tokens written to a cache; None: input_price
    avatar: str | None = None
    preferred: tuple[str, ...] = field(default_factory=tuple)

    @property
    def id(self) -> str:
        """The OpenRouter id, the route every model has."""
        return self.routes.get("openrouter") or next(iter(self.routes.values()))

    def cost(self, usage: Usage) -> float:
        """Dollars for ``usage`` at catalog prices, for providers that report no cost.

        Cached input is counted apart because it is where long rooms save: a
        cache read costs a tenth of fresh input on most services. Without a
        price for it, it costs as much as fresh input (an overestimate, never
        an underestimate).
        """
        cached = self.input_price if self.cached_input_price is None else self.cached_input_price
        written = self.input_price if self.cache_write_price is None else self.cache_write_price
        dollars = (
            usage.input_tokens * self.input_price
            + usage.cached_input_tokens * cached
            + usage.cache_write_tokens * written
            + usage.output_tokens * self.output_price
        )
        return dollars / 1e6


def normalize(name: str) -> str:
    """Lookup key: case, spaces, hyphens, dots and underscores do not matter."""
    return re.sub(r"[\s\-._]+", "", name).casefold()


class UnknownModel(LookupError):
    """Raised for a name not in the catalog; carries the closest names for the message."""

    def __init__(self, name: str, suggestions: list[str]):
        self.name = name
        self.suggestions = suggestions
        hint = f" Closest: {', '.join(suggestions)}." if suggestions else ""
        super().__init__(f'No model called "{name}" in the catalog.{hint}')


class Catalog:
    def __init__(self, models: list[ModelInfo]):
        self.models = models
        self._by_key = {normalize(m.name): m for m in models}

    @classmethod
    def from_toml(cls, text: str) -> Catalog:
        data = tomllib.loads(text)
        models = []
        for name, entry in data.get("models", {}).items():
            entry = dict(entry)
            routes = dict(entry.pop("routes", {}))
            preferred = tuple(entry.pop("preferred", ()))
            models.append(ModelInfo(name=name, routes=routes, preferred=preferred, **entry))
        return cls(models)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize(name) in self._by_key

    def __len__(self) -> int:
        return len(self.models)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def get(self, name: str) -> ModelInfo:
        """The entry for ``name``, or UnknownModel naming the closest entries."""
        key = normalize(name)
        if key in self._by_key:
            return self._by_key[key]
        raise UnknownModel(name, self.closest(name))

    def closest(self, name: str, n: int = 3) -> list[str]:
        key = normalize(name)
        keys = difflib.get_close_matches(key, list(self._by_key), n=n, cutoff=0.4)
        # A partial name ("claude") should still suggest its family.
        keys += [k for k in self._by_key if key and key in k and k not in keys]
        return [self._by_key[k].name for k in keys[:n]]

    def search(self, prefix: str, limit: int = 25) -> list[str]:
        """Names for autocompletion: those containing what was typed, best first."""
        key = normalize(prefix)
        hits = [m.name for m in self.models if key in normalize(m.name)]
        return hits[:limit]
