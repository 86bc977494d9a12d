"""Storage: rooms, their history, every event, and what was posted where.

``Store`` is the storage interface and its SQLite backend (the default, one file);
``bot.postgres.PgStore`` runs the same methods and SQL on PostgreSQL (``DATABASE_URL``),
so SQL here is written in the dialect both share: ``?`` placeholders (PostgreSQL gets
``$n``), ``ON CONFLICT`` rather than ``INSERT OR REPLACE``. ``open_store`` picks one.

The write order is what makes restarts safe: events are stored before they
are shown, and marked with their Discord message ids after. On start,
anything stored but not marked is shown once more (see ``unposted``).
With SQLite, pictures are files named by their content hash, next to the database (or,
for a console room, in the folder it was given); the ``pictures`` table lists them per room.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from bot.engine import (
    Catalog, Event, ForkPoint, ImageMade, Notice, Picture, Reply, Room, RoomSettings, Said, Scenario, Spent, StateChanged,
)
from bot.engine.context import Entry, Usage
from bot.leases import Leases
from bot.engine.snapshot import (
    entry_from_dict,
    entry_to_dict,
    StateJson,
    fork_state,
    restore_room,
    room_state,
    seats_json,
    settings_from_dict,
    settings_to_dict,
)

if TYPE_CHECKING:
    from bot.settings import Settings

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE rooms (
        id INTEGER PRIMARY KEY,
        origin TEXT NOT NULL,
        guild_id INTEGER,
        channel_id INTEGER,
        thread_id INTEGER,
        scenario TEXT NOT NULL,
        settings TEXT NOT NULL,
        options TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL,
        snapshot TEXT NOT NULL,
        history_len INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX rooms_by_channel ON rooms(channel_id, state);
    CREATE TABLE entries (
        room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (room_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at REAL NOT NULL,
        posted_at REAL,
        message_ids TEXT
    );
    CREATE INDEX events_unposted ON events(room_id) WHERE posted_at IS NULL;
    CREATE TABLE pictures (
        key TEXT NOT NULL,
        room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        mime TEXT NOT NULL,
        PRIMARY KEY (room_id, key)
    ) WITHOUT ROWID;
    CREATE TABLE messages (
        message_id INTEGER PRIMARY KEY,
        room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        ai_number INTEGER NOT NULL
    );
    CREATE TABLE votes (
        room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        voter TEXT NOT NULL,
        ai_number INTEGER NOT NULL,
        turn INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE webhooks (
        channel_id INTEGER PRIMARY KEY,
        webhook_id INTEGER NOT NULL,
        token TEXT NOT NULL
    );
    """,
    # 2: room numbers are never reused (AUTOINCREMENT): after `python -m bot delete`, a new
    # room must not take a deleted room's number, its picture folder or its old exports' name.
    # SQLite cannot add AUTOINCREMENT to a table, so the table is rebuilt, rows and ids kept
    # (migrate() switches foreign keys off meanwhile, so dropping the old table cascades nothing).
    """
    CREATE TABLE rooms_numbered (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        origin TEXT NOT NULL,
        guild_id INTEGER,
        channel_id INTEGER,
        thread_id INTEGER,
        scenario TEXT NOT NULL,
        settings TEXT NOT NULL,
        options TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL,
        snapshot TEXT NOT NULL,
        history_len INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    INSERT INTO rooms_numbered (id, origin, guild_id, channel_id, thread_id, scenario, settings, options, state,
                                snapshot, history_len, created_at, updated_at)
        SELECT id, origin, guild_id, channel_id, thread_id, scenario, settings, options, state,
               snapshot, history_len, created_at, updated_at FROM rooms;
    DROP TABLE rooms;
    ALTER TABLE rooms_numbered RENAME TO rooms;
    CREATE INDEX rooms_by_channel ON rooms(channel_id, state);
    """,
    # 3: servers given their own copy of the slash commands, which a global sync removes
    """
    CREATE TABLE command_copies (
        guild_id INTEGER PRIMARY KEY,
        synced_at REAL NOT NULL
    );
    """,
    # 4: per-server settings (NULL: the environment's value) and spending per room and UTC day
    """
    CREATE TABLE guild_settings (
        guild_id INTEGER PRIMARY KEY,
        moderator_roles TEXT,
        allowed_models TEXT,
        default_models TEXT,
        default_turns INTEGER,
        turn_delay REAL,
        open_floor INTEGER,
        images_per_ai INTEGER,
        image_window INTEGER,
        images_per_room INTEGER,
        images_at_once INTEGER,
        room_budget_usd REAL,
        daily_budget_usd REAL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE spend (
        room_id INTEGER NOT NULL,
        guild_id INTEGER,
        day TEXT NOT NULL,
        kind TEXT NOT NULL,
        count INTEGER NOT NULL DEFAULT 0,
        tokens INTEGER NOT NULL DEFAULT 0,
        usd REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (room_id, day, kind)
    ) WITHOUT ROWID;
    CREATE INDEX spend_by_guild ON spend(guild_id, day);
    """,
    # 5: scenarios a server added from its own TOML file (the fields of each table, as JSON)
    """
    CREATE TABLE guild_scenarios (
        guild_id BIGINT NOT NULL,
        name TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (guild_id, name)
    );
    """,
    # 6: forks. A room forked from another names its parent and the event it forked from (no
    # foreign key: deleting the parent leaves the fork, which still says where it came from).
    # Each AI message records how much history a fork from it starts with (events.history_len)
    # and, when they changed since the room's previous message, the seats as they were then
    # (a fork from event E takes the newest seats row at or before E). Messages remember their
    # event, so a fork from a Discord message finds its point at once.
    """
    ALTER TABLE rooms ADD COLUMN parent_id INTEGER;
    ALTER TABLE rooms ADD COLUMN fork_event INTEGER;
    ALTER TABLE events ADD COLUMN history_len INTEGER;
    ALTER TABLE messages ADD COLUMN event_id INTEGER;
    CREATE TABLE seats (
        room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        event_id INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (room_id, event_id)
    );
    """,
    # 7: room leases: the process that drives a room holds its row, renewed before it expires,
    # so two processes (a rolling deploy, two shards' hosts) never drive one room. Times are
    # seconds since the epoch, DOUBLE PRECISION so PostgreSQL keeps them exact too.
    """
    CREATE TABLE room_leases (
        room_id INTEGER PRIMARY KEY REFERENCES rooms(id) ON DELETE CASCADE,
        owner TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        taken_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX room_leases_by_owner ON room_leases(owner);
    """,
    # 8: a room's events by room. A restart asks each room for its newest posted message; without
    # this, SQLite scanned the events table back from the newest row until it met one of the room's,
    # so a thousand rooms' restore read most of the table a thousand times (16 s of reads at 200
    # events a room, 0.24 s with it). PostgreSQL had this index from its first schema.
    """
    CREATE INDEX events_by_room ON events(room_id, id);
    """,
]

# Columns of guild_settings a server may set; JSON lists are stored as text.
GUILD_COLUMNS = (
    "moderator_roles", "allowed_models", "default_models", "default_turns", "turn_delay", "open_floor",
    "images_per_ai", "image_window", "images_per_room", "images_at_once", "room_budget_usd", "daily_budget_usd",
)
GUILD_LISTS = frozenset({"moderator_roles", "allowed_models", "default_models"})
REPLACE_MESSAGE = (
    "ON CONFLICT (message_id) DO UPDATE SET room_id = excluded.room_id, ai_number = excluded.ai_number,"
    " event_id = excluded.event_id"
)

# aiosqlite logs every statement with its parameters at DEBUG, webhook tokens among them.
logging.getLogger("aiosqlite").setLevel(logging.INFO)

EVENT_TYPES = {cls.__name__: cls for cls in (Notice, Reply, Said, ImageMade, StateChanged)}
KIND_WORDS = {"Notice": "a notice", "Said": "a person's message", "StateChanged": "a change of state"}


class StorageError(RuntimeError):
    """The database cannot be used as it is; the message says what to do."""


class ForkError(StorageError):
    """A fork that cannot start from the event asked for; the message says why, for a person."""


SQLITE_HEADER = b"SQLite format 3\x00"


def check_ground(path: Path, *, writing: bool = True) -> None:
    """Refuse a DATABASE_PATH that cannot work, in one sentence, before SQLite touches it.

    SQLite's own errors ("unable to open database file") name neither the file
    nor the fix, and some of them come only after it has written to the file
    (switching it to WAL). Checking first leaves a bad path exactly as it was.
    ``writing`` is False for commands that only read: a read-only database file
    is fine for them. Creates the missing folders of a new database.
    """
    if path.is_dir():
        raise StorageError(
            f"DATABASE_PATH {path} is a folder, not a database file; point DATABASE_PATH at a file, "
            f"for example {path / 'seance.sqlite3'}."
        )
    if path.exists():
        _check_file(path, writing)
        return
    _make_folder(path)
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StorageError(
            f"The folder {folder} is read-only for this user, so the database {path.name} cannot be created "
            f"there; make the folder writable or point DATABASE_PATH at a writable folder."
        )


