"""The room: whispers, removal votes and addressing an AI by name (issue 11, part 1)."""

from __future__ import annotations

from bot.engine import Notice, Reply
from bot.engine.snapshot import restore_room, room_state
from tests.engine.test_room import SCENARIO, make_room, order, speak, texts

THREE = ("Gemini 3 Flash", "DeepSeek R1", "Claude Haiku 4.5")


def seen_by(room, number: int) -> str:
    """Everything the AI in seat ``number`` would be sent next, system prompt included."""
    request = room.request_for(room.participants[number])
    return request.system + "\n" + "\n".join(m.content for m in request.messages)


def outcome(room, number: int) -> str:
    """The latest "How your commands went" note addressed to ``number``."""
    notes = [e.text for e in room.history if e.kind == "private" and e.audience == number]
    return notes[-1]


# --- !whisper ---------------------------------------------------------------------


def test_whisper_reaches_only_its_recipient_and_the_sender():
    room = make_room(*THREE)
    _, events = speak(room, 'Hello all.\n!whisper "AI-3" "the tide turns at noon"')
    assert "🤫 AI-1 whispered to AI-3" in texts(events)
    assert "the tide turns at noon" in seen_by(room, 3)
    assert "the tide turns at noon" in seen_by(room, 1)  # its own reply, as written
    assert "the tide turns at noon" not in seen_by(room, 2)
    reply = next(e for e in events if isinstance(e, Reply))
    assert reply.text == "Hello all."
    assert all("tide" not in e.text for e in events if isinstance(e, Notice))
    assert "only AI-3 (Claude Haiku 4.5) received it" in outcome(room, 1)


def test_whisper_words_are_kept_for_moderators_only():
    room = make_room(*THREE)
    _, events = speak(room, '!whisper "AI-2" "secret plan"')
    notice = next(e for e in events if isinstance(e, Notice) and e.text.startswith("🤫"))
    assert notice.private == 'AI-1 (Gemini 3 Flash) to AI-2 (DeepSeek R1): "secret plan"'
    assert not notice.context
    assert not any(isinstance(e, Reply) for e in events)  # nothing else was said


def test_whisper_to_nobody_or_to_oneself_is_refused_and_explained():
    room = make_room(*THREE)
    _, events = speak(room, '!whisper "AI-9" "hello"\n!whisper "AI-1" "me"')
    assert '⚠️ [AI-1]: !whisper "AI-9" "hello" was not applied: there is no AI called AI-9 in this room' in texts(events)
    assert '⚠️ [AI-1]: !whisper "AI-1" "me" was not applied: that is you; name another AI' in texts(events)
    assert "there is no AI called AI-9" in outcome(room, 1)
    assert not any(e.text.startswith("🤫") for e in events if isinstance(e, Notice))


def test_long_whisper_is_cut_and_the_sender_told():
    room = make_room(*THREE)
    speak(room, '!whisper "AI-2" "' + "w" * 1500 + '"')
    assert "cut to 1000 characters" in outcome(room, 1)
    assert "w" * 1000 in seen_by(room, 2) and "w" * 1001 not in seen_by(room, 2)


# --- !remove_ai and !vote ---------------------------------------------------------


def test_removal_passes_by_a_majority_of_those_who_vote():
    room = make_room(*THREE, "GPT 5.2")
    _, events = speak(room, '!remove_ai "AI-4" "it only repeats itself"')
    assert '🗳️ AI-1 proposes removing AI-4 (GPT 5.2): "it only repeats itself". The other AIs vote on their next turn.' in texts(events)
    assert "!vote yes or !vote no" in seen_by(room, 2) and "A vote is open" in seen_by(room, 2)
    assert "A vote is open" not in seen_by(room, 4)  # the AI in question does not vote
    _, events = speak(room, "Agreed.\n!vote yes")
    assert "🗳️ [AI-2]: !vote yes on removing AI-4 (1 yes, 0 no so far)" in texts(events)
    assert "A vote is open" not in seen_by(room, 2)  # asked once
    _, events = speak(room, "!vote no")
    assert "🗳️ [AI-3]: !vote no on removing AI-4 (1 yes, 1 no so far)" in texts(events)
    turn = room.next_turn()  # AI-4's turn: the vote is over by now (1-1 is no majority)
    events = room.take_events()
    assert "🗳️ The vote is closed: AI-4 (GPT 5.2) stays (1 yes, 1 no)" in texts(events)
    assert turn is not None and turn.number == 4 and room.participants[4].present


