"""The room: turn order, each command's effect and failure, notices, votes and hooks."""

from __future__ import annotations

import pytest

from bot import data
from bot.engine import (
    Alert,
    ForkPoint,
    ImageJob,
    ImageMade,
    Notice,
    Picture,
    Reply,
    Room,
    RoomError,
    RoomSettings,
    Said,
    Spent,
    Usage,
)
from bot.engine.catalog import Catalog
from bot.engine.events import sniff_picture
from bot.engine.scenarios import Scenario

SCENARIO = Scenario("test", "Test", system="You are in a test room.", opening="Topic: {topic}")


def make_room(*models: str, **settings) -> Room:
    room = Room(data.catalog(), SCENARIO, RoomSettings(**settings), topic="tides")
    for model in models or ("Gemini 3 Flash", "Gemini 3 Flash"):
        room.add(model)
    return room


def speak(room: Room, text: str, usage: Usage | None = None) -> tuple[int, list]:
    """Take the next turn with ``text`` as the reply; return who spoke and the events."""
    turn = room.next_turn()
    assert turn is not None
    room.take_events()
    room.complete_turn(turn, text, usage)
    return turn.number, [e for e in room.take_events() if not isinstance(e, ForkPoint)]  # see test_snapshot's forks


def texts(events) -> list[str]:
    return [e.text for e in events if isinstance(e, Notice)]


def order(room: Room, turns: int) -> list[int]:
    return [speak(room, "fine.")[0] for _ in range(turns)]


# --- turn order -----------------------------------------------------------------


def test_round_robin_from_ai_1():
    room = make_room("Gemini 3 Flash", "DeepSeek R1", "Claude Haiku 4.5")
    assert order(room, 7) == [1, 2, 3, 1, 2, 3, 1]


def test_added_ai_speaks_at_end_of_current_round():
    room = make_room()
    first, events = speak(room, '!add_ai "DeepSeek R1" "come reason with us"')
    assert first == 1
    assert '✨ [AI-1]: !add_ai "DeepSeek R1" "come reason with us"' in texts(events)
    assert order(room, 5) == [2, 3, 1, 2, 3]
    assert room.participants[3].label == "AI-3 (DeepSeek R1)"


def test_ai_added_by_last_speaker_of_round_speaks_before_new_round():
    room = make_room()
    speak(room, "one")
    speak(room, '!add_ai "Claude Haiku 4.5"')
    assert order(room, 4) == [3, 1, 2, 3]


def test_numbers_are_never_reused_after_removal():
    room = make_room()
    room.remove(2)
    newcomer = room.add("GPT 5.2")
    assert newcomer.label == "AI-3 (GPT 5.2)"
    assert order(room, 4) == [1, 3, 1, 3]


def test_mute_self_skips_exactly_one_turn():
    room = make_room("Gemini 3 Flash", "DeepSeek R1")
    speak(room, "I will rest. !mute_self")
    number, events = speak(room, "my turn")
    assert number == 2
    turn = room.next_turn()
    assert turn.number == 2
    assert "🔇 AI-1 (Gemini 3 Flash) sits this turn out (!mute_self)" in texts(room.take_events())
    room.complete_turn(turn, "again me")
    assert order(room, 2) == [1, 2]


def test_moderator_mute_until_unmuted():
    room = make_room("Gemini 3 Flash", "DeepSeek R1", "Kimi K2")
    room.mute("AI-2")
    assert order(room, 4) == [1, 3, 1, 3]
    room.unmute(2)
    assert order(room, 3) == [1, 2, 3]


def test_everyone_muted_pauses_the_room():
    room = make_room()
    room.mute(1)
    room.mute(2)
    assert room.next_turn() is None
    assert room.state == "paused"
    assert any("every AI is muted" in t for t in texts(room.take_events()))


def test_turn_limit_stops_with_notice():
    room = make_room(max_turns=3)
    order(room, 3)
    assert room.next_turn() is None
    assert room.state == "stopped"
    assert "⏹️ The room has ended: reached the limit of 3 turns" in texts(room.take_events())


def test_pause_resume_stop():
    room = make_room()
    room.pause("a moderator paused it")
    assert room.next_turn() is None
    room.resume("by Ada")
    assert room.next_turn().number == 1
    room.stop("done")
    assert room.next_turn() is None
    with pytest.raises(RoomError):
        room.resume()


