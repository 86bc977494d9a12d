"""Claude through Anthropic's own Messages API, streamed.

Why native rather than through OpenRouter: prompt caching under our control
(a long room re-sends the same history every turn, and a cached prefix costs a
tenth), Anthropic's own error wording, and no middleman's markup.

The API is stricter than the OpenAI format: the system prompt is a top-level
field, roles must alternate starting with ``user``, temperature stops at 1.0,
and ``cache_control`` goes on content blocks, at most four per request.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import httpx

from bot.engine import ChatRequest, Message, ModelInfo, Usage
from bot.settings import Settings

from .base import ProviderError, ReasoningDelta, StreamPart, TextDelta
from .http import (
    CUT_OFF_THINKING,
    EMPTY_TEXT,
    JSON_HEADERS,
    Retry,
    StreamingProvider,
    StreamState,
    alternating,
    count,
    error_message,
    is_retryable,
    limits_from,
    provider_error,
)

ROUTE = "anthropic"
KEY_ENV = "ANTHROPIC_API_KEY"
API_VERSION = "2023-06-01"
MAX_TEMPERATURE = 1.0
MAX_BREAKPOINTS = 4
EPHEMERAL = {"type": "ephemeral"}

# In-stream error types and the HTTP status each stands for on the error table.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


@dataclass
class _ClaudeState(StreamState):
    """Usage arrives in pieces: counts in message_start, cumulative updates in message_delta."""

    counts: dict[str, Any] = field(default_factory=dict)


class AnthropicProvider(StreamingProvider):
    """A ChatProvider for every Claude model, sharing one connection pool."""

    route = ROUTE

    def __init__(self, base_url: str, api_key: str | None, *, prompt_cache: bool = True, **options: Any):
        super().__init__("anthropic", api_key, key_env=KEY_ENV, **options)
        self.prompt_cache = prompt_cache
        self._url = base_url.rstrip("/") + "/v1/messages"
        self._headers = {"anthropic-version": API_VERSION, "Accept": "text/event-stream"}
        if self._api_key:
            self._headers["x-api-key"] = self._api_key

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> AnthropicProvider:
        key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None
        return cls(
            settings.anthropic_base_url,
            key,
            prompt_cache=settings.anthropic_prompt_cache,
            **(limits_from(settings) | options),
        )

    # --- the request -----------------------------------------------------------

    def request_body(self, request: ChatRequest) -> dict[str, Any]:
        model_id = request.model.routes.get(ROUTE)
        if not model_id:
            raise ProviderError(f"{request.model.name} has no {ROUTE} model id in the catalog")
        body: dict[str, Any] = {
            "model": model_id,
            "max_tokens": request.max_tokens,
            "stream": True,
            "messages": [_wire_message(m) for m in alternating(request.messages)],
        }
        if request.system:
            body["system"] = [{"type": "text", "text": request.system}]
        if request.temperature is not None:
            body["temperature"] = min(max(request.temperature, 0.0), MAX_TEMPERATURE)
        if request.stop:
            body["stop_sequences"] = [s for s in request.stop if s.strip()]  # blank ones are refused
        if self.prompt_cache:
            mark_cache_breakpoints(body)
        return body

    def build(self, model: ModelInfo, payload: bytes) -> httpx.Request:
        headers = self._headers | JSON_HEADERS
        return self._client.build_request("POST", self._url, content=payload, headers=headers, timeout=self._timeout)

    # --- the stream ------------------------------------------------------------

    def new_state(self) -> StreamState:
        return _ClaudeState()

    def parse(self, payload: str, state: StreamState) -> list[StreamPart]:
        """One event's parts. The event name is repeated as ``type`` in its data, so the data suffices."""
        assert isinstance(state, _ClaudeState)
        event = self.load(payload, state)
        if not isinstance(event, dict):
            return []
        kind = event.get("type")
        if kind == "error":
            raise self._inband_error(event, state)
        if kind == "message_start":
            _merge_counts(state, (event.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            _merge_counts(state, event.get("usage"))
            state.finish_reason = (event.get("delta") or {}).get("stop_reason") or state.finish_reason
        elif kind == "message_stop":
            state.done = True
        elif kind in ("content_block_start", "content_block_delta"):
            return _block_parts(event, state)
        return []  # ping, content_block_stop and types added later

    def judge(self, state: StreamState) -> None:
        super().judge(state)
        if state.finish_reason == "refusal":
            raise ProviderError("Claude stopped the reply: Anthropic's safety filter refused it")
        if state.finish_reason == "max_tokens" and state.reasoning_seen and not state.text_seen:
            raise ProviderError(CUT_OFF_THINKING)

    # --- failures --------------------------------------------------------------

    def status_failure(self, status: int, body: Any, headers: httpx.Headers) -> Exception:
        """Anthropic's table, plus two quirks: no credit is a 400, and ``x-should-retry`` decides."""
        error = _claude_error(status, body)
        should = headers.get("x-should-retry", "").lower()
        retryable = should == "true" or (should != "false" and is_retryable(status))
        return Retry(error, headers.get("retry-after")) if retryable and not error.pause else error

    def _inband_error(self, event: dict[str, Any], state: StreamState) -> Exception:
        """An ``error`` event after the 200; the server closes the stream right after it."""
        kind = str((event.get("error") or {}).get("type") or "")
        status = _ERROR_STATUS.get(kind)
        error = _claude_error(status, event)
        return self.inband_failure(error, state, status is not None and is_retryable(status))


def _claude_error(status: int | None, body: Any) -> ProviderError:
    """No credit arrives as a plain 400 refusal; it must pause the room like a 402 does."""
    message = error_message(body)
    if "credit balance" in message.lower():
        return ProviderError(f"out of credit: {message}", status=status, pause=True)
    return provider_error(status, body, KEY_ENV)


# --- the wire format -----------------------------------------------------------


def _wire_message(message: Message) -> dict[str, Any]:
    """Content as blocks, so a cache breakpoint can be put on any of them; pictures first."""
    blocks: list[dict[str, Any]] = []
    for picture in message.pictures:
        data = base64.b64encode(picture.data).decode("ascii")
        blocks.append({"type": "image", "source": {"type": "base64", "media_type": picture.mime, "data": data}})
    if message.content.strip() or not blocks:
        blocks.append({"type": "text", "text": message.content if message.content.strip() else EMPTY_TEXT})
    return {"role": message.role, "content": blocks}


def mark_cache_breakpoints(body: dict[str, Any]) -> None:
    """Put ``cache_control`` where the next turns will find the same prefix.

    Three breakpoints, within the API's four: the system prompt (stable for the
    whole room unless a note or a newcomer changes it); the newest message (so
    this turn writes the cache the next turn reads); and the message that was
    newest on this AI's previous turn, two back (its own reply and the others'
    replies came after), so that turn's cache is read at its exact end rather
    than found by the API's limited look-back.
    """
    marks: list[dict[str, Any]] = []
    if body.get("system"):
        marks.append(body["system"][-1])
    messages = body["messages"]
    for index in (len(messages) - 3, len(messages) - 1):
        if index >= 0:
            marks.append(messages[index]["content"][-1])
    for block in marks[:MAX_BREAKPOINTS]:
        block["cache_control"] = dict(EPHEMERAL)


def _block_parts(event: dict[str, Any], state: StreamState) -> list[StreamPart]:
    """Text and thinking from a block start or delta; signatures, tool input and citations are skipped."""
    piece = event.get("content_block") or event.get("delta") or {}
    kind = piece.get("type")
    parts: list[StreamPart] = []
    if kind in ("text", "text_delta") and piece.get("text"):
        state.text_seen = True
        parts.append(TextDelta(piece["text"]))
    elif kind in ("thinking", "thinking_delta") and piece.get("thinking"):
        state.reasoning_seen = True
        parts.append(ReasoningDelta(piece["thinking"]))
    if parts:
        state.started = True
    return parts


def _merge_counts(state: _ClaudeState, usage: Any) -> None:
    """message_delta's counts are cumulative, so a later value replaces an earlier one.
    The usage is kept current, so a stream that dies after message_start is still billed."""
    if isinstance(usage, dict):
        state.counts.update({k: v for k, v in usage.items() if v is not None})
        state.usage = claude_usage(state.counts)


def claude_usage(counts: dict[str, Any]) -> Usage:
    """Usage in our terms. Anthropic's ``input_tokens`` already leaves out cached tokens."""
    details = counts.get("output_tokens_details")
    thinking = count(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    return Usage(
        input_tokens=count(counts.get("input_tokens")),
        cached_input_tokens=count(counts.get("cache_read_input_tokens")),
        cache_write_tokens=count(counts.get("cache_creation_input_tokens")),
        output_tokens=count(counts.get("output_tokens")),
        reasoning_tokens=thinking,
    )
