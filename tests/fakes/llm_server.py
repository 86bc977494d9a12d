"""A fake OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks.

It speaks the streaming dialects of OpenRouter, DeepSeek and Ollama as
documented in ``shared/reference/provider-wire-formats.md`` (comment lines,
where reasoning and usage arrive, error envelopes) and can misbehave on cue:
errors, mid-stream failures, dropped connections, stalls. It runs in a
thread, so async tests can talk to it without blocking their event loop.

    with FakeLLMServer() as server:
        server.script(Reply.error(429, retry_after=1), Reply.text("Hello", reasoning="hm"))
        provider = OpenAICompatProvider("openrouter", server.base_url, "sk-test")
        ...
        assert len(server.requests) == 2
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STYLES = ("openrouter", "deepseek", "ollama")
_ollama_ids = itertools.count(100)


# --- replies ---------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer: a status, then a plain body or stream pieces, then an ending.

    ``pieces`` are wire text, each sent and flushed as its own HTTP chunk after
    ``delay`` seconds. ``ending`` is ``"end"`` (the body completes), ``"drop"``
    (the socket closes mid-body) or ``"stall"`` (silence for ``stall_seconds``, then drop).
    ``hold`` is (piece number, condition): that piece and the rest wait until the condition
    holds, so a test about what the bot does mid-stream does not race a busy machine's clock.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    pieces: list[str | bytes] = field(default_factory=list)  # bytes may split a character
    delay: float = 0.0
    ending: str = "end"
    stall_seconds: float = 0.0
    hold: tuple[int, Callable[[], bool]] | None = None
    first_words: int = 1  # the piece that carries the first words of the answer

    @classmethod
    def text(
        cls,
        text: str = "Hello!",
        *,
        chunks: int = 3,
        reasoning: str = "",
        usage: tuple[int, int] | None = (10, 5),
        cached: int = 0,
        cache_write: int = 0,
        reasoning_tokens: int | None = None,
        cost: float | None = None,
        style: str = "openrouter",
        model: str = "fake/model",
        finish_reason: str = "stop",
        done: bool = True,
        crlf: bool = False,
        compact: bool = False,
        delay: float = 0.0,
    ) -> Reply:
        """A complete streamed reply in ``style``'s framing.

        ``usage`` is (prompt, completion) tokens or None for no usage report;
        ``compact`` writes ``data:`` without the space, ``crlf`` ends lines with CRLF.
        """
        wire = _Wire(style, model, crlf, compact)
        pieces = wire.opening() + wire.body(text, reasoning, chunks)
        first_words = len(pieces) - len(_split(text, chunks)) + 1
        report = None
        if usage is not None:
            thinking = len(reasoning) // 4 if reasoning_tokens is None else reasoning_tokens
            report = wire.usage(usage[0], usage[1], cached, cache_write, thinking, cost)
        pieces += wire.finish(finish_reason, report)
        if done:
            pieces.append(wire.data("[DONE]"))
        return cls(headers=wire.headers(), pieces=pieces, delay=delay, first_words=first_words)

    def held(self, until: Callable[[], bool]) -> Reply:
        """This reply with everything after its first words held back until ``until()`` holds."""
        self.hold = (self.first_words + 1, until)
        return self

    @classmethod
    def error(
        cls,
        status: int,
        body: dict[str, Any] | str | None = None,
        *,
        retry_after: float | str | None = None,
        style: str = "openrouter",
    ) -> Reply:
        """An HTTP error; without ``body``, the envelope ``style``'s service sends for ``status``."""
        if body is None:
            body = _error_body(status, style)
        is_json = not isinstance(body, str)
        raw = json.dumps(body) if is_json else body
        headers = {"Content-Type": "application/json" if is_json else "text/plain; charset=utf-8"}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return cls(status=status, headers=headers, body=raw.encode("utf-8"))

    @classmethod
    def midstream_error(
        cls,
        text_before: str = "Hello",
        *,
        code: int | str = 502,
        message: str = "Provider disconnected unexpectedly",
        shape: str = "finish",
        done: bool = True,
        style: str = "openrouter",
        usage: tuple[int, int] | None = None,
    ) -> Reply:
        """OpenRouter's in-band error after a 200: ``shape`` "finish" carries
        ``finish_reason: "error"``, "empty" carries ``choices: []`` as seen in the wild.
        ``usage`` (prompt, completion) rides on the error frame, as some do."""
        wire = _Wire(style)
        error = {"code": code, "message": message, "metadata": {"error_type": "provider_unavailable"}}
        choices = [] if shape == "empty" else [wire.choice({"content": ""}, "error")]
        pieces = wire.opening() + wire.body(text_before, "", 2)
        extra: dict[str, Any] = {"error": error}
        if usage is not None:
            extra["usage"] = wire.usage(usage[0], usage[1], 0, 0, 0, None)
        pieces.append(wire.data(wire.chunk(choices, **extra)))
        if done:
            pieces.append(wire.data("[DONE]"))
        return cls(headers=wire.headers(), pieces=pieces)

    @classmethod
    def corrupted(cls, text_before: str = "", text_after: str = " and the rest.", *, style: str = "openrouter") -> Reply:
        """A whole reply with one data event that is not JSON (a chunk cut in half by a proxy)
        between ``text_before`` and ``text_after``; the words it carried are lost with it."""
        wire = _Wire(style)
        pieces = wire.opening() + wire.body(text_before, "", 2)
        pieces.append(f'{wire.prefix}{{"id":"{wire.id}","choices":[{{"index":0,"delta":{{"content":"lost wo{wire.end}{wire.end}')
        pieces += wire.body(text_after, "", 2) + wire.finish("stop", wire.usage(10, 5, 0, 0, 0, None))
        pieces.append(wire.data("[DONE]"))
        return cls(headers=wire.headers(), pieces=pieces)

    @classmethod
    def quota(cls, *, daily: bool = True) -> Reply:
        """A 429 that waiting a minute does not fix: OpenRouter's free-model daily limit,
        or (``daily=False``) OpenAI's ``insufficient_quota``, its plan or billing limit."""
        if daily:
            body = {
                "error": {
                    "message": "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day",
                    "code": 429,
                    "metadata": {"headers": {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0"}},
                }
            }
        else:
            body = {
                "error": {
                    "message": "You exceeded your current quota, please check your plan and billing details.",
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            }
        return cls.error(429, body)

    @classmethod
    def drop(cls, text_before: str = "", *, graceful: bool = False, style: str = "openrouter") -> Reply:
        """The connection ends without a finish: cut mid-body, or (``graceful``) a body that just stops."""
        wire = _Wire(style)
        pieces = wire.opening() + wire.body(text_before, "", 2)
        return cls(headers=wire.headers(), pieces=pieces, ending="end" if graceful else "drop")

    @classmethod
    def stall(cls, text_before: str = "", seconds: float = 30.0, *, style: str = "openrouter") -> Reply:
        """The stream goes silent with the socket open, as DeepSeek streams have been seen to."""
        wire = _Wire(style)
        pieces = wire.opening() + wire.body(text_before, "", 2)
        return cls(headers=wire.headers(), pieces=pieces, ending="stall", stall_seconds=seconds)

    @classmethod
    def ollama_raw_error(
        cls, text_before: str = "", message: str = "an error was encountered while running the model"
    ) -> Reply:
        """Ollama's mid-stream failure: a bare JSON line, no ``data:``, no [DONE]."""
        wire = _Wire("ollama")
        error = {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
        pieces = wire.body(text_before, "", 2) + [json.dumps(error, separators=(",", ":")) + "\n"]
        return cls(headers=wire.headers(), pieces=pieces)

    @classmethod
    def raw(cls, *pieces: str, status: int = 200, content_type: str = "text/event-stream", ending: str = "end") -> Reply:
        """Exactly these wire pieces, for framings the builders do not cover."""
        return cls(status=status, headers={"Content-Type": content_type}, pieces=list(pieces), ending=ending)


def default_reply(body: dict[str, Any], delay: float = 0.0) -> Reply:
    """A short deterministic answer; the turn is counted from the request's own history."""
    model = str(body.get("model", "fake/model"))
    turn = 1 + sum(1 for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "assistant")
    return Reply.text(f"I am {model}, turn {turn}.", model=model, delay=delay)


# --- each service's framing ------------------------------------------------------


class _Wire:
    """Chunk objects and SSE framing in one service's style, so its quirks live in one place."""

    def __init__(self, style: str = "openrouter", model: str = "fake/model", crlf: bool = False, compact: bool = False):
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}")
        self.style = style
        self.model = model
        self.end = "\r\n" if crlf else "\n"
        self.prefix = "data:" if compact else "data: "
        self.created = int(time.time())
        self.id = {
            "openrouter": f"gen-{self.created}-{uuid.uuid4().hex[:20]}",
            "deepseek": str(uuid.uuid4()),
            "ollama": f"chatcmpl-{next(_ollama_ids)}",
        }[style]

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        if self.style == "openrouter":
            headers["X-Generation-Id"] = self.id
        return headers

    def data(self, payload: dict[str, Any] | str) -> str:
        text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        return f"{self.prefix}{text}{self.end}{self.end}"

    def comment(self) -> str:
        text = ": OPENROUTER PROCESSING" if self.style == "openrouter" else ": keep-alive"
        return f"{text}{self.end}{self.end}"

    def choice(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        if self.style == "openrouter":
            choice |= {"native_finish_reason": finish, "logprobs": None}
        elif self.style == "deepseek":
            choice["logprobs"] = None
        return choice

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        chunk: dict[str, Any] = {"id": self.id}
        if self.style == "openrouter":
            chunk["provider"] = "FakeProvider"
        chunk |= {"model": self.model, "object": "chat.completion.chunk", "created": self.created}
        if self.style != "openrouter":
            chunk["system_fingerprint"] = "fp_ollama" if self.style == "ollama" else "fp_fake_prod"
        chunk["choices"] = choices
        return chunk | extra

    def opening(self) -> list[str]:
        """What precedes the first token: processing comments and an empty role chunk."""
        if self.style == "openrouter":
            first = self.choice({"role": "assistant", "content": ""})
            return [self.comment(), self.comment(), self.data(self.chunk([first]))]
        if self.style == "deepseek":
            first = self.choice({"role": "assistant", "content": None, "reasoning_content": ""})
            return [self.comment(), self.data(self.chunk([first]))]
        return []

    def body(self, text: str, reasoning: str, chunks: int) -> list[str]:
        pieces = [self.data(self.chunk([self.choice(self._thought(p))])) for p in _split(reasoning, chunks)]
        if reasoning and self.style in ("openrouter", "deepseek"):
            pieces.append(self.comment())  # a keep-alive between thinking and answering
        pieces += [self.data(self.chunk([self.choice(self._said(p))])) for p in _split(text, chunks)]
        return pieces

    def _thought(self, piece: str) -> dict[str, Any]:
        if self.style == "deepseek":
            return {"content": None, "reasoning_content": piece}
        delta: dict[str, Any] = {"role": "assistant", "content": "", "reasoning": piece}
        if self.style == "openrouter":
            delta["reasoning_details"] = [{"type": "reasoning.text", "text": piece, "format": "unknown", "index": 0}]
        return delta

    def _said(self, piece: str) -> dict[str, Any]:
        if self.style == "deepseek":
            return {"content": piece, "reasoning_content": None}
        return {"role": "assistant", "content": piece}

    def finish(self, reason: str, usage: dict[str, Any] | None) -> list[str]:
        """The finish chunk and usage: OpenRouter repeats a choice in a separate usage chunk,
        DeepSeek puts usage on the finish chunk, Ollama sends ``choices: []``."""
        if self.style == "deepseek":
            finish = self.choice({"content": "", "reasoning_content": None}, reason)
            return [self.data(self.chunk([finish], **({"usage": usage} if usage else {})))]
        pieces = [self.data(self.chunk([self.choice({"role": "assistant", "content": ""}, reason)]))]
        if usage and self.style == "openrouter":
            again = self.choice({"role": "assistant", "content": ""})
            pieces.append(self.data(self.chunk([again], usage=usage)))
        elif usage:
            pieces.append(self.data(self.chunk([], usage=usage)))
        return pieces

    def usage(
        self, prompt: int, completion: int, cached: int, cache_write: int, thinking: int, cost: float | None
    ) -> dict[str, Any]:
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if self.style == "openrouter":
            if cost is not None:
                usage |= {"cost": cost, "is_byok": False}
            usage["prompt_tokens_details"] = {"cached_tokens": cached, "cache_write_tokens": cache_write, "audio_tokens": 0}
            if cost is not None:
                usage["cost_details"] = {"upstream_inference_cost": None}
            usage["completion_tokens_details"] = {"reasoning_tokens": thinking, "image_tokens": 0}
        elif self.style == "deepseek":
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
            usage["completion_tokens_details"] = {"reasoning_tokens": thinking}
            usage |= {"prompt_cache_hit_tokens": cached, "prompt_cache_miss_tokens": prompt - cached}
        return usage


def _split(text: str, chunks: int) -> list[str]:
    if not text:
        return []
    size = -(-len(text) // max(1, min(chunks, len(text))))
    return [text[i : i + size] for i in range(0, len(text), size)]


_OPENROUTER_ERRORS: dict[int, dict[str, Any]] = {
    400: {"message": "bogus/model is not a valid model ID", "code": 400},
    401: {"message": "User not found.", "code": 401},
    402: {
        "message": "This request requires more credits, or fewer max_tokens. You requested up to 1024 tokens, "
        "but can only afford 12. To increase, visit https://openrouter.ai/settings/credits and upgrade to a paid account",
        "code": 402,
        "metadata": {"provider_name": None},
    },
    404: {"message": "No endpoints found for fake/model.", "code": 404},
    429: {
        "message": "Provider returned error",
        "code": 429,
        "metadata": {
            "raw": "fake/model:free is temporarily rate-limited upstream. Please retry shortly.",
            "provider_name": "Fake AI Studio",
        },
    },
    502: {"message": "Provider returned error", "code": 502, "metadata": {"raw": "upstream connect error", "provider_name": "FakeProvider"}},
    503: {"message": "There is no available model provider that meets your routing requirements", "code": 503},
}
_DEEPSEEK_ERRORS = {
    401: ("Authentication Fails (no such user)", "authentication_error"),
    402: ("Insufficient Balance", "unknown_error"),
    429: ("Rate Limit Reached", "rate_limit_error"),
    503: ("Server Overloaded", "server_error"),
}


def _error_body(status: int, style: str) -> dict[str, Any]:
    phrase = HTTPStatus(status).phrase
    if style == "deepseek":
        message, kind = _DEEPSEEK_ERRORS.get(status, (phrase, "invalid_request_error"))
        return {"error": {"message": message, "type": kind, "param": None, "code": "invalid_request_error"}}
    if style == "ollama":
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        message = 'model "fake:1b" not found, try pulling it first' if status == 404 else phrase
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return {"error": _OPENROUTER_ERRORS.get(status, {"message": phrase, "code": status})}


# --- the server ------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any  # the parsed JSON, or None


class FakeLLMServer:
    """Serves scripted replies to POST .../chat/completions, then ``default(body)`` replies.

    ``require_key`` makes any other bearer key a 401, as a wrong key would be.
    """

    def __init__(self, *, delay: float = 0.0, host: str = "127.0.0.1"):
        self.requests: list[RecordedRequest] = []
        self.record = True  # False: keep no requests (a benchmark's thousands would fill memory)
        self.connections = 0  # connections accepted so far (a client reusing its connections makes few)
        self.default: Callable[[dict[str, Any]], Reply] = lambda body: default_reply(body, delay)
        self.require_key: str | None = None
        # Picture requests (see tests/fakes/images.py) have their own script, so they never
        # use up the chat replies a test queued; None means a small default picture.
        self.image_default: Callable[[dict[str, Any]], Reply] | None = None
        self._host = host
        self._queue: deque[Reply | Callable[[dict[str, Any]], Reply]] = deque()
        self._image_queue: deque[Reply | Callable[[dict[str, Any]], Reply]] = deque()
        self.files: dict[str, Reply] = {}  # GET path -> answer, e.g. a picture left at a URL
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake server is not running")
        return f"http://{self._host}:{self._httpd.server_address[1]}/api/v1"

    def script(self, *replies: Reply | Callable[[dict[str, Any]], Reply]) -> None:
        """Queue replies, served in order; a callable gets the request body."""
        with self._lock:
            self._queue.extend(replies)

    def script_images(self, *replies: Reply | Callable[[dict[str, Any]], Reply]) -> None:
        """Queue answers to picture requests, served in order; a callable gets the request body."""
        with self._lock:
            self._image_queue.extend(replies)

    @property
    def image_requests(self) -> list[RecordedRequest]:
        from .images import wants_image

        return [r for r in self.requests if wants_image(r.path, r.body)]

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        from .images import wants_image

        return [r for r in self.requests if r.path.endswith("/chat/completions") and not wants_image(r.path, r.body)]

    def start(self) -> FakeLLMServer:
        self._httpd = _HTTPServer((self._host, 0), _Handler, self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:  # release handlers waiting on idle keep-alive connections
            _shut(sock)
        self._httpd.server_close()
        self._httpd = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- used by the handler thread ---

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            reply = self._queue.popleft() if self._queue else self.default
        return reply if isinstance(reply, Reply) else reply(body)

    def _next_image(self, body: dict[str, Any]) -> Reply:
        from .images import default_image_reply

        with self._lock:
            reply = self._image_queue.popleft() if self._image_queue else self.image_default or default_image_reply
        return reply if isinstance(reply, Reply) else reply(body)

    def _auth_failure(self, headers: dict[str, str]) -> Reply | None:
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not key.strip():
            return Reply.error(401, {"error": {"message": "No auth credentials found", "code": 401}})
        if self.require_key is not None and key.strip() != self.require_key:
            return Reply.error(401, {"error": {"message": "User not found.", "code": 401}})
        return None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up stop()
    request_queue_size = 256  # the default 5 resets connections when many rooms start at once

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeLLMServer):
        self.fake = fake
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up is part of the tests, not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.fake._lock:
            self.server.fake._sockets.add(self.connection)
            self.server.fake.connections += 1

    def finish(self) -> None:
        with self.server.fake._lock:
            self.server.fake._sockets.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._record(None)
        missing = Reply.error(404, {"error": {"message": f"no route for GET {self.path}", "code": 404}})
        self._send(self.server.fake.files.get(self.path, missing))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = self._record(body)
        fake = self.server.fake
        from .images import wants_image

        picture = wants_image(self.path, body)
        if not picture and not self.path.rstrip("/").endswith("/chat/completions"):
            reply = Reply.error(404, {"error": {"message": f"no route for POST {self.path}", "code": 404}})
        elif not isinstance(body, dict):
            reply = Reply.error(400, {"error": {"message": "the body is not a JSON object", "code": 400}})
        else:
            reply = fake._auth_failure(headers) or (fake._next_image(body) if picture else fake._next_reply(body))
        self._send(reply)

    def _record(self, body: Any) -> dict[str, str]:
        headers = {name.lower(): value for name, value in self.headers.items()}
        if self.server.fake.record:
            self.server.fake.requests.append(RecordedRequest(self.command, self.path, headers, body))
        return headers

    def _send(self, reply: Reply) -> None:
        try:
            self._write(reply)
        except OSError:  # the client gave up first
            self.close_connection = True

    def _write(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.body is not None:
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        stopping = self.server.fake._stopping
        started = time.monotonic()
        for number, piece in enumerate(reply.pieces, 1):
            if reply.hold and number == reply.hold[0] and not self._wait_for(reply.hold[1]):
                return self._hang_up()
            # Each piece at its time from the start, so a late wake-up (a busy machine, a thousand
            # streams) does not push back every piece after it: the reply takes the time it was given.
            if reply.delay and stopping.wait(max(0.0, started + number * reply.delay - time.monotonic())):
                return self._hang_up()
            data = piece if isinstance(piece, bytes) else piece.encode("utf-8")
            self.wfile.write(f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n")
            self.wfile.flush()
        if reply.ending == "stall":
            stopping.wait(reply.stall_seconds)
        if reply.ending in ("drop", "stall"):
            return self._hang_up()
        self.wfile.write(b"0\r\n\r\n")

    def _wait_for(self, condition: Callable[[], bool], limit: float = 10.0) -> bool:
        """Poll ``condition`` until it holds; False if the server stops or ``limit`` passes first."""
        stopping = self.server.fake._stopping
        deadline = time.monotonic() + limit
        while not condition():
            if time.monotonic() > deadline or stopping.wait(0.005):
                return False
        return True

    def _hang_up(self) -> None:
        """Close without the chunked terminator, so the client sees a body cut short."""
        self.close_connection = True
        _shut(self.connection)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