def test_removal_with_a_majority_removes_the_ai_with_notices():
    room = make_room(*THREE)
    speak(room, '!remove_ai "AI-3" "off topic"')
    _, events = speak(room, "!vote yes")
    turn = room.next_turn()
    events = room.take_events()
    assert "🗳️ The vote is closed: AI-3 (Claude Haiku 4.5) is removed (1 yes, 0 no)" in texts(events)
    assert "👋 AI-3 (Claude Haiku 4.5) was removed by a vote (1 yes, 0 no)" in texts(events)
    assert turn is not None and turn.number == 1
    assert not room.participants[3].present
    assert "is closed: it is removed" in seen_by(room, 2)


def test_an_ai_that_takes_its_turn_without_voting_abstains():
    room = make_room(*THREE, "GPT 5.2")
    speak(room, '!remove_ai "AI-2"')
    speak(room, "I would rather talk about tides.")  # AI-2, the one in question
    speak(room, "!vote yes")  # AI-3
    assert room.removal is not None  # AI-4 has not had its turn yet
    speak(room, "No opinion.")  # AI-4 abstains
    room.next_turn()
    assert "🗳️ The vote is closed: AI-2 (DeepSeek R1) is removed (1 yes, 0 no)" in texts(room.take_events())


def test_members_votes_count_with_the_ais():
    room = make_room(*THREE)
    speak(room, '!remove_ai "AI-3" "rude"')
    speak(room, "!vote yes")
    assert room.member_removal_vote("ana", False)
    assert room.member_removal_vote("bo", False)
    assert room.member_removal_vote("cy", True)
    assert room.member_removal_vote("bo", True, taking_back=True)  # not bo's vote: it stays
    assert room.member_removal_vote("cy", True, taking_back=True)  # a reaction taken back
    room.next_turn()
    assert "🗳️ The vote is closed: AI-3 (Claude Haiku 4.5) stays (1 yes, 2 no)" in texts(room.take_events())
    assert not room.member_removal_vote("ana", True)  # nothing is open any more


def test_removal_refusals_are_explained():
    room = make_room(*THREE)
    _, events = speak(room, '!remove_ai "AI-1" "me"\n!remove_ai "AI-7"\n!vote yes')
    assert '⚠️ [AI-1]: !remove_ai "AI-1" "me" was not applied: that is you; name another AI' in texts(events)
    assert '⚠️ [AI-1]: !remove_ai "AI-7" was not applied: there is no AI called AI-7 in this room' in texts(events)
    assert "⚠️ [AI-1]: !vote yes was not applied: no vote is open" in texts(events)
    speak(room, '!remove_ai "AI-3" "loops"')  # AI-2 proposes
    _, events = speak(room, '!vote no\n!remove_ai "AI-1"')  # AI-3, the one in question
    assert "⚠️ [AI-3]: !vote no was not applied: you cannot vote on your own removal" in texts(events)
    assert '⚠️ [AI-3]: !remove_ai "AI-1" was not applied: a vote on removing AI-3 is still open' in texts(events)
    assert "you cannot vote on your own removal" in outcome(room, 3)


