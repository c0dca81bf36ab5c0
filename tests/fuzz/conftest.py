"""Fuzz suites: report how many cases each ran, on the terminal and in bench/results/fuzz.json.

The JSON keeps one entry per suite (its latest run: profile, examples, sub-cases, seconds), so a
run of one suite updates its own line without erasing the others.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import COUNTS, profile_name

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "fuzz.json"
_SECONDS: dict[str, float] = defaultdict(float)  # suite -> time in its tests (all phases)


def _line(suite: str, units: dict[str, int], seconds: float) -> str:
    extra = ", ".join(f"{unit} {n:,}" for unit, n in sorted(units.items()) if unit != "examples")
    return (
        f"fuzz {suite}: {units.get('examples', 0):,} examples"
        + (f" ({extra})" if extra else "")
        + f" in {seconds:.1f} s"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    suite = getattr(getattr(item, "module", None), "SUITE", None)
    if suite is not None:
        _SECONDS[suite] += outcome.get_result().duration


def _previous() -> dict[str, Any]:
    try:
        previous = json.loads(RESULTS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    suites = previous.get("suites") if isinstance(previous, dict) else None
    return suites if isinstance(suites, dict) else {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COUNTS:
        return
    profile = profile_name()
    terminalreporter.section(f"fuzz cases (profile {profile})")
    suites = _previous()
    for suite in sorted(COUNTS):
        seconds = _SECONDS.get(suite, 0.0)
        terminalreporter.write_line(_line(suite, COUNTS[suite], seconds))
        suites[suite] = {"profile": profile, **COUNTS[suite], "seconds": round(seconds, 1)}
    report = {"suites": dict(sorted(suites.items()))}
    try:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:  # a read-only checkout must not fail the test run
        terminalreporter.write_line(f"fuzz: cannot write {RESULTS}: {exc}")
