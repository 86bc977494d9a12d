"""A room saved as plain data and restored carries on exactly as the original would."""

from __future__ import annotations

import json

from bot import data
from bot.engine import Picture, Room, RoomSettings
from bot.engine.snapshot import (
    entry_from_dict,
    entry_to_dict,
    restore_room,
    resumable_jobs,
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
