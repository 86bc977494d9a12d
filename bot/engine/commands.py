"""Bang-commands inside an AI's reply.

An AI steers the séance by writing commands such as ``!image "a fox"`` or
``!temperature 1.2`` in the middle of its prose.  The model writes them, not
a human, so the parser is forgiving about presentation (markdown emphasis,
curly quotes, a trailing full stop) but strict about meaning: a command with
a known name and unusable arguments comes back with an ``error`` the bot can
show to the model, instead of being silently ignored or half-applied.

Text the model is quoting or showing as code is not a command, which is why
code spans, fenced blocks and ``>`` quotes are masked out first.

Replies are untrusted input of any size, so every step is linear: regexes
have no nested quantifiers and no scan restarts from every position.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

COMMAND_NAMES: tuple[str, ...] = (
    "image",
    "prompt",
    "temperature",
    "add_ai",
    "mute_self",
    "list_models",
    "whisper",
    "remove_ai",
    "vote",
    "search",
)


@dataclass(frozen=True)
class Command:
    """One command as written; ``args`` is empty whenever ``error`` is set."""

    name: str
    args: tuple[str, ...]
    error: str | None
    start: int
    end: int
    raw: str


# --- names and where a command may stand -----------------------------------

_NAMES = frozenset(COMMAND_NAMES)
_NO_ARGS = frozenset({"mute_self", "list_models"})
# Settings changes are for the bot, not the audience, so they are cut from
# what others see; everything else stays visible as part of the performance.
# A whisper is cut too: its words are for one AI, and spectators only see that it happened.
_HIDDEN = frozenset({"prompt", "temperature", "whisper"})
# Quoted arguments each command takes: (required, at most).
_ARITY = {"add_ai": (1, 2), "whisper": (2, 2), "remove_ai": (1, 2)}
_VOTE_RE = re.compile(r"(?i:yes|no)(?![A-Za-z0-9])")

# Letters are ASCII-only because re.IGNORECASE would let Unicode folding
# ("ſ", the Kelvin sign) spell a name.  The lookbehind drops "wow!image"
# inside the engine; emphasis before the "!" needs a walk back, done in
# Python.  The "!" comes first so the engine can skip ahead to each "!".
_BANG_RE = re.compile(r"!(?<![^\s*_~(\[]!)([A-Za-z_]++)")
# Markdown emphasis and opening brackets may hug the "!": **!image "x"**.
_LEAD_CHARS = "*_~(["

# --- arguments --------------------------------------------------------------

_HSPACE_RE = re.compile(r"[^\S\n]*")
_NUMBER_RE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)")
_WORD_RE = re.compile(r"\S*")
# Characters that may follow a number or a closing single quote without
# being glued to it: sentence punctuation, closing brackets, emphasis.
_AFTER_PUNCT = ";:!?)]*_~\u2014\u2013\u2026"
# A single quote only closes where a word cannot go on (so "it's" survives).
_SINGLE_TAIL = r"(?=[\s.,;:!?)\]*_~]|\Z)"
_CLOSERS: dict[str, re.Pattern[str]] = {
    '"': re.compile('"'),
    "\u201c": re.compile('[\u201d"]'),
    "'": re.compile("'" + _SINGLE_TAIL),
    "\u2018": re.compile("['\u2019]" + _SINGLE_TAIL),
}

_HOW_TO = {
    "image": 'needs a quoted description, like !image "a lighthouse at dusk"',
    "prompt": 'needs quoted text, like !prompt "Answer only in haiku."',
    "add_ai": 'needs a quoted model name, like !add_ai "model-name" "optional invitation"',
    "temperature": "needs a number, like !temperature 1.2",
    "whisper": 'needs a quoted AI and quoted text, like !whisper "AI-3" "just between us"',
    "remove_ai": 'needs a quoted AI and a quoted reason, like !remove_ai "AI-3" "it keeps repeating itself"',
    "vote": "needs yes or no, like !vote yes",
    "search": 'needs a quoted query, like !search "tallest lighthouse in Europe"',
}
_UNTERMINATED = "unterminated quote: the argument must close on the same line"
_EMPTY = "empty argument: put some text between the quotes"

# --- code and quotes --------------------------------------------------------

# One pass finds every line-level structure plus backtick runs.  Runs of
# quote lines and of blank lines are single tokens so that a megabyte of
# "\n" or ">" costs one Python iteration, not a million; possessive
# quantifiers keep the engine from saving backtrack points on every line.
_STRUCTURE_RE = re.compile(
    r"^(?:(?P<fence>[ \t]*+(?P<fence_run>`{3,}+|~{3,}+)(?P<fence_info>[^\n]*+))"
    r"|(?P<quote>(?: {0,3}+>[^\n]*+\n?+)++)"
    r"|(?P<blank>[ \t\r\n]*\n))"
    r"|(?P<tick>`++)",
    re.MULTILINE,
)
_TICK_RE = re.compile(r"`+")
# Discord renders everything after a ">>> " line as one quote.
_REST_QUOTE_RE = re.compile(r"^ {0,3}>>>(?:[ \t]|$)", re.MULTILINE)


def parse_commands(text: str) -> list[Command]:
    """Commands of one AI reply, in the order written."""
    found = list(_candidates(text))
    if not found:
        return []  # skip the masking pass for the common command-free reply
    masked = _masked_spans(text)
    commands: list[Command] = []
    cursor = 0  # a "!" inside an earlier command's argument is just text
    k = 0
    line_end = -1  # cached: many commands on one huge line must not rescan it
    for i, (start, name, name_end) in enumerate(found):
        if start < cursor:
            continue
        while k < len(masked) and masked[k][1] <= start:
            k += 1
        if k < len(masked) and masked[k][0] <= start:
            continue
        if line_end < start:
            line_end = _line_end(text, start)
        # Unquoted junk after a name is shown in ``raw`` up to the next command.
        stop = min(line_end, found[i + 1][0]) if i + 1 < len(found) else line_end
        command = _parse_at(text, name, start, name_end, line_end, stop)
        commands.append(command)
        cursor = command.end
    return commands


def visible_text(text: str, commands: list[Command] | None = None) -> str:
    """What other AIs and spectators see once settings commands are cut."""
    if commands is None:
        commands = parse_commands(text)
    cuts = sorted(
        _cut_span(text, c.start, c.end) for c in commands if _is_hidden(text, c)
    )
    if not cuts:
        return text.rstrip()
    return _apply_cuts(text, cuts).rstrip()


# --- finding commands -------------------------------------------------------


def _candidates(text: str) -> Iterator[tuple[int, str, int]]:
    """Known names in a position where a human would read them as commands."""
    length = len(text)
    for match in _BANG_RE.finditer(text):
        name = match.group(1).lower()
        if name not in _NAMES:
            continue
        name_end = match.end()
        if name_end < length and text[name_end].isalnum():
            continue  # "!image2", "!imageé": the word goes on
        start = match.start()
        if start and text[start - 1] in _LEAD_CHARS and not _stands_alone(text, start):
            continue
        yield start, name, name_end


def _stands_alone(text: str, bang: int) -> bool:
    """Reject "wow*!image": emphasis before the "!" must itself open a word.

    The walk back only crosses emphasis/bracket characters, and a "!" stops
    it, so each character is crossed at most once over the whole text.
    """
    i = bang
    while i > 0 and text[i - 1] in _LEAD_CHARS:
        i -= 1
    return i == 0 or text[i - 1].isspace()


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _parse_at(
    text: str, name: str, start: int, name_end: int, line_end: int, stop: int
) -> Command:
    """Read the arguments, which never run past the end of the command's line.

    ``stop`` (at most ``line_end``) bounds how much unusable text a malformed
    command claims, so the AI and spectators see what was wrong
    ("!temperature hot") without swallowing a later command on the line.
    """
    if name in _NO_ARGS:
        return _command(text, name, (), None, start, name_end)
    pos = name_end + 1 if text.startswith(":", name_end) else name_end
    pos = _HSPACE_RE.match(text, pos, line_end).end()
    if name == "temperature":
        return _parse_temperature(text, start, pos, line_end, stop)
    if name == "vote":
        return _parse_vote(text, start, pos, stop)
    return _parse_quoted(text, name, start, pos, line_end, stop)


def _parse_temperature(text: str, start: int, pos: int, line_end: int, stop: int) -> Command:
    """A bare number; a sentence's full stop or comma after it is not part of it."""
    match = _NUMBER_RE.match(text, pos, line_end)
    if match and _number_ends_cleanly(text, match.end(), line_end):
        return _command(text, "temperature", (match.group(),), None, start, match.end())
    end = _WORD_RE.match(text, pos, stop).end()
    end = _trim_end(text, start, end)
    return _command(text, "temperature", (), _HOW_TO["temperature"], start, end)


