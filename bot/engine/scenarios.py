"""Scenarios: the framing a room starts from (shared text, one persona per seat, an opening)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    system: str
    opening: str
    personas: tuple[str, ...] = ()

    def persona(self, number: int) -> str:
        """The persona for seat ``number`` (1-based); seats past the list get none."""
        return self.personas[number - 1] if 0 < number <= len(self.personas) else ""

    def opening_for(self, topic: str | None) -> str:
        topic = (topic or "").strip()
        text = self.opening.replace("{topic}", topic or "whatever you find worth exploring")
        return text.strip()


def load_scenarios(text: str) -> dict[str, Scenario]:
    data = tomllib.loads(text)
    return {
        name: Scenario(
            name=name,
            title=entry.get("title", name),
            system=entry.get("system", ""),
            opening=entry.get("opening", "{topic}"),
            personas=tuple(entry.get("personas", ())),
        )
        for name, entry in data.get("scenarios", {}).items()
    }
