"""A room saved as plain data and restored carries on exactly as the original would."""

from __future__ import annotations

import dataclasses
import json

from bot import data
from bot.engine import ForkPoint, ImageJob, Picture, Room, RoomSettings, Seat, Usage
from bot.engine.snapshot import (
    entry_from_dict,
    entry_to_dict,
    fork_state,
    restore_room,
    resumable_jobs,
    StateJson,
    room_state,
    settings_from_dict,
    settings_to_dict,
)


def played_room() -> Room:
    settings = RoomSettings(max_turns=40, budget_usd=5.0, commands=frozenset({"image", "prompt", "temperature", "add_ai"}))
    room = Room(data.catalog(), data.scenarios()["salon"], settings, topic="glass")
    room.add("Gemini 3 Flash")
    room.add("DeepSeek R1")
    for text in ['!temperature 1.3\n!image "a glass harbour"', '!add_ai "Kimi K2" "join"', '!prompt "be brief"']:
        turn = room.next_turn()
        room.complete_turn(turn, text)
    room.image_done(1, Picture(b"png-bytes", "image/png"))
    turn = room.next_turn()
    room.complete_turn(turn, '!image "a second picture, still pending"')
    room.inject("Ada", "what about sand?")
    room.vote("ann", 2)
    room.mute(3)
    room.block("666", "Spammer")
    for n in range(12):
        room.inject(f"Poster {n}", "hi")
    room.take_events()
    return room


def round_trip(room: Room) -> Room:
    pictures: dict[str, bytes] = {}

    def key_for(index, entry):
        if entry.picture is None:
            return None
        pictures[f"p{index}"] = entry.picture.data
        return f"p{index}"

    history = json.loads(json.dumps([entry_to_dict(e, key_for(i, e)) for i, e in enumerate(room.history)]))
    state = json.loads(json.dumps(room_state(room)))
    settings = settings_from_dict(json.loads(json.dumps(settings_to_dict(room.settings))))
    restored_history = [entry_from_dict(d, pictures.get) for d in history]
    return restore_room(room.catalog, room.scenario, settings, state, restored_history)


def test_a_rooms_state_json_re_encodes_each_ai_when_anything_of_it_changed():
    """The journal's encoder keeps each AI's JSON between saves; whatever changes an AI (a turn's
    usage added in place, a moderator's mute, a prompt, a removal) shows in the next save."""
    room, encode = played_room(), StateJson()
    assert encode(room) == json.dumps(room_state(room))
    turn = room.next_turn()
    room.complete_turn(turn, '!prompt "speak in riddles"', Usage(input_tokens=900, output_tokens=40))  # usage.add in place
    assert encode(room) == json.dumps(room_state(room))
    for change in (
        lambda: room.mute(1),
        lambda: room.participants[2].additions.append("a line added in place"),
        lambda: room.participants[2].image_turns.append(99),
        lambda: setattr(room.participants[1], "temperature", 0.4),
        lambda: room.participants.pop(3),
    ):
        before = encode(room)
        change()
        assert encode(room) == json.dumps(room_state(room)) != before
    ai = room.participants[2]
    for field in dataclasses.fields(ai):  # every field, so one added later cannot be left out
        value = getattr(ai, field.name)
        changed = {
            bool: lambda: not value, int: lambda: value + 1, float: lambda: value + 0.5, str: lambda: value + "!",
            list: lambda: [*value, 7], Usage: lambda: Usage(input_tokens=12345),
        }.get(type(value), lambda: room.catalog.get("Kimi K2"))()
        before = encode(room)
        setattr(ai, field.name, changed)
        assert encode(room) == json.dumps(room_state(room)) != before, field.name


def test_restored_room_continues_identically():
    original = played_room()
    copy = round_trip(original)
    assert copy.settings == original.settings
    assert copy.history == original.history
    for _ in range(6):
        a, b = original.next_turn(), copy.next_turn()
        assert (a.number, a.votes) == (b.number, b.votes)
        assert a.request == b.request
        original.complete_turn(a, f"turn {original.turns_taken}")
        copy.complete_turn(b, f"turn {copy.turns_taken}")
        assert original.take_events() == copy.take_events()


def test_restored_room_keeps_people_pictures_and_jobs():
    copy = round_trip(played_room())
    assert copy.participants[1].temperature == 1.3
    assert copy.participants[3].muted and copy.participants[3].model.name == "Kimi K2"
    assert copy.humans == ["Ada"] + [f"Poster {n}" for n in range(9)] and copy.more_people
    assert copy.votes == {"ann": 2} and copy.blocked == {"666": "Spammer"} and copy.is_blocked("666")
    assert any(e.picture and e.picture.data == b"png-bytes" for e in copy.history)
    (job,) = resumable_jobs(copy)
    assert job.prompt == "a second picture, still pending"
    copy.image_done(job.job_id, Picture(b"late"))
    assert copy.pending_images == 0


