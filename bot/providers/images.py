"""Picture providers behind ``!image``: OpenRouter image models, OpenAI's Images API, offline drawings.

``make_image_provider`` picks one from the settings. Every picture leaves here
small enough to post: Discord refuses uploads over 10 MiB, and image models
can return larger PNGs, so those are re-encoded as JPEG (see ``fit_for_upload``).

The offline drawing is used when no image route has a key, so ``!image`` still
produces something to look at (and its notice says it is offline). Same
prompt, same picture.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bot.engine import Picture
from bot.settings import Settings

from .base import ImageProvider, ProviderError
from .http import (
    after_attempts,
    decode_body,
    error_message,
    error_object,
    is_retryable,
    plural,
    provider_error,
    retry_delay,
    tls_context,
)
from .openai_compat import _ascii  # the same attribution headers as chat

UPLOAD_LIMIT = 10 * 1024 * 1024  # Discord's upload limit for a server without boosts
OPENROUTER_IMAGE_MODEL = "google/gemini-2.5-flash-image"
OPENAI_IMAGE_MODEL = "gpt-image-1.5"
OPENROUTER_KEY_ENV = "OPENROUTER_API_KEY"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
REFUSAL_CODES = frozenset({"moderation_blocked", "content_policy_violation"})

Sleep = Callable[[float], Awaitable[Any]]


# --- choosing a provider ---------------------------------------------------------


def make_image_provider(settings: Settings) -> ImageProvider:
    """The picture maker the settings ask for; ``auto`` takes the first route with a key."""
    choice = settings.image_provider
    if choice == "auto":
        choice = "openrouter" if settings.openrouter_api_key else "openai" if settings.openai_api_key else "offline"
    if choice == "openrouter":
        if settings.openrouter_api_key is None:
            return UnavailableImages(f"IMAGE_PROVIDER is openrouter but {OPENROUTER_KEY_ENV} is not set")
        return OpenRouterImages.from_settings(settings)
    if choice == "openai":
        if settings.openai_api_key is None:
            return UnavailableImages(f"IMAGE_PROVIDER is openai but {OPENAI_KEY_ENV} is not set")
        return OpenAIImages.from_settings(settings)
    return OfflineImages()


class UnavailableImages:
    """Stands in for a provider the settings name but cannot run, so each ``!image`` says why
    instead of the bot refusing to start over a picture setting."""

    name = "unavailable"

    def __init__(self, reason: str):
        self.reason = reason

    async def generate(self, prompt: str) -> Picture:
        raise ProviderError(self.reason)


# --- the HTTP image APIs ---------------------------------------------------------


class _ImageAPI:
    """One JSON POST per picture, retried on rate limits and server trouble.

    A new HTTP client per picture: pictures are rare and slow, and it leaves
    nothing to close when a room or the bot ends.
    """

    name = "images"
    path = ""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        *,
        key_env: str,
        extra_headers: dict[str, str] | None = None,
        connect_timeout: float = 10.0,
        timeout: float = 120.0,
        max_attempts: int = 3,
        backoff_base: float = 1.0,
        sleep: Sleep = asyncio.sleep,
        upload_limit: int = UPLOAD_LIMIT,
    ):
        self.model = model
        self.key_env = key_env
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.upload_limit = upload_limit
        self._sleep = sleep
        self._api_key = api_key
        self._url = base_url.rstrip("/") + self.path
        self._headers = dict(extra_headers or {}) | {"Authorization": f"Bearer {api_key}"}
        # Image models take tens of seconds before the first byte, so the read timeout is the whole wait.
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)

    async def generate(self, prompt: str) -> Picture:
        try:
            async with httpx.AsyncClient(timeout=self._timeout, verify=tls_context()) as client:
                picture = await self._make(client, prompt)
        except ProviderError as error:
            raise self._scrubbed(error) from error.__cause__
        return await asyncio.to_thread(fit_for_upload, picture, self.upload_limit)

    async def _make(self, client: httpx.AsyncClient, prompt: str) -> Picture:
        raise NotImplementedError

    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any]) -> Any:
        """The JSON answer to ``body``; retries what waiting can fix, within ``timeout`` overall."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        attempt = 1
        while True:
            outcome = await self._attempt(client, body, deadline)
            if not isinstance(outcome, _Retry):
                return outcome
            delay = retry_delay(attempt, outcome.retry_after, self.backoff_base)
            if attempt >= self.max_attempts or loop.time() + delay >= deadline:
                raise after_attempts(outcome.error, attempt)
            await self._sleep(delay)
            attempt += 1

    async def _attempt(self, client: httpx.AsyncClient, body: dict[str, Any], deadline: float) -> Any:
        """The JSON answer, or a _Retry for what another attempt may fix; raises the rest."""
        try:
            async with asyncio.timeout_at(deadline):
                response = await client.post(self._url, json=body, headers=self._headers)
        except (httpx.TimeoutException, TimeoutError) as exc:
            # Not retried: the picture may have been made (and paid for) after all.
            raise ProviderError(f"no picture within {plural(self.timeout, 'second')}") from exc
        except httpx.ConnectError:
            return _Retry(ProviderError(f"could not connect to {self.name}"))
        except httpx.TransportError as exc:
            raise ProviderError(f"the connection to {self.name} failed ({type(exc).__name__})") from exc
        if response.is_success:
            return _json(response)
        error = self._error(response.status_code, decode_body(response.content))
        retry_after = response.headers.get("retry-after")
        if not is_retryable(response.status_code, retry_after) or error.pause:
            raise error
        return _Retry(error, retry_after)

    def _error(self, status: int | None, payload: Any) -> ProviderError:
        """Like a chat failure, but a safety refusal says so plainly: it is about the prompt."""
        if error_object(payload).get("code") in REFUSAL_CODES:
            message = error_message(payload)
            said = f" ({message})" if message else ""
            refused = "the image model's safety system refused this prompt"
            return ProviderError(refused + said, status=status, public=refused)
        return provider_error(status, payload, self.key_env)

    async def _download(self, client: httpx.AsyncClient, url: str) -> Picture:
        """A picture the API left at a URL (DALL-E's default) rather than inline."""
        try:
            response = await client.get(url)
        except httpx.HTTPError as exc:
            raise ProviderError(f"the picture could not be downloaded ({type(exc).__name__})") from exc
        if not response.is_success:
            raise ProviderError(f"the picture could not be downloaded (HTTP {response.status_code})")
        return _picture(response.content, response.headers.get("content-type", ""))

    def _scrubbed(self, error: ProviderError) -> ProviderError:
        """The same error with the API key blanked, in case a server echoed it back."""
        if not self._api_key or self._api_key not in error.reason:
            return error
        return error.but(error.reason.replace(self._api_key, "[the key]"))


