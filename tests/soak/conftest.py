"""Undo one false match of tests/conftest.py for this folder.

The root conftest skips an item when `"soak" in item.keywords`; pytest puts every parent folder's
name among an item's keywords, so every test under tests/soak/ looked marked `soak`. Here (run
after it) the skip is taken back from the items that do not carry the marker themselves: the short
soak and the parts tests run by default, test_soak_full only with `--run-marked soak`.
"""

from __future__ import annotations

import pytest

_REASON = "off by default: --run-marked soak"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("soak") is not None or "tests/soak/" not in item.nodeid:
            continue
        item.own_markers[:] = [
            m
            for m in item.own_markers
            if not (m.name == "skip" and m.kwargs.get("reason") == _REASON)
        ]
