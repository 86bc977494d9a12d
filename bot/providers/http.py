"""What every HTTP provider adapter shares: retry timing, error wording, SSE reading,
and the streaming loop with its retries and deadlines.

Kept free of any one provider's request format so the OpenAI-compatible,
Anthropic and Gemini adapters can all lean on it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from bot.engine import ChatRequest, Message, ModelInfo, Usage
from bot.settings import Settings

from .base import ProviderError, StreamPart
from .transport import AiohttpTransport, text_of

log = logging.getLogger(__name__)

CUT_OFF_THINKING = (
    "the reply was cut off while the model was still thinking: its whole max_tokens budget went on reasoning"
)
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})
RETRY_AFTER_CAP = 60.0
MESSAGE_LIMIT = 300
TAIL_SECONDS = 1.0  # how long a finished reply's body may take to end (see _read_to_the_end)

_NEWLINE = re.compile(r"\r\n|\r|\n")


# --- retries -------------------------------------------------------------------


def is_retryable(status: int, retry_after: str | None = None) -> bool:
    """Whether waiting and asking again can help.

    A 402 normally means no credit, which waiting does not fix; OpenRouter
    only sends it with Retry-After when an in-flight spending cap is hit.
    """
    return status in RETRYABLE_STATUSES or (status == 402 and retry_after is not None)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def retry_delay(
    attempt: int,
    retry_after_header: str | None = None,
    base: float = 1.0,
    cap: float = 20.0,
    retry_after_cap: float = RETRY_AFTER_CAP,
) -> float:
    """Seconds to sleep after failed attempt number ``attempt`` (1-based).

    The server's Retry-After wins when given (capped, so a huge value cannot
    freeze a room); otherwise exponential backoff with full jitter, which
    keeps several rooms that failed together from retrying in lockstep.
    """
    told = parse_retry_after(retry_after_header)
    if told is not None:
        return min(told, retry_after_cap)
    return random.uniform(0.0, min(cap, base * 2 ** (attempt - 1)))


# --- error wording -------------------------------------------------------------


def plural(count: float, word: str) -> str:
    """"1 second", "2 seconds", "0.5 seconds": every count a moderator reads goes through here."""
    return f"{count:g} {word}" if count == 1 else f"{count:g} {word}s"


def error_object(body: Any) -> dict[str, Any]:
    """The ``error`` object of an OpenAI/OpenRouter/Anthropic/Gemini error body, or {}."""
    if isinstance(body, list) and body:  # Gemini sometimes wraps the envelope in a list
        body = body[0]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return {}


def error_message(body: Any) -> str:
    """The most useful sentence in an error body.

    OpenRouter often says only "Provider returned error" and puts the
    upstream provider's own words in ``metadata.raw``; those are what help.
    """
    if isinstance(body, (str, bytes)):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        text = " ".join(text.split())
        return "" if text.startswith("<") else _shorten(text)  # an HTML error page says nothing useful
    error = error_object(body)
    message = str(error.get("message") or "").strip()
    metadata = error.get("metadata") if isinstance(error.get("metadata"), dict) else {}
    raw = _raw_message(metadata.get("raw"))
    if raw and raw not in message:
        provider = metadata.get("provider_name")
        raw = f"{provider}: {raw}" if provider else raw
        message = raw if message in ("", "Provider returned error") else f"{message} ({raw})"
    return _shorten(message)


def _raw_message(raw: Any) -> str:
    """OpenRouter's ``metadata.raw``: upstream text, sometimes an upstream JSON error body."""
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return " ".join(raw.split())
        return error_message(parsed) if error_object(parsed) else " ".join(raw.split())
    if isinstance(raw, dict):
        return error_message(raw)
    return ""


def is_moderation(body: Any) -> bool:
    """OpenRouter's 403 for flagged input, which is not a key problem."""
    metadata = error_object(body).get("metadata")
    return isinstance(metadata, dict) and ("reasons" in metadata or "flagged_input" in metadata)


