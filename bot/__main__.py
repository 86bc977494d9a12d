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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings()
    if args.command == "console":
        try:
            return asyncio.run(console.run_console(args, settings))
        except KeyboardInterrupt:
            print("\nStopped.", file=sys.stderr)
            return 130
    print("The Discord bot is not available yet; try: python -m bot console", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