class OpenRouterImages(_ImageAPI):
    """An image model on OpenRouter: chat completions asking for the image modality.

    Not streamed: the picture arrives whole either way, and one JSON body is
    simpler to read than image deltas.
    """

    name = "OpenRouter"
    path = "/chat/completions"

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> OpenRouterImages:
        assert settings.openrouter_api_key is not None
        headers = {"HTTP-Referer": _ascii(settings.app_url), "X-Title": _ascii(settings.app_title)}
        limits = _limits(settings) | {"extra_headers": headers, "key_env": OPENROUTER_KEY_ENV}
        return cls(
            settings.openrouter_base_url,
            settings.openrouter_api_key.get_secret_value(),
            settings.image_model or OPENROUTER_IMAGE_MODEL,
            **(limits | options),
        )

    async def _make(self, client: httpx.AsyncClient, prompt: str) -> Picture:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "modalities": ["image", "text"],
            "stream": False,
        }
        payload = await self._post(client, body)
        url = self._image_url(payload)
        if url.startswith("data:"):
            return decode_data_url(url)
        return await self._download(client, url)

    def _image_url(self, payload: Any) -> str:
        """The first picture's URL; an error or a text-only answer becomes a ProviderError."""
        if error_object(payload):  # an error inside a 200 answer
            code = error_object(payload).get("code")
            raise self._error(code if isinstance(code, int) else None, payload)
        choices = payload.get("choices") if isinstance(payload, dict) else None
        message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
        if not isinstance(message, dict):
            raise ProviderError(f"{self.name} answered without a picture")
        for image in message.get("images") or []:
            inner = (image.get("image_url") or image.get("imageUrl")) if isinstance(image, dict) else None
            if isinstance(inner, dict) and isinstance(inner.get("url"), str) and inner["url"]:
                return inner["url"]
        said = " ".join(str(message.get("refusal") or message.get("content") or "").split())[:200]
        raise ProviderError("the image model answered without a picture" + (f": {said}" if said else ""))


