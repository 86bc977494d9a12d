"""Splitting replies for Discord, small-text notices, persona names and avatars."""

from __future__ import annotations

import random
import re

import pytest

from bot.engine import ModelInfo
from bot.formatting import (
    HAIR_SPACE,
    avatar_url,
    clip,
    is_art_line,
    persona_name,
    split_message,
    subtext_messages,
)


def fences_balanced(chunk: str) -> bool:
    return len(re.findall(r"^\s*```", chunk, flags=re.MULTILINE)) % 2 == 0


# --- splitting -------------------------------------------------------------------


def test_a_short_reply_is_one_message_unchanged() -> None:
    text = "First thought.\nSecond line.\n\nA new paragraph, *with* markdown."
    assert split_message(text) == [text]


def test_exactly_2000_characters_is_one_message_and_2001_is_two() -> None:
    assert split_message("a" * 2000) == ["a" * 2000]
    two = split_message("a" * 2001)
    assert [len(c) for c in two] == [2000, 1]


def test_two_paragraphs_that_fill_2000_exactly_stay_together() -> None:
    first, second = "x" * 999, "y" * 999  # 999 + 2 (blank line) + 999 = 2000
    assert split_message(f"{first}\n\n{second}") == [f"{first}\n\n{second}"]
    assert split_message(f"{first}\n\n{second}y") == [first, second + "y"]


def test_a_split_falls_between_paragraphs_rather_than_inside_one() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 150 for i in range(4)]  # ~760 characters each
    chunks = split_message("\n\n".join(p.strip() for p in paragraphs))
    assert len(chunks) == 2
    for chunk in chunks:
        assert chunk.startswith("Paragraph ")
        assert len(chunk) <= 2000
    assert chunks[0].count("Paragraph") == 2


def test_a_long_paragraph_splits_at_line_breaks_then_between_words() -> None:
    lines = [f"line {i} " + "z" * 90 for i in range(40)]  # one paragraph of ~4000 characters
    chunks = split_message("\n".join(lines))
    assert all(len(c) <= 2000 for c in chunks)
    assert "\n".join(chunks).split("\n") == lines  # every break was a line break
    words = " ".join(["lorem"] * 900)  # one line of 5399 characters
    parts = split_message(words)
    assert all(len(p) <= 2000 for p in parts)
    assert " ".join(parts).split(" ") == ["lorem"] * 900  # no word was cut


def test_a_code_block_moves_whole_to_the_next_message_rather_than_split() -> None:
    code = "```py\n" + "\n".join(f"print({i})" for i in range(50)) + "\n```"
    text = "x" * 1500 + "\n\n" + code
    chunks = split_message(text)
    assert chunks == ["x" * 1500, code]


def test_a_code_block_longer_than_a_message_is_closed_and_reopened() -> None:
    body = "\n".join(f"    value_{i} = compute({i})  # step" for i in range(120))
    text = f"Here is the program:\n```python\n{body}\n```\nThat is all."
    chunks = split_message(text)
    assert len(chunks) >= 3
    assert all(len(c) <= 2000 for c in chunks)
    assert all(fences_balanced(c) for c in chunks)
    code_parts = [c for c in chunks if "```python" in c]
    assert len(code_parts) >= 2  # the language tag travels with every part
    kept = [line for c in chunks for line in c.split("\n") if line.startswith("    value_")]
    assert kept == body.split("\n")


def test_a_code_block_of_exactly_2000_characters_is_one_message() -> None:
    inner = "q" * (2000 - len("```\n\n```"))
    block = f"```\n{inner}\n```"
    assert len(block) == 2000
    assert split_message(block) == [block]


def test_an_unclosed_code_block_is_closed() -> None:
    chunks = split_message("Look:\n```\nfor x in y:\n    pass")
    assert chunks == ["Look:\n```\nfor x in y:\n    pass\n```"]


def test_indented_ascii_art_is_wrapped_in_a_code_block_and_kept_whole() -> None:
    art = "    /\\_/\\\n   ( o.o )\n    > ^ <"
    chunks = split_message(f"A cat:\n{art}\nThe end.")
    assert chunks == [f"A cat:\n```\n{art}\n```\nThe end."]


def test_box_drawing_art_is_wrapped_and_never_split() -> None:
    box = "╔════════════╗\n║  a doorway  ║\n╚════════════╝"
    text = "w" * 1980 + "\n\n" + box
    chunks = split_message(text)
    assert chunks[-1] == f"```\n{box}\n```"
    assert all(len(c) <= 2000 for c in chunks)


