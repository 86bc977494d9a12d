"""One logging setup (LOG_LEVEL, one format, chatty libraries capped, secrets masked) and stop signals."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal

import pytest

from bot.process import MASK, setup_logging, stopped_by_signal, stopping_on_signals
from bot.settings import Settings

KEY = "sk-or-v1-0123456789abcdef"
TOKEN = "MTA1.discord.token-0123456789"


def configured(**values: object) -> tuple[io.StringIO, Settings]:
    out = io.StringIO()
    settings = Settings(_env_file=None, **values)  # type: ignore[arg-type]
    setup_logging(settings, stream=out)
    return out, settings


def test_log_level_comes_from_the_setting_and_the_format_is_one_line() -> None:
    out, _ = configured(log_level="warning")
    logging.getLogger("bot.runner").info("not shown at WARNING")
    logging.getLogger("bot.runner").warning("room %s paused", 3)
    [line] = out.getvalue().splitlines()
    assert line.endswith(" WARNING bot.runner: room 3 paused")
    assert line[:4].isdigit()  # starts with the time


def test_without_log_level_each_entry_point_keeps_its_default() -> None:
    out = io.StringIO()
    setup_logging(Settings(_env_file=None), default=logging.WARNING, stream=out)
    logging.getLogger("bot").info("console chatter")
    assert out.getvalue() == ""


def test_http_libraries_stay_at_warning_even_at_debug() -> None:
    out, _ = configured(log_level="DEBUG")
    for name in ("httpx", "httpcore", "discord.http", "aiosqlite"):
        logging.getLogger(name).info("a request with its URL")
        logging.getLogger(name).debug("a request body")
    logging.getLogger("bot.stage").debug("the bot's own debugging")
    assert out.getvalue().count("\n") == 1 and "bot.stage" in out.getvalue()


@pytest.mark.logs_errors
def test_secrets_are_masked_wherever_they_appear() -> None:
    out, _ = configured(openrouter_api_key=KEY, discord_token=TOKEN, log_level="INFO")
    log = logging.getLogger("bot.providers")
    log.info("calling https://example/v1?key=%s", KEY)
    try:
        raise RuntimeError(f"Authorization: Bearer {TOKEN}")
    except RuntimeError:
        log.exception("a provider failed")
    text = out.getvalue()
    assert KEY not in text and TOKEN not in text
    assert text.count(MASK) == 2  # in the message and in the exception's text


def test_a_second_setup_replaces_the_first_instead_of_doubling_lines() -> None:
    configured(log_level="INFO")
    out, _ = configured(log_level="INFO")
    logging.getLogger("bot").info("once")
    assert out.getvalue().count("once") == 1
    ours = [h for h in logging.getLogger().handlers if getattr(h, "seance", False)]
    assert len(ours) == 1


def test_an_unknown_log_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log_level"):
        Settings(_env_file=None, log_level="chatty")  # type: ignore[arg-type]


# --- signals ---------------------------------------------------------------------------


async def test_sigterm_cancels_the_task_once_and_the_handler_goes_afterwards() -> None:
    loop = asyncio.get_running_loop()
    steps: list[str] = []

    async def serve() -> None:
        with stopping_on_signals() as stop:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                assert stopped_by_signal(stop)
                steps.append("cancelled")
                os.kill(os.getpid(), signal.SIGHUP)  # a second signal while shutting down changes nothing
                await asyncio.sleep(0.05)
                steps.append(f"shut down after {signal.Signals(stop.signal).name}, exit {stop.exit_code}")

    await asyncio.wait_for(serve(), 5)
    assert steps == ["cancelled", "shut down after SIGTERM, exit 143"]
    assert not loop.remove_signal_handler(signal.SIGTERM)  # nothing left installed


async def test_a_cancellation_that_is_not_ours_still_propagates() -> None:
    async def serve() -> None:
        with stopping_on_signals() as stop:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if not stopped_by_signal(stop):
                    raise

    task = asyncio.create_task(serve())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
