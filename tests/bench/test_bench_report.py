"""The benchmark table built from hand-written bench JSON: no benchmark is timed here.

Every layout a bench writes today is covered: the standard rows (journal, replay, ...), the
older `figure_<unit>` layout (ingest, bands), a number under "figure" with "baseline_name"
(tick_to_order), and the test-run files (fuzz.json). Expected values are worked out by hand
from the inputs.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str, path: Path):  # type: ignore[no-untyped-def]
    loader = SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


report = _load("bench_report_under_test", BENCH / "report.py")

JOURNAL = {  # the standard schema, two rows
    "intent_us": 84.0,
    "rows": [
        {"name": "intent", "figure": "record_intent", "value": 80.0, "unit": "µs",
         "baseline": "naive sqlite3", "baseline_value": 8000.0, "ratio": 100.0,
         "goal": "<= 1000 µs", "met": True},
        {"name": "fill", "figure": "fill", "value": 40.0, "unit": "µs",
         "baseline": "commit each", "baseline_value": 200.0, "ratio": 5.0,
         "goal": "<= 50 µs", "met": True},
    ],
}  # fmt: skip
INGEST = {  # older layout: figure is the label, the number under figure_<unit>
    "figure": "pipeline: decode, sync, book, fold",
    "figure_msg_per_s": 140_000.0,
    "baseline": "cryptofeed-style",
    "baseline_msg_per_s": 70_000.0,
    "ratio": 2.0,
    "goal_ratio": 4.0,
    "met": False,
    "tapes": [{"tape": "x"}],
}
BANDS = {  # older layout without a label or a goal string
    "figure_us_per_call": 15.0,
    "baseline": "numpy scan",
    "baseline_us_per_call": 90.0,
    "ratio": 6.0,
    "goal_us": 50.0,
    "met": True,
}
TICK_TO_ORDER = {  # a number under figure, the baseline's name under baseline_name
    "figure": 800.0,
    "unit": "us (p99 tick-to-order)",
    "baseline": 100.0,
    "baseline_name": "bare aiohttp POST",
    "ratio": 8.0,  # figure / baseline: the other direction
    "goal": 1000.0,
    "met": True,
}
FUZZ = {"profile": "ci", "seconds": 12.5,
        "suites": {"book": {"examples": 1200, "diffs": 50_000}, "parse": {"examples": 300}}}  # fmt: skip


def by_name(rep) -> dict:  # type: ignore[no-untyped-def]
    return {r.benchmark: r for r in rep.rows}


def test_standard_rows_keep_their_values_and_name_suffixes() -> None:
    rows = by_name(report.build_report({"journal": JOURNAL}))
    assert sorted(rows) == ["journal.fill", "journal.intent"]
    intent = rows["journal.intent"]
    assert (intent.value, intent.unit, intent.baseline_value) == (80.0, "µs", 8000.0)
    assert intent.ratio == pytest.approx(100.0)  # 8000 / 80: a cost, baseline over ours
    assert (intent.goal, intent.met, intent.missing) == ("<= 1000 µs", True, ())
    assert rows["journal.fill"].ratio == pytest.approx(5.0)


def test_older_figure_unit_layout_is_normalised_and_its_missing_keys_named() -> None:
    rows = by_name(report.build_report({"ingest": INGEST, "bands": BANDS}))
    ingest = rows["ingest"]
    assert (ingest.value, ingest.unit, ingest.baseline_value) == (140_000.0, "msg/s", 70_000.0)
    assert ingest.ratio == pytest.approx(2.0)  # a rate: ours over the baseline
    assert ingest.goal == ">= 4x the baseline" and ingest.met is False
    assert ingest.figure == "pipeline: decode, sync, book, fold"
    assert set(ingest.missing) == {"value", "unit", "baseline_value", "goal"}
    bands = rows["bands"]
    assert (bands.value, bands.unit, bands.baseline_value) == (15.0, "µs/call", 90.0)
    assert bands.ratio == pytest.approx(6.0)
    assert bands.goal == "<= 50 µs" and bands.met is True
    assert bands.figure == "bands"  # no label in the JSON: the bench's name
    assert set(bands.missing) == {"figure", "value", "unit", "baseline_value", "goal"}


def test_ratio_has_one_direction_whatever_the_script_divided() -> None:
    row = by_name(report.build_report({"tick_to_order": TICK_TO_ORDER}))["tick_to_order"]
    assert (row.value, row.baseline_value, row.baseline) == (800.0, 100.0, "bare aiohttp POST")
    assert row.ratio == pytest.approx(100.0 / 800.0)  # a cost (us): baseline / ours
    assert "8" in row.note and "other direction" in row.note
    assert row.goal == "<= 1000 us (p99 tick-to-order)"


def test_test_run_rows_are_marked_and_never_decide_the_verdict() -> None:
    rep = report.build_report(
        {"journal": JOURNAL}, {"fuzz": FUZZ}, test_notes={"fuzz": "written x"}
    )
    rows = by_name(rep)
    book = rows["fuzz.book"]
    assert (book.value, book.unit, book.met, book.source) == (
        1200.0,
        "examples",
        None,
        report.SOURCE_TESTS,
    )
    assert "diffs 50,000" in book.note and "written x" in book.note
    assert rows["fuzz.parse"].value == 300.0
    summary = rep.summary()
    assert summary["all_met"] is True and summary["unmet"] == [] and summary["no_verdict"] == []


def test_summary_lists_unmet_no_verdict_crashed_and_missing_keys() -> None:
    rep = report.build_report(
        {"ingest": INGEST, "bands": BANDS, "odd": {"rows_folded": 3}, "broken": [1, 2]},
        crashed={"scoring": "exit 1: boom"},
    )
    summary = rep.summary()
    assert summary["all_met"] is False
    assert summary["unmet"] == ["ingest"]
    assert summary["no_verdict"] == ["broken", "odd"]
    assert summary["crashed"] == ["scoring"]
    assert "value" in summary["missing_keys"]["ingest"]
    assert by_name(rep)["odd"].note.startswith("no figure found (keys: rows_folded")


def test_to_json_has_summary_rows_and_crashes() -> None:
    rep = report.build_report({"journal": JOURNAL}, crashed={"x": "exit 3"}, quick=True)
    doc = rep.to_json()
    assert doc["summary"]["quick"] is True and doc["summary"]["crashed"] == ["x"]
    assert doc["crashed"] == {"x": "exit 3"}
    assert {row["benchmark"] for row in doc["rows"]} == {"journal.intent", "journal.fill"}
    assert set(report.STANDARD_KEYS) <= set(doc["rows"][0])


def test_table_shows_each_row_once_with_unit_baseline_ratio_goal_and_verdict() -> None:
    rep = report.build_report(
        {"ingest": INGEST, "journal": JOURNAL}, {"fuzz": FUZZ}, {"scoring": "exit 1: boom"}
    )
    lines = report.table_lines(rep)
    assert lines[0].split() == [
        "benchmark",
        "figure",
        "baseline",
        "(same",
        "run)",
        "ratio",
        "goal",
        "met",
    ]

    def line(name: str) -> str:
        (found,) = [x for x in lines if x.split(" ")[0] == name]
        return found

    ingest = line("ingest")
    assert "140,000 msg/s" in ingest and "70,000 msg/s (cryptofeed-style)" in ingest
    assert "2.00x" in ingest and ">= 4x the baseline" in ingest and ingest.endswith("NOT MET")
    assert line("journal.intent").endswith("met") and "100.00x" in line("journal.intent")
    assert "1,200 examples" in line("fuzz.book")
    assert "CRASHED" in line("scoring") and line("scoring").endswith("exit 1: boom")
    assert any(
        x.startswith("NOT all goals met; unmet: ingest") and "crashed: scoring" in x for x in lines
    )
    assert any(x.startswith("* from last test run") for x in lines)
