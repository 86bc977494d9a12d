"""Tokens and dollars of a long console room, with and without Anthropic prompt caching.

A 50-turn room of four AIs (Claude Sonnet 4.5, Claude Haiku 4.5, Gemini 3
Flash, DeepSeek R1), each on its native route, runs through the real engine,
runner, provider pool and adapters against the fake servers on 127.0.0.1.
The fakes report usage the way the services do, measured from each request
(a token is about four characters): the Anthropic fake simulates its prompt
cache for ``cache_control`` prefixes seen before; Gemini and DeepSeek cache
repeated prefixes on their own. Costs are the catalog's prices, as the room
counts them when a provider reports none.

Run with ``python bench/cost.py [--turns N] [--context-tokens N]``; it prints
a table and asserts nothing. A small ``--context-tokens`` (say 4000 over 200
turns) shows the case caching does not help: once the history is trimmed to
fit, its start changes every turn, so no prefix repeats and every turn pays
for a cache write.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot import data  # noqa: E402
from bot.engine import Picture, Room, RoomSettings, Usage  # noqa: E402
from bot.providers import ProviderPool, route_for  # noqa: E402
from bot.runner import QuietStage, RoomRunner  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.fakes import FakeAnthropicServer, FakeGeminiServer, FakeLLMServer, Reply  # noqa: E402
from tests.fakes.native import PrefixCache, tokens  # noqa: E402

AIS = ("Claude Sonnet 4.5", "Claude Haiku 4.5", "Gemini 3 Flash", "DeepSeek R1")
TOPIC = "what a lighthouse keeps when nobody is watching"
WORDS = (
    "tide lantern salt static orbit hollow signal ember quiet glass archive drift "
    "harbor echo weather circuit moth compass dusk thread vessel murmur horizon ledger"
).split()
REPLY_CHARS = 700  # about 175 tokens: a few paragraphs, as these rooms tend to write
THOUGHT_CHARS = 1200  # what a thinking model spends before answering (billed as output)
DEEPSEEK_CACHE_UNIT = 64  # DeepSeek caches prefixes in 64-token units


def prose(seed: str, chars: int) -> str:
    """Deterministic sentences from ``seed``: no commands, no labels, different every turn."""
    digest = hashlib.sha256(seed.encode()).digest()
    words: list[str] = []
    i = 0
    while sum(len(w) + 1 for w in words) < chars:
        words.append(WORDS[(digest[i % 32] + i * 7) % len(WORDS)])
        i += 1
        if i % 12 == 0:
            words[-1] += "."
    return " ".join(words).capitalize() + "."


class Turns:
    """Counts each model's replies, so every reply differs even once old turns are trimmed away."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def next(self, model: str) -> int:
        self._counts[model] = self._counts.get(model, 0) + 1
        return self._counts[model]


# --- the fakes' writers ---------------------------------------------------------------


def claude_writer(turns: Turns) -> Callable[[dict[str, Any]], str]:
    return lambda body: prose(f"{body['model']}-{turns.next(body['model'])}", REPLY_CHARS)


