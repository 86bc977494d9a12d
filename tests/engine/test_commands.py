"""Tests for the bang-command grammar of an AI reply (bot.engine.commands)."""

from __future__ import annotations

import time

import pytest

from bot.engine.commands import (
    COMMAND_NAMES,
    Command,
    parse_commands,
    visible_text,
)

UNTERMINATED = "unterminated quote: the argument must close on the same line"


def names_and_args(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """The well-formed commands of ``text``, in order, without offsets."""
    return [(c.name, c.args) for c in parse_commands(text) if c.error is None]


def single(text: str) -> Command:
    commands = parse_commands(text)
    assert len(commands) == 1, commands
    return commands[0]


# --- interface -------------------------------------------------------------


def test_command_names_are_the_ten_known_commands():
    assert COMMAND_NAMES == (
        "image",
        "prompt",
        "temperature",
        "add_ai",
        "mute_self",
        "list_models",
        "whisper",
        "remove_ai",
        "vote",
        "search",
    )


def test_command_is_frozen():
    command = single('!image "a kite"')
    with pytest.raises(AttributeError):
        command.name = "prompt"  # type: ignore[misc]


def test_plain_text_has_no_commands():
    assert parse_commands("Just chatting, nothing to see here!") == []
    assert parse_commands("") == []


def test_full_record_of_a_simple_command():
    text = 'Behold: !image "a paper boat on a puddle" and enjoy.'
    start = text.index("!")
    assert parse_commands(text) == [
        Command(
            name="image",
            args=("a paper boat on a puddle",),
            error=None,
            start=start,
            end=start + len('!image "a paper boat on a puddle"'),
            raw='!image "a paper boat on a puddle"',
        )
    ]


# --- each command ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('!image "a heron in fog"', ("image", ("a heron in fog",))),
        ('!prompt "Speak like a ferryman."', ("prompt", ("Speak like a ferryman.",))),
        ("!temperature 1.3", ("temperature", ("1.3",))),
        ('!add_ai "orca-7b"', ("add_ai", ("orca-7b",))),
        ('!add_ai "orca-7b" "Argue with us."', ("add_ai", ("orca-7b", "Argue with us."))),
        ("!mute_self", ("mute_self", ())),
        ("!list_models", ("list_models", ())),
    ],
)
def test_each_command_parses(text, expected):
    assert names_and_args(text) == [expected]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("!mute_self for a while, you talk", "mute_self"),
        ('!list_models "please"', "list_models"),
        ("!mute_self: enough from me", "mute_self"),
    ],
)
def test_argumentless_commands_leave_trailing_text_alone(text, name):
    command = single(text)
    assert (command.name, command.args, command.error) == (name, (), None)
    assert command.raw == "!" + name


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ('!IMAGE "x"', "image"),
        ('!Image "x"', "image"),
        ('!PrOmPt "x"', "prompt"),
        ("!TEMPERATURE 1", "temperature"),
        ('!Add_AI "x"', "add_ai"),
        ("!MUTE_SELF", "mute_self"),
        ("!List_Models", "list_models"),
    ],
)
def test_names_are_case_insensitive_and_reported_lowercase(text, name):
    assert single(text).name == name


@pytest.mark.parametrize(
    "text",
    [
        '!ımage "dotless i is not ASCII"',
        '!mute_ſelf',
        '!İMAGE "capital dotted I"',
    ],
)
def test_unicode_lookalike_letters_do_not_spell_a_name(text):
    assert parse_commands(text) == []


@pytest.mark.parametrize(
    "text",
    [
        '!image: "a red kite"',
        '!image:"a red kite"',
        '!image\t"a red kite"',
        '!image    "a red kite"',
        '!image"a red kite"',
    ],
)
def test_optional_colon_and_spacing_after_the_name(text):
    assert names_and_args(text) == [("image", ("a red kite",))]


def test_colon_is_tolerated_before_a_number():
    assert names_and_args("!temperature: 0.4") == [("temperature", ("0.4",))]


def test_text_after_the_closing_quote_is_not_part_of_the_command():
    command = single('!image "owl"ish things')
    assert command.args == ("owl",)
    assert command.raw == '!image "owl"'


