"""What every entry point does around its event loop: one logging setup, and SIGTERM treated as Ctrl+C.

Hosts stop a worker with SIGTERM (Heroku, Railway, Render, Docker, systemd)
and a closed terminal sends SIGHUP. Python's default for both ends the
process at once, skipping every ``finally``: rooms would not say they go
offline, streamed drafts would stay half-written and the database would be
left for the crash path. ``stopping_on_signals`` turns them into what
``asyncio.run`` does on Ctrl+C: the main task is cancelled, so the same
shutdown code runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from bot.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# One line per HTTP request at INFO (and request bodies at DEBUG) is noise, and
# a URL or a body may carry a key or a webhook token: these never go below WARNING.
CAPPED = ("httpx", "httpcore", "discord.http", "discord.webhook", "aiosqlite")
STOP_SIGNALS = ("SIGTERM", "SIGHUP")
MASK = "[secret]"
# CPython's defaults (700, 10, 10) suit a script, not a process holding a thousand rooms: a young
# collection every 700 new objects ran thousands of times a second, and every few seconds a full
# collection walked every room's history (up to 1.6 s with the loop stopped). At 1,000 rooms the
# collector took 39 % of the bot's CPU; with these, 9 % (bench/rooms.py, the "gc" column).
GC_THRESHOLDS = (50_000, 50, 1_000)


def _not_about_voice(record: logging.LogRecord) -> bool:
    """discord.py warns at every start that voice needs more packages; Séance never speaks."""
    return "voice will NOT be supported" not in record.getMessage()


class MaskingFormatter(logging.Formatter):
    """Formats as usual, then hides every configured secret, tracebacks included (a safety net:
    nothing is meant to log a key, but an exception message may quote a header or URL)."""

    def __init__(self, secrets: list[str]):
        super().__init__(FORMAT)
        # Longest first, so a secret containing another is hidden whole.
        self.secrets = sorted(secrets, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


def secrets_of(settings: Settings) -> list[str]:
    """The values of every secret setting that is set (short ones would mask ordinary words)."""
    values = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value") and len(secret := value.get_secret_value()) >= 8:
            values.append(secret)
    return values


def setup_logging(settings: Settings, default: int = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Configure logging once for the process: LOG_LEVEL (else ``default``), one format, secrets masked.

    Replaces a handler an earlier call installed (tests run several entry points
    in one process) and leaves other handlers alone (pytest's capture among them).
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "seance", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(MaskingFormatter(secrets_of(settings)))
    handler.seance = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    level = logging.getLevelName(settings.log_level) if settings.log_level else default
    root.setLevel(level)
    for name in CAPPED:
        logging.getLogger(name).setLevel(max(logging.WARNING, level))
    voice = logging.getLogger("discord.client")
    if _not_about_voice not in voice.filters:
        voice.addFilter(_not_about_voice)
    return handler


def tune_gc() -> None:
    """Collect less often: young garbage is still found within 50,000 allocations, and a full
    collection (whose pause grows with every object alive) waits for 2.5 billion (default: 70,000)
    and, as always, for the long-lived objects to have grown by a quarter.
    Nothing Séance keeps depends on prompt cycle collection: rooms, drafts and connections are
    closed explicitly, so this trades only a little memory held by dead cycles for CPU."""
    gc.set_threshold(*GC_THRESHOLDS)


@dataclass
class Stop:
    """Which signal asked the process to stop (None while none has)."""

    signal: int | None = None

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + (self.signal or 0)


@contextlib.contextmanager
def stopping_on_signals(task: asyncio.Task[object] | None = None) -> Iterator[Stop]:
    """While inside, SIGTERM and SIGHUP cancel ``task`` (default: the current one), as Ctrl+C does.

    The first signal starts the shutdown; later ones are ignored, so a host
    repeating SIGTERM does not cut the shutdown short (its SIGKILL still
    would). Where handlers cannot be installed (Windows, a thread other than
    the main one) nothing changes. Handlers are removed on leaving.
    """
    loop = asyncio.get_running_loop()
    target = task or asyncio.current_task()
    assert target is not None, "stopping_on_signals needs a task to cancel"
    stop = Stop()

    def received(number: int) -> None:
        if stop.signal is None:
            stop.signal = number
            logging.getLogger(__name__).info("%s received: shutting down", signal.Signals(number).name)
            target.cancel()

    installed = []
    for name in STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is None:
            continue
        try:
            loop.add_signal_handler(number, received, number)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(number)
    try:
        yield stop
    finally:
        for number in installed:
            loop.remove_signal_handler(number)


def stopped_by_signal(stop: Stop) -> bool:
    """Call from ``except asyncio.CancelledError``: True if our signal caused it (the cancellation
    is then taken back, so the task ends normally), False if it is someone else's to propagate."""
    if stop.signal is None:
        return False
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    return True