def gemini_writer(turns: Turns) -> Callable[[dict[str, Any]], tuple[str, str]]:
    def write(body: dict[str, Any]) -> tuple[str, str]:
        seed = f"gemini-{turns.next('gemini')}"
        return prose(seed, REPLY_CHARS), prose(seed + "-thought", THOUGHT_CHARS // 2)

    return write


def deepseek_replies(turns: Turns) -> Callable[[dict[str, Any]], Reply]:
    """DeepSeek's answer with its usage: cache hits on repeated message prefixes, in 64-token units."""
    cache = PrefixCache()

    def reply(body: dict[str, Any]) -> Reply:
        messages = body["messages"]
        segments = [((m["role"], m["content"]), tokens(str(m["content"]))) for m in messages]
        prefixes = PrefixCache.prefixes(segments)
        cached = cache.hit(prefixes, range(len(prefixes))) // DEEPSEEK_CACHE_UNIT * DEEPSEEK_CACHE_UNIT
        for prefix in prefixes:
            cache.store(prefix, DEEPSEEK_CACHE_UNIT)
        seed = f"deepseek-{turns.next('deepseek')}"
        text, thought = prose(seed, REPLY_CHARS), prose(seed + "-thought", THOUGHT_CHARS)
        usage = (prefixes[-1][1], tokens(text) + tokens(thought))
        return Reply.text(text, reasoning=thought, usage=usage, cached=cached, style="deepseek", model=body["model"])

    return reply


# --- one room -------------------------------------------------------------------------


class NoPictures:
    name = "none"

    async def generate(self, prompt: str) -> Picture:
        return Picture(b"\x89PNG", offline=True)


@dataclass
class Row:
    name: str
    route: str
    turns: int
    usage: Usage
    cost: float


async def run_room(turns: int, prompt_cache: bool, context_tokens: int) -> tuple[list[Row], float]:
    """One room on fresh fake servers (so no cache survives from the other run)."""
    with FakeAnthropicServer() as anthropic, FakeGeminiServer() as gemini, FakeLLMServer() as deepseek:
        turns_taken = Turns()
        anthropic.writer = claude_writer(turns_taken)
        gemini.writer = gemini_writer(turns_taken)
        deepseek.default = deepseek_replies(turns_taken)
        settings = Settings(
            _env_file=None,
            openrouter_api_key=None,
            anthropic_api_key="sk-ant-bench", anthropic_base_url=anthropic.base_url, anthropic_prompt_cache=prompt_cache,
            gemini_api_key="AIza-bench", gemini_base_url=gemini.base_url,
            deepseek_api_key="sk-ds-bench", deepseek_base_url=deepseek.base_url,
            openai_api_key=None,
        )
        room_settings = RoomSettings(max_turns=turns, context_tokens=context_tokens)
        room = Room(data.catalog(), data.scenarios()["open-room"], room_settings, topic=TOPIC)
        for name in AIS:
            room.add(name)
        pool = ProviderPool(settings)
        runner = RoomRunner(room, pool.get, NoPictures(), QuietStage())
        started = time.perf_counter()
        try:
            await runner.run(return_on_pause=True)
        finally:
            await pool.aclose()
        seconds = time.perf_counter() - started
        rows = [
            Row(p.model.name, route_for(p.model, settings), p.turns, p.usage, p.cost_usd)
            for p in room.participants.values()
        ]
        return rows, seconds


# --- the table ------------------------------------------------------------------------


def table(title: str, rows: list[Row]) -> str:
    header = ("AI", "route", "turns", "input", "cached in", "cache write", "output", "cost $")
    total = Usage()
    for row in rows:
        total.add(row.usage)
    body = [
        (r.name, r.route, str(r.turns), f"{r.usage.input_tokens:,}", f"{r.usage.cached_input_tokens:,}",
         f"{r.usage.cache_write_tokens:,}", f"{r.usage.output_tokens:,}", f"{r.cost:.4f}")
        for r in rows
    ]
    body.append((
        "total", "", str(sum(r.turns for r in rows)), f"{total.input_tokens:,}", f"{total.cached_input_tokens:,}",
        f"{total.cache_write_tokens:,}", f"{total.output_tokens:,}", f"{sum(r.cost for r in rows):.4f}",
    ))
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for line in body:
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
    return "\n".join(lines)


def claude_cost(rows: list[Row]) -> float:
    return sum(r.cost for r in rows if r.route == "anthropic")


async def main(turns: int, context_tokens: int) -> None:
    cached, seconds_on = await run_room(turns, True, context_tokens)
    plain, seconds_off = await run_room(turns, False, context_tokens)
    print(table(f"ANTHROPIC_PROMPT_CACHE=true ({turns} turns, {seconds_on:.1f} s)", cached))
    print()
    print(table(f"ANTHROPIC_PROMPT_CACHE=false ({turns} turns, {seconds_off:.1f} s)", plain))
    print()
    on, off = claude_cost(cached), claude_cost(plain)
    room_on, room_off = sum(r.cost for r in cached), sum(r.cost for r in plain)
    print(f"Claude seats: ${off:.4f} without caching, ${on:.4f} with it ({change(on, off)})")
    print(f"Whole room:   ${room_off:.4f} without, ${room_on:.4f} with ({change(room_on, room_off)})")


def change(new: float, old: float) -> str:
    saved = 1 - new / old if old else 0.0
    return f"{saved:.0%} less" if saved >= 0 else f"{-saved:.0%} more"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=50, help="AI turns in the room (default 50)")
    parser.add_argument(
        "--context-tokens", type=int, default=RoomSettings.context_tokens,
        help="the room's context cap (default: CONTEXT_TOKENS' default); a small one shows trimming",
    )
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.context_tokens))
