"""A fake SearXNG instance on 127.0.0.1: its search API, and its usual ways of failing.

It answers ``GET /search`` (and ``GET /``) with ``format=json`` in SearXNG's shape
(https://docs.searxng.org/dev/search_api.html): ``query``, ``number_of_results``,
``results`` (``url``, ``title``, ``content``, ``engine``, ``engines``, ``score``,
``category``, ...), ``answers``, ``corrections``, ``infoboxes``, ``suggestions`` and
``unresponsive_engines`` (pairs of engine and reason). Like a real instance, a format
not listed in its settings (``formats``) is refused with 403 Forbidden and an HTML page.
Without a script, results come from a small built-in index, matched on the query's words.
Scripted answers misbehave on cue: a status, garbage, a stall.

    with FakeSearxng() as searx:
        searx.script(SearxAnswer.error(500))
        ...
        assert searx.requests[0]["q"] == "tides"
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HTML = "text/html; charset=utf-8"
# The pages Flask/Werkzeug (which SearXNG runs on) sends for an abort().
FORBIDDEN_PAGE = (
    "<!doctype html>\n<html lang=en>\n<title>403 Forbidden</title>\n<h1>Forbidden</h1>\n"
    "<p>You don&#39;t have the permission to access the requested resource. It is either read-protected "
    "or not readable by the server.</p>\n"
)
ERROR_PAGE = (
    "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n"
    "<p>The server encountered an internal error and was unable to complete your request.</p>\n"
)

INDEX: list[tuple[str, str, str]] = [  # (url, title, content): invented pages for the default answers
    ("https://en.example.org/wiki/Lighthouse", "Lighthouse - Example Encyclopedia",
     "A <b>lighthouse</b> is a tower with a lamp that guides ships at night &amp; in fog."),
    ("https://harbour.example.net/lighthouses/tallest", "The tallest lighthouses in Europe",
     "Ranked by height: the tallest <span class=\"highlight\">lighthouse</span> in Europe stands 106 m high."),
    ("https://tides.example.com/moon", "Why the moon makes tides",
     "Tides rise and fall twice a day as the moon pulls on the oceans."),
    ("https://tides.example.com/saturn", "Tides on Saturn's moons",
     "Enceladus flexes under Saturn's tides, warming an ocean beneath its ice."),
    ("https://kitchen.example.org/bread", "Sourdough for beginners",
     "Flour, water, salt and patience: a starter takes a week."),
    ("https://archive.example.org/lighthouse-keepers", "Lighthouse keepers' logbooks",
     "Logbooks from 1820 to 1960 record weather, ships and lamp oil."),
]


@dataclass
class SearxAnswer:
    """One scripted answer: a status and a body, after ``delay`` seconds (a stall outlives the client)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def results(cls, *items: dict[str, Any], query: str = "", unresponsive: list[list[str]] | None = None) -> SearxAnswer:
        return cls(body=json.dumps(payload(query, list(items), unresponsive or [])).encode())

    @classmethod
    def error(cls, status: int, *, retry_after: int | None = None) -> SearxAnswer:
        """What SearXNG (or its limiter, for 429) sends for a failure."""
        page = {403: FORBIDDEN_PAGE, 429: "Too Many Requests"}.get(status, ERROR_PAGE)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        kind = "text/plain" if status == 429 else HTML
        return cls(status, page.encode(), kind, headers)

    @classmethod
    def garbage(cls, body: bytes = b'{"query": "cut off", "results": [{"url": "https://a.exa', content_type: str = "application/json") -> SearxAnswer:
        return cls(200, body, content_type)

    @classmethod
    def stall(cls, seconds: float) -> SearxAnswer:
        return cls(body=json.dumps(payload("", [], [])).encode(), delay=seconds)


def result(url: str, title: str, content: str = "", engine: str = "duckduckgo", score: float = 1.0) -> dict[str, Any]:
    """One result as SearXNG lists it."""
    parsed = urllib.parse.urlsplit(url)
    return {
        "url": url, "title": title, "content": content, "engine": engine,
        "parsed_url": [parsed.scheme, parsed.netloc, parsed.path, "", parsed.query, ""],
        "template": "default.html", "engines": [engine], "positions": [1], "score": score,
        "category": "general", "publishedDate": None, "thumbnail": "", "priority": "",
    }


def payload(query: str, results: list[dict[str, Any]], unresponsive: list[list[str]]) -> dict[str, Any]:
    return {
        "query": query, "number_of_results": 0, "results": results, "answers": [], "corrections": [],
        "infoboxes": [], "suggestions": [], "unresponsive_engines": unresponsive,
    }


def indexed(query: str) -> list[dict[str, Any]]:
    """The built-in pages that share a word with the query, in index order."""
    words = {w.strip("'\"?.,").lower() for w in query.split() if len(w) > 2}
    found = []
    for url, title, content in INDEX:
        text = f"{title} {content}".lower()
        if any(word in text for word in words):
            found.append(result(url, title, content, score=1.0 / (len(found) + 1)))
    return found


class FakeSearxng:
    """Serves scripted answers, then answers from ``INDEX``; ``formats`` is the instance's search.formats."""

    def __init__(self, formats: tuple[str, ...] = ("html", "json")):
        self.formats = formats
        self.requests: list[dict[str, str]] = []  # the query parameters of each request
        self.headers: list[dict[str, str]] = []
        self._queue: deque[SearxAnswer] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake SearXNG is not running")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def script(self, *answers: SearxAnswer) -> None:
        with self._lock:
            self._queue.extend(answers)

    def start(self) -> FakeSearxng:
        self._httpd = _Server(("127.0.0.1", 0), _Handler, self)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # releases stalled answers
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd = None

    def __enter__(self) -> FakeSearxng:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self, params: dict[str, str]) -> SearxAnswer:
        with self._lock:
            scripted = self._queue.popleft() if self._queue else None
        if params.get("format", "html") not in self.formats:
            return SearxAnswer.error(403)  # checked by SearXNG before any engine is asked
        if scripted is not None:
            return scripted
        if "q" not in params or not params["q"].strip():
            return SearxAnswer.error(400)
        return SearxAnswer.results(*indexed(params["q"]), query=params["q"])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeSearxng):
        self.fake = fake
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (a timeout test) is not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        fake = self.server.fake
        if parts.path.rstrip("/") not in ("", "/search"):
            return self._send(SearxAnswer(404, b"Not Found", "text/plain"))
        params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        with fake._lock:
            fake.requests.append(params)
            fake.headers.append({k.lower(): v for k, v in self.headers.items()})
        answer = fake._answer(params)
        if answer.delay and fake._stopping.wait(answer.delay):
            self.close_connection = True
            return
        self._send(answer)

    def _send(self, answer: SearxAnswer) -> None:
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except OSError:
            self.close_connection = True
