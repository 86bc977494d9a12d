"""What each AI sees: its request, built from the room's history from its own seat.

An AI's own replies are ``assistant`` turns; everything else arrives as ``user``
turns prefixed with the speaker's label, merged so roles alternate, and trimmed
from the oldest to the model's budget. Also here: the hygiene applied to what a
model writes before anyone sees it.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .catalog import ModelInfo
from .events import Picture

if TYPE_CHECKING:
    from .room import Participant

SYSTEM_NAME = "Séance"
PERSON_TAG = "person"  # people speak as "[person: Vera]": a label no AI and no system line can have
NAME_LIMIT = 40
CHARS_PER_TOKEN = 4  # a rough estimate that errs on the side of sending less
IMAGE_TOKENS = 1000
MAX_STOP_SEQUENCES = 4


@dataclass(frozen=True)
class Message:
    role: str  # "user" | "assistant"
    content: str
    pictures: tuple[Picture, ...] = ()


@dataclass(frozen=True)
class ChatRequest:
    """A provider-neutral chat request; each provider adapter turns it into its wire format."""

    model: ModelInfo
    system: str
    messages: tuple[Message, ...]
    temperature: float | None
    max_tokens: int
    stop: tuple[str, ...] = ()


@dataclass
class Usage:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None  # as reported by the provider, if it reports one

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.output_tokens += other.output_tokens
        self.reasoning_tokens += other.reasoning_tokens
        if other.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + other.cost_usd


@dataclass(slots=True)
class Entry:
    """One item of the room's history.

    ``kind`` is one of: ``opening`` (pinned, never trimmed), ``reply``,
    ``human``, ``notice`` (a bracketed context notice), ``image`` and
    ``private`` (seen only by ``audience``, e.g. the outcome of its commands).
    Slots, not a ``__dict__``: a room holds a context window of entries (a thousand
    and more), and a dict per entry was half the size of its fields.
    """

    kind: str
    text: str
    speaker: int | None = None
    name: str = ""
    own_text: str | None = None
    audience: int | None = None
    exclude: int | None = None
    picture: Picture | None = field(default=None, repr=False)

    @property
    def pinned(self) -> bool:
        return self.kind == "opening"

    def visible_to(self, seat: int) -> bool:
        return (self.audience is None or self.audience == seat) and self.exclude != seat

    def view(self, seat: int) -> tuple[str, str] | None:
        """(role, text) of this entry for the AI in ``seat``, or None if it does not see it."""
        if not self.visible_to(seat):
            return None
        if self.kind == "reply" and self.speaker == seat:
            return ("assistant", self.own_text or self.text)
        return ("user", _user_text(self))

    def tokens(self) -> int:
        return len(self.text) // CHARS_PER_TOKEN + 4


@dataclass(frozen=True)
class Recap:
    """The room's summary in an AI's request: it stands in for every entry before ``upto``
    (an absolute history index), which is no longer sent. ``text`` is empty until the
    first summary is made; entries before ``upto`` are then still left out."""

    text: str = ""
    upto: int = 0


RECAP_HEADER = "Earlier in this room, in a summary (the messages it covers are no longer shown):"


def recap_message(text: str) -> str:
    """How the summary reads to an AI: the room's own line, like every other ``[Séance]`` line."""
    return f"[{SYSTEM_NAME}]: {RECAP_HEADER}\n{text}"


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


def token_budget(model: ModelInfo, cap: int) -> int:
    """Context tokens available for history: the window less the reply, within the room's cap."""
    return max(1024, min(model.context_window - model.max_output, cap))