class OpenAIImages(_ImageAPI):
    """OpenAI's Images API (``POST /images/generations``); GPT image models answer in base64."""

    name = "OpenAI"
    path = "/images/generations"

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> OpenAIImages:
        assert settings.openai_api_key is not None
        limits = _limits(settings) | {"key_env": OPENAI_KEY_ENV}
        return cls(
            settings.openai_base_url,
            settings.openai_api_key.get_secret_value(),
            settings.image_model or OPENAI_IMAGE_MODEL,
            **(limits | options),
        )

    async def _make(self, client: httpx.AsyncClient, prompt: str) -> Picture:
        body: dict[str, Any] = {"model": self.model, "prompt": prompt, "n": 1}
        if self.model.startswith("dall-e"):  # GPT image models reject response_format
            body["response_format"] = "b64_json"
        payload = await self._post(client, body)
        data = payload.get("data") if isinstance(payload, dict) else None
        first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
        if isinstance(first.get("b64_json"), str):
            return _picture(_b64(first["b64_json"]), "")
        if isinstance(first.get("url"), str):
            return await self._download(client, first["url"])
        raise ProviderError(f"{self.name} answered without a picture")


@dataclass(frozen=True)
class _Retry:
    """A failed attempt that waiting and asking again may fix."""

    error: ProviderError
    retry_after: str | None = None


def _limits(settings: Settings) -> dict[str, Any]:
    return {
        "connect_timeout": settings.connect_timeout,
        "timeout": settings.image_timeout,
        "max_attempts": settings.max_attempts,
    }


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ProviderError("the image service answered with something that is not JSON") from exc


# --- picture bytes ---------------------------------------------------------------

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


def decode_data_url(url: str) -> Picture:
    """A ``data:image/png;base64,...`` URL as a Picture."""
    header, comma, data = url.partition(",")
    if not comma or not header.startswith("data:") or not header.endswith(";base64"):
        raise ProviderError("the image model sent a picture in a form Séance cannot read")
    return _picture(_b64(data), header[5:].removesuffix(";base64"))


def _b64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProviderError("the picture could not be decoded (bad base64)") from exc


def _picture(data: bytes, declared_mime: str) -> Picture:
    """Trust the bytes over the label: the mime decides the file extension stages use."""
    if not data:
        raise ProviderError("the image model sent an empty picture")
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return Picture(data, mime)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return Picture(data, "image/webp")
    mime = declared_mime.split(";")[0].strip().lower()
    return Picture(data, mime if mime.startswith("image/") else "image/png")


def fit_for_upload(picture: Picture, limit: int = UPLOAD_LIMIT) -> Picture:
    """The picture, re-encoded as a smaller JPEG when it is over ``limit`` bytes.

    Lower quality first (invisible at these sizes), then smaller dimensions;
    JPEG because every stage and every vision model reads it.
    """
    if len(picture.data) <= limit:
        return picture
    from PIL import Image  # only needed for oversized pictures, which are rare

    try:
        with Image.open(io.BytesIO(picture.data)) as image:
            flat = _flatten(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ProviderError(f"the picture is over {limit // 2**20} MiB and could not be read to shrink it") from exc
    for scale in (1.0, 0.75, 0.5, 0.35, 0.25):
        frame = flat if scale == 1.0 else flat.resize((max(1, int(flat.width * scale)), max(1, int(flat.height * scale))))
        for quality in (90, 80, 65, 50):
            data = _jpeg(frame, quality)
            if len(data) <= limit:
                return Picture(data, "image/jpeg", picture.offline)
    raise ProviderError(f"the picture is over {limit // 2**20} MiB even after shrinking it")


def _flatten(image: Any) -> Any:
    """RGB on white: JPEG has no transparency, and transparent pixels would turn black."""
    from PIL import Image

    image.load()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image.convert("RGB")


def _jpeg(image: Any, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


# --- offline drawings ------------------------------------------------------------

SIZE = 256


class OfflineImages:
    name = "offline"

    async def generate(self, prompt: str) -> Picture:
        return Picture(draw(prompt), "image/png", offline=True)


def draw(prompt: str, size: int = SIZE) -> bytes:
    """A gradient with a few discs whose colours and places come from the prompt's hash."""
    seed = hashlib.sha256(prompt.strip().casefold().encode()).digest()
    top, bottom = seed[0:3], seed[3:6]
    discs = [
        (seed[6 + 4 * i] * size // 256, seed[7 + 4 * i] * size // 256, 12 + seed[8 + 4 * i] % (size // 4), seed[9 + 4 * i : 12 + 4 * i])
        for i in range(5)
    ]
    rows = bytearray()
    for y in range(size):
        rows.append(0)  # PNG filter type: none
        t = y / (size - 1)
        base = bytes(int(a + (b - a) * t) for a, b in zip(top, bottom))
        row = bytearray(base * size)
        for cx, cy, r, colour in discs:
            dy = y - cy
            if abs(dy) >= r:
                continue
            half = int((r * r - dy * dy) ** 0.5)
            for x in range(max(0, cx - half), min(size, cx + half)):
                row[3 * x : 3 * x + 3] = colour
        rows += row
    return _png(size, size, bytes(rows))


def _png(width: int, height: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
