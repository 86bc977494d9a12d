"""``/seance config``: a server's own Séance settings, set by its managers inside Discord.

Members with Manage Server (or the bot's owner) change them; moderators may read
them with ``/seance config show``. Every change is stored at once (``bot/guilds.py``
resolves it over the host's ``.env``), and the server's running rooms follow it.
Money and picture limits can only be made stricter than the host's.

The group hangs under ``/seance`` (``Moderation`` attaches it), so commands read
``/seance config spending daily_usd:5``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands

from bot import data
from bot.engine import UnknownModel
from bot.guilds import GuildConfig, day_ends_in, host_ceiling
from cogs.errors import mark_handled

if TYPE_CHECKING:
    from bot.bot import SeanceBot
    from cogs.coordinator import Coordinator


NOT_MANAGER = "Only members with the Manage Server permission (or the bot's owner) can change Séance's settings here."

# What `/seance config reset` can put back to the host's value, and the columns behind each.
RESETS: dict[str, tuple[str, ...]] = {
    "moderator roles": ("moderator_roles",),
    "allowed models": ("allowed_models",),
    "default models": ("default_models",),
    "turns and delay": ("default_turns", "turn_delay"),
    "open floor": ("open_floor",),
    "picture limits": ("images_per_ai", "image_window", "images_per_room", "images_at_once"),
    "spending limits": ("room_budget_usd", "daily_budget_usd"),
}
RESETS["everything"] = tuple(column for columns in RESETS.values() for column in columns)


class NotManager(app_commands.CheckFailure):
    """Raised by the group's check; its message is what the member is told."""


