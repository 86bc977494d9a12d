"""Drives one room: asks the engine for turns, calls providers, and shows events on a stage.

The runner is the only place where the engine meets I/O. It knows nothing of
Discord or terminals; a *stage* (the console, a Discord channel) renders the
events it is given. Data flows one way: event -> engine -> stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Protocol

from bot.engine import Event, ImageJob, ModelInfo, Notice, Room, Turn
from bot.providers.base import ChatProvider, ImageProvider, ProviderError, complete

log = logging.getLogger(__name__)


class NotShown(Exception):
    """A stage could not show events (say, a missing permission); they stay stored for later."""


class Stage(Protocol):
    streams: bool  # whether partial() wants the reply as it arrives

    async def show(self, events: list[Event]) -> list[int] | None:
        """Render one batch (a run of notices, or one other event); return the message ids
        it made, if the stage has any. Raise NotShown to keep the batch for later."""
        ...

    def writing(self, turn: Turn) -> contextlib.AbstractAsyncContextManager[None]:
        """Show that an AI is writing for as long as the context is open."""
        ...

    async def partial(self, turn: Turn, text: str) -> None:
        """The reply so far, for stages that stream text as it arrives (may do nothing)."""
        ...


class QuietStage:
    """A stage that shows nothing: for benchmarks and as a base for simple stages."""

    streams = False

    async def show(self, events: list[Event]) -> list[int] | None:
        return None

    @contextlib.asynccontextmanager
    async def writing(self, turn: Turn) -> AsyncIterator[None]:
        yield

    async def partial(self, turn: Turn, text: str) -> None:
        return None


class Journal(Protocol):
    """Storage as the runner sees it: events are recorded before they are shown."""

    async def record(self, room: Room, events: list[Event]) -> list[tuple[int, Event]]: ...

    async def posted(self, event_ids: list[int], message_ids: list[int]) -> None: ...

    async def unposted(self) -> list[tuple[int, Event]]: ...


class RoomRunner:
    def __init__(
        self,
        room: Room,
        chat: Callable[[ModelInfo], ChatProvider],
        images: ImageProvider,
        stage: Stage,
        delay: float = 0.0,
        idle: Callable[[Awaitable[None]], Awaitable[None]] | None = None,
        journal: Journal | None = None,
    ):
        self.room = room
        self.chat = chat
        self.images = images
        self.stage = stage
        self.delay = delay
        # Wraps every wait for outside change, so a host can account for it (the
        # Discord tests declare these waits to simcord as intentional).
        self.idle = idle
        self.journal = journal
        self._backlog = False  # stored events wait to be shown (after a refusal or a restart)
        self._reconcile = False  # look for already-posted copies before showing the backlog
        self._wake = asyncio.Event()
        self._show_lock = asyncio.Lock()
        self._image_tasks: set[asyncio.Task[None]] = set()
        self._turn_task: asyncio.Task[None] | None = None
        self._relay: asyncio.Task[None] | None = None  # hands the reply so far to the stage
        self._fresh = asyncio.Event()  # the reply grew since the relay last looked

    async def run(self, return_on_pause: bool = False) -> None:
        """Take turns until the room stops (or pauses, if nobody is there to resume it).

        If the run is cancelled (a shutdown), unfinished pictures are dropped here:
        the stored room remembers them and a restart makes them again.
        """
        try:
            while self.room.state != "stopped":
                turn = self.room.next_turn()
                await self.flush()
                if turn is None:
                    if return_on_pause and self.room.state == "paused":
                        break
                    await self._wait_for_change()
                    continue
                self._turn_task = asyncio.create_task(self._take(turn))
                try:
                    await self._turn_task
                except asyncio.CancelledError:
                    if _cancelling():
                        raise  # the run itself is being cancelled (Ctrl+C, shutdown)
                    # else stop() cancelled only the turn: the loop sees the stopped room
                self._turn_task = None
                await self.flush()
                await self._wait_for_change(self.delay)
        except BaseException:
            for task in self._image_tasks:
                task.cancel()
            raise
        await self._finish_images()
        await self.flush()

    def poke(self) -> None:
        """Something changed from outside (resume, stop, a vote): look again."""
        self._wake.set()

    def stop(self, reason: str) -> None:
        """Stop the room now; a reply still being written is dropped."""
        self.room.stop(reason)
        if self._turn_task is not None:
            self._turn_task.cancel()
        self.poke()

    async def flush(self) -> None:
        """Record what the room has queued, show it, and start any picture jobs among it."""
        async with self._show_lock:
            events = self.room.take_events()
            for event in events:
                if isinstance(event, ImageJob):
                    self._start_image(event)
            shown = [e for e in events if not isinstance(e, ImageJob)]
            if self.journal is None:
                await self._show([(None, e) for e in shown])
                return
            stored = await self.journal.record(self.room, shown)
            if self._backlog:
                stored = await self.journal.unposted()  # older first, the new ones among them
            await self._show(stored)

    def resume_backlog(self, jobs: Iterable[ImageJob] = ()) -> None:
        """After a restart: show what was stored but never shown, and redo unfinished pictures.

        A crash between posting a message and recording that it was posted would
        post it twice; a stage that can look (``find_posted``) is asked first.
        """
        self._backlog = True
        self._reconcile = True
        for job in jobs:
            self._start_image(job)

    async def _show(self, stored: list[tuple[int | None, Event]]) -> None:
        for batch in _batches(stored):
            events = [event for _, event in batch]
            try:
                message_ids = await self._find_posted(events) or await self.stage.show(events)
            except NotShown:
                self._backlog = self.journal is not None
                return
            except Exception:  # a bug in a stage must not wedge the room on one event
                log.exception("the stage failed to show %d events", len(events))
                message_ids = None
            if self.journal is not None:
                await self.journal.posted([i for i, _ in batch if i is not None], list(message_ids or ()))
        self._backlog = self._reconcile = False

    async def _find_posted(self, events: list[Event]) -> list[int] | None:
        finder = getattr(self.stage, "find_posted", None)
        if not self._reconcile or finder is None:
            return None
        try:
            return await finder(events)
        except Exception:
            log.exception("could not check whether %d events were already posted", len(events))
            return None

    async def _take(self, turn: Turn) -> None:
        model = turn.request.model
        try:
            provider = self.chat(model)
            on_text = (lambda parts: self._partial(turn, parts)) if getattr(self.stage, "streams", False) else None
            async with self.stage.writing(turn):
                try:
                    result = await complete(provider, turn.request, on_text=on_text)
                finally:
                    self._end_partial()
        except ProviderError as exc:
            self.room.fail_turn(turn, exc.reason, pause=exc.pause, usage=exc.usage, refused=exc.refused)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an unexpected library error must not end the room
            log.exception("turn of %s failed", turn.label)
            self.room.fail_turn(turn, f"an unexpected error ({type(exc).__name__})")
            return
        if self.room.state != "stopped":
            self.room.complete_turn(turn, result.text, result.usage, result.reasoning)

    def _partial(self, turn: Turn, parts: list[str]) -> None:
        """The reply grew: wake the turn's one relay task (not a task per delta)."""
        self._fresh.set()
        if self._relay is None:
            self._relay = asyncio.create_task(self._pass_on(turn, parts))

    async def _pass_on(self, turn: Turn, parts: list[str]) -> None:
        """Give the stage the newest reply so far; deltas that arrive meanwhile make one call."""
        while True:
            await self._fresh.wait()
            self._fresh.clear()
            try:
                await self.stage.partial(turn, "".join(parts))
            except Exception:  # a draft is a courtesy: the finished reply is shown anyway
                log.exception("the stage failed to show %s's reply so far", turn.label)

    def _end_partial(self) -> None:
        if self._relay is not None:
            self._relay.cancel()
            self._relay = None
        self._fresh.clear()

    def _start_image(self, job: ImageJob) -> None:
        task = asyncio.create_task(self._make_image(job))
        self._image_tasks.add(task)
        task.add_done_callback(self._image_tasks.discard)

    async def _make_image(self, job: ImageJob) -> None:
        try:
            picture = await self.images.generate(job.prompt)
        except ProviderError as exc:
            self.room.image_failed(job.job_id, exc.reason)
        except Exception as exc:
            log.exception("image job %s failed", job.job_id)
            self.room.image_failed(job.job_id, f"an unexpected error ({type(exc).__name__})")
        else:
            self.room.image_done(job.job_id, picture)
        await self.flush()

    async def _finish_images(self, timeout: float = 120.0) -> None:
        if self._image_tasks:
            await asyncio.wait(set(self._image_tasks), timeout=timeout)

    async def _wait_for_change(self, timeout: float | None = None) -> None:
        """Sleep until poked (or ``timeout`` passes); a stop always wakes us."""
        if self.room.state == "stopped":
            return
        if timeout is None or timeout > 0:
            waiting = self._sleep_until_poked(timeout)
            await (self.idle(waiting) if self.idle is not None else waiting)
        self._wake.clear()

    async def _sleep_until_poked(self, timeout: float | None) -> None:
        # asyncio.timeout rather than wait_for: no helper task, so the wait stays in this task.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()


def _batches(stored: list[tuple[int | None, Event]]) -> list[list[tuple[int | None, Event]]]:
    """Runs of notices travel together (one message); every other event alone."""
    batches: list[list[tuple[int | None, Event]]] = []
    for item in stored:
        if batches and isinstance(item[1], Notice) and isinstance(batches[-1][-1][1], Notice):
            batches[-1].append(item)
        else:
            batches.append([item])
    return batches


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
