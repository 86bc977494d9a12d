"""A room as plain data, so storage can keep it and a restart can bring it back.

History is append-only, so storage saves new entries as they come
(``entry_to_dict``) and only the small rest of the room (``room_state``) is
rewritten after each change. Pictures are not inlined: the caller stores their
bytes and passes a key.
"""

from __future__ import annotations

import functools
import json
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

from .catalog import Catalog, ModelInfo, UnknownModel
from .context import Entry, Usage
from .events import ImageJob, Picture, Seat
from .memory import Memory
from .room import PEOPLE_LISTED, Participant, Removal, Room, RoomSettings
from .scenarios import Scenario

VERSION = 1


def settings_to_dict(settings: RoomSettings) -> dict[str, Any]:
    data = asdict(settings)
    data["commands"] = sorted(settings.commands)
    return data


def settings_from_dict(data: dict[str, Any]) -> RoomSettings:
    known = {f.name for f in fields(RoomSettings)}
    values = {k: v for k, v in data.items() if k in known}
    if "commands" in values:
        values["commands"] = frozenset(values["commands"])
    return RoomSettings(**values)


def room_state(room: Room) -> dict[str, Any]:
    """Everything about the room except its history and settings."""
    state = _room_fields(room)
    state["participants"] = [_participant_to_dict(p) for p in room.participants.values()]
    return state


class StateJson:
    """One room's ``room_state`` as JSON, each AI's part encoded again only when it changed.

    Why: the state is written after every change, twice a turn, and its AIs' parts were
    most of its bytes and of the time to encode it (at a thousand rooms, a fifteenth of
    the process), though a turn changes only the AI that spoke. The text is the same as
    ``json.dumps(room_state(room))``.
    """

    __slots__ = ("_seats",)

    def __init__(self) -> None:
        self._seats: dict[int, tuple[tuple[Any, ...], str]] = {}

    def __call__(self, room: Room) -> str:
        seats, parts = {}, []
        for participant in room.participants.values():
            key = _participant_key(participant)
            known = self._seats.get(participant.number)
            if known is None or known[0] != key:
                known = (key, json.dumps(_participant_to_dict(participant)))
            seats[participant.number] = known
            parts.append(known[1])
        self._seats = seats
        return json.dumps(_room_fields(room))[:-1] + ', "participants": [' + ", ".join(parts) + "]}"


def _participant_key(p: Participant) -> tuple[Any, ...]:
    """Every field's value as it is now, lists and usage copied since they change in place
    (tests/engine/test_snapshot.py changes each of Participant's fields in turn)."""
    u = p.usage
    usage = (u.input_tokens, u.cached_input_tokens, u.cache_write_tokens, u.output_tokens, u.reasoning_tokens, u.cost_usd)
    return (
        p.number, p.model.name, p.persona, p.temperature, tuple(p.additions), p.muted, p.skip_next, p.present,
        usage, p.cost_usd, p.turns, tuple(p.image_turns),
    )


def _room_fields(room: Room) -> dict[str, Any]:
    return {
        "version": VERSION,
        "state": room.state,
        "topic": room.topic,
        "humans": list(room.humans),
        "more_people": room.more_people,
        "blocked": dict(room.blocked),
        "turns_taken": room.turns_taken,
        "usage": _usage_to_dict(room.usage),
        "cost_usd": room.cost_usd,
        "pictures": room.pictures,
        "votes": dict(room.votes),
        "queue": list(room._queue),
        "forced": room._forced,
        "addressed": list(room._addressed) if room._addressed else None,
        "removal": _removal_to_dict(room.removal),
        "current": room._current,
        "next_number": room._next_number,
        "next_job": room._next_job,
        "jobs": {str(k): list(v) for k, v in room._jobs.items()},
        "searches": {str(k): list(v) for k, v in room._searches.items()},
        "search_turns": list(room._search_turns),
        "memory": room.memory.to_dict(),
    }


def entry_to_dict(entry: Entry, picture_key: str | None = None) -> dict[str, Any]:
    # Not ``asdict``: it would deep-copy the picture's bytes only to drop them here.
    data = {name: value for name in _ENTRY_FIELDS if (value := getattr(entry, name)) is not None}
    if entry.picture is not None:
        data["picture"] = {"key": picture_key, "mime": entry.picture.mime, "offline": entry.picture.offline}
    return data


def entry_from_dict(data: dict[str, Any], load_picture: Callable[[str], bytes | None]) -> Entry:
    values = dict(data)
    # Interned, as a live room's are: JSON gives each entry its own copy of its kind and its
    # speaker's label, a ninth of a restored room's memory.
    values["kind"] = sys.intern(values["kind"])
    if "name" in values:
        values["name"] = sys.intern(values["name"])
    ref = values.pop("picture", None)
    picture = None
    if ref and ref.get("key") and (raw := load_picture(ref["key"])) is not None:
        picture = Picture(raw, ref.get("mime", "image/png"), ref.get("offline", False))
    return Entry(picture=picture, **values)


