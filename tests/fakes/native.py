"""What the fake Anthropic and Gemini servers share with each other and with FakeLLMServer.

They reuse FakeLLMServer's threaded HTTP server and its ``Reply`` (status,
headers, body or stream pieces, ending), and differ only in how a POST is
answered: each checks the request the way its API would and refuses what
the real API refuses, so a wire mistake in an adapter fails a test.

Also here: token counts for realistic usage reports (a token is about four
characters, as the engine estimates too) and ``PrefixCache``, which decides
when a prompt repeats a prefix seen before (a prompt cache hit).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .llm_server import FakeLLMServer, Reply, _Handler, _HTTPServer

CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 1000  # the fakes do not decode pictures; a typical one costs about this much


def tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN) if text else 0


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class PrefixCache:
    """Prompt prefixes seen before, each known by a running hash over its segments.

    A segment is whatever a provider caches at the boundary of: a content
    block (Anthropic), a turn (Gemini, DeepSeek). Only prefixes of at least
    ``min_tokens`` are kept, as the services ignore shorter ones.
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()

    @staticmethod
    def prefixes(segments: Iterable[tuple[Any, int]]) -> list[tuple[str, int]]:
        """(hash, tokens so far) at the end of each segment."""
        running, total, out = hashlib.sha256(), 0, []
        for value, count in segments:
            running.update(canonical(value).encode("utf-8"))
            total += count
            out.append((running.copy().hexdigest(), total))
        return out

    def hit(self, prefixes: list[tuple[str, int]], positions: Iterable[int]) -> int:
        """Tokens of the longest cached prefix ending at one of ``positions``."""
        return max((prefixes[p][1] for p in positions if prefixes[p][0] in self._seen), default=0)

    def store(self, prefix: tuple[str, int], min_tokens: int) -> bool:
        if prefix[1] < min_tokens:
            return False
        self._seen.add(prefix[0])
        return True

    def __contains__(self, prefix: tuple[str, int]) -> bool:
        return prefix[0] in self._seen


class NativeFakeServer(FakeLLMServer):
    """A FakeLLMServer whose POSTs are answered by ``answer(path, query, headers, body)``.

    Scripted replies (``script``) are served first, in order, once a request
    has passed the checks; then ``default(body)``.
    """

    url_path = ""

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake server is not running")
        return f"http://{self._host}:{self._httpd.server_address[1]}{self.url_path}"

    def start(self) -> NativeFakeServer:
        self._httpd = _HTTPServer((self._host, 0), _NativeHandler, self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()
        return self

    @property
    def chat_requests(self) -> list[Any]:
        return [r for r in self.requests if r.method == "POST"]

    def answer(self, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any) -> Reply:
        raise NotImplementedError

    def next_reply(self, body: dict[str, Any]) -> Reply:
        return self._next_reply(body)


class _NativeHandler(_Handler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = self._record(body)
        url = urlsplit(self.path)
        fake = self.server.fake
        assert isinstance(fake, NativeFakeServer)
        self._send(fake.answer(url.path, parse_qs(url.query), headers, body))
