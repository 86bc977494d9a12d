"""Scenarios: the framing a room starts from (shared text, one persona per seat, an opening,
and the AI commands it allows)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any

from .commands import COMMAND_NAMES

_KEYS = {"title", "description", "system", "opening", "personas", "commands"}


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the scenario and the field."""


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    system: str
    opening: str
    personas: tuple[str, ...] = ()
    commands: frozenset[str] | None = None  # the AI commands this scenario allows; None: all the host allows
    description: str = ""  # one line for /seance scenarios

    def persona(self, number: int) -> str:
        """The persona for seat ``number`` (1-based); seats past the list get none."""
        return self.personas[number - 1] if 0 < number <= len(self.personas) else ""

    def opening_for(self, topic: str | None) -> str:
        topic = (topic or "").strip()
        text = self.opening.replace("{topic}", topic or "whatever you find worth exploring")
        return text.strip()


def load_scenarios(text: str) -> dict[str, Scenario]:
    """Scenarios from TOML text (``[scenarios.NAME]`` tables); ScenarioError says what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"The scenario file is not valid TOML: {exc}.") from None
    tables = data.get("scenarios", {})
    if not isinstance(tables, dict):
        raise ScenarioError("The file needs [scenarios.NAME] tables.")
    return {name: _scenario(name, entry) for name, entry in tables.items()}


def _scenario(name: str, entry: Any) -> Scenario:
    where = f'Scenario "{name}"'
    if not isinstance(entry, dict):
        raise ScenarioError(f"{where} must be a table.")
    if unknown := sorted(set(entry) - _KEYS):
        raise ScenarioError(f"{where}: unknown field {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))}).")
    texts = {key: entry.get(key, default) for key, default in
             (("title", name), ("description", ""), ("system", ""), ("opening", "{topic}"))}
    for key, value in texts.items():
        if not isinstance(value, str):
            raise ScenarioError(f"{where}: {key} must be text.")
    personas = entry.get("personas", [])
    if not isinstance(personas, list) or not all(isinstance(p, str) for p in personas):
        raise ScenarioError(f"{where}: personas must be a list of texts, one per seat.")
    return Scenario(
        name=name,
        title=texts["title"],
        system=texts["system"],
        opening=texts["opening"],
        personas=tuple(personas),
        commands=_commands(where, entry.get("commands")),
        description=texts["description"].strip(),
    )


def _commands(where: str, value: Any) -> frozenset[str] | None:
    """The allowed commands, written with or without the "!"; absent means every command."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ScenarioError(f'{where}: commands must be a list of command names, e.g. ["image", "prompt"].')
    names = frozenset(c.strip().lstrip("!") for c in value)
    if unknown := sorted(names - set(COMMAND_NAMES)):
        raise ScenarioError(f"{where}: no command called {', '.join(unknown)} (known: {', '.join(COMMAND_NAMES)}).")
    return names
