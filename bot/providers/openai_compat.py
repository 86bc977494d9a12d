"""Chat through any OpenAI-compatible endpoint: OpenRouter, OpenAI, DeepSeek, Ollama, LM Studio, vLLM.

They share a wire format but differ in quirks: where reasoning arrives
(``reasoning``, ``reasoning_content``, ``reasoning_details``), where usage
arrives (its own chunk, with or without a repeated choice, or on the finish
chunk), and how a failure mid-stream looks (an ``error`` data event, or a
bare JSON line). This adapter accepts all of them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass
from typing import Any

import httpx

from bot.engine import ChatRequest, Message, Usage
from bot.settings import Settings

from .base import ProviderError, ReasoningDelta, StreamPart, TextDelta
from .http import decode_body, is_retryable, provider_error, retry_delay, sse_events

log = logging.getLogger(__name__)

OPENROUTER_KEY_ENV = "OPENROUTER_API_KEY"
NO_KEY_REASON = (
    "No API key is set. Put OPENROUTER_API_KEY=... in .env "
    "(get one at https://openrouter.ai/keys) and start again."
)

Sleep = Callable[[float], Awaitable[Any]]


class _Retry(Exception):
    """An attempt failed before anything was shown, in a way another attempt may not."""

    def __init__(self, error: ProviderError, retry_after: str | None = None):
        super().__init__(error.reason)
        self.error = error
        self.retry_after = retry_after


@dataclass
class _StreamState:
    """What one attempt has seen so far; decides retry versus failure and the ending."""

    started: bool = False  # text or reasoning was handed to the caller
    text_seen: bool = False
    reasoning_seen: bool = False
    finish_reason: str | None = None
    done: bool = False  # the [DONE] sentinel arrived
    usage: Usage | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None or self.done


class OpenAICompatProvider:
    """A ChatProvider for one OpenAI-compatible service, shared by every model routed to it."""

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str | None,
        *,
        route: str = "openrouter",
        extra_headers: dict[str, str] | None = None,
        key_env: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        total_timeout: float = 300.0,
        max_attempts: int = 3,
        backoff_base: float = 1.0,
        backoff_cap: float = 20.0,
        sleep: Sleep = asyncio.sleep,
        client: httpx.AsyncClient | None = None,
    ):
        self.name = name
        self.route = route
        self.key_env = key_env
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._api_key = api_key or None
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = dict(extra_headers or {})
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        # httpx's read timeout bounds each wait for the next chunk, i.e. the silence between chunks.
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=self._timeout)

    @classmethod
    def for_openrouter(cls, settings: Settings, **options: Any) -> OpenAICompatProvider:
        """The OpenRouter provider, with its app attribution headers and the settings' limits."""
        if settings.openrouter_api_key is None:
            raise ProviderError(NO_KEY_REASON, pause=True)
        headers = {"HTTP-Referer": _ascii(settings.app_url), "X-Title": _ascii(settings.app_title)}
        limits = {
            "connect_timeout": settings.connect_timeout,
            "read_timeout": settings.read_timeout,
            "total_timeout": settings.total_timeout,
            "max_attempts": settings.max_attempts,
        }
        return cls(
            "openrouter",
            settings.openrouter_base_url,
            settings.openrouter_api_key.get_secret_value(),
            route="openrouter",
            extra_headers=headers,
            key_env=OPENROUTER_KEY_ENV,
            **(limits | options),
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

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
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop and not model.reasoning:  # reasoning models often reject stop
            body["stop"] = list(request.stop)
        if self.route != "openrouter":  # OpenRouter always reports usage; its flag is deprecated
            body["stream_options"] = {"include_usage": True}
        return body

    # --- streaming -------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamPart]:
        """Yield the reply as it arrives; raise ProviderError on failure."""
        try:
            body = self.request_body(request)
            async with aclosing(self._with_retries(body)) as parts:
                async for part in parts:
                    yield part
        except ProviderError as error:
            raise self._scrubbed(error) from error.__cause__

    async def _with_retries(self, body: dict[str, Any]) -> AsyncIterator[StreamPart]:
        """Retry failures that happened before anything was shown, within the total deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout
        attempt = 1
        while True:
            try:
                async with aclosing(self._attempt(body, deadline)) as parts:
                    async for part in parts:
                        yield part
                return
            except _Retry as retry:
                if attempt >= self.max_attempts:
                    raise _after_attempts(retry.error, attempt) from retry.__cause__
                delay = retry_delay(attempt, retry.retry_after, self.backoff_base, self.backoff_cap)
                if loop.time() + delay >= deadline:
                    raise _after_attempts(retry.error, attempt) from retry.__cause__
                log.warning(
                    "%s: %s; retrying in %.1f s (attempt %d of %d)",
                    self.name, self._scrubbed(retry.error).reason, delay, attempt + 1, self.max_attempts,
                )
                await self._sleep(delay)
                attempt += 1

    async def _attempt(self, body: dict[str, Any], deadline: float) -> AsyncIterator[StreamPart]:
        """One request. The total deadline wraps each wait, never a ``yield``, so the
        caller's own awaits between parts can never be cancelled by it.

        The response is opened with ``send(stream=True)`` rather than through a
        context-manager generator (``client.stream``, ``aconnect_sse``): nested
        generators that await while closing fail with "aclose(): asynchronous
        generator is already running" when the event loop finalizes an
        abandoned stream."""
        state = _StreamState()
        try:
            async with AsyncExitStack() as stack:
                async with asyncio.timeout_at(deadline):
                    response = await self._client.send(self._build(body), stream=True)
                    stack.push_async_callback(response.aclose)
                    await self._check_status(response)
                payloads = await stack.enter_async_context(aclosing(_payloads(response)))
                while not state.done:
                    async with asyncio.timeout_at(deadline):
                        payload = await anext(payloads, None)
                    if payload is None:
                        break
                    for part in self._parse(payload, state):
                        yield part
        except httpx.TimeoutException as error:
            if not state.finished:
                reason = f"no answer within {self._seconds(error):g} seconds"
                raise self._failure(state, reason, mid_reply=reason) from error
        except httpx.TransportError as error:
            if not state.finished:
                raise self._failure(state, self._connection_trouble(error)) from error
        except TimeoutError as error:
            if not state.finished:  # the deadline has passed: no time left to retry
                raise ProviderError(f"no answer within {self.total_timeout:g} seconds") from error
        async for part in self._ending(state):
            yield part

    def _build(self, body: dict[str, Any]) -> httpx.Request:
        headers = self._headers | {"Accept": "text/event-stream"}
        return self._client.build_request("POST", self._url, json=body, headers=headers, timeout=self._timeout)

    async def _check_status(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        body = decode_body(await response.aread())
        error = provider_error(response.status_code, body, self.key_env)
        retry_after = response.headers.get("retry-after")
        if is_retryable(response.status_code, retry_after):
            raise _Retry(error, retry_after)
        raise error

    def _parse(self, payload: str, state: _StreamState) -> list[StreamPart]:
        """The parts in one event's data, noting finish, usage and progress in ``state``."""
        if payload.strip() == "[DONE]":
            state.done = True
            return []
        try:
            chunk = json.loads(payload)
        except ValueError:
            log.debug("%s: skipped an event that is not JSON: %.200r", self.name, payload)
            return []
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error") is not None:
            raise self._inband_error(chunk, state)
        if isinstance(chunk.get("usage"), dict):
            state.usage = parse_usage(chunk["usage"])  # the last report wins: some repeat it
        parts: list[StreamPart] = []
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                parts += _choice_parts(choice, state)
        if parts:
            state.started = True
        return parts

    async def _ending(self, state: _StreamState) -> AsyncIterator[StreamPart]:
        """Judge how the stream ended; hand over the usage even when the reply is unusable."""
        if not state.finished:
            raise self._failure(state, f"{self.name} closed the connection before replying")
        if state.usage is not None:
            yield state.usage
        if state.finish_reason == "length" and state.reasoning_seen and not state.text_seen:
            raise ProviderError(
                "the reply was cut off while the model was still thinking: "
                "its whole max_tokens budget went on reasoning"
            )

    # --- failures --------------------------------------------------------------

    def _failure(
        self, state: _StreamState, reason: str, mid_reply: str = "the connection dropped mid-reply"
    ) -> Exception:
        """Retry a failure nobody saw; never retry a half-shown message."""
        if not state.started:
            return _Retry(ProviderError(reason))
        return ProviderError(mid_reply)

    def _connection_trouble(self, error: httpx.TransportError) -> str:
        if isinstance(error, httpx.ConnectError):
            return f"could not connect to {self.name}"
        return f"the connection to {self.name} failed ({type(error).__name__})"

    def _inband_error(self, chunk: dict[str, Any], state: _StreamState) -> Exception:
        """An ``error`` event inside a 200 stream; its code may be a number or a word."""
        code = chunk["error"].get("code") if isinstance(chunk["error"], dict) else None
        status = code if isinstance(code, int) else int(code) if str(code).isdigit() else None
        envelope = chunk if isinstance(chunk["error"], dict) else {"error": {"message": str(chunk["error"])}}
        error = provider_error(status, envelope, self.key_env)
        if not state.started and status is not None and is_retryable(status):
            return _Retry(error)
        return error

    def _seconds(self, error: httpx.TimeoutException) -> float:
        return self.connect_timeout if isinstance(error, httpx.ConnectTimeout) else self.read_timeout

    def _scrubbed(self, error: ProviderError) -> ProviderError:
        """The same error with the API key blanked, in case a server echoed it back."""
        if not self._api_key or self._api_key not in error.reason:
            return error
        reason = error.reason.replace(self._api_key, "[the key]")
        return ProviderError(reason, status=error.status, pause=error.pause)


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


async def _payloads(response: httpx.Response) -> AsyncIterator[str]:
    """Event data from a stream, or the whole body from a server that ignored ``stream``."""
    if "text/event-stream" in response.headers.get("content-type", ""):
        async for event in sse_events(response):
            yield event.data
    else:
        yield (await response.aread()).decode("utf-8", "replace")


def _choice_parts(choice: dict[str, Any], state: _StreamState) -> list[StreamPart]:
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
    """Usage in our terms; cached prompt tokens are counted apart from fresh ones."""
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    if not isinstance(prompt_details, dict):
        prompt_details = {}
    if not isinstance(completion_details, dict):
        completion_details = {}
    cached = _count(prompt_details.get("cached_tokens")) or _count(raw.get("prompt_cache_hit_tokens"))
    cost = raw.get("cost")
    return Usage(
        input_tokens=max(0, _count(raw.get("prompt_tokens")) - cached),
        cached_input_tokens=cached,
        cache_write_tokens=_count(prompt_details.get("cache_write_tokens")),
        output_tokens=_count(raw.get("completion_tokens")),
        reasoning_tokens=_count(completion_details.get("reasoning_tokens")),
        cost_usd=float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None,
    )


def _count(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _after_attempts(error: ProviderError, attempts: int) -> ProviderError:
    if attempts <= 1:
        return error
    return ProviderError(f"{error.reason} (tried {attempts} times)", status=error.status, pause=error.pause)


def _ascii(value: str) -> str:
    """Header values must be ASCII; "Séance" becomes "Seance" rather than a crash."""
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    return folded.strip()
