"""Scenarios: the shipped file, the format's fields and its errors, and the commands a scenario allows."""

from __future__ import annotations

import json

import pytest

from bot import data
from bot.engine import Room, RoomSettings, ScenarioError, load_scenarios
from bot.engine.commands import COMMAND_NAMES
from bot.engine.scenarios import SERVER_SCENARIOS, load_server_scenarios, scenario_from_table, scenario_table

WANTED = {"salon", "workshop", "tabletop", "museum", "ascii-studio", "writers-room", "review-panel", "cafe",
          "text-adventure", "gallery"}


def test_the_shipped_scenarios_cover_the_product_and_are_complete() -> None:
    scenarios = data.scenarios()
    assert len(scenarios) >= 10 and WANTED <= set(scenarios)
    for name, scenario in scenarios.items():
        assert scenario.description and len(scenario.description) < 120, name
        assert scenario.system.strip() and "{topic}" in scenario.opening, name
        assert len(scenario.personas) >= 5, name  # a persona for every seat of a full room
        assert scenario.commands is None or scenario.commands <= set(COMMAND_NAMES), name


def test_game_master_and_world_seats_come_first() -> None:
    scenarios = data.scenarios()
    assert "game master" in scenarios["tabletop"].persona(1)
    assert scenarios["text-adventure"].persona(1).startswith("You are the world")
    assert scenarios["gallery"].commands == frozenset({"image", "mute_self"})


def test_an_old_scenario_without_the_new_fields_still_loads_and_allows_every_command() -> None:
    [scenario] = load_scenarios('[scenarios.old]\ntitle = "Old"\nsystem = "Be."\nopening = "On {topic}"\n').values()
    assert scenario.commands is None and scenario.description == ""
    room = Room(data.catalog(), scenario, RoomSettings())
    assert room.settings.commands == frozenset(COMMAND_NAMES)


def test_a_scenario_narrows_the_commands_the_room_allows_and_the_ai_is_refused_the_rest() -> None:
    room = Room(data.catalog(), data.scenarios()["gallery"], RoomSettings(), topic="fog")
    room.add("Gemini 3 Flash")
    assert room.settings.commands == frozenset({"image", "mute_self"})
    turn = room.next_turn()
    assert turn is not None and "!temperature" not in turn.request.system and "!image" in turn.request.system
    room.complete_turn(turn, "A grey field.\n!temperature 1.5")
    assert "⚠️ [AI-1]: !temperature 1.5 was not applied: !temperature is switched off in this room" in [
        getattr(e, "text", "") for e in room.take_events()
    ]


def test_a_scenario_never_widens_what_the_host_allows() -> None:
    settings = RoomSettings(commands=frozenset({"prompt"}))
    room = Room(data.catalog(), data.scenarios()["gallery"], settings)
    assert room.settings.commands == frozenset()


def test_commands_may_be_written_with_the_bang() -> None:
    [scenario] = load_scenarios('[scenarios.x]\ncommands = ["!image", "prompt"]\n').values()
    assert scenario.commands == frozenset({"image", "prompt"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[scenarios.x\n", "The scenario file is not valid TOML"),
        ("scenarios = 3\n", "The file needs [scenarios.NAME] tables."),
        ('[scenarios.x]\ncommands = ["dance"]\n', 'Scenario "x": no command called dance (known: image,'),
        ('[scenarios.x]\ncommands = "image"\n', 'Scenario "x": commands must be a list of command names'),
        ('[scenarios.x]\npersonas = "a seer"\n', 'Scenario "x": personas must be a list of texts, one per seat.'),
        ("[scenarios.x]\ntitle = 3\n", 'Scenario "x": title must be text.'),
        ('[scenarios.x]\npersona = ["typo"]\n', 'Scenario "x": unknown field persona (known: commands,'),
    ],
)
def test_a_bad_scenario_file_gets_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenarios(text)
    assert str(caught.value).startswith(message)


# --- a server's own scenarios ------------------------------------------------------------

BUILT_IN = set(data.scenarios())
GOOD = '''
[scenarios.night-shift]
title = "Night shift"
description = "Two radio hosts keep a town awake."
system = "You host a late-night radio show."
opening = "Tonight's call-in topic: {topic}"
personas = ["You are the calm host.", "You take the calls."]
commands = ["image", "mute_self"]
'''


def test_a_server_scenario_loads_and_comes_back_from_its_stored_table() -> None:
    [scenario] = load_server_scenarios(GOOD, BUILT_IN, set()).values()
    assert scenario.name == "night-shift" and scenario.persona(2) == "You take the calls."
    again = scenario_from_table(scenario.name, json.loads(json.dumps(scenario_table(scenario))))
    assert again == scenario


def test_a_server_may_replace_its_own_scenario_without_counting_it_twice() -> None:
    kept = {f"mine-{n}" for n in range(SERVER_SCENARIOS - 1)} | {"night-shift"}
    assert set(load_server_scenarios(GOOD, BUILT_IN, kept)) == {"night-shift"}


def _file(name: str = "night-shift", **fields: str) -> str:
    values = {"system": '"Be."', "personas": '["One."]'} | fields
    return f"[scenarios.{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items() if v)


@pytest.mark.parametrize(
    ("text", "kept", "message"),
    [
        ("[scenarios.x]\npersonas = [\"a\"]\nsystem = Be\n", set(),
         "The scenario file is not valid TOML: Invalid value (at line 3, column 10)."),
        (_file(persona='["typo"]'), set(), 'Scenario "night-shift": unknown field persona (known: commands,'),
        (_file(personas=""), set(), 'Scenario "night-shift": personas is missing: a list of texts, one per seat'),
        (_file(personas="[]"), set(), 'Scenario "night-shift": personas is missing'),
        (_file(system=""), set(), 'Scenario "night-shift": system is missing'),
        (_file(commands='["image", "dance"]'), set(), 'Scenario "night-shift": no command called dance'),
        (_file("salon"), set(), 'Scenario "salon": Séance has a scenario called "salon" already; choose another name.'),
        (_file('"Night Shift"'), set(), 'Scenario "Night Shift": a name is 1 to 32 lowercase letters'),
        (_file(system='"' + "x" * 4001 + '"'), set(), 'Scenario "night-shift": system is longer than 4000 characters.'),
        (_file(personas="[" + ", ".join(['"p"'] * 11) + "]"), set(), 'Scenario "night-shift": at most 10 personas'),
        (_file(personas='["fine", " "]'), set(), 'Scenario "night-shift": persona 2 must be 1 to 1000 characters.'),
        ("# nothing here\n", set(), "The file has no scenario: write one as a [scenarios.NAME] table."),
        ('[scenario.x]\nsystem = "Be."\n', set(), "Unknown top-level scenario: write each scenario as a [scenarios.NAME]"),
        (_file(), {f"mine-{n}" for n in range(SERVER_SCENARIOS)},
         f"A server may keep {SERVER_SCENARIOS} scenarios of its own; this file would make it {SERVER_SCENARIOS + 1}"),
    ],
    ids=["syntax", "unknown-field", "no-personas", "empty-personas", "no-system", "unknown-command", "built-in-name",
         "bad-name", "long-system", "too-many-personas", "blank-persona", "empty-file", "top-level-typo", "too-many"],
)
def test_a_bad_server_scenario_file_gets_a_clear_error(text: str, kept: set[str], message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_server_scenarios(text, BUILT_IN, kept)
    assert str(caught.value).startswith(message)