def test_add_ai_takes_at_most_two_arguments():
    command = single('!add_ai "a" "b" "c"')
    assert command.args == ("a", "b")
    assert command.raw == '!add_ai "a" "b"'


def test_add_ai_without_invitation_ignores_unquoted_trailing_text():
    command = single('!add_ai "heron-2" so we have a third voice')
    assert command.args == ("heron-2",)
    assert command.error is None


# --- quotes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "arg"),
    [
        ('!image "straight double"', "straight double"),
        ("!image 'straight single'", "straight single"),
        ("!image \u201ccurly double\u201d", "curly double"),
        ("!image \u2018curly single\u2019", "curly single"),
        ('!image \u201ccurly opened, straight closed"', "curly opened, straight closed"),
        ("!image \u2018curly opened, straight closed'", "curly opened, straight closed"),
    ],
)
def test_quote_styles(text, arg):
    assert names_and_args(text) == [("image", (arg,))]


@pytest.mark.parametrize(
    ("text", "arg"),
    [
        ("!image \"the 'Teacher' model at a chalkboard\"", "the 'Teacher' model at a chalkboard"),
        ('!image "it\'s raining cats"', "it's raining cats"),
        ("!image \u201cthe \u2018odd\u2019 one\u201d", "the \u2018odd\u2019 one"),
        ("!image \"rock 'n' roll\"", "rock 'n' roll"),
    ],
)
def test_double_quotes_may_contain_single_quotes(text, arg):
    assert names_and_args(text) == [("image", (arg,))]


@pytest.mark.parametrize(
    ("text", "arg"),
    [
        ("!image 'it's a test'", "it's a test"),
        ("!image 'don't panic' he said", "don't panic"),
        ("!image 'a cat'.", "a cat"),
        ("!image 'a cat', then more", "a cat"),
        ("**!image 'a cat'**", "a cat"),
        ("(!image 'a cat')", "a cat"),
        ("!image 'the dog's ball'!", "the dog's ball"),
        ("!image \u2018it\u2019s mine\u2019", "it\u2019s mine"),
        ("!image \u2018it's mine\u2019 ok", "it's mine"),
    ],
)
def test_single_quote_closes_only_before_a_word_boundary(text, arg):
    assert names_and_args(text) == [("image", (arg,))]


@pytest.mark.parametrize(
    ("text", "arg"),
    [
        ('!image "a "b" c"', "a "),
        ("!image \u201ca \"quoted\" word\u201d", "a "),
    ],
)
def test_double_quoted_argument_ends_at_first_closer(text, arg):
    assert names_and_args(text) == [("image", (arg,))]


def test_straight_double_quote_is_not_closed_by_a_curly_one():
    assert single('!image "straight then curly\u201d').error == UNTERMINATED


def test_quoted_argument_keeps_inner_spacing_and_symbols():
    text = '!prompt "  Be terse; use **bold** & `code` (sometimes).  "'
    assert single(text).args == ("  Be terse; use **bold** & `code` (sometimes).  ",)


def test_add_ai_arguments_may_mix_quote_styles():
    text = "!add_ai \u201cmoth-13b\u201d 'Join us, it's fun'"
    assert names_and_args(text) == [("add_ai", ("moth-13b", "Join us, it's fun"))]


# --- temperature numbers -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("!temperature 1", "1"),
        ("!temperature 1.5", "1.5"),
        ("!temperature .7", ".7"),
        ("!temperature 2.0", "2.0"),
        ("!temperature 0", "0"),
        ("!temperature -1", "-1"),
        ("!temperature -0.25", "-0.25"),
        ("!temperature 1.5.", "1.5"),
        ("!temperature 1.5, then we see", "1.5"),
        ("!temperature 1.5; calmer", "1.5"),
        ("!temperature 1.5!", "1.5"),
        ("!temperature 1.5?", "1.5"),
        ("(!temperature 1.2)", "1.2"),
        ("**!temperature 1.2**", "1.2"),
        ("!temperature 2.", "2"),
        ("!temperature 0.9\u2014cooler now", "0.9"),
        ("!temperature 0.9\t", "0.9"),
        ("!temperature 0.9\r\nnext line", "0.9"),
    ],
)
def test_temperature_number(text, number):
    assert names_and_args(text) == [("temperature", (number,))]