def quota_used_up(status: int | None, body: Any) -> str:
    """Which quota a 429 says is used up for good ("daily", "account"), or "" for a passing rate limit.

    Each service says it its own way (reference §1.5, §3.4): OpenRouter's free
    models name ``free-models-per-day`` in the message; OpenAI's
    ``insufficient_quota`` is the plan or billing limit; Gemini lists the
    violated quotas, and one with ``PerDay`` in its id will not come back
    before tomorrow (its per-minute quotas do, after ``retryDelay``), nor will
    one whose limit is 0 (a model the free tier does not include).
    """
    if status != 429:
        return ""
    error = error_object(body)
    if "free-models-per-day" in error_message(body):
        return "daily"
    if "insufficient_quota" in (str(error.get("code")), str(error.get("type"))):
        return "account"
    for detail in error.get("details") or []:
        for violation in (detail.get("violations") or []) if isinstance(detail, dict) else []:
            if not isinstance(violation, dict):
                continue
            if "PerDay" in str(violation.get("quotaId", "")) or "per_day" in str(violation.get("quotaMetric", "")):
                return "daily"
            if str(violation.get("quotaValue", "")) == "0":
                return "account"
    return ""


def error_reason(status: int | None, body: Any, key_env_name: str | None = None) -> str:
    """A sentence a moderator understands, for an HTTP (or in-stream) error."""
    message = error_message(body)
    said = f": {message}" if message else ""
    check = f"; check {key_env_name}" if key_env_name else ""
    if status in (401, 403) and not is_moderation(body):
        return f"the API key was rejected ({message or f'HTTP {status}'}){check}"
    if status == 403:
        return f"the provider's moderation refused the request{said}"
    if status == 402:
        return f"out of credit{said or ': add credit with the provider'}"
    if status == 404:
        return f"the provider does not know this model{said}"
    quota = quota_used_up(status, body)
    if quota == "daily":
        return f"the daily quota is used up{said}; resume the room once it renews"
    if quota:
        whose = f"the quota of the account behind {key_env_name}" if key_env_name else "the account's quota"
        return f"{whose} is used up{said}"
    if status in (400, 422):
        return f"the provider refused the request{said}"
    if status == 429:
        return f"rate limited{said}"
    if status is not None and status >= 500:
        return f"the provider is having trouble (HTTP {status}){said}"
    if status == 408:
        return f"the provider timed out (HTTP 408){said}"
    if status is None:
        return f"the provider reported an error{said}"
    return f"the provider answered HTTP {status}{said}"


def provider_error(status: int | None, body: Any, key_env_name: str | None = None) -> ProviderError:
    """The ProviderError for an error status; pause when only a person (or tomorrow) can fix it:
    a rejected key, no credit, a model the service does not know, a used-up quota."""
    quota = quota_used_up(status, body)
    pause = status in (402, 404) or (status in (401, 403) and not is_moderation(body)) or bool(quota)
    return ProviderError(error_reason(status, body, key_env_name), status=status, pause=pause, public=QUOTA.get(quota))


# What a channel is told of a used-up quota (ProviderError.public); the rest is told apart by status.
QUOTA = {
    "daily": "the provider's daily quota is used up; a moderator can resume the room once it renews",
    "account": "the host's quota with the provider is used up",
}