def _number_ends_cleanly(text: str, end: int, line_end: int) -> bool:
    """Tell "1.5." (a full stop) from "1.5x" or "1,5" (not a number we know)."""
    if end >= line_end:
        return True
    char = text[end]
    if char.isspace() or char in _AFTER_PUNCT:
        return True
    if char in ".,":
        return end + 1 >= line_end or not text[end + 1].isdigit()
    return False


def _parse_vote(text: str, start: int, pos: int, stop: int) -> Command:
    """A bare yes or no; "yes." ends a sentence, "yesterday" is not a vote."""
    match = _VOTE_RE.match(text, pos, stop)
    if match:
        return _command(text, "vote", (match.group().lower(),), None, start, match.end())
    end = _trim_end(text, start, _WORD_RE.match(text, pos, stop).end())
    return _command(text, "vote", (), _HOW_TO["vote"], start, end)


def _parse_quoted(
    text: str, name: str, start: int, pos: int, line_end: int, stop: int
) -> Command:
    """Quoted arguments: one for most commands, more for those in ``_ARITY``."""
    if pos >= line_end or text[pos] not in _CLOSERS:
        end = _trim_end(text, start, max(stop, pos))
        return _command(text, name, (), _HOW_TO[name], start, end)
    required, most = _ARITY.get(name, (1, 1))
    args: list[str] = []
    end = pos
    while len(args) < most:
        nxt = _HSPACE_RE.match(text, end, line_end).end() if args else end
        if nxt >= line_end or text[nxt] not in _CLOSERS:
            break
        value, end, error = _read_quoted(text, nxt, line_end)
        if error:
            return _command(text, name, (), error, start, _trim_end(text, start, end))
        args.append(value)
    if len(args) < required:
        return _command(text, name, (), _HOW_TO[name], start, _trim_end(text, start, max(stop, end)))
    return _command(text, name, tuple(args), None, start, end)