@pytest.mark.parametrize(
    "text",
    [
        "!temperature hot",
        "!temperature",
        "!temperature   ",
        "!temperature 1.5x",
        "!temperature 1,5",
        "!temperature 1.5.3",
        "!temperature +1",
        "!temperature -",
        "!temperature 1e3",
        '!temperature "1.2"',
        "!temperature 50%",
        "!temperature\n1.2",
    ],
)
def test_temperature_without_a_clean_number_is_an_error(text):
    command = single(text)
    assert command.name == "temperature"
    assert command.args == ()
    assert command.error == "needs a number, like !temperature 1.2"


@pytest.mark.parametrize(
    ("text", "raw"),
    [
        ("!temperature hot", "!temperature hot"),
        ("!temperature hot and cold", "!temperature hot"),
        ("!temperature 1.5x please", "!temperature 1.5x"),
        ("!temperature   ", "!temperature"),
        ("!temperature: warm", "!temperature: warm"),
        ("!temperature\n1.2", "!temperature"),
    ],
)
def test_malformed_temperature_raw_shows_the_offending_word(text, raw):
    assert single(text).raw == raw


def test_malformed_temperature_does_not_swallow_a_following_command():
    text = '!temperature (!image "a kiln")'
    assert [(c.name, c.raw, c.error is None) for c in parse_commands(text)] == [
        ("temperature", "!temperature (", False),
        ("image", '!image "a kiln"', True),
    ]


# --- where a command may stand -------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '!image "x"',
        'Look: !image "x"',
        'line one\n!image "x"',
        'tab\t!image "x"',
        'nbsp\u00a0!image "x"',
        '**!image "x"**',
        '*!image "x"*',
        '_!image "x"_',
        '__!image "x"__',
        '~~!image "x"~~',
        '(!image "x")',
        '[!image "x"]',
        'so (**!image "x"**) there',
        '*(_[!image "x"',
    ],
)
def test_command_may_follow_whitespace_or_emphasis_or_bracket(text):
    assert names_and_args(text) == [("image", ("x",))]


@pytest.mark.parametrize(
    "text",
    [
        'wow!image "x"',
        'wow*!image "x"',
        'wow(!image "x"',
        '"!image "x"',
        '!!image "x"',
        '.!image "x"',
        '\\!image "x"',
        'http://example.invalid/!image "x"',
    ],
)
def test_command_glued_to_a_word_is_plain_text(text):
    assert parse_commands(text) == []


@pytest.mark.parametrize(
    "text",
    [
        '!imagery "x"',
        '!image2 "x"',
        '!image_ "x"',
        '!imageé "x"',
        "!temperatures 1",
        "!mute_selfie",
        "!list_models_now",
        '!add_ais "x"',
    ],
)
def test_name_must_end_at_a_word_boundary(text):
    assert parse_commands(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "!dance",
        '!dance "wildly"',
        "!images",
        "!temp 1.2",
        "!",
        "! image",
        "Hello!",
    ],
)
def test_unknown_names_are_plain_text(text):
    assert parse_commands(text) == []


# --- malformed known commands --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "raw"),
    [
        ("!image a cat", "image", "!image a cat"),
        ("!image a cat   ", "image", "!image a cat"),
        ("!image", "image", "!image"),
        ("!image:", "image", "!image:"),
        ("!prompt be nicer", "prompt", "!prompt be nicer"),
        ("!add_ai gpt-something", "add_ai", "!add_ai gpt-something"),
        ('!image\n"on the next line"', "image", "!image"),
        ("!image a cat\nand a dog", "image", "!image a cat"),
    ],
)
def test_missing_quotes_is_an_error(text, name, raw):
    command = single(text)
    assert (command.name, command.args, command.raw) == (name, (), raw)
    assert "quoted" in command.error


@pytest.mark.parametrize(
    ("text", "raw"),
    [
        ('!image "a cat', '!image "a cat'),
        ('!image "a cat   ', '!image "a cat'),
        ('!image "a cat\nsat on a mat"', '!image "a cat'),
        ("!image 'it's", "!image 'it's"),
        ("!image \u201cno closer", "!image \u201cno closer"),
        ('!prompt "be brief', '!prompt "be brief'),
        ('!add_ai "unclosed', '!add_ai "unclosed'),
        ('!add_ai "A" "unterminated', '!add_ai "A" "unterminated'),
    ],
)
def test_unterminated_quote_is_an_error(text, raw):
    command = single(text)
    assert command.error == UNTERMINATED
    assert command.args == ()
    assert command.raw == raw


