"""A scale set's spec for the emulator (models/fleet.py, ScaleSetSpec) refuses extensions it cannot hold:
the health extension by name, a name used twice, a version that is not major.minor; pure."""

from __future__ import annotations

from typing import Any

import pytest

from models.fleet import ScaleSetSpec
from tests.helpers.arm import agent


@pytest.mark.parametrize(
    ("extensions", "says"),
    [
        ([{**agent("A"), "name": "HealthExtension"}], "healthExtension"),
        ([agent("A"), {**agent("B"), "name": "Agent"}], "used twice"),
        ([agent("A", "latest")], "typeHandlerVersion"),
    ],
)
def test_a_spec_refuses_extensions_it_cannot_hold(extensions: list[dict[str, Any]], says: str) -> None:
    body = {
        "name": "web",
        "imageReference": {"publisher": "p", "offer": "o", "sku": "s"},
        "extensions": extensions,
    }
    with pytest.raises(ValueError, match=says):
        ScaleSetSpec.model_validate(body)