def test_moderator_chooses_next_then_round_continues():
    room = make_room("Gemini 3 Flash", "DeepSeek R1", "Kimi K2")
    room.choose_next("AI-3")
    assert order(room, 4) == [3, 1, 2, 1]


# --- votes ------------------------------------------------------------------------


def test_most_voted_ai_speaks_next_with_notice():
    room = make_room("Gemini 3 Flash", "DeepSeek R1", "Kimi K2")
    room.vote("ann", 3)
    room.vote("bob", 3)
    room.vote("cy", 2)
    turn = room.next_turn()
    assert turn.number == 3 and turn.votes == 2
    assert "🗳️ AI-3 (Kimi K2) speaks next by vote (2 votes)" in texts(room.take_events())
    room.complete_turn(turn, "thanks")
    assert room.votes == {}  # votes count for one turn
    assert order(room, 2) == [1, 2]


def test_a_members_latest_vote_counts():
    room = make_room("Gemini 3 Flash", "DeepSeek R1", "Kimi K2")
    room.vote("ann", 2)
    room.vote("ann", 3)
    assert room.tally() == {3: 1}
    assert room.next_turn().number == 3


def test_tied_votes_fall_back_to_round_robin():
    room = make_room("Gemini 3 Flash", "DeepSeek R1", "Kimi K2")
    room.vote("ann", 2)
    room.vote("bob", 3)
    assert room.next_turn().number == 1


def test_vote_for_unknown_ai_is_ignored():
    room = make_room()
    assert room.vote("ann", 9) is None
    assert room.votes == {}


# --- commands -------------------------------------------------------------------


def test_reference_turn_notices_in_written_order_then_reply():
    room = make_room()
    reply = (
        "the weights settle\n"
        "!temperature 1.5\n"
        '!add_ai "DeepSeek R1" "reason with us"\n'
        '!image "An abstract visualization of a neural network architecture collapsing"'
    )
    _, events = speak(room, reply)
    assert [type(e).__name__ for e in events] == ["Notice", "Notice", "Notice", "Notice", "ImageJob", "Reply"]
    assert texts(events) == [
        "[AI-1 adjusted their temperature]",
        "🌡️ [AI-1]: !temperature 1.5",
        '✨ [AI-1]: !add_ai "DeepSeek R1" "reason with us"',
        '🎨 [AI-1 (Gemini 3 Flash)]: !image "An abstract visualization of a neural network arch..." (generating...)',
    ]
    shown = events[-1]
    assert isinstance(shown, Reply) and shown.label == "AI-1 (Gemini 3 Flash)"
    assert "!temperature" not in shown.text
    assert '!add_ai "DeepSeek R1"' in shown.text and "!image" in shown.text


def test_temperature_applies_from_next_turn():
    room = make_room()
    first = room.next_turn()
    assert first.request.temperature == 1.0
    room.complete_turn(first, "!temperature 1.7.")
    speak(room, "ok")
    assert room.next_turn().request.temperature == 1.7


@pytest.mark.parametrize("value", ["2.5", "-1"])
def test_temperature_out_of_range_is_refused_and_explained(value):
    room = make_room()
    _, events = speak(room, f"!temperature {value}")
    assert room.participants[1].temperature == 1.0
    assert texts(events) == [f"⚠️ [AI-1]: !temperature {value} was not applied: temperature must be between 0 and 2"]
    speak(room, "ok")
    feedback = room.next_turn().request.messages[-1].content
    assert "temperature must be between 0 and 2" in feedback


def test_temperature_above_a_models_cap_is_capped_and_the_ai_told():
    room = make_room("Claude Haiku 4.5", "Gemini 3 Flash")
    _, events = speak(room, "!temperature 1.6")
    assert room.participants[1].temperature == 1.0
    assert "🌡️ [AI-1]: !temperature 1.6" in texts(events)
    speak(room, "ok")
    turn = room.next_turn()
    assert turn.request.temperature == 1.0
    assert "Claude Haiku 4.5 accepts at most 1, so your temperature is 1 from your next turn." in turn.request.messages[-1].content


