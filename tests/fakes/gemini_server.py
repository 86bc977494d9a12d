"""A fake Gemini API (``streamGenerateContent``) on 127.0.0.1, for tests and benchmarks.

It follows ``shared/reference/provider-wire-formats.md`` §3: with ``alt=sse``
each chunk is ``data: {...}`` framed with CRLF, JSON written with ``": "``
separators, no ``event:`` lines and no terminator; without it, one JSON array.
``usageMetadata`` is cumulative on every chunk; thoughts are parts marked
``"thought": true``; a blocked prompt is a 200 whose only chunk carries
``promptFeedback.blockReason``; errors are pretty-printed ``google.rpc.Status``
bodies (a bad key is a 400 API_KEY_INVALID, a 429 says ``retryDelay``).

Requests are checked as the API checks them (the key, roles, empty parts,
unknown fields). Usage is measured from the request, with implicit caching:
a prompt starting with turns seen before reports them as cached.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .llm_server import Reply
from .native import IMAGE_TOKENS, NativeFakeServer, PrefixCache, tokens

MIN_CACHE_TOKENS = 1024
KNOWN_FIELDS = {
    "contents", "systemInstruction", "system_instruction", "generationConfig", "generation_config",
    "safetySettings", "safety_settings", "tools", "toolConfig", "cachedContent",
}
_PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>streamGenerateContent|generateContent)$")

STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
}
BAD_KEY = "API key not valid. Please pass a valid API key."
OVERLOADED = "The model is overloaded. Please try again later."
QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. "
    "For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ": "), ensure_ascii=False)


def _split(text: str, chunks: int) -> list[str]:
    if not text:
        return []
    size = -(-len(text) // max(1, min(chunks, len(text))))
    return [text[i : i + size] for i in range(0, len(text), size)]


class GeminiReply:
    """Builders of ``Reply`` in Gemini's framing. ``usage`` is (prompt tokens, cached tokens)."""

    @staticmethod
    def text(
        text: str = "Hello!",
        *,
        thoughts: str = "",
        chunks: int = 3,
        usage: tuple[int, int] = (12, 0),
        thought_tokens: int | None = None,
        finish: str = "STOP",
        model: str = "gemini-fake",
        crlf: bool = True,
        delay: float = 0.0,
    ) -> Reply:
        """Thought chunks, then text chunks, the last with ``finishReason``; usage grows on each."""
        wire = _Wire(model, crlf, usage, tokens(thoughts) if thought_tokens is None else thought_tokens)
        pieces = [wire.chunk([{"text": p, "thought": True}], answered="") for p in _split(thoughts, chunks)]
        first_words = len(pieces) + 1
        pieces += wire.text_chunks(text, chunks, finish, signed=bool(thoughts))
        return Reply(headers=_sse_headers(), pieces=pieces, delay=delay, first_words=first_words)

    @staticmethod
    def blocked_prompt(reason: str = "PROHIBITED_CONTENT", prompt_tokens: int = 13) -> Reply:
        """The prompt itself was blocked: one chunk, no candidates."""
        usage = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
        chunk = {"promptFeedback": {"blockReason": reason}, "usageMetadata": usage}
        return Reply(headers=_sse_headers(), pieces=[f"data: {_json(chunk)}\r\n\r\n"])

    @staticmethod
    def stopped(text_before: str = "Once upon", reason: str = "SAFETY") -> Reply:
        """The reply was stopped by a filter after some text: the last chunk has no content."""
        wire = _Wire("gemini-fake", True, (12, 0), 0)
        ratings = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]
        pieces = wire.text_chunks(text_before, 2, None)
        pieces.append(wire.chunk(None, answered=text_before, finish=reason, extra={"safetyRatings": ratings}))
        return Reply(headers=_sse_headers(), pieces=pieces)

    @staticmethod
    def error(
        status: int,
        message: str | None = None,
        *,
        reason: str | None = None,
        retry_delay: str | None = None,
        violations: list[dict[str, Any]] | None = None,
    ) -> Reply:
        """A google.rpc.Status body, pretty-printed as the real ones are."""
        details: list[dict[str, Any]] = []
        if violations:
            details.append({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations})
        if reason:
            details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"})
        if retry_delay:
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay})
        error: dict[str, Any] = {
            "code": status, "message": message or _default_message(status), "status": STATUS_NAMES.get(status, "UNKNOWN")
        }
        if details:
            error["details"] = details
        body = json.dumps({"error": error}, indent=2) + "\n"
        return Reply(status=status, headers={"Content-Type": "application/json; charset=UTF-8"}, body=body.encode())

    @staticmethod
    def bad_key() -> Reply:
        return GeminiReply.error(400, BAD_KEY, reason="API_KEY_INVALID")

    @staticmethod
    def quota(retry_delay: str = "26s", *, daily: bool = False) -> Reply:
        """RESOURCE_EXHAUSTED with the violated quotas listed (reference §3.4): a per-minute
        one passes after ``retryDelay``; with ``daily`` the per-day one is used up too, and
        Google still says to retry in seconds."""
        violations = [_violation("PerMinute", "250000")]
        if daily:
            violations.append(_violation("PerDay", "250"))
        return GeminiReply.error(429, QUOTA, retry_delay=retry_delay, violations=violations)

    @staticmethod
    def corrupted(text_before: str = "", text_after: str = " and the rest.") -> Reply:
        """A whole reply with one ``data:`` line that is not JSON between the two texts."""
        wire = _Wire("gemini-fake", True, (12, 0), 0)
        pieces = wire.text_chunks(text_before, 1, None) if text_before else []
        pieces.append('data: {"candidates": [{"content": {"parts": [{"text": "lost wo\r\n\r\n')
        pieces += wire.text_chunks(text_after, 1, "STOP")
        return Reply(headers=_sse_headers(), pieces=pieces)

    @staticmethod
    def drop(text_before: str = "", *, graceful: bool = False) -> Reply:
        wire = _Wire("gemini-fake", True, (12, 0), 0)
        pieces = wire.text_chunks(text_before, 2, None)
        return Reply(headers=_sse_headers(), pieces=pieces, ending="end" if graceful else "drop")

    @staticmethod
    def stall(text_before: str = "", seconds: float = 30.0) -> Reply:
        wire = _Wire("gemini-fake", True, (12, 0), 0)
        pieces = wire.text_chunks(text_before, 2, None)
        return Reply(headers=_sse_headers(), pieces=pieces, ending="stall", stall_seconds=seconds)

    @staticmethod
    def midstream_error(text_before: str = "Hello", code: int = 503, message: str = OVERLOADED) -> Reply:
        wire = _Wire("gemini-fake", True, (12, 0), 0)
        pieces = wire.text_chunks(text_before, 2, None)
        error = {"error": {"code": code, "message": message, "status": STATUS_NAMES.get(code, "UNKNOWN")}}
        pieces.append(f"data: {_json(error)}\r\n\r\n")
        return Reply(headers=_sse_headers(), pieces=pieces)


