"""Drives one room: asks the engine for turns, calls providers, and shows events on a stage.

The runner is the only place where the engine meets I/O. It knows nothing of
Discord or terminals; a *stage* (the console, a Discord channel) renders the
events it is given. Data flows one way: event -> engine -> stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, Protocol

from bot.engine import Alert, Event, ForkPoint, ImageJob, ModelInfo, Notice, Room, SearchJob, Spent, SummaryJob, Turn
from bot.leases import LeaseLost
from bot.providers.base import ChatProvider, ImageProvider, ProviderError, complete
from bot.search import SearchError, SearchService

log = logging.getLogger(__name__)


class NotShown(Exception):
    """A stage could not show a batch; it stays stored and is shown again later, in order.

    ``retry`` says the failure should pass by itself (Discord answering 5xx, a
    timeout, a dropped connection), so the runner tries again with backoff;
    otherwise (a missing permission) it waits for a moderator's resume.
    ``posted`` holds the messages of the batch that did go out before the failure,
    so that the next attempt posts only the rest.
    """

    def __init__(self, reason: str = "", *, retry: bool = False, posted: Sequence[int] = ()):
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.posted = list(posted)


class Stage(Protocol):
    streams: bool  # whether partial() wants the reply as it arrives

    async def show(self, events: list[Event], done: Sequence[int] = ()) -> list[int] | None:
        """Render one batch (a run of notices, or one other event); return the ids of the
        messages it made, if the stage has any. ``done`` holds messages of this batch
        posted by an earlier attempt: those parts are not posted again. Raise NotShown
        to keep the batch for later."""
        ...

    def writing(self, turn: Turn) -> contextlib.AbstractAsyncContextManager[None]:
        """Show that an AI is writing for as long as the context is open."""
        ...

    async def partial(self, turn: Turn, text: str) -> None:
        """The reply so far, for stages that stream text as it arrives (may do nothing)."""
        ...

    async def alert(self, text: str) -> None:
        """Tell the host (not the audience) the details of a failure; never stored."""
        ...


class QuietStage:
    """A stage that shows nothing: for benchmarks and as a base for simple stages."""

    streams = False

    async def show(self, events: list[Event], done: Sequence[int] = ()) -> list[int] | None:
        return None

    @contextlib.asynccontextmanager
    async def writing(self, turn: Turn) -> AsyncIterator[None]:
        yield

    async def partial(self, turn: Turn, text: str) -> None:
        return None

    async def alert(self, text: str) -> None:
        log.warning("%s", text)


class Journal(Protocol):
    """Storage as the runner sees it: events are recorded before they are shown."""

    async def record(self, room: Room) -> list[tuple[int | None, Event]]:
        """Take the room's queued events and store them with the room's state, as one
        consistent save; (id, event) for each, id None for what is not shown (picture jobs).
        On failure the events stay queued in the room. LeaseLost: another process may
        drive the room now, so this runner stops (``give_up``) and writes nothing more."""
        ...

    async def posted(self, event_ids: list[int], message_ids: list[int]) -> None: ...

    async def progress(self, event_id: int, message_ids: list[int]) -> None: ...

    async def unposted(self) -> list[tuple[int, Event, list[int]]]: ...


class MemoryJournal:
    """A journal that keeps nothing after the process: for rooms without storage (benchmarks, tests)."""

    def __init__(self) -> None:
        self._next = 1
        self._waiting: dict[int, tuple[Event, list[int]]] = {}

    async def record(self, room: Room) -> list[tuple[int | None, Event]]:
        stored: list[tuple[int | None, Event]] = []
        for event in room.take_events():
            if isinstance(event, (ImageJob, SearchJob, SummaryJob, Spent, ForkPoint)):  # jobs for the runner, or booked: not shown
                stored.append((None, event))
                continue
            self._waiting[self._next] = (event, [])
            stored.append((self._next, event))
            self._next += 1
        return stored

    async def posted(self, event_ids: list[int], message_ids: list[int]) -> None:
        for event_id in event_ids:
            self._waiting.pop(event_id, None)

    async def progress(self, event_id: int, message_ids: list[int]) -> None:
        if event_id in self._waiting:
            self._waiting[event_id] = (self._waiting[event_id][0], list(message_ids))

    async def unposted(self) -> list[tuple[int, Event, list[int]]]:
        return [(i, event, list(parts)) for i, (event, parts) in sorted(self._waiting.items())]


Problem = Callable[[str], Awaitable[None]]


class RoomRunner:
    """Drives one room.

    Every change to the room is synchronous engine code, so it happens between
    two awaits; a save captures the room in one step (``Journal.record``), so
    whatever changes the room while a save is written lands whole in the next one.
    Events are stored before they are shown, and shown strictly in order: when
    the stage fails, what waits is retried before anything newer.
    """

    def __init__(
        self,
        room: Room,
        chat: Callable[[ModelInfo], ChatProvider],
        images: ImageProvider,
        stage: Stage,
        delay: float = 0.0,
        idle: Callable[[Awaitable[None]], Awaitable[None]] | None = None,
        journal: Journal | None = None,
        *,
        on_problem: Problem | None = None,
        patience: float = 300.0,
        gate: Callable[[], Awaitable[str | None]] | None = None,
        search: SearchService | None = None,
    ):
        self.room = room
        self.chat = chat
        self.images = images
        # None: no search service, so the room neither offers !search nor runs it.
        self.search = search
        room.search_available = search is not None
        self.stage = stage
        self.delay = delay
        # Wraps every wait for outside change, so a host can account for it (the
        # Discord tests declare these waits to simcord as intentional).
        self.idle = idle
        self.journal: Journal = journal or MemoryJournal()
        # Told, in one sentence, what paused the room when the room's own record
        # cannot carry it (storage failing, a channel that keeps failing).
        self.on_problem = on_problem
        self.patience = patience  # seconds a channel may keep failing before the room pauses
        self._backlog = False  # stored events wait to be shown (after a failure or a restart)
        # Asked before each turn and each picture: a reason (a spending limit the host or
        # server set, beyond this room's own) pauses the room or refuses the picture.
        self.gate = gate
        self._reconcile = False  # look for already-posted copies before showing the backlog
        self._retry_at: float | None = None  # when to try a failing stage again
        self._failures = 0  # failed attempts in a row, for the backoff
        self._failing_since: float | None = None
        self._unmarked: list[tuple[list[int], list[int]]] = []  # shown, but storage failed to note it
        self._wake = asyncio.Event()
        self._show_lock = asyncio.Lock()
        self._image_tasks: set[asyncio.Task[None]] = set()
        self._summary_tasks: set[asyncio.Task[None]] = set()
        self._search_tasks: set[asyncio.Task[None]] = set()
        self._turn_task: asyncio.Task[None] | None = None
        self._relay: asyncio.Task[None] | None = None  # hands the reply so far to the stage
        self._fresh = asyncio.Event()  # the reply grew since the relay last looked
        self.lost: LeaseLost | None = None  # set once another process may drive the room: this runner stops

    async def run(self, return_on_pause: bool = False) -> None:
        """Take turns until the room stops (or pauses, if nobody is there to resume it).

        If the run is cancelled (a shutdown), unfinished pictures and searches are dropped
        here: the stored room remembers them and a restart makes them again. A search
        is waited for before the next turn, so the next AI reads its results. A runner that
        lost its lease (``give_up``) raises LeaseLost without finishing anything: the
        room's stored state is the other process's to carry on.
        """
        try:
            while self.room.state != "stopped" and self.lost is None:
                await self._finish_searches()
                await self._check_gate()
                turn = self.room.next_turn()
                await self.flush()
                if self.lost is not None:
                    break
                if turn is None:
                    if return_on_pause and self.room.state == "paused":
                        break
                    await self._wait_for_change(self._retry_in())
                    continue
                self._turn_task = asyncio.create_task(self._take(turn))
                # Not kept here: its request holds a context window of text (a fifth of a long
                # room's memory), and between turns a thousand rooms would each keep their last.
                del turn
                try:
                    await self._turn_task
                except asyncio.CancelledError:
                    if _cancelling():
                        raise  # the run itself is being cancelled (Ctrl+C, shutdown)
                    # else stop() cancelled only the turn: the loop sees the stopped room
                self._turn_task = None
                await self.flush()
                await self._rest(self.delay)
            if self.lost is not None:
                raise self.lost
        except BaseException:
            for task in self._image_tasks | self._summary_tasks | self._search_tasks:
                task.cancel()
            raise
        for task in self._summary_tasks:  # an ended room needs no summary; a resumed one asks again
            task.cancel()
        await self._finish_searches()
        await self._finish_images()
        await self.flush()
        await self._drain()
        if self.lost is not None:  # lost while finishing: what is left is the new holder's to show
            raise self.lost

    async def _drain(self) -> None:
        """A stopped room still owes the channel what a failing stage kept back: keep
        trying (with the backoff) until it is shown, or the stage needs a person."""
        while self._retry_at is not None and self.waiting and self.lost is None:
            await self._sleep(self._retry_in())
            await self.flush()

    def give_up(self, lost: LeaseLost) -> None:
        """Another process may drive this room now: stop at once, leaving the stored room as it is.

        The reply being written is dropped and nothing more is recorded or shown
        from here; ``run`` raises ``lost``. Whoever holds the lease carries on from storage.
        """
        if self.lost is None:
            self.lost = lost
        if self._turn_task is not None:
            self._turn_task.cancel()
        self.poke()

    def poke(self) -> None:
        """Something changed from outside (resume, stop, a vote): look again."""
        self._wake.set()

    def stop(self, reason: str) -> None:
        """Stop the room now; a reply still being written is dropped."""
        self.room.stop(reason)
        if self._turn_task is not None:
            self._turn_task.cancel()
        self.poke()

    @property
    def waiting(self) -> bool:
        """Whether stored events wait to be shown (the stage failed, or a restart left some)."""
        return self._backlog or bool(self._unmarked)

    async def flush(self) -> None:
        """Record what the room has queued, start its picture jobs, and show what waits, in order.

        A failure's details (``Alert``) go to the host afterwards, outside the lock:
        a slow direct message must not hold up the channel.
        """
        async with self._show_lock:
            await self._record_and_show()
        for alert in self.room.take_alerts():
            await self._alert(alert)

    async def _record_and_show(self) -> None:
        if self.lost is not None:
            return
        try:
            stored = await self.journal.record(self.room)
        except asyncio.CancelledError:
            raise
        except LeaseLost as exc:
            self.give_up(exc)
            return
        except Exception as exc:
            await self._storage_failed(exc)
            return
        for _, event in stored:
            if isinstance(event, ImageJob):
                self._start_image(event)  # only now: its reply is recorded
            elif isinstance(event, SummaryJob):
                self._start(self._summarise(event), self._summary_tasks)
            elif isinstance(event, SearchJob):
                self._start_search(event)
        if self._retry_at is not None and _now() < self._retry_at:
            self._backlog = True  # the stage is resting after a failure; the retry shows these
            return
        if not await self._mark_unmarked():
            return
        if self._backlog:
            waiting = await self._read_backlog()
            if waiting is None:
                return
            waiting = _with_recorded(waiting, stored)
        else:
            waiting = [(i, e, []) for i, e in stored if i is not None]
        await self._show(waiting)

    def resume_backlog(self, jobs: Iterable[ImageJob] = (), reconcile: bool = True) -> None:
        """After a restart: show what was stored but never shown, and redo unfinished pictures
        and searches (a search is cheap and its answer was never seen, so it is simply made again).

        A crash between posting a message and recording that it was posted would
        post it twice; a stage that can look (``find_posted``) is asked first, unless
        ``reconcile`` is False: nothing was left unshown, so nothing can be doubled.
        """
        self._backlog = True
        self._reconcile = reconcile
        for job in jobs:
            self._start_image(job)
        for search in self.room.search_jobs():
            self._start_search(search)

    # --- showing, in order, through failures --------------------------------------

    async def _show(self, waiting: list[tuple[int, Event, list[int]]]) -> None:
        for batch in _batches(waiting):
            ids = [i for i, _, _ in batch]
            events = [event for _, event, _ in batch]
            done = list(batch[0][2])  # parts an earlier attempt posted
            try:
                done += await self._find_posted(events, done)
                done += list(await self.stage.show(events, done=done) or ())
            except NotShown as exc:
                await self._not_shown(ids[0], done + exc.posted, exc)
                return
            except Exception as exc:  # a bug in a stage: retried like a failure, never dropped silently
                log.exception("the stage failed to show %d events", len(events))
                await self._not_shown(ids[0], done, NotShown(type(exc).__name__, retry=True))
                return
            if not await self._mark(ids, done):
                return
            self._recovered()  # progress: a channel that takes messages again is not failing
        self._backlog = self._reconcile = False

    async def _not_shown(self, first_id: int, posted: list[int], exc: NotShown) -> None:
        self._backlog = True
        if posted and not await self._store(self.journal.progress(first_id, posted)):
            return
        if exc.retry:
            await self._retry_later(exc.reason)

    async def _retry_later(self, reason: str) -> None:
        """Back off (2, 4, 8 ... 60 s), and pause the room once the channel has failed for too long."""
        now = _now()
        self._failures += 1
        self._retry_at = now + min(60.0, 2.0 ** self._failures)
        if self._failing_since is None:
            self._failing_since = now
        log.warning("could not show room events (%s); trying again in %.0f s", reason, self._retry_at - now)
        failing = now - self._failing_since
        if failing >= self.patience and self.room.state == "running":
            span = _duration(failing)
            sentence = f"Discord has failed to take this room's messages for {span}"
            self.room.pause(f"{sentence}; nothing is lost, and /seance resume carries on")
            await self._tell(f"⚠️ {sentence}, so the room is paused. Nothing is lost: it is all posted once Discord takes it.")

    def _recovered(self) -> None:
        self._retry_at = self._failing_since = None
        self._failures = 0

    def _retry_in(self) -> float | None:
        if self._retry_at is None:
            return None
        return max(0.0, self._retry_at - _now())

    async def _mark(self, ids: list[int], message_ids: list[int]) -> bool:
        if await self._store(self.journal.posted(ids, message_ids)):
            return True
        self._unmarked.append((ids, message_ids))  # shown: never show it again, note it when storage works
        return False

    async def _mark_unmarked(self) -> bool:
        while self._unmarked:
            ids, message_ids = self._unmarked[0]
            if not await self._store(self.journal.posted(ids, message_ids)):
                return False
            self._unmarked.pop(0)
        return True

    async def _read_backlog(self) -> list[tuple[int, Event, list[int]]] | None:
        try:
            return await self.journal.unposted()  # older first, the new ones among them
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._storage_failed(exc)
            return None

    async def _alert(self, event: Alert) -> None:
        alert = getattr(self.stage, "alert", None)
        if alert is None:
            log.warning("%s", event.text)
            return
        try:
            await alert(event.text)
        except Exception:
            log.exception("could not pass on an alert: %s", event.text)

    async def _find_posted(self, events: list[Event], done: list[int]) -> list[int]:
        finder = getattr(self.stage, "find_posted", None)
        if not self._reconcile or finder is None:
            return []
        try:
            return list(await finder(events, done) or ())
        except Exception:
            log.exception("could not check whether %d events were already posted", len(events))
            return []

    # --- storage failures ----------------------------------------------------

    async def _store(self, writing: Awaitable[None]) -> bool:
        """Run one journal write; a failure pauses the room and is told (see ``_storage_failed``)."""
        try:
            await writing
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._storage_failed(exc)
            return False
        return True

    async def _storage_failed(self, exc: Exception) -> None:
        """The room cannot be recorded: pause it (what it queued stays queued) and say so once."""
        self._backlog = True
        if self.room.state != "running":
            log.info("the room still cannot be recorded: %s", exc)
            return
        log.error("could not record the room, so it pauses: %s", exc, exc_info=exc)
        reason = storage_trouble(exc)
        self.room.pause(f"{reason} /seance resume carries on once it works again")
        await self._tell(f"⚠️ The room is paused: {reason} Nothing said so far is lost.")

    async def _tell(self, sentence: str) -> None:
        if self.on_problem is None:
            return
        try:
            await self.on_problem(sentence)
        except Exception:
            log.exception("could not tell anyone that %s", sentence)

    # --- turns and pictures ----------------------------------------------------

    async def _take(self, turn: Turn) -> None:
        assert turn.request is not None
        model = turn.request.model
        try:
            provider = self.chat(model)
            on_text = (lambda parts: self._partial(turn, parts)) if getattr(self.stage, "streams", False) else None
            async with self.stage.writing(turn):
                try:  # handed over, not kept: see Turn
                    result = await complete(provider, turn.take_request(), on_text=on_text)
                finally:
                    self._end_partial()
        except ProviderError as exc:
            self.room.fail_turn(
                turn, exc.public, pause=exc.pause, usage=exc.usage, refused=exc.refused, detail=exc.reason
            )
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
        self._start(self._make_image(job), self._image_tasks)

    @staticmethod
    def _start(work: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]]) -> None:
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _summarise(self, job: SummaryJob) -> None:
        """Make the room's new summary beside its turns (the room goes on meanwhile). A failure
        keeps the old summary; the room asks again a few turns later."""
        try:
            if self.gate is not None and (reason := await self.gate()):
                raise ProviderError(reason)
            result = await complete(self.chat(job.request.model), job.request)
        except ProviderError as exc:
            log.warning("the room's summary could not be made: %s", exc.reason)
            self.room.summary_failed(job.job_id, exc.public, usage=exc.usage, detail=exc.reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("the room's summary failed")
            self.room.summary_failed(job.job_id, f"an unexpected error ({type(exc).__name__})")
        else:
            self.room.summary_done(job.job_id, result.text, result.usage)
        await self.flush()

    async def _check_gate(self) -> None:
        if self.gate is not None and self.room.state == "running" and (reason := await self.gate()):
            self.room.pause(reason)

    async def _make_image(self, job: ImageJob) -> None:
        try:
            if self.gate is not None and (reason := await self.gate()):
                raise ProviderError(reason)
            picture = await self.images.generate(job.prompt)
        except ProviderError as exc:
            self.room.image_failed(job.job_id, exc.public, detail=exc.reason)
        except Exception as exc:
            log.exception("image job %s failed", job.job_id)
            self.room.image_failed(job.job_id, f"an unexpected error ({type(exc).__name__})")
        else:
            self.room.image_done(job.job_id, picture)
        await self.flush()

    def _start_search(self, job: SearchJob) -> None:
        self._start(self._make_search(job), self._search_tasks)

    async def _make_search(self, job: SearchJob) -> None:
        try:
            if self.search is None:  # restored after SEARCH_URL was unset
                raise SearchError("web search is no longer set up here")
            hits = await self.search.search(job.query)
        except SearchError as exc:
            self.room.search_failed(job.job_id, exc.public, detail=exc.detail)
        except Exception as exc:
            log.exception("search job %s failed", job.job_id)
            self.room.search_failed(job.job_id, f"an unexpected error ({type(exc).__name__})")
        else:
            self.room.search_done(job.job_id, hits)
        await self.flush()

    async def _finish_searches(self) -> None:
        """Wait for running searches; each is bounded by the service's own timeout."""
        if self._search_tasks:
            await asyncio.wait(set(self._search_tasks))

    async def _finish_images(self, timeout: float = 120.0) -> None:
        if self._image_tasks:
            await asyncio.wait(set(self._image_tasks), timeout=timeout)

    # --- waiting ---------------------------------------------------------------

    async def _rest(self, seconds: float) -> None:
        """The pause between turns; a failing stage is retried meanwhile, as its backoff says."""
        until = _now() + seconds
        while self.room.state != "stopped":
            retry = self._retry_in()
            left = until - _now()
            if retry is None or retry >= left:
                await self._wait_for_change(left)
                return
            if await self._wait_for_change(retry):
                return  # poked: something changed, look again at once
            await self.flush()

    async def _wait_for_change(self, timeout: float | None = None) -> bool:
        """Sleep until poked (or ``timeout`` passes); a stop always wakes us. True if poked."""
        if self.room.state == "stopped":
            return True
        await self._sleep(timeout)
        poked = self._wake.is_set()
        self._wake.clear()
        return poked

    async def _sleep(self, timeout: float | None) -> None:
        if timeout is None or timeout > 0:
            waiting = self._sleep_until_poked(timeout)
            await (self.idle(waiting) if self.idle is not None else waiting)

    async def _sleep_until_poked(self, timeout: float | None) -> None:
        # asyncio.timeout rather than wait_for: no helper task, so the wait stays in this task.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()


