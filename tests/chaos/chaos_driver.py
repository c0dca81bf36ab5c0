"""One chaos session: the simulator up, the engine started, faulted, killed and restarted, stopped.

Kills come in two kinds, drawn from the seed. An *aimed* kill arms a fault that keeps a placement
unanswered (its answer held past the engine's timeout, lost as a 5xx, or refused with 429 so the
engine waits before resending), waits until the journal shows an intent PENDING or UNKNOWN, and
kills the engine right there: between the intent and its acknowledgement. A *random* kill lands
at a random moment. After the last cycle the faults stop, the engine is restarted one more time,
reconciles and runs quietly; the market is frozen, the engine stopped with SIGTERM, and the
simulator read as it stands.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_harness import (
    TRADING_FAULTS,
    ChaosLog,
    EngineProcess,
    JournalProbe,
    LogLines,
    clear_faults,
    engine_config,
    fault_storm,
    inject,
    wait_for,
    write_yaml,
)
from chaos_invariants import Verdict, check_invariants, desk_dump

from engine.model import Market
from exchange.sim.server import SimServer

AIMING_FAULTS = ("order_timeout", "order_unknown", "http_429")


@dataclass(frozen=True)
class ChaosPlan:
    """How much chaos: cycles, their length, the fault rate."""

    seed: int
    cycles: int = 5
    # > 1 would run the exchange's clock ahead of the engine's (-1021 on every request)
    speed: float = 1.0
    run_s: tuple[float, float] = (2.5, 6.0)  # engine up this long (after start-up) before a kill
    aimed_share: float = 0.5
    aim_timeout_s: float = 12.0  # give up waiting for an in-flight intent; kill anyway
    fault_gap_s: float = 2.5  # mean time between injected faults
    quiet_s: float = 8.0  # the last run, without faults, before SIGTERM
    settle_s: float = 1.5  # market frozen, engine still up
    start_timeout_s: float = 60.0
    max_start_attempts: int = 5
    # False: REST faults pending at a kill are dropped and none are injected until the engine
    # trades again (a start-up refused by one 429 is its own finding, see ChaosResult.crashes)
    faults_during_startup: bool = False
    faults: tuple[tuple[str, int], ...] = TRADING_FAULTS


@dataclass
class ChaosResult:
    plan: ChaosPlan
    verdict: Verdict
    log: ChaosLog
    kills: list[dict[str, Any]] = field(default_factory=list)
    faults_injected: dict[str, int] = field(default_factory=dict)
    starts: int = 0
    crashes: list[str] = field(default_factory=list)
    runs: list[list[dict[str, Any]]] = field(default_factory=list)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for run in self.runs for e in run if e.get("event") == event]

    def report(self) -> str:
        lines = [
            f"starts={self.starts} kills={len(self.kills)} faults={self.faults_injected}",
            f"counts={self.verdict.counts}",
            *self.verdict.notes,
            *(f"crash: {c}" for c in self.crashes),
            "-- chaos log --",
            str(self.log),
            "-- violations --",
            *(f"[{kind}] {text}" for kind, text in self.verdict.violations),
        ]
        return "\n".join(lines)


def _trading_since(logs: LogLines, runs_before: int) -> bool:
    runs = logs.runs()
    return len(runs) > runs_before and any(
        e.get("event") == "binance_trading_started" for e in runs[-1]
    )


async def run_chaos(
    tapes: list[Path],
    market: Market,
    symbols: list[str],
    workdir: Path,
    models_dir: Path,
    plan: ChaosPlan,
) -> ChaosResult:
    """Run one seeded chaos session against a fresh simulator; return the verdict and the story."""
    rng = random.Random(plan.seed)
    log = ChaosLog()
    journal_path = workdir / "journal.sqlite"
    probe = JournalProbe(journal_path)
    logs = LogLines(workdir / "engine.jsonl")
    result = ChaosResult(plan, Verdict(), log)

    async with SimServer(tapes, speed=plan.speed, trading=True) as sim:
        assert sim.trading is not None
        config = engine_config(workdir, models_dir, sim, market.value, symbols)
        engine = EngineProcess(write_yaml(workdir / "config.yaml", config), workdir)

        async def start() -> None:
            # as a supervisor would: a start that fails is tried again (and reported)
            for _ in range(plan.max_start_attempts):
                runs_before = len(logs.runs())
                await engine.start()
                await wait_for(
                    lambda n=runs_before: not engine.alive or _trading_since(logs, n),  # type: ignore[misc]
                    plan.start_timeout_s,
                    0.05,
                )
                if engine.alive and _trading_since(logs, runs_before):
                    log.add(f"engine start {engine.starts} trading")
                    return
                if engine.alive:
                    await engine.kill()
                else:
                    engine.exit_codes.append(await engine.wait())
                why = engine.last_error()
                result.crashes.append(f"start {engine.starts}: {why}")
                log.add(f"engine start {engine.starts} failed: {why}")
            raise AssertionError(f"the engine did not start in {plan.max_start_attempts} attempts")

        stop_storm, trading = asyncio.Event(), asyncio.Event()
        storm_rng = random.Random(rng.random())
        await start()
        trading.set()
        storm = asyncio.create_task(
            fault_storm(sim, storm_rng, log, stop_storm, trading, plan.fault_gap_s, plan.faults)
        )
        try:
            for cycle in range(plan.cycles):
                await asyncio.sleep(rng.uniform(*plan.run_s))
                kill = await _kill(engine, sim, probe, rng, plan, cycle)
                if "exited" in kill:
                    result.crashes.append(f"cycle {cycle}: {kill['exited']}")
                log.add(f"SIGKILL {kill}")
                result.kills.append(kill)
                if not plan.faults_during_startup:
                    # the placement faults still pending meet the restarted engine's first orders
                    trading.clear()
                    clear_faults(sim, placements=False)
                await asyncio.sleep(rng.uniform(0.0, 1.0))
                await start()
                trading.set()
        finally:
            stop_storm.set()
            trading.set()
            await storm
        clear_faults(sim)
        log.add("faults stopped; quiet run")
        await asyncio.sleep(plan.quiet_s)
        # Freeze the market, then let the engine take in the last answers and events: nothing
        # may happen on the exchange once the engine is gone, or the two could not agree.
        sim.pause()
        await asyncio.sleep(plan.settle_s)
        if probe.in_flight():  # an unknown outcome still being resolved: give it time
            await wait_for(lambda: not probe.in_flight(), 20.0, 0.1)
        code = await engine.stop()
        log.add(f"SIGTERM -> exit {code}")
        if code != 0:
            result.crashes.append(f"final stop: exit code {code}: {engine.last_error()}")
        result.starts = engine.starts
        result.runs = logs.runs()
        result.faults_injected = {
            **sim.trading.faults.injected,
            **{f"rest:{k}": v for k, v in sim.faults.injected.items()},
        }
        result.verdict = check_invariants(sim, market, journal_path, result.runs[-1])
        # for the post-mortem: the story, and the exchange's side as it stood
        (workdir / "report.txt").write_text(result.report())
        (workdir / "sim_desk.txt").write_text(desk_dump(sim, market))
    return result


async def _kill(
    engine: EngineProcess,
    sim: SimServer,
    probe: JournalProbe,
    rng: random.Random,
    plan: ChaosPlan,
    cycle: int,
) -> dict[str, Any]:
    """Kill the engine, aimed between an intent and its answer or at random; say what it hit."""
    kill: dict[str, Any] = {"cycle": cycle, "aimed": rng.random() < plan.aimed_share}
    if kill["aimed"]:
        kill["fault"] = inject(sim, rng.choice(AIMING_FAULTS), rng)
        before = set(probe.in_flight())

        def fresh() -> set[str]:
            return set(probe.in_flight()) - before

        hit = await wait_for(lambda: bool(fresh()) or not engine.alive, plan.aim_timeout_s, 0.005)
        kill["in_window"] = sorted(fresh()) if hit else []
        await asyncio.sleep(rng.uniform(0.0, 0.01))
    if not engine.alive:
        kill["exited"] = f"the engine exited by itself: {engine.last_error()}"
        engine.exit_codes.append(await engine.wait())
        return kill
    kill["in_flight"] = probe.in_flight()
    kill["intents"] = probe.count()
    await engine.kill()
    return kill
