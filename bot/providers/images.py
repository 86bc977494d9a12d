"""Pictures without an image model: a deterministic abstract drawing made from the prompt.

Used when no image route has a key, so ``!image`` still produces something to
look at (and its notice says it is offline). Same prompt, same picture.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

from bot.engine import Picture

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