def _read_quoted(text: str, pos: int, line_end: int) -> tuple[str, int, str | None]:
    """Return (value, end, error); a regex finds the closer so no char is rescanned."""
    closer = _CLOSERS[text[pos]].search(text, pos + 1, line_end)
    if closer is None:
        return "", line_end, _UNTERMINATED
    value = text[pos + 1 : closer.start()]
    if not value.strip():
        return "", closer.end(), _EMPTY
    return value, closer.end(), None


def _trim_end(text: str, start: int, end: int) -> int:
    """Keep trailing spaces of a malformed argument out of ``raw``."""
    return start + len(text[start:end].rstrip())


def _command(
    text: str, name: str, args: tuple[str, ...], error: str | None, start: int, end: int
) -> Command:
    """Derive ``raw`` from the offsets so the two can never disagree."""
    return Command(name, args, error, start, end, text[start:end])


# --- masking code and quotes ------------------------------------------------


def _masked_spans(text: str) -> list[tuple[int, int]]:
    """Sorted, disjoint spans where a "!" is quoted or code, never a command."""
    spans: list[tuple[int, int]] = []
    if "`" not in text and "~" not in text and ">" not in text:
        return spans  # nothing could mask anything; skip the regex pass
    ticks: list[tuple[int, int]] = []  # backtick runs of the current paragraph
    fence: tuple[str, int, int] | None = None  # (char, length, start) if open
    for match in _STRUCTURE_RE.finditer(text):
        kind = match.lastgroup
        if fence is not None:
            if kind == "fence" and _closes(match, fence):
                spans.append((fence[2], match.end()))
                fence = None
            continue
        if kind == "tick":
            ticks.append((match.start(), match.end() - match.start()))
            continue
        if kind == "fence" and not _opens_fence(match):
            ticks.extend(_tick_runs(text, match.start(), match.end()))
            continue
        if ticks:  # any other structure ends the paragraph
            _pair_ticks(ticks, spans)
            ticks = []
        if kind == "fence":
            run = match.group("fence_run")
            fence = (run[0], len(run), match.start())
        elif kind == "quote":
            if _REST_QUOTE_RE.search(text, match.start(), match.end()):
                spans.append((match.start(), len(text)))
                return spans
            spans.append((match.start(), match.end()))
    _pair_ticks(ticks, spans)
    if fence is not None:
        spans.append((fence[2], len(text)))  # an unclosed fence runs to the end
    return spans


def _opens_fence(match: re.Match[str]) -> bool:
    """CommonMark: a backtick fence's info string may not contain a backtick."""
    return match.group("fence_run")[0] == "~" or "`" not in match.group("fence_info")


def _closes(match: re.Match[str], fence: tuple[str, int, int]) -> bool:
    run = match.group("fence_run")
    return (
        run[0] == fence[0]
        and len(run) >= fence[1]
        and not match.group("fence_info").strip()
    )


