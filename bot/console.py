"""The terminal stage: a room printed the way the reference transcript reads."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TextIO

from bot import data
from bot.engine import (
    Catalog, Event, ImageMade, ModelInfo, Notice, Reply, Room, RoomError, Said, StateChanged, Turn, UnknownModel,
)
from bot.providers import ProviderError, ProviderPool, local, route_for
from bot.providers.images import make_image_provider
from bot.search import make_search
from bot.engine.events import forked
from bot.engine.snapshot import resumable_jobs
from bot.formatting import clip
from bot.runner import RoomRunner
from bot.settings import Settings
from bot.storage import ForkSource, Journal, Store, StorageError, open_store, picture_name, write_picture

DEFAULT_AIS = ("Gemini 3 Flash", "DeepSeek R1")
KEY_HINT = "put OPENROUTER_API_KEY=... in .env (every catalog model runs through it; get one at https://openrouter.ai/keys)"
EMBEDDED_NOTICE = (
    "No API key is set: using the embedded SmolLM2-135M model (small and weak). "
    "Set OPENROUTER_API_KEY in .env for real models."
)


class ConsoleStage:
    """Prints events; saves pictures to a folder and prints their path.

    ``reasoning`` is SHOW_REASONING: unless "off", a reply's thinking is printed
    under it, indented (and dimmed on a terminal) so it never reads as the reply.
    A terminal has no spoilers or attachments, so "spoiler" and "file" print alike.
    """

    def __init__(
        self, out: TextIO, pictures: Path, reasoning: str = "off", waiting: Callable[[], str | None] | None = None
    ):
        self.out = out
        self.pictures = pictures
        self.reasoning = reasoning
        # What to say when the room ends (or pauses) with pictures still being made, so the
        # terminal does not sit in silence while the runner waits for them.
        self.waiting = waiting

    async def show(self, events: list[Event], done: Sequence[int] = ()) -> None:
        for event in events:
            self._print(event)
        self.out.flush()

    def _print(self, event: Event) -> None:
        if isinstance(event, Notice):
            print(event.text, file=self.out)
        elif isinstance(event, Reply):
            print(f"{event.label}\n{event.text}\n", file=self.out)
            if self.reasoning != "off" and event.reasoning:
                print(self._thinking(event.reasoning), file=self.out)
        elif isinstance(event, Said) and event.echo:
            print(f"{event.name}\n{event.text}\n", file=self.out)
        elif isinstance(event, ImageMade):
            path = self._save(event)
            print(f"{event.caption}\n  (picture saved to {path})", file=self.out)
        elif isinstance(event, StateChanged) and event.state != "running" and self.waiting is not None:
            if line := self.waiting():
                print(line, file=self.out)

    async def alert(self, text: str) -> None:
        """A failure's details (which key to set, the provider's words): in a terminal the reader is the host."""
        print(f"   ({text})", file=self.out)
        self.out.flush()

    def _thinking(self, text: str) -> str:
        lines = "\n".join(f"    {line}" for line in ["(thinking)", *text.splitlines()])
        dim = getattr(self.out, "isatty", lambda: False)()
        return f"\x1b[2m{lines}\x1b[0m\n" if dim else f"{lines}\n"

    def _save(self, event: ImageMade) -> Path:
        """The picture's file, named by its content: the store has usually written it
        already (the same file), and no later picture can ever take a printed name."""
        path = self.pictures / picture_name(event.picture)
        write_picture(path, event.picture.data)
        return path

    @contextlib.asynccontextmanager
    async def writing(self, turn: Turn) -> AsyncIterator[None]:
        yield

    async def partial(self, turn: Turn, text: str) -> None:
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ai", action="append", metavar="MODEL", help="a model from the catalog; repeat (default: Gemini 3 Flash and DeepSeek R1; with no key, the embedded SmolLM2 135M)")
    parser.add_argument("--turns", type=int, default=12, help="AI turns before the room ends (default 12)")
    parser.add_argument("--scenario", default=data.DEFAULT_SCENARIO, help="scenario name (see --list-scenarios)")
    parser.add_argument("--topic", help="what the room starts from")
    parser.add_argument("--delay", type=float, default=None, help="seconds between turns (default: TURN_DELAY)")
    parser.add_argument("--pictures", type=Path, default=None, help="folder for pictures, kept for --resume (default: PICTURES_DIR/console-room-<n>)")
    parser.add_argument("--list-scenarios", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--list-models", action="store_true", help="list the catalog and exit")
    parser.add_argument("--resume", type=int, metavar="ROOM", help="carry on a stored console room (see python -m bot rooms)")
    parser.add_argument("--fork", type=int, metavar="ROOM", help="start a new room from an AI message of a stored room (with --at)")
    parser.add_argument("--at", type=int, metavar="EVENT", help="the AI message to fork from (see python -m bot export ROOM --numbered)")


def build_room(args: argparse.Namespace, settings: Settings, catalog: Catalog | None = None) -> Room:
    """The room the arguments describe; raises RoomError with a message for the user.

    ``catalog`` is what the AIs may invite (default: the whole catalog).
    """
    scenarios = data.scenarios()
    if args.scenario not in scenarios:
        raise RoomError(f'Unknown scenario "{args.scenario}". Choose one of: {", ".join(scenarios)}.')
    if args.turns < 1:
        raise RoomError("--turns must be at least 1.")
    room_settings = settings.room_settings(args.turns, data.picture_price(make_image_provider(settings)))
    room = Room(catalog or data.catalog(), scenarios[args.scenario], room_settings, topic=args.topic)
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
        store = await open_store(settings)
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return await _hold_room(args, settings, store, out)
    finally:
        await store.close()


async def _hold_room(args: argparse.Namespace, settings: Settings, store: Store, out: TextIO) -> int:
    """Start (or resume) a stored room and run it to its end, or until it pauses.

    An ended room resumes only to finish what it left: pictures still being made when
    it was stopped or killed, and whatever it had not printed yet.
    """
    notice = None
    source: ForkSource | None = None
    try:
        pool = ProviderPool(settings)
        if args.fork is not None or args.at is not None:
            source = await _fork_source(store, args)
            pool.check(_fork_models(source))  # before the fork is stored: no room that cannot run
            if problem := summary_problem(settings):
                raise ProviderError(problem)
            room_id, room = await _fork(store, source, settings)
        elif args.resume is not None:
            room_id, room = await _resumable(store, args.resume, settings)
        else:
            notice = choose_models(args, settings)
            room = build_room(args, settings, usable_catalog(settings))
            room_id = None
        if room.state != "stopped":  # an ended room takes no more turns
            pool.check(m.model for m in room.present)
            if problem := summary_problem(settings):
                raise ProviderError(problem)
    except (RoomError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ProviderError as exc:
        print(exc.reason, file=sys.stderr)
        return 2
    except (*store.errors, OSError) as exc:  # a fork written to a full disk, a file gone read-only
        print(f"error: {store.explain(exc)}", file=sys.stderr)
        return 2
    if room_id is None:
        try:
            room_id = await store.create_room(room, "console")
        except (*store.errors, OSError) as exc:  # what opening could not foresee: a full disk, a file gone read-only
            print(f"error: {store.explain(exc)}", file=sys.stderr)
            return 2
    pictures = await _picture_folder(store, room_id, args.pictures, settings)
    stage = ConsoleStage(out, pictures, settings.show_reasoning, waiting=lambda: _waiting(room, room_id))
    delay = settings.turn_delay if args.delay is None else args.delay
    if notice:
        print(notice, file=out)
    print(_opening(room, room_id, resumed=args.resume is not None), file=out)
    search = make_search(settings)
    if source is not None:
        print(f"It starts after {source.label}'s {source.kind} (event {source.event_id} of room {source.room_id}):\n"
              f"{clip(source.text, 300)}\n", file=out)
    runner = RoomRunner(
        room, pool.get, make_image_provider(settings), stage, delay=delay, journal=Journal(store, room_id),
        on_problem=lambda sentence: _say(sentence, out), search=search,
    )
    if args.resume is not None:
        runner.resume_backlog(resumable_jobs(room))
    try:
        await runner.run(return_on_pause=True)
    finally:
        await pool.aclose()
        if search is not None:
            await search.aclose()
    if room.pending_images:
        print(f"{_pictures(room.pending_images)} not made in time; --resume {room_id} makes them.", file=out)
    elif room.state == "paused":
        print(f"The console has no one to resume a paused room, so it ends here (--resume {room_id} carries on).", file=out)
    return 0


def _opening(room: Room, room_id: int, resumed: bool) -> str:
    """The first line: who is in the room and how far it is, or what an ended room still finishes."""
    if room.state == "stopped":
        left = f"finishing {_pictures(room.pending_images)} still being made" if room.pending_images else "printing what it had not shown"
        return f"Séance room {room_id} has ended; {left} (Ctrl+C leaves it for another --resume {room_id}).\n"
    names = ", ".join(p.label for p in room.present)
    progress = f"{room.turns_taken} of {room.settings.max_turns} turns done" if resumed else f"{room.settings.max_turns} turns"
    return (
        f"Séance room {room_id}: {names} in \"{room.scenario.title}\", {progress}. "
        f"Ctrl+C ends it; --resume {room_id} carries on.\n"
    )


def _waiting(room: Room, room_id: int) -> str | None:
    """The line for a room that ended or paused while pictures are still being made."""
    if not room.pending_images:
        return None
    them = "it" if room.pending_images == 1 else "them"
    return f"🎨 Waiting for {_pictures(room.pending_images)} still being made... (Ctrl+C leaves {them} for --resume {room_id})"


def _pictures(count: int) -> str:
    return "1 picture" if count == 1 else f"{count} pictures"


async def _picture_folder(store: Store, room_id: int, chosen: Path | None, settings: Settings) -> Path:
    """Where this room's pictures go: ``--pictures`` if given now, else where they went
    before, else PICTURES_DIR/console-room-<n>. Kept in the room's options, where the
    store writes its pictures too, so each is saved once and ``--resume`` keeps the folder."""
    options = (await store.room(room_id)).options
    if chosen is None and options.get("pictures"):
        return Path(options["pictures"])
    made = chosen is None  # the default folder is the room's alone, and goes with it on delete
    folder = (chosen or settings.pictures_dir / f"console-room-{room_id}").absolute()
    await store.set_options(room_id, {**options, "pictures": str(folder), "pictures_folder_made": made})
    return folder


async def _say(sentence: str, out: TextIO) -> None:
    print(sentence, file=out, flush=True)


async def _fork_source(store: Store, args: argparse.Namespace) -> ForkSource:
    """The message ``--fork ROOM --at EVENT`` names, or why a fork cannot start there."""
    if args.fork is None or args.at is None:
        raise RoomError("--fork ROOM and --at EVENT go together (python -m bot export ROOM --numbered shows the events).")
    if args.resume is not None:
        raise RoomError("--fork starts a new room; leave out --resume.")
    return await store.fork_source(args.fork, args.at)


def _fork_models(source: ForkSource) -> list[ModelInfo]:
    """The models of the AIs present at the fork point; one gone from the catalog is named."""
    try:
        return [data.catalog().get(name) for name in source.models]
    except UnknownModel as exc:
        raise RoomError(f"Room {source.room_id} had {exc.name}, which is no longer in the catalog; it cannot be forked.") from None


async def _fork(store: Store, source: ForkSource, settings: Settings) -> tuple[int, Room]:
    """Store a new console room forked at ``source`` and load it, as it goes on from there."""
    room_id = await store.create_fork(source, "console")
    room = await store.load_room(room_id, data.catalog(), data.scenarios())
    room.settings.budget_usd = settings.room_budget_usd
    room.invitable = usable_catalog(settings)
    room.announce(forked(source.room_id, source.label, source.kind, source.event_id))
    return room_id, room


async def _resumable(store: Store, room_id: int, settings: Settings) -> tuple[int, Room]:
    record = await store.room(room_id)
    if record.origin != "console":
        raise RoomError(f"Room {room_id} belongs to Discord; it resumes when the bot starts.")
    room = await store.load_room(room_id, data.catalog(), data.scenarios())
    room.settings.budget_usd = settings.room_budget_usd  # today's ROOM_BUDGET_USD, so a raised one lets it go on
    if room.state != "stopped":
        room.resume("in the console")
    elif not room.pending_images and not await store.unposted(room_id):
        raise RoomError(f"Room {room_id} has ended; start a new one (its transcript: python -m bot export {room_id}).")
    return room_id, room


# --- which models, with or without a key ------------------------------------------


def why_not(model: ModelInfo, settings: Settings) -> str | None:
    """Why a turn of ``model`` could not run here (no key for any of its routes, or the
    embedded model not installed); None when it can."""
    try:
        route = route_for(model, settings)
    except ProviderError as exc:
        return exc.reason
    return local.missing(settings) if route == local.EMBEDDED_ROUTE else None


def summary_problem(settings: Settings) -> str | None:
    """Why SUMMARY_MODEL cannot run here, in one line for the host (None: it can, or it is off);
    checked at start, so a room does not find out one failed summary at a time."""
    if settings.summary_model is None:
        return None
    reason = why_not(data.catalog().get(settings.summary_model), settings)
    return None if reason is None else f"SUMMARY_MODEL={settings.summary_model} cannot run here: {reason}"


def usable_catalog(settings: Settings) -> Catalog:
    """The models this room can run, so AIs never invite one that cannot answer."""
    return Catalog([m for m in data.catalog().models if why_not(m, settings) is None])


def has_remote_model(settings: Settings) -> bool:
    """Whether any key is set that runs a catalog model (the embedded one needs none)."""
    return any(local.EMBEDDED_ROUTE not in m.routes and why_not(m, settings) is None for m in data.catalog().models)


def default_models(settings: Settings) -> list[str]:
    """DEFAULT_AIS, with any that no key here can run swapped for the first catalog models
    that can (say, Claude with only ANTHROPIC_API_KEY set)."""
    usable = [m.name for m in usable_catalog(settings).models if local.EMBEDDED_ROUTE not in m.routes]
    chosen = [name for name in DEFAULT_AIS if name in usable]
    spare = [name for name in usable if name not in chosen]
    return chosen + spare[: len(DEFAULT_AIS) - len(chosen)]


def choose_models(args: argparse.Namespace, settings: Settings) -> str | None:
    """Fill in ``args.ai``; returns the line to print first, if any.

    With no key, the default seats are the embedded model. Models the user
    named are never swapped silently: if they cannot run, the ProviderError
    says which key they need (the console prints it and exits 2).
    """
    if args.ai is None and not has_remote_model(settings):
        problem = local.missing(settings)
        if problem is not None:
            raise ProviderError(f"No API key is set. Either {KEY_HINT}, or run the embedded model offline: {problem}.")
        args.ai = [local.EMBEDDED_MODEL] * len(DEFAULT_AIS)
        return EMBEDDED_NOTICE
    args.ai = list(args.ai or default_models(settings))
    try:
        models = {model.name: model for model in map(data.catalog().get, args.ai)}
    except UnknownModel as exc:
        raise RoomError(str(exc)) from None
    reasons = list(dict.fromkeys(r for m in models.values() if (r := why_not(m, settings)) is not None))
    if not reasons:
        return None
    if not has_remote_model(settings) and local.missing(settings) is None:
        reasons.append(f'Or leave out --ai to use the embedded model ("{local.EMBEDDED_MODEL}").')
    raise ProviderError("\n".join(reasons))
