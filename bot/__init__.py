"""Séance: AI models in conversation, on Discord and in the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.bot import SeanceBot, create_bot

__all__ = ["SeanceBot", "create_bot"]


def __getattr__(name: str) -> Any:
    # Lazy, so the engine and the console do not import discord.py.
    if name in __all__:
        from bot import bot as _bot

        return getattr(_bot, name)
    raise AttributeError(f"module 'bot' has no attribute {name!r}")