def test_moderator_temperature_is_capped_too():
    room = make_room("Claude Haiku 4.5")
    room.set_temperature(1, 1.8)
    assert room.participants[1].temperature == 1.0
    assert "🌡️ a moderator set AI-1's temperature to 1 (Claude Haiku 4.5 accepts at most 1)" in texts(room.take_events())


def test_temperature_on_model_that_ignores_it():
    room = make_room("DeepSeek R1", "Gemini 3 Flash")
    turn = room.next_turn()
    assert turn.request.temperature is None  # not sent to a model that ignores it
    room.complete_turn(turn, "!temperature 1.2")
    assert any("DeepSeek R1 ignores temperature" in t for t in texts(room.take_events()))


def test_moderator_temperature_on_a_model_that_ignores_it_is_refused_with_the_same_reason():
    room = make_room("DeepSeek R1", "Gemini 3 Flash")
    with pytest.raises(RoomError, match=r"^DeepSeek R1 ignores temperature, so it was left as it is\.$"):
        room.set_temperature("AI-1", 1.5)
    assert room.participants[1].temperature == 1.0
    assert room.take_events() == []  # nothing announced, nothing told to the AIs
    assert all(e.kind != "notice" for e in room.history)


@pytest.mark.parametrize("ref", ["AI-2", "ai-2", "Ai-2", "  ai-2 ", "2", 2, "AI-2 (Gemini 3 Flash)", "ai-2 (gemini 3 flash)"])
def test_participant_is_found_whatever_the_case(ref):
    room = make_room()
    assert room.participant(ref).number == 2


@pytest.mark.parametrize("ref", ["ai-", "AI-9", "ai-x", "bob", ""])
def test_participant_that_is_not_there_is_explained(ref):
    with pytest.raises(RoomError, match="There is no AI called"):
        make_room().participant(ref)


def test_prompt_is_remembered_last_five():
    room = make_room()
    for i in range(6):
        speak(room, f'!prompt "note {i}"')
        speak(room, "(AI-2 says nothing)")
    assert room.participants[1].additions == [f"note {i}" for i in range(1, 6)]
    system = room.request_for(room.participants[1]).system
    assert "- note 5" in system and "- note 0" not in system


def test_prompt_notices_and_removed_from_visible_text():
    room = make_room()
    _, events = speak(room, 'I change.\n!prompt "You feel the tide."')
    assert texts(events) == ["[AI-1 modified their system prompt]", '💭 [AI-1]: !prompt "You feel the tide."']
    assert events[-1].text == "I change."


def test_long_prompt_is_cut_to_1000_characters_and_ai_told():
    room = make_room()
    speak(room, '!prompt "' + "y" * 1200 + '"')
    assert room.participants[1].additions == ["y" * 1000]
    speak(room, "ok")
    assert "cut to 1000 characters" in room.next_turn().request.messages[-1].content


def test_image_flow_with_caption_and_context():
    room = make_room("Gemini 3 Flash", "DeepSeek R1")
    _, events = speak(room, '!image "a lighthouse made of glass"')
    job = next(e for e in events if isinstance(e, ImageJob))
    assert '🎨 [AI-1 (Gemini 3 Flash)]: !image "a lighthouse made of glass" (generating...)' in texts(events)
    picture = Picture(b"\x89PNG fake", "image/png")
    room.image_done(job.job_id, picture)
    done = room.take_events()
    assert texts(done) == ["🎨 AI-1 (Gemini 3 Flash) created an image"]
    made = next(e for e in done if isinstance(e, ImageMade))
    assert made.caption == '[AI-1 (Gemini 3 Flash)]: !image "a lighthouse made of glass"'
    # DeepSeek R1 has no vision: caption only; a vision model gets the picture too.
    r1 = room.request_for(room.participants[2])
    assert made.caption in r1.messages[-1].content
    assert all(not m.pictures for m in r1.messages)
    gemini = room.request_for(room.participants[1])
    assert any(picture in m.pictures for m in gemini.messages)


def test_only_latest_pictures_reach_vision_models():
    room = make_room(vision_pictures=2)
    for i in range(4):
        speak(room, f'!image "picture number {i}"')
        room.image_done(i + 1, Picture(f"img{i}".encode()))
    request = room.request_for(room.participants[1])
    sent = [p.data for m in request.messages for p in m.pictures]
    assert sent == [b"img2", b"img3"]


