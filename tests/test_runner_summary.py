"""Long rooms remember, end to end: the runner asks the summary model (a fake server on 127.0.0.1),
the AIs read the summary, its cost is booked, it survives a restart and the export shows it."""

from __future__ import annotations

import itertools
from typing import Any

from bot import data
from bot.engine import Notice, Room, RoomSettings
from bot.engine.context import RECAP_HEADER
from bot.engine.memory import SUMMARY_SYSTEM
from bot.export import export
from bot.providers.openai_compat import OpenAICompatProvider
from bot.runner import RoomRunner
from bot.storage import Journal, Store
from tests.fakes import FakeLLMServer, Reply as WireReply
from tests.test_runner import Recorder, SlowImages

SUMMARISER = "DeepSeek V3.2"


def long_room(turns: int) -> Room:
    settings = RoomSettings(max_turns=turns, context_tokens=2000, summary_model=SUMMARISER)
    room = Room(data.catalog(), data.scenarios()["open-room"], settings, topic="rivers")
    room.add("Gemini 3 Flash")
    room.add("Claude Haiku 4.5")
    return room


def is_summary(body: dict[str, Any]) -> bool:
    return body["messages"][0]["content"] == SUMMARY_SYSTEM


class Service:
    """The fake server's answers: long distinct replies for the AIs, numbered summaries, and
    ``failing`` summary requests answered 503 first (the injected provider failure)."""

    def __init__(self, server: FakeLLMServer, failing: int = 0):
        self.server = server
        self.failing = failing
        self.replies = itertools.count()
        self.summaries = itertools.count(1)
        server.default = self.answer

    def answer(self, body: dict[str, Any]) -> WireReply:
        if not is_summary(body):
            n = next(self.replies)
            return WireReply.text(f"reply {n}: " + " ".join(f"r{n}w{k}" for k in range(70)), usage=(900, 120))
        if self.failing:
            self.failing -= 1
            return WireReply.error(503)
        return WireReply.text(f"SUMMARY-{next(self.summaries)}: the room began with rivers.", usage=(5000, 200))

    def requests(self, summaries: bool) -> list[dict[str, Any]]:
        return [r.body for r in self.server.chat_requests if is_summary(r.body) == summaries]


async def run(room: Room, server: FakeLLMServer, store: Store | None = None, room_id: int = 0, gate=None) -> Recorder:
    provider = OpenAICompatProvider("openrouter", server.base_url, "sk-or-test", max_attempts=1)
    stage = Recorder()
    journal = Journal(store, room_id) if store is not None else None
    await RoomRunner(room, lambda m: provider, SlowImages(), stage, journal=journal, gate=gate).run(return_on_pause=True)
    await provider.aclose()
    return stage


def sent_text(body: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in body["messages"] if isinstance(m["content"], str))


async def test_a_long_room_summarises_through_the_runner_and_its_ais_read_the_summary(fake_llm, tmp_path):
    service = Service(fake_llm)
    store = await Store.open(tmp_path / "db.sqlite3")
    room = long_room(30)
    room_id = await store.create_room(room, "console")
    stage = await run(room, fake_llm, store, room_id)

    summaries = service.requests(summaries=True)
    assert len(summaries) >= 2  # trimmed, summarised, trimmed again, summary updated
    assert summaries[0]["model"] == "deepseek/deepseek-v3.2"
    assert "SUMMARY-1: the room began with rivers." in sent_text(summaries[1])  # the update builds on it
    later = [b for b in service.requests(summaries=False) if "SUMMARY-" in sent_text(b)]
    assert later and f"[Séance]: {RECAP_HEADER}\nSUMMARY-" in sent_text(later[-1])
    assert "reply 0:" not in sent_text(later[-1])

    made = [e for e in stage.shown if isinstance(e, Notice) and e.private.startswith("SUMMARY-")]
    assert made and all(e.text.startswith("📜 ") and "SUMMARY" not in e.text for e in made)  # the channel: one line

    # Cost: booked as the room's, at the summary model's catalog prices, with its tokens.
    rows = [r for r in await store.spending() if r.kind == "summary"]
    assert len(rows) == 1 and rows[0].count == len(made) and rows[0].tokens == 5200 * len(made)
    assert abs(rows[0].usd - len(made) * (5000 * 0.27 + 200 * 0.40) / 1e6) < 1e-9
    assert abs(await store.spent(store.today(), room_id=room_id) - room.cost_usd) < 1e-9

    # The export shows each summary where it was made.
    transcript = export(await store.room(room_id), await store.events(room_id), "txt").decode()
    assert "(SUMMARY-1: the room began with rivers.)" in transcript

    # A restart brings the summary back, and the AIs keep reading it.
    await store.close()
    store = await Store.open(tmp_path / "db.sqlite3")
    back = await store.load_room(room_id, data.catalog(), data.scenarios())
    assert back.memory.text == room.memory.text and back.memory.upto == room.memory.upto
    request = back.request_for(back.participants[1])
    assert room.memory.text in "\n".join(m.content for m in request.messages)
    await store.close()


async def test_a_failing_summary_model_loses_nothing_and_the_room_goes_on(fake_llm):
    service = Service(fake_llm, failing=3)
    room = long_room(30)
    stage = await run(room, fake_llm)
    assert room.turns_taken == 30 and room.state == "stopped"  # every turn was taken meanwhile
    summaries = service.requests(summaries=True)
    assert len(summaries) >= 4  # three refused, then asked again until one was made
    first_made = summaries[3]
    assert "reply 0:" in sent_text(first_made)  # the one that worked starts where the room began
    assert "(none yet" in sent_text(first_made)
    assert room.memory.text.startswith("SUMMARY-")
    assert not any("503" in e.text for e in stage.shown if isinstance(e, Notice))  # the channel is not bothered


async def test_a_summary_asks_the_servers_spending_gate_first(fake_llm):
    service = Service(fake_llm)
    room = long_room(25)

    async def gate() -> str | None:  # refuses what is asked while a summary is due: the summary itself
        return "this server has reached its daily spending limit" if room.memory.pending else None

    await run(room, fake_llm, gate=gate)
    assert room.turns_taken == 25 and service.requests(summaries=True) == []
    assert room.memory.failures >= 2 and room.memory.text == ""
