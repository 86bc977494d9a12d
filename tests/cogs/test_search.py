"""!search on Discord (simcord): the spectators' notice, the results in the next AI's request,
and a failure told in the channel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.settings import Settings
from tests.discord_world import World, by_persona, notices
from tests.fakes import FakeSearxng, Reply, SearxAnswer


@pytest.fixture
def searx() -> Iterator[FakeSearxng]:
    with FakeSearxng() as server:
        yield server


@pytest.fixture
def settings(settings: Settings, searx: FakeSearxng) -> Settings:
    """The Discord test settings with SEARCH_URL pointing at the fake SearXNG."""
    return settings.model_copy(update={"search_url": searx.base_url, "search_timeout": 5})


def requests_text(fake_llm) -> list[str]:
    """Each chat request's messages, system prompt included, as one text."""
    return ["\n".join(str(m["content"]) for m in r.body["messages"]) for r in fake_llm.chat_requests]


async def test_a_search_shows_its_notice_and_the_next_ai_reads_the_results(world: World, fake_llm, searx) -> None:
    fake_llm.script(Reply.text('I will check.\n!search "tallest lighthouse"'), Reply.text("So, 106 metres."))

    await world.start(turns=2, delay=0)

    assert '🔍 [AI-1]: !search "tallest lighthouse" (3 results)' in notices(world.channel)
    assert searx.requests[0]["q"] == "tallest lighthouse"
    first, second = requests_text(fake_llm)
    assert '!search "a few words"' in first
    assert "Web search by AI-1" in second and "https://en.example.org/wiki/Lighthouse" in second
    channel_text = "\n".join(m.content for m in world.channel.history())
    assert "https://en.example.org" not in channel_text  # spectators see the notice, not the results
    assert [m.content for m in by_persona(world.channel)][0] == 'I will check.\n!search "tallest lighthouse"'


async def test_a_failed_search_is_a_notice_in_the_channel(world: World, fake_llm, searx) -> None:
    searx.script(SearxAnswer.error(500))
    fake_llm.script(Reply.text('!search "tallest lighthouse"'), Reply.text("Pity."), Reply.text("Again?"))

    await world.start(turns=3, delay=0)

    assert '🔍 [AI-1]: !search "tallest lighthouse" failed: the search service failed (HTTP 500)' in notices(world.channel)
    assert 'Your search "tallest lighthouse" failed: the search service failed (HTTP 500).' in requests_text(fake_llm)[2]
