"""Image answers for the fake server: OpenRouter image models and OpenAI's Images API.

The shapes follow ``shared/reference/provider-wire-formats.md`` (1.3 and 4):
OpenRouter puts the picture in ``choices[0].message.images[].image_url.url``
as a data URL; OpenAI answers ``{"data": [{"b64_json": ...}]}``. The server
routes a request here when it asks for the image modality or posts to
``/images/generations``, so scripted chat replies are never used up by pictures.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import zlib
from typing import Any

from .llm_server import Reply

OPENAI_REFUSAL = {
    "error": {
        "message": "Your request was rejected by the safety system. If you believe this is an error, contact us "
        "at help.openai.com and include the request ID req_fake. safety_violations=[violence].",
        "type": "image_generation_user_error",
        "param": None,
        "code": "moderation_blocked",
    }
}


def tiny_png(rgb: tuple[int, int, int] = (200, 40, 90), size: int = 4) -> bytes:
    """A valid solid-colour PNG, so a test can check the bytes survive the trip."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def json_reply(payload: Any, status: int = 200) -> Reply:
    return Reply(status=status, headers={"Content-Type": "application/json"}, body=json.dumps(payload).encode())


def openrouter_image(data: bytes | None = None, *, mime: str = "image/png", text: str = "", model: str = "google/gemini-2.5-flash-image") -> Reply:
    """A non-streamed OpenRouter answer carrying one picture as a data URL."""
    url = f"data:{mime};base64,{base64.b64encode(tiny_png() if data is None else data).decode('ascii')}"
    image = {"type": "image_url", "image_url": {"url": url}, "index": 0}
    return openrouter_message({"role": "assistant", "content": text, "refusal": None, "reasoning": None, "images": [image]}, model)


def openrouter_message(message: dict[str, Any], model: str = "google/gemini-2.5-flash-image") -> Reply:
    """A non-streamed chat completion with exactly this ``message`` (e.g. text and no picture)."""
    created = int(time.time())
    choice = {"logprobs": None, "finish_reason": "stop", "native_finish_reason": "STOP", "index": 0, "message": message}
    usage = {"prompt_tokens": 12, "completion_tokens": 1290, "total_tokens": 1302, "cost": 0.0387, "is_byok": False}
    return json_reply({
        "id": f"gen-{created}-fakeimage", "provider": "Google AI Studio", "model": model,
        "object": "chat.completion", "created": created, "choices": [choice], "usage": usage,
    })


def openai_image(data: bytes | None = None, *, url: str | None = None) -> Reply:
    """An Images API answer: ``b64_json`` (GPT image models), or ``url`` (DALL-E's default)."""
    item = {"url": url} if url else {"b64_json": base64.b64encode(tiny_png() if data is None else data).decode("ascii")}
    usage = {"total_tokens": 1066, "input_tokens": 10, "output_tokens": 1056, "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}}
    return json_reply({
        "created": int(time.time()), "data": [item], "background": "opaque", "output_format": "png",
        "quality": "medium", "size": "1024x1024", "usage": usage,
    })


def default_image_reply(body: dict[str, Any]) -> Reply:
    """A small picture in the shape the request's API uses."""
    return openai_image() if "prompt" in body and "messages" not in body else openrouter_image()


def wants_image(path: str, body: Any) -> bool:
    """Whether a POST is an image request: the Images API, or a chat asking for the image modality."""
    if path.rstrip("/").endswith("/images/generations"):
        return True
    modalities = body.get("modalities") if isinstance(body, dict) else None
    return path.rstrip("/").endswith("/chat/completions") and isinstance(modalities, list) and "image" in modalities
