"""Text for Discord: message splitting, small-text notices, persona names and avatars.

Pure functions, no discord.py: Discord's limits and markdown quirks live here
so the stage stays about sending, and the rules can be tested on their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from bot.engine import ModelInfo

MESSAGE_LIMIT = 2000
NAME_LIMIT = 80
HAIR_SPACE = "\u200a"
SUBTEXT = "-# "

_FENCE = re.compile(r"^\s*```")
_RESERVED_NAME = re.compile(r"clyde|discord", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")
# Punctuation that drawings are made of; letters, digits and prose marks (,.;:!?') are not.
_ART_ASCII = set("/\\|_-=+*#~^<>()[]{}`\"@%&$")


# --- splitting ----------------------------------------------------------------


@dataclass
class _Block:
    """A paragraph, a fenced code block, or a run of drawing lines: split only if it must be."""

    lines: list[str]
    code: bool = False
    gap: str = "\n"  # what separated it from the block before


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Cut ``text`` into messages of at most ``limit`` characters.

    Breaks fall between paragraphs if possible, then between lines, then between
    words. A code block that must be split is closed and reopened, so every part
    renders as code; drawings are wrapped in a code block so Discord keeps their
    whitespace.
    """
    chunks: list[str] = []
    current = ""
    for block in _blocks(text):
        for gap, piece in _pieces(block, limit):
            if current and len(current) + len(gap) + len(piece) <= limit:
                current += gap + piece
                continue
            if current:
                chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return [c for c in (chunk.rstrip() for chunk in chunks) if c.strip()]


def _blocks(text: str) -> list[_Block]:
    lines = text.replace("\r\n", "\n").strip("\n").split("\n")
    blocks: list[_Block] = []
    paragraph: list[str] = []
    gap = "\n"

    def close_paragraph() -> None:
        nonlocal gap
        if paragraph:
            blocks.append(_Block(paragraph.copy(), gap=gap))
            paragraph.clear()
            gap = "\n"

    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            close_paragraph()
            end = next((j for j in range(i + 1, len(lines)) if _FENCE.match(lines[j])), None)
            fenced = lines[i : end + 1] if end is not None else [*lines[i:], "```"]
            blocks.append(_Block(fenced, code=True, gap=gap))
            gap = "\n"
            i = len(lines) if end is None else end + 1
        elif is_art_line(line):
            close_paragraph()
            end = i
            while end + 1 < len(lines) and _continues_art(lines[end + 1]):
                end += 1
            blocks.append(_art_block(lines[i : end + 1], gap))
            gap = "\n"
            i = end + 1
        elif not line.strip():
            close_paragraph()
            gap = "\n\n"
            i += 1
        else:
            paragraph.append(line)
            i += 1
    close_paragraph()
    return blocks


def _art_block(lines: list[str], gap: str) -> _Block:
    """Indented or multi-line drawings go in a code block; a lone rule line stays text."""
    if len(lines) > 1 or any(_indent(line) >= 4 for line in lines):
        return _Block(["```", *(line.rstrip() for line in lines), "```"], code=True, gap=gap)
    return _Block(lines, gap=gap)


def is_art_line(line: str) -> bool:
    """An indented drawing line, or a line mostly made of box, block or drawing characters."""
    stripped = line.strip()
    if not stripped or _LIST_ITEM.match(line):
        return False
    if _indent(line) >= 4:
        # Indented prose (a list item's second paragraph) stays prose; drawings have marks or columns.
        return _drawn_share(stripped) > 0 or "   " in stripped
    return len(stripped.replace(" ", "")) >= 3 and _drawn_share(stripped) >= 0.6


def _continues_art(line: str) -> bool:
    """A line next to a drawing belongs to it with fewer marks: ``( o.o )``, ``║  a door  ║``."""
    stripped = line.strip()
    if not stripped or is_art_line(line):
        return bool(stripped)
    framed = _indent(line) >= 1 or _is_drawn(stripped[0]) or _is_drawn(stripped[-1])
    return framed and _drawn_share(stripped) >= 0.2


def _drawn_share(text: str) -> float:
    visible = "".join(text.split())
    if not visible:
        return 0.0
    return (len(visible) - len(visible.translate(_NOT_DRAWN))) / len(visible)


