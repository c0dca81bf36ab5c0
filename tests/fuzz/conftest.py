"""Fuzz suites: report how many cases each ran, on the terminal and in bench/results/fuzz.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fuzz_support import COUNTS, profile_name

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "fuzz.json"
_SECONDS: list[float] = []  # durations of the fuzz tests' phases (setup, call, teardown)
_HERE = Path(__file__).resolve().parent


def _line(suite: str, units: dict[str, int]) -> str:
    extra = ", ".join(f"{unit} {n:,}" for unit, n in sorted(units.items()) if unit != "examples")
    return f"fuzz {suite}: {units.get('examples', 0):,} examples" + (f" ({extra})" if extra else "")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if Path(report.nodeid.split("::")[0]).parent.name == _HERE.name:
        _SECONDS.append(report.duration)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COUNTS:
        return
    profile = profile_name()
    terminalreporter.section(f"fuzz cases (profile {profile})")
    for suite in sorted(COUNTS):
        terminalreporter.write_line(_line(suite, COUNTS[suite]))
    report = {
        "profile": profile,
        "seconds": round(sum(_SECONDS), 1),
        "suites": {suite: dict(units) for suite, units in sorted(COUNTS.items())},
    }
    try:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:  # a read-only checkout must not fail the test run
        terminalreporter.write_line(f"fuzz: cannot write {RESULTS}: {exc}")
