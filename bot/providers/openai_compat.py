"""Chat through any OpenAI-compatible endpoint: OpenRouter, OpenAI, DeepSeek, Ollama, LM Studio, vLLM.

They share a wire format but differ in quirks: where reasoning arrives
(``reasoning``, ``reasoning_content``, ``reasoning_details``), where usage
arrives (its own chunk, with or without a repeated choice, or on the finish
chunk), and how a failure mid-stream looks (an ``error`` data event, or a
bare JSON line). This adapter accepts all of them.
"""

from __future__ import annotations

import base64
import logging
import unicodedata
from dataclasses import dataclass
from typing import Any

import httpx

from bot.engine import ChatRequest, Message, ModelInfo, Usage
from bot.settings import Settings

from .base import ProviderError, ReasoningDelta, StreamPart, TextDelta
from .http import (
    CUT_OFF_THINKING,
    JSON_HEADERS,
    StreamingProvider,
    StreamState,
    count,
    is_retryable,
    limits_from,
    provider_error,
)

log = logging.getLogger(__name__)

OPENROUTER_KEY_ENV = "OPENROUTER_API_KEY"
NO_KEY_REASON = (
    "No API key is set. Put OPENROUTER_API_KEY=... in .env "
    "(get one at https://openrouter.ai/keys) and start again."
)


class OpenAICompatProvider(StreamingProvider):
    """A ChatProvider for one OpenAI-compatible service, shared by every model routed to it.

    ``token_field`` names the reply-length parameter: OpenAI's own API wants
    ``max_completion_tokens`` (its reasoning models reject ``max_tokens``),
    everyone else knows only ``max_tokens``.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str | None,
        *,
        route: str = "openrouter",
        extra_headers: dict[str, str] | None = None,
        token_field: str = "max_tokens",
        **options: Any,
    ):
        super().__init__(name, api_key, **options)
        self.route = route
        self.token_field = token_field
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = dict(extra_headers or {})
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"

    @classmethod
    def for_openrouter(cls, settings: Settings, **options: Any) -> OpenAICompatProvider:
        """The OpenRouter provider, with its app attribution headers and the settings' limits."""
        if settings.openrouter_api_key is None:
            raise ProviderError(NO_KEY_REASON, pause=True)
        headers = {"HTTP-Referer": _ascii(settings.app_url), "X-Title": _ascii(settings.app_title)}
        return cls(
            "openrouter",
            settings.openrouter_base_url,
            settings.openrouter_api_key.get_secret_value(),
            route="openrouter",
            extra_headers=headers,
            key_env=OPENROUTER_KEY_ENV,
            **(limits_from(settings) | options),
        )

    # --- the request -----------------------------------------------------------

    def request_body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body for ``request``, leaving out what this model or service would refuse."""
        model = request.model
        model_id = model.routes.get(self.route)
        if not model_id:
            raise ProviderError(f"{model.name} has no {self.route} model id in the catalog")
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [_wire_message(message) for message in request.messages]
        body: dict[str, Any] = {
            "model": model_id,
            "messages": messages,
            "stream": True,
            self.token_field: request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop and not model.reasoning:  # reasoning models often reject stop
            body["stop"] = list(request.stop)
        if self.route != "openrouter":  # OpenRouter always reports usage; its flag is deprecated
            body["stream_options"] = {"include_usage": True}
        return body

    def build(self, model: ModelInfo, payload: bytes) -> httpx.Request:
        headers = self._headers | JSON_HEADERS | {"Accept": "text/event-stream"}
        return self._client.build_request("POST", self._url, content=payload, headers=headers, timeout=self._timeout)

    # --- the stream ------------------------------------------------------------

    def parse(self, payload: str, state: StreamState) -> list[StreamPart]:
        """The parts in one event's data, noting finish, usage and progress in ``state``."""
        if payload.strip() == "[DONE]":
            state.done = True
            return []
        chunk = self.load(payload, state)
        if not isinstance(chunk, dict):
            return []
        if isinstance(chunk.get("usage"), dict):  # first: an error frame may carry the bill too
            state.usage = parse_usage(chunk["usage"])  # the last report wins: some repeat it
        if chunk.get("error") is not None:
            raise self._inband_error(chunk, state)
        if isinstance(chunk.get("provider"), str):
            assert isinstance(state, _OpenAIState)
            state.upstream = chunk["provider"]  # OpenRouter names the service that answered
        parts: list[StreamPart] = []
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                parts += _choice_parts(choice, state)
        if parts:
            state.started = True
        return parts

    def new_state(self) -> StreamState:
        return _OpenAIState()

    def judge(self, state: StreamState) -> None:
        """Besides a cut-off stream: a content filter's stop is a failed turn, even after some
        text (the words so far are a fragment, not a reply), and so is thinking cut off by max_tokens."""
        assert isinstance(state, _OpenAIState)
        super().judge(state)
        if state.finish_reason == "content_filter":
            who = state.upstream or self.name
            raise ProviderError(f"{who}'s content filter stopped the reply")
        if state.finish_reason == "length" and state.reasoning_seen and not state.text_seen:
            raise ProviderError(CUT_OFF_THINKING)

    def _inband_error(self, chunk: dict[str, Any], state: StreamState) -> Exception:
        """An ``error`` event inside a 200 stream; its code may be a number or a word."""
        code = chunk["error"].get("code") if isinstance(chunk["error"], dict) else None
        status = code if isinstance(code, int) else int(code) if str(code).isdigit() else None
        envelope = chunk if isinstance(chunk["error"], dict) else {"error": {"message": str(chunk["error"])}}
        error = provider_error(status, envelope, self.key_env)
        return self.inband_failure(error, state, status is not None and is_retryable(status))


