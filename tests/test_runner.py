"""The runner: turns, pictures in the background, and the store-then-show order that makes restarts safe."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import AsyncIterator

from bot import data
from bot.engine import ChatRequest, Event, ImageMade, Notice, Picture, Reply, Room, RoomSettings
from bot.engine.snapshot import resumable_jobs
from bot.providers.base import ProviderError, TextDelta
from bot.providers.openai_compat import OpenAICompatProvider
from bot.runner import NotShown, RoomRunner
from bot.storage import Journal, Store
from tests.fakes import Reply as WireReply  # a scripted answer on the wire, not the engine's Reply event


class Scripted:
    """An in-process provider: each turn's reply comes from ``replies`` in order."""

    name = "scripted"

    def __init__(self, *replies: str):
        self.replies = list(replies)
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator:
        self.requests.append(request)
        text = self.replies.pop(0) if self.replies else f"turn {len(self.requests)}"
        if text == "FAIL":
            raise ProviderError("the provider is having trouble (HTTP 503)")
        yield TextDelta(text)

    async def aclose(self) -> None:
        return None


class SlowImages:
    name = "slow"

    def __init__(self, delay: float = 0.05):
        self.delay = delay

    async def generate(self, prompt: str) -> Picture:
        await asyncio.sleep(self.delay)
        return Picture(prompt.encode())


class Recorder:
    """A stage that keeps what it was shown; it refuses the first ``refuse`` replies (NotShown)."""

    streams = False

    def __init__(self, refuse: int = 0, crash_after: int | None = None):
        self.batches: list[list[Event]] = []
        self.refuse = refuse
        self.crash_after = crash_after

    async def show(self, events: list[Event], done=()) -> list[int]:
        if done:  # this stage posts one message per batch: it is out already
            return []
        if self.refuse and any(isinstance(e, Reply) for e in events):
            self.refuse -= 1
            raise NotShown
        if self.crash_after is not None and len(self.batches) >= self.crash_after:
            raise asyncio.CancelledError  # the process dies mid-flush
        self.batches.append(events)
        return [1000 + len(self.batches)]

    @property
    def shown(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]

    @contextlib.asynccontextmanager
    async def writing(self, turn):
        yield

    async def partial(self, turn, text):
        return None


def new_room(turns: int = 4) -> Room:
    room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings(max_turns=turns), topic="rivers")
    room.add("Gemini 3 Flash")
    room.add("Claude Haiku 4.5")
    return room


async def test_pictures_do_not_hold_up_turns_and_arrive_later():
    provider = Scripted('!image "a river delta from space"', "second", "third")
    stage = Recorder()
    runner = RoomRunner(new_room(3), lambda m: provider, SlowImages(0.2), stage)
    await runner.run()
    kinds = [type(e).__name__ for e in stage.shown]
    # All three turns were taken before the picture arrived; the room still waited for it.
    assert kinds.index("ImageMade") > max(i for i, k in enumerate(kinds) if k == "Reply")
    made = next(e for e in stage.shown if isinstance(e, ImageMade))
    assert made.picture.data == b"a river delta from space"


async def test_failed_turn_is_a_notice_and_the_room_goes_on():
    provider = Scripted("FAIL", "I am still here")
    stage = Recorder()
    await RoomRunner(new_room(2), lambda m: provider, SlowImages(), stage).run()
    texts = [e.text for e in stage.shown if isinstance(e, (Notice, Reply))]
    assert "⚠️ AI-1 (Gemini 3 Flash) could not reply: the provider is having trouble (HTTP 503)" in texts
    assert "I am still here" in texts


async def test_a_turns_request_is_let_go_once_the_reply_is_in():
    """Between turns a room keeps no request: each holds a context window of text, and a
    thousand rooms resting at once each kept their last one (a fifth of a long room's memory)."""
    sent: list[weakref.ref[ChatRequest]] = []
    alive_when_shown: list[bool] = []

    class Forgetful(Scripted):
        async def stream(self, request: ChatRequest) -> AsyncIterator:
            sent.append(weakref.ref(request))
            yield TextDelta(f"reply {len(sent)}")

    class Checking(Recorder):
        async def show(self, events: list[Event], done=()) -> list[int]:
            if any(isinstance(e, Reply) for e in events):  # the reply is in; the rest comes next
                gc.collect()
                alive_when_shown.append(sent[-1]() is not None)
            return await super().show(events, done)

    provider = Forgetful()
    await RoomRunner(new_room(2), lambda m: provider, SlowImages(), Checking()).run()
    assert alive_when_shown == [False, False]


