"""Scenarios: the shipped file, the format's fields and its errors, and the commands a scenario allows."""

from __future__ import annotations

import pytest

from bot import data
from bot.engine import Room, RoomSettings, ScenarioError, load_scenarios
from bot.engine.commands import COMMAND_NAMES

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
