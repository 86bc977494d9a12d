"""A fake Anthropic Messages API on 127.0.0.1, for tests and benchmarks.

It follows ``shared/reference/provider-wire-formats.md`` §2: ``event:`` and
``data:`` lines, ``ping`` events (written ``{"type": "ping"}``, with the space),
cumulative usage in ``message_delta``, no ``[DONE]``, an in-stream ``error``
event followed by the end of the body, padding spaces inside some payloads,
and error bodies with ``request_id``, ``x-should-retry`` and ``retry-after``.

Requests are checked the way the API checks them (headers, roles, the
system prompt's place, temperature range, at most four ``cache_control``
marks, no empty text blocks). Usage is measured from the request, and the
prompt cache is simulated: a marked prefix seen before is a cache read, a
new marked prefix is a cache write.

    with FakeAnthropicServer() as server:
        server.script(AnthropicReply.error(529), AnthropicReply.text("Hello"))
        provider = AnthropicProvider(server.base_url, "sk-ant-test")
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from .llm_server import Reply
from .native import IMAGE_TOKENS, NativeFakeServer, PrefixCache, tokens

LOOKBACK = 20  # blocks before a breakpoint where the API still looks for a cache hit
MAX_BREAKPOINTS = 4

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    404: "model: claude-nonexistent",
    429: "This request would exceed the rate limit for your organization of 50 input tokens per minute.",
    500: "Internal server error",
    529: "Overloaded",
}
CREDIT_MESSAGE = (
    "Your credit balance is too low to access the Anthropic API. "
    "Please go to Plans & Billing to upgrade or purchase credits."
)


def min_cache_tokens(model: str) -> int:
    """Shorter prefixes are silently not cached (reference §2.1)."""
    return 2048 if "haiku" in model else 1024


# --- replies -------------------------------------------------------------------


def _event(name: str, payload: dict[str, Any], padding: int = 0) -> str:
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    if padding:  # real payloads sometimes carry spaces before the last brace
        data = data[:-1] + " " * padding + "}"
    return f"event: {name}\ndata: {data}\n\n"


PING = 'event: ping\ndata: {"type": "ping"}\n\n'


def _split(text: str, chunks: int) -> list[str]:
    if not text:
        return []
    size = -(-len(text) // max(1, min(chunks, len(text))))
    return [text[i : i + size] for i in range(0, len(text), size)]


class AnthropicReply:
    """Builders of ``Reply`` in Anthropic's framing."""

    @staticmethod
    def text(
        text: str = "Hello!",
        *,
        thinking: str = "",
        chunks: int = 3,
        usage: dict[str, int] | None = None,
        model: str = "claude-fake-4-5",
        stop_reason: str = "end_turn",
        padded: bool = False,
        delay: float = 0.0,
    ) -> Reply:
        """A whole streamed message: thinking block (if any), text block, message_delta, message_stop."""
        counts = {"input_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        counts |= usage or {}
        output = counts.pop("output_tokens", tokens(text) + tokens(thinking))
        pieces = [_message_start(model, counts)] + _blocks(text, thinking, chunks, padded)
        delta = {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}}
        pieces.append(_event("message_delta", delta | {"usage": counts | {"output_tokens": output}}))
        pieces.append(_event("message_stop", {"type": "message_stop"}))
        first_words = len(pieces) - len(_split(text, chunks)) - 2  # then its stop, message_delta and message_stop
        return Reply(headers=_stream_headers(), pieces=pieces, delay=delay, first_words=first_words)

    @staticmethod
    def error(
        status: int,
        message: str | None = None,
        *,
        kind: str | None = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
    ) -> Reply:
        """An error status with Anthropic's envelope and headers."""
        body = {
            "type": "error",
            "error": {"type": kind or ERROR_TYPES.get(status, "api_error"), "message": message or ERROR_MESSAGES.get(status, "Error")},
            "request_id": _request_id(),
        }
        headers = {"Content-Type": "application/json", "request-id": body["request_id"]}
        if should_retry is None:
            should_retry = status in (408, 409, 429) or status >= 500
        headers["x-should-retry"] = "true" if should_retry else "false"
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        return Reply(status=status, headers=headers, body=json.dumps(body, separators=(",", ":")).encode())

    @staticmethod
    def no_credit() -> Reply:
        return AnthropicReply.error(400, CREDIT_MESSAGE)

    @staticmethod
    def midstream_error(text_before: str = "Hello", kind: str = "overloaded_error", message: str = "Overloaded") -> Reply:
        """An ``error`` event after some text; the body then ends with no message_delta or message_stop."""
        pieces = [_message_start("claude-fake-4-5", {"input_tokens": 10})]
        if text_before:
            pieces += _blocks(text_before, "", 2, False)[:-1]  # the block never closes
        error = {"type": "error", "error": {"details": None, "type": kind, "message": message}, "request_id": _request_id()}
        pieces.append(_event("error", error))
        return Reply(headers=_stream_headers(), pieces=pieces)

    @staticmethod
    def corrupted(text_before: str = "", text_after: str = " and the rest.") -> Reply:
        """A whole message with one ``data:`` line that is not JSON between the two texts."""
        pieces = [_message_start("claude-fake-4-5", {"input_tokens": 10}), _block_start(0, {"type": "text", "text": ""})]
        pieces += [_text_delta(0, text_before)] if text_before else []
        pieces.append('event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_de\n\n')
        pieces += [_text_delta(0, text_after)] if text_after else []
        pieces.append(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
        pieces.append(_event("message_delta", delta | {"usage": {"output_tokens": 5}}))
        pieces.append(_event("message_stop", {"type": "message_stop"}))
        return Reply(headers=_stream_headers(), pieces=pieces)

    @staticmethod
    def drop(text_before: str = "", *, graceful: bool = False) -> Reply:
        pieces = [_message_start("claude-fake-4-5", {"input_tokens": 10})] + _blocks(text_before, "", 2, False)[:-1]
        return Reply(headers=_stream_headers(), pieces=pieces, ending="end" if graceful else "drop")

    @staticmethod
    def stall(text_before: str = "", seconds: float = 30.0) -> Reply:
        pieces = [_message_start("claude-fake-4-5", {"input_tokens": 10})] + _blocks(text_before, "", 2, False)[:-1]
        return Reply(headers=_stream_headers(), pieces=pieces, ending="stall", stall_seconds=seconds)


def _stream_headers() -> dict[str, str]:
    return {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "request-id": _request_id()}


def _request_id() -> str:
    return "req_011C" + uuid.uuid4().hex[:20]


def _message_start(model: str, counts: dict[str, int]) -> str:
    usage = {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0} | counts
    usage |= {
        "cache_creation": {"ephemeral_5m_input_tokens": usage["cache_creation_input_tokens"], "ephemeral_1h_input_tokens": 0},
        "output_tokens": 1,
        "service_tier": "standard",
    }
    message = {
        "model": model, "id": "msg_01" + uuid.uuid4().hex[:22], "type": "message", "role": "assistant",
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage,
    }
    return _event("message_start", {"type": "message_start", "message": message})


def _block_start(index: int, block: dict[str, Any]) -> str:
    return _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def _text_delta(index: int, text: str) -> str:
    return _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}})


