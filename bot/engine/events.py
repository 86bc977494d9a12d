"""What the engine tells the outside world, and the exact wording of its notices.

Every stage (terminal, Discord) renders these same events, so a notice reads the
same everywhere. The formats follow the reference transcript
(``shared/reference/seed-notes.md``): emoji lines are for spectators only,
bracketed lines also enter the other AIs' context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import ChatRequest, Usage

IMAGE_NOTICE_CUT = 50


@dataclass(frozen=True, slots=True)
class Picture:
    """Image bytes as they travel between image providers, the engine and stages (slots: a
    long room's history holds a Picture for every picture it made, most without their bytes)."""

    data: bytes = field(repr=False)
    mime: str = "image/png"
    offline: bool = False

    @property
    def extension(self) -> str:
        return {"image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}.get(self.mime, "png")


def sniff_picture(data: bytes) -> str | None:
    """The picture type its first bytes show (PNG, JPEG, GIF or WebP), or None.

    People's pictures are typed by their content, not by the name or type their
    uploader gave: that is what a provider will decode.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True)
class Notice:
    """A line about the room rather than in it. ``context`` lines are also seen by AIs.

    ``private`` is for moderators only (a whisper's words): stored and exported,
    never shown in the channel or the terminal, which render ``text``.
    ``ballot`` marks a removal proposal, whose message members vote on with reactions.
    """

    text: str
    context: bool = False
    private: str = ""
    ballot: bool = False


@dataclass(frozen=True)
class Reply:
    """An AI's message, as spectators and other AIs see it."""

    number: int
    label: str
    model: str
    text: str
    reasoning: str = ""  # the model's thinking; stages show it only if configured to
    usage: Usage | None = None


@dataclass(frozen=True)
class Said:
    """A human message injected into the room (a moderator's, or the open floor).

    ``picture`` is one the person attached. ``echo`` False: the person's own message is
    in the channel already (the open floor), so stages show nothing; it is still stored
    and exported, as what the AIs heard.
    """

    name: str
    text: str
    picture: Picture | None = field(default=None, repr=False)
    echo: bool = True


@dataclass(frozen=True)
class ImageMade:
    """A finished picture, posted under the label of the AI that asked for it."""

    number: int
    label: str
    caption: str
    prompt: str
    picture: Picture


@dataclass(frozen=True)
class ImageJob:
    """Not for display: asks the runner to make a picture and report back to the room."""

    job_id: int
    number: int
    prompt: str


@dataclass(frozen=True)
class SummaryJob:
    """Not for display: asks the runner to send ``request`` (a summary of what the AIs can no
    longer be sent) and hand the answer back with ``Room.summary_done`` or ``summary_failed``."""

    job_id: int
    request: ChatRequest


@dataclass(frozen=True)
class SearchJob:
    """Not for display: asks the runner to search the web and report back to the room."""

    job_id: int
    number: int
    query: str


@dataclass(frozen=True)
class SearchHit:
    """One web search result as a search adapter hands it over: plain text, never a fetched page."""

    title: str
    url: str
    extract: str = ""


@dataclass(frozen=True)
class StateChanged:
    """The room was paused, resumed or stopped; ``reason`` is already in a Notice."""

    state: str
    reason: str = ""


@dataclass(frozen=True)
class Alert:
    """Not for the channel, and not an event: what the host should know about a failure (a
    key to set, the provider's own words, a balance). The room keeps these apart
    (``Room.take_alerts``), so they are never stored or exported; the runner gives them to
    the stage's operator (the console prints them, Discord logs them and tells the moderator)."""

    text: str


@dataclass(frozen=True)
class Spent:
    """Not for display: what a turn or a picture cost, so storage can add it to the day's spending.

    Emitted where the room counts the cost, so nothing is counted twice.
    """

    kind: str  # "chat", "image" or "summary"
    usd: float
    tokens: int = 0


@dataclass(frozen=True)
class Seat:
    """An AI's seat as a fork copies it: who it is and how it was steered, not what it spent."""

    number: int
    model: str
    persona: str
    temperature: float
    additions: tuple[str, ...] = ()
    muted: bool = False
    present: bool = True


@dataclass(frozen=True)
class ForkPoint:
    """Not for display: follows each AI message (a reply, a picture) so storage can record
    where a fork from that message starts: the first ``at`` history entries, and the seats
    as they were then. Taken in the same step as the message, so no later change (a
    moderator's, another AI's) can slip into it, however late the save is written."""

    at: int
    seats: tuple[Seat, ...]


Event = Notice | Reply | Said | ImageMade | ImageJob | SearchJob | SummaryJob | StateChanged | Spent | ForkPoint


# --- notice wording ---------------------------------------------------------


def image_pending(label: str, prompt: str) -> str:
    shown = prompt if len(prompt) <= IMAGE_NOTICE_CUT else prompt[:IMAGE_NOTICE_CUT] + "..."
    return f'🎨 [{label}]: !image "{shown}" (generating...)'


def image_created(label: str, offline: bool) -> str:
    suffix = " (offline placeholder: no image model is configured)" if offline else ""
    return f"🎨 {label} created an image{suffix}"


def image_caption(label: str, prompt: str) -> str:
    return f'[{label}]: !image "{prompt}"'


def picture_attached(name: str) -> str:
    """What an AI reads where a person attached a picture (vision models get the picture too)."""
    return f"({name} attached a picture)"


def image_failed(label: str, reason: str) -> str:
    return f"🎨 {label} could not create an image: {reason}"


def searched(short: str, query: str, count: int) -> str:
    return f'🔍 [{short}]: !search "{query}" ({count} result{"" if count == 1 else "s"})'


def search_failed(short: str, query: str, reason: str) -> str:
    return f'🔍 [{short}]: !search "{query}" failed: {reason}'


def temperature_context(short: str) -> str:
    return f"[{short} adjusted their temperature]"


def ignores_temperature(model: str) -> str:
    """Why a temperature was not set, for !temperature and /seance temperature alike."""
    return f"{model} ignores temperature, so it was left as it is"


def temperature_spectator(short: str, value: float) -> str:
    return f"🌡️ [{short}]: !temperature {value:g}"


def prompt_context(short: str) -> str:
    return f"[{short} modified their system prompt]"


def prompt_spectator(short: str, text: str) -> str:
    return f'💭 [{short}]: !prompt "{text}"'


def add_ai_spectator(short: str, model: str, invitation: str | None) -> str:
    tail = f' "{invitation}"' if invitation else ""
    return f'✨ [{short}]: !add_ai "{model}"{tail}'


def whispered(sender: str, recipient: str) -> str:
    return f"🤫 {sender} whispered to {recipient}"


def removal_proposed(proposer: str, target: str, reason: str) -> str:
    because = f': "{reason}"' if reason else ""
    return f"🗳️ {proposer} proposes removing {target}{because}. The other AIs vote on their next turn."


def removal_vote(voter: str, vote: str, target: str, yes: int, no: int) -> str:
    return f"🗳️ [{voter}]: !vote {vote} on removing {target} ({yes} yes, {no} no so far)"


def removal_result(target: str, removed: bool, yes: int, no: int) -> str:
    verdict = "is removed" if removed else "stays"
    return f"🗳️ The vote is closed: {target} {verdict} ({yes} yes, {no} no)"


def addressed(label: str, by: str) -> str:
    return f"💬 {label} speaks next: {by} addressed them"


def max_ais(limit: int) -> str:
    return f"Maximum of {limit} AIs already reached"


def refused(short: str, raw: str, reason: str) -> str:
    return f"⚠️ [{short}]: {raw.strip()} was not applied: {reason}"


def limit_reached(limit: float, spent: float) -> str:
    return f"this room has reached its spending limit of ${limit:.2f} (${spent:.4f} spent)"


SUMMARISED = "📜 The AIs' oldest messages no longer fit their context; a summary now stands in for them (it is in the export)"


def forked(parent: int, label: str, what: str, event_id: int, link: str = "") -> str:
    """The first line of a fork; ``what`` is "reply" or "picture", ``link`` where the message is."""
    at = f" ({link})" if link else ""
    return (
        f"🍴 This room is a fork of room {parent} from {label}'s {what}, event {event_id}{at}: the same AIs, "
        f"with the temperatures and notes they had then, and the conversation up to there. Room {parent} goes on by itself."
    )


def turn_failed(label: str, reason: str) -> str:
    return f"⚠️ {label} could not reply: {reason}"
