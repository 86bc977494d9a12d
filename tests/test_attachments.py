"""Attachments: what Discord declares is checked before downloading, and a download is bounded in time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from bot.attachments import PICTURE_MAX_BYTES, AttachmentRefused, download, picture_from
from tests.fakes.images import tiny_png


@dataclass
class FakeAttachment:
    """What bot.attachments reads of a discord.Attachment."""

    filename: str
    data: bytes
    content_type: str | None = "image/png"
    width: int | None = None
    height: int | None = None
    declared: int | None = None
    hang: bool = False
    reads: int = 0

    @property
    def size(self) -> int:
        return len(self.data) if self.declared is None else self.declared

    async def read(self) -> bytes:
        self.reads += 1
        if self.hang:
            await asyncio.sleep(3600)
        return self.data


async def test_a_download_that_hangs_is_cut_at_the_time_limit() -> None:
    attachment = FakeAttachment("slow.png", tiny_png(), hang=True)
    with pytest.raises(AttachmentRefused, match=r"Downloading `slow.png` from Discord took longer than 0.05 seconds"):
        await download(attachment, 1000, timeout=0.05)  # type: ignore[arg-type]


async def test_a_picture_too_large_by_its_size_or_its_sides_is_not_downloaded() -> None:
    big = FakeAttachment("big.png", b"", declared=PICTURE_MAX_BYTES + 1)
    wide = FakeAttachment("wide.png", tiny_png(), width=9000, height=100)
    with pytest.raises(AttachmentRefused, match="`big.png` is 3.75 MB, over the 3.75 MB I can take"):
        await picture_from(big, 1)  # type: ignore[arg-type]
    with pytest.raises(AttachmentRefused, match="`wide.png` is 9000×100 pixels; the AIs take at most 8000"):
        await picture_from(wide, 1)  # type: ignore[arg-type]
    assert big.reads == wide.reads == 0


async def test_a_size_that_lied_is_caught_on_the_bytes() -> None:
    liar = FakeAttachment("liar.png", tiny_png() + b"\0" * 2000, declared=10)
    with pytest.raises(AttachmentRefused, match="`liar.png` is 2 KB, over the 1 KB I can take"):
        await download(liar, 1024, timeout=1)  # type: ignore[arg-type]


async def test_a_picture_is_typed_by_its_bytes_not_its_declared_type() -> None:
    jpeg = FakeAttachment("photo.png", b"\xff\xd8\xff\xe0" + b"\0" * 100, content_type="image/png")
    picture = await picture_from(jpeg, 1)  # type: ignore[arg-type]
    assert picture.mime == "image/jpeg" and picture.extension == "jpg"
