"""The data files that ship with Séance: the model catalog and the scenarios."""

from __future__ import annotations

from functools import cache
from importlib import resources

from bot.engine import Catalog, Scenario, load_scenarios


@cache
def catalog() -> Catalog:
    return Catalog.from_toml(resources.files(__package__).joinpath("models.toml").read_text("utf-8"))


@cache
def scenarios() -> dict[str, Scenario]:
    return load_scenarios(resources.files(__package__).joinpath("scenarios.toml").read_text("utf-8"))


DEFAULT_SCENARIO = "open-room"