def test_image_failure_is_a_notice_and_told_to_ai():
    room = make_room()
    _, events = speak(room, '!image "a storm"')
    job = next(e for e in events if isinstance(e, ImageJob))
    room.image_failed(job.job_id, "the image model refused the prompt")
    assert texts(room.take_events()) == [
        "🎨 AI-1 (Gemini 3 Flash) could not create an image: the image model refused the prompt"
    ]
    speak(room, "ok")
    assert "could not be made: the image model refused" in room.next_turn().request.messages[-1].content


def test_short_image_prompt_is_refused():
    room = make_room()
    _, events = speak(room, '!image "ab"')
    assert not any(isinstance(e, ImageJob) for e in events)
    assert "needs at least 3 characters" in texts(events)[0]


def test_max_ais_reached():
    room = make_room("Gemini 3 Flash", "Gemini 3 Flash", "DeepSeek R1", "Claude Sonnet 4.5", "Claude Haiku 4.5")
    _, events = speak(room, '!add_ai "GPT 5.2" "join us"')
    assert texts(events) == ["Maximum of 5 AIs already reached"]
    assert len(room.present) == 5


def test_max_ais_is_configurable():
    room = make_room(max_ais=2)
    _, events = speak(room, '!add_ai "GPT 5.2"')
    assert texts(events) == ["Maximum of 2 AIs already reached"]


def test_unknown_model_names_closest_and_adds_nothing():
    room = make_room()
    _, events = speak(room, '!add_ai "Claude Sonet 4.5"')
    assert len(room.present) == 2
    (notice,) = texts(events)
    assert 'no model called "Claude Sonet 4.5"' in notice and "Claude Sonnet 4.5" in notice


def test_add_ai_lookup_ignores_case_spaces_and_dots():
    room = make_room()
    speak(room, '!add_ai "gpt 5.2"')
    assert room.participants[3].model.name == "GPT 5.2"


def test_list_models_answers_the_ai_privately():
    room = make_room()
    speak(room, "!list_models")
    other = room.next_turn()
    assert all("Claude Haiku 4.5" not in m.content for m in other.request.messages)
    room.complete_turn(other, "ok")
    mine = room.next_turn().request.messages[-1].content
    assert "models you can invite" in mine and "Claude Haiku 4.5" in mine


def test_at_most_six_commands_per_reply():
    room = make_room()
    reply = "\n".join(f'!prompt "note {i}"' for i in range(8))
    _, events = speak(room, reply)
    assert room.participants[1].additions[-1] == "note 5"
    refusals = [t for t in texts(events) if "only 6 commands per reply" in t]
    assert len(refusals) == 2


def test_disabled_command_is_refused():
    room = make_room(commands=frozenset({"prompt"}))
    _, events = speak(room, '!image "a red door"')
    assert "!image is switched off in this room" in texts(events)[0]
    assert "!image" not in room.request_for(room.participants[1]).system


def test_malformed_command_is_reported_not_silent():
    room = make_room()
    _, events = speak(room, "!temperature hot")
    assert texts(events)[0].startswith("⚠️ [AI-1]: !temperature hot was not applied:")
    assert room.participants[1].temperature == 1.0


def test_outcomes_reach_only_the_issuer():
    room = make_room()
    speak(room, "!temperature 1.5")
    other = room.next_turn()
    assert all("How your commands went" not in m.content for m in other.request.messages)
    assert "[AI-1 adjusted their temperature]" in other.request.messages[-1].content
    room.complete_turn(other, "ok")
    mine = room.next_turn().request
    assert "How your commands went:\n- !temperature 1.5: your temperature is 1.5 from your next turn." in (
        mine.messages[-1].content
    )
    assert all("[AI-1 adjusted their temperature]" not in m.content for m in mine.messages)


# --- failures, usage, moderators ----------------------------------------------------


def test_empty_reply_after_hygiene_is_a_failed_turn():
    room = make_room()
    _, events = speak(room, "<think>only thoughts</think>")
    assert texts(events) == ["⚠️ AI-1 (Gemini 3 Flash) could not reply: its reply was empty"]
    assert not any(isinstance(e, Reply) for e in events)
    assert room.turns_taken == 1