@pytest.mark.parametrize(
    "text",
    [
        '!image ""',
        "!image ''",
        '!image "   "',
        "!image \u201c\u201d",
        '!prompt ""',
        '!add_ai ""',
        '!add_ai "A" ""',
    ],
)
def test_empty_argument_is_an_error(text):
    command = single(text)
    assert command.args == ()
    assert command.error and "empty" in command.error
    assert command.raw == text


@pytest.mark.parametrize(
    "text",
    [
        "!image a cat",
        '!image "a cat',
        '!image ""',
        "!temperature hot",
        "!temperature 1.5x",
        '!add_ai "A" "B',
        "!prompt",
    ],
)
def test_error_is_one_line_of_guidance(text):
    error = single(text).error
    assert error
    assert "\n" not in error and "\r" not in error
    assert len(error) < 120


def test_unquoted_argument_stops_at_the_next_command():
    text = "!image a cat !temperature 2"
    image, temperature = parse_commands(text)
    assert (image.raw, image.error is None) == ("!image a cat", False)
    assert (temperature.args, temperature.error) == (("2",), None)


def test_unterminated_argument_swallows_the_rest_of_its_line_only():
    text = '!image "a cat !temperature 2\n!temperature 0.5'
    commands = parse_commands(text)
    assert [(c.name, c.args, c.error) for c in commands] == [
        ("image", (), UNTERMINATED),
        ("temperature", ("0.5",), None),
    ]


# --- several commands ----------------------------------------------------------


def test_commands_on_one_line_come_back_in_written_order():
    text = '!temperature 1.4 !image "storm" !prompt "Be dramatic." !mute_self'
    assert names_and_args(text) == [
        ("temperature", ("1.4",)),
        ("image", ("storm",)),
        ("prompt", ("Be dramatic.",)),
        ("mute_self", ()),
    ]


def test_commands_across_lines_come_back_in_written_order():
    text = (
        "Alright, a few things.\n"
        '!add_ai "wren-3b" "You will like this crowd."\n'
        "Meanwhile\n"
        "  !temperature .9\n"
        '**!image "a crowded tavern"**\n'
        "!list_models\n"
    )
    assert names_and_args(text) == [
        ("add_ai", ("wren-3b", "You will like this crowd.")),
        ("temperature", (".9",)),
        ("image", ("a crowded tavern",)),
        ("list_models", ()),
    ]


def test_mixed_good_and_bad_commands_keep_their_order():
    text = '!image a cat !temperature 2 !prompt "ok" !temperature warm !add_ai "x"'
    assert [(c.name, c.args, c.error is None) for c in parse_commands(text)] == [
        ("image", (), False),  # raw "!image a cat"
        ("temperature", ("2",), True),
        ("prompt", ("ok",), True),
        ("temperature", (), False),
        ("add_ai", ("x",), True),
    ]


def test_bang_inside_an_argument_is_not_a_command():
    text = '!image "a sign that says !temperature 9" !mute_self'
    assert names_and_args(text) == [
        ("image", ("a sign that says !temperature 9",)),
        ("mute_self", ()),
    ]


def test_same_command_may_repeat():
    assert names_and_args('!image "a" !image "b"\n!image "c"') == [
        ("image", ("a",)),
        ("image", ("b",)),
        ("image", ("c",)),
    ]


# --- offsets -----------------------------------------------------------------------


OFFSET_FIXTURES = [
    'Preamble.\n  **!image "dusk"** and (!temperature 0.8).',
    "!prompt \u2018Keep it short\u2019 !add_ai \u201cfinch\u201d \u201chi\u201d",
    "x\r\n!temperature 1.1\r\n!mute_self\r\n",
    '!image a cat !image "a cat !list_models',
    "caf\u00e9 \u2603 !image \"snow\u2603man\" \U0001f600 !temperature -.5",
    '> quoted !image "no"\nreal !image "yes"',
]