class ConfigGroup(app_commands.Group):
    def __init__(self, bot: SeanceBot):
        super().__init__(name="config", description="This server's Séance settings (Manage Server).")
        self.bot = bot

    @property
    def guild_settings(self) -> Any:
        return self.bot.guild_settings

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None:
            return False
        if interaction.permissions.manage_guild or await self.bot.is_owner(interaction.user):
            return True
        if interaction.command is not None and interaction.command.name == "show":
            from cogs.moderation import is_moderator  # moderators may read what they work within

            config = await self.guild_settings.get(interaction.guild_id)
            if is_moderator(interaction.user, interaction.permissions, config.moderator_roles):
                return True
            raise NotManager("Only moderators and server managers can see Séance's settings here.")
        raise NotManager(NOT_MANAGER)

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        original = getattr(error, "original", error)
        if isinstance(original, NotManager):
            await _say(interaction, str(original))
            mark_handled(interaction)
        # anything else: the bot-wide tree (cogs/errors.py) answers with an error id and logs it once

    # --- reading -------------------------------------------------------------------

    @app_commands.command(name="show", description="This server's Séance settings, and what it spent today.")
    async def show(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        config = await self.guild_settings.get(interaction.guild_id)
        spent = await self.guild_settings.spent_today(interaction.guild_id)
        await _say(interaction, describe(config, self.bot, interaction.guild, spent))

    # --- changing ------------------------------------------------------------------

    @app_commands.command(name="moderators", description="Add or remove a role whose members may moderate rooms.")
    @app_commands.describe(add="A role that may moderate", remove="A role that may no longer moderate")
    async def moderators(
        self, interaction: discord.Interaction, add: discord.Role | None = None, remove: discord.Role | None = None
    ) -> None:
        if add is None and remove is None:
            return await _say(interaction, "Name a role to `add` or to `remove`.")
        config = await self._config(interaction)
        roles = list(config.moderator_roles)  # the host's MODERATOR_ROLE (a name or an id) is kept as given
        if add is not None and str(add.id) not in roles:
            roles.append(str(add.id))
        if remove is not None:
            roles = [r for r in roles if r != str(remove.id) and r.casefold() != remove.name.casefold()]
        await self._save(interaction, moderator_roles=roles)

    @app_commands.command(name="models", description="Which models rooms here may use, and the default set.")
    @app_commands.describe(
        allowed='Catalog models, comma-separated, or "all" for every model the host can run',
        defaults="The models of /seance start when a moderator names none, comma-separated",
    )
    async def models(
        self,
        interaction: discord.Interaction,
        allowed: app_commands.Range[str, 1, 1000] | None = None,
        defaults: app_commands.Range[str, 1, 500] | None = None,
    ) -> None:
        if allowed is None and defaults is None:
            return await _say(interaction, "Give `allowed` models, `defaults`, or both.")
        config = await self._config(interaction)
        values: dict[str, Any] = {}
        try:
            if allowed is not None:
                values["allowed_models"] = None if allowed.strip().casefold() == "all" else self._runnable(allowed)
                config = self.guild_settings.resolve(config.guild_id, _own(config) | values)
            if defaults is not None:
                chosen = self.guild_settings.check_models(config, _names(defaults))
                if len(chosen) > self.bot.settings.max_ais:
                    raise ValueError(f"A room holds at most {self.bot.settings.max_ais} AIs.")
                values["default_models"] = [m.name for m in chosen]
        except ValueError as exc:
            return await _say(interaction, str(exc))
        await self._save(interaction, **values)

    @app_commands.command(name="rooms", description="Defaults for /seance start, and whether the open floor may be used.")
    @app_commands.describe(
        turns="AI turns of a room when /seance start gives none",
        delay="Seconds between turns when /seance start gives none",
        open_floor="Whether rooms here may let the AIs read what people write",
    )
    async def rooms(
        self,
        interaction: discord.Interaction,
        turns: app_commands.Range[int, 1, 1000] | None = None,
        delay: app_commands.Range[float, 0.0, 3600.0] | None = None,
        open_floor: bool | None = None,
    ) -> None:
        values = {"default_turns": turns, "turn_delay": delay, "open_floor": open_floor}
        values = {k: v for k, v in values.items() if v is not None}
        if not values:
            return await _say(interaction, "Give `turns`, `delay`, `open_floor`, or several.")
        if open_floor and not self.bot.settings.open_floor_allowed:
            return await _say(interaction, "The host does not allow the open floor on any server.")
        await self._save(interaction, **values)

    @app_commands.command(name="pictures", description="Limits on the pictures AIs make with !image.")
    @app_commands.describe(
        per_ai="Pictures one AI may ask for within `every_turns` turns (0: none)",
        every_turns="The window of turns for `per_ai`",
        per_room="Pictures one room may make in its life (0: none)",
        at_once="Pictures being made at the same time in one room",
    )
    async def pictures(
        self,
        interaction: discord.Interaction,
        per_ai: app_commands.Range[int, 0, 1000] | None = None,
        every_turns: app_commands.Range[int, 1, 1000] | None = None,
        per_room: app_commands.Range[int, 0, 10000] | None = None,
        at_once: app_commands.Range[int, 1, 100] | None = None,
    ) -> None:
        values = {
            "images_per_ai": per_ai, "image_window": every_turns, "images_per_room": per_room, "images_at_once": at_once,
        }
        await self._limits(interaction, values, "Give `per_ai`, `every_turns`, `per_room`, `at_once`, or several.")

    @app_commands.command(name="spending", description="Spending limits in dollars: per room, and per server per UTC day.")
    @app_commands.describe(
        room_usd="A room pauses when it has cost this much (chat and pictures)",
        daily_usd="No room here runs once the server has spent this much today (UTC)",
    )
    async def spending(
        self,
        interaction: discord.Interaction,
        room_usd: app_commands.Range[float, 0.01, 100000.0] | None = None,
        daily_usd: app_commands.Range[float, 0.01, 100000.0] | None = None,
    ) -> None:
        values = {"room_budget_usd": room_usd, "daily_budget_usd": daily_usd}
        await self._limits(interaction, values, "Give `room_usd`, `daily_usd`, or both.")

    @app_commands.command(name="reset", description="Put settings back to the host's defaults.")
    @app_commands.describe(setting="What to put back")
    @app_commands.choices(setting=[app_commands.Choice(name=name, value=name) for name in RESETS])
    async def reset(self, interaction: discord.Interaction, setting: str) -> None:
        await self._save(interaction, **{column: None for column in RESETS[setting]})

    # --- plumbing ---------------------------------------------------------------------

    async def _config(self, interaction: discord.Interaction) -> GuildConfig:
        assert interaction.guild_id is not None
        return await self.guild_settings.get(interaction.guild_id)

    async def _limits(self, interaction: discord.Interaction, values: dict[str, Any], empty: str) -> None:
        values = {k: v for k, v in values.items() if v is not None}
        if not values:
            return await _say(interaction, empty)
        for column, value in values.items():
            ceiling = host_ceiling(self.bot.settings, column)
            if ceiling is not None and value > ceiling:
                shown = f"${ceiling:.2f}" if column.endswith("_usd") else f"{ceiling}"
                limit = f"The host allows at most {shown} for {_LABELS[column]}; choose that or less."
                return await _say(interaction, limit)
        await self._save(interaction, **values)

    async def _save(self, interaction: discord.Interaction, **values: Any) -> None:
        assert interaction.guild_id is not None
        config = await self.guild_settings.update(interaction.guild_id, **values)
        coordinator = cast("Coordinator | None", self.bot.get_cog("Coordinator"))
        if coordinator is not None:
            coordinator.apply_config(config)
        spent = await self.guild_settings.spent_today(interaction.guild_id)
        shown = describe(config, self.bot, interaction.guild, spent)
        await _say(interaction, "Saved; running rooms here follow at once.\n" + shown)

    def _runnable(self, text: str) -> list[str]:
        """Catalog names from ``text``, each one the host can run; ValueError otherwise."""
        names = []
        for name in _names(text):
            try:
                model = data.catalog().get(name)
            except UnknownModel as exc:
                raise ValueError(str(exc)) from None
            if (reason := self.guild_settings.why_not_here(model)) is not None:
                raise ValueError(reason)
            names.append(model.name)
        if not names:
            raise ValueError('Name at least one model, or "all".')
        return names

    @models.autocomplete("allowed")
    async def _allowed(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await models_choices(self.bot, interaction, current, everything=True)

    @models.autocomplete("defaults")
    async def _defaults(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await models_choices(self.bot, interaction, current)


_LABELS = {
    "images_per_ai": "pictures per AI",
    "images_per_room": "pictures per room",
    "images_at_once": "pictures at once",
    "room_budget_usd": "a room's spending",
    "daily_budget_usd": "a server's spending per day",
}


def describe(config: GuildConfig, bot: SeanceBot, guild: discord.Guild | None, spent_today: float) -> str:
    """The settings as a short list; "(host)" marks values this server did not set itself."""
    from cogs.moderation import role_names

    def mark(*columns: str) -> str:
        return "" if any(c in config.own for c in columns) else " (host)"

    def money(value: float | None) -> str:
        return "no limit" if value is None else f"${value:.2f}"

    def count(value: int | None) -> str:
        return "no limit" if value is None else str(value)

    roles = ", ".join(role_names(guild, config.moderator_roles)) or "none"
    allowed = ", ".join(config.allowed_models or ()) or "none"
    if config.allowed_models is None:
        allowed = "every model the host can run"
    usable = ", ".join(bot.guild_settings.catalog(config).names) or "none"
    clock = bot.store.clock() if bot.store is not None else 0.0
    lines = [
        f"**Moderators**: Manage Messages, or the role(s): {roles}{mark('moderator_roles')}",
        f"**Allowed models**: {allowed}{mark('allowed_models')} · usable now: {usable}",
        f"**Default models**: {', '.join(config.default_models)}{mark('default_models')}",
        f"**Rooms**: {config.default_turns} turns, {config.turn_delay:g} s between turns"
        f"{mark('default_turns', 'turn_delay')}"
        f" · open floor {'allowed' if config.open_floor else 'not allowed'}{mark('open_floor')}",
        f"**Pictures**: {count(config.images_per_ai)} per AI every {config.image_window} turns,"
        f" {count(config.images_per_room)} per room, {count(config.images_at_once)} at once"
        f"{mark('images_per_ai', 'image_window', 'images_per_room', 'images_at_once')}"
        f" · ${bot.picture_price if bot.settings.image_price_usd is None else bot.settings.image_price_usd:.3f} each",
        f"**Spending**: {money(config.room_budget_usd)} per room{mark('room_budget_usd')},"
        f" {money(config.daily_budget_usd)} per day{mark('daily_budget_usd')}"
        f" · spent today (UTC): ${spent_today:.4f}, the day ends in {day_ends_in(clock)}",
    ]
    return "\n".join(lines)


def _own(config: GuildConfig) -> dict[str, Any]:
    """The values a server set, as stored (for re-resolving with a change applied)."""
    stored: dict[str, Any] = {}
    for column in config.own:
        value = getattr(config, column, None)
        stored[column] = list(value) if isinstance(value, tuple) else value
    return stored


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


async def models_choices(
    bot: SeanceBot, interaction: discord.Interaction, current: str, everything: bool = False
) -> list[app_commands.Choice[str]]:
    """Autocomplete for a comma-separated list of the models this server may use
    (``everything``: all the host can run, for widening what the server allows)."""
    done, comma, typing = current.rpartition(",")
    prefix = f"{done.strip()}, " if comma else ""
    config = await bot.guild_settings.get(interaction.guild_id or 0)
    if everything:
        config = replace(config, allowed_models=None)
    catalog = bot.guild_settings.catalog(config)
    names = [prefix + name for name in catalog.search(typing.strip())]
    return [app_commands.Choice(name=n, value=n) for n in names if len(n) <= 100][:25]


async def _say(interaction: discord.Interaction, text: str) -> None:
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True)
    else:
        await interaction.response.send_message(text, ephemeral=True)