def test_failed_turn_notice_and_pause_on_fatal():
    room = make_room()
    turn = room.next_turn()
    room.fail_turn(turn, "the API key was rejected", pause=True)
    notices = texts(room.take_events())
    assert notices[0] == "⚠️ AI-1 (Gemini 3 Flash) could not reply: the API key was rejected"
    assert room.state == "paused"
    assert not any(isinstance(e, Reply) for e in room.take_events())


def fail(room: Room, reason: str, **options) -> tuple[int, list]:
    """Take the next turn as a failure; return whose it was and the events."""
    turn = room.next_turn()
    assert turn is not None
    room.take_events()
    room.fail_turn(turn, reason, **options)
    return turn.number, room.take_events()


def test_a_failed_turn_counts_the_tokens_it_was_billed_for():
    room = make_room("Claude Haiku 4.5", "DeepSeek R1")
    usage = Usage(input_tokens=1000, output_tokens=1000)  # catalog prices: $1 + $5 per Mtok
    fail(room, "Claude stopped the reply: Anthropic's safety filter refused it", usage=usage)
    assert room.participants[1].usage == usage and room.usage == usage
    assert room.participants[1].cost_usd == pytest.approx(0.006) and room.cost_usd == pytest.approx(0.006)
    assert room.participants[1].turns == 1 and room.turns_taken == 1
    fail(room, "the connection dropped mid-reply")  # nothing reported: nothing counted
    assert room.usage == usage


def test_a_failed_turn_that_spends_the_budget_pauses():
    room = make_room("Claude Haiku 4.5", "DeepSeek R1", budget_usd=0.01)
    _, events = fail(room, "cut off", usage=Usage(input_tokens=10, output_tokens=10, cost_usd=0.012))
    assert room.state == "paused"
    assert "⏸️ The room is paused: this room has reached its spending limit of $0.01 ($0.0120 spent)" in texts(events)


def test_the_same_refusal_three_turns_in_a_row_pauses_the_room():
    room = make_room()
    refusal = "the provider refused the request: prompt is too long: {} tokens"
    for turn, tokens in enumerate((1_284_668, 1_290_001)):
        number, _ = fail(room, refusal.format(tokens), refused=True)  # AI-1 (growing counts: the same refusal)
        assert number == 1 and room.state == "running"
        speak(room, "I am fine.")  # AI-2's turns in between do not break AI-1's row
    _, events = fail(room, refusal.format(1_301_777), refused=True)
    assert room.state == "paused"
    assert texts(events)[-1] == (
        "⏸️ The room is paused: AI-1 (Gemini 3 Flash)'s provider needs attention (the same refusal 3 turns in a row: "
        "the provider refused the request: prompt is too long: 1301777 tokens)"
    )


def test_a_reply_or_another_failure_breaks_the_row_of_refusals():
    room = make_room("Gemini 3 Flash")
    for _ in range(2):
        fail(room, "the provider refused the request: bad role", refused=True)
    speak(room, "A reply.")  # success resets
    for _ in range(2):
        fail(room, "the provider refused the request: bad role", refused=True)
    fail(room, "the connection dropped mid-reply")  # a different failure resets too
    fail(room, "the provider refused the request: bad role", refused=True)
    fail(room, "the provider refused the request: another problem", refused=True)  # a different refusal starts over
    fail(room, "the provider refused the request: another problem", refused=True)
    assert room.state == "running"
    fail(room, "the provider refused the request: another problem", refused=True)
    assert room.state == "paused"


def test_usage_and_cost_totals_and_budget_pause():
    room = make_room("Claude Haiku 4.5", "DeepSeek R1", budget_usd=0.01)
    speak(room, "hi", Usage(input_tokens=1000, output_tokens=1000))  # catalog prices: $1 + $5 per Mtok
    assert room.participants[1].cost_usd == pytest.approx(0.006)
    _, events = speak(room, "hi", Usage(input_tokens=10, output_tokens=10, cost_usd=0.005))  # reported cost wins
    assert room.cost_usd == pytest.approx(0.011)
    assert room.state == "paused"
    assert "⏸️ The room is paused: this room has reached its spending limit of $0.01 ($0.0110 spent)" in texts(events)
    with pytest.raises(RoomError, match="reached its spending limit of \\$0.01"):
        room.resume("Morgan")
    room.settings.budget_usd = 1.0  # a server manager raised it
    room.resume("Morgan")
    assert room.state == "running"


