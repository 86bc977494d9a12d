"""The bot-wide error handler, the discord.py way: a listener for prefix commands, a tree for slash commands.

- The prefix is a mention, so people write "@Séance hello" as they would to
  anyone: an unknown prefix command is ignored, quietly.
- A refused check (not the owner, not in a server, a missing permission) is
  answered in one line.
- Anything unexpected is answered with one sentence and a short error id, and
  logged exactly once with its traceback and that id, so the owner can find it.
- Slash commands are answered privately. A command Discord shows but this bot
  does not know (or knows with other options) means the installed commands
  are out of date: the answer says the owner runs sync.

A cog that answers an error itself calls ``mark_handled``, so nobody is answered twice.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

if TYPE_CHECKING:
    from bot.bot import SeanceBot

log = logging.getLogger(__name__)

HANDLED = "seance_error_handled"
OUT_OF_DATE = (
    "This server's slash commands are out of date; the bot's owner needs to run `python -m bot sync` "
    "(or mention the bot with `sync`)."
)
ONLY_IN_SERVERS = "That works only in a server."


def mark_handled(target: commands.Context[SeanceBot] | discord.Interaction) -> None:
    """A cog answered this error itself; the bot-wide handler leaves it alone."""
    if isinstance(target, discord.Interaction):
        target.extras[HANDLED] = True
    else:
        setattr(target, HANDLED, True)


def was_handled(target: commands.Context[SeanceBot] | discord.Interaction) -> bool:
    if isinstance(target, discord.Interaction):
        return bool(target.extras.get(HANDLED))
    return bool(getattr(target, HANDLED, False))


def new_error_id() -> str:
    """Short enough to read out, long enough not to repeat in one log."""
    return secrets.token_hex(4)


def _permissions(names: list[str]) -> str:
    words = [name.replace("_", " ").replace("guild", "server").title() for name in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def unexpected(what: str, error: BaseException) -> str:
    """Log ``error`` once with a new id; return the sentence that gives the user that id."""
    error_id = new_error_id()
    log.error("%s failed (error %s)", what, error_id, exc_info=error)
    return f"Something went wrong with {what}; the bot's owner can find it in the log as error {error_id}."


# --- slash commands ------------------------------------------------------------------


def slash_refusal(error: app_commands.AppCommandError) -> str | None:
    """The one-line answer to an expected failure of a slash command; None if it is unexpected."""
    if isinstance(error, (app_commands.CommandNotFound, app_commands.CommandSignatureMismatch)):
        return OUT_OF_DATE
    if isinstance(error, app_commands.NoPrivateMessage):
        return ONLY_IN_SERVERS
    if isinstance(error, app_commands.MissingPermissions):
        return f"You need {_permissions(error.missing_permissions)} for that."
    if isinstance(error, app_commands.BotMissingPermissions):
        return f"I need {_permissions(error.missing_permissions)} here for that."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Not so fast: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.TransformerError):
        return f"“{error.value}” is not a valid {error.type.name.lower().replace('_', ' ')} here."
    if isinstance(error, app_commands.CheckFailure):
        return "You cannot use that command here."
    return None


async def answer_privately(interaction: discord.Interaction, text: str) -> None:
    """Answer only the person who ran the command: the response, or a follow-up if it was given already.

    An interaction that expired (or a Discord failure) leaves nobody to answer
    privately; that is logged, never posted in the channel for all to see.
    """
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as exc:
        log.warning("could not answer interaction %s privately: %s %s", interaction.id, exc.status, exc.text)


class ErrorTree(app_commands.CommandTree):
    """Slash command failures answered privately, with an error id for anything unexpected."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        if was_handled(interaction):
            return
        refusal = slash_refusal(error)
        if isinstance(error, (app_commands.CommandNotFound, app_commands.CommandSignatureMismatch)):
            log.warning("Discord sent a command this bot does not have (%s): the slash commands need a sync", error)
        if refusal is None:
            command = interaction.command
            name = f"/{command.qualified_name}" if command is not None else "a slash command"
            refusal = unexpected(name, getattr(error, "original", error))
        await answer_privately(interaction, refusal)


# --- prefix commands ("@Séance sync") -------------------------------------------------


def prefix_refusal(ctx: commands.Context[SeanceBot], error: commands.CommandError) -> str | None:
    """The one-line answer to an expected failure of a prefix command; None if it is unexpected."""
    if isinstance(error, commands.NotOwner):
        return "Only the bot's owner can do that."
    if isinstance(error, commands.NoPrivateMessage):
        return ONLY_IN_SERVERS
    if isinstance(error, commands.MissingPermissions):
        return f"You need {_permissions(error.missing_permissions)} for that."
    if isinstance(error, commands.BotMissingPermissions):
        return f"I need {_permissions(error.missing_permissions)} here for that."
    if isinstance(error, commands.CommandOnCooldown):
        return f"Not so fast: try again in {error.retry_after:.0f} s."
    if isinstance(error, commands.CheckFailure):
        return "You cannot use that command here."
    if isinstance(error, commands.UserInputError) and ctx.command is not None:
        usage = f"{ctx.command.qualified_name} {ctx.command.signature}".strip()
        return f"Use it as: @{ctx.me.display_name} {usage}"
    return None


class Errors(commands.Cog):
    def __init__(self, bot: SeanceBot):
        self.bot = bot

    @commands.Cog.listener()
    async def on_command_error(self, ctx: commands.Context[SeanceBot], error: commands.CommandError) -> None:
        if isinstance(error, commands.CommandNotFound) or was_handled(ctx):
            return  # "@Séance hello" is a greeting, not a typo
        answer = prefix_refusal(ctx, error)
        if answer is None:
            name = f"`{ctx.command.qualified_name}`" if ctx.command is not None else "a command"
            answer = unexpected(name, getattr(error, "original", error))
        try:
            await ctx.reply(answer, mention_author=False)
        except discord.HTTPException as exc:
            log.warning("could not answer a failed command in %s: %s %s", ctx.channel.id, exc.status, exc.text)


async def setup(bot: SeanceBot) -> None:
    await bot.add_cog(Errors(bot))