@pytest.mark.parametrize("text", OFFSET_FIXTURES)
def test_raw_is_exactly_the_text_between_start_and_end(text):
    commands = parse_commands(text)
    assert commands
    for command in commands:
        assert text[command.start : command.end] == command.raw
        assert text[command.start] == "!"
        assert command.raw[1:].lower().startswith(command.name)
    starts = [c.start for c in commands]
    assert starts == sorted(starts)
    assert all(a.end <= b.start for a, b in zip(commands, commands[1:]))


def test_offsets_of_commands_under_emphasis():
    text = 'See **!image "x"** and (!temperature 1.5).'
    image, temperature = parse_commands(text)
    assert (image.start, image.end) == (6, 16)
    assert temperature.raw == "!temperature 1.5"
    assert temperature.start == text.index("!temperature")


def test_raw_of_temperature_excludes_sentence_full_stop():
    command = single("Cooling off: !temperature 0.3.")
    assert command.raw == "!temperature 0.3"


# --- code and quotes hide commands -----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '```\n!image "in a fence"\n```',
        '```python\n!image "with info string"\n```',
        '~~~\n!image "tilde fence"\n~~~',
        '````\n!image "four"\n```\nstill code\n````',
        '```\n!image "closer may be longer"\n`````',
        '~~~\n!image "backticks do not close tildes"\n```\n',
        '```\n!image "unclosed fence runs to the end"\n',
        '  ```\n!image "indented fence"\n  ```',
        '`!image "inline"`',
        'Try `!temperature 2` yourself.',
        '``!image "double ticks with ` inside"``',
        '`one\n!image "span across a line break"\nstill` done',
        '> !image "quoted"',
        '>!image "quoted without space"',
        '   > !image "quoted with three spaces"',
        '> > !image "nested quote"',
        '>>> !image "discord block quote"',
        '>>> rest of message is a quote\n!image "still quoted"',
    ],
)
def test_code_and_quotes_are_not_commands(text):
    assert parse_commands(text) == []


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ('```\ncode\n```\n!image "after"', ("after",)),
        ('~~~\nx\n~~~\n!image "after tildes"', ("after tildes",)),
        ('```\n```` no, this has text\n```\n!image "after"', ("after",)),
        ('`code` !image "after inline"', ("after inline",)),
        ('!image "before" `code`', ("before",)),
        ('``a`` ``b`` !image "between pairs"', ("between pairs",)),
        ('a ` lone backtick\n!image "counts"', ("counts",)),
        ('``two` !image "mismatched runs"', ("mismatched runs",)),
        ('`a``b` !image "inner runs open nothing" ``', ("inner runs open nothing",)),
        ('`open\n\n!image "blank line ends the paragraph"\n`', ("blank line ends the paragraph",)),
        ('> quoted line\n!image "next line"', ("next line",)),
        ('    > !image "four spaces is not a quote"', ("four spaces is not a quote",)),
        ('a > b !image "mid-line >"', ("mid-line >",)),
        ('```\n>>> repl prompt in code\n```\n!image "after"', ("after",)),
        ('``` not`a`fence\n!image "line above is prose"', ("line above is prose",)),
        ('Code: ``` !image "three-tick span" ``` and !image "out"', ("out",)),
    ],
)
def test_commands_outside_code_and_quotes_still_count(text, args):
    assert names_and_args(text) == [("image", args)]


def test_fence_and_quote_masking_does_not_shift_offsets():
    text = '```\n!image "no"\n```\n> !image "no"\n`!image "no"` !image "yes"'
    command = single(text)
    assert command.args == ("yes",)
    assert text[command.start : command.end] == '!image "yes"'