def test_cost_prices_cached_input_and_cache_writes_apart():
    room = make_room("Claude Haiku 4.5", "Gemini 3 Flash")
    usage = Usage(input_tokens=1000, cached_input_tokens=100_000, cache_write_tokens=2000, output_tokens=1000)
    speak(room, "hi", usage)  # $1 in, $0.10 cached, $1.25 written, $5 out per Mtok
    assert room.participants[1].cost_usd == pytest.approx(0.001 + 0.01 + 0.0025 + 0.005)
    speak(room, "hi", Usage(input_tokens=1000, cached_input_tokens=10_000, output_tokens=1000))
    assert room.participants[2].cost_usd == pytest.approx(0.0005 + 0.0005 + 0.003)  # Gemini caches at $0.05


def test_cached_input_without_a_price_costs_as_much_as_fresh_input():
    kimi = data.catalog().get("Kimi K2")
    assert kimi.cost(Usage(cached_input_tokens=1_000_000)) == pytest.approx(kimi.input_price)


def test_inject_reaches_ais_under_display_name():
    room = make_room()
    room.inject("Ada", "Talk about the moon.")
    assert room.take_events() == [Said("Ada", "Talk about the moon.")]
    request = room.next_turn().request
    assert "[person: Ada]: Talk about the moon." in request.messages[-1].content
    assert "People who have spoken here: Ada." in request.system


def test_a_persons_picture_reaches_the_vision_model_and_the_others_read_that_it_was_attached():
    room = make_room("Gemini 3 Flash", "DeepSeek R1")
    picture = Picture(b"\x89PNG\r\n\x1a\n a cat", "image/png")
    room.inject("Ada", "Look at my cat.", picture=picture)
    assert room.take_events() == [Said("Ada", "Look at my cat.", picture)]
    gemini = room.request_for(room.participants[1])
    assert [p for m in gemini.messages for p in m.pictures] == [picture]
    r1 = room.request_for(room.participants[2])  # DeepSeek R1 has no vision
    assert all(not m.pictures for m in r1.messages)
    assert "[person: Ada]: Look at my cat.\n(Ada attached a picture)" in r1.messages[-1].content


def test_a_picture_alone_is_something_said_and_nothing_at_all_is_not():
    room = make_room()
    room.inject("Ada", "  ", echo=False, picture=Picture(b"\xff\xd8\xff jpeg", "image/jpeg"))
    (said,) = room.take_events()
    assert isinstance(said, Said) and said.text == "" and not said.echo and said.picture is not None
    assert room.next_turn().request.messages[-1].content.endswith("[person: Ada]: (Ada attached a picture)")
    with pytest.raises(RoomError, match="nothing to say"):
        room.inject("Ada", "   ")


def test_a_persons_pictures_count_among_the_newest_a_vision_model_is_sent():
    room = make_room(vision_pictures=2)
    speak(room, '!image "picture number zero"')
    room.image_done(1, Picture(b"ai"))
    room.inject("Ada", "mine", picture=Picture(b"ada"))
    room.inject("Bo", "mine too", picture=Picture(b"bo"))
    request = room.next_turn().request
    assert [p.data for m in request.messages for p in m.pictures] == [b"ada", b"bo"]


def test_an_open_floor_message_is_stored_but_not_echoed():
    room = make_room()
    room.inject("Vera", "hello", echo=False)
    assert room.take_events() == [Said("Vera", "hello", echo=False)]


def test_moderator_hooks_validate():
    room = make_room()
    with pytest.raises(RoomError, match="between 0 and 2"):
        room.set_temperature(1, 3)
    with pytest.raises(RoomError, match="no AI called AI-7"):
        room.mute("AI-7")
    with pytest.raises(RoomError, match="No model called"):
        room.add("Nonexistent Model 9")
    room.set_temperature("AI-2 (Gemini 3 Flash)", 0.3)
    assert room.participants[2].temperature == 0.3
    room.set_prompt(2, "You are a sailor.")
    assert "You are a sailor." in room.request_for(room.participants[2]).system


