"""What each AI sees (roles, prefixes, merging, trimming) and reply hygiene."""

from __future__ import annotations

import pytest

from bot import data
from bot.engine import Room, RoomSettings
from bot.engine.context import Entry, build_messages, clean_reply, token_budget
from bot.engine.scenarios import Scenario

SCENARIO = Scenario(
    "test", "Test", system="Shared scenario text.", opening="Topic: {topic}", personas=("Persona one.", "Persona two.")
)


def room_of(*models: str, **settings) -> Room:
    room = Room(data.catalog(), SCENARIO, RoomSettings(**settings), topic="glass")
    for model in models:
        room.add(model)
    return room


def play(room: Room, *replies: str) -> None:
    for reply in replies:
        turn = room.next_turn()
        room.complete_turn(turn, reply)
    room.take_events()


def test_own_replies_are_assistant_others_are_prefixed_user():
    room = room_of("Gemini 3 Flash", "DeepSeek R1")
    play(room, "first from one", "first from two", "second from one")
    messages = room.request_for(room.participants[2]).messages
    assert [(m.role, m.content) for m in messages] == [
        ("user", "Topic: glass\n\n[AI-1 (Gemini 3 Flash)]: first from one"),
        ("assistant", "first from two"),
        ("user", "[AI-1 (Gemini 3 Flash)]: second from one"),
    ]


def test_consecutive_user_entries_merge_into_one():
    room = room_of("Gemini 3 Flash", "DeepSeek R1", "Kimi K2")
    room.inject("Ada", "hello all")
    play(room, "from one", "from two")
    messages = room.request_for(room.participants[3]).messages
    assert len(messages) == 1
    assert messages[0].content == (
        "Topic: glass\n\n[Ada]: hello all\n\n[AI-1 (Gemini 3 Flash)]: from one\n\n[AI-2 (DeepSeek R1)]: from two"
    )


def test_trailing_own_reply_gets_a_turn_prompt():
    room = room_of("Gemini 3 Flash")
    play(room, "alone")
    messages = room.request_for(room.participants[1]).messages
    assert messages[-2].role == "assistant"
    assert messages[-1].role == "user" and "your turn" in messages[-1].content


def test_system_prompt_parts():
    room = room_of("Gemini 3 Flash", "DeepSeek R1")
    system = room.request_for(room.participants[1]).system
    assert system.startswith("Shared scenario text.\n\nPersona one.")
    assert "You are AI-1 (Gemini 3 Flash). Also present: AI-2 (DeepSeek R1)." in system
    assert '!image "a description"' in system and "!list_models" in system
    assert "Claude Haiku 4.5" in system  # the catalog, for !add_ai
    assert "at most 5 AIs" in system


def test_temperature_help_follows_the_model():
    room = room_of("Gemini 3 Flash", "Claude Haiku 4.5", "DeepSeek R1")
    systems = [room.request_for(room.participants[n]).system for n in (1, 2, 3)]
    assert "0 to 2," in systems[0]
    assert "0 to 1," in systems[1]  # Claude accepts at most 1.0
    assert "!temperature" not in systems[2]  # DeepSeek R1 ignores it


def test_trimming_moves_in_steps_so_the_prompt_start_stays_cacheable():
    history = [Entry("opening", "OPENING")]
    starts = []
    for i in range(300):
        history.append(Entry("reply", f"m{i} " + "y" * 396, speaker=2, name="AI-2 (M)"))
        messages = build_messages(history, seat=1, budget=4000, vision=False, max_pictures=3)
        body = messages[0].content.split("\n\n", 2)
        starts.append(body[1] if len(body) > 1 else "")
    changes = sum(1 for a, b in zip(starts, starts[1:]) if a != b)
    assert changes <= 300 // 10  # the start moves about once per quarter budget, not every turn
    last = build_messages(history, seat=1, budget=4000, vision=False, max_pictures=3)
    assert 3000 * 4 <= len(last[0].content) <= 4000 * 4 + 100


def test_newcomer_gets_invitation_as_opening():
    room = room_of("Gemini 3 Flash", "Gemini 3 Flash")
    play(room, '!add_ai "DeepSeek R1" "tell us if the loss is acceptable"', "hm")
    newcomer = room.next_turn()
    assert newcomer.number == 3
    text = "\n".join(m.content for m in newcomer.request.messages)
    assert "AI-1 (Gemini 3 Flash) invited you into this conversation: tell us if the loss is acceptable" in text
    assert newcomer.request.messages[0].content.startswith("Topic: glass")


def test_trimming_drops_oldest_but_keeps_system_and_opening():
    history = [Entry("opening", "OPENING")] + [
        Entry("reply", f"message {i} " + "x" * 400, speaker=1 + i % 2, name=f"AI-{1 + i % 2} (M)") for i in range(100)
    ]
    messages = build_messages(history, seat=1, budget=1000, vision=False, max_pictures=3)
    joined = "\n".join(m.content for m in messages)
    assert messages[0].content.startswith("OPENING")
    assert "message 99" in joined and "message 0 " not in joined
    kept = sum(len(m.content) for m in messages)
    assert kept < 1000 * 4 + 500


def test_budget_respects_model_window_and_room_cap():
    catalog = data.catalog()
    assert token_budget(catalog.get("Gemini 3 Flash"), 60_000) == 60_000
    small = catalog.get("Kimi K2").__class__(name="Tiny", routes={"x": "y"}, context_window=8000, max_output=1000)
    assert token_budget(small, 60_000) == 7000


def test_long_room_request_stays_within_budget():
    room = room_of("Gemini 3 Flash", "DeepSeek R1", context_tokens=2000)
    play(room, *["words " * 200] * 40)
    request = room.request_for(room.participants[1])
    total = len(request.system) + sum(len(m.content) for m in request.messages)
    assert total // 4 <= 2000 + 100
    assert request.messages[0].content.startswith("Topic: glass")


# --- reply hygiene ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("AI-1 (Gemini 3 Flash): hello", "hello"),
        ("[AI-1 (Gemini 3 Flash)]: hello", "hello"),
        ("**AI-1:** hello", "hello"),
        ("AI-1 (Gemini 3 Flash)\nhello", "hello"),
        ("AI-1: hello", "hello"),
        ("hello\n[AI-2 (DeepSeek R1)]: I say this for you", "hello"),
        ("hello\nAI-2 (DeepSeek R1):\nfake", "hello"),
        ("hello\nAI-3 (Kimi K2)\nfake reply", "hello"),
        ("hello\n[Ada]: a fake human", "hello"),
        ("AI-2: you are right.", "AI-2: you are right."),  # addressing AI-2 is not impersonating it
        ("I agree with AI-2 (DeepSeek R1) here.", "I agree with AI-2 (DeepSeek R1) here."),
        ("<think>plan</think>answer", "answer"),
        ("<think>\nlong\nplan\n</think>\n\nanswer", "answer"),
        ("answer<think>unterminated", "answer"),
        ("<think>only</think>", ""),
        ("   \n  ", ""),
        ("[AI-1 adjusted their temperature]\nhello", "[AI-1 adjusted their temperature]\nhello"),
        ("\n    indented art\n   /\\\n  /  \\", "    indented art\n   /\\\n  /  \\"),
    ],
)
def test_clean_reply(raw, expected):
    assert clean_reply(raw, seat=1, humans=("Ada",)) == expected


def test_clean_reply_keeps_own_later_mentions():
    assert clean_reply("first\n[AI-1 (Gemini 3 Flash)]: still me", seat=1) == "first\n[AI-1 (Gemini 3 Flash)]: still me"
