"""The terminal stage: a room printed the way the reference transcript reads."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

from bot import data
from bot.engine import Event, ImageMade, Notice, Reply, Room, RoomError, RoomSettings, Said, Turn
from bot.providers import ProviderError, ProviderPool
from bot.providers.images import OfflineImages
from bot.runner import RoomRunner
from bot.settings import Settings

DEFAULT_AIS = ("Gemini 3 Flash", "DeepSeek R1")


class ConsoleStage:
    """Prints events; saves pictures to a folder and prints their path."""

    def __init__(self, out: TextIO, pictures: Path):
        self.out = out
        self.pictures = pictures
        self._count = 0

    async def show(self, events: list[Event]) -> None:
        for event in events:
            self._print(event)
        self.out.flush()

    def _print(self, event: Event) -> None:
        if isinstance(event, Notice):
            print(event.text, file=self.out)
        elif isinstance(event, Reply):
            print(f"{event.label}\n{event.text}\n", file=self.out)
        elif isinstance(event, Said):
            print(f"{event.name}\n{event.text}\n", file=self.out)
        elif isinstance(event, ImageMade):
            path = self._save(event)
            print(f"{event.caption}\n  (picture saved to {path})", file=self.out)

    def _save(self, event: ImageMade) -> Path:
        self._count += 1
        self.pictures.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", event.prompt.lower())[:40].strip("-") or "image"
        path = self.pictures / f"{self._count:03d}-ai{event.number}-{slug}.{event.picture.extension}"
        path.write_bytes(event.picture.data)
        return path

    @contextlib.asynccontextmanager
    async def writing(self, turn: Turn) -> AsyncIterator[None]:
        yield

    async def partial(self, turn: Turn, text: str) -> None:
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ai", action="append", metavar="MODEL", help="a model from the catalog; repeat (default: Gemini 3 Flash and DeepSeek R1)")
    parser.add_argument("--turns", type=int, default=12, help="AI turns before the room ends (default 12)")
    parser.add_argument("--scenario", default=data.DEFAULT_SCENARIO, help="scenario name (see --list-scenarios)")
    parser.add_argument("--topic", help="what the room starts from")
    parser.add_argument("--delay", type=float, default=None, help="seconds between turns (default: TURN_DELAY)")
    parser.add_argument("--pictures", type=Path, default=None, help="folder for pictures (default: PICTURES_DIR/<time>)")
    parser.add_argument("--list-scenarios", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--list-models", action="store_true", help="list the catalog and exit")


def build_room(args: argparse.Namespace, settings: Settings) -> Room:
    """The room the arguments describe; raises RoomError with a message for the user."""
    scenarios = data.scenarios()
    if args.scenario not in scenarios:
        raise RoomError(f'Unknown scenario "{args.scenario}". Choose one of: {", ".join(scenarios)}.')
    if args.turns < 1:
        raise RoomError("--turns must be at least 1.")
    room_settings = RoomSettings(
        max_ais=settings.max_ais,
        max_commands=settings.max_commands_per_reply,
        max_turns=args.turns,
        context_tokens=settings.context_tokens,
        vision_pictures=settings.vision_pictures,
        budget_usd=settings.room_budget_usd,
    )
    room = Room(data.catalog(), scenarios[args.scenario], room_settings, topic=args.topic)
    for name in args.ai or DEFAULT_AIS:
        room.add(name)
    return room


async def run_console(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    if args.list_models:
        print("\n".join(data.catalog().names), file=out)
        return 0
    if args.list_scenarios:
        for name, scenario in data.scenarios().items():
            print(f"{name}: {scenario.title}", file=out)
        return 0
    try:
        room = build_room(args, settings)
    except RoomError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pool = ProviderPool(settings)
    try:
        pool.check(m.model for m in room.present)
    except ProviderError as exc:
        print(exc.reason, file=sys.stderr)
        return 2
    pictures = args.pictures or settings.pictures_dir / time.strftime("console-%Y%m%d-%H%M%S")
    stage = ConsoleStage(out, pictures)
    delay = settings.turn_delay if args.delay is None else args.delay
    names = ", ".join(p.label for p in room.present)
    print(f"Séance: {names} in \"{room.scenario.title}\" for {args.turns} turns. Ctrl+C ends it.\n", file=out)
    runner = RoomRunner(room, pool.get, OfflineImages(), stage, delay=delay)
    try:
        await runner.run(return_on_pause=True)
    finally:
        await pool.aclose()
    if room.state == "paused":
        print("The console has no one to resume a paused room, so it ends here.", file=out)
    return 0
