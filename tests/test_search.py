"""The SearXNG client against a fake instance: the wire format, and every way a search fails."""

from __future__ import annotations

import time

import pytest

from bot.engine import SearchHit
from bot.search import SearchError, SearxngSearch, make_search
from bot.settings import Settings
from tests.fakes import FakeSearxng, SearxAnswer
from tests.fakes.searxng_server import result


@pytest.fixture
def searx():
    with FakeSearxng() as server:
        yield server


@pytest.fixture
async def client(searx):
    search = SearxngSearch(searx.base_url + "/", results=3, timeout=3.0)
    yield search
    await search.aclose()


async def test_asks_for_json_and_returns_plain_text_results_best_first(searx, client):
    hits = await client.search("tallest lighthouse")
    (params,) = searx.requests
    assert params == {"q": "tallest lighthouse", "format": "json", "safesearch": "1", "pageno": "1"}
    assert searx.headers[0]["accept"] == "application/json"
    assert hits[0] == SearchHit(
        "Lighthouse - Example Encyclopedia",
        "https://en.example.org/wiki/Lighthouse",
        "A lighthouse is a tower with a lamp that guides ships at night & in fog.",  # markup and entities gone
    )
    assert "<span" not in hits[1].extract and "tallest lighthouse in Europe" in hits[1].extract
    assert len(hits) == 3  # SEARCH_RESULTS, of the four pages that match


async def test_language_and_safe_search_are_passed_on(searx):
    search = SearxngSearch(searx.base_url, safesearch=2, language="de-CH")
    await search.search("tides")
    await search.aclose()
    assert searx.requests[0]["safesearch"] == "2" and searx.requests[0]["language"] == "de-CH"


async def test_no_results_is_an_empty_list(searx, client):
    assert await client.search("qqqq zzzz") == []


async def test_results_without_a_web_address_are_skipped_and_duplicates_dropped(searx, client):
    searx.script(SearxAnswer.results(
        result("javascript:alert(1)", "Script"),
        {"title": "no url at all"},
        "not even an object",
        result("https://a.example/", "A", "first"),
        result("https://a.example/", "A again", "same page"),
        result("https://b.example/", "", "an untitled page"),
    ))
    hits = await client.search("anything")
    assert hits == [SearchHit("A", "https://a.example/", "first"), SearchHit("https://b.example/", "https://b.example/", "an untitled page")]


async def test_json_switched_off_is_a_403_that_names_the_fix():
    with FakeSearxng(formats=("html",)) as searx:
        search = SearxngSearch(searx.base_url)
        with pytest.raises(SearchError) as caught:
            await search.search("lighthouses")
        await search.aclose()
    assert caught.value.public == "the search service refuses to answer the bot in JSON"
    assert "403" in caught.value.detail and "search.formats" in caught.value.detail


async def test_a_server_error_says_its_status(searx, client):
    searx.script(SearxAnswer.error(500))
    with pytest.raises(SearchError) as caught:
        await client.search("lighthouses")
    assert caught.value.public == "the search service failed (HTTP 500)"
    assert "Internal Server Error" in caught.value.detail


async def test_a_rate_limit_says_so_with_its_retry_after(searx, client):
    searx.script(SearxAnswer.error(429, retry_after=30))
    with pytest.raises(SearchError) as caught:
        await client.search("lighthouses")
    assert caught.value.public == "the search service is limiting requests; try again in a few turns"
    assert "Retry-After: 30" in caught.value.detail


async def test_a_silent_service_times_out_within_the_setting(searx):
    searx.script(SearxAnswer.stall(5))
    search = SearxngSearch(searx.base_url, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(SearchError) as caught:
        await search.search("lighthouses")
    await search.aclose()
    assert time.monotonic() - started < 2
    assert caught.value.public == "the search service did not answer within 0.5 seconds"


@pytest.mark.parametrize(
    "answer",
    [
        SearxAnswer.garbage(),  # cut-off JSON
        SearxAnswer.garbage(b"<html><body>results</body></html>", "text/html"),  # an HTML page
        SearxAnswer.garbage(b"[1, 2, 3]"),  # JSON, not an object
        SearxAnswer.garbage(b'{"query": "x", "results": "none"}'),  # no results list
    ],
)
async def test_garbage_is_not_search_results(searx, client, answer):
    searx.script(answer)
    with pytest.raises(SearchError) as caught:
        await client.search("lighthouses")
    assert caught.value.public == "the search service sent something that is not search results"


async def test_engines_that_did_not_answer_are_a_failure_not_an_empty_search(searx, client):
    searx.script(SearxAnswer.results(unresponsive=[["google", "timeout"], ["brave", "CAPTCHA"]]))
    with pytest.raises(SearchError) as caught:
        await client.search("lighthouses")
    assert caught.value.public == "the search engines behind the search service did not answer"
    assert "google timeout, brave CAPTCHA" in caught.value.detail


async def test_an_unreachable_service_says_so_and_only_the_log_has_its_address(caplog):
    search = SearxngSearch("http://user:secret@127.0.0.1:9/base")  # the discard port: nothing listens
    with pytest.raises(SearchError) as caught:
        await search.search("lighthouses")
    await search.aclose()
    assert caught.value.public == "the search service could not be reached"
    # The detail may reach a room's moderator: it names the setting, not the address.
    assert caught.value.detail == "the SearXNG at SEARCH_URL could not be reached (ConnectError)"
    logged = caplog.text
    assert "http://127.0.0.1:9/base/search" in logged and "secret" not in logged


def test_no_search_url_means_no_search_service():
    assert make_search(Settings(_env_file=None)) is None
    service = make_search(Settings(_env_file=None, search_url="http://searx.local", search_results=7))
    assert isinstance(service, SearxngSearch) and service.results == 7
    assert service.endpoint == "http://searx.local/search"
