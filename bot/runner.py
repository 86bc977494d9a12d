"""Drives one room: asks the engine for turns, calls providers, and shows events on a stage.

The runner is the only place where the engine meets I/O. It knows nothing of
Discord or terminals; a *stage* (the console, a Discord channel) renders the
events it is given. Data flows one way: event -> engine -> stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from bot.engine import Event, ImageJob, ModelInfo, Room, Turn
from bot.providers.base import ChatProvider, ImageProvider, ProviderError, complete

log = logging.getLogger(__name__)


class Stage(Protocol):
    streams: bool  # whether partial() wants the reply as it arrives
    async def show(self, events: list[Event]) -> None:
        """Render events in order (notices, replies, pictures)."""
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

    async def show(self, events: list[Event]) -> None:
        return None

    @contextlib.asynccontextmanager
    async def writing(self, turn: Turn) -> AsyncIterator[None]:
        yield

    async def partial(self, turn: Turn, text: str) -> None:
        return None


class RoomRunner:
    def __init__(
        self,
        room: Room,
        chat: Callable[[ModelInfo], ChatProvider],
        images: ImageProvider,
        stage: Stage,
        delay: float = 0.0,
        idle: Callable[[Awaitable[None]], Awaitable[None]] | None = None,
    ):
        self.room = room
        self.chat = chat
        self.images = images
        self.stage = stage
        self.delay = delay
        # Wraps every wait for outside change, so a host can account for it (the
        # Discord tests declare these waits to simcord as intentional).
        self.idle = idle
        self._wake = asyncio.Event()
        self._show_lock = asyncio.Lock()
        self._image_tasks: set[asyncio.Task[None]] = set()
        self._turn_task: asyncio.Task[None] | None = None

    async def run(self, return_on_pause: bool = False) -> None:
        """Take turns until the room stops (or pauses, if nobody is there to resume it)."""
        try:
            while self.room.state != "stopped":
                turn = self.room.next_turn()
                await self.flush()
                if turn is None:
                    if return_on_pause and self.room.state == "paused":
                        return
                    await self._wait_for_change()
                    continue
                self._turn_task = asyncio.create_task(self._take(turn))
                with contextlib.suppress(asyncio.CancelledError):
                    await self._turn_task
                self._turn_task = None
                await self.flush()
                await self._wait_for_change(self.delay)
        finally:
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
        """Show what the room has queued, and start any picture jobs among it."""
        async with self._show_lock:
            events = self.room.take_events()
            if not events:
                return
            for event in events:
                if isinstance(event, ImageJob):
                    self._start_image(event)
            try:
                await self.stage.show([e for e in events if not isinstance(e, ImageJob)])
            except Exception:
                log.exception("the stage failed to show %d events", len(events))

    async def _take(self, turn: Turn) -> None:
        model = turn.request.model
        try:
            provider = self.chat(model)
            on_text = (lambda text: self._partial(turn, text)) if getattr(self.stage, "streams", False) else None
            async with self.stage.writing(turn):
                result = await complete(provider, turn.request, on_text=on_text)
        except ProviderError as exc:
            self.room.fail_turn(turn, exc.reason, pause=exc.pause)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an unexpected library error must not end the room
            log.exception("turn of %s failed", turn.label)
            self.room.fail_turn(turn, f"an unexpected error ({type(exc).__name__})")
            return
        if self.room.state != "stopped":
            self.room.complete_turn(turn, result.text, result.usage, result.reasoning)

    def _partial(self, turn: Turn, text: str) -> None:
        task = asyncio.ensure_future(self.stage.partial(turn, text))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

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
