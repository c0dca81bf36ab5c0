"""The soak's closing table, and bench/results/soak.json for the benchmark report.

Besides every count, the JSON carries "rows" in the schema bench/report.py reads (figure, value,
unit, baseline, ratio, goal, met): violations (goal 0), unexplained violations, RSS slope (below
the plan's flat threshold), faults injected.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from tests.soak.known_bugs import explain
from tests.soak.soak_run import PhaseResult, SoakPlan

RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench" / "results"


def results_path() -> Path:
    """Return where soak.json goes (TICKLOOP_BENCH_RESULTS redirects, as for the benches)."""
    return Path(os.environ.get("TICKLOOP_BENCH_RESULTS", RESULTS_DIR)) / "soak.json"


def summarize(plan: SoakPlan, phases: list[PhaseResult]) -> dict[str, Any]:
    """Return every figure of the run as plain JSON-able data."""
    faults: Counter[str] = Counter()
    recoveries: Counter[str] = Counter()
    violations: Counter[str] = Counter()
    known: Counter[str] = Counter()
    for phase in phases:
        faults.update(phase.faults)
        recoveries.update(phase.recoveries)
        violations.update(v.kind for v in phase.violations)
        known.update(c for c in _explained(phase) if c is not None)
    main = next((p for p in phases if p.name == "in-process" and p.rss is not None), None)
    slope = main.rss.slope_mb_per_h() if main is not None and main.rss is not None else None
    span = main.rss.span_mb() if main is not None and main.rss is not None else None
    total_violations = sum(violations.values())
    return {
        "name": "soak",
        "market": plan.market.value,
        "market_hours": round(sum(p.market_s for p in phases) / 3600, 3),
        "wall_s": round(sum(p.wall_s for p in phases), 1),
        "phases": [
            {
                "name": p.name,
                "market_hours": round(p.market_s / 3600, 3),
                "wall_s": round(p.wall_s, 1),
                "speed": plan.speed if p.name == "in-process" else plan.kill_speed,
                "checks": p.checks,
                "orders": p.orders,
                "fills": p.fills,
                "books_compared": p.books_compared,
                "faults": dict(p.faults),
                "replay_lag_s": {
                    "max": round(max(p.replay_lag_s, default=0.0), 1),
                    "end": round(p.replay_lag_s[-1] if p.replay_lag_s else 0.0, 1),
                },
                "recoveries": dict(p.recoveries),
                "violations": [
                    {**vars(v), "known_bug": c}
                    for v, c in zip(p.violations, _explained(p), strict=True)
                ],
                "notes": p.notes,
            }
            for p in phases
        ],
        "faults_injected": dict(sorted(faults.items())),
        "faults_total": sum(faults.values()),
        "recoveries": dict(sorted(recoveries.items())),
        "violations_by_kind": dict(sorted(violations.items())),
        "violations": total_violations,
        "violations_known_bugs": dict(sorted(known.items())),
        "violations_unexplained": total_violations - sum(known.values()),
        "rss_slope_mb_per_h": None if slope is None else round(slope, 3),
        "rss_mb_range": None if span is None else [round(span[0], 1), round(span[1], 1)],
        "rss_flat_below_mb_per_h": plan.rss_flat_mb_per_h,
        "rss_flat": None if slope is None else slope < plan.rss_flat_mb_per_h,
        "rows": _rows(
            plan,
            total_violations,
            total_violations - sum(known.values()),
            slope,
            sum(faults.values()),
            sum(p.market_s for p in phases) / 3600,
        ),
    }


def _explained(phase: PhaseResult) -> list[str | None]:
    """Return the known bug (or None) of each violation of a phase, in order."""
    return [explain(v, phase.workdir, phase.symptoms) for v in phase.violations]


def _rows(
    plan: SoakPlan,
    violations: int,
    unexplained: int,
    slope: float | None,
    faults: int,
    hours: float,
) -> list[dict[str, Any]]:
    """The bench-report rows (standard keys: figure, value, unit, baseline, ratio, goal, met)."""
    none = {"baseline": "none (an absolute goal)", "baseline_value": None, "ratio": None}
    return [
        {"name": "violations", "figure": f"invariant violations in {hours:.1f} market h",
         "value": violations, "unit": "violations", **none, "goal": "= 0", "met": violations == 0},
        {"name": "unexplained", "figure": "violations not matching a known bug",
         "value": unexplained, "unit": "violations", **none, "goal": "= 0", "met": unexplained == 0},
        {"name": "rss_slope", "figure": "RSS slope after warm-up", "value": slope,
         "unit": "MB/market h", **none, "goal": f"< {plan.rss_flat_mb_per_h:g} MB/market h",
         "met": None if slope is None else slope < plan.rss_flat_mb_per_h},
        {"name": "faults", "figure": "faults injected (all kinds)", "value": faults,
         "unit": "faults", **none, "goal": "> 0", "met": faults > 0},
    ]  # fmt: skip


def table(summary: dict[str, Any]) -> str:
    """Return the closing table as text."""
    lines = [(f"soak: {summary['market']}, {summary['market_hours']:.2f} h of market time "
             f"in {summary['wall_s']:.0f} s wall")]  # fmt: skip
    for phase in summary["phases"]:
        lines.append(f"  {phase['name']:<11} {phase['market_hours']:6.2f} h at x{phase['speed']:<5g} "
                     f"checks {phase['checks']:<5} orders {phase['orders']:<5} fills {phase['fills']:<6} "
                     f"books compared {phase['books_compared']}  replay lag max "
                     f"{phase['replay_lag_s']['max']} s, end {phase['replay_lag_s']['end']} s")  # fmt: skip
    lines.append(f"{'faults injected':<32}{summary['faults_total']:>8}")
    for kind, n in summary["faults_injected"].items():
        lines.append(f"  {kind:<30}{n:>8}")
    lines.append(f"{'recoveries (engine log)':<32}{sum(summary['recoveries'].values()):>8}")
    for kind, n in summary["recoveries"].items():
        lines.append(f"  {kind:<30}{n:>8}")
    lines.append(f"{'invariant violations (goal 0)':<32}{summary['violations']:>8}")
    for kind, n in summary["violations_by_kind"].items():
        lines.append(f"  {kind:<30}{n:>8}")
    known = ", ".join(f"{c} x{n}" for c, n in summary["violations_known_bugs"].items()) or "none"
    lines.append(
        f"  {'of which known bugs':<30}{sum(summary['violations_known_bugs'].values()):>8}  ({known})"
    )
    lines.append(f"  {'unexplained':<30}{summary['violations_unexplained']:>8}")
    slope = summary["rss_slope_mb_per_h"]
    flat = "n/a" if slope is None else ("flat" if summary["rss_flat"] else "GROWING")
    lines.append(
        f"{'RSS slope MB/market h':<32}{'n/a' if slope is None else f'{slope:.3f}':>8}  "
        f"({flat}: below {summary['rss_flat_below_mb_per_h']}; range {summary['rss_mb_range']} MB)"
    )
    for phase in summary["phases"]:
        for v in phase["violations"][:20]:
            tag = f"[{v['known_bug']}] " if v["known_bug"] else ""
            lines.append(f"  ! {tag}{phase['name']} {v['kind']} {v['key']}: {v['detail']}")
        for note in phase["notes"]:
            lines.append(f"  note: {note}")
    return "\n".join(lines)


def write_json(summary: dict[str, Any]) -> Path:
    path = results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str))
    return path