def build_messages(
    history: list[Entry],
    seat: int,
    budget: int,
    vision: bool,
    max_pictures: int,
    recap: Recap | None = None,
) -> tuple[Message, ...]:
    """The history from ``seat``'s view within ``budget`` tokens; pinned entries always stay.

    When the history is too long, the oldest entries go in whole steps of a
    quarter of the budget, not one entry per turn: the start of the request
    then stays the same for many turns, which is what prompt caches reuse.
    With a ``recap`` (the room's summary), entries before ``recap.upto`` are
    never sent and the summary stands just before the oldest entry that is.
    """
    floor = recap.upto if recap is not None else 0
    seen = [(index, entry) for index, entry in enumerate(history) if entry.visible_to(seat)]
    loose = [entry for index, entry in seen if not entry.pinned and index >= floor]
    pictures_in = sum(1 for entry in loose if entry.picture is not None) if vision else 0
    needed = sum(entry.tokens() for entry in loose) + IMAGE_TOKENS * min(pictures_in, max_pictures)
    excess = needed - budget
    if excess > 0:
        step = max(1, budget // 4)
        excess = -(-excess // step) * step  # round up to a whole step
        dropped = first = 0
        while first < len(loose) and dropped < excess:
            dropped += loose[first].tokens()
            first += 1
        loose = loose[first:]
    keep = {id(entry) for entry in loose}
    shown_pictures = _newest_pictures(loose, max_pictures) if vision else set()
    recap_due = recap is not None and bool(recap.text)
    items: list[tuple[str, str, Picture | None]] = []
    for _, entry in seen:
        kept = id(entry) in keep
        if kept and recap_due:
            items.append(("user", recap_message(recap.text), None))  # type: ignore[union-attr]
            recap_due = False
        if entry.pinned or kept:
            items.append((*entry.view(seat), entry.picture if id(entry) in shown_pictures else None))  # type: ignore[misc]
    if recap_due:
        items.append(("user", recap_message(recap.text), None))  # type: ignore[union-attr]
    return _merge(items)


class SeatView:
    """One seat's view of a room's history, kept as the history grows; gives what
    ``build_messages`` gives for the whole history, without reading all of it each turn.

    It holds the entries the seat sees with running totals of their tokens and
    the places of their pictures, so trimming is a binary search and a request
    costs only the entries it sends. Indices are absolute: the place of an entry
    in the room's whole history, even after old entries left memory (``forget``).
    ``seat`` None is the public view (what a newcomer will have seen).
    """

    def __init__(self, seat: int | None):
        self.seat = seat
        self.synced = 0  # the absolute index of the next history entry to read
        self.pinned: list[tuple[int, Entry]] = []
        self.loose: list[Entry] = []
        # Machine integers, not lists of int objects: a thousand rooms' views hold a context
        # window's entries each, and an int object and its slot take 40 bytes, an item here 4
        # (no room reaches two billion entries, and the token sums count only what is remembered).
        self.where = array("i")  # the absolute index of each loose entry
        self.base = 0  # loose entries before this count were forgotten
        self.forgotten_tokens = 0  # their tokens
        # tokens[i] + forgotten_tokens: tokens of all loose entries before loose number base + i
        self.tokens = array("i", [0])
        self.pictures = array("i")  # loose numbers of the remembered entries with a picture
        self.pictures_forgotten = 0

    def sees(self, entry: Entry) -> bool:
        return entry.audience is None if self.seat is None else entry.visible_to(self.seat)

    def copy_for(self, seat: int) -> SeatView:
        """A newcomer's view: everything public so far (nothing earlier was addressed to it)."""
        view = SeatView(seat)
        view.synced, view.base, view.pictures_forgotten = self.synced, self.base, self.pictures_forgotten
        view.forgotten_tokens = self.forgotten_tokens
        view.pinned, view.loose, view.where = list(self.pinned), list(self.loose), array("i", self.where)
        view.tokens, view.pictures = array("i", self.tokens), array("i", self.pictures)
        return view

    def read(self, history: list[Entry], offset: int) -> None:
        """Take in the entries appended since the last read; ``history[0]`` is entry ``offset``."""
        if self.synced < offset:
            raise RuntimeError("entries left memory before this view read them")
        for index in range(self.synced, offset + len(history)):
            entry = history[index - offset]
            if not self.sees(entry):
                continue
            if entry.pinned:
                self.pinned.append((index, entry))
                continue
            if entry.picture is not None:
                self.pictures.append(self.base + len(self.loose))
            self.loose.append(entry)
            self.where.append(index)
            self.tokens.append(self.tokens[-1] + entry.tokens())
        self.synced = offset + len(history)

    def messages(
        self, budget: int, vision: bool, max_pictures: int, recap: Recap | None = None
    ) -> tuple[Message, ...]:
        """Exactly ``build_messages(whole history, seat, ...)``, at the cost of what is sent."""
        assert self.seat is not None, "the public view is a template, not a seat"
        floor = recap.upto if recap is not None else 0
        first = self._first_kept(budget, vision, max_pictures, floor)
        shown = set(self._newest_pictures(first, max_pictures)) if vision else set()
        pins = [(index, _user_text(pin)) for index, pin in self.pinned]  # in practice only the opening
        if recap is not None and recap.text:  # just before the oldest entry sent
            place = self.where[first - self.base] if first - self.base < len(self.where) else self.synced
            pins.insert(bisect_left([index for index, _ in pins], place), (place, recap_message(recap.text)))
        merged: list[tuple[str, list[str], list[Picture]]] = []
        at = first - self.base
        for index, text in pins:
            stop = bisect_left(self.where, index, at)
            self._render(merged, at, stop, shown)
            _append(merged, "user", text, None)
            at = stop
        self._render(merged, at, len(self.loose), shown)
        return _messages(merged)

    def _render(self, merged: list[tuple[str, list[str], list[Picture]]], start: int, stop: int, shown: set[int]) -> None:
        """Loose entries ``start:stop`` (list places) onto ``merged``: ``Entry.view`` and ``_merge``
        written out, because this loop is most of a turn's engine time."""
        seat = self.seat
        number = self.base + start
        for entry in self.loose[start:stop]:
            if entry.kind == "reply" and entry.speaker == seat:
                role, text = "assistant", entry.own_text or entry.text
            else:
                role, text = "user", _user_text(entry)
            if merged and merged[-1][0] == role:
                merged[-1][1].append(text)
            else:
                merged.append((role, [text], []))
            if number in shown:
                merged[-1][2].append(entry.picture)  # type: ignore[arg-type]
            number += 1

    def _first_kept(self, budget: int, vision: bool, max_pictures: int, floor: int = 0) -> int:
        """The loose number of the oldest entry sent: oldest entries go in quarter-budget steps.
        Entries before absolute index ``floor`` (covered by a summary) are never sent."""
        start = bisect_left(self.where, floor) if floor else 0
        low = self.tokens[start] if floor else -self.forgotten_tokens  # without a summary, forgotten ones count
        excess = self.tokens[-1] - low - budget
        if vision:
            excess += IMAGE_TOKENS * min(self._pictures_from(start, floor), max_pictures)
        if excess <= 0:
            return self.base + start  # everything remembered (nothing was forgotten unless this holds)
        step = max(1, budget // 4)
        excess = -(-excess // step) * step
        # the fewest oldest entries whose tokens reach the excess; those before base can never be fewer
        return self.base + min(bisect_left(self.tokens, low + excess), len(self.loose))

    def _pictures_from(self, start: int, floor: int) -> int:
        """Pictures among the loose entries from list place ``start``, counting forgotten ones
        only without a summary (with one, everything forgotten lies before its floor)."""
        count = len(self.pictures) - bisect_left(self.pictures, self.base + start)
        return count if floor else count + self.pictures_forgotten

    def overflow(self, budget: int, vision: bool, max_pictures: int, floor: int) -> int | None:
        """Where a new summary should reach when this seat's request leaves out entries from
        ``floor`` on (None if it leaves out none): far enough that what follows fills at most
        three quarters of the budget, so the next summary is a quarter budget away."""
        start = bisect_left(self.where, floor)
        first = self._first_kept(budget, vision, max_pictures, floor) - self.base
        if first <= start:
            return None
        pictures = IMAGE_TOKENS * min(self._pictures_from(start, floor), max_pictures) if vision else 0
        keep = budget - budget // 4 - pictures
        at = max(first, bisect_left(self.tokens, self.tokens[-1] - keep))
        return self.where[at] if at < len(self.loose) else self.synced

    def between(self, start: int, stop: int) -> list[tuple[int, Entry]]:
        """(absolute index, entry) of the loose entries this view holds from ``start`` to before ``stop``."""
        low, high = bisect_left(self.where, start), bisect_left(self.where, stop)
        return list(zip(self.where[low:high], self.loose[low:high]))

    def _newest_pictures(self, first: int, limit: int) -> list[int]:
        start = bisect_left(self.pictures, first)
        return list(self.pictures[max(start, len(self.pictures) - limit) :]) if limit > 0 else []

    def needed_from(self, most_tokens: int) -> int:
        """The absolute index of the oldest entry a request within ``most_tokens`` could still send.

        A request sends a newest run of loose entries of at most its budget in
        tokens, so an entry followed by ``most_tokens`` or more is never sent again.
        """
        after = bisect_right(self.tokens, self.tokens[-1] - most_tokens)
        at = max(0, after - 1)
        return self.where[at] if at < len(self.loose) else self.synced

    def wanted_pictures(self, limit: int) -> list[Entry]:
        """The entries whose pictures a request could still attach (its newest ``limit``)."""
        return [self.loose[n - self.base] for n in self._newest_pictures(self.base, limit)]

    def forget(self, before: int) -> None:
        """Let go of loose entries before absolute index ``before`` (pinned ones always stay)."""
        drop = bisect_left(self.where, before)
        if drop == 0:
            return
        gone = bisect_left(self.pictures, self.base + drop)
        self.pictures_forgotten += gone
        del self.pictures[:gone], self.loose[:drop], self.where[:drop], self.tokens[:drop]
        self.base += drop
        first = self.tokens[0]  # the sums start again from what is remembered
        self.forgotten_tokens += first
        self.tokens = array("i", [total - first for total in self.tokens])


def _user_text(entry: Entry) -> str:
    """How an entry reads to everyone but its own speaker: labelled with who said it."""
    if entry.kind == "reply":
        return f"[{entry.name}]: {entry.text}"
    if entry.kind == "human":  # its text was escaped once, when it was said (Room.inject)
        return f"[{PERSON_TAG}: {entry.name}]: {entry.text}"
    if entry.kind == "private":
        return f"[{SYSTEM_NAME}]: {entry.text}"
    return entry.text


def _append(merged: list[tuple[str, list[str], list[Picture]]], role: str, text: str, picture: Picture | None) -> None:
    if merged and merged[-1][0] == role:
        merged[-1][1].append(text)
    else:
        merged.append((role, [text], []))
    if picture is not None:
        merged[-1][2].append(picture)


def _newest_pictures(entries: list[Entry], limit: int) -> set[int]:
    chosen: set[int] = set()
    for entry in reversed(entries):
        if len(chosen) >= limit:
            break
        if entry.picture is not None:
            chosen.add(id(entry))
    return chosen


def _merge(items: list[tuple[str, str, Picture | None]]) -> tuple[Message, ...]:
    """Join neighbours of the same role so user and assistant alternate."""
    merged: list[tuple[str, list[str], list[Picture]]] = []
    for role, text, picture in items:
        _append(merged, role, text, picture)
    return _messages(merged)


def _messages(merged: list[tuple[str, list[str], list[Picture]]]) -> tuple[Message, ...]:
    messages = [Message(role, "\n\n".join(texts), tuple(pics)) for role, texts, pics in merged]
    if not messages or messages[-1].role == "assistant":
        # Most APIs treat a trailing assistant turn as text to continue; ask for a new one.
        messages.append(Message("user", f"[{SYSTEM_NAME}]: It is your turn again."))
    return tuple(messages)


# --- people ----------------------------------------------------------------------

_HIDDEN = {"Cf", "Cc", "Co", "Cs"}  # zero-width joiners, direction overrides, controls
_IMITATION = re.compile(r"[\W_]*(?:a[il][\W_]*\d|s[eé]ance)", re.IGNORECASE)  # "Al-1" reads as "AI-1"
# Letters from other scripts that look like the Latin ones of "AI" and "Séance" (NFKC keeps them apart).
_LOOKALIKES = str.maketrans("АаІіӀΑαΙιЅѕЕеСсοОо", "AaIiIAaIiSsEeCcoOo")
_LINE_START = re.compile(
    r"^(?P<lead>[ \t]*(?:[*_~>][ \t]*){0,3})(?=\[|AI-\d+[ \t]*\([^)\n]{1,80}\)[ \t]*:)", re.MULTILINE | re.IGNORECASE
)


def person_name(display_name: str) -> str:
    """A person's name as the room shows it: one line, no brackets, not mistakable for an AI or the system.

    A Discord display name is chosen by its owner, so "AI-1 (Gemini 3 Flash)" or
    "Séance" are possible; such a name is quoted and marked "(a person)", here and
    on the webhook persona that speaks for them.
    """
    text = unicodedata.normalize("NFKC", display_name)
    text = "".join(" " if c.isspace() else c for c in text if c.isspace() or unicodedata.category(c) not in _HIDDEN)
    flat = " ".join(text.translate({ord("["): "(", ord("]"): ")"}).split())
    flat = flat[:NAME_LIMIT].strip() or "someone"
    if _IMITATION.match(_unaccented(flat).translate(_LOOKALIKES)):
        return f"“{flat}” (a person)"
    return flat


def _unaccented(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def escape_lines(text: str) -> str:
    """A person's words with every line that could pass for a speaker label escaped (``\\[``).

    Merged into one user message, a person's second line "[AI-2 (DeepSeek R1)]: ..."
    or "[Séance]: ..." would otherwise read as that speaker's.
    """
    return _LINE_START.sub(lambda m: m["lead"] + "\\", text)


# --- the system prompt ---------------------------------------------------------

COMMAND_HELP = {
    "image": '!image "a description" - create a picture that everyone in the room sees.',
    "search": (
        '!search "a few words" - search the web; the top results (title, address, a short extract) '
        "reach everyone in the room before the next turn."
    ),
    "prompt": '!prompt "text" - add a lasting note to your own system prompt (your last 5 are kept).',
    "temperature": "!temperature 0.8 - set your own sampling temperature, 0 to {max_temperature:g}, from your next turn.",
    "add_ai": '!add_ai "Model name" "invitation" - invite another AI into the room (at most {max_ais} AIs).',
    "mute_self": "!mute_self - skip your next turn.",
    "list_models": "!list_models - receive the names of the models you can invite.",
    "whisper": '!whisper "AI-3" "text" - a private message only AI-3 receives; the others only see that you whispered.',
    "remove_ai": '!remove_ai "AI-3" "reason" - propose removing an AI; the others vote, a majority of those who vote decides.',
    "vote": "!vote yes or !vote no - answer an open proposal to remove an AI (you are told when one is open).",
}
ADDRESSING_HELP = 'Start a line with "@AI-3" to hand AI-3 the next turn (a moderator or the audience may still choose otherwise).'



def command_docs(
    enabled: frozenset[str],
    model_names: list[str],
    max_ais: int,
    max_commands: int,
    max_temperature: float | None = 2.0,
) -> str:
    """The commands this AI may use; ``max_temperature`` None when its model ignores temperature."""
    if max_temperature is None:
        enabled = enabled - {"temperature"}
    if not enabled:
        return ""
    lines = ["You can act on the room with these commands, each at the start of a line of your reply:"]
    lines += [
        COMMAND_HELP[name].format(max_ais=max_ais, max_temperature=max_temperature or 0)
        for name in COMMAND_HELP
        if name in enabled
    ]
    if "add_ai" in enabled:
        lines.append("Models you can invite: " + ", ".join(model_names) + ".")
    lines.append(ADDRESSING_HELP)
    lines.append(
        f"Commands are applied in the order written, at most {max_commands} per reply, "
        "and you are told how each one went. Commands inside code blocks or quotes are ignored."
    )
    return "\n".join(lines)


def system_prompt(
    scenario_text: str,
    participant: Participant,
    others: list[str],
    humans: list[str],
    docs: str,
    more_people: bool = False,
) -> str:
    """The AI's standing instructions; the same from turn to turn, so prompt caches keep it.

    ``humans`` is the room's short list of the first people who spoke (names
    only): once it is full, newcomers change nothing here ("and others").
    """
    parts = [scenario_text.strip()] if scenario_text.strip() else []
    if participant.persona.strip():
        parts.append(participant.persona.strip())
    present = ", ".join(others) if others else "nobody else yet"
    people = ", ".join(humans) + (" and others" if more_people else "")
    seat = (
        f"You are {participant.label}. Also present: {present}."
        + (f" People who have spoken here: {people}." if humans else "")
        + f' Messages from others arrive prefixed with their name in brackets, like "[{others[0] if others else "AI-2 (Model)"}]: ";'
        f' people\'s messages like "[{PERSON_TAG}: Name]: ", and "[{SYSTEM_NAME}]: " lines come from the room itself.'
        " Write only your own message, without a name in front, and never write lines for anyone else."
    )
    parts.append(seat)
    if participant.additions:
        parts.append("Notes you chose to keep (!prompt):\n" + "\n".join(f"- {a}" for a in participant.additions))
    if docs:
        parts.append(docs)
    return "\n\n".join(parts)


def stop_sequences(others: list[str]) -> tuple[str, ...]:
    """Stop where a model starts writing another participant's line."""
    return tuple(f"\n[{label}]" for label in others[:MAX_STOP_SEQUENCES])


# --- reply hygiene -------------------------------------------------------------

_THINK = re.compile(r"<think(?:ing)?>.*?(?:</think(?:ing)?>|\Z)", re.DOTALL | re.IGNORECASE)
_LABEL_LINE = re.compile(
    r"^[ \t]*[*_]{0,3}(?P<open>\[)?[*_]{0,3}AI-(?P<n>\d+)(?P<model>[ \t]*\([^)\n]{1,80}\))?"
    r"[*_]{0,3}\]?[*_]{0,3}[ \t]*(?P<colon>:)?[*_]{0,3}[ \t]*",
    re.MULTILINE,
)


_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


def clean_reply(text: str, seat: int, humans: tuple[str, ...] = ()) -> str:
    """Strip reasoning tags, a leading own label, and anything written as someone else."""
    text = _trim(_THINK.sub("", text))
    lead = _LABEL_LINE.match(text)
    if lead and int(lead["n"]) == seat and (lead["colon"] or _ends_line(text, lead.end())):
        text = _trim(text[lead.end() :])
    cut = _impersonation_start(text, seat, humans)
    return _trim(text[:cut] if cut is not None else text)


def _trim(text: str) -> str:
    """Drop blank lines around the text but keep the indentation of its first line (ASCII art)."""
    return _LEADING_BLANK_LINES.sub("", text).rstrip()


def _ends_line(text: str, pos: int) -> bool:
    return pos >= len(text) or text[pos] == "\n"


def _impersonation_start(text: str, seat: int, humans: tuple[str, ...]) -> int | None:
    """Offset of the first line where the model writes as another participant, a person or the room."""
    starts = [_other_ai_line(text, seat), _voice_line(text)]
    if humans:  # "[Vera]: ..." without the person tag: still a person's line (one pass for all names)
        names = "|".join(re.escape(name) for name in humans)
        found = re.search(rf"^[ \t]*\[(?:{names})\][ \t]*:", text, re.MULTILINE)
        starts.append(found.start() if found else None)
    return min((start for start in starts if start is not None), default=None)


def _other_ai_line(text: str, seat: int) -> int | None:
    for match in _LABEL_LINE.finditer(text):
        if int(match["n"]) == seat or not (match["open"] or match["model"]):
            continue  # a bare "AI-2:" is more often addressed to AI-2 than written as it
        if match["colon"] or _ends_line(text, match.end()):
            return match.start()
    return None


_BRACKET_LINE = re.compile(
    r"^[ \t]*[*_~]{0,3}\[[*_~]{0,3}(?P<inner>[^\]\n]{1,200})\](?P<rest>[^\n]*)", re.MULTILINE
)
_PERSON_INNER = re.compile(rf"[ \t]*{PERSON_TAG}[ \t]*:", re.IGNORECASE)
_NOTICE_INNER = re.compile(r"[ \t]*AI-\d+(?P<after>[^\n]*)", re.IGNORECASE)
_MODEL_ONLY = re.compile(r"[ \t]*(?:\([^)\n]*\))?[ \t]*[*_~]*")
_LINE_END = re.compile(r"[ \t*_~.]*")


def _voice_line(text: str) -> int | None:
    """The first line that speaks in a voice no AI has: the room's ("[Séance]: ..."), a person's
    ("[person: Vera]: ..."), or a bracketed notice about an AI ("[AI-1 adjusted their temperature]")."""
    for match in _BRACKET_LINE.finditer(text):
        inner = match["inner"]
        if _unaccented(inner).strip(" \t*_~").casefold().startswith("seance") or _PERSON_INNER.match(inner):
            return match.start()
        notice = _NOTICE_INNER.match(inner)
        if notice and not _MODEL_ONLY.fullmatch(notice["after"]) and _LINE_END.fullmatch(match["rest"]):
            return match.start()
    return None
