"""One table from every benchmark's JSON: figure, baseline, ratio, goal, met.

`bench/run` runs the scripts; this module only reads what they wrote and normalises it, so the
table can be built (and tested) from hand-written JSON without timing anything.

The row schema a bench writes (top level for one figure, or a list under "rows"):

    figure          str    what is measured ("Journal.record_intent, committed")
    value           float  the figure, in `unit`
    unit            str    "µs", "msg/s", "x real time", ...
    baseline        str    the named baseline, measured in the same run
    baseline_value  float  the baseline, in the same unit
    ratio           float  speed-up over the baseline: baseline cost / our cost (> 1: ours faster);
                           recomputed from value and baseline_value when the unit is a time
                           (µs, ms, s: cost) or a rate (msg/s, x real time)
    goal            str    the goal in words ("<= 50 µs", ">= 4x the baseline")
    met             bool   whether the goal was met (decided by the script)
    name            str    only inside "rows": the row's suffix (`journal.intent`)

Older layouts are read too: `figure_<unit>` / `baseline_<unit>` / `goal_<unit>` numeric keys
(`figure_msg_per_s`, `goal_us`, `goal_ratio`), `goal_met` for `met`, a number under "figure" and
"baseline" with the baseline's name under "baseline_name", a number under "goal". A row that needed such a
fallback lists the standard keys its JSON lacks in `missing`. Files written by test runs
(fuzz.json: {"profile", "seconds", "suites": {suite: {"examples": n, ...}}}, soak.json) become
rows marked "from last test run".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

STANDARD_KEYS = ("figure", "value", "unit", "baseline", "baseline_value", "ratio", "goal", "met")
SOURCE_BENCH = "this run"
SOURCE_TESTS = "from last test run"

# `figure_<suffix>` -> unit shown; time units are costs (goal <=), the rest rates (goal >=)
UNIT_SUFFIXES = {
    "us": "µs",
    "us_per_call": "µs/call",
    "us_per_msg": "µs/msg",
    "us_per_frame": "µs/frame",
    "ms": "ms",
    "s": "s",
    "msg_per_s": "msg/s",
    "x_realtime": "x real time",
    "engine_x_realtime": "x real time",
    "ratio": "x",
}
BASELINE_CHARS = 64  # the table shows the baseline's name cut to this; the JSON keeps it whole


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    benchmark: str
    figure: str
    value: float | None
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    ratio: float | None = None
    goal: str | None = None
    met: bool | None = None
    source: str = SOURCE_BENCH
    missing: tuple[str, ...] = ()
    note: str = ""


@dataclass
class Report:
    """Every row plus the benches that crashed; `summary()` says whether all goals were met."""

    rows: list[Row] = field(default_factory=list)
    crashed: dict[str, str] = field(default_factory=dict)  # bench -> why
    quick: bool = False

    def summary(self) -> dict[str, Any]:
        """Return all_met, the unmet goals, benches without a verdict, crashes, missing keys."""
        unmet = [r.benchmark for r in self.rows if r.met is False]
        no_verdict = [r.benchmark for r in self.rows if r.met is None and r.source == SOURCE_BENCH]
        return {
            "all_met": not unmet and not no_verdict and not self.crashed,
            "unmet": unmet,
            "no_verdict": no_verdict,
            "crashed": sorted(self.crashed),
            "missing_keys": {r.benchmark: list(r.missing) for r in self.rows if r.missing},
            "quick": self.quick,
        }

    def to_json(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict (summary first)."""
        return {
            "summary": self.summary(),
            "rows": [asdict(r) | {"missing": list(r.missing)} for r in self.rows],
            "crashed": dict(self.crashed),
        }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _suffix_keys(data: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """Return {suffix: number} for the numeric `<prefix>_<suffix>` keys of data."""
    out = {}
    for key, value in data.items():
        number = _number(value)
        if key.startswith(prefix + "_") and number is not None:
            out[key[len(prefix) + 1 :]] = number
    return out


def is_cost(unit: str) -> bool | None:
    """True for a time per operation (lower is better), False for a rate, None when neither."""
    text = unit.strip().lower()
    if re.match(r"(msg|ops|rows|frames|orders)/s\b|x real ?time\b", text):
        return False
    if re.match(r"(µs|us|ms|ns|s)\b", text):
        return True
    return None


def _goal_text(data: Mapping[str, Any], unit: str) -> str | None:
    goal = data.get("goal")
    if isinstance(goal, str):
        return goal
    if _number(goal) is not None:
        direction = {True: "<=", False: ">="}.get(is_cost(unit), "goal")
        return f"{direction} {goal:g} {unit}".rstrip()
    goals = _suffix_keys(data, "goal")
    if "ratio" in goals:
        return f">= {goals['ratio']:g}x the baseline"
    for suffix, bound in goals.items():
        shown = UNIT_SUFFIXES.get(suffix, suffix)
        direction = "<=" if is_cost(shown) else ">="
        return f"{direction} {bound:g} {shown}"
    return None


def _speedup(value: float | None, baseline: float | None, unit: str) -> float | None:
    """Return baseline cost / our cost from two figures in one unit, when the unit says which."""
    cost = is_cost(unit)
    if value is None or baseline is None or cost is None or value <= 0 or baseline <= 0:
        return None
    return baseline / value if cost else value / baseline


def row_from_json(benchmark: str, data: Mapping[str, Any], source: str = SOURCE_BENCH) -> Row:
    """Normalise one figure's JSON object (standard schema or the older layouts) into a Row."""
    missing = tuple(k for k in STANDARD_KEYS if k not in data)
    value = _number(data.get("value"))
    if value is None:
        value = _number(data.get("figure"))  # {"figure": 812.0, "unit": ...}
    unit = data.get("unit") if isinstance(data.get("unit"), str) else ""
    baseline_value = _number(data.get("baseline_value"))
    if baseline_value is None:
        baseline_value = _number(data.get("baseline"))  # {"baseline": 95.0, "baseline_name": ...}
    if value is None:
        figures = _suffix_keys(data, "figure")
        if len(figures) == 1:
            ((suffix, value),) = figures.items()
            unit = unit or UNIT_SUFFIXES.get(suffix, suffix)
            if baseline_value is None:
                baseline_value = _number(data.get(f"baseline_{suffix}"))
    met = data.get("met", data.get("goal_met"))
    figure = data.get("figure")
    baseline = next(
        (b for b in (data.get("baseline"), data.get("baseline_name")) if isinstance(b, str)), None
    )
    # one direction for every row: computed from the two figures when the unit tells cost from
    # rate, so a script that divides the other way round cannot flip the column
    script_ratio = _number(data.get("ratio"))
    ratio = _speedup(value, baseline_value, unit)
    note = ""
    if ratio is None:
        ratio = script_ratio
    elif script_ratio is not None and abs(script_ratio - ratio) > 0.02 * ratio:
        note = f"script's ratio {script_ratio:.3g} (other direction)"
    return Row(
        benchmark=benchmark,
        figure=figure if isinstance(figure, str) else benchmark,
        value=value,
        unit=unit,
        baseline=baseline,
        baseline_value=baseline_value,
        ratio=ratio,
        goal=_goal_text(data, unit),
        met=met if isinstance(met, bool) else None,
        source=source,
        missing=missing,
        note=note,
    )


def _fuzz_rows(name: str, data: Mapping[str, Any], source: str) -> list[Row]:
    rows = []
    for suite, units in sorted(data["suites"].items()):
        units = units if isinstance(units, Mapping) else {}
        # each suite keeps its own latest run: its profile, counts and seconds
        profile = units.get("profile", data.get("profile", "?"))
        extra = ", ".join(
            f"{u} {n:,}" if isinstance(n, (int, float)) and not isinstance(n, bool) else f"{u} {n}"
            for u, n in sorted(units.items()) if u not in ("examples", "profile")
        )
        rows.append(Row(
            benchmark=f"{name}.{suite}",
            figure=f"hypothesis examples (profile {profile})",
            value=_number(units.get("examples")),
            unit="examples",
            source=source,
            note=extra,
        ))  # fmt: skip
    return rows


def rows_from_file(name: str, data: Any, source: str = SOURCE_BENCH) -> list[Row]:
    """Return the rows of one bench's (or test run's) JSON document."""
    if not isinstance(data, Mapping):
        return [Row(name, name, None, "", source=source, missing=STANDARD_KEYS,
                    note="JSON is not an object")]  # fmt: skip
    if isinstance(data.get("rows"), list) and data["rows"]:
        rows = []
        for i, item in enumerate(data["rows"]):
            item = item if isinstance(item, Mapping) else {}
            suffix = item.get("name", str(i))
            rows.append(row_from_json(f"{name}.{suffix}", item, source))
        return rows
    if isinstance(data.get("suites"), Mapping) and "figure" not in data:
        return _fuzz_rows(name, data, source)
    row = row_from_json(name, data, source)
    if row.value is None and row.met is None:
        keys = ", ".join(sorted(data)[:8])
        return [Row(name, name, None, "", source=source, missing=row.missing,
                    note=f"no figure found (keys: {keys})")]  # fmt: skip
    return [row]


def build_report(
    bench_results: Mapping[str, Any],
    test_results: Mapping[str, Any] | None = None,
    crashed: Mapping[str, str] | None = None,
    *,
    quick: bool = False,
    test_notes: Mapping[str, str] | None = None,
) -> Report:
    """Build the report from {bench: its JSON} and {test-run file: its JSON}, in name order."""
    report = Report(crashed=dict(crashed or {}), quick=quick)
    for name in sorted(bench_results):
        report.rows += rows_from_file(name, bench_results[name], SOURCE_BENCH)
    for name in sorted(test_results or {}):
        note = (test_notes or {}).get(name, "")
        for row in rows_from_file(name, (test_results or {})[name], SOURCE_TESTS):
            joined = "; ".join(n for n in (row.note, note) if n)
            report.rows.append(Row(**(asdict(row) | {"note": joined, "missing": row.missing})))
    return report


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    text = (f"{value:,.0f}" if magnitude >= 1000 else f"{value:.1f}" if magnitude >= 10
            else f"{value:.2f}" if magnitude >= 0.1 else f"{value:.3g}")  # fmt: skip
    return f"{text} {unit}".rstrip()


def _verdict(row: Row) -> str:
    if row.met is True:
        return "met"
    if row.met is False:
        return "NOT MET"
    return "-" if row.source == SOURCE_TESTS else "no verdict"


def table_lines(report: Report) -> list[str]:
    """Render the report as an aligned plain-text table with the summary under it."""
    header = ("benchmark", "figure", "baseline (same run)", "ratio", "goal", "met")
    body: list[tuple[str, ...]] = []
    for r in report.rows:
        baseline = _fmt(r.baseline_value, r.unit) if r.baseline_value is not None else "-"
        if r.baseline:
            baseline = f"{baseline} ({r.baseline})" if r.baseline_value is not None else r.baseline
        if len(baseline) > BASELINE_CHARS:
            baseline = baseline[: BASELINE_CHARS - 1] + "…"
        name = r.benchmark + (" *" if r.source == SOURCE_TESTS else "")
        verdict = "; ".join(v for v in (_verdict(r), r.note) if v and v != "-") or "-"
        body.append((name, _fmt(r.value, r.unit), baseline,
                     f"{r.ratio:.2f}x" if r.ratio is not None else "-", r.goal or "-", verdict))  # fmt: skip
    for name, why in sorted(report.crashed.items()):
        body.append((name, "CRASHED", "-", "-", "-", why))
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(c if i == len(cells) - 1 else c.ljust(widths[i])
                         for i, c in enumerate(cells)).rstrip()  # fmt: skip

    lines = [render(header), render(["-" * w for w in widths])]
    lines += [render(line) for line in body]
    s = report.summary()
    lines.append("")
    if any(r.source == SOURCE_TESTS for r in report.rows):
        lines.append("* from last test run (not measured by this run)")
    lines.append("ratio: speed-up over the baseline (baseline cost / our cost; > 1 = ours faster)")
    verdict = "all goals met" if s["all_met"] else "NOT all goals met"
    details = [f"unmet: {', '.join(s['unmet'])}" if s["unmet"] else "",
               f"no verdict: {', '.join(s['no_verdict'])}" if s["no_verdict"] else "",
               f"crashed: {', '.join(s['crashed'])}" if s["crashed"] else ""]  # fmt: skip
    lines.append(verdict + "".join(f"; {d}" for d in details if d)
                 + (" (--quick: smoke figures)" if report.quick else ""))  # fmt: skip
    for bench, keys in s["missing_keys"].items():
        if any(k for k in keys):
            lines.append(f"{bench}: JSON lacks {', '.join(keys)}")
    return lines