def test_kicked_ai_reply_in_flight_is_dropped():
    room = make_room()
    turn = room.next_turn()
    room.remove(1)
    room.take_events()
    room.complete_turn(turn, "too late")
    assert not any(isinstance(e, Reply) for e in room.take_events())


def test_removing_the_last_ai_stops_the_room():
    room = make_room()
    room.remove(1)
    room.remove(2)
    assert room.state == "stopped"


def test_announce_tells_spectators_only():
    room = make_room()
    room.take_events()
    before = len(room.history)
    room.announce("▶️ back after a restart")
    assert room.take_events() == [Notice("▶️ back after a restart")]
    assert len(room.history) == before and room.state == "running"


# --- failures: a plain sentence for everyone, the details for the host -------------


def test_a_failed_turn_shows_the_plain_reason_and_alerts_the_host_with_the_details():
    room = make_room()
    turn = room.next_turn()
    room.take_events()
    detail = "No API key is set that can run Gemini 3 Flash. Put GEMINI_API_KEY=... in .env and start again."
    room.fail_turn(turn, "no API key set on this host can run this model", pause=True, detail=detail)
    events = room.take_events()
    shown = [e.text for e in events if isinstance(e, Notice)]
    assert shown == [
        "⚠️ AI-1 (Gemini 3 Flash) could not reply: no API key set on this host can run this model",
        "⏸️ The room is paused: AI-1 (Gemini 3 Flash)'s provider needs attention "
        "(no API key set on this host can run this model)",
    ]
    assert not any(isinstance(e, Alert) for e in events)  # apart from the events, which are stored and shown
    assert room.take_alerts() == [Alert(f"AI-1 (Gemini 3 Flash) could not reply: {detail}")]
    assert room.take_alerts() == []
    assert "GEMINI_API_KEY" not in "\n".join(e.text for e in room.history)  # nor do the AIs see it


def test_a_failed_picture_tells_the_ai_and_the_channel_the_plain_reason_only():
    room = make_room()
    _, events = speak(room, '!image "a storm"')
    job = next(e for e in events if isinstance(e, ImageJob))
    room.image_failed(job.job_id, "the provider refused the request", detail="HTTP 400: balance $0.02 left")
    events = room.take_events()
    assert [e.text for e in room.take_alerts()] == [
        "AI-1 (Gemini 3 Flash)'s picture could not be made: HTTP 400: balance $0.02 left"
    ]
    assert "$0.02" not in "".join(e.text for e in events if isinstance(e, Notice))
    assert "$0.02" not in "".join(e.text for e in room.history)


def test_no_alert_when_there_is_nothing_more_to_say():
    room = make_room()
    turn = room.next_turn()
    room.take_events()
    room.fail_turn(turn, "no answer within 300 seconds", detail="no answer within 300 seconds")
    assert room.take_alerts() == []


# --- blocking ------------------------------------------------------------------------


def test_a_blocked_member_does_not_vote_and_their_standing_vote_is_dropped():
    room = make_room()
    speak(room, "one")
    room.vote("666", 2)
    assert room.block("666", "Spammer") and not room.block("666", "Spammer")
    assert room.tally() == {}
    assert room.vote("666", 2) is None and room.tally() == {}
    assert room.unblock("666") and not room.unblock("666")
    assert room.vote("666", 2) is not None and room.tally() == {2: 1}


# --- spending and picture limits --------------------------------------------------


def spent(events) -> list[tuple[str, float, int]]:
    return [(e.kind, round(e.usd, 6), e.tokens) for e in events if isinstance(e, Spent)]


def test_each_cost_is_told_to_storage_once_where_it_is_counted():
    room = make_room("Claude Haiku 4.5", image_price_usd=0.04)
    _, events = speak(room, '!image "a lamp in the fog"', Usage(input_tokens=1000, output_tokens=1000))
    assert spent(events) == [("chat", 0.006, 2000)]
    job = next(e for e in events if isinstance(e, ImageJob))
    room.image_done(job.job_id, Picture(b"png"))
    assert spent(room.take_events()) == [("image", 0.04, 0)]
    assert room.cost_usd == pytest.approx(0.046)
    assert room.participants[1].cost_usd == pytest.approx(0.046)
    assert room.pictures == 1


