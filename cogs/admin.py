"""Owner tools. Slash commands are synced on purpose, never at every start (Discord rate-limits it).

A server sync installs a copy of the commands in that server, at once; a
global sync installs them everywhere, within an hour. A server holding both
would show every command twice, so a global sync also removes the copies made
earlier: the database remembers where (plus DEV_GUILD_ID and, for
``@Séance sync global``, the server it is typed in, for copies made before it
remembered).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import discord
from discord.ext import commands

from cogs.errors import mark_handled

if TYPE_CHECKING:
    from bot.bot import SeanceBot

log = logging.getLogger(__name__)

INVITE_HINT = "invite the bot again with the link in the README (scopes bot and applications.commands)"


async def sync_tree(
    bot: commands.Bot, guild: discord.abc.Snowflake | None, also_clear: tuple[int, ...] = ()
) -> int:
    """Install the slash commands in one server (at once) or globally (Discord takes a while); returns how many.

    A global sync then removes server copies: those the database remembers, and ``also_clear``.
    """
    store = getattr(bot, "store", None)
    if guild is not None:
        bot.tree.copy_global_to(guild=guild)
        count = len(await bot.tree.sync(guild=guild))
        if store is not None:
            await store.set_command_copy(guild.id, True)
        return count
    count = len(await bot.tree.sync())
    settings = getattr(bot, "settings", None)
    remembered = await store.command_copies() if store is not None else []
    dev = (settings.dev_guild_id,) if settings is not None and settings.dev_guild_id else ()
    for guild_id in dict.fromkeys([*remembered, *dev, *also_clear]):
        server = discord.Object(guild_id)
        bot.tree.clear_commands(guild=server)
        try:
            await bot.tree.sync(guild=server)
        except discord.Forbidden:  # the bot left that server, or never had the scope there: nothing to clear
            log.info("no command copy to remove in server %s", guild_id)
        if store is not None:
            await store.set_command_copy(guild_id, False)
    return count


def explain_sync_failure(error: discord.HTTPException) -> str:
    """One sentence for the owner: what Discord refused, and what to do."""
    if error.status == 403:
        return f"Discord refused to install the slash commands there (Missing Access): {INVITE_HINT}."
    if error.status == 429:
        return "Discord limits how often slash commands may be installed (200 a day per server); try again tomorrow."
    if 400 <= error.status < 500:
        return f"Discord rejected the slash commands ({error.status}: {error.text or 'no reason given'}); please report this as a bug."
    return f"Discord could not install the slash commands ({error.status}: {error.text or 'server error'}); try again in a few minutes."


class Admin(commands.Cog):
    def __init__(self, bot: SeanceBot):
        self.bot = bot

    @commands.command(name="sync")
    @commands.is_owner()
    @commands.guild_only()
    async def sync(self, ctx: commands.Context[SeanceBot], scope: Literal["here", "global"] = "here") -> None:
        """`@bot sync` installs the slash commands in this server; `@bot sync global` everywhere."""
        assert ctx.guild is not None
        try:
            if scope == "here":
                count = await sync_tree(self.bot, ctx.guild)
            else:
                count = await sync_tree(self.bot, None, also_clear=(ctx.guild.id,))
        except discord.HTTPException as exc:
            log.warning("sync %s failed: %s %s", scope, exc.status, exc.text)
            await ctx.reply(explain_sync_failure(exc))
            return
        where = "in this server" if scope == "here" else "globally (Discord may take an hour to show them)"
        await ctx.reply(f"Synced {count} slash command(s) {where}.")

    async def cog_command_error(self, ctx: commands.Context[SeanceBot], error: commands.CommandError) -> None:
        if isinstance(error, commands.NotOwner):
            await ctx.reply("Only the bot's owner can sync its commands.")
        elif isinstance(error, commands.BadArgument):
            await ctx.reply("Use `sync` (this server) or `sync global`.")
        else:
            return  # the bot-wide handler (cogs/errors.py) answers the rest
        mark_handled(ctx)


async def setup(bot: SeanceBot) -> None:
    await bot.add_cog(Admin(bot))
