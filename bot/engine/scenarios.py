"""Scenarios: the framing a room starts from (shared text, one persona per seat, an opening,
and the AI commands it allows)."""

from __future__ import annotations

import re
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
    if unknown := sorted(set(data) - {"scenarios"}):
        raise ScenarioError(f"Unknown top-level {', '.join(unknown)}: write each scenario as a [scenarios.NAME] table.")
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


# --- a server's own scenarios ------------------------------------------------------

SERVER_SCENARIOS = 20  # per server: with the built-in ones, about what autocomplete's 25 can show
SCENARIO_FILE_BYTES = 32 * 1024  # a file of a few scenarios is 2-10 KB
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
TEXT_LIMITS = {"title": 80, "description": 120, "system": 4000, "opening": 1000}
PERSONA_LIMIT = 1000  # characters of one persona
SEATS = 10  # personas at most: the most AIs a room can have


def load_server_scenarios(text: str, built_in: set[str], kept: set[str]) -> dict[str, Scenario]:
    """A server's scenario file, held to more than the shipped one: a name people can
    type, a system text and a persona per seat, bounded texts, no built-in's name, and
    no more than SERVER_SCENARIOS with those the server ``kept`` (a name of its own is replaced).
    """
    scenarios = load_scenarios(text)
    if not scenarios:
        raise ScenarioError("The file has no scenario: write one as a [scenarios.NAME] table.")
    for name, scenario in scenarios.items():
        _check_server_scenario(name, scenario, built_in)
    total = len(kept | set(scenarios))
    if total > SERVER_SCENARIOS:
        raise ScenarioError(
            f"A server may keep {SERVER_SCENARIOS} scenarios of its own; this file would make it {total}"
            " (remove some with `/seance scenarios remove:`)."
        )
    return scenarios


def _check_server_scenario(name: str, scenario: Scenario, built_in: set[str]) -> None:
    where = f'Scenario "{name}"'
    if not NAME.fullmatch(name):
        raise ScenarioError(
            f"{where}: a name is 1 to 32 lowercase letters, digits and hyphens, starting with a letter or digit."
        )
    if name in built_in:
        raise ScenarioError(f'{where}: Séance has a scenario called "{name}" already; choose another name.')
    if not scenario.system.strip():
        raise ScenarioError(f"{where}: system is missing: the instructions every AI of the room shares.")
    if not scenario.personas:
        raise ScenarioError(f"{where}: personas is missing: a list of texts, one per seat (AI-1, AI-2, ...).")
    if len(scenario.personas) > SEATS:
        raise ScenarioError(f"{where}: at most {SEATS} personas, one per seat (it has {len(scenario.personas)}).")
    for key, limit in TEXT_LIMITS.items():
        if len(getattr(scenario, key)) > limit:
            raise ScenarioError(f"{where}: {key} is longer than {limit} characters.")
    for seat, persona in enumerate(scenario.personas, start=1):
        if not persona.strip() or len(persona) > PERSONA_LIMIT:
            raise ScenarioError(f"{where}: persona {seat} must be 1 to {PERSONA_LIMIT} characters.")


def scenario_table(scenario: Scenario) -> dict[str, Any]:
    """A scenario as the fields of its TOML table, to store; ``scenario_from_table`` reads it back."""
    table: dict[str, Any] = {
        "title": scenario.title,
        "description": scenario.description,
        "system": scenario.system,
        "opening": scenario.opening,
        "personas": list(scenario.personas),
    }
    if scenario.commands is not None:
        table["commands"] = sorted(scenario.commands)
    return table


def scenario_from_table(name: str, table: dict[str, Any]) -> Scenario:
    return _scenario(name, table)
