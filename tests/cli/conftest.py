"""Fixtures of the command line tests: Temporal and the fleet at an address where nothing answers
(the offline tests run `upgradectl`'s entry point in-process), and the command groups wired."""

from __future__ import annotations

import pytest

from starter import cli as cli_module
from tests.helpers.commands import wired_groups
from tests.helpers.upgrades import CLOSED


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("TEMPORAL_ADDRESS", CLOSED)
    monkeypatch.setenv("FLEET_URL", f"https://{CLOSED}")
    monkeypatch.setenv("AZURE_ARM_ENDPOINT", f"https://{CLOSED}")
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def wired(monkeypatch):
    monkeypatch.setattr(cli_module.app, "registered_groups", wired_groups())