def test_restored_room_keeps_its_picture_limits():
    original = played_room()
    original.settings.images_per_room = 2
    copy = round_trip(original)
    assert copy.pictures == 1 and copy.participants[1].image_turns == [1, 4]
    turn = copy.next_turn()
    copy.complete_turn(turn, '!image "a third picture"')  # one made, one still being made: the room's two
    assert any("this room may make 2 pictures" in getattr(e, "text", "") for e in copy.take_events())


def test_restored_entries_share_their_kind_and_speaker_label_as_live_ones_do():
    """JSON gives every entry its own copy of "reply" and of its speaker's label: a ninth of a
    restored room's memory, where a live room's entries all name the same interned label."""
    room = played_room()
    rows = [json.loads(json.dumps(entry_to_dict(e))) for e in room.history if e.kind == "reply" and e.speaker == 1]
    first, second = entry_from_dict(rows[0], lambda key: None), entry_from_dict(rows[1], lambda key: None)
    assert first.name == second.name == room.participants[1].label
    assert first.name is second.name is room.participants[1].label
    assert first.kind is second.kind is "reply"  # noqa: F632  (identity is the point)


def test_model_missing_from_catalog_keeps_its_seat():
    room = played_room()
    state = room_state(room)
    state["participants"][0]["model"] = "Retired Model 1"
    copy = restore_room(room.catalog, room.scenario, room.settings, state, list(room.history))
    assert copy.participants[1].label == "AI-1 (Retired Model 1)"
    assert copy.participants[1].model.routes == {}


def test_turn_in_flight_when_saved_is_given_again():
    room = played_room()
    turn = room.next_turn()  # saved while this AI was still writing
    copy = round_trip(room)
    assert copy.next_turn().number == turn.number


# --- forks ---------------------------------------------------------------------


def test_each_ai_message_is_followed_by_its_fork_point_taken_at_once():
    room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings())
    room.add("Gemini 3 Flash")
    room.add("DeepSeek R1")
    turn = room.next_turn()
    room.complete_turn(turn, '!temperature 1.4\n!prompt "salt"\n!image "a harbour at dusk"\nThe sea.')
    events = room.take_events()
    kinds = [type(e).__name__ for e in events]
    assert kinds[-2:] == ["Reply", "ForkPoint"]
    point = events[-1]
    assert point.at == room.history_length  # the reply and what its commands told its author
    assert point.seats[0] == Seat(1, "Gemini 3 Flash", room.participants[1].persona, 1.4, ("salt",))
    room.set_temperature(1, 0.3)  # later changes never reach a point already taken
    assert point.seats[0].temperature == 1.4
    (job,) = [e for e in events if isinstance(e, ImageJob)]
    room.image_done(job.job_id, Picture(b"png"))
    assert [type(e).__name__ for e in room.take_events()][-2:] == ["ImageMade", "ForkPoint"]


def test_a_turn_that_posts_nothing_has_no_fork_point():
    room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings())
    room.add("Gemini 3 Flash")
    room.add("DeepSeek R1")
    room.complete_turn(room.next_turn(), "!temperature 1.2")  # a hidden command alone: nothing posted
    room.fail_turn(room.next_turn(), "a timeout")
    assert not any(isinstance(e, ForkPoint) for e in room.take_events())


def test_fork_state_starts_a_new_room_from_the_seats_and_history_it_is_given():
    parent = played_room()
    seats = [
        {"number": 1, "model": "Gemini 3 Flash", "persona": "p1", "temperature": 1.3, "additions": ["a"]},
        {"number": 2, "model": "DeepSeek R1", "persona": "p2", "temperature": 1.0, "muted": True},
        {"number": 3, "model": "Kimi K2", "persona": "p3", "temperature": 0.5, "present": False},
        {"number": 4, "model": "GPT 5.2", "persona": "p4", "temperature": 0.9},
    ]
    history = [entry_to_dict(e) for e in parent.history if e.picture is None]
    state = fork_state(room_state(parent), seats, history, speaker=1)
    fork = restore_room(parent.catalog, parent.scenario, parent.settings, json.loads(json.dumps(state)), [])
    assert fork.state == "running" and fork.topic == "glass"
    assert (fork.turns_taken, fork.cost_usd, fork.pictures, fork.votes, fork.removal) == (0, 0.0, 0, {}, None)
    assert [p.label for p in fork.present] == ["AI-1 (Gemini 3 Flash)", "AI-2 (DeepSeek R1)", "AI-4 (GPT 5.2)"]
    assert fork.participants[1].additions == ["a"] and fork.participants[1].turns == 0
    assert fork.participants[2].muted and not fork.participants[3].present
    assert fork.humans == parent.humans and fork.more_people  # the people who had spoken by then
    assert fork.blocked == {"666": "Spammer"}
    assert fork.next_turn().number == 4  # the round goes on after AI-1; AI-2 is muted
    assert fork.add("Claude Haiku 4.5").number == 5  # numbers are never reused, an absent seat's neither
