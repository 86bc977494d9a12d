"""Gemini through Google's own Gemini API (``streamGenerateContent?alt=sse``).

Its format differs from the OpenAI one in ways that bite: roles are ``user``
and ``model``, the system prompt is ``systemInstruction``, thoughts arrive as
parts marked ``thought``, usage is repeated (cumulative) on every chunk, the
stream just ends (no terminator), and a safety block is an HTTP 200 whose chunk
says so. A bad key is a 400, not a 401. The key travels in a header, never in
the URL, so it cannot end up in a log line or an error message.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

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
    error_object,
    is_retryable,
    limits_from,
    provider_error,
)

ROUTE = "gemini"
KEY_ENV = "GEMINI_API_KEY"
MAX_STOP_SEQUENCES = 5
FINE_ENDINGS = frozenset({"STOP", "MAX_TOKENS", "FINISH_REASON_UNSPECIFIED"})

# Why Gemini refused, in words a moderator understands; new values fall back to the raw name.
BLOCK_WORDS = {
    "SAFETY": "its safety filters",
    "PROHIBITED_CONTENT": "prohibited content",
    "BLOCKLIST": "a blocked term",
    "SPII": "sensitive personal information",
    "RECITATION": "recitation of existing text",
    "IMAGE_SAFETY": "its image safety filters",
    "LANGUAGE": "an unsupported language",
    "OTHER": "an unspecified reason",
}


class GeminiProvider(StreamingProvider):
    """A ChatProvider for every Gemini model, sharing one connection pool."""

    route = ROUTE

    def __init__(self, base_url: str, api_key: str | None, **options: Any):
        super().__init__("gemini", api_key, key_env=KEY_ENV, **options)
        self._base = base_url.rstrip("/")
        self._headers = {"Accept": "text/event-stream"}
        if self._api_key:
            self._headers["x-goog-api-key"] = self._api_key

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> GeminiProvider:
        key = settings.gemini_api_key.get_secret_value() if settings.gemini_api_key else None
        return cls(settings.gemini_base_url, key, **(limits_from(settings) | options))

    # --- the request -----------------------------------------------------------

    def request_body(self, request: ChatRequest) -> dict[str, Any]:
        if not request.model.routes.get(ROUTE):
            raise ProviderError(f"{request.model.name} has no {ROUTE} model id in the catalog")
        config: dict[str, Any] = {"maxOutputTokens": request.max_tokens}
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.stop:
            config["stopSequences"] = list(request.stop[:MAX_STOP_SEQUENCES])
        if request.model.reasoning:  # otherwise thinking models think but send no thought parts
            config["thinkingConfig"] = {"includeThoughts": True}
        body: dict[str, Any] = {"contents": _contents(request.messages), "generationConfig": config}
        if request.system:
            body["systemInstruction"] = {"parts": [{"text": request.system}]}
        return body

    def build(self, model: ModelInfo, payload: bytes) -> httpx.Request:
        model_id = quote(model.routes[ROUTE], safe="-._")
        url = f"{self._base}/models/{model_id}:streamGenerateContent"
        headers = self._headers | JSON_HEADERS
        return self._client.build_request(
            "POST", url, params={"alt": "sse"}, content=payload, headers=headers, timeout=self._timeout
        )

    # --- the stream ------------------------------------------------------------

    def parse(self, payload: str, state: StreamState) -> list[StreamPart]:
        """One chunk's parts; a body that is a JSON array (no ``alt=sse``) is read chunk by chunk."""
        chunks = self.load(payload, state)
        parts: list[StreamPart] = []
        for chunk in chunks if isinstance(chunks, list) else [chunks]:
            if isinstance(chunk, dict):
                parts += self._chunk_parts(chunk, state)
        return parts

    def _chunk_parts(self, chunk: dict[str, Any], state: StreamState) -> list[StreamPart]:
        if error_object(chunk):
            raise self._inband_error(chunk, state)
        if isinstance(chunk.get("usageMetadata"), dict) and chunk["usageMetadata"]:
            state.usage = gemini_usage(chunk["usageMetadata"])  # cumulative: the last one wins
        block = (chunk.get("promptFeedback") or {}).get("blockReason")
        if block:
            raise ProviderError(f"Gemini refused the conversation because of {_words(block)}")
        candidates = chunk.get("candidates") or []
        candidate = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
        parts = _candidate_parts(candidate, state)
        if candidate.get("finishReason"):
            state.finish_reason = str(candidate["finishReason"])
        if parts:
            state.started = True
        return parts

    def judge(self, state: StreamState) -> None:
        super().judge(state)
        reason = state.finish_reason or ""
        if reason not in FINE_ENDINGS:
            raise ProviderError(f"Gemini stopped the reply because of {_words(reason)}")
        if reason == "MAX_TOKENS" and state.reasoning_seen and not state.text_seen:
            raise ProviderError(CUT_OFF_THINKING)

    # --- failures --------------------------------------------------------------

    def status_failure(self, status: int, body: Any, headers: httpx.Headers) -> Exception:
        """A bad key is Gemini's 400 API_KEY_INVALID; a 429 says how long to wait in its body,
        unless it is a daily quota, which no short wait brings back."""
        error = _gemini_error(status, body)
        retry_after = headers.get("retry-after") or _retry_delay(body)
        return Retry(error, retry_after) if is_retryable(status) and not error.pause else error

    def _inband_error(self, chunk: dict[str, Any], state: StreamState) -> Exception:
        code = error_object(chunk).get("code")
        status = code if isinstance(code, int) else None
        return self.inband_failure(_gemini_error(status, chunk), state, status is not None and is_retryable(status))