def _violation(period: str, limit: str) -> dict[str, Any]:
    """One QuotaFailure violation, shaped as in captured free-tier 429s."""
    return {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": f"GenerateRequests{period}PerProjectPerModel-FreeTier",
        "quotaDimensions": {"location": "global", "model": "gemini-fake"},
        "quotaValue": limit,
    }


def _default_message(status: int) -> str:
    return {
        403: (
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API."
        ),
        404: "models/gemini-nonexistent is not found for API version v1beta, or is not supported for generateContent.",
        429: "Resource has been exhausted (e.g. check quota).",
        500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        503: OVERLOADED,
    }.get(status, "Request contains an invalid argument.")


def _sse_headers() -> dict[str, str]:
    return {"Content-Type": "text/event-stream", "Vary": "Origin, X-Origin, Referer", "X-Content-Type-Options": "nosniff"}


class _Wire:
    """Chunks with cumulative usage, framed with CRLF (or LF)."""

    def __init__(self, model: str, crlf: bool, usage: tuple[int, int], thoughts: int):
        self.model = model
        self.end = "\r\n" if crlf else "\n"
        self.prompt, self.cached = usage
        self.thoughts = thoughts

    def text_chunks(self, text: str, chunks: int, finish: str | None, signed: bool = False) -> list[str]:
        """Text parts, usage counting what was said so far; ``finish`` on the last one."""
        pieces = _split(text, chunks) or [""]
        out, said = [], ""
        for i, piece in enumerate(pieces):
            said += piece
            part: dict[str, Any] = {"text": piece}
            if i == 0 and signed:
                part["thoughtSignature"] = "CiQBVKhc7opaque"  # Gemini 2.5/3 attach these; must be ignored
            out.append(self.chunk([part], answered=said, finish=finish if i == len(pieces) - 1 else None))
        return out

    def chunk(
        self, parts: list[dict[str, Any]] | None, answered: str, finish: str | None = None, extra: dict[str, Any] | None = None
    ) -> str:
        candidate: dict[str, Any] = {}
        if parts is not None:
            candidate["content"] = {"parts": parts, "role": "model"}
        if finish:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        candidate |= extra or {}
        meta: dict[str, Any] = {"promptTokenCount": self.prompt}
        if answered:
            meta["candidatesTokenCount"] = tokens(answered)
        meta["totalTokenCount"] = self.prompt + tokens(answered) + self.thoughts
        if self.cached:
            meta["cachedContentTokenCount"] = self.cached
        meta["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.prompt}]
        if self.thoughts:
            meta["thoughtsTokenCount"] = self.thoughts
        chunk = {"candidates": [candidate], "usageMetadata": meta, "modelVersion": self.model, "responseId": "AdVRaMmDCYekqtsPrb_-iAw"}
        return f"data: {_json(chunk)}{self.end}{self.end}"


# --- checking a request like the API ---------------------------------------------


def refusal(query: dict[str, list[str]], headers: dict[str, str], body: Any, require_key: str | None) -> Reply | None:
    key = headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
    if not key:
        return GeminiReply.error(403)
    if require_key is not None and key != require_key:
        return GeminiReply.bad_key()
    if not isinstance(body, dict):
        return GeminiReply.error(400, "Invalid JSON payload received.")
    problem = _body_problem(body)
    return GeminiReply.error(400, problem) if problem else None


def _body_problem(body: dict[str, Any]) -> str | None:
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        return f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for index, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            return "Please use a valid role: user, model."
        if index == 0 and content.get("role") != "user":
            return "Please ensure that the first content has the user role."
        if index and contents[index - 1].get("role") == content.get("role"):
            return "Please ensure that multiturn requests alternate between user and model."
        parts = content.get("parts") or []
        if not parts:
            return f"* GenerateContentRequest.contents[{index}].parts: contents.parts must not be empty."
        if any(isinstance(p, dict) and "text" in p and not p["text"] for p in parts):
            return "Unable to submit request because it has an empty text parameter. Add a value to the parameter and try again."
    config = body.get("generationConfig") or {}
    if len(config.get("stopSequences") or []) > 5:
        return "* GenerateContentRequest.generation_config.stop_sequences: at most 5 stop sequences are allowed"
    return None


# --- usage with implicit caching -------------------------------------------------------


class GeminiCache:
    """Implicit caching: the longest run of leading turns seen before counts as cached."""

    def __init__(self, min_tokens: int = MIN_CACHE_TOKENS):
        self.min_tokens = min_tokens
        self._cache = PrefixCache()

    def measure(self, body: dict[str, Any]) -> tuple[int, int]:
        """(prompt tokens, cached tokens) for ``body``, remembering its prefixes."""
        segments: list[tuple[Any, int]] = []
        system = body.get("systemInstruction")
        if system:
            segments.append((("system", system), _parts_tokens(system.get("parts") or [])))
        segments += [((c["role"], c["parts"]), _parts_tokens(c["parts"])) for c in body["contents"]]
        prefixes = PrefixCache.prefixes(segments)
        cached = self._cache.hit(prefixes, range(len(prefixes)))
        for prefix in prefixes:
            self._cache.store(prefix, self.min_tokens)
        return prefixes[-1][1], cached


def _parts_tokens(parts: list[dict[str, Any]]) -> int:
    return sum(IMAGE_TOKENS if "inlineData" in p or "inline_data" in p else tokens(str(p.get("text", ""))) for p in parts)


# --- the server -------------------------------------------------------------------------


def default_text(body: dict[str, Any]) -> tuple[str, str]:
    turn = 1 + sum(1 for c in body.get("contents", []) if c.get("role") == "model")
    return f"I am Gemini, turn {turn}.", ""


class FakeGeminiServer(NativeFakeServer):
    """Serves POST /v1beta/models/{model}:streamGenerateContent.

    ``writer(body)`` gives the default reply's (text, thoughts); thoughts are
    billed either way but only sent when the request asks with ``includeThoughts``.
    """

    url_path = "/v1beta"

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.cache = GeminiCache()
        self.writer: Callable[[dict[str, Any]], tuple[str, str]] = default_text
        self.default = self._measured

    def _measured(self, body: dict[str, Any]) -> Reply:
        text, thoughts = self.writer(body)
        prompt, cached = self.cache.measure(body)
        shown = thoughts if ((body.get("generationConfig") or {}).get("thinkingConfig") or {}).get("includeThoughts") else ""
        return GeminiReply.text(text, thoughts=shown, usage=(prompt, cached), thought_tokens=tokens(thoughts))

    def answer(self, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any) -> Reply:
        match = _PATH.match(path)
        if not match:
            return GeminiReply.error(404, f"Not found: {path}")
        reply = refusal(query, headers, body, self.require_key) or self.next_reply(body)
        if query.get("alt") != ["sse"] and reply.status == 200:
            return _as_json_array(reply)
        return reply


def _as_json_array(reply: Reply) -> Reply:
    """Without ``alt=sse`` the same chunks arrive as one JSON array (reference §3.1)."""
    chunks = [json.loads(piece.strip()[len("data: "):]) for piece in reply.pieces if piece.startswith("data: ")]
    body = json.dumps(chunks, indent=2).encode()
    return Reply(headers={"Content-Type": "application/json; charset=UTF-8"}, body=body)
