"""Rooms that go in circles: the similarity, the nudge, and the refusal of copied replies."""

from __future__ import annotations

import dataclasses

from bot import data
from bot.engine import Notice, Reply, Room, RoomSettings
from bot.engine.loops import LOOPING, REPEAT, VERBATIM, LoopWatch, shingles, similarity
from bot.engine.room import NUDGE
from bot.engine.scenarios import Scenario

SCENARIO = Scenario("test", "Test", system="You are in a test room.", opening="Topic: {topic}")

# Pleasantries with a few words changed each time: what a looping room sounds like.
AGREE = [
    "What a beautiful thought, I completely agree with everything you said about the tides and the moon.",
    "What a lovely thought, I completely agree with everything you said about the tides and the sea.",
    "Such a beautiful thought, I completely agree with everything you said about the tides and the moon tonight.",
    "What a beautiful idea, I completely agree with everything you said about the tides and the moon.",
]
FRESH = [
    "The harbour master keeps a ledger of every tide since 1802, and the numbers drift in a way nobody explains.",
    "I disagree: a tide is not a clock. Ask a fisher in Brittany and you get a story, not a timetable.",
    "Here is a map of the bay at low water, drawn from memory, with the wreck where the gulls nest.",
    "What would change if the moon were twice as far? Smaller tides, longer days, different coasts entirely.",
]


def make_room(**settings) -> Room:
    room = Room(data.catalog(), SCENARIO, RoomSettings(**settings), topic="tides")
    room.add("Gemini 3 Flash")
    room.add("DeepSeek R1")
    return room


def speak(room: Room, text: str) -> tuple[int, list]:
    turn = room.next_turn()
    assert turn is not None
    room.complete_turn(turn, text)
    return turn.number, room.take_events()


def notices(events) -> list[str]:
    return [e.text for e in events if isinstance(e, Notice)]


def privates(room: Room, seat: int) -> list[str]:
    return [e.text for e in room.history if e.kind == "private" and e.audience == seat]


# --- the similarity --------------------------------------------------------------


def test_similarity_is_one_for_the_same_words_whatever_the_case_and_punctuation() -> None:
    a = shingles("The tide comes in, the tide goes out; nothing else.")
    b = shingles("the TIDE comes in the tide goes out nothing else")
    assert a is not None and similarity(a, b) == 1.0  # type: ignore[arg-type]


def test_pleasantries_with_a_word_changed_are_repeats_and_fresh_replies_are_not() -> None:
    loops = [similarity(shingles(a), shingles(b)) for a, b in zip(AGREE, AGREE[1:])]  # type: ignore[arg-type]
    fresh = [similarity(shingles(a), shingles(b)) for a in FRESH for b in FRESH if a != b]  # type: ignore[arg-type]
    assert min(loops) >= REPEAT
    assert max(fresh) < REPEAT


def test_short_replies_are_not_judged() -> None:
    assert shingles("Agreed, lovely!") is None
    watch = LoopWatch()
    for _ in range(10):
        judgement = watch.judge(1, "Yes, exactly.")
        assert judgement.score == 0 and judgement.verbatim is None
        assert not watch.record(1, "AI-1", "Yes, exactly.", judgement)


def test_the_watch_keeps_hashes_of_recent_replies_shingles_not_tuples_of_words() -> None:
    """A thousand rooms each keep their last replies here: a tuple per shingle took twice what
    its hash does. The judgement is the same (see the tests above)."""
    watch = LoopWatch()
    for speaker, text in enumerate(FRESH[:3] + AGREE[:1]):
        watch.record(speaker, f"AI-{speaker}", text, watch.judge(speaker, text))
    kept = [item for *_, shingled in watch.recent for item in shingled]
    assert kept and all(isinstance(item, int) for item in kept)
    copy = watch.judge(9, AGREE[0])  # the last reply again, from another AI: still told apart
    assert copy.verbatim == "AI-3" and copy.score == 1.0


def test_recording_a_judged_reply_uses_the_judges_words_and_keeps_the_same_as_working_them_out() -> None:
    """``record`` takes the words and shingles ``judge`` found (they were split twice a reply);
    a judgement made elsewhere, without them, is recorded the same way."""
    judged, bare = LoopWatch(), LoopWatch()
    for speaker, text in enumerate(FRESH[:3] + AGREE[:3] + ["Yes, exactly."]):
        judgement = judged.judge(speaker % 3, text)
        assert judgement.seen is not None and judgement.seen[0] is text
        judged.record(speaker % 3, f"AI-{speaker % 3}", text, judgement)
        bare.record(speaker % 3, f"AI-{speaker % 3}", text, dataclasses.replace(judgement, seen=None))
    assert list(judged.recent) == list(bare.recent) and list(judged.repeats) == list(bare.repeats)
    assert any(judged.repeats)


# --- the nudge ---------------------------------------------------------------------