def _check_file(path: Path, writing: bool) -> None:
    try:
        with path.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StorageError(
            f"The database {path} cannot be read ({exc.strerror}); fix its permissions or point DATABASE_PATH "
            f"at another file."
        ) from None
    if header and header != SQLITE_HEADER:
        raise StorageError(
            f"{path} is not a SQLite database, so Séance left it untouched; point DATABASE_PATH at the bot's "
            f"database or at a new file name."
        )
    if writing and not os.access(path, os.W_OK):
        raise StorageError(
            f"The database {path} is read-only for this user, so no room can be stored in it; make it writable "
            f"(chmod u+w) or point DATABASE_PATH at another file."
        )
    if writing and not os.access(path.parent, os.W_OK | os.X_OK):
        raise StorageError(
            f"The folder {path.parent} is read-only for this user, and SQLite writes its journal beside the "
            f"database; make the folder writable or point DATABASE_PATH at a writable folder."
        )


def _make_folder(path: Path) -> None:
    """Create the database's folder, or say in one sentence why it cannot be."""
    folder = path.parent
    if folder.is_dir():
        return
    existing = next(p for p in folder.parents if p.exists() or p == p.parent)  # the nearest ancestor there is
    if folder.exists() or not existing.is_dir():
        blocker = folder if folder.exists() else existing
        raise StorageError(
            f"DATABASE_PATH {path} cannot be created: {blocker} is a file, not a folder; point DATABASE_PATH "
            f"at a file in a folder."
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = f"{existing} is not writable for this user" if isinstance(exc, PermissionError) else exc.strerror
        raise StorageError(
            f"The folder {folder} for DATABASE_PATH cannot be created ({why}); create it with write access "
            f"or point DATABASE_PATH at a writable folder."
        ) from None


def describe_failure(path: Path, error: BaseException) -> str:
    """One sentence for a SQLite or file error that ``check_ground`` could not foresee."""
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return (
        f"The database {path} cannot be used ({reason}); check that the file and its folder are writable "
        f"and the disk has room, or point DATABASE_PATH at another file."
    )


@dataclass(frozen=True)
class RoomRecord:
    id: int
    origin: str
    guild_id: int | None
    channel_id: int | None
    thread_id: int | None
    scenario: str
    state: str
    options: dict[str, Any]
    created_at: float
    updated_at: float
    parent_id: int | None = None  # the room this one was forked from, and the event it forked at
    fork_event: int | None = None


@dataclass(frozen=True)
class ForkSource:
    """Where a fork starts: an AI message of a stored room, and what a fork from it copies."""

    room_id: int
    event_id: int
    kind: str  # "reply" or "picture"
    number: int  # the AI whose message it is
    label: str
    text: str  # the message (a picture's caption), to show where the fork starts
    at: int  # history entries the fork copies
    seats: list[dict[str, Any]]

    @property
    def models(self) -> list[str]:
        """The models of the AIs present at the fork point, in seat order."""
        return [seat["model"] for seat in self.seats if seat.get("present", True)]


@dataclass(frozen=True)
class RoomSave:
    """A room as it is at one instant: what one save writes.

    Taken without awaiting (``capture``), so the history, the snapshot and the
    events it holds always agree, whatever other tasks do to the room while the
    write is in flight; what they change goes into the next save.
    """

    state: str
    snapshot: str
    first_seq: int  # the history index of entries[0]: everything before it is stored already
    entries: list[Entry]
    events: list[Event]
    spent: list[Spent] = field(default_factory=list)  # costs to book with this save, in its transaction
    forks: dict[int, ForkPoint] = field(default_factory=dict)  # index in ``events`` of an AI message -> its fork point

    @property
    def history_len(self) -> int:
        return self.first_seq + len(self.entries)


def capture(
    room: Room, saved: int, events: Iterable[Event] = (), encode: Callable[[Room], str] | None = None
) -> RoomSave:
    """The room now, with the history entries from ``saved`` on and the ``events`` to record.

    ``encode`` writes the room's state (a room's journal keeps a ``StateJson``, which
    re-encodes only what changed); by default it is encoded whole.
    """
    events = list(events)
    kept = [event for event in events if type(event).__name__ in EVENT_TYPES or isinstance(event, ForkPoint)]
    shown, forks = _fork_points(kept)
    return RoomSave(
        room.state,
        encode(room) if encode is not None else json.dumps(room_state(room)),
        saved,
        [entry for _, entry in room.history_since(saved)],
        shown,
        [event for event in events if isinstance(event, Spent)],
        forks,
    )


def _fork_points(events: list[Event]) -> tuple[list[Event], dict[int, ForkPoint]]:
    """The events to store, and each fork point by the index of the AI message it follows
    (the room queues it in the same step as the message, so both are in one save)."""
    shown: list[Event] = []
    forks: dict[int, ForkPoint] = {}
    message: int | None = None
    for event in events:
        if isinstance(event, ForkPoint):
            if message is not None:
                forks[message] = event
            message = None
            continue
        if isinstance(event, (Reply, ImageMade)):
            message = len(shown)
        shown.append(event)
    return shown, forks


@dataclass(frozen=True)
class SpendRow:
    """Spending of one room on one UTC day, of one kind (chat or image)."""

    room_id: int
    guild_id: int | None
    day: str
    kind: str
    count: int
    tokens: int
    usd: float


@dataclass(frozen=True)
class StoredEvent:
    id: int
    room_id: int
    event: Event
    created_at: float
    posted_at: float | None
    message_ids: list[int]


@dataclass(frozen=True)
class SaveWrite:
    """Store one room's captured save; the result is the ids of its events, in order."""

    room_id: int
    save: RoomSave


@dataclass(frozen=True)
class MarkWrite:
    """Events shown, as these Discord messages (``Store.mark_posted``); the result is None."""

    event_ids: list[int]
    message_ids: list[int]


@dataclass(frozen=True)
class ProgressWrite:
    """Some messages of an event are out (``Store.progress``); the result is None."""

    event_id: int
    message_ids: list[int]


Write = SaveWrite | MarkWrite | ProgressWrite
BATCH_LIMIT = 500  # writes per transaction: a long batch would hold up a new room's creation

# The statements of the rooms' writes, each sent once per batch with every row of it (``Batch``).
# None reads before it writes: an event's id is reserved before its row is made, a room's server
# is looked up by the statement itself, and a seats row is kept only where it differs from the
# room's newest one (rows run in order: each sees the last). The authors of AI messages being
# marked are read once per batch (``Store._authors``).
SAVE_ENTRY = (
    "INSERT INTO entries (room_id, seq, data) VALUES (?, ?, ?) ON CONFLICT (room_id, seq) DO UPDATE SET data = excluded.data"
)
ADD_EVENT = "INSERT INTO events (id, room_id, kind, data, created_at, history_len) VALUES (?, ?, ?, ?, ?, ?)"
ADD_SEATS = (
    "INSERT INTO seats (room_id, event_id, data) SELECT room_id, event_id, data FROM"
    " (SELECT CAST(? AS BIGINT) AS room_id, CAST(? AS BIGINT) AS event_id, CAST(? AS TEXT) AS data) AS candidate"
    " WHERE COALESCE((SELECT data FROM seats WHERE seats.room_id = candidate.room_id ORDER BY event_id DESC LIMIT 1),"
    " '') != candidate.data"
)
BOOK_SPEND = (
    "INSERT INTO spend (room_id, guild_id, day, kind, count, tokens, usd)"
    " VALUES (?, (SELECT guild_id FROM rooms WHERE id = ?), ?, ?, 1, ?, ?)"
    " ON CONFLICT (room_id, day, kind) DO UPDATE SET count = spend.count + 1,"
    " tokens = spend.tokens + excluded.tokens, usd = spend.usd + excluded.usd"
)
SAVE_ROOM = "UPDATE rooms SET state = ?, snapshot = ?, history_len = ?, updated_at = ? WHERE id = ?"
PROGRESS = "UPDATE events SET message_ids = ? WHERE id = ? AND posted_at IS NULL"
MARK_POSTED = "UPDATE events SET posted_at = ?, message_ids = ? WHERE id = ?"
ADD_AUTHOR = f"INSERT INTO messages (message_id, room_id, ai_number, event_id) VALUES (?, ?, ?, ?) {REPLACE_MESSAGE}"
# The order a batch sends them in (a picture's row, whose SQL is the backend's own, first).
WRITE_ORDER = {sql: rank for rank, sql in enumerate(
    (SAVE_ENTRY, ADD_EVENT, ADD_SEATS, BOOK_SPEND, SAVE_ROOM, PROGRESS, MARK_POSTED, ADD_AUTHOR)
)}
Step = tuple[str, list[Any] | None]  # a statement and its rows (None: run once, without arguments)


class Batch:
    """The rows some writes make, gathered per statement, so a transaction sends each
    statement once with all its rows (one round trip on PostgreSQL) rather than once per row.

    ``conn`` is there for what a backend must still read while making rows (SQLite's picture
    folders); ``ids`` are event ids reserved for this batch (``Store._reserve_ids``); ``authors``
    the room and AI of each AI message event being marked (``Store._authors``).
    """

    def __init__(
        self, conn: Any, ids: Iterator[int] | None = None, authors: dict[int, tuple[int, int]] | None = None
    ):
        self.conn = conn
        self.ids = ids or iter(())
        self.authors = authors or {}
        self.rows: dict[str, list[Any]] = {}
        self._events: dict[int, list[Any]] = {}  # an event's row by its id, until it is sent

    def add(self, sql: str, row: Sequence[Any]) -> None:
        self.rows.setdefault(sql, []).append(row)

    def add_all(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.rows.setdefault(sql, []).extend(rows)

    def add_event(self, room_id: int, kind: str, data: str, created_at: float) -> int:
        """An event's row, with the next reserved id (its history length comes with ``fork_at``)."""
        event_id = next(self.ids)
        row = [event_id, room_id, kind, data, created_at, None]
        self.add(ADD_EVENT, row)
        self._events[event_id] = row
        return event_id

    def fork_at(self, event_id: int, at: int) -> None:
        """How much history a fork from this batch's event ``event_id`` starts with."""
        self._events[event_id][5] = at

    def take(self, other: Batch) -> None:
        """Add another batch's rows after this one's (each write planned alone, then gathered)."""
        for sql, rows in other.rows.items():
            self.add_all(sql, rows)

    def statements(self) -> list[Step]:
        return sorted(self.rows.items(), key=lambda item: WRITE_ORDER.get(item[0], -1))


class GroupCommit:
    """Gathers the writes many rooms make at the same moment into one transaction (group commit).

    A commit costs the same for one room's save as for hundreds, and one connection
    can commit only so often; so while one batch is written, every write that arrives
    waits for the next, and goes in with all the others. Each write keeps its own
    outcome: ``write_many`` undoes a write that fails alone, and its caller gets the
    error as if it had written alone; a failed commit fails every write in the batch.
    Above the SQL: any store with ``write_many`` can use it.
    """

    def __init__(self, write_many: Callable[[list[Write]], Awaitable[list[Any]]]):
        self._write_many = write_many
        self._pending: list[tuple[Write, asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # transactions written, for benchmarks
        self.writes = 0

    async def submit(self, write: Write) -> Any:
        """Write with the next batch; returns the write's result or raises its error."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((write, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="seance-group-commit")
        return await done  # cancelled before its batch starts: not written; once started, written

    async def settle(self) -> None:
        """Wait until every write handed over so far is written (or has failed)."""
        writer = self._writer
        if writer is not None and not writer.done():
            await asyncio.wait([writer])

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = [(w, f) for w, f in self._pending[:BATCH_LIMIT] if not f.done()]
                del self._pending[:BATCH_LIMIT]
                if batch:
                    await self._commit(batch)
        finally:  # the writer itself cancelled (the loop closing): nobody waits for ever
            for _, done in self._pending:
                if not done.done():
                    done.set_exception(StorageError("storage closed before this write"))
            self._pending.clear()

    async def _commit(self, batch: list[tuple[Write, asyncio.Future[Any]]]) -> None:
        self.batches += 1
        self.writes += len(batch)
        try:
            results = await self._write_many([w for w, _ in batch])
        except Exception as exc:  # the transaction as a whole failed: so did each write in it
            results = [exc] * len(batch)
        for (_, done), result in zip(batch, results):
            if done.done():
                continue
            if isinstance(result, BaseException):
                done.set_exception(result)
            else:
                done.set_result(result)


class WriteLock:
    """The write connection's turn: first come, first served, except that a lease's write goes
    before every write still waiting (``first``).

    A lease renewal must land within seconds of being asked (``bot.leases``), or a busy
    process loses its own rooms: it must not also wait for the room creations, lease
    takes and batches queued before it. It still waits for the write being made (at
    most one batch).
    """

    def __init__(self) -> None:
        self._held = False
        self._urgent: collections.deque[asyncio.Future[None]] = collections.deque()
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    def locked(self) -> bool:
        return self._held

    async def acquire(self, urgent: bool = False) -> None:
        if not self._held and not self._urgent and not self._waiting:
            self._held = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._waiting
        queue.append(turn)
        try:
            await turn
        except BaseException:  # cancelled while queued: ``release`` skips its turn
            if turn.done() and not turn.cancelled():  # handed the lock, then cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        """Hand the lock to the next waiter (lease writes first), or free it."""
        for queue in (self._urgent, self._waiting):
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)  # still held: it is that waiter's now
                    return
        self._held = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    @contextlib.asynccontextmanager
    async def first(self) -> AsyncIterator[None]:
        """The lock, before every write still waiting for it."""
        await self.acquire(urgent=True)
        try:
            yield
        finally:
            self.release()


class Store:
    """The storage interface, on SQLite: one write connection (rooms' writes grouped), one reader."""

    # What a failed statement raises, for callers that turn it into one sentence (``explain``).
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, db: aiosqlite.Connection, path: Path, reader: aiosqlite.Connection | None = None):
        self.db = db
        # Reads go through a second connection (WAL lets it read while a batch is written),
        # so a restore, a backlog or a spending check never waits behind the rooms' writes.
        self.reader = reader or db
        self.path = path
        self.pictures = path.parent / f"{path.stem}-pictures"
        self._writing = WriteLock()
        self.group = GroupCommit(self.write_many)
        self.clock = time.time  # spending is booked on the UTC day of this clock (tests move it)

    def today(self) -> str:
        """The current UTC day, as spending is booked."""
        return time.strftime("%Y-%m-%d", time.gmtime(self.clock()))

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """One write at a time: rooms share this connection, and a commit from one
        room must never carry half of another room's save with it."""
        async with self._writing:
            try:
                # Take the write lock first (waiting for another process's write, up to the busy
                # timeout): a transaction that read first cannot wait for it, and fails at once as
                # "locked" when another process sharing the file wrote meanwhile.
                if not self.db.in_transaction:
                    await self._run("BEGIN IMMEDIATE")
                yield
            except BaseException:
                await self.db.rollback()
                raise
            await self.db.commit()

    async def _run(self, sql: str, args: Iterable[Any] = ()) -> int | None:
        """Run one statement and close its cursor at once, on the database's own thread.

        A cursor left to the garbage collector is finalised on the event loop's thread,
        where it can reset a cached statement that the worker thread is running at that
        moment (SQLite then answers "bad parameter or other API misuse").
        """
        async with self.db.execute(sql, tuple(args)) as cursor:
            return cursor.lastrowid

    async def _run_many(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        async with self.db.executemany(sql, rows):
            pass

    @classmethod
    async def open(cls, path: Path | str, *, writing: bool = True) -> Store:
        """Open (or create) the database; StorageError says in one sentence what is wrong and what to do.

        ``writing`` False is for commands that only read (``rooms``, ``export``):
        they accept a read-only database file, opened read-only.
        """
        path = Path(path)
        check_ground(path, writing=writing)
        read_only = path.exists() and not os.access(path, os.W_OK)
        try:
            db = await _connect(path, read_only)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(describe_failure(path, exc)) from None
        try:
            await _prepare(db, read_only)
        except StorageError:
            await db.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            await db.close()
            raise StorageError(describe_failure(path, exc)) from None
        except BaseException:
            await db.close()
            raise
        reader = None
        if not read_only:
            try:
                reader = await _connect(path, read_only=False)
                await reader.execute("PRAGMA query_only=ON")  # a read that tried to write would be a bug
            except (sqlite3.Error, OSError) as exc:
                await db.close()
                raise StorageError(describe_failure(path, exc)) from None
        return cls(db, path, reader)

    async def close(self) -> None:
        await self.group.settle()  # writes already handed over are written before the connection goes
        if self.reader is not self.db:
            await self.reader.close()
        await self.db.close()

    def explain(self, error: BaseException) -> str:
        """One sentence for a failure the opening checks could not foresee (a full disk)."""
        return describe_failure(self.path, error)

    # --- rooms ---------------------------------------------------------------

    async def create_room(
        self,
        room: Room,
        origin: str,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        thread_id: int | None = None,
        options: dict[str, Any] | None = None,
        lease: tuple[str, float] | None = None,
    ) -> int:
        """Store a new room; returns its number. ``lease`` (owner, seconds): the room is created
        leased to that process, in the same transaction, so no other process takes it on the way."""
        save = capture(room, 0)  # before any await: the room as it is now, whole
        now = time.time()
        row = (
            origin, guild_id, channel_id, thread_id, room.scenario.name, json.dumps(settings_to_dict(room.settings)),
            json.dumps(options or {}), save.state, save.snapshot, save.history_len, now, now,
        )

        def create(conn: sqlite3.Connection) -> int:
            room_id = _execute(
                conn,
                "INSERT INTO rooms (origin, guild_id, channel_id, thread_id, scenario, settings, options, state,"
                " snapshot, history_len, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            assert room_id is not None
            batch = Batch(conn)
            self._save_entries(batch, room_id, 0, save.entries)
            self._send(conn, batch.statements())
            _lease_new(conn, room_id, lease, now)
            return room_id

        async with self._writing:  # waits for at most the batch being written, however many rooms run
            room_id = await self._on_thread(lambda conn: _in_transaction(conn, create))
        room.stored_upto = save.history_len  # from here on the room may forget what it no longer needs
        return room_id

    async def save(self, room_id: int, room: Room, events: Iterable[Event] = ()) -> list[tuple[int, Event]]:
        """Store the room's new history, its state and ``events`` in one transaction.

        For callers that hold the room alone (a restore, a retirement); a running
        room is saved through its ``Journal``, which captures it without awaiting.
        Returns (id, event) for each event to be shown; picture jobs are not
        events to show, and the room's state already remembers them.
        """
        saved = await self.history_len(room_id)
        save = capture(room, saved, events)
        stored = list(zip(await self.write(room_id, save), save.events))
        room.stored_upto = max(room.stored_upto or 0, save.history_len)
        return stored

    async def history_len(self, room_id: int) -> int:
        row = await self._row("SELECT history_len FROM rooms WHERE id = ?", (room_id,))
        if row is None:
            raise StorageError(f"room {room_id} is not in the database")
        return row[0]

    async def write(self, room_id: int, save: RoomSave) -> list[int]:
        """Write one captured save, whole or not at all (with the other rooms' writes of the
        moment, see ``GroupCommit``); returns the ids of its events, in order."""
        ids: list[int] = await self.group.submit(SaveWrite(room_id, save))
        return ids

    async def write_many(self, writes: list[Write]) -> list[Any]:
        """Many writes in one transaction, each whole or not at all: a write that fails is
        undone alone and its exception is returned in its place, so one room's bad data costs
        no other room its save. Raises if the transaction as a whole fails (the disk full at
        commit): then nothing of it is stored.

        The batch runs on the database's thread in one call: one hop, not one per statement.
        """
        async with self._writing:
            return await self._on_thread(lambda conn: _in_transaction(conn, lambda c: self._apply_all(c, writes)))

    async def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        """A read's rows, all fetched in one call on the reader's thread.

        SQLite keeps a connection's read snapshot while any of its statements is unfinished.
        A cursor stepped over several calls (a row, the rest, then closing it) lets other
        rooms' reads slip in between, so at a thousand rooms one statement or another was
        always open and the reader saw the database as it was before the latest commits: a
        restart's "back" notice, written, then read back as owed, was not found and never
        shown (500 of 1,000 rooms). A read made whole ends its snapshot with it.
        """
        return await self._fetch_all(sql, tuple(args))

    async def _row(self, sql: str, args: Iterable[Any] = ()) -> Any:
        """A read's first row, or None (see ``_rows``)."""
        rows = await self._rows(sql, args)
        return rows[0] if rows else None

    async def _fetch_all(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        reader = self.reader
        return await reader._execute(lambda: _fetch_all(reader._conn, sql, args))

    async def _on_thread(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work`` with the write connection on its own thread (aiosqlite's queue of calls)."""
        return await self.db._execute(lambda: work(self.db._conn))

    def _apply_all(self, conn: sqlite3.Connection, writes: list[Write]) -> list[Any]:
        """Every write's rows, each statement sent once for the whole batch (``Batch``).

        A write whose rows cannot be made fails alone before anything is sent. If the
        database refuses a row (a room deleted under its save), the batch is undone and
        sent again one write at a time, each in a savepoint, so only that write fails.
        """
        ids = self._reserve_ids(conn, sum(len(w.save.events) for w in writes if isinstance(w, SaveWrite)))
        authors = self._authors(conn, [i for w in writes if isinstance(w, MarkWrite) and w.message_ids for i in w.event_ids])
        parts: list[Batch | None] = []
        results: list[Any] = []
        for write in writes:
            part = Batch(conn, ids, authors)
            try:
                results.append(self._plan(part, write))
                parts.append(part)
            except Exception as exc:
                results.append(exc)
                parts.append(None)
        whole = Batch(conn)
        for part in parts:
            if part is not None:
                whole.take(part)
        try:
            self._send(conn, [("SAVEPOINT batch", None), *whole.statements(), ("RELEASE batch", None)])
        except Exception as refused:
            try:
                self._send(conn, [("ROLLBACK TO batch", None), ("RELEASE batch", None)])
            except Exception:  # the connection is gone: the batch fails as a whole, with the first reason
                raise refused from None
            self._one_by_one(conn, parts, results)
        return results

    def _one_by_one(self, conn: sqlite3.Connection, parts: list[Batch | None], results: list[Any]) -> None:
        """Send each write's rows in a savepoint of its own; one the database refuses is undone alone."""
        for index, part in enumerate(parts):
            if part is None:
                continue
            try:
                self._send(conn, [("SAVEPOINT one_write", None), *part.statements(), ("RELEASE one_write", None)])
            except Exception as exc:
                self._send(conn, [("ROLLBACK TO one_write", None), ("RELEASE one_write", None)])
                results[index] = exc

    def _send(self, conn: sqlite3.Connection, statements: list[Step]) -> None:
        """Run statements in order, each with all its rows."""
        for sql, rows in statements:
            if rows is None:
                _execute(conn, sql)
            elif rows:
                _execute_many(conn, sql, rows)

    def _reserve_ids(self, conn: sqlite3.Connection, count: int) -> Iterator[int]:
        """Ids for ``count`` new events, so their rows (and rows that name them) are made before
        any is sent: after the highest, as SQLite would number them itself. Safe because the
        transaction holds SQLite's write lock from its start (``BEGIN IMMEDIATE``)."""
        if not count:
            return iter(())
        (highest,) = _fetch_one(conn, "SELECT COALESCE(MAX(id), 0) FROM events")
        return iter(range(highest + 1, highest + 1 + count))

    def _authors(self, conn: sqlite3.Connection, event_ids: list[int]) -> dict[int, tuple[int, int]]:
        """The room and AI number of each of these events that is an AI's message (Reply or ImageMade)."""
        if not event_ids:
            return {}
        found: dict[int, tuple[int, int]] = {}
        for start in range(0, len(event_ids), 500):  # under the 999 placeholders older SQLites allow
            chunk = tuple(event_ids[start : start + 500])
            rows = _fetch_all(
                conn,
                f"SELECT id, room_id, data FROM events WHERE id IN ({','.join('?' * len(chunk))})"
                " AND kind IN ('Reply', 'ImageMade')",
                chunk,
            )
            found.update((i, (room_id, json.loads(data)["number"])) for i, room_id, data in rows)
        return found

    def _plan(self, batch: Batch, write: Write) -> Any:
        """Add one write's rows to ``batch``; returns what the write returns once stored."""
        if isinstance(write, MarkWrite):
            return self._mark(batch, write.event_ids, write.message_ids)
        if isinstance(write, ProgressWrite):
            batch.add(PROGRESS, (json.dumps(write.message_ids), write.event_id))
            return None
        room_id, save = write.room_id, write.save
        self._save_entries(batch, room_id, save.first_seq, save.entries)
        ids = [self._add_event(batch, room_id, event) for event in save.events]
        for index, point in save.forks.items():  # in order, each compared with the seats stored before it
            self._add_fork_point(batch, room_id, ids[index], point)
        if save.spent:
            self._book(batch, room_id, save.spent)
        batch.add(SAVE_ROOM, (save.state, save.snapshot, save.history_len, time.time(), room_id))
        return ids

    def _add_fork_point(self, batch: Batch, room_id: int, event_id: int, point: ForkPoint) -> None:
        """Record where a fork from an AI message starts: its history length, and the seats
        unless they are what the room's newest seats row holds already (they seldom change;
        ``ADD_SEATS`` compares them in the database, so nothing is read for it)."""
        batch.fork_at(event_id, point.at)
        batch.add(ADD_SEATS, (room_id, event_id, seats_json(point.seats)))

    async def set_options(self, room_id: int, options: dict[str, Any]) -> None:
        async with self._transaction():
            await self._run("UPDATE rooms SET options = ? WHERE id = ?", (json.dumps(options), room_id))

    async def load_room(self, room_id: int, catalog: Catalog, scenarios: dict[str, Scenario]) -> Room:
        row = await self._row("SELECT scenario, settings, snapshot FROM rooms WHERE id = ?", (room_id,))
        if row is None:
            raise StorageError(f"There is no room {room_id}.")
        scenario_name, settings, snapshot = row
        scenario = scenarios.get(scenario_name) or Scenario(scenario_name, scenario_name, "", "{topic}")
        entries = await self._rows("SELECT data FROM entries WHERE room_id = ? ORDER BY seq", (room_id,))
        rows = [json.loads(data) for (data,) in entries]
        room_settings = settings_from_dict(json.loads(settings))
        wanted = newest_pictures(rows, room_settings.vision_pictures)
        read = await self._picture_reader(rows[i]["picture"].get("key") for i in wanted)
        return room_from_rows(catalog, scenario, room_settings, json.loads(snapshot), rows, wanted, read)

    async def rooms(
        self,
        states: Iterable[str] | None = None,
        origin: str | None = None,
        room_id: int | None = None,
        pending_pictures: bool = False,
        owing: bool = False,
        place: int | None = None,
        unleased_at: float | None = None,
    ) -> list[RoomRecord]:
        """Stored rooms, oldest first; ``pending_pictures``: only those with picture jobs unfinished;
        ``owing``: only those that still owe their channel something (pictures, or events never shown);
        ``place``: only those held in that channel or thread; ``unleased_at``: only those no process
        holds a lease on at that time (see ``take_lease``)."""
        query = (
            "SELECT id, origin, guild_id, channel_id, thread_id, scenario, state, options, created_at, updated_at,"
            " parent_id, fork_event FROM rooms"
        )
        clauses, args = [], []
        if place is not None:
            clauses.append("(thread_id = ? OR (thread_id IS NULL AND channel_id = ?))")
            args += [place, place]
        if unleased_at is not None:
            clauses.append(
                "NOT EXISTS (SELECT 1 FROM room_leases WHERE room_leases.room_id = rooms.id AND expires_at > ?)"
            )
            args.append(unleased_at)
        if pending_pictures:
            clauses.append("json_extract(snapshot, '$.jobs') != '{}'")
        if owing:
            clauses.append(
                "(json_extract(snapshot, '$.jobs') != '{}'"
                " OR EXISTS (SELECT 1 FROM events WHERE events.room_id = rooms.id AND events.posted_at IS NULL))"
            )
        if states is not None:
            states = list(states)
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            args += states
        if origin is not None:
            clauses.append("origin = ?")
            args.append(origin)
        if room_id is not None:
            clauses.append("id = ?")
            args.append(room_id)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        return [
            RoomRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8], r[9], r[10], r[11])
            for r in await self._rows(query + " ORDER BY id", args)
        ]

    async def room(self, room_id: int) -> RoomRecord:
        found = await self.rooms(room_id=room_id)
        if not found:
            raise StorageError(f"There is no room {room_id}.")
        return found[0]

    async def event_count(self, room_id: int) -> int:
        (count,) = await self._row("SELECT COUNT(*) FROM events WHERE room_id = ?", (room_id,))
        return count

    async def delete_room(self, room_id: int) -> None:
        """Forget a room, its history, events and pictures.

        The rows go first, in one transaction; the files after it commits, so a failed
        delete never leaves a room whose pictures are gone, and no write waits on the disk.
        From a folder given with ``--pictures`` only this room's files go; the folder stays.
        """
        async with self._transaction():
            async with self.db.execute(  # a file another room shares (one --pictures folder, same picture) stays
                "SELECT key FROM pictures WHERE room_id = ? AND key NOT IN (SELECT key FROM pictures WHERE room_id != ?)",
                (room_id, room_id),
            ) as cursor:
                files = [self._picture_path(key) for (key,) in await cursor.fetchall()]
            options = (await self.room(room_id)).options
            emptied = [Path(options["pictures"])] if options.get("pictures_folder_made") else []
            await self._run("DELETE FROM rooms WHERE id = ?", (room_id,))
        try:
            await asyncio.to_thread(_remove_pictures, files, emptied, self.pictures / str(room_id))
        except OSError as exc:
            raise StorageError(
                f"Room {room_id} is deleted, but some of its pictures could not be removed "
                f"({exc.strerror}: {exc.filename}); delete them by hand."
            ) from None

    async def picture_folder(self, room_id: int) -> Path:
        """Where the room's new pictures are written: the folder a console room was given
        (its ``pictures`` option; with ``pictures_folder_made``, one made for it alone, which
        goes with the room once empty), else its own folder beside the database."""
        row = await self._row("SELECT options FROM rooms WHERE id = ?", (room_id,))
        return self._folder_from(row, room_id)

    def _folder_from(self, row: Any, room_id: int) -> Path:
        chosen = json.loads(row[0]).get("pictures") if row else None
        return Path(chosen) if chosen else self.pictures / str(room_id)

    # --- forks ---------------------------------------------------------------

    async def fork_source(self, room_id: int, event_id: int) -> ForkSource:
        """Where a fork from event ``event_id`` of room ``room_id`` starts; ForkError says why it cannot."""
        await self.room(room_id)  # "There is no room N."
        row = await self._row(
            "SELECT room_id, kind, data, history_len FROM events WHERE id = ?", (event_id,)
        )
        if row is None or row[0] != room_id:
            raise ForkError(
                f"Event {event_id} is not in room {room_id}; `python -m bot export {room_id} --numbered` shows its events."
            )
        _, kind, data, at = row
        if kind not in ("Reply", "ImageMade"):
            raise ForkError(
                f"Event {event_id} of room {room_id} is {KIND_WORDS.get(kind, 'not a message')}; "
                "a fork starts from an AI's reply or picture."
            )
        seats = None
        if at is not None:
            seats = await self._row(
                "SELECT data FROM seats WHERE room_id = ? AND event_id <= ? ORDER BY event_id DESC LIMIT 1",
                (room_id, event_id),
            )
        if seats is None:
            raise ForkError(
                f"Event {event_id} of room {room_id} is from before Séance recorded where forks start; "
                "fork from a later message."
            )
        message = json.loads(data)
        reply = kind == "Reply"
        return ForkSource(
            room_id, event_id, "reply" if reply else "picture", message["number"], message["label"],
            message["text"] if reply else message["caption"], at, json.loads(seats[0]),
        )

    async def create_fork(
        self,
        source: ForkSource,
        origin: str,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        thread_id: int | None = None,
        options: dict[str, Any] | None = None,
        lease: tuple[str, float] | None = None,
    ) -> int:
        """Store a new room forked at ``source``: its parent's scenario and settings, the seats
        and the history up to that point (see ``fork_state``); returns its number. ``lease``:
        as for ``create_room``.

        One transaction. Pictures are copied into the fork's own folder (on the database's
        thread, off the event loop), so deleting either room leaves the other whole. The
        parent is only read: it goes on as it was.
        """
        parent = await self._row(
            "SELECT scenario, settings, snapshot FROM rooms WHERE id = ?", (source.room_id,)
        )
        if parent is None:
            raise ForkError(f"Room {source.room_id} is no longer stored, so it cannot be forked.")
        scenario, settings, snapshot = parent
        entries = await self._rows(
            "SELECT data FROM entries WHERE room_id = ? AND seq < ? ORDER BY seq", (source.room_id, source.at)
        )
        history = [json.loads(data) for (data,) in entries]
        read = await self._picture_reader(e["picture"].get("key") for e in history if e.get("picture"))
        state = fork_state(json.loads(snapshot), source.seats, history, source.number)
        now = time.time()
        row = (
            origin, guild_id, channel_id, thread_id, scenario, settings, json.dumps(options or {}), state["state"],
            json.dumps(state), len(history), now, now, source.room_id, source.event_id,
        )

        def create(conn: sqlite3.Connection) -> int:
            fork_id = _execute(
                conn,
                "INSERT INTO rooms (origin, guild_id, channel_id, thread_id, scenario, settings, options, state,"
                " snapshot, history_len, created_at, updated_at, parent_id, fork_event)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            assert fork_id is not None
            batch = Batch(conn)
            for seq, entry in enumerate(history):
                batch.add(SAVE_ENTRY, (fork_id, seq, json.dumps(self._copy_entry(batch, fork_id, entry, read))))
            self._send(conn, batch.statements())
            _lease_new(conn, fork_id, lease, now)
            return fork_id

        async with self._writing:
            fork_id: int = await self._on_thread(lambda conn: _in_transaction(conn, create))
        return fork_id

    def _copy_entry(
        self, batch: Batch, room_id: int, entry: dict[str, Any], read: Callable[[str], bytes | None]
    ) -> dict[str, Any]:
        """A history entry for a fork: its picture, if it is still there, copied as the fork's own."""
        ref = entry.get("picture")
        if not ref:
            return entry
        raw = read(ref["key"]) if ref.get("key") else None
        if raw is None:
            return {k: v for k, v in entry.items() if k != "picture"}  # the caption stays
        picture = Picture(raw, ref.get("mime", "image/png"), ref.get("offline", False))
        return {**entry, "picture": {**ref, "key": self._write_picture(batch, room_id, picture)}}

    async def find_message(self, message_id: int, place_id: int) -> tuple[int, int | None] | None:
        """The stored room and event of a Discord message posted in channel or thread ``place_id``.

        An AI's messages are found at once (``messages``); the others (notices, a person's
        words relayed by the room) by the message ids of the rooms held there. The event is
        None for an AI message stored before events were remembered with it.
        """
        row = await self._row(
            "SELECT room_id, event_id FROM messages WHERE message_id = ?", (message_id,)
        )
        if row is not None:
            return row[0], row[1]
        rows = await self._rows(
            "SELECT events.id, events.room_id, events.message_ids FROM events JOIN rooms ON rooms.id = events.room_id"
            " WHERE (rooms.channel_id = ? OR rooms.thread_id = ?) AND events.message_ids LIKE ?",
            (place_id, place_id, f"%{message_id}%"),
        )
        found = [(room_id, event_id) for event_id, room_id, ids in rows if message_id in json.loads(ids)]
        return found[0] if found else None

    # --- events --------------------------------------------------------------

    async def mark_posted(self, event_ids: int | Iterable[int], message_ids: Iterable[int] = ()) -> None:
        """Mark events posted; an AI's messages are also remembered, so votes on them count after a restart."""
        ids = [event_ids] if isinstance(event_ids, int) else list(event_ids)
        if ids:
            await self.group.submit(MarkWrite(ids, list(message_ids)))

    def _mark(self, batch: Batch, ids: list[int], message_ids: list[int]) -> None:
        """Events posted as these messages; an AI's messages are remembered as its, so votes on
        them count after a restart (``batch.authors``: read for the whole batch at once)."""
        now, posted = time.time(), json.dumps(message_ids)
        for event_id in ids:
            batch.add(MARK_POSTED, (now, posted, event_id))
            if (author := batch.authors.get(event_id)) is not None:
                room_id, number = author
                batch.add_all(ADD_AUTHOR, [(message_id, room_id, number, event_id) for message_id in message_ids])

    async def progress(self, event_id: int, message_ids: Iterable[int]) -> None:
        """Some of an event's messages are out (a split reply cut short by Discord): remember
        them, so that showing it again posts only the rest."""
        await self.group.submit(ProgressWrite(event_id, list(message_ids)))

    async def last_message_id(self, room_id: int) -> int | None:
        """The newest Discord message recorded for the room: anything older was posted and marked."""
        row = await self._row(
            "SELECT message_ids FROM events WHERE room_id = ? AND posted_at IS NOT NULL AND message_ids != '[]'"
            " ORDER BY id DESC LIMIT 1",
            (room_id,),
        )
        return max(json.loads(row[0])) if row else None

    async def has_unposted(self, room_id: int) -> bool:
        """Whether any of the room's events was never marked posted."""
        (found,) = await self._row(
            "SELECT EXISTS (SELECT 1 FROM events WHERE room_id = ? AND posted_at IS NULL)", (room_id,)
        )
        return bool(found)

    async def unposted(self, room_id: int) -> list[StoredEvent]:
        return await self.events(room_id, only_unposted=True)

    async def events(self, room_id: int, only_unposted: bool = False) -> list[StoredEvent]:
        query = "SELECT id, kind, data, created_at, posted_at, message_ids FROM events WHERE room_id = ?"
        if only_unposted:
            query += " AND posted_at IS NULL"
        rows = [(i, kind, json.loads(data), *rest) for i, kind, data, *rest in await self._rows(query + " ORDER BY id", (room_id,))]
        read = await self._picture_reader(data["picture"]["key"] for _, _, data, *_ in rows if data.get("picture"))
        return [
            StoredEvent(i, room_id, self._event_from(kind, data, read), created, posted, json.loads(ids or "[]"))
            for i, kind, data, created, posted, ids in rows
        ]

    # --- spending and per-server settings ----------------------------------------

    def _book(self, batch: Batch, room_id: int, spent: list[Spent]) -> None:
        """Add costs to the room's row for today: in the save's transaction, so a cost is
        booked exactly when the room state that counted it is."""
        day = self.today()
        for cost in spent:
            batch.add(BOOK_SPEND, (room_id, room_id, day, cost.kind, cost.tokens, cost.usd))

    async def spent(self, day: str, *, guild_id: int | None = None, room_id: int | None = None) -> float:
        """Dollars spent on ``day`` (UTC, YYYY-MM-DD) by one server or one room."""
        column, value = ("room_id", room_id) if room_id is not None else ("guild_id", guild_id)
        (total,) = await self._row(
            f"SELECT COALESCE(SUM(usd), 0) FROM spend WHERE {column} = ? AND day = ?", (value, day)
        )
        return total

    async def spending(
        self, since: str | None = None, until: str | None = None, guild_id: int | None = None
    ) -> list[SpendRow]:
        """Spending rows between two UTC days (inclusive), for the host's bookkeeping."""
        clauses, args = [], []
        for clause, value in (("day >= ?", since), ("day <= ?", until), ("guild_id = ?", guild_id)):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return [SpendRow(*row) for row in await self._rows(
            f"SELECT room_id, guild_id, day, kind, count, tokens, usd FROM spend{where} ORDER BY guild_id, room_id, day, kind",
            args,
        )]

    async def guild_settings(self, guild_id: int) -> dict[str, Any]:
        """What a server has set (absent or None: the environment's value)."""
        columns = ", ".join(GUILD_COLUMNS)
        row = await self._row(f"SELECT {columns} FROM guild_settings WHERE guild_id = ?", (guild_id,))
        if row is None:
            return {}
        return {
            name: json.loads(value) if name in GUILD_LISTS and value is not None else value
            for name, value in zip(GUILD_COLUMNS, row)
        }

    async def set_guild_settings(self, guild_id: int, values: dict[str, Any]) -> None:
        """Set some of a server's settings; None puts one back to the environment's value."""
        unknown = set(values) - set(GUILD_COLUMNS)
        if unknown:
            raise ValueError(f"unknown server settings: {', '.join(sorted(unknown))}")
        if not values:
            return
        names = list(values)
        stored = [json.dumps(values[n]) if n in GUILD_LISTS and values[n] is not None else values[n] for n in names]
        updates = ", ".join(f"{n} = excluded.{n}" for n in names)
        async with self._transaction():
            await self._run(
                f"INSERT INTO guild_settings (guild_id, {', '.join(names)}, updated_at)"
                f" VALUES (?, {', '.join('?' * len(names))}, ?)"
                f" ON CONFLICT (guild_id) DO UPDATE SET {updates}, updated_at = excluded.updated_at",
                (guild_id, *stored, time.time()),
            )

    async def guild_scenarios(self, guild_id: int) -> dict[str, dict[str, Any]]:
        """A server's own scenarios: name -> the fields of its table, oldest first."""
        return {name: json.loads(data) for name, data in await self._rows(
            "SELECT name, data FROM guild_scenarios WHERE guild_id = ? ORDER BY created_at, name", (guild_id,)
        )}

    async def set_guild_scenarios(self, guild_id: int, tables: dict[str, dict[str, Any]]) -> None:
        """Add scenarios to a server, replacing any of its own with the same name, in one transaction."""
        now = time.time()
        async with self._transaction():
            await self._run_many(
                "INSERT INTO guild_scenarios (guild_id, name, data, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (guild_id, name) DO UPDATE SET data = excluded.data",
                [(guild_id, name, json.dumps(table), now) for name, table in tables.items()],
            )

    async def remove_guild_scenario(self, guild_id: int, name: str) -> bool:
        """Forget one of a server's scenarios; False if it had none by that name."""
        async with self._transaction():
            async with self.db.execute(
                "DELETE FROM guild_scenarios WHERE guild_id = ? AND name = ?", (guild_id, name)
            ) as cursor:
                return cursor.rowcount > 0

    # --- room leases (see bot/leases.py) ---------------------------------------------

    async def take_lease(self, room_id: int, owner: str, seconds: float, now: float | None = None) -> str | None:
        """Take the room's lease for ``seconds`` if it is free, expired or ``owner``'s already.

        One statement decides, atomically on both backends: the row is inserted, or
        updated only where the old lease has expired (or is ours). Returns the owner
        holding it afterwards (``owner`` if taken; None if the room is not stored).
        """
        now = time.time() if now is None else now

        def take(conn: sqlite3.Connection) -> str | None:
            _execute(
                conn,
                "INSERT INTO room_leases (room_id, owner, expires_at, taken_at)"  # typed: PostgreSQL reads
                " SELECT id, CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION), CAST(? AS DOUBLE PRECISION)"  # a bare
                " FROM rooms WHERE id = ?"  # parameter in a SELECT list as text
                " ON CONFLICT (room_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at,"
                " taken_at = excluded.taken_at"
                " WHERE room_leases.owner = excluded.owner OR room_leases.expires_at <= ?",
                (owner, now + seconds, now, room_id, now),
            )
            row = _fetch_one(conn, "SELECT owner FROM room_leases WHERE room_id = ?", (room_id,))
            return row[0] if row else None

        return await self._lease_write(take)

    async def renew_leases(
        self, owner: str, room_ids: Iterable[int], seconds: float, now: float | None = None
    ) -> set[int]:
        """Extend ``owner``'s unexpired leases on ``room_ids``; returns the rooms still held.

        A lease that expired is not renewed even if nobody took it: its owner may have been
        paused past it, and a room is driven only under a lease held without a gap.
        One statement in one hop to the database's thread (``_lease_write``): as a transaction
        of statements and chunked reads it took some twenty trips through a busy event loop,
        several seconds for a thousand leases while a thousand rooms came back.
        """
        room_ids = list(room_ids)
        if not room_ids:
            return set()
        now = time.time() if now is None else now
        marks = ",".join("?" * len(room_ids))
        sql = (
            f"UPDATE room_leases SET expires_at = ? WHERE owner = ? AND expires_at > ? AND room_id IN ({marks})"
            " RETURNING room_id"
        )

        def renew(conn: sqlite3.Connection) -> set[int]:
            return {room_id for (room_id,) in _fetch_all(conn, sql, (now + seconds, owner, now, *room_ids))}

        kept: set[int] = await self._lease_write(renew)
        return kept

    async def release_leases(self, owner: str, room_ids: Iterable[int] | None = None) -> None:
        """Give up ``owner``'s leases (all of them, or on ``room_ids``), so another process may take them at once."""
        chosen = None if room_ids is None else list(room_ids)
        if chosen == []:
            return
        if chosen is None:
            sql, args = "DELETE FROM room_leases WHERE owner = ?", (owner,)
        else:
            sql = f"DELETE FROM room_leases WHERE owner = ? AND room_id IN ({','.join('?' * len(chosen))})"
            args = (owner, *chosen)
        await self._lease_write(lambda conn: _execute(conn, sql, args))

    async def _lease_write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """A lease's write: one transaction in one hop to the database's thread, before the
        rooms' writes still waiting (``WriteLock.first``), so a renewal lands in time however
        busy the process is (it waits for at most the batch being written)."""
        async with self._writing.first():
            return await self._on_thread(lambda conn: _in_transaction(conn, work))

    async def leases(self, now: float | None = None) -> dict[int, tuple[str, float]]:
        """Every unexpired lease: room id -> (owner, expires_at)."""
        now = time.time() if now is None else now
        return {room_id: (owner, expires) for room_id, owner, expires in await self._rows(
            "SELECT room_id, owner, expires_at FROM room_leases WHERE expires_at > ?", (now,)
        )}

    # --- Discord bookkeeping ----------------------------------------------------

    async def remember_message(self, message_id: int, room_id: int, ai_number: int) -> None:
        async with self._transaction():
            await self._run(
                f"INSERT INTO messages (message_id, room_id, ai_number) VALUES (?, ?, ?) {REPLACE_MESSAGE}",
                (message_id, room_id, ai_number),
            )

    async def ai_for_message(self, message_id: int) -> tuple[int, int] | None:
        row = await self._row("SELECT room_id, ai_number FROM messages WHERE message_id = ?", (message_id,))
        return (row[0], row[1]) if row else None

    async def record_vote(self, room_id: int, voter: str, ai_number: int, turn: int) -> None:
        async with self._transaction():
            await self._run(
                "INSERT INTO votes (room_id, voter, ai_number, turn, created_at) VALUES (?, ?, ?, ?, ?)",
                (room_id, voter, ai_number, turn, time.time()),
            )

    async def webhook(self, channel_id: int) -> tuple[int, str] | None:
        row = await self._row("SELECT webhook_id, token FROM webhooks WHERE channel_id = ?", (channel_id,))
        return (row[0], row[1]) if row else None

    async def set_webhook(self, channel_id: int, webhook_id: int, token: str) -> None:
        async with self._transaction():
            await self._run(
                "INSERT INTO webhooks (channel_id, webhook_id, token) VALUES (?, ?, ?)"
                " ON CONFLICT (channel_id) DO UPDATE SET webhook_id = excluded.webhook_id, token = excluded.token",
                (channel_id, webhook_id, token),
            )

    async def forget_webhook(self, channel_id: int) -> None:
        async with self._transaction():
            await self._run("DELETE FROM webhooks WHERE channel_id = ?", (channel_id,))

    async def command_copies(self) -> list[int]:
        """Servers where a server sync installed a copy of the slash commands."""
        return [guild_id for (guild_id,) in await self._rows("SELECT guild_id FROM command_copies ORDER BY guild_id")]

    async def set_command_copy(self, guild_id: int, present: bool) -> None:
        async with self._transaction():
            if present:
                await self._run(
                    "INSERT INTO command_copies (guild_id, synced_at) VALUES (?, ?)"
                    " ON CONFLICT (guild_id) DO UPDATE SET synced_at = excluded.synced_at",
                    (guild_id, time.time()),
                )
            else:
                await self._run("DELETE FROM command_copies WHERE guild_id = ?", (guild_id,))

    # --- internals -------------------------------------------------------------

    def _save_entries(self, batch: Batch, room_id: int, first_seq: int, entries: list[Entry]) -> None:
        for seq, entry in enumerate(entries, start=first_seq):
            key = self._write_picture(batch, room_id, entry.picture) if entry.picture else None
            batch.add(SAVE_ENTRY, (room_id, seq, json.dumps(entry_to_dict(entry, key))))

    def _add_event(self, batch: Batch, room_id: int, event: Event) -> int:
        """Add an event's row to ``batch``; returns the id it is stored under."""
        data = asdict(event)
        picture = getattr(event, "picture", None)  # an AI's (ImageMade) or a person's (Said)
        if picture is not None:
            data["picture"] = {
                "key": self._write_picture(batch, room_id, picture),
                "mime": picture.mime,
                "offline": picture.offline,
            }
        return batch.add_event(room_id, type(event).__name__, json.dumps(data), time.time())

    def _write_picture(self, batch: Batch, room_id: int, picture: Picture) -> str:
        """Store a picture once (by content) and return its key: relative to the store's
        folder for its own rooms, the full path for a folder the room was given.
        Runs on the database's thread, so the file is written off the event loop."""
        row = _fetch_one(batch.conn, "SELECT options FROM rooms WHERE id = ?", (room_id,))
        folder = self._folder_from(row, room_id)
        own = folder == self.pictures / str(room_id)
        path = folder / picture_name(picture)
        key = f"{room_id}/{path.name}" if own else str(path.absolute())
        write_picture(path, picture.data)
        # Listed even when the file was already there (an earlier, rolled-back save wrote it),
        # so deleting the room always finds every file it has.
        batch.add("INSERT INTO pictures (key, room_id, mime) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (key, room_id, picture.mime))
        return key

    def _picture_path(self, key: str) -> Path:
        path = Path(key)
        return path if path.is_absolute() else self.pictures / path

    def _read_picture(self, key: str) -> bytes | None:
        path = self._picture_path(key)
        return path.read_bytes() if path.exists() else None

    async def _picture_reader(self, keys: Iterable[str | None]) -> Callable[[str], bytes | None]:
        """How the pictures with these keys are read: here from disk, one file when asked
        (PostgreSQL fetches them all in one query first)."""
        return self._read_picture

    def _event_from(self, kind: str, data: dict[str, Any], read: Callable[[str], bytes | None]) -> Event:
        cls = EVENT_TYPES[kind]
        if (ref := data.pop("picture", None)) is not None:
            raw = read(ref["key"]) or b""
            data["picture"] = Picture(raw, ref["mime"], ref["offline"])
        if cls is Reply and isinstance(data.get("usage"), dict):
            data["usage"] = Usage(**data["usage"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def newest_pictures(rows: list[dict[str, Any]], limit: int) -> set[int]:
    """The places of the stored entries whose picture bytes a restored room loads: only the
    newest ``limit`` can still be sent to a model; older ones stay on disk."""
    with_pictures = [i for i, data in enumerate(rows) if data.get("picture")]
    return set(with_pictures[len(with_pictures) - limit :]) if limit > 0 else set()


def room_from_rows(
    catalog: Catalog,
    scenario: Scenario,
    settings: RoomSettings,
    state: dict[str, Any],
    rows: list[dict[str, Any]],
    wanted: set[int],
    read: Callable[[str], bytes | None],
) -> Room:
    """A stored room as a running bot holds it (both backends load rooms through here, and
    ``bench/memory.py`` too, so its figures are the restored rooms' own)."""
    history = [entry_from_dict(data, read if i in wanted else _no_bytes) for i, data in enumerate(rows)]
    room = restore_room(catalog, scenario, settings, state, history)
    room.stored_upto = room.history_length
    room.tidy_if_due()
    return room


def _lease_new(conn: sqlite3.Connection, room_id: int, lease: tuple[str, float] | None, now: float) -> None:
    """A new room's lease, in the transaction that creates the room (see ``Store.take_lease``)."""
    if lease is not None:
        owner, seconds = lease
        _execute(
            conn,
            "INSERT INTO room_leases (room_id, owner, expires_at, taken_at) VALUES (?, ?, ?, ?)",
            (room_id, owner, now + seconds, now),
        )


def _in_transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], Any]) -> Any:
    """``work`` in one transaction on the database's thread: committed, or rolled back whole."""
    # On SQLite, the write lock first: a transaction that read before writing cannot wait for another
    # process sharing the file, and fails at once as "locked". PostgreSQL locks rows, not the database.
    conn.execute("BEGIN IMMEDIATE" if isinstance(conn, sqlite3.Connection) else "BEGIN").close()
    try:
        result = work(conn)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return result


# Every cursor is closed where it was made, on the database's thread: one left to the garbage
# collector (held by an exception's traceback, say) would be finalised on the event loop's thread.
def _execute(conn: sqlite3.Connection, sql: str, args: Iterable[Any] = ()) -> int | None:
    cursor = conn.execute(sql, tuple(args))
    try:
        return cursor.lastrowid
    finally:
        cursor.close()


def _execute_many(conn: sqlite3.Connection, sql: str, rows: Iterable[Iterable[Any]]) -> None:
    conn.executemany(sql, rows).close()


def _fetch_all(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[Any]:
    cursor = conn.execute(sql, args)
    try:
        return cursor.fetchall()
    finally:
        cursor.close()


def _fetch_one(conn: sqlite3.Connection, sql: str, args: Iterable[Any] = ()) -> Any:
    cursor = conn.execute(sql, tuple(args))
    try:
        return cursor.fetchone()
    finally:
        cursor.close()


def picture_name(picture: Picture) -> str:
    """A picture's file name, from its content: a name always shows the same picture, and
    the same picture is stored once however often it is saved or shown."""
    return f"{hashlib.sha256(picture.data).hexdigest()[:32]}.{picture.extension}"


def write_picture(path: Path, data: bytes) -> None:
    """Write a picture file unless it is there already; never half a picture under its real name."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".part")
    temporary.write_bytes(data)
    temporary.replace(path)


def _remove_pictures(files: list[Path], emptied: list[Path], own: Path) -> None:
    """A deleted room's picture files, its folder beside the database whole, and ``emptied``
    (folders made for it) once empty; a folder someone chose keeps everything else, itself too."""
    for path in files:
        path.unlink(missing_ok=True)
    if own.exists():
        shutil.rmtree(own)
    for folder in emptied:
        with contextlib.suppress(OSError):  # not empty, or already gone
            folder.rmdir()


def _no_bytes(key: str) -> bytes:
    """A picture left on disk: known by its place, its bytes read only if someone asks."""
    return b""


async def _connect(path: Path, read_only: bool) -> aiosqlite.Connection:
    target = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro" if read_only else str(path)
    connecting = aiosqlite.connect(target, uri=read_only)
    worker = getattr(connecting, "_thread", None)
    if worker is not None:  # a store nobody closed (a script, a crash) must not keep the process alive
        worker.daemon = True
    return await connecting


async def _prepare(db: aiosqlite.Connection, read_only: bool) -> None:
    """Check the schema version first: a database from a newer Séance is refused before anything is written."""
    version = await schema_version(db)
    check_version(version)
    if read_only:
        if version != len(MIGRATIONS):
            raise StorageError(
                "The database is read-only and was written by an older Séance; make it writable once "
                "(chmod u+w), so it can be upgraded."
            )
        return
    async with db.execute("PRAGMA journal_mode=WAL"):  # closed at once: its row holds the statement open
        pass
    await db.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it crash-safe; only an OS crash may lose the last commit
    await db.execute("PRAGMA foreign_keys=ON")
    await migrate(db)


async def schema_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cursor:
        (version,) = await cursor.fetchone()
    return version


def check_version(version: int) -> None:
    if version > len(MIGRATIONS):
        raise StorageError(
            f"The database is at schema version {version}, but this Séance only knows up to "
            f"{len(MIGRATIONS)}. Upgrade Séance, or point DATABASE_PATH at another file."
        )


async def migrate(db: aiosqlite.Connection) -> int:
    """Bring the schema up to date; refuse a database written by newer code."""
    version = await schema_version(db)
    check_version(version)
    if version == len(MIGRATIONS):
        return version
    # Off while migrating (it cannot change inside a transaction): a migration that rebuilds a
    # table drops the old one, which must not delete the rows that refer to it.
    await db.execute("PRAGMA foreign_keys=OFF")
    try:
        for number in range(version + 1, len(MIGRATIONS) + 1):
            await db.executescript(f"BEGIN;\n{MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\nCOMMIT;")
        async with db.execute("PRAGMA foreign_key_check") as cursor:
            broken = await cursor.fetchall()
        if broken:
            raise StorageError(f"The database's links between tables are broken after upgrading ({broken[0][0]}).")
    finally:
        await db.execute("PRAGMA foreign_keys=ON")
    return len(MIGRATIONS)


async def open_store(settings: Settings, *, writing: bool = True) -> Store:
    """The store the settings name: DATABASE_URL if set, else SQLite at DATABASE_PATH."""
    if settings.database_url is None:
        return await Store.open(settings.database_path, writing=writing)
    return await open_url(settings.database_url.get_secret_value(), writing=writing)


async def open_url(url: str, *, writing: bool = True) -> Store:
    """A store from a URL: ``postgresql://...`` (or ``postgres://``), or ``sqlite:///relative/path``
    (``sqlite:////absolute/path``). ``writing`` False: a command that only reads."""
    scheme = url.partition("://")[0].lower()
    if scheme == "sqlite":
        return await Store.open(sqlite_path(url), writing=writing)
    if scheme in ("postgresql", "postgres"):
        from bot.postgres import PgStore

        return await PgStore.open(url, writing=writing)
    raise StorageError(
        f"A database URL starts with postgresql:// or sqlite:///, not {scheme or 'nothing'}://; for example "
        f"postgresql://seance:password@localhost:5432/seance or sqlite:///data/seance.sqlite3."
    )


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///`` URL: three slashes then a relative path, four for an absolute one."""
    if not url.lower().startswith("sqlite:///") or len(url) == len("sqlite:///"):
        raise StorageError(f"{url} names no file; write sqlite:///data/seance.sqlite3 (sqlite:////srv/... for /srv/...).")
    return Path(urllib.parse.unquote(url[len("sqlite:///") :]))


class Journal:
    """One room's storage as its runner sees it (``bot.runner.Journal``).

    The room knows how much of its history is stored (``Room.stored_upto``), so
    a save is captured from it in one step, with no await between taking the
    events and reading the state they belong to.
    """

    def __init__(self, store: Store, room_id: int, leases: Leases | None = None):
        self.store = store
        self.room_id = room_id
        self._stored: tuple[str, str] | None = None  # (state, snapshot) as last written
        self._encode = StateJson()
        self.leases = leases  # where several processes share the database: write only under the room's lease

    async def record(self, room: Room) -> list[tuple[int | None, Event]]:
        """Take the room's queued events and store them with the room as it is now.

        Returns every event taken, in order, with its stored id (None for picture
        jobs, which the room's state remembers). If the write fails, the events go
        back to the room, so the next record stores them. A room that has not changed
        since its last save is not written again.
        """
        if self.leases is not None:
            await self.leases.confirm(self.room_id)  # LeaseLost: another process may drive the room now
        if room.stored_upto is None:
            room.stored_upto = await self.store.history_len(self.room_id)
        events = room.take_events()
        save = capture(room, room.stored_upto, events, self._encode)
        if self._unchanged(save):
            return [(None, event) for event in events]
        try:
            ids = iter(await self.store.write(self.room_id, save))
        except BaseException:
            room.put_back(events)
            self._stored = None
            raise
        self._stored = (save.state, save.snapshot)
        room.stored_upto = save.history_len  # the room may now forget what is stored
        stored = {id(event) for event in save.events}
        return [(next(ids) if id(event) in stored else None, event) for event in events]

    def _unchanged(self, save: RoomSave) -> bool:
        return not (save.entries or save.events or save.spent) and self._stored == (save.state, save.snapshot)

    async def posted(self, event_ids: list[int], message_ids: list[int]) -> None:
        await self.store.mark_posted(event_ids, message_ids)

    async def progress(self, event_id: int, message_ids: list[int]) -> None:
        await self.store.progress(event_id, message_ids)

    async def unposted(self) -> list[tuple[int, Event, list[int]]]:
        return [(s.id, s.event, s.message_ids) for s in await self.store.unposted(self.room_id)]
