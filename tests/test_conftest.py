"""The suite's own scheduling table names real modules (a renamed one would silently lose its place)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import HEAVY

ROOT = Path(__file__).resolve().parents[1]


def test_every_heavy_module_exists():
    assert [path for path in HEAVY if not (ROOT / path).is_file()] == []