def storage_trouble(exc: BaseException) -> str:
    """What went wrong with the database, in one sentence for a moderator."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        why = "the database is locked by another program"
    elif "full" in text:
        why = "the disk is full"
    elif "readonly" in text or "read-only" in text or "permission" in text:
        why = "the database file cannot be written (read-only)"
    elif isinstance(exc, OSError) or "connection" in text:  # PostgreSQL: a server down, or a connection cut
        why = "the database server cannot be reached"
    else:
        why = f"storage failed ({type(exc).__name__})"
    return f"the room cannot be recorded: {why}."


def _duration(seconds: float) -> str:
    if seconds >= 90:
        minutes = round(seconds / 60)
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    whole = round(seconds)
    return f"{whole} second{'' if whole == 1 else 's'}"


def _now() -> float:
    return asyncio.get_running_loop().time()


Waiting = tuple[int, Event, list[int]]


def _with_recorded(waiting: list[Waiting], stored: list[tuple[int | None, Event]]) -> list[Waiting]:
    """The backlog as read, and the events just recorded that the read did not see: those
    are owed whatever a read shows (a reader showing the database from before the latest
    commits once left 500 of 1,000 rooms' "back" notices stored and never shown)."""
    read = {event_id for event_id, _, _ in waiting}
    return waiting + [(i, e, []) for i, e in stored if i is not None and i not in read]


def _batches(stored: list[Waiting]) -> list[list[Waiting]]:
    """Runs of notices travel together (one message); every other event alone."""
    batches: list[list[Waiting]] = []
    for item in stored:
        if batches and isinstance(item[1], Notice) and isinstance(batches[-1][-1][1], Notice):
            batches[-1].append(item)
        else:
            batches.append([item])
    return batches


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
