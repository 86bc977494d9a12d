"""What every HTTP provider adapter shares: retry timing, error wording, SSE reading.

Kept free of any one provider's request format so the OpenAI-compatible,
Anthropic and Gemini adapters can all lean on it.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from httpx_sse import ServerSentEvent

from .base import ProviderError

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})
RETRY_AFTER_CAP = 60.0
MESSAGE_LIMIT = 300

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
        return f"model not found{said}"
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
    """The ProviderError for an error status; pause when only a person can fix it."""
    pause = status == 402 or (status in (401, 403) and not is_moderation(body))
    return ProviderError(error_reason(status, body, key_env_name), status=status, pause=pause)


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


async def sse_events(response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
    """The events of an event-stream body, plus any bare JSON line as event ``raw``.

    A small parser of our own rather than ``EventSource.aiter_sse``: Ollama
    reports a mid-stream failure as a bare ``{"error": ...}`` line with no
    ``data:`` field, which a spec-following SSE parser (httpx-sse included)
    silently drops, turning a clear error into a mystery. Otherwise it follows
    the SSE rules: CR, LF or CRLF line ends, ``:`` comments ignored, ``data:``
    with or without a space, an event ends at a blank line.
    """
    event, data = "", []
    async for line in _lines(response):
        if not line:
            if data:
                yield ServerSentEvent(event=event or "message", data="\n".join(data))
            event, data = "", []
        elif line.startswith(":"):
            continue
        elif line.startswith("{"):
            yield ServerSentEvent(event="raw", data=line)
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value
    if data:  # a last event the server did not close with a blank line
        yield ServerSentEvent(event=event or "message", data="\n".join(data))


async def _lines(response: httpx.Response) -> AsyncIterator[str]:
    """Lines split on CR, LF or CRLF only (not on the Unicode separators str.splitlines knows)."""
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        # A trailing CR may be the first half of a CRLF split across reads.
        cut = len(buffer) - 1 if buffer.endswith("\r") else len(buffer)
        *lines, rest = _NEWLINE.split(buffer[:cut])
        buffer = rest + buffer[cut:]
        for line in lines:
            yield line
    if buffer.rstrip("\r"):
        yield buffer.rstrip("\r")