def _gemini_error(status: int | None, body: Any) -> ProviderError:
    if status == 400 and _reason(body) == "API_KEY_INVALID":
        status = 401  # word and pause it as the rejected key it is
    return provider_error(status, body, KEY_ENV)


def _details(body: Any) -> list[dict[str, Any]]:
    details = error_object(body).get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _reason(body: Any) -> str:
    return next((str(d["reason"]) for d in _details(body) if d.get("reason")), "")


def _retry_delay(body: Any) -> str | None:
    """``RetryInfo.retryDelay`` ("26s") as Retry-After seconds ("26")."""
    for detail in _details(body):
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            return delay[:-1]
    return None


def _words(reason: str) -> str:
    return BLOCK_WORDS.get(reason, f"an unexpected stop ({reason or 'no reason given'})")


# --- the wire format -----------------------------------------------------------


def _contents(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """``user``/``model`` turns, alternating and starting with the user."""
    return [
        {"role": "model" if m.role == "assistant" else "user", "parts": _parts(m)} for m in alternating(messages)
    ]


def _parts(message: Message) -> list[dict[str, Any]]:
    """Text, then pictures; an empty text part is refused, so an empty message says "…"."""
    parts: list[dict[str, Any]] = []
    if message.content.strip() or not message.pictures:
        parts.append({"text": message.content if message.content.strip() else EMPTY_TEXT})
    for picture in message.pictures:
        data = base64.b64encode(picture.data).decode("ascii")
        parts.append({"inlineData": {"mimeType": picture.mime, "data": data}})
    return parts


def _candidate_parts(candidate: dict[str, Any], state: StreamState) -> list[StreamPart]:
    """Text and thoughts; thought signatures, inline data and calls are not ours to show."""
    parts: list[StreamPart] = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        text = part.get("text") if isinstance(part, dict) else None
        if not isinstance(text, str) or not text:
            continue
        if part.get("thought") is True:
            state.reasoning_seen = True
            parts.append(ReasoningDelta(text))
        else:
            state.text_seen = True
            parts.append(TextDelta(text))
    return parts


def gemini_usage(meta: dict[str, Any]) -> Usage:
    """Usage in our terms: ``promptTokenCount`` includes the cached tokens, thoughts are billed output."""
    cached = count(meta.get("cachedContentTokenCount"))
    thoughts = count(meta.get("thoughtsTokenCount"))
    return Usage(
        input_tokens=max(0, count(meta.get("promptTokenCount")) - cached),
        cached_input_tokens=cached,
        output_tokens=count(meta.get("candidatesTokenCount")) + thoughts,
        reasoning_tokens=thoughts,
    )