def decode_body(raw: bytes) -> Any:
    """An error body as JSON when it is JSON, else as text."""
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _shorten(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


# --- server-sent events --------------------------------------------------------


class EventStream:
    """An event-stream parser fed text as it arrives; gives each event's data.

    A small parser of our own rather than httpx-sse's: Ollama reports a mid-stream
    failure as a bare ``{"error": ...}`` line with no ``data:`` field, which a
    spec-following SSE parser silently drops, turning a clear error into a mystery,
    so a bare JSON line is an event of its own. Otherwise it follows the SSE rules:
    CR, LF or CRLF line ends (not the Unicode separators str.splitlines knows), ``:``
    comments ignored, ``data:`` with or without a space, an event ends at a blank
    line. It is plain code, not a generator per layer: at a thousand streaming rooms
    the layers' per-read cost was a sixth of the process.
    """

    __slots__ = ("_buffer", "_data")

    def __init__(self) -> None:
        self._buffer = ""
        self._data: list[str] = []

    def feed(self, text: str) -> list[str]:
        buffer = self._buffer + text
        # A trailing CR may be the first half of a CRLF split across reads.
        cut = len(buffer) - 1 if buffer.endswith("\r") else len(buffer)
        *lines, rest = _NEWLINE.split(buffer[:cut])
        self._buffer = rest + buffer[cut:]
        return self._events(lines)

    def end(self) -> list[str]:
        """What is left when the body ends: a last event the server did not close with a blank line."""
        last, self._buffer = self._buffer.rstrip("\r"), ""
        payloads = self._events([last] if last else [])
        if self._data:
            payloads.append("\n".join(self._data))
            self._data = []
        return payloads

    def _events(self, lines: list[str]) -> list[str]:
        payloads = []
        for line in lines:
            if not line:
                if self._data:
                    payloads.append("\n".join(self._data))
                    self._data = []
            elif line[0] == "{":
                payloads.append(line)
            elif line[0] != ":":
                field, _, value = line.partition(":")
                if field == "data":
                    self._data.append(value[1:] if value.startswith(" ") else value)
        return payloads


async def event_payloads(response: httpx.Response) -> AsyncIterator[str]:
    """Event data from a stream, or the whole body from a server that did not stream."""
    if "text/event-stream" not in response.headers.get("content-type", ""):
        yield (await response.aread()).decode("utf-8", "replace")
        return
    events = EventStream()
    async for text in text_of(response):
        for payload in events.feed(text):
            yield payload
    for payload in events.end():
        yield payload


# --- messages ------------------------------------------------------------------

OPENING_LINE = "[Séance]: The conversation so far:"
EMPTY_TEXT = "…"  # Anthropic and Gemini refuse an empty text block


def alternating(messages: tuple[Message, ...]) -> list[Message]:
    """Messages as the strict APIs (Anthropic, Gemini) insist: same-role neighbours
    merged, the first from the user. The engine already alternates; this makes
    sure of it, since a slip there would be a 400 on every turn."""
    merged: list[Message] = []
    for message in messages:
        if merged and merged[-1].role == message.role:
            last = merged[-1]
            text = "\n\n".join(t for t in (last.content, message.content) if t)
            merged[-1] = Message(last.role, text, last.pictures + message.pictures)
        else:
            merged.append(message)
    if not merged or merged[0].role != "user":
        merged.insert(0, Message("user", OPENING_LINE))
    return merged


# --- the shared streaming adapter ----------------------------------------------

Sleep = Callable[[float], Awaitable[Any]]


class Retry(Exception):
    """An attempt failed before anything was shown, in a way another attempt may not."""

    def __init__(self, error: ProviderError, retry_after: str | None = None):
        super().__init__(error.reason)
        self.error = error
        self.retry_after = retry_after


@dataclass
class StreamState:
    """What one attempt has seen so far; decides retry versus failure and the ending."""

    started: bool = False  # text or reasoning was handed to the caller
    text_seen: bool = False
    reasoning_seen: bool = False
    finish_reason: str | None = None
    done: bool = False  # the service said the stream is over ([DONE], message_stop)
    usage: Usage | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None or self.done


def limits_from(settings: Settings) -> dict[str, Any]:
    """The timeout and retry options every adapter takes, from the settings."""
    return {
        "connect_timeout": settings.connect_timeout,
        "read_timeout": settings.read_timeout,
        "total_timeout": settings.total_timeout,
        "max_attempts": settings.max_attempts,
        "max_connections": settings.provider_connections,
    }


def pool_timeout(connect: float, read: float) -> httpx.Timeout:
    """httpx's read timeout bounds each wait for the next chunk, i.e. the model's silence.

    Waiting for a free connection is not the model's silence: with many rooms on
    one service, requests queue for the pool, and a pool timeout equal to the read
    timeout failed them as "did not answer". It has no limit of its own here; the
    turn's total deadline (``asyncio.timeout_at`` in ``_attempt``) bounds it.
    """
    return httpx.Timeout(read, connect=connect, pool=None)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The one TLS context of every HTTP client in the process (httpx's default settings).
    Each client would otherwise build its own, loading the whole CA bundle: tens of
    milliseconds of CPU on the event loop, for every picture's client."""
    return httpx.create_ssl_context()


_SPENT = httpx.ByteStream(b"")  # what a closed response's stream becomes (see _let_go)


class StreamingProvider:
    """One streaming HTTP endpoint: retries before the first output, deadlines, key scrubbing.

    The wire format is the subclass's: ``request_body`` and ``build`` make the
    request (the body encoded once, ``payload``), ``parse`` turns one event's data into parts, ``ending`` judges how
    the stream ended. Everything about failing well is shared here, so the
    OpenAI-compatible, Anthropic and Gemini adapters fail the same way.
    """

    route = ""

    def __init__(
        self,
        name: str,
        api_key: str | None,
        *,
        key_env: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        total_timeout: float = 300.0,
        max_attempts: int = 3,
        max_connections: int = 1000,
        backoff_base: float = 1.0,
        backoff_cap: float = 20.0,
        sleep: Sleep = asyncio.sleep,
        client: httpx.AsyncClient | None = None,
    ):
        self.name = name
        self.key_env = key_env
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._api_key = api_key or None
        self._timeout = pool_timeout(connect_timeout, read_timeout)  # requests carry it, a shared client too
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=self._timeout, transport=AiohttpTransport(connections=max_connections, tls=tls_context())
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # --- what a wire format provides ---------------------------------------------

    def request_body(self, request: ChatRequest) -> dict[str, Any]:
        raise NotImplementedError

    def build(self, model: ModelInfo, payload: bytes) -> httpx.Request:
        """The HTTP request of one attempt for ``model``, with ``payload`` (from ``payload``) as its body."""
        raise NotImplementedError

    def payload(self, request: ChatRequest) -> bytes:
        """The JSON body as sent, encoded once for every attempt. The body's dict is not kept
        while the reply streams: with pictures it holds each one's base64 text, a copy as large
        as the encoded body's, and a thousand rooms streaming at once each held both."""
        return json_bytes(self.request_body(request))

    def new_state(self) -> StreamState:
        return StreamState()

    def parse(self, payload: str, state: StreamState) -> list[StreamPart]:
        raise NotImplementedError

    def judge(self, state: StreamState) -> None:
        """Raise if the way the stream ended makes the reply unusable (cut short, refused, filtered).

        Subclasses add their service's endings; the usage seen so far travels
        on the error (see ``_attempt``), so a refused turn is still counted.
        """
        if not state.finished:
            raise self.failure(state, f"{self.name} closed the connection before replying")

    def load(self, payload: str, state: StreamState) -> Any:
        """One event's data as JSON. Data that is not JSON is a broken stream, never skipped:
        skipping it would silently drop the words it carried from the reply."""
        try:
            return json.loads(payload)
        except ValueError:
            log.warning("%s: an event that is not JSON: %.200r", self.name, payload)
            raise self.failure(
                state, f"{self.name} sent a garbled chunk", mid_reply=f"{self.name} sent a garbled chunk mid-reply"
            ) from None

    def status_failure(self, status: int, body: Any, headers: httpx.Headers) -> Exception:
        """The exception for an HTTP error status: a Retry when asking again may help."""
        error = provider_error(status, body, self.key_env)
        retry_after = headers.get("retry-after")
        if is_retryable(status, retry_after) and not error.pause:
            return Retry(error, retry_after)
        return error

    # --- streaming -----------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamPart]:
        """Yield the reply as it arrives; raise ProviderError on failure."""
        try:
            # Neither the request nor its encoded body is kept here while the reply streams:
            # the body is all an attempt needs, and ``_with_retries`` lets go of it when it can.
            attempts = self._with_retries(request.model, self.payload(request))
            del request
            async with aclosing(attempts) as parts:
                async for part in parts:
                    yield part
        except ProviderError as error:
            raise self.scrubbed(error) from error.__cause__

    async def _with_retries(self, model: ModelInfo, payload: bytes) -> AsyncIterator[StreamPart]:
        """Retry failures that happened before anything was shown, within the total deadline.

        The encoded body is let go of with the first part an attempt hands on: only a retry sends
        it again, and none follows shown words (``failure``), while a reply may stream for a
        minute; a thousand rooms streaming at once each held their 0.25-0.6 MiB to the end.
        Every part an attempt yields is shown text or thinking (``parse`` marks the state
        started with them) or the usage of a reply that is over.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout
        attempt = 1
        while True:
            try:
                async with aclosing(self._attempt(self.build(model, payload), deadline)) as parts:
                    async for part in parts:
                        payload = b""  # no attempt follows this one now
                        yield part
                return
            except Retry as retry:
                if retry.error.usage is not None:  # a failed attempt that was billed all the same
                    usage, retry.error.usage = retry.error.usage, None
                    yield usage
                if attempt >= self.max_attempts:
                    raise after_attempts(retry.error, attempt) from retry.__cause__
                delay = retry_delay(attempt, retry.retry_after, self.backoff_base, self.backoff_cap)
                if loop.time() + delay >= deadline:
                    raise after_attempts(retry.error, attempt) from retry.__cause__
                log.warning(
                    "%s: %s; retrying in %.1f s (attempt %d of %d)",
                    self.name, self.scrubbed(retry.error).reason, delay, attempt + 1, self.max_attempts,
                )
                await self._sleep(delay)
                attempt += 1

    async def _attempt(self, http_request: httpx.Request, deadline: float) -> AsyncIterator[StreamPart]:
        """One request. The total deadline wraps each wait, never a ``yield``, so the
        caller's own awaits between parts can never be cancelled by it.

        The response is opened with ``send(stream=True)`` rather than through a
        context-manager generator (``client.stream``, ``aconnect_sse``): nested
        generators that await while closing fail with "aclose(): asynchronous
        generator is already running" when the event loop finalizes an
        abandoned stream."""
        state = self.new_state()
        try:
            try:
                async with AsyncExitStack() as stack:
                    async with asyncio.timeout_at(deadline):
                        response = await self._client.send(http_request, stream=True)
                        _sent(http_request)
                        stack.callback(_let_go, response)  # last, once closed
                        stack.push_async_callback(response.aclose)
                        await self._check_status(response)
                    payloads = await stack.enter_async_context(aclosing(event_payloads(response)))
                    while not state.done:
                        async with asyncio.timeout_at(deadline):
                            payload = await anext(payloads, None)
                        if payload is None:
                            break
                        if not payload.strip():
                            continue  # an empty data line says nothing (a keep-alive)
                        for part in self.parse(payload, state):
                            yield part
                    if state.done:
                        await _read_to_the_end(payloads, deadline)
            except httpx.TimeoutException as error:
                if not state.finished:
                    raise self._stalled(state, error) from error
            except httpx.TransportError as error:
                if not state.finished:
                    raise self.failure(state, self._connection_trouble(error)) from error
            except TimeoutError as error:
                if not state.finished:  # the deadline has passed: no time left to retry
                    reason = f"the reply was not finished within {plural(self.total_timeout, 'second')}"
                    raise ProviderError(reason) from error
            self.judge(state)
        except Retry as retry:
            _bill(retry.error, state)
            raise
        except ProviderError as error:
            _bill(error, state)
            raise
        if state.usage is not None:  # handed over only with a usable reply; else it rode on the error
            yield state.usage

    async def _check_status(self, response: httpx.Response) -> None:
        if not response.is_success:
            body = decode_body(await response.aread())
            raise self.status_failure(response.status_code, body, response.headers)

    # --- failures --------------------------------------------------------------------

    def failure(
        self, state: StreamState, reason: str, mid_reply: str = "the connection dropped mid-reply"
    ) -> Exception:
        """Retry a failure nobody saw; never retry a half-shown message."""
        if not state.started:
            return Retry(ProviderError(reason))
        return ProviderError(mid_reply)

    def inband_failure(self, error: ProviderError, state: StreamState, retryable: bool) -> Exception:
        """An error event inside a 200 stream: retried only when nothing was shown yet
        and waiting can help (not a used-up quota)."""
        if retryable and not state.started and not error.pause:
            return Retry(error)
        return error

    def _connection_trouble(self, error: httpx.TransportError) -> str:
        if isinstance(error, httpx.ConnectError):
            return f"could not connect to {self.name}"
        return f"the connection to {self.name} failed ({type(error).__name__})"

    def _stalled(self, state: StreamState, error: httpx.TimeoutException) -> Exception:
        """Say which silence it was: no connection, no first word, or a reply that stopped."""
        if isinstance(error, httpx.ConnectTimeout):
            return self.failure(state, f"could not connect to {self.name} within {plural(self.connect_timeout, 'second')}")
        silence = plural(self.read_timeout, "second")
        return self.failure(
            state,
            f"{self.name} did not answer for {silence}",
            mid_reply=f"{self.name} stopped answering for {silence} mid-reply",
        )

    def scrubbed(self, error: ProviderError) -> ProviderError:
        """The same error with the API key blanked, in case a server echoed it back."""
        if not self._api_key or self._api_key not in error.reason:
            return error
        return error.but(error.reason.replace(self._api_key, "[the key]"))


def _let_go(response: httpx.Response) -> None:
    """Break the reference cycle between an httpx response and its stream.

    httpx binds each streamed response's body to the response, so a finished reply (with
    its request, headers and aiohttp response) stays until the garbage collector finds
    the cycle; at a thousand rooms those cycles were most of what it found. Unbound,
    a closed response goes as soon as it is unused.
    """
    response.stream = _SPENT


def _sent(request: httpx.Request) -> None:
    """Empty a sent request of its body. The response keeps its request until the reply ends,
    and a retry builds a request of its own (``_with_retries``); the transport's own
    reference goes once the body is written."""
    request.stream = _SPENT
    request._content = b""


async def _read_to_the_end(payloads: AsyncIterator[str], deadline: float) -> None:
    """After a reply's last event, read on to the body's end, which comes with it or just after.

    A body left unread makes aiohttp close the connection (the next turn connects again), and
    leaves every generator between here and the socket unfinished, for the event loop to
    finalise one by one (a task and a wake-up each: a dozen per reply at a thousand rooms).
    Whatever the server does after its last event no longer matters to the reply, so this
    gives up quietly after a moment or on any error (the connection is then closed).
    """
    try:
        async with asyncio.timeout_at(min(deadline, asyncio.get_running_loop().time() + TAIL_SECONDS)):
            async for _ in payloads:
                pass
    except (TimeoutError, httpx.HTTPError):
        pass


def _bill(error: ProviderError, state: StreamState) -> None:
    """Put the usage this attempt reported on its failure, so the turn is still counted."""
    if state.usage is not None and error.usage is None:
        error.usage, state.usage = state.usage, None


def after_attempts(error: ProviderError, attempts: int) -> ProviderError:
    if attempts <= 1:
        return error
    return error.but(f"{error.reason} (tried {plural(attempts, 'time')})")


JSON_HEADERS = {"Content-Type": "application/json"}


def json_bytes(body: Any) -> bytes:
    """``body`` as httpx's ``json=`` would send it (UTF-8, compact, no NaN)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def count(value: Any) -> int:
    """A token count from a JSON field, or 0 for anything that is not a number."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
