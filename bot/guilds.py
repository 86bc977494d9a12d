"""Per-server settings and spending: what each Discord server decided for itself.

``.env`` (``bot/settings.py``) holds the host's values; a server changes some of
them with ``/seance config``, and what it set lives in the ``guild_settings``
table (NULL: the host's value). ``GuildSettings.get`` merges the two into one
frozen ``GuildConfig``, cached per server and dropped on every write.

Money and pictures are the host's to pay for, so there a server may only be
stricter: its value counts when it is lower than the host's (for the picture
window, longer). The models a server allows are narrowed the same way, and by
what the configured keys can run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bot import data
from bot.engine import Catalog, ModelInfo, RoomSettings, Scenario, UnknownModel
from bot.engine.scenarios import scenario_from_table, scenario_table
from bot.providers import ProviderError, route_for
from bot.providers.local import EMBEDDED_ROUTE
from bot.settings import Settings
from bot.storage import Store

# The stored columns whose host value is a ceiling, and which way is stricter.
LOWER_IS_STRICTER = ("images_per_ai", "images_per_room", "images_at_once", "room_budget_usd", "daily_budget_usd")
HOST_VALUES = {  # guild_settings column -> Settings attribute with the host's value
    "default_turns": "default_turns",
    "turn_delay": "turn_delay",
    "images_per_ai": "images_per_ai",
    "image_window": "image_window_turns",
    "images_per_room": "images_per_room",
    "images_at_once": "images_at_once",
    "room_budget_usd": "room_budget_usd",
    "daily_budget_usd": "daily_budget_usd",
}


@dataclass(frozen=True)
class GuildConfig:
    """One server's effective settings: its own where it set them, else the host's."""

    guild_id: int
    moderator_roles: tuple[str, ...]  # role ids, or MODERATOR_ROLE (a name or an id)
    allowed_models: tuple[str, ...] | None  # None: every model the host's keys can run
    default_models: tuple[str, ...]
    default_turns: int
    turn_delay: float
    open_floor: bool
    images_per_ai: int | None
    image_window: int
    images_per_room: int | None
    images_at_once: int | None
    room_budget_usd: float | None
    daily_budget_usd: float | None
    own: frozenset[str] = field(default_factory=frozenset)  # what the server set itself
    scenarios: tuple[Scenario, ...] = ()  # the server's own, from /seance scenarios add:

    def all_scenarios(self) -> dict[str, Scenario]:
        """The scenarios rooms here may start from: the built-in ones, then the server's own."""
        return data.scenarios() | {s.name: s for s in self.scenarios}

    def room_settings(self, settings: Settings, turns: int, image_price: float) -> RoomSettings:
        """The engine's settings for a room in this server."""
        return self.apply(settings.room_settings(turns, image_price))

    def apply(self, room: RoomSettings) -> RoomSettings:
        """``room`` with this server's limits (for running rooms after a change, and restored ones)."""
        return replace(
            room,
            budget_usd=self.room_budget_usd,
            images_per_ai=self.images_per_ai,
            image_window=self.image_window,
            images_per_room=self.images_per_room,
            images_at_once=self.images_at_once,
        )


def _stricter(column: str, own: Any, host: Any) -> Any:
    if own is None or host is None:
        return host if own is None else own
    if column == "image_window":
        return max(own, host)
    return min(own, host) if column in LOWER_IS_STRICTER else own


def host_ceiling(settings: Settings, column: str) -> Any:
    """The host's value of ``column`` when a server may not go past it, else None."""
    if column in LOWER_IS_STRICTER:
        return getattr(settings, HOST_VALUES[column])
    return None


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(name.strip() for name in (text or "").split(",") if name.strip())