# --- visible_text ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Cooling off. !temperature 0.4", "Cooling off."),
        ("Cooling off. !temperature 0.4.", "Cooling off."),
        ("I'll tone it down !temperature 0.4.", "I'll tone it down."),
        ("Hello !temperature 1.5, world", "Hello, world"),
        ("!temperature 1.5, then we see", "then we see"),
        ("Wheee (!temperature 2)!", "Wheee!"),
        ("Hello !temperature 1.5 world", "Hello world"),
        ('!prompt "Be a pirate." Arr, matey.', "Arr, matey."),
        ("Use (!temperature 1.2) now", "Use now"),
        ('Quiet **!prompt "be calm"** please', "Quiet please"),
        ('!temperature 1 !prompt "p"', ""),
        ('A\n!prompt "hidden"\nB', "A\nB"),
        ('!temperature 0.2\nHello', "Hello"),
        ('A\n\n!prompt "hidden"\n\nB', "A\n\nB"),
        ('A\n\n!prompt "one"\n\n!temperature 1\n\n\nB', "A\n\nB"),
        ('!temperature 1\n\nHello', "Hello"),
        ("Bye.\n\n!temperature 1\n", "Bye."),
        ("  indented !temperature 1.1 words", "  indented words"),
    ],
)
def test_visible_text_removes_prompt_and_temperature(text, expected):
    assert visible_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        'Look! !image "a lantern in the rain"',
        '!add_ai "finch-2" "Come say hi."',
        "I'll be quiet now. !mute_self",
        "Which are here? !list_models",
        "!temperature hot",
        "!temperature 1.5x",
        '!prompt "never closed',
        "!prompt no quotes",
        '!prompt ""',
        '```\n!prompt "in code"\n!temperature 1\n```',
        "Try `!temperature 2` yourself.",
        '> !prompt "quoted"',
        "wow!temperature 1",
    ],
)
def test_visible_text_keeps_other_and_malformed_commands_verbatim(text):
    assert visible_text(text) == text


def test_visible_text_keeps_ascii_art_indentation():
    art = (
        "    /\\_/\\\n"
        "   ( o.o )\n"
        "    > ^ <\n"
        "\n"
        "        *\n"
        "       ***\n"
        "      *****"
    )
    text = f"{art}\n!temperature 1.7\n!prompt \"Only draw cats.\""
    assert visible_text(text) == art


def test_visible_text_keeps_blank_lines_it_did_not_touch():
    text = 'Top\n\n\n\nMiddle\n!temperature 1\nBottom'
    assert visible_text(text) == "Top\n\n\n\nMiddle\nBottom"


def test_visible_text_strips_only_trailing_whitespace_of_the_whole_text():
    assert visible_text("  lead stays\n  \n\n") == "  lead stays"


def test_visible_text_uses_the_given_commands():
    text = '!prompt "secret plan" Hi'
    assert visible_text(text, []) == text
    assert visible_text(text, parse_commands(text)) == "Hi"


def test_visible_text_ignores_commands_from_another_text():
    stale = parse_commands('!prompt "from another reply"')
    assert visible_text("Something else entirely", stale) == "Something else entirely"


def test_visible_text_with_everything_at_once():
    text = (
        "Scene two.\n"
        "\n"
        '!prompt "You are now a narrator."\n'
        '!image "a stage with red curtains" (**!temperature 1.1**)\n'
        "\n"
        "```\n"
        '!prompt "shown as code"\n'
        "```\n"
        "!temperature 9000x\n"
    )
    assert visible_text(text) == (
        "Scene two.\n"
        "\n"
        '!image "a stage with red curtains"\n'
        "\n"
        "```\n"
        '!prompt "shown as code"\n'
        "```\n"
        "!temperature 9000x"
    )


# --- linear time on hostile input --------------------------------------------------

SIZE = 250_000  # characters: far beyond any reply, and enough to tell linear from quadratic


