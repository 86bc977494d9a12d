"""Files people attach on Discord: pictures for the AIs and scenario files.

Each is checked twice: on what Discord declares (size, type, dimensions) before
anything is downloaded, then on the bytes themselves (a declared type can be
wrong, and a picture's type is what a provider will decode). Every refusal is an
``AttachmentRefused`` whose message says what to do, for the person who attached it.
"""

from __future__ import annotations

import asyncio

import aiohttp
import discord

from bot.engine import Picture
from bot.engine.events import sniff_picture
from bot.engine.scenarios import SCENARIO_FILE_BYTES

# The types every vision route decodes: Gemini reads no GIF, OpenAI no animated one.
PICTURE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP"}
# Anthropic refuses a picture over 5 MB (5,242,880 bytes) once base64-encoded, the tightest
# of the routes; base64 is 4/3 of the bytes, so 3.75 MiB of picture is the most every route takes.
PICTURE_MAX_BYTES = 3_932_160
PICTURE_MAX_SIDE = 8000  # pixels: Anthropic refuses a larger side


class AttachmentRefused(Exception):
    """An attachment that was not used; the message is for the person who attached it."""


def megabytes(size: int) -> str:
    """A size as people read it (MB of 1,048,576 bytes, as Discord counts them)."""
    return f"{size / 1048576:.3g} MB" if size >= 104858 else f"{max(1, size // 1024)} KB"


def _too_big(name: str, size: int, limit: int) -> AttachmentRefused:
    return AttachmentRefused(f"`{name}` is {megabytes(size)}, over the {megabytes(limit)} I can take; send a smaller one.")


async def download(attachment: discord.Attachment, limit: int, timeout: float) -> bytes:
    """The attachment's bytes from Discord's file server, at most ``limit`` of them.

    A file deleted or expired (404), a server error (5xx) and a download that takes
    longer than ``timeout`` seconds are each told apart, so the person knows whether
    trying again can help.
    """
    name = attachment.filename
    if attachment.size > limit:
        raise _too_big(name, attachment.size, limit)
    try:
        data = await asyncio.wait_for(attachment.read(), timeout)
    except discord.NotFound:
        raise AttachmentRefused(
            f"Discord no longer has `{name}` (it was deleted, or its link expired); attach it again."
        ) from None
    except discord.HTTPException as exc:
        raise AttachmentRefused(
            f"Discord's file server could not give me `{name}` (it answered {exc.status}); try again in a moment."
        ) from None
    except TimeoutError:  # our bound, or the connection's own (aiohttp.ServerTimeoutError)
        raise AttachmentRefused(
            f"Downloading `{name}` from Discord took longer than {timeout:g} seconds; try again in a moment."
        ) from None
    except (aiohttp.ClientError, OSError):
        raise AttachmentRefused(
            f"The connection to Discord's file server broke while downloading `{name}`; try again in a moment."
        ) from None
    if len(data) > limit:  # the declared size was wrong
        raise _too_big(name, len(data), limit)
    return data


async def picture_from(attachment: discord.Attachment, timeout: float) -> Picture:
    """A picture for the AIs: PNG, JPEG or WebP, at most 3.75 MB and 8000 pixels a side."""
    name, kinds = attachment.filename, " or ".join(PICTURE_TYPES.values())
    declared = (attachment.content_type or "").split(";")[0].strip().lower()
    if declared and not declared.startswith("image/"):
        raise AttachmentRefused(f"`{name}` is not a picture; the AIs can look at {kinds} pictures.")
    side = max(attachment.width or 0, attachment.height or 0)
    if side > PICTURE_MAX_SIDE:
        raise AttachmentRefused(
            f"`{name}` is {attachment.width}×{attachment.height} pixels; the AIs take at most"
            f" {PICTURE_MAX_SIDE} pixels a side."
        )
    data = await download(attachment, PICTURE_MAX_BYTES, timeout)
    mime = sniff_picture(data)
    if mime == "image/gif":
        raise AttachmentRefused(f"`{name}` is a GIF, which not every model can read; send it as {kinds}.")
    if mime not in PICTURE_TYPES:
        raise AttachmentRefused(f"`{name}` is not a {kinds} picture, which is what the AIs can look at.")
    return Picture(data, mime)


async def scenario_file(attachment: discord.Attachment, timeout: float) -> str:
    """A server's scenario file: a .toml file of UTF-8 text, at most 32 KB."""
    name = attachment.filename
    if not name.lower().endswith(".toml"):
        raise AttachmentRefused(f"`{name}` is not a .toml file; scenarios are written in TOML (see the README).")
    data = await download(attachment, SCENARIO_FILE_BYTES, timeout)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AttachmentRefused(f"`{name}` is not UTF-8 text (byte {exc.start} is not); save it as UTF-8.") from None
