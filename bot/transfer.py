"""``python -m bot migrate``: copy a SQLite installation into PostgreSQL, whole, and check it.

Every table of the SQLite database is copied row for row (so tables added by later
migrations come along without changes here), room and event numbers included, and each
picture's bytes are read from its file into the ``pictures`` row. It all happens in one
PostgreSQL transaction: the counts of every table are compared before it commits, so a
copy is complete or absent. The target must be empty: merging two installations would
have to renumber rooms, which their channels' messages and exports refer to.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.postgres import ERRORS, PgStore, describe_pg_failure, where
from bot.storage import Store, StorageError, open_url, sqlite_path

FIRST = ("rooms",)  # copied before the tables whose rows refer to them
CONVERT: dict[str, Callable[[Any], Any]] = {"double precision": float, "bigint": int, "integer": int, "text": str}


@dataclass
class Copied:
    """What one migration copied: rows per table, pictures whose file was missing, seconds taken."""

    rows: dict[str, int] = field(default_factory=dict)
    missing_pictures: int = 0
    seconds: float = 0.0

    def summary(self, target: str) -> str:
        counts = ", ".join(f"{count} {table}" for table, count in self.rows.items())
        missing = (
            f" {self.missing_pictures} picture file(s) were missing on disk; their rows are copied without bytes."
            if self.missing_pictures else ""
        )
        return f"Copied to {target} in {self.seconds:.1f} s, every count checked: {counts}.{missing}"


async def migrate(source_url: str, target_url: str) -> Copied:
    """Copy the SQLite database ``source_url`` into the empty PostgreSQL database ``target_url``."""
    if not source_url.lower().startswith("sqlite:"):
        raise StorageError(f"--from takes a SQLite database as sqlite:///path/to/seance.sqlite3, not {_scheme(source_url)}.")
    if not target_url.lower().startswith(("postgresql:", "postgres:")):
        raise StorageError(f"--to takes a PostgreSQL database as postgresql://user:password@host/db, not {_scheme(target_url)}.")
    path = sqlite_path(source_url)
    if not path.is_file():
        raise StorageError(f"There is no SQLite database at {path}; name the bot's DATABASE_PATH in --from.")
    started = time.perf_counter()
    source = await Store.open(path)  # an older schema is brought up to date first, as the bot would
    try:
        target = await open_url(target_url)
        assert isinstance(target, PgStore)
        try:
            copied = await _copy(source, target)
        except ERRORS as exc:
            raise StorageError(describe_pg_failure(target_url, exc)) from None
        finally:
            await target.close()
    finally:
        await source.close()
    copied.seconds = time.perf_counter() - started
    return copied


def _scheme(url: str) -> str:
    return f"{url.partition('://')[0]}://" if "://" in url else repr(url)


async def _copy(source: Store, target: PgStore) -> Copied:
    tables = await _tables(source)
    copied = Copied()
    async with target.db.pool.acquire() as connection, connection.transaction():
        columns = await _target_columns(connection)
        await _refuse_unless_empty(connection, tables, columns, target)
        for table in tables:
            names = await _source_columns(source, table)
            unknown = [name for name in names if name not in columns.get(table, {})]
            if unknown:
                raise StorageError(f"The PostgreSQL schema has no {table}({', '.join(unknown)}); its migration is missing.")
            rows = [tuple(row) for row in await source.db.execute_fetchall(f"SELECT {', '.join(names)} FROM {table}")]
            if table == "pictures":
                names, rows, copied.missing_pictures = _with_bytes(source, names, rows)
            convert = [CONVERT.get(columns[table][name]) for name in names]
            records = [
                tuple(v if v is None or c is None else c(v) for v, c in zip(row, convert)) for row in rows
            ]
            await connection.copy_records_to_table(table, records=records, columns=names)
            stored = await connection.fetchval(f"SELECT count(*) FROM {table}")
            if stored != len(rows):
                raise StorageError(f"{table}: {len(rows)} rows read but {stored} stored; nothing was copied.")
            copied.rows[table] = stored
        await _continue_numbering(source, connection)
    return copied


async def _tables(source: Store) -> list[str]:
    rows = await source.db.execute_fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    )
    names = [name for (name,) in rows]
    return [t for t in FIRST if t in names] + [t for t in names if t not in FIRST]


async def _source_columns(source: Store, table: str) -> list[str]:
    return [row[1] for row in await source.db.execute_fetchall(f"PRAGMA table_info({table})")]


async def _target_columns(connection: Any) -> dict[str, dict[str, str]]:
    """Each table's columns in the target, with their types (to convert SQLite's loose values)."""
    rows = await connection.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema()"
    )
    tables: dict[str, dict[str, str]] = {}
    for table, column, kind in rows:
        tables.setdefault(table, {})[column] = kind
    return tables


async def _refuse_unless_empty(connection: Any, tables: list[str], columns: dict[str, dict[str, str]], target: PgStore) -> None:
    for table in tables:
        if table in columns and (count := await connection.fetchval(f"SELECT count(*) FROM {table}")):
            raise StorageError(
                f"{where(target.url)} already holds data ({count} rows in {table}); migrate into an empty database "
                f"(createdb a new one), so no room number is taken twice."
            )


def _with_bytes(source: Store, names: list[str], rows: list[tuple[Any, ...]]) -> tuple[list[str], list[tuple[Any, ...]], int]:
    """The pictures rows with each file's bytes; a missing file is counted, its row kept."""
    key = names.index("key")
    with_bytes = [(*row, source._read_picture(row[key])) for row in rows]
    return [*names, "data"], with_bytes, sum(1 for row in with_bytes if row[-1] is None)


async def _continue_numbering(source: Store, connection: Any) -> None:
    """New rooms and events take numbers after the copied ones, and after deleted rooms' too
    (SQLite's AUTOINCREMENT remembers those in sqlite_sequence)."""
    try:
        used = dict(await source.db.execute_fetchall("SELECT name, seq FROM sqlite_sequence"))
    except sqlite3.OperationalError:  # no AUTOINCREMENT table has had a row yet
        used = {}
    for table in ("rooms", "events"):
        highest = max(await connection.fetchval(f"SELECT COALESCE(max(id), 0) FROM {table}"), used.get(table, 0))
        await connection.execute(
            "SELECT setval(pg_get_serial_sequence($1, 'id'), $2, $3)", table, max(highest, 1), highest > 0
        )