def _is_drawn(char: str) -> bool:
    return char in _ART_ASCII or _is_drawing_char(char)


def _is_drawing_char(char: str) -> bool:
    code = ord(char)
    return 0x2500 <= code <= 0x25FF or 0x2800 <= code <= 0x28FF  # box drawing, blocks, shapes, braille


# Deletes every drawing character, so counting them is one C-level pass (replies can be long lines).
_NOT_DRAWN = str.maketrans(
    "", "", "".join(_ART_ASCII) + "".join(map(chr, range(0x2500, 0x2600))) + "".join(map(chr, range(0x2800, 0x2900)))
)


def _indent(line: str) -> int:
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip(" "))


def _pieces(block: _Block, limit: int) -> list[tuple[str, str]]:
    """(gap, text) parts: the block whole if it fits, else fenced code parts or lines and words."""
    whole = "\n".join(block.lines)
    if len(whole) <= limit:
        return [(block.gap, whole)]
    if block.code:
        parts = [("\n", part) for part in _code_pieces(block.lines, limit)]
    else:
        parts = [part for line in block.lines for part in _wrap(line, limit)]
    return [(block.gap, parts[0][1]), *parts[1:]]


def _code_pieces(lines: list[str], limit: int) -> list[str]:
    opening, body = lines[0].strip(), lines[1:-1]
    closing = "```"
    room = limit - len(opening) - len(closing) - 2
    parts: list[str] = []
    current: list[str] = []
    size = -1
    for line in (part for line in body for part in _cut(line, room)):
        if current and size + 1 + len(line) > room:
            parts.append("\n".join([opening, *current, closing]))
            current, size = [], -1
        current.append(line)
        size += 1 + len(line)
    if current or not parts:
        parts.append("\n".join([opening, *current, closing]))
    return parts


def _wrap(line: str, limit: int) -> list[tuple[str, str]]:
    """A long line as (gap, text) parts cut at spaces, or hard where a word is longer than ``limit``."""
    parts: list[tuple[str, str]] = []
    gap = "\n"
    while len(line) > limit:
        cut = line.rfind(" ", 1, limit + 1)
        if cut <= 0:
            parts.append((gap, line[:limit]))
            line, gap = line[limit:], ""
        else:
            parts.append((gap, line[:cut]))
            line, gap = line[cut + 1 :], " "
    parts.append((gap, line))
    return parts


def _cut(line: str, size: int) -> list[str]:
    return [line[i : i + size] for i in range(0, len(line), size)] or [""]


# --- notices ------------------------------------------------------------------


def subtext_messages(notices: list[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """Notices as small grey text, as few messages as fit: every line gets ``-# ``."""
    lines: list[str] = []
    room = limit - len(SUBTEXT)
    for notice in notices:
        for line in notice.splitlines():
            line = line.strip()
            lines.extend(SUBTEXT + part for part in _cut(line, room) if line)
    messages: list[str] = []
    current = ""
    for line in lines:
        if current and len(current) + 1 + len(line) <= limit:
            current += "\n" + line
        else:
            if current:
                messages.append(current)
            current = line
    if current:
        messages.append(current)
    return messages


def spoiler_messages(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """A model's thinking as messages hidden behind spoiler bars until clicked.

    Each message is small text ("-# ") with its own spoiler; ``|`` in the text
    is escaped so the thinking cannot close the spoiler early.
    """
    head, tail = "-# 🧠 ||", "||"
    escaped = text.replace("|", "\\|").replace("\n", "\n-# ")
    return [head + piece + tail for piece in split_message(escaped, limit - len(head) - len(tail))]


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, for captions that must stay one message."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --- personas -----------------------------------------------------------------


def persona_name(name: str) -> str:
    """A valid webhook username: 1–80 characters, no "clyde" or "discord" in any case."""
    flat = " ".join(name.split())
    safe = _RESERVED_NAME.sub(lambda m: m.group(0)[0] + HAIR_SPACE + m.group(0)[1:], flat)
    return safe[:NAME_LIMIT].strip() or "AI"


def avatar_url(model: ModelInfo, template: str) -> str:
    """The catalog's avatar for ``model``, else one generated from its name (stable per model)."""
    if model.avatar:
        return model.avatar
    return template.replace("{seed}", quote(model.name, safe=""))
