"""The runner performs !search against a fake SearXNG: the next AI reads the results, every
failure is told, and a search in flight when the process stops is made again after a restart."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot import data
from bot.engine import Notice, Room, RoomSettings
from bot.engine.snapshot import resumable_jobs
from bot.runner import RoomRunner
from bot.search import SearxngSearch
from bot.storage import Journal, Store
from tests.fakes import FakeSearxng, SearxAnswer
from tests.fakes.searxng_server import payload, result
from tests.test_runner import Recorder, Scripted, SlowImages


@pytest.fixture
def searx():
    with FakeSearxng() as server:
        yield server


@pytest.fixture
async def service(searx):
    search = SearxngSearch(searx.base_url, timeout=2)
    yield search
    await search.aclose()


def new_room(turns: int) -> Room:
    room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings(max_turns=turns), topic="the sea")
    room.add("Gemini 3 Flash")
    room.add("Claude Haiku 4.5")
    return room


def notices(stage: Recorder) -> list[str]:
    return [e.text for e in stage.shown if isinstance(e, Notice)]


def sent(provider: Scripted, index: int) -> str:
    request = provider.requests[index]
    return request.system + "\n" + "\n".join(m.content for m in request.messages)


async def test_the_next_ai_reads_the_results_even_when_the_search_is_slow(searx, service):
    slow = SearxAnswer.results(result("https://harbour.example.net/t", "The tallest lighthouses", "106 m high"))
    slow.delay = 0.2  # slower than the turn: the next turn waits for it
    searx.script(slow)
    provider = Scripted('Let me look that up.\n!search "tallest lighthouse"', "Thanks.")
    stage = Recorder()
    await RoomRunner(new_room(2), lambda m: provider, SlowImages(), stage, search=service).run()
    assert searx.requests[0]["q"] == "tallest lighthouse"
    assert '!search "a few words"' in sent(provider, 0)  # the AIs are told of the command
    assert "1. The tallest lighthouses (https://harbour.example.net/t)\n   106 m high" in sent(provider, 1)
    assert '🔍 [AI-1]: !search "tallest lighthouse" (1 result)' in notices(stage)


async def test_without_a_service_the_ais_are_not_told_and_a_search_is_refused():
    provider = Scripted('!search "tallest lighthouse"', "ok")
    stage = Recorder()
    await RoomRunner(new_room(2), lambda m: provider, SlowImages(), stage).run()
    assert "!search" not in sent(provider, 0)
    assert '⚠️ [AI-1]: !search "tallest lighthouse" was not applied: !search is switched off in this room' in notices(stage)


@pytest.mark.parametrize(
    ("answer", "told"),
    [
        (SearxAnswer.error(500), "the search service failed (HTTP 500)"),
        (SearxAnswer.error(403), "the search service refuses to answer the bot in JSON"),
        (SearxAnswer.error(429), "the search service is limiting requests; try again in a few turns"),
        (SearxAnswer.stall(4), "the search service did not answer within 2 seconds"),
        (SearxAnswer.garbage(), "the search service sent something that is not search results"),
        (SearxAnswer(body=json.dumps(payload("x", [], [])).encode()), None),  # no results
    ],
)
async def test_every_outcome_is_told_to_the_ai_that_searched(searx, service, answer, told):
    searx.script(answer)
    provider = Scripted('!search "lighthouse keepers"', "two", "three")
    stage = Recorder()
    await RoomRunner(new_room(3), lambda m: provider, SlowImages(), stage, search=service).run()
    if told is None:
        assert '🔍 [AI-1]: !search "lighthouse keepers" (0 results)' in notices(stage)
        assert 'Your search "lighthouse keepers" found nothing' in sent(provider, 2)
    else:
        assert f'🔍 [AI-1]: !search "lighthouse keepers" failed: {told}' in notices(stage)
        assert f'Your search "lighthouse keepers" failed: {told}.' in sent(provider, 2)
        assert told not in sent(provider, 1)  # AI-2 is not burdened with AI-1's failure


async def test_a_search_in_flight_when_the_process_stops_is_made_again_after_the_restart(tmp_path, searx):
    path = tmp_path / "db.sqlite3"
    store = await Store.open(path)
    room = new_room(3)
    room_id = await store.create_room(room, "console")
    searx.script(SearxAnswer.stall(30))  # the first process never hears back
    hanging = SearxngSearch(searx.base_url, timeout=30)
    provider = Scripted('!search "lighthouse keepers"', "two", "three")
    first = Recorder()
    run = asyncio.create_task(RoomRunner(room, lambda m: provider, SlowImages(), first, journal=Journal(store, room_id), search=hanging).run())
    while not searx.requests:
        await asyncio.sleep(0.01)
    run.cancel()  # the shutdown, mid-search
    with pytest.raises(asyncio.CancelledError):
        await run
    await hanging.aclose()
    await store.close()
    assert len(provider.requests) == 1  # the next turn was waiting for the search
    assert not any(n.startswith("🔍") for n in notices(first))

    store = await Store.open(path)
    again = await store.load_room(room_id, data.catalog(), data.scenarios())
    assert again.pending_searches == 1
    service = SearxngSearch(searx.base_url, timeout=2)
    second = Recorder()
    runner = RoomRunner(again, lambda m: provider, SlowImages(), second, journal=Journal(store, room_id), search=service)
    runner.resume_backlog(resumable_jobs(again))
    await runner.run()
    await service.aclose()
    assert [r["q"] for r in searx.requests] == ["lighthouse keepers", "lighthouse keepers"]
    assert notices(second).count('🔍 [AI-1]: !search "lighthouse keepers" (3 results)') == 1
    assert "Lighthouse keepers' logbooks" in sent(provider, 1)  # AI-2, after the restart, read it
    assert again.pending_searches == 0 and await store.unposted(room_id) == []
    await store.close()


async def test_a_search_restored_where_search_is_no_longer_set_up_fails_with_a_reason(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    room = new_room(2)
    room.search_available = True
    room_id = await store.create_room(room, "console")
    turn = room.next_turn()
    room.complete_turn(turn, '!search "lighthouse keepers"')
    await store.save(room_id, room)
    again = await store.load_room(room_id, data.catalog(), data.scenarios())
    stage = Recorder()
    provider = Scripted("two")
    runner = RoomRunner(again, lambda m: provider, SlowImages(), stage, journal=Journal(store, room_id))
    runner.resume_backlog(resumable_jobs(again))
    await runner.run()
    assert '🔍 [AI-1]: !search "lighthouse keepers" failed: web search is no longer set up here' in notices(stage)
    assert "!search" not in sent(provider, 0).replace('!search "lighthouse keepers"', "")
    await store.close()
