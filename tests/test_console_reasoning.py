"""SHOW_REASONING in the console: a reply's thinking under it, never mistaken for the reply."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.console import ConsoleStage
from bot.engine import Reply
from bot.settings import Settings

REPLY = Reply(1, "AI-1 (DeepSeek R1)", "DeepSeek R1", "Four.", reasoning="Two plus two\nis four.")


async def printed(mode: str, out: io.StringIO | None = None) -> str:
    out = out or io.StringIO()
    await ConsoleStage(out, Path("unused"), reasoning=mode).show([REPLY])
    return out.getvalue()


async def test_off_shows_only_the_reply():
    assert await printed("off") == "AI-1 (DeepSeek R1)\nFour.\n\n"


@pytest.mark.parametrize("mode", ["spoiler", "file"])
async def test_shown_indented_under_the_reply(mode):
    assert await printed(mode) == "AI-1 (DeepSeek R1)\nFour.\n\n    (thinking)\n    Two plus two\n    is four.\n\n"


async def test_dimmed_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    text = await printed("spoiler", Terminal())
    assert "\x1b[2m    (thinking)" in text and text.rstrip("\n").endswith("\x1b[0m")


def test_setting_defaults_to_off_and_refuses_unknown_modes():
    assert Settings(_env_file=None).show_reasoning == "off"
    assert Settings(_env_file=None, show_reasoning="file").show_reasoning == "file"
    with pytest.raises(ValueError):
        Settings(_env_file=None, show_reasoning="always")
