"""The data files that ship with Séance: the model catalog and the scenarios."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any

from bot.engine import Catalog, Scenario, load_scenarios


@cache
def catalog() -> Catalog:
    return Catalog.from_toml(resources.files(__package__).joinpath("models.toml").read_text("utf-8"))


@cache
def image_prices() -> dict[str, float]:
    """Dollars per picture, by image model id (the ``[images]`` tables of models.toml)."""
    tables = tomllib.loads(resources.files(__package__).joinpath("models.toml").read_text("utf-8"))
    return {model: float(entry["price"]) for model, entry in tables.get("images", {}).items()}


def picture_price(images: Any) -> float:
    """What one picture from this image provider costs at catalog prices (0 when the catalog
    does not know its model, e.g. offline drawings)."""
    return image_prices().get(getattr(images, "model", None) or "", 0.0)


@cache
def scenarios() -> dict[str, Scenario]:
    return load_scenarios(resources.files(__package__).joinpath("scenarios.toml").read_text("utf-8"))


DEFAULT_SCENARIO = "open-room"