@dataclass
class _OpenAIState(StreamState):
    upstream: str = ""  # the service behind OpenRouter ("Azure"), for plain-words failures


# --- wire helpers ----------------------------------------------------------------


def _wire_message(message: Message) -> dict[str, Any]:
    """A message; with pictures, content parts: text first, then base64 data URLs."""
    if not message.pictures:
        return {"role": message.role, "content": message.content}
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    for picture in message.pictures:
        url = f"data:{picture.mime};base64,{base64.b64encode(picture.data).decode('ascii')}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return {"role": message.role, "content": parts}


def _choice_parts(choice: dict[str, Any], state: StreamState) -> list[StreamPart]:
    delta = choice.get("delta") or choice.get("message") or {}
    parts: list[StreamPart] = []
    if thought := _reasoning(delta):
        state.reasoning_seen = True
        parts.append(ReasoningDelta(thought))
    content = delta.get("content")
    if isinstance(content, str) and content:
        state.text_seen = True
        parts.append(TextDelta(content))
    finish = choice.get("finish_reason")
    if finish == "error":
        raise ProviderError("the provider reported an error mid-reply")
    if finish:
        state.finish_reason = finish
    return parts


def _reasoning(delta: dict[str, Any]) -> str:
    """Thinking text, wherever this service puts it; OpenRouter sends the same text twice
    (``reasoning`` and ``reasoning_details``), so the details only count when alone."""
    for key in ("reasoning", "reasoning_content"):
        if isinstance(delta.get(key), str) and delta[key]:
            return delta[key]
    details = delta.get("reasoning_details")
    if not isinstance(details, list):
        return ""
    texts = (d.get("text") or d.get("summary") for d in details if isinstance(d, dict))
    return "".join(t for t in texts if isinstance(t, str))


def parse_usage(raw: dict[str, Any]) -> Usage:
    """Usage in our terms: ``prompt_tokens`` counts every prompt token, ours counts the
    ones read from or written to a cache apart, since each has its own price."""
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    if not isinstance(prompt_details, dict):
        prompt_details = {}
    if not isinstance(completion_details, dict):
        completion_details = {}
    cached = count(prompt_details.get("cached_tokens")) or count(raw.get("prompt_cache_hit_tokens"))
    written = count(prompt_details.get("cache_write_tokens"))
    cost = raw.get("cost")
    return Usage(
        input_tokens=max(0, count(raw.get("prompt_tokens")) - cached - written),
        cached_input_tokens=cached,
        cache_write_tokens=written,
        output_tokens=count(raw.get("completion_tokens")),
        reasoning_tokens=count(completion_details.get("reasoning_tokens")),
        cost_usd=float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None,
    )


def _ascii(value: str) -> str:
    """Header values must be ASCII; "Séance" becomes "Seance" rather than a crash."""
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    return folded.strip()