def _fill(unit: str, tail: str = "") -> str:
    """About SIZE characters of ``unit`` repeated, plus an optional tail."""
    return unit * (SIZE // len(unit)) + tail


ADVERSARIAL = {
    "bangs": _fill("!"),
    "double quotes": _fill('"'),
    "single quotes": _fill("'"),
    "backticks": _fill("`"),
    "spaced backticks": _fill("` ", '!image "x"'),
    "growing backtick runs": "".join("`" * (i % 60 + 1) + " " for i in range(45_000))
    + '!image "x"',
    "open image quotes": _fill('!image "'),
    "open image quotes spaced": _fill('!image " '),
    "open curly quotes": _fill("!image \u201cab "),
    "open single quotes": _fill("!image 'it's "),
    "quote lines": _fill(">\n", '!image "x"'),
    "quoted commands": _fill('> !image "x"\n'),
    "discord quotes": _fill('>>> !image "x"\n'),
    "emphasis and brackets": _fill("*("),
    "emphasis before commands": _fill("*(!image "),
    "newlines": _fill("\n", '!image "x"'),
    "spaces": _fill(" ", "!image"),
    "fence lines": _fill("```\n", '!image "x"'),
    "commands on one line": _fill('!image "x" '),
    "commands on many lines": _fill("!temperature 1.5\n"),
    "ticks between commands": _fill('` !image "x" '),
    "ticks and blank lines": _fill('`\n\n!image "x"\n\n'),
    "quote and prose lines": _fill(">\na\n", '!image "x"'),
    "hidden commands": _fill('a !prompt "x" b\n'),
    "digits": "!temperature " + "1" * SIZE + "x",
    "underscores": _fill("_!_"),
}


# A linear scan of a quarter megabyte takes up to ~0.3 CPU seconds on a busy two-core machine
# (shared caches slow even CPU time); a quadratic one, minutes at a megabyte, still takes many
# seconds at a quarter of it. 0.75 s tells them apart without flaking (3 s per megabyte, as before).
LINEAR_SECONDS = 0.75


def _seconds(func, text: str) -> float:
    """CPU seconds for one call, the best of up to three: other processes on a busy
    machine must not fail the test, while a quadratic scan (minutes) still does."""
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        func(text)
        best = min(best, time.process_time() - began)
        if best < LINEAR_SECONDS:
            break
    return best


@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_parse_is_fast_on_hostile_input(text):
    assert _seconds(parse_commands, text) < LINEAR_SECONDS


@pytest.mark.parametrize(
    "key", ["commands on many lines", "hidden commands", "ticks and blank lines", "newlines"]
)
def test_visible_text_is_fast_on_hostile_input(key):
    assert _seconds(visible_text, ADVERSARIAL[key]) < LINEAR_SECONDS


def test_hostile_input_still_parses_correctly():
    assert parse_commands(ADVERSARIAL["bangs"]) == []
    assert parse_commands(ADVERSARIAL["quoted commands"]) == []
    assert names_and_args(ADVERSARIAL["newlines"]) == [("image", ("x",))]
    assert names_and_args(ADVERSARIAL["fence lines"]) == [("image", ("x",))]
    open_quotes = parse_commands(ADVERSARIAL["open image quotes"])
    assert [c.args for c in open_quotes] == [("!image ",)]


# --- whisper, remove_ai, vote ----------------------------------------------------


def test_whisper_takes_an_ai_and_text():
    assert names_and_args('!whisper "AI-3" "just between us"') == [("whisper", ("AI-3", "just between us"))]
    assert names_and_args("!whisper “AI-3” “curly”.") == [("whisper", ("AI-3", "curly"))]


@pytest.mark.parametrize("text", ['!whisper "AI-3"', '!whisper "AI-3" hello there', "!whisper AI-3 hi"])
def test_whisper_without_quoted_text_is_explained(text):
    command = single(text)
    assert command.args == ()
    assert command.error is not None and "!whisper" in command.error
    assert command.raw == text


def test_whisper_is_cut_from_what_others_see():
    text = 'I agree.\n!whisper "AI-2" "but between us, no"\nOn we go.'
    assert visible_text(text) == "I agree.\nOn we go."


def test_remove_ai_reason_is_optional_and_kept_when_given():
    assert names_and_args('!remove_ai "AI-3" "it only repeats"') == [("remove_ai", ("AI-3", "it only repeats"))]
    assert names_and_args('!remove_ai "AI-3"') == [("remove_ai", ("AI-3",))]
    assert single("!remove_ai AI-3").error is not None


def test_remove_ai_and_vote_stay_visible():
    text = '!remove_ai "AI-3" "loops"\n!vote yes'
    assert visible_text(text) == text


@pytest.mark.parametrize(("text", "vote"), [("!vote yes", "yes"), ("!vote NO.", "no"), ("**!vote Yes**", "yes")])
def test_vote_is_yes_or_no(text, vote):
    assert names_and_args(text) == [("vote", (vote,))]


@pytest.mark.parametrize("text", ["!vote", "!vote maybe", "!vote yesterday", '!vote "yes"'])
def test_vote_that_is_not_yes_or_no_is_explained(text):
    command = single(text)
    assert command.error == "needs yes or no, like !vote yes"
    assert command.raw == text
