"""Command line: ``python -m bot`` runs the Discord bot; ``python -m bot console`` a terminal room."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from bot.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Séance: AI models in conversation.")
    commands = parser.add_subparsers(dest="command")
    from bot import console

    console.add_arguments(commands.add_parser("console", help="run a room in this terminal"))
    sync = commands.add_parser("sync", help="install the slash commands (in one server at once, or globally)")
    sync.add_argument("--guild", type=int, metavar="ID", help="a server id (default: DEV_GUILD_ID; empty: global)")
    commands.add_parser("rooms", help="list the stored rooms")
    exporter = commands.add_parser("export", help="write a stored room's transcript")
    exporter.add_argument("room", type=int, help="the room number (see: python -m bot rooms)")
    exporter.add_argument("--format", choices=("txt", "md", "html", "jsonl"), default="txt")
    exporter.add_argument("--out", type=Path, help="file to write (default: standard output)")
    exporter.add_argument(
        "--numbered", action="store_true", help="put each event's number first (txt, md), for console --fork ROOM --at EVENT"
    )
    deleter = commands.add_parser("delete", help="forget an ended room, its transcript and its pictures")
    deleter.add_argument("room", type=int)
    usage = commands.add_parser("usage", help="tokens and dollars per server and per room, for bookkeeping")
    usage.add_argument("--since", type=_day, metavar="DATE", help="first UTC day, YYYY-MM-DD (default: the start)")
    usage.add_argument("--until", type=_day, metavar="DATE", help="last UTC day, YYYY-MM-DD (default: today)")
    usage.add_argument("--guild", type=int, metavar="ID", help="one Discord server only")
    mover = commands.add_parser("migrate", help="copy a SQLite installation into an empty PostgreSQL database")
    mover.add_argument("--from", dest="source", metavar="URL", help="sqlite:///path (default: DATABASE_PATH)")
    mover.add_argument("--to", dest="target", metavar="URL", help="postgresql://user:password@host/db (default: DATABASE_URL)")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(_bad_setting(exc), file=sys.stderr)
        return 2
    from bot.process import setup_logging

    setup_logging(settings, logging.INFO if args.command in (None, "sync") else logging.WARNING)
    if args.command in ("rooms", "export", "delete", "usage"):
        return asyncio.run(_transcripts(args, settings))
    if args.command == "migrate":
        return _migrate(args, settings)
    if args.command == "console":
        try:
            return asyncio.run(_console(args, settings))
        except KeyboardInterrupt:
            print("\nStopped.", file=sys.stderr)
            return 130
    from bot import bot as discord_bot

    if args.command == "sync":
        return discord_bot.sync(settings, args.guild or settings.dev_guild_id)
    return discord_bot.run(settings)


def _bad_setting(error: ValidationError) -> str:
    """One line per wrong setting, naming it as .env does."""
    lines = []
    for problem in error.errors():
        name = "_".join(str(part) for part in problem["loc"][:1]).upper()
        if not name:  # a rule across settings (SHARD_IDS with SHARD_COUNT): its message names them
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"{message}; fix it in .env or the environment (see .env.example).")
            continue
        lines.append(f"{name} is not valid ({problem['msg']}); fix it in .env or the environment (see .env.example).")
    return "\n".join(lines)


async def _console(args: argparse.Namespace, settings: Settings) -> int:
    """A terminal room; SIGTERM and SIGHUP stop it as Ctrl+C does (the room is stored, --resume carries on)."""
    from bot import console
    from bot.process import stopped_by_signal, stopping_on_signals

    with stopping_on_signals() as stop:
        try:
            return await console.run_console(args, settings)
        except asyncio.CancelledError:
            if not stopped_by_signal(stop):
                raise
    print("\nStopped.", file=sys.stderr)
    return stop.exit_code


async def _transcripts(args: argparse.Namespace, settings: Settings) -> int:
    from bot.export import export_room, list_rooms
    from bot.storage import StorageError, open_store

    try:
        store = await open_store(settings, writing=args.command == "delete")
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "rooms":
            return await list_rooms(store, sys.stdout)
        if args.command == "delete":
            return await _delete(store, args.room)
        if args.command == "usage":
            from bot.guilds import usage_report

            print(await usage_report(store, args.since, args.until, args.guild))
            return 0
        said = await export_room(store, args.room, args.format, args.out, sys.stdout.buffer, args.numbered)
        if said:
            print(said, file=sys.stderr)
        return 0
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except store.errors as exc:  # what the opening checks could not foresee (a disk that fills up, a lost server)
        print(f"error: {store.explain(exc)}", file=sys.stderr)
        return 2
    finally:
        await store.close()


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Copy SQLite into PostgreSQL and say what was copied (or, in one line, why nothing was)."""
    from bot.postgres import where
    from bot.storage import StorageError
    from bot.transfer import migrate

    source = args.source or f"sqlite:///{settings.database_path}"
    target = args.target or (settings.database_url.get_secret_value() if settings.database_url else None)
    if target is None:
        print("error: name the PostgreSQL database: --to postgresql://user:password@host/db (or set DATABASE_URL).",
              file=sys.stderr)
        return 2
    try:
        copied = asyncio.run(migrate(source, target))
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(copied.summary(where(target)))
    return 0


def _day(text: str) -> str:
    """A UTC day as YYYY-MM-DD, the form spending is booked under."""
    try:
        return datetime.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-12-01") from None


async def _delete(store, room_id: int) -> int:
    record = await store.room(room_id)
    if record.state != "stopped":
        where = "/seance stop in its channel" if record.origin == "discord" else "letting it end"
        print(f"error: room {room_id} is {record.state}; end it first ({where}).", file=sys.stderr)
        return 2
    await store.delete_room(room_id)
    print(f"Deleted room {room_id} with its transcript and pictures.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