def test_a_looping_room_is_noticed_and_the_next_ai_is_nudged_privately() -> None:
    room = make_room()
    for text in FRESH:  # a lively start: nothing to say
        _, events = speak(room, text)
        assert not any("circles" in n for n in notices(events))
    for text in AGREE[: LOOPING + 1]:  # the first pleasantry, then LOOPING that repeat it
        _, events = speak(room, text)
        assert not any("circles" in n for n in notices(events))
    # The third repeat makes the loop; the note goes to whoever speaks next, with a notice.
    turn = room.next_turn()
    assert turn is not None
    assert notices(room.take_events()) == [
        f"🔁 The room is going in circles; AI-{turn.number} is asked to take it somewhere new"
    ]
    assert privates(room, turn.number)[-1] == NUDGE
    assert NUDGE in turn.request.messages[-1].content  # it reaches that AI's request
    other = 2 if turn.number == 1 else 1
    assert NUDGE not in privates(room, other)
    assert all(NUDGE not in m.content for m in room.request_for(room.participants[other]).messages)


def test_the_nudge_is_not_repeated_every_turn_of_a_loop() -> None:
    room = make_room()
    nudges = 0
    for i in range(12):
        _, events = speak(room, AGREE[i % len(AGREE)])
        nudges += sum("circles" in n for n in notices(events))
    assert 1 <= nudges <= 12 // LOOPING


def test_loop_nudge_off_gives_no_note_and_no_notice() -> None:
    room = make_room(loop_nudge=False)
    for i in range(8):
        _, events = speak(room, AGREE[(i * 3) % 4])
        assert not any("circles" in n for n in notices(events))
    assert not any(NUDGE in t for seat in (1, 2) for t in privates(room, seat))


# --- copied replies ------------------------------------------------------------------


def test_a_reply_copying_the_previous_speaker_is_not_posted_and_the_ai_is_told() -> None:
    room = make_room()
    speak(room, FRESH[0] + ' !image "the harbour ledger"')
    number, events = speak(room, FRESH[0].replace("1802", "1803"))  # almost word for word
    assert number == 2
    assert not any(isinstance(e, Reply) for e in events)
    assert notices(events) == [
        "⚠️ AI-2 (DeepSeek R1) could not reply: its reply repeated AI-1 (Gemini 3 Flash)'s almost word for word, "
        "so it was not posted"
    ]
    assert [e.speaker for e in room.history if e.kind == "reply"] == [1]
    told = privates(room, 2)[-1]
    assert told.startswith("Your last reply was not posted: it repeated AI-1 (Gemini 3 Flash)'s reply")
    # Told in its next request, and only to it.
    assert told in room.request_for(room.participants[2]).messages[-1].content
    assert told not in privates(room, 1)


def test_a_copied_reply_runs_none_of_its_commands() -> None:
    room = make_room()
    speak(room, FRESH[1])
    _, events = speak(room, FRESH[1] + '\n!image "a fisher in Brittany"')
    assert not any("🎨" in n for n in notices(events))
    assert room.pending_images == 0


def test_a_different_reply_on_the_same_subject_is_posted() -> None:
    room = make_room()
    speak(room, FRESH[0])
    _, events = speak(room, FRESH[0] + " " + FRESH[3])  # quotes it, then adds as much again
    assert any(isinstance(e, Reply) for e in events)


def test_an_ai_may_come_back_to_its_own_words() -> None:
    """Only the previous speaker's reply is refused as a copy; one's own refrain is a loop matter."""
    room = make_room()
    speak(room, FRESH[0])
    speak(room, FRESH[1])
    _, events = speak(room, FRESH[0])  # AI-1 again, its own words
    assert any(isinstance(e, Reply) for e in events)


def test_the_copy_threshold_sits_above_the_repeat_threshold() -> None:
    assert REPEAT < VERBATIM < 1


def test_loop_nudge_is_a_setting_read_from_the_environment(monkeypatch) -> None:
    from bot.settings import Settings

    assert Settings(_env_file=None).room_settings(None).loop_nudge is True
    monkeypatch.setenv("LOOP_NUDGE", "false")
    assert Settings(_env_file=None).room_settings(None).loop_nudge is False


def test_the_quick_copy_check_agrees_with_the_full_ratio() -> None:
    """``is_copy`` skips difflib's full comparison when its quick bounds already say no:
    it must say exactly what ``copied(...) >= threshold`` says, copies and near-copies included."""
    import random

    from bot.engine.loops import copied, is_copy

    rng = random.Random(5)
    vocabulary = [f"w{i}" for i in range(30)]
    for _ in range(400):
        a = tuple(rng.choices(vocabulary, k=rng.randint(3, 40)))
        b = list(a) if rng.random() < 0.5 else rng.choices(vocabulary, k=rng.randint(3, 40))
        for _ in range(rng.randint(0, 4)):  # a few words changed: near-copies around the threshold
            if b:
                b[rng.randrange(len(b))] = rng.choice(vocabulary)
        for threshold in (0.0, 0.5, 0.9, 1.0):
            assert is_copy(a, tuple(b), threshold) == (copied(a, tuple(b)) >= threshold)