def test_a_vote_on_an_ai_a_moderator_removed_closes_with_a_notice():
    room = make_room(*THREE)
    speak(room, '!remove_ai "AI-3"')
    room.remove(3)
    room.take_events()
    room.next_turn()
    assert "🗳️ The vote on removing AI-3 (Claude Haiku 4.5) is closed: it has already left" in texts(room.take_events())
    assert room.removal is None


def test_an_open_vote_survives_a_restart():
    room = make_room(*THREE)
    speak(room, '!remove_ai "AI-3" "loops"')
    speak(room, "!vote yes")
    again = restore_room(room.catalog, SCENARIO, room.settings, room_state(room), list(room.history))
    assert again.removal == room.removal
    again.next_turn()
    assert "is removed (1 yes, 0 no)" in " ".join(texts(again.take_events()))


# --- addressing -------------------------------------------------------------------


def test_an_ai_addressed_at_the_start_of_a_line_speaks_next_then_the_round_goes_on():
    room = make_room(*THREE, "GPT 5.2")
    speak(room, "A thought.\n@AI-3 what do you make of it?")
    number, events = speak(room, "Gladly.")
    assert number == 3
    assert order(room, 4) == [2, 4, 1, 2]


def test_the_full_label_addresses_too_but_a_mention_mid_line_does_not():
    room = make_room(*THREE)
    speak(room, "AI-3 (Claude Haiku 4.5), your view?")
    assert room.next_turn().number == 3
    room = make_room(*THREE)
    speak(room, "I agree with @AI-3 here.\nAI-3 said so.")
    assert room.next_turn().number == 2


def test_addressing_is_told_to_spectators():
    room = make_room(*THREE)
    speak(room, "@AI-3 over to you")
    room.next_turn()
    assert "💬 AI-3 (Claude Haiku 4.5) speaks next: AI-1 addressed them" in texts(room.take_events())


def test_a_person_can_address_an_ai():
    room = make_room(*THREE)
    room.inject("Ana", "@AI-2 tell me about tides")
    room.take_events()
    turn = room.next_turn()
    assert turn.number == 2
    assert "💬 AI-2 (DeepSeek R1) speaks next: Ana addressed them" in texts(room.take_events())


def test_precedence_moderator_then_votes_then_addressing_then_round_robin():
    room = make_room(*THREE, "GPT 5.2")
    speak(room, "@AI-4 you next")  # AI-1
    room.vote("ana", 3)
    room.choose_next(2)
    assert room.next_turn().number == 2  # the moderator wins, and the address is spent
    room = make_room(*THREE, "GPT 5.2")
    speak(room, "@AI-4 you next")
    room.vote("ana", 3)
    assert room.next_turn().number == 3  # members' votes beat the address
    room = make_room(*THREE, "GPT 5.2")
    speak(room, "@AI-4 you next")
    assert room.next_turn().number == 4  # the address beats the round robin


def test_addressing_oneself_a_missing_or_muted_ai_changes_nothing():
    room = make_room(*THREE)
    speak(room, "@AI-1 note to self\n@AI-9 anyone?")
    assert room.next_turn().number == 2
    room = make_room(*THREE)
    room.mute(3)
    speak(room, "@AI-3 are you there?")
    assert room.next_turn().number == 2


def test_the_ais_are_told_about_the_new_commands_and_addressing():
    room = make_room(*THREE)
    system = room.request_for(room.participants[1]).system
    assert '!whisper "AI-3" "text"' in system
    assert '!remove_ai "AI-3" "reason"' in system
    assert "!vote yes or !vote no" in system
    assert '"@AI-3"' in system
    room = make_room(*THREE, commands=frozenset({"image"}))
    system = room.request_for(room.participants[1]).system
    assert "!whisper" not in system and "!remove_ai" not in system


def test_a_blocked_member_cannot_vote_on_a_removal():
    room = make_room(*THREE)
    room.block("troll", "Troll")
    speak(room, '!remove_ai "AI-3"')
    assert not room.member_removal_vote("troll", True)
    assert room.removal is not None and room.removal.ballots == {}