def restore_room(
    catalog: Catalog,
    scenario: Scenario,
    settings: RoomSettings,
    state: dict[str, Any],
    history: list[Entry],
) -> Room:
    """The room as it was; pending picture jobs come back with ``resumable_jobs``, searches
    with ``Room.search_jobs``."""
    room = Room(catalog, scenario, settings, topic=state.get("topic"))
    room.history = history or room.history
    room.state = state["state"]
    room.humans = list(state.get("humans", []))
    room.more_people = state.get("more_people", False)
    room.blocked = dict(state.get("blocked", {}))
    room.turns_taken = state.get("turns_taken", 0)
    room.usage = Usage(**state.get("usage", {}))
    room.cost_usd = state.get("cost_usd", 0.0)
    room.pictures = state.get("pictures", 0)
    room.votes = dict(state.get("votes", {}))
    room._queue = deque(state.get("queue", []))
    # A turn that was in flight when the room was saved never finished: that AI goes first.
    room._forced = state.get("current") or state.get("forced")
    addressed = state.get("addressed")
    room._addressed = (addressed[0], addressed[1]) if addressed else None
    room.removal = _removal_from_dict(state.get("removal"))
    room._next_number = state.get("next_number", 1)
    room._next_job = state.get("next_job", 1)
    room._jobs = {int(k): (v[0], v[1]) for k, v in state.get("jobs", {}).items()}
    room._searches = {int(k): (v[0], v[1]) for k, v in state.get("searches", {}).items()}
    room._search_turns = list(state.get("search_turns", []))
    room.participants = {p["number"]: _participant_from_dict(p, catalog) for p in state.get("participants", [])}
    # A summary being made when the room was saved is asked for again on the next turn.
    room.memory = Memory.from_dict(state.get("memory"))
    return room


def _removal_to_dict(removal: Removal | None) -> dict[str, Any] | None:
    if removal is None:
        return None
    return {**asdict(removal), "waiting": sorted(removal.waiting)}


def _removal_from_dict(data: dict[str, Any] | None) -> Removal | None:
    if not data:
        return None
    return Removal(data["target"], data["proposer"], data["reason"], dict(data["ballots"]), set(data["waiting"]))


def seats_to_list(seats: tuple[Seat, ...]) -> list[dict[str, Any]]:
    return [{**asdict(seat), "additions": list(seat.additions)} for seat in seats]


@functools.lru_cache(maxsize=4096)
def seats_json(seats: tuple[Seat, ...]) -> str:
    """The seats as stored with each AI message. Seats seldom change, and every room's
    every message stores them: one encoding per distinct set of seats (seats are frozen)."""
    return json.dumps(seats_to_list(seats))


def fork_state(
    parent: dict[str, Any], seats: list[dict[str, Any]], history: list[dict[str, Any]], speaker: int | None
) -> dict[str, Any]:
    """The state of a new room forked from ``parent`` (its ``room_state``) at an AI message.

    The seats are as they were at that message (``ForkPoint``); ``history`` is the stored
    entries up to it. What the parent counted (turns, spending, votes, pictures still being
    made) stays with the parent: the fork is a new room. The people it heard are read from
    that history, so the AIs' system prompt names who had spoken by then. Its members'
    blocks carry over, as moderation of the same people. The round goes on after
    ``speaker``, the AI whose message it forked from.
    """
    humans: list[str] = []
    for entry in history:
        name = entry.get("name")
        if entry.get("kind") == "human" and name and name not in humans:
            humans.append(name)
    participants = [
        {
            "number": seat["number"], "model": seat["model"], "persona": seat["persona"],
            "temperature": seat["temperature"], "additions": list(seat.get("additions", [])),
            "muted": seat.get("muted", False), "present": seat.get("present", True),
        }
        for seat in seats
    ]
    present = [p["number"] for p in participants if p["present"]]
    return {
        "version": VERSION,
        "state": "running",
        "topic": parent.get("topic"),
        "humans": humans[:PEOPLE_LISTED],
        "more_people": len(humans) > PEOPLE_LISTED,
        "blocked": dict(parent.get("blocked", {})),
        "queue": [n for n in present if speaker is not None and n > speaker],
        "next_number": max((p["number"] for p in participants), default=0) + 1,
        "participants": participants,
    }


def resumable_jobs(room: Room) -> list[ImageJob]:
    """Picture jobs that were running when the room was saved; the runner starts them again."""
    return [ImageJob(job_id, number, prompt) for job_id, (number, prompt) in room._jobs.items()]


def _participant_to_dict(participant: Participant) -> dict[str, Any]:
    """As ``asdict`` would give it, but with the model's name only, and without ``asdict`` or
    ``fields`` (both walk the class's fields on every call): the state of every room is written
    after each turn, and at a thousand rooms these copies were a twelfth of the process's CPU."""
    data = {name: getattr(participant, name) for name in _PARTICIPANT_FIELDS}
    data["model"] = participant.model.name
    data["usage"] = _usage_to_dict(participant.usage)
    data["additions"] = list(participant.additions)
    data["image_turns"] = list(participant.image_turns)
    return data


def _usage_to_dict(usage: Usage) -> dict[str, Any]:
    return {name: getattr(usage, name) for name in _USAGE_FIELDS}


_PARTICIPANT_FIELDS = tuple(f.name for f in fields(Participant))
_ENTRY_FIELDS = tuple(f.name for f in fields(Entry) if f.name != "picture")
_USAGE_FIELDS = tuple(f.name for f in fields(Usage))


def _participant_from_dict(data: dict[str, Any], catalog: Catalog) -> Participant:
    values = dict(data)
    name = values.pop("model")
    try:
        model = catalog.get(name)
    except UnknownModel:  # the catalog changed since: keep the seat, its turns will fail with a notice
        model = ModelInfo(name=name, routes={})
    values["usage"] = Usage(**values.get("usage", {}))
    return Participant(model=model, **values)