async def test_events_are_stored_before_shown_and_marked_after(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    room = new_room(2)
    room_id = await store.create_room(room, "console")
    stage = Recorder()
    runner = RoomRunner(room, lambda m: Scripted("!temperature 1.2\nhello"), SlowImages(), stage, journal=Journal(store, room_id))
    await runner.run()
    stored = await store.events(room_id)
    assert [type(s.event) for s in stored] == [type(e) for e in stage.shown]
    assert all(s.posted_at is not None for s in stored)
    assert stored[0].message_ids == [1001] and stored[1].message_ids == [1001]  # two notices, one message
    await store.close()


async def test_refused_events_wait_and_are_shown_once_later_in_order(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    room = new_room(3)
    room_id = await store.create_room(room, "discord")
    stage = Recorder(refuse=2)  # refused twice, then the permission is back
    provider = Scripted("one", "two", "three")
    runner = RoomRunner(room, lambda m: provider, SlowImages(), stage, journal=Journal(store, room_id))
    await runner.run()
    replies = [e.text for e in stage.shown if isinstance(e, Reply)]
    assert replies == ["one", "two", "three"]
    assert stage.refuse == 0
    assert await store.unposted(room_id) == []
    await store.close()


async def test_restart_shows_what_was_missed_exactly_once(tmp_path):
    path = tmp_path / "db.sqlite3"
    store = await Store.open(path)
    room = new_room(6)
    room_id = await store.create_room(room, "discord")
    first = Recorder(crash_after=3)
    provider = Scripted("a", '!image "a heron standing in fog"', "c", "d", "e", "f")
    runner = RoomRunner(room, lambda m: provider, SlowImages(5), first, journal=Journal(store, room_id))
    try:
        await runner.run()
    except asyncio.CancelledError:
        pass  # the crash: nothing after it is shown or written
    await store.close()

    store = await Store.open(path)
    again = await store.load_room(room_id, data.catalog(), data.scenarios())
    second = Recorder()
    runner = RoomRunner(again, lambda m: provider, SlowImages(0.01), second, journal=Journal(store, room_id))
    runner.resume_backlog(resumable_jobs(again))
    await runner.run()
    assert len(first.batches) == 3 and second.batches  # the crash did cut the room short
    everything = first.shown + second.shown
    replies = [e.text for e in everything if isinstance(e, Reply)]
    assert replies == ["a", '!image "a heron standing in fog"', "c", "d", "e", "f"]
    pictures = [e for e in everything if isinstance(e, ImageMade)]
    assert len(pictures) == 1
    notices = [e.text for e in everything if isinstance(e, Notice)]
    assert len(notices) == len(set(notices))  # nothing twice
    assert await store.unposted(room_id) == []
    await store.close()


async def test_what_a_restarted_room_just_recorded_is_shown_even_if_the_backlog_read_misses_it(tmp_path, monkeypatch):
    """After a restart the runner reads what is owed to the channel right after recording; a read
    that does not see that write yet (a stale reader) must not cost the room its notice."""
    store = await Store.open(tmp_path / "db.sqlite3")
    room = new_room()
    room_id = await store.create_room(room, "discord")
    stage, journal = Recorder(), Journal(store, room_id)
    runner = RoomRunner(room, lambda m: Scripted(), SlowImages(), stage, journal=journal)
    runner.resume_backlog()
    room.announce("Séance is back after a restart")

    async def stale() -> list:
        return []  # the database as it was before the notice was written

    monkeypatch.setattr(journal, "unposted", stale)
    await runner.flush()
    assert [e.text for e in stage.shown if isinstance(e, Notice)] == ["Séance is back after a restart"]
    monkeypatch.undo()
    assert await store.unposted(room_id) == []  # shown, and marked so
    await store.close()


async def test_restart_asks_the_stage_what_was_already_posted(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    room = new_room(2)
    room_id = await store.create_room(room, "discord")
    journal = Journal(store, room_id)
    turn = room.next_turn()
    room.complete_turn(turn, "posted just before the crash")
    await journal.record(room)  # stored, posted, but never marked

    class Finder(Recorder):
        async def find_posted(self, events, done=()):
            return [777] if isinstance(events[0], Reply) and events[0].text == "posted just before the crash" else None

    stage = Finder()
    runner = RoomRunner(room, lambda m: Scripted("after"), SlowImages(), stage, journal=journal)
    runner.resume_backlog()
    await runner.run()
    assert [e.text for e in stage.shown if isinstance(e, Reply)] == ["after"]
    first = next(s for s in await store.events(room_id) if isinstance(s.event, Reply))
    assert first.message_ids == [777]
    await store.close()


class Hanging(Scripted):
    """A provider that never finishes its reply."""

    async def stream(self, request):
        self.requests.append(request)
        await asyncio.sleep(3600)
        yield TextDelta("never")


async def test_cancelling_the_run_ends_it_even_mid_turn():
    provider = Hanging()
    runner = RoomRunner(new_room(10), lambda m: provider, SlowImages(), Recorder())
    task = asyncio.create_task(runner.run())
    while not provider.requests:
        await asyncio.sleep(0.01)
    task.cancel()  # what Ctrl+C does to the console's main task
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done and task.cancelled()
    assert len(provider.requests) == 1  # no further turns were taken


async def test_stop_drops_the_reply_in_flight_and_ends_the_run():
    provider = Hanging()
    stage = Recorder()
    runner = RoomRunner(new_room(10), lambda m: provider, SlowImages(), stage)
    task = asyncio.create_task(runner.run())
    while not provider.requests:
        await asyncio.sleep(0.01)
    runner.stop("a moderator stopped it")
    await asyncio.wait_for(task, 2)
    assert [e.text for e in stage.shown if isinstance(e, Notice)] == ["⏹️ The room has ended: a moderator stopped it"]


# --- provider failures as the room sees them ------------------------------------------


async def test_a_reply_stopped_by_a_content_filter_is_never_shown_nor_heard_but_is_billed(fake_llm):
    fake_llm.script(WireReply.text("The SECRET fragment of a", finish_reason="content_filter", usage=(300, 9)))
    provider = OpenAICompatProvider("openrouter", fake_llm.base_url, "sk-or-test", max_attempts=1)
    stage = Recorder()
    room = new_room(2)
    await RoomRunner(room, lambda m: provider, SlowImages(), stage).run()
    await provider.aclose()
    shown = [e.text for e in stage.shown if isinstance(e, (Notice, Reply))]
    assert "⚠️ AI-1 (Gemini 3 Flash) could not reply: FakeProvider's content filter stopped the reply" in shown
    assert not any("SECRET" in text for text in shown)
    heard = str(fake_llm.chat_requests[1].body["messages"])  # what AI-2 was sent next
    assert "SECRET" not in heard
    assert room.participants[1].usage.input_tokens == 300 and room.participants[1].usage.output_tokens == 9
    assert room.cost_usd > 0


async def test_the_same_refusal_three_turns_in_a_row_pauses_the_room(fake_llm):
    refusal = WireReply.error(400, {"error": {"message": "prompt is too long: 1284668 tokens", "code": 400}})
    fake_llm.script(refusal, WireReply.text("fine"), refusal, WireReply.text("fine"), refusal)
    provider = OpenAICompatProvider("openrouter", fake_llm.base_url, "sk-or-test")
    room = new_room(20)
    await RoomRunner(room, lambda m: provider, SlowImages(), Recorder()).run(return_on_pause=True)
    await provider.aclose()
    assert room.state == "paused" and room.turns_taken == 5
    assert len(fake_llm.chat_requests) == 5  # refusals are not retried, and nothing after the pause


class Trickle:
    """Streams each reply word by word, three words per network read; each reply its own words
    (a reply copying the previous one would be refused)."""

    name = "trickle"

    def __init__(self) -> None:
        self.replies = 0

    async def stream(self, request: ChatRequest) -> AsyncIterator:
        self.replies += 1
        for i in range(60):
            if i % 3 == 0:
                await asyncio.sleep(0)  # the next read from the socket
            yield TextDelta(f"r{self.replies}w{i} ")

    async def aclose(self) -> None:
        return None


class Drafts(Recorder):
    """A streaming stage that keeps every text it was given while a reply was written."""

    streams = True

    def __init__(self) -> None:
        super().__init__()
        self.drafts: list[str] = []

    async def partial(self, turn, text):
        self.drafts.append(text)
        await asyncio.sleep(0)  # as a Discord edit would, other deltas arrive meanwhile


async def test_a_streamed_reply_reaches_the_stage_through_one_task_per_turn():
    created = 0
    loop = asyncio.get_running_loop()

    def counting(loop, coro, **kwargs):
        nonlocal created
        created += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting)
    try:
        stage = Drafts()
        trickle = Trickle()
        await RoomRunner(new_room(2), lambda m: trickle, SlowImages(), stage).run()
    finally:
        loop.set_task_factory(None)
    full = ["".join(f"r{n}w{i} " for i in range(60)) for n in (1, 2)]
    assert created <= 2 * 2  # per turn: the turn and its relay (a task per delta made 60 more)
    assert stage.drafts and all(any(f.startswith(text) for f in full) for text in stage.drafts)
    assert len(stage.drafts) < 60  # deltas that arrived while the stage was busy made one call
    assert [e.text for e in stage.shown if isinstance(e, Reply)] == [f.strip() for f in full]


async def test_a_streaming_reply_holds_its_encoded_body_and_not_its_request(fake_llm):
    """While a reply streams the adapter needs only the encoded body: the request (a context
    window of text) is handed over by the turn and let go once encoded, not kept by each room."""
    requests: list[weakref.ref[ChatRequest]] = []
    alive_while_streaming: list[bool] = []

    class Watching(Drafts):
        @contextlib.asynccontextmanager
        async def writing(self, turn):
            requests.append(weakref.ref(turn.request))
            yield

        async def partial(self, turn, text):
            gc.collect()
            alive_while_streaming.append(requests[-1]() is not None)

    fake_llm.script(*[WireReply.text(f"reply {n} comes in pieces", chunks=4, delay=0.02) for n in (1, 2)])
    provider = OpenAICompatProvider("openrouter", fake_llm.base_url, "sk-or-test", max_attempts=1)
    stage = Watching()
    try:
        await RoomRunner(new_room(2), lambda m: provider, SlowImages(), stage).run()
    finally:
        await provider.aclose()
    assert [e.text for e in stage.shown if isinstance(e, Reply)] == ["reply 1 comes in pieces", "reply 2 comes in pieces"]
    assert alive_while_streaming and not any(alive_while_streaming)


class Broke:
    """A provider whose account is empty; the error holds the provider's own words and a balance."""

    name = "broke"

    async def stream(self, request: ChatRequest) -> AsyncIterator:
        raise ProviderError("out of credit: Insufficient balance: $0.0012 left", status=402, pause=True)
        yield  # pragma: no cover

    async def aclose(self) -> None:
        return None


class Host(Recorder):
    """A stage with an operator: it keeps what it was alerted to."""

    def __init__(self) -> None:
        super().__init__()
        self.alerts: list[str] = []

    async def alert(self, text: str) -> None:
        self.alerts.append(text)


async def test_the_details_of_a_failure_go_to_the_host_and_are_never_stored_or_shown(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    room = new_room(2)
    room_id = await store.create_room(room, "discord")
    stage = Host()
    await RoomRunner(room, lambda m: Broke(), SlowImages(), stage, journal=Journal(store, room_id)).run(
        return_on_pause=True
    )
    assert stage.alerts == ["AI-1 (Gemini 3 Flash) could not reply: out of credit: Insufficient balance: $0.0012 left"]
    shown = [e.text for e in stage.shown if isinstance(e, Notice)]
    assert shown == [
        "⚠️ AI-1 (Gemini 3 Flash) could not reply: the host's account with the provider is out of credit",
        "⏸️ The room is paused: AI-1 (Gemini 3 Flash)'s provider needs attention "
        "(the host's account with the provider is out of credit)",
    ]
    stored = [s.event for s in await store.events(room_id)]
    assert [type(e).__name__ for e in stored] == ["Notice", "Notice", "StateChanged"]
    assert "$0.0012" not in repr(stored) and "$0.0012" not in repr((await store.load_room(room_id, room.catalog, data.scenarios())).history)
    await store.close()


async def test_a_stage_without_an_operator_logs_the_details(caplog):
    stage = Recorder()  # no alert(): the runner logs instead
    await RoomRunner(new_room(1), lambda m: Broke(), SlowImages(), stage).run(return_on_pause=True)
    assert "Insufficient balance: $0.0012 left" in caplog.text
    assert "$0.0012" not in repr(stage.shown)