def _tick_runs(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(m.start(), m.end() - m.start()) for m in _TICK_RE.finditer(text, start, end)]


def _pair_ticks(ticks: list[tuple[int, int]], spans: list[tuple[int, int]]) -> None:
    """Pair each opening run with the next run of equal length.

    The next-equal-run index is precomputed backwards, so an unmatched run
    costs O(1) instead of a rescan of the rest of the paragraph.
    """
    following: list[int | None] = [None] * len(ticks)
    last_seen: dict[int, int] = {}
    for i in range(len(ticks) - 1, -1, -1):
        following[i] = last_seen.get(ticks[i][1])
        last_seen[ticks[i][1]] = i
    i = 0
    while i < len(ticks):
        j = following[i]
        if j is None:
            i += 1  # an unmatched run is a literal backtick
            continue
        spans.append((ticks[i][0], ticks[j][0] + ticks[j][1]))
        i = j + 1


# --- visible text -----------------------------------------------------------

_CLOSING = {"*": "*", "_": "_", "~": "~", "(": ")", "[": "]"}
# Punctuation that ended the sentence holding a cut command; left behind it
# would dangle (" ."), so it is glued to the previous word or dropped.
_ORPHAN_PUNCT = ".,;:!?"


def _is_hidden(text: str, command: Command) -> bool:
    """Only well-formed settings commands whose offsets really fit ``text``."""
    return (
        command.error is None
        and command.name in _HIDDEN
        and text[command.start : command.end] == command.raw
    )


def _cut_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen a cut over wrappers like "**(...)**" so no empty "****" is left."""
    while (
        start > 0
        and end < len(text)
        and text[start - 1] in _CLOSING
        and text[end] == _CLOSING[text[start - 1]]
    ):
        start -= 1
        end += 1
    return start, end


def _apply_cuts(text: str, cuts: list[tuple[int, int]]) -> str:
    """Cut spans line by line; only touched lines and their blank neighbours change."""
    lines: list[str | None] = list(text.split("\n"))
    per_line: dict[int, list[tuple[int, int]]] = {}
    line_no, line_start, prev = 0, 0, 0
    for start, end in cuts:
        newlines = text.count("\n", prev, start)
        if newlines:
            line_no += newlines
            line_start = text.rfind("\n", prev, start) + 1
        per_line.setdefault(line_no, []).append((start - line_start, end - line_start))
        prev = start
    dropped = []
    for no, line_cuts in per_line.items():
        kept = _cut_line(lines[no], line_cuts)
        lines[no] = kept if kept.strip() else None
        if lines[no] is None:
            dropped.append(no)
    _squeeze_blank_runs(lines, dropped)
    return "\n".join(line for line in lines if line is not None)


def _cut_line(line: str, cuts: list[tuple[int, int]]) -> str:
    """Remove cuts and tidy the seam so the sentence still reads naturally."""
    pieces: list[str] = []
    pos = 0
    last = ""  # last non-blank character kept so far
    for start, end in cuts:
        start = max(start, pos)
        piece = line[pos:start]
        if piece.strip():
            last = piece.rstrip()[-1]
        pieces.append(piece)
        pos = max(end, start)
        if start and not line[start - 1].isspace():
            continue  # glued to something: leave the seam as it is
        if pos < len(line) and line[pos] in _ORPHAN_PUNCT:
            if last and last not in _ORPHAN_PUNCT:
                pieces[-1] = piece.rstrip(" \t")  # "down !temperature 1." -> "down."
                continue
            pos += 1  # "off. !temperature 1." -> "off."
        pos = _HSPACE_RE.match(line, pos).end()
    pieces.append(line[pos:])
    return "".join(pieces).rstrip()


def _squeeze_blank_runs(lines: list[str | None], dropped: list[int]) -> None:
    """Leave at most one blank line where a dropped line sat, none at the edges."""
    done_until = -1
    for i in sorted(dropped):
        if i <= done_until:
            continue
        low, high = i, i
        while low > 0 and _is_blank(lines[low - 1]):
            low -= 1
        while high + 1 < len(lines) and _is_blank(lines[high + 1]):
            high += 1
        blanks = [j for j in range(low, high + 1) if lines[j] is not None]
        for j in blanks[1:]:
            lines[j] = None
        if blanks and (low == 0 or high == len(lines) - 1):
            lines[blanks[0]] = None
        done_until = high


def _is_blank(line: str | None) -> bool:
    return line is None or not line.strip()