def day_ends_in(now: float) -> str:
    """How long until the next UTC day, e.g. "5 h 12 min"."""
    left = int(86400 - now % 86400)
    hours, minutes = divmod((left + 59) // 60, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


class GuildSettings:
    """The resolver: one ``GuildConfig`` per server, cached, dropped on every write."""

    def __init__(self, settings: Settings, store: Store | None):
        self.settings = settings
        self.store = store
        self._cache: dict[int, GuildConfig] = {}
        self._usable: dict[str, str | None] = {}  # model name -> why this host cannot run it on Discord

    async def get(self, guild_id: int) -> GuildConfig:
        cached = self._cache.get(guild_id)
        if cached is None:
            own = await self.store.guild_settings(guild_id) if self.store is not None else {}
            tables = await self.store.guild_scenarios(guild_id) if self.store is not None else {}
            scenarios = tuple(scenario_from_table(name, table) for name, table in tables.items())
            cached = self._cache[guild_id] = replace(self.resolve(guild_id, own), scenarios=scenarios)
        return cached

    async def add_scenarios(self, guild_id: int, scenarios: dict[str, Scenario]) -> GuildConfig:
        """Keep a server's new scenarios (replacing its own of the same name) and return the new config."""
        if self.store is None:
            raise RuntimeError("the database is not open")
        self._cache.pop(guild_id, None)
        await self.store.set_guild_scenarios(guild_id, {n: scenario_table(s) for n, s in scenarios.items()})
        self._cache.pop(guild_id, None)
        return await self.get(guild_id)

    async def remove_scenario(self, guild_id: int, name: str) -> bool:
        """Forget one of a server's scenarios; rooms already started from it keep their copy."""
        if self.store is None:
            raise RuntimeError("the database is not open")
        self._cache.pop(guild_id, None)
        removed = await self.store.remove_guild_scenario(guild_id, name)
        self._cache.pop(guild_id, None)
        return removed

    async def update(self, guild_id: int, **values: Any) -> GuildConfig:
        """Store what a server set (None: back to the host's value) and return the new config."""
        if self.store is None:
            raise RuntimeError("the database is not open")
        self._cache.pop(guild_id, None)
        await self.store.set_guild_settings(guild_id, values)
        self._cache.pop(guild_id, None)  # a read between the two could have cached the old row
        return await self.get(guild_id)

    def resolve(self, guild_id: int, own: dict[str, Any]) -> GuildConfig:
        """Merge a server's stored values over the host's."""
        s = self.settings
        set_here = frozenset(name for name, value in own.items() if value is not None)
        values = {
            column: _stricter(column, own.get(column), getattr(s, attribute))
            for column, attribute in HOST_VALUES.items()
        }
        roles = own.get("moderator_roles")
        host_roles = (s.moderator_role,) if s.moderator_role else ()
        allowed = own.get("allowed_models")
        host_allowed = _names(s.allowed_models) or None
        if allowed is not None and host_allowed is not None:
            allowed = [name for name in allowed if name in host_allowed]
        open_floor = own.get("open_floor")
        return GuildConfig(
            guild_id=guild_id,
            moderator_roles=tuple(str(r) for r in roles) if roles is not None else host_roles,
            allowed_models=tuple(allowed) if allowed is not None else host_allowed,
            default_models=tuple(own.get("default_models") or _names(s.default_models)),
            open_floor=s.open_floor_allowed and (open_floor is None or bool(open_floor)),
            own=set_here,
            **values,
        )

    # --- models ------------------------------------------------------------------

    def why_not_here(self, model: ModelInfo) -> str | None:
        """Why the host cannot run ``model`` on Discord (no key, or the embedded model not offered)."""
        if model.name not in self._usable:
            self._usable[model.name] = self._why_not(model)
        return self._usable[model.name]

    def _why_not(self, model: ModelInfo) -> str | None:
        from bot.console import why_not  # the console's test of keys and the embedded install

        if (reason := why_not(model, self.settings)) is not None:
            return reason
        try:
            embedded = route_for(model, self.settings) == EMBEDDED_ROUTE
        except ProviderError as exc:
            return exc.reason
        if embedded and not self.settings.offer_embedded_model:
            return f"{model.name} runs on the host's own CPU, which this host does not offer on Discord"
        return None

    def why_not(self, config: GuildConfig, model: ModelInfo) -> str | None:
        """Why ``model`` cannot be picked in this server, in words for a moderator; None if it can."""
        if config.allowed_models is not None and model.name not in config.allowed_models:
            return (
                f"{model.name} is not allowed in this server (a server manager can change that with "
                "`/seance config models`)."
            )
        return self.why_not_here(model)

    def catalog(self, config: GuildConfig) -> Catalog:
        """Every model a moderator, or an AI, may bring into a room of this server."""
        return Catalog([m for m in data.catalog().models if self.why_not(config, m) is None])

    def check_models(self, config: GuildConfig, names: list[str]) -> list[ModelInfo]:
        """The named models, or ValueError saying which one cannot be used here and why."""
        models = []
        for name in names:
            try:
                model = data.catalog().get(name)
            except UnknownModel as exc:
                raise ValueError(str(exc)) from None
            if (reason := self.why_not(config, model)) is not None:
                raise ValueError(reason)
            models.append(model)
        return models

    # --- spending -------------------------------------------------------------------

    async def spent_today(self, guild_id: int) -> float:
        if self.store is None:
            return 0.0
        return await self.store.spent(self.store.today(), guild_id=guild_id)

    async def over_daily_limit(self, guild_id: int) -> str | None:
        """Why this server may not spend more today, or None."""
        limit = (await self.get(guild_id)).daily_budget_usd
        if limit is None:
            return None
        spent = await self.spent_today(guild_id)
        if spent < limit:
            return None
        clock: Callable[[], float] = self.store.clock if self.store is not None else time.time
        return (
            f"this server has reached its daily spending limit of ${limit:.2f} (${spent:.4f} today); "
            f"rooms can run again after 00:00 UTC, in {day_ends_in(clock())}"
        )


# --- the host's bookkeeping: python -m bot usage ----------------------------------------


@dataclass
class _Tally:
    usd: float = 0.0
    tokens: int = 0
    turns: int = 0
    pictures: int = 0

    def add(self, kind: str, count: int, tokens: int, usd: float) -> None:
        self.usd += usd
        self.tokens += tokens
        if kind == "image":
            self.pictures += count
        elif kind == "chat":  # a summary's tokens and dollars count, but it is no turn
            self.turns += count

    def line(self, name: str) -> str:
        return f"{name:<28} ${self.usd:>10.4f} {self.tokens:>13,} tokens {self.turns:>6} turns {self.pictures:>5} pictures"


async def usage_report(store: Store, since: str | None, until: str | None, guild_id: int | None) -> str:
    """Tokens and dollars per server and per room between two UTC days (inclusive)."""
    rows = await store.spending(since, until, guild_id)
    span = f"from {since or 'the start'} to {until or 'today'} (UTC days)"
    if not rows:
        return f"Nothing was spent {span}."
    servers: dict[int | None, _Tally] = {}
    rooms: dict[int | None, dict[int, _Tally]] = {}
    total = _Tally()
    for row in rows:
        room = rooms.setdefault(row.guild_id, {}).setdefault(row.room_id, _Tally())
        for tally in (servers.setdefault(row.guild_id, _Tally()), room, total):
            tally.add(row.kind, row.count, row.tokens, row.usd)
    lines = [f"Spending {span}:"]
    for guild, tally in servers.items():
        lines.append(tally.line("console" if guild is None else f"server {guild}"))
        lines += [room_tally.line(f"  room {room}") for room, room_tally in rooms[guild].items()]
    lines.append(total.line("total"))
    return "\n".join(lines)
