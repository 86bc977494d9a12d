"""Owner tools. Slash commands are synced on purpose, never at every start (Discord rate-limits it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord.ext import commands

if TYPE_CHECKING:
    from bot.bot import SeanceBot


async def sync_tree(bot: commands.Bot, guild: discord.abc.Snowflake | None) -> int:
    """Install the slash commands in one server (at once) or globally (Discord takes a while); returns how many."""
    if guild is not None:
        bot.tree.copy_global_to(guild=guild)
    return len(await bot.tree.sync(guild=guild))


class Admin(commands.Cog):
    def __init__(self, bot: SeanceBot):
        self.bot = bot

    @commands.command(name="sync")
    @commands.is_owner()
    @commands.guild_only()
    async def sync(self, ctx: commands.Context[SeanceBot], scope: Literal["here", "global"] = "here") -> None:
        """`@bot sync` installs the slash commands in this server; `@bot sync global` everywhere."""
        count = await sync_tree(self.bot, ctx.guild if scope == "here" else None)
        where = "in this server" if scope == "here" else "globally (Discord may take an hour to show them)"
        await ctx.reply(f"Synced {count} slash command(s) {where}.")

    async def cog_command_error(self, ctx: commands.Context[SeanceBot], error: commands.CommandError) -> None:
        if isinstance(error, commands.NotOwner):
            await ctx.reply("Only the bot's owner can sync its commands.")
        elif isinstance(error, commands.BadArgument):
            await ctx.reply("Use `sync` (this server) or `sync global`.")


async def setup(bot: SeanceBot) -> None:
    await bot.add_cog(Admin(bot))
