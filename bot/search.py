"""Web search for ``!search``: a SearXNG instance's JSON API, behind one small interface.

SearXNG (https://docs.searxng.org/dev/search_api.html) answers
``GET {SEARCH_URL}/search?q=...&format=json`` with
``{"query": ..., "results": [{"title", "url", "content", ...}], "unresponsive_engines": [[name, why], ...]}``.
The JSON format is off unless the instance lists it under ``search.formats`` in its
``settings.yml``; asking for it then answers 403 Forbidden, which is the most common
set-up mistake, so that failure names the fix.

Results are text only: titles, addresses and the extracts the search engines
wrote. No page is ever fetched. Every failure becomes a ``SearchError`` with a
sentence the room may show and details for the host.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import urllib.parse
from typing import Any, Protocol

import httpx

from bot.engine import SearchHit
from bot.providers.http import tls_context
from bot.settings import Settings

log = logging.getLogger(__name__)

# How failures name the service: details may reach a room's moderator in a DM, so they name
# the setting, never the instance's address (the log has it, without credentials).
WHERE = "the SearXNG at SEARCH_URL"
MAX_BODY = 2 * 1024 * 1024  # a page of SearXNG results is tens of kilobytes; more is not search results
_TAG = re.compile(r"<[^>]{0,200}>")  # engines' highlighting (<b>, <span class="highlight">)


class SearchError(Exception):
    """A search that could not be made: ``public`` for the room, ``detail`` for the host."""

    def __init__(self, public: str, detail: str = ""):
        super().__init__(detail or public)
        self.public = public
        self.detail = detail


class SearchService(Protocol):
    async def search(self, query: str) -> list[SearchHit]:
        """The top results for ``query``; raises SearchError."""
        ...

    async def aclose(self) -> None: ...


def make_search(settings: Settings) -> SearxngSearch | None:
    """The search service the settings name, or None: then ``!search`` is off and the AIs are not told of it."""
    if not settings.search_url:
        return None
    return SearxngSearch(
        settings.search_url,
        results=settings.search_results,
        timeout=settings.search_timeout,
        safesearch=settings.search_safesearch,
        language=settings.search_language,
    )


class SearxngSearch:
    """A SearXNG instance. One connection pool for every room of the process."""

    def __init__(
        self,
        base_url: str,
        *,
        results: int = 5,
        timeout: float = 10.0,
        safesearch: int = 1,
        language: str | None = None,
    ):
        self.endpoint = base_url.rstrip("/") + "/search"
        self.results = results
        self.timeout = timeout
        self.safesearch = safesearch
        self.language = language
        self._client: httpx.AsyncClient | None = None

    @property
    def where(self) -> str:
        """The endpoint without credentials or query, for the log."""
        parts = urllib.parse.urlsplit(self.endpoint)
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))

    async def search(self, query: str) -> list[SearchHit]:
        params: dict[str, str | int] = {"q": query, "format": "json", "safesearch": self.safesearch, "pageno": 1}
        if self.language:
            params["language"] = self.language
        client = self._client_now()  # made once, outside the timeout: it loads certificates
        try:
            async with asyncio.timeout(self.timeout):  # the whole search, however slowly bytes trickle
                status, headers, body = await self._get(client, params)
        except (TimeoutError, httpx.TimeoutException):
            raise SearchError(
                f"the search service did not answer within {self.timeout:g} seconds",
                f"{WHERE} took longer than SEARCH_TIMEOUT ({self.timeout:g} s)",
            ) from None
        except httpx.HTTPError as exc:
            log.warning("could not reach the search service at %s: %s %s", self.where, type(exc).__name__, exc)
            raise SearchError(
                "the search service could not be reached", f"{WHERE} could not be reached ({type(exc).__name__})"
            ) from None
        if status != 200:
            raise _status_error(status, headers, body)
        return self._hits(_payload(body, headers))

    async def _get(self, client: httpx.AsyncClient, params: dict[str, str | int]) -> tuple[int, httpx.Headers, bytes]:
        headers = {"Accept": "application/json"}
        async with client.stream("GET", self.endpoint, params=params, headers=headers) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_BODY:
                    raise SearchError(
                        "the search service sent far more than a page of results",
                        f"{WHERE} sent over {MAX_BODY // 1024 // 1024} MiB",
                    )
            return response.status_code, response.headers, bytes(body)

    def _client_now(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout), follow_redirects=False, headers={"User-Agent": "Seance"},
                verify=tls_context(),
            )
        return self._client

    def _hits(self, payload: dict[str, Any]) -> list[SearchHit]:
        """Usable results in SearXNG's order (best first), one per address."""
        results = payload.get("results")
        if not isinstance(results, list):
            raise SearchError(
                "the search service sent something that is not search results",
                f'{WHERE} answered JSON without a "results" list',
            )
        hits: list[SearchHit] = []
        seen: set[str] = set()
        for item in results:
            hit = _hit(item)
            if hit is None or hit.url in seen:
                continue
            seen.add(hit.url)
            hits.append(hit)
            if len(hits) >= self.results:
                break
        if not hits and (silent := _unresponsive(payload)):
            raise SearchError(
                "the search engines behind the search service did not answer",
                f"{WHERE} found nothing; engines that did not answer: {silent}",
            )
        return hits

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _status_error(status: int, headers: httpx.Headers, body: bytes) -> SearchError:
    if status == 403:
        return SearchError(
            "the search service refuses to answer the bot in JSON",
            f"{WHERE} answered 403 Forbidden to format=json: list json under search.formats in the "
            "instance's settings.yml (or let the bot past its limiter)",
        )
    if status == 429:
        wait = headers.get("retry-after")
        return SearchError(
            "the search service is limiting requests; try again in a few turns",
            f"{WHERE} answered 429 Too Many Requests" + (f" (Retry-After: {wait})" if wait else "")
            + "; its limiter may need the bot's address on its pass list",
        )
    return SearchError(f"the search service failed (HTTP {status})", f"{WHERE} answered {status}: {_peek(body)}")


def _payload(body: bytes, headers: httpx.Headers) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        kind = headers.get("content-type", "no content type")
        raise SearchError(
            "the search service sent something that is not search results",
            f"{WHERE} answered 200 with {kind}, not a JSON object: {_peek(body)}",
        )
    return payload


def _hit(item: Any) -> SearchHit | None:
    """One result as plain text, or None when it has no web address to show."""
    if not isinstance(item, dict):
        return None
    url = item.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")) or any(c.isspace() for c in url):
        return None
    return SearchHit(_text(item.get("title")) or url, url, _text(item.get("content")))


def _text(value: Any) -> str:
    """Engines' snippets may carry markup and entities: plain, single-spaced text."""
    if not isinstance(value, str):
        return ""
    return " ".join(html.unescape(_TAG.sub(" ", value)).split())


def _unresponsive(payload: dict[str, Any]) -> str:
    engines = payload.get("unresponsive_engines")
    if not isinstance(engines, list):
        return ""
    named = [" ".join(str(part) for part in e) if isinstance(e, list) else str(e) for e in engines]
    return ", ".join(named[:5])


def _peek(body: bytes) -> str:
    text = " ".join(body[:200].decode("utf-8", "replace").split())
    return text or "(an empty body)"