def test_prose_stays_prose() -> None:
    text = "1. First point\n    More detail, indented under the item.\n2. Second point\n\n---\n\nAfter a rule."
    assert split_message(text) == [text]
    assert not is_art_line("Hello, world. This is a sentence!")
    assert not is_art_line("    - a nested list item")
    assert is_art_line("|---|---|")
    assert is_art_line("░▒▓█▓▒░")


def test_empty_and_blank_replies_produce_nothing() -> None:
    assert split_message("") == []
    assert split_message("   \n\n  ") == []


@pytest.mark.parametrize("seed", range(30))
def test_random_texts_always_fit_and_keep_every_word(seed: int) -> None:
    rng = random.Random(seed)
    pieces = []
    for _ in range(rng.randint(1, 40)):
        kind = rng.random()
        if kind < 0.15:
            lines = ["    " + "#" * rng.randint(1, 30) for _ in range(rng.randint(1, 6))]
            pieces.append("\n".join(lines))
        elif kind < 0.3:
            lines = [f"code_{i} = {'y' * rng.randint(0, 120)}" for i in range(rng.randint(1, 60))]
            pieces.append("```\n" + "\n".join(lines) + "\n```")
        else:
            words = [f"w{rng.randint(0, 999)}" * rng.randint(1, 3) for _ in range(rng.randint(1, 400))]
            pieces.append(" ".join(words))
    text = "\n\n".join(pieces)
    chunks = split_message(text)
    assert all(0 < len(c) <= 2000 for c in chunks)
    assert all(fences_balanced(c) for c in chunks)
    tokens = [t for t in re.split(r"\s+", text) if t and not t.startswith("```")]
    kept = [t for c in chunks for t in re.split(r"\s+", c) if t and not t.startswith("```")]
    assert kept == tokens


# --- notices ---------------------------------------------------------------------


def test_notices_become_small_text_lines_in_one_message() -> None:
    texts = ['🎨 [AI-1 (Gemini 3 Flash)]: !image "a lamp" (generating...)', "[AI-1 adjusted their temperature]"]
    assert subtext_messages(texts) == ["\n".join("-# " + t for t in texts)]


def test_a_multi_line_notice_gets_the_prefix_on_every_line() -> None:
    assert subtext_messages(['💭 [AI-2]: !prompt "one\n\ntwo"']) == ['-# 💭 [AI-2]: !prompt "one\n-# two"']


def test_notices_split_at_2000_characters() -> None:
    texts = [f"notice {i} " + "n" * 90 for i in range(40)]
    messages = subtext_messages(texts)
    assert len(messages) == 3
    assert all(len(m) <= 2000 for m in messages)
    assert [line.removeprefix("-# ") for m in messages for line in m.split("\n")] == texts
    huge = subtext_messages(["h" * 4500])
    assert all(len(m) <= 2000 and all(line.startswith("-# ") for line in m.split("\n")) for m in huge)


def test_clip_keeps_short_text_and_marks_a_cut() -> None:
    assert clip("short", 10) == "short"
    assert clip("a" * 20, 10) == "a" * 9 + "…"


# --- personas --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("AI-1 (Gemini 3 Flash)", "AI-1 (Gemini 3 Flash)"),
        ("AI-2 (Discord Helper)", f"AI-2 (D{HAIR_SPACE}iscord Helper)"),
        ("clyde", f"c{HAIR_SPACE}lyde"),
        ("My CLYDE and my DiScOrD", f"My C{HAIR_SPACE}LYDE and my D{HAIR_SPACE}iScOrD"),
        ("  spread\nover lines  ", "spread over lines"),
        ("", "AI"),
    ],
)
def test_persona_names_are_valid_webhook_names(label: str, expected: str) -> None:
    name = persona_name(label)
    assert name == expected
    assert 1 <= len(name) <= 80
    assert "clyde" not in name.casefold() and "discord" not in name.casefold()


def test_persona_names_are_cut_to_80_characters() -> None:
    assert len(persona_name("AI-3 (" + "Very Long Model Name " * 10 + ")")) == 80


def test_avatar_prefers_the_catalog_and_else_is_seeded_by_the_model_name() -> None:
    template = "https://api.dicebear.com/9.x/shapes/png?seed={seed}"
    drawn = ModelInfo(name="Claude Haiku 4.5", routes={"openrouter": "x"})
    painted = ModelInfo(name="GPT 5.2", routes={"openrouter": "y"}, avatar="https://cdn.example/gpt.png")
    assert avatar_url(drawn, template) == "https://api.dicebear.com/9.x/shapes/png?seed=Claude%20Haiku%204.5"
    assert avatar_url(drawn, template) == avatar_url(drawn, template)
    assert avatar_url(painted, template) == "https://cdn.example/gpt.png"
