"""The kill phase: the engine as a child process, SIGKILLed at random moments and restarted.

The simulator (and the clock it shares with the child) lives in this process and outlives every
engine. Kills are spread over the phase; about half are *aimed*: a fault that leaves a placement
unanswered is armed, and the kill lands while the journal shows an intent PENDING or UNKNOWN
(between the intent and its answer). The engine stays down for a random stretch of market time
while the market moves on (stops may fire unseen), then starts again on the same journal and must
reconcile. Invariants are read every market minute from the simulator and the journal file.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from tests.soak.scaled_clock import ScaledClock
from tests.soak.soak_engine import EngineProcess, engine_raw_config
from tests.soak.soak_faults import FaultInjector, kinds_for
from tests.soak.soak_invariants import Checker
from tests.soak.soak_probes import RssSeries, rss_mb
from tests.soak.soak_run import (
    PhaseResult,
    ReplayLag,
    SoakPlan,
    count_recoveries,
    fault_driver,
    final_check,
    new_sim,
    prepare_models,
    read_journal,
    wall_clock_lead,
)

_AIM_FAULTS = ("order_timeout", "order_unknown")
_IN_FLIGHT = ("PENDING", "UNKNOWN")


async def run_with_kills(plan: SoakPlan, workdir: Path) -> PhaseResult:
    """Run the engine in a child process for plan.kill_hours of market time, killing it plan.kills times."""
    result = PhaseResult("kills", workdir=workdir)
    market_s = plan.kill_hours * 3600
    workdir.mkdir(parents=True, exist_ok=True)
    models = prepare_models(plan, workdir)
    rng = random.Random(plan.seed + 1)
    clock = ScaledClock(plan.kill_speed)
    wall0 = time.monotonic()
    async with new_sim(plan, clock, market_s) as sim:
        symbols = sorted(sim.depth_symbols())
        raw = engine_raw_config(
            sim, plan.market, symbols, models, workdir, plan.kill_speed, "INFO", plan.cooldown_s
        )
        engine = EngineProcess(raw, workdir, clock)
        checker = Checker(sim, plan.market, tuple(symbols), grace_market_s=plan.grace_market_s,
                          grace_wall_s=plan.grace_wall_s)  # fmt: skip
        injector = FaultInjector(sim, kinds_for(plan.market), rng, plan.kill_speed)
        journal = Path(raw["paths"]["journal"])
        rss = result.rss = RssSeries(0.0)
        start_ns = clock.monotonic_ns()
        faults_off = asyncio.Event()
        down = asyncio.Event()  # set while the killer keeps the engine down on purpose

        def elapsed_s() -> float:
            return (clock.monotonic_ns() - start_ns) / 1e9

        lag = ReplayLag(sim, clock)

        async def minutes() -> None:
            while True:
                await clock.sleep(60)
                if not faults_off.is_set():  # the replay pauses at the end: no lag to see
                    result.replay_lag_s.append(lag.sample())
                if engine.pid is not None:
                    rss.add(elapsed_s(), rss_mb(engine.pid))
                elif not down.is_set():  # it died by itself: a crash is a bug; start it again
                    checker.record_now(
                        "crash",
                        f"start {engine.starts}",
                        f"engine exited with {engine.proc.returncode if engine.proc else None}",
                    )
                    await engine.start()
                checker.check(read_journal(journal))

        async def in_flight(timeout_wall_s: float) -> bool:
            deadline = time.monotonic() + timeout_wall_s
            while time.monotonic() < deadline:
                intents, _ = read_journal(journal)
                if any(r.status.value in _IN_FLIGHT for r in intents):
                    return True
                await asyncio.sleep(0.02)
            return False

        async def killer() -> None:
            span = max(1.0, market_s - plan.warmup_s - 60.0)  # the last one a minute before the end
            moments = sorted(plan.warmup_s + rng.uniform(0, span) for _ in range(plan.kills))
            for at_s in moments:
                await clock.sleep(max(0.0, at_s - elapsed_s()))
                aimed = rng.random() < 0.5
                if aimed:
                    injector.inject(rng.choice(_AIM_FAULTS))
                    aimed = await in_flight(timeout_wall_s=max(5.0, 300 / plan.kill_speed))
                down.set()
                await engine.kill()
                injector.injected["sigkill_aimed" if aimed else "sigkill"] += 1
                await clock.sleep(rng.uniform(5.0, 120.0))  # down while the market moves
                await engine.start()
                down.clear()
                result.recoveries["restarted after SIGKILL"] += 1

        async def conductor(kills: asyncio.Task[None]) -> None:
            await clock.sleep(market_s)
            await kills  # an aimed kill may still wait for its moment: every planned kill happens
            faults_off.set()
            injector.clear_pending()
            await clock.sleep(plan.settle_s)
            sim.pause()
            result.market_s = elapsed_s()  # the final check's wait is not market time
            await final_check(
                checker, lambda: read_journal(journal), lambda: None, wait_wall_s=15.0
            )

        await engine.start()
        try:
            with wall_clock_lead(plan.kill_speed):
                async with asyncio.TaskGroup() as tg:
                    kills = tg.create_task(killer())
                    helpers = [tg.create_task(minutes()),
                               tg.create_task(fault_driver(injector, clock, plan, faults_off))]  # fmt: skip
                    await tg.create_task(conductor(kills))
                    for task in helpers:
                        task.cancel()
        finally:
            code = await engine.stop()
        if code not in (0, -9, -15):  # -15: stopped while still starting
            result.notes.append(
                f"the last engine exited with code {code} (see {workdir}/stderr-*.txt)"
            )
        result.faults = injector.injected
        result.violations = checker.violations
        result.symptoms = checker.symptoms
        result.checks = checker.checks
        result.orders = len(checker._placements())
        result.fills = sum(len(o.fills) for o in checker.desk.orders.values())
    result.wall_s = time.monotonic() - wall0
    count_recoveries(workdir / "engine.jsonl", result.recoveries)
    return result
