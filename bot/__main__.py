"""Command line: ``python -m bot`` runs the Discord bot; ``python -m bot console`` a terminal room."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bot.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Séance: AI models in conversation.")
    commands = parser.add_subparsers(dest="command")
    from bot import console

    console.add_arguments(commands.add_parser("console", help="run a room in this terminal"))
    sync = commands.add_parser("sync", help="install the slash commands (in one server at once, or globally)")
    sync.add_argument("--guild", type=int, metavar="ID", help="a server id (default: DEV_GUILD_ID; empty: global)")
    args = parser.parse_args(argv)
    level = logging.WARNING if args.command == "console" else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    if args.command == "console":
        try:
            return asyncio.run(console.run_console(args, settings))
        except KeyboardInterrupt:
            print("\nStopped.", file=sys.stderr)
            return 130
    from bot import bot as discord_bot

    if args.command == "sync":
        return discord_bot.sync(settings, args.guild or settings.dev_guild_id)
    return discord_bot.run(settings)


if __name__ == "__main__":
    sys.exit(main())
