"""Run the soak from the command line and print its table (also bench/results/soak.json).

    python -m tests.soak.run --hours 24                  # the full run: 24 h of market time
    python -m tests.soak.run --hours 2 --kill-hours 0.5 --kills 4 --market usdm

Run it from the repository root (the venv active). --hours is the in-process phase (books
compared on every sampled diff), --kill-hours the phase with the engine in a child process that
is SIGKILLed --kills times. Exit status 0 when no invariant was violated, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from engine.model import Market
from tests.soak.soak_kills import run_with_kills
from tests.soak.soak_report import summarize, table, write_json
from tests.soak.soak_run import PhaseResult, SoakPlan, run_in_process


async def run_soak(plan: SoakPlan, workdir: Path) -> list[PhaseResult]:
    """Run the phases the plan asks for, in-process first."""
    phases = []
    if plan.market_hours > 0:
        phases.append(await run_in_process(plan, workdir / "in-process"))
    if plan.kill_hours > 0:
        phases.append(await run_with_kills(plan, workdir / "kills"))
    return phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--hours", type=float, default=24.0, help="market hours, in-process phase")
    parser.add_argument("--kill-hours", type=float, default=2.0, help="market hours, kill phase")
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--market", choices=("spot", "usdm"), default="spot")
    parser.add_argument(
        "--speed", type=float, default=100.0, help="market s per wall s, in-process"
    )
    parser.add_argument("--kill-speed", type=float, default=20.0)
    parser.add_argument(
        "--fault-gap", type=float, default=60.0, help="mean market s between faults"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--cooldown",
        type=int,
        default=None,
        help="the strategy's entry/exit cooldown in market s (default 30)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep journals and logs here")
    args = parser.parse_args(argv)
    plan = SoakPlan(market_hours=args.hours, kill_hours=args.kill_hours, kills=args.kills,
                    market=Market(args.market), speed=args.speed, kill_speed=args.kill_speed,
                    fault_gap_s=args.fault_gap, seed=args.seed, cooldown_s=args.cooldown)  # fmt: skip
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tickloop-soak-"))
    phases = asyncio.run(run_soak(plan, workdir))
    summary = summarize(plan, phases)
    print(table(summary))
    print(f"written {write_json(summary)}; journals and logs in {workdir}")
    if args.workdir is None and summary["violations"] == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if summary["violations"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