def _blocks(text: str, thinking: str, chunks: int, padded: bool) -> list[str]:
    """Content blocks, each opened, filled and closed; a ping after the first opening, as the API does."""
    pieces: list[str] = []
    index = 0
    if thinking:
        pieces.append(_block_start(0, {"type": "thinking", "thinking": ""}))
        pieces.append(PING)
        for piece in _split(thinking, chunks):
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": piece}}
            pieces.append(_event("content_block_delta", delta, padding=6 if padded else 0))
        signature = {"type": "signature_delta", "signature": "EqQBCgIYAh" + uuid.uuid4().hex}
        pieces.append(_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": signature}))
        pieces.append(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    pieces.append(_block_start(index, {"type": "text", "text": ""}))
    if not thinking:
        pieces.append(PING)
    for piece in _split(text, chunks):
        delta = {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
        pieces.append(_event("content_block_delta", delta, padding=3 if padded else 0))
    pieces.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    return pieces


# --- checking a request like the API ---------------------------------------------


def refusal(headers: dict[str, str], body: Any, require_key: str | None) -> Reply | None:
    """The error the real API would answer with, or None for a request it accepts."""
    key = headers.get("x-api-key", "")
    if not key:
        return AnthropicReply.error(401, "x-api-key header is required")
    if require_key is not None and key != require_key:
        return AnthropicReply.error(401)
    if not headers.get("anthropic-version"):
        return AnthropicReply.error(400, "anthropic-version: header is required")
    if not isinstance(body, dict):
        return AnthropicReply.error(400, "the body is not a JSON object")
    problem = _body_problem(body)
    return AnthropicReply.error(400, problem) if problem else None


def _body_problem(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    if not body.get("model"):
        return "model: Field required"
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "temperature: range: 0..1"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for problem in map(_message_problem, messages, [None, *messages[:-1]]):
        if problem:
            return problem
    if messages[0].get("role") != "user":
        return 'messages: first message must use the "user" role'
    marks = sum("cache_control" in block for block in _all_blocks(body))
    if marks > MAX_BREAKPOINTS:
        return f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {marks}."
    return None


def _message_problem(message: Any, before: Any) -> str | None:
    role = message.get("role") if isinstance(message, dict) else None
    if role == "system":
        return (
            'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
            'not "system" as an input message role.'
        )
    if role not in ("user", "assistant"):
        return f"messages: Input tag '{role}' found using 'role' does not match any of the expected tags: 'user', 'assistant'"
    if before is not None and before.get("role") == role:
        return f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" roles in a row'
    if "cache_control" in message:
        return "messages.cache_control: Extra inputs are not permitted"
    content = message.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
    if any(block.get("type") == "text" and not block.get("text") for block in blocks):
        return "messages: text content blocks must be non-empty"
    return None


def _all_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    system = body.get("system")
    blocks = list(system) if isinstance(system, list) else []
    for message in body["messages"]:
        content = message["content"]
        blocks += content if isinstance(content, list) else []
    return blocks


# --- usage and the prompt cache ---------------------------------------------------


class ClaudeCache:
    """Anthropic's prompt cache as documented: a prefix is cached up to a marked block;
    a request reads the longest cached prefix ending at, or up to 20 blocks before,
    one of its marks, and writes what lies between that and its last mark."""

    def __init__(self) -> None:
        self._cache = PrefixCache()

    def measure(self, body: dict[str, Any]) -> dict[str, int]:
        segments, marks = _segments(body)
        prefixes = PrefixCache.prefixes(segments)
        total = prefixes[-1][1] if prefixes else 0
        read = max((self._cache.hit(prefixes, range(max(0, m - LOOKBACK), m + 1)) for m in marks), default=0)
        written = 0
        floor = min_cache_tokens(str(body.get("model", "")))
        if marks and prefixes[marks[-1]] not in self._cache and prefixes[marks[-1]][1] >= floor:
            written = prefixes[marks[-1]][1] - read
        for mark in marks:
            self._cache.store(prefixes[mark], floor)
        return {"input_tokens": total - read - written, "cache_creation_input_tokens": written, "cache_read_input_tokens": read}


def _segments(body: dict[str, Any]) -> tuple[list[tuple[Any, int]], list[int]]:
    """One segment per block, in prompt order (system, then messages), and which are marked."""
    segments: list[tuple[Any, int]] = []
    marks: list[int] = []
    system = body.get("system")
    system_blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system or [])
    blocks = [("system", b) for b in system_blocks]
    for message in body.get("messages", []):
        content = message["content"]
        content = [{"type": "text", "text": content}] if isinstance(content, str) else content
        blocks += [(message["role"], b) for b in content]
    for role, block in blocks:
        if "cache_control" in block:
            marks.append(len(segments))
        plain = {k: v for k, v in block.items() if k != "cache_control"}
        count = IMAGE_TOKENS if block.get("type") == "image" else tokens(str(block.get("text", "")))
        segments.append(((role, plain), count))
    return segments, marks


# --- the server ---------------------------------------------------------------------


def default_text(body: dict[str, Any]) -> str:
    turn = 1 + sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
    return f"I am {body.get('model')}, turn {turn}."


class FakeAnthropicServer(NativeFakeServer):
    """Serves POST /v1/messages: checks, then scripted replies, then measured default replies.

    ``writer(body)`` gives the default reply's text; its usage is measured from
    the request, with the prompt cache simulated (``cache``).
    """

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.cache = ClaudeCache()
        self.writer: Callable[[dict[str, Any]], str] = default_text
        self.default = self._measured

    def _measured(self, body: dict[str, Any]) -> Reply:
        text = self.writer(body)
        counts = self.cache.measure(body)
        return AnthropicReply.text(text, usage=counts | {"output_tokens": tokens(text)}, model=str(body["model"]))

    def answer(self, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any) -> Reply:
        if path != "/v1/messages":
            return AnthropicReply.error(404, f"Not Found: {path}")
        return refusal(headers, body, self.require_key) or self.next_reply(body)