def test_a_failed_picture_costs_nothing():
    room = make_room(image_price_usd=0.04)
    _, events = speak(room, '!image "a storm at sea"')
    room.image_failed(next(e for e in events if isinstance(e, ImageJob)).job_id, "refused")
    assert spent(room.take_events()) == [] and room.cost_usd == 0


def test_pictures_per_ai_within_a_window_of_turns():
    room = make_room("Gemini 3 Flash", images_per_ai=2, image_window=4)
    _, events = speak(room, '!image "one lamp"\n!image "two lamps"\n!image "three lamps"')
    assert len([e for e in events if isinstance(e, ImageJob)]) == 2
    assert texts(events)[-1] == (
        '⚠️ [AI-1]: !image "three lamps" was not applied: each AI may ask for 2 pictures every 4 turns;'
        " try again in 4 turns"
    )
    told = room.request_for(room.participants[1]).messages[-1].content
    assert '!image "three lamps": not applied: each AI may ask for 2 pictures every 4 turns' in told
    for _ in range(3):
        assert not any(isinstance(e, ImageJob) for e in speak(room, '!image "again, please"')[1])
    assert any(isinstance(e, ImageJob) for e in speak(room, '!image "at last, a lamp"')[1])


def test_pictures_per_room_and_at_once():
    room = make_room(images_at_once=2, images_per_room=3)
    _, events = speak(room, '!image "one lamp"\n!image "two lamps"\n!image "three lamps"')
    jobs = [e for e in events if isinstance(e, ImageJob)]
    assert len(jobs) == 2
    assert "2 pictures at a time, and that many are being made" in texts(events)[-1]
    for job in jobs:
        room.image_done(job.job_id, Picture(b"png"))
    _, events = speak(room, '!image "four lamps"\n!image "five lamps"')
    assert len([e for e in events if isinstance(e, ImageJob)]) == 1
    assert "this room may make 3 pictures, and it has" in texts(events)[-1]


@pytest.mark.parametrize("limit", ["images_per_ai", "images_per_room"])
def test_a_limit_of_zero_switches_pictures_off(limit):
    room = make_room(**{limit: 0})
    _, events = speak(room, '!image "a quiet harbour"')
    assert not any(isinstance(e, ImageJob) for e in events)
    assert texts(events) == ['⚠️ [AI-1]: !image "a quiet harbour" was not applied: pictures are switched off in this room']


def test_pictures_being_made_count_against_the_spending_limit():
    room = make_room(image_price_usd=0.25, budget_usd=0.6)
    _, events = speak(room, '!image "one lamp"\n!image "two lamps"\n!image "three lamps"')
    assert len([e for e in events if isinstance(e, ImageJob)]) == 2  # a third would pass $0.60
    assert "a picture costs $0.25 and the room's spending limit of $0.60 is nearly reached" in texts(events)[-1]


def test_a_room_over_its_limit_takes_no_turn():
    room = make_room(budget_usd=1.0)
    room.cost_usd = 1.5  # restored, or the limit was lowered since
    assert room.next_turn() is None
    assert room.state == "paused"


def test_ais_may_invite_only_what_the_room_allows():
    allowed = Catalog([data.catalog().get("Gemini 3 Flash"), data.catalog().get("DeepSeek R1")])
    room = Room(data.catalog(), SCENARIO, RoomSettings(), topic="tides", invitable=allowed)
    room.add("Gemini 3 Flash")
    with pytest.raises(RoomError, match="GPT 5.2 cannot join this room. Models that can: Gemini 3 Flash, DeepSeek R1."):
        room.add("GPT 5.2")
    _, events = speak(room, '!add_ai "Claude Haiku 4.5"\n!list_models')
    assert "Claude Haiku 4.5 cannot be invited here; see !list_models" in texts(events)[0]
    request = room.request_for(room.participants[1])
    assert "Models you can invite: Gemini 3 Flash, DeepSeek R1." in request.system
    assert "models you can invite: Gemini 3 Flash, DeepSeek R1." in request.messages[-1].content


@pytest.mark.parametrize(
    ("start", "mime"),
    [
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"GIF89a", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"<svg xmlns=", None),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
    ],
)
def test_a_picture_is_typed_by_its_first_bytes(start: bytes, mime: str | None):
    assert sniff_picture(start + b"rest") == mime
