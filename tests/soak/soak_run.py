"""The soak: the full engine in mode testnet on the loopback simulator, faulted, killed, checked.

Two phases share one plan. The *in-process* phase runs the engine (an App) and the simulator in
one event loop on one sped-up clock, for most of the market time: books are compared with the
simulator's as they change, the other invariants every market minute, RSS sampled. The *kill*
phase runs the engine as a child process on the same clock and SIGKILLs it at random moments
(some aimed between an intent and its answer), restarting it on the same journal; the invariants
are read from the simulator and the journal file. Both end quiet: faults stop, the market runs on
for `settle_s`, the replay pauses, and a final check allows no grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import orjson

from engine.app import App
from engine.commands import fetch_tick_sizes
from engine.config import parse_config
from engine.journal import Journal
from engine.logging import configure_logging
from engine.model import Market
from engine.tape import tape_symbols
from exchange.sim.server import SimServer
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET
from exchange.sim.trading import keys as sim_keys_module
from tests.soak.looped_timeline import looped_timeline
from tests.soak.scaled_clock import ScaledClock
from tests.soak.soak_engine import engine_raw_config
from tests.soak.soak_faults import FaultInjector, kinds_for
from tests.soak.soak_invariants import Checker, JournalRows, Violation
from tests.soak.soak_models import train_soak_bundle
from tests.soak.soak_probes import BookSampler, RssSeries, rss_mb

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TAPES = {
    Market.SPOT: [SHARED_DATA / "binance-tapes" / "spot_btcusdt_20240808.gz"],
    Market.USDM: [SHARED_DATA / "binance-tapes-2023" / "btcusdt_20230404.dat.gz",
                  SHARED_DATA / "binance-tapes-2023" / "btcusdt_20230405.dat.gz"],
}  # fmt: skip
# engine log events that mark a recovery from a fault, and the name the report gives them
RECOVERY_EVENTS = {
    "book_lost": "book resynced", "ws.disconnected": "stream reconnected",
    "user_stream_gap": "user stream restored", "order_unknown_outcome": "unknown outcome settled",
    "order_duplicate_adopt": "duplicate answer adopted", "order_not_placed_resend": "resent after not placed",
    "rest_rate_limited": "rate limit waited out", "rest_banned": "418 ban waited out",
}  # fmt: skip


@dataclass(frozen=True)
class SoakPlan:
    """How long, how fast, how much chaos."""

    market_hours: float = 1.0  # in-process phase
    kill_hours: float = 0.25  # child-process phase
    kills: int = 2
    market: Market = Market.SPOT
    speed: float = 100.0  # market seconds per wall second (in-process phase)
    kill_speed: float = 20.0  # slower: a restarted engine takes seconds of wall time to import
    fault_gap_s: float = 60.0  # mean market seconds between two faults
    seed: int = 1
    warmup_s: float = 600.0  # market seconds before faults and RSS samples
    settle_s: float = 240.0  # quiet market seconds before the final check
    book_every: int = 10  # compare one simulator diff in this many
    rss_flat_mb_per_h: float = 2.0  # the RSS slope below which memory counts as flat
    grace_market_s: float = 300.0
    grace_wall_s: float = 60.0  # two REST timeouts (10 s wall each) in a row, and then some
    log_level: str = "WARNING"
    cooldown_s: int | None = None  # the strategy's entry/exit cooldown (None: SOAK_STRATEGY's 30 s)


@dataclass
class PhaseResult:
    """What one phase did and found."""

    name: str
    market_s: float = 0.0
    wall_s: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    recoveries: Counter[str] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    checks: int = 0
    orders: int = 0
    fills: int = 0
    books_compared: int = 0
    rss: RssSeries | None = None
    notes: list[str] = field(default_factory=list)
    workdir: Path | None = None
    replay_lag_s: list[float] = field(default_factory=list)  # per market minute, see ReplayLag
    symptoms: dict[tuple[str, str], int] = field(default_factory=dict)  # Checker.symptoms


@dataclass
class ReplayLag:
    """How far the exchange's time (the replay) trails the shared clock, in market seconds.

    The replay runs on the clock; if this machine cannot keep up at the chosen speed, the
    engine's view of exchange time runs ahead of its market data (books look stale, entries are
    refused). A lag that keeps growing means the speed is too high for the machine.
    """

    sim: SimServer
    clock: ScaledClock
    origin: tuple[int, int] | None = None  # (clock ns, server ms) at the first sample

    def sample(self) -> float:
        now_ns, server_ms = self.clock.monotonic_ns(), self.sim.server_time_ms()
        if self.origin is None:
            self.origin = (now_ns, server_ms)
        return (now_ns - self.origin[0]) / 1e9 - (server_ms - self.origin[1]) / 1e3


def market_of(tapes: list[Path]) -> Market:
    return Market.USDM if "2023" in tapes[0].parent.name or "usdm" in tapes[0].name else Market.SPOT


@contextlib.contextmanager
def wall_clock_lead(speed: float) -> Iterator[None]:
    """Let a request's timestamp lead the simulator's server time by 1 wall second, not 1 market s.

    The simulator's server time is its replay position, which trails the shared clock whenever
    this loaded machine delays the replay by a few milliseconds; at speed K, Binance's 1 s
    tolerance would be 1/K s of wall time, and -1021 would follow every scheduling hiccup.
    """
    saved = sim_keys_module.FUTURE_TOLERANCE_MS
    sim_keys_module.FUTURE_TOLERANCE_MS = int(saved * max(1.0, speed))
    try:
        yield
    finally:
        sim_keys_module.FUTURE_TOLERANCE_MS = saved


@contextlib.contextmanager
def sim_keys() -> Iterator[None]:
    """Put the simulator's test keys in the environment (modes testnet/live read them there)."""
    saved = {k: os.environ.get(k) for k in ("BINANCE_API_KEY", "BINANCE_API_SECRET")}
    os.environ.update({"BINANCE_API_KEY": TEST_API_KEY, "BINANCE_API_SECRET": TEST_API_SECRET})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def prepare_models(plan: SoakPlan, workdir: Path) -> Path:
    models = workdir / "models"
    if not models.exists():
        tape = TAPES[plan.market][-1]
        for symbol in tape_symbols(tape):
            train_soak_bundle(tape, models, symbol)
    return models


def new_sim(plan: SoakPlan, clock: ScaledClock, market_s: float) -> SimServer:
    timeline = looped_timeline(TAPES[plan.market], market_s + plan.settle_s + 900)
    wall = max(1.0, clock.factor)
    # Binance drops a client that misses pongs for 60 s; at speed K that is 60/K s of wall time,
    # less than one scheduler hiccup here: keep at least 5 wall seconds
    return SimServer(timeline, speed=1, trading=True, clock=clock, seed=plan.seed,
                     pong_timeout_s=max(60.0, 5 * wall), slow_consumer_timeout_s=30.0)  # fmt: skip


def count_recoveries(log_path: Path, into: Counter[str]) -> None:
    """Count the engine's recovery events in its JSON log (every rotated file)."""
    for path in sorted(log_path.parent.glob(log_path.name + "*")):
        for line in path.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                name = RECOVERY_EVENTS.get(orjson.loads(line).get("event", ""))
                if name:
                    into[name] += 1


def engine_account(app: App, checker: Checker) -> dict[str, Decimal] | None:
    """What the engine's portfolio holds, keyed as Checker.exchange_account()."""
    loop = app.trading
    if loop is None:
        return None
    ledger = loop.portfolio.ledger
    if checker.market is Market.SPOT:
        return {a: ledger.get(a) for a in checker.exchange_account()}
    held = {f"position:{s}": p.qty for s, p in loop.portfolio.positions.items() if p.qty != 0}
    held["wallet:USDT"] = ledger.get("USDT")
    return held


def read_journal(path: Path) -> JournalRows:
    """Read intents and fills from a journal another process writes (read-only, WAL)."""
    if not path.exists():
        return [], []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        journal = Journal(conn)
        return journal.intents(), journal.fills()
    except sqlite3.OperationalError:  # the engine has not created its tables yet
        return [], []
    finally:
        conn.close()


async def final_check(
    checker: Checker,
    rows: Callable[[], JournalRows],
    engine: Callable[[], dict[str, Decimal] | None],
    wait_wall_s: float = 10.0,
) -> None:
    """After the replay paused: give the engine wall time to catch up, then check with no grace."""
    deadline = time.monotonic() + wait_wall_s
    while time.monotonic() < deadline and checker.findings(rows(), engine()):
        await asyncio.sleep(1.0)
    checker.check(rows(), engine(), final=True)


async def fault_driver(
    injector: FaultInjector, clock: ScaledClock, plan: SoakPlan, until: asyncio.Event
) -> None:
    rng = injector.rng
    await clock.sleep(plan.warmup_s)
    while not until.is_set():
        await clock.sleep(rng.expovariate(1 / plan.fault_gap_s))
        if not until.is_set():
            injector.inject()


async def run_in_process(plan: SoakPlan, workdir: Path) -> PhaseResult:
    """The long phase: App and simulator in this process; books, invariants, RSS."""
    result = PhaseResult("in-process", workdir=workdir)
    market_s = plan.market_hours * 3600
    workdir.mkdir(parents=True, exist_ok=True)
    models = prepare_models(plan, workdir)
    clock = ScaledClock(plan.speed)
    wall0 = time.monotonic()
    async with new_sim(plan, clock, market_s) as sim:
        symbols = sorted(sim.depth_symbols())
        config = parse_config(engine_raw_config(sim, plan.market, symbols, models, workdir, plan.speed,
                                                plan.log_level, plan.cooldown_s))  # fmt: skip
        configure_logging(config.logging, workdir)
        checker = Checker(sim, plan.market, tuple(symbols), grace_market_s=plan.grace_market_s,
                          grace_wall_s=plan.grace_wall_s)  # fmt: skip
        sampler = BookSampler(sim, lambda key, detail: checker.record_now("book", key, detail),
                              every=plan.book_every)  # fmt: skip
        sim.on_depth_sent(sampler.on_sim_depth)
        with sim_keys(), wall_clock_lead(plan.speed):
            app = App(
                config,
                clock=clock,
                tick_sizes=await fetch_tick_sizes(config),
                journal_path=workdir / "journal.sqlite",
                on_book_changed=sampler.on_engine_book,
            )
            injector = FaultInjector(
                sim, kinds_for(plan.market), random.Random(plan.seed), plan.speed
            )
            rss = result.rss = RssSeries(plan.warmup_s)
            faults_off = asyncio.Event()
            start_ns = clock.monotonic_ns()

            def elapsed_s() -> float:
                return (clock.monotonic_ns() - start_ns) / 1e9

            def rows() -> JournalRows:
                assert app.journal is not None
                return app.journal.intents(), app.journal.fills()

            lag = ReplayLag(sim, clock)

            async def minutes() -> None:
                while True:
                    await clock.sleep(60)
                    rss.add(elapsed_s(), rss_mb())
                    if not faults_off.is_set():  # the replay pauses at the end: no lag to see
                        result.replay_lag_s.append(lag.sample())
                    if app.trading is not None:
                        checker.check(rows(), engine_account(app, checker))

            async def conductor() -> None:
                await clock.sleep(market_s)
                faults_off.set()
                injector.clear_pending()
                await clock.sleep(plan.settle_s)
                sim.pause()
                result.market_s = elapsed_s()  # the final check's wait is not market time
                await final_check(checker, rows, lambda: engine_account(app, checker))
                collect_in_process(app, result)
                app.stop()

            async with asyncio.TaskGroup() as tg:
                helpers = [tg.create_task(minutes()), tg.create_task(conductor()),
                           tg.create_task(fault_driver(injector, clock, plan, faults_off))]  # fmt: skip
                await app.run()
                for task in helpers:
                    task.cancel()
        result.faults = injector.injected
        result.violations = checker.violations
        result.symptoms = checker.symptoms
        result.checks = checker.checks
        result.books_compared = sampler.compared
        result.orders = len(checker._placements())
        result.fills = sum(len(o.fills) for o in checker.desk.orders.values())
    result.wall_s = time.monotonic() - wall0
    count_recoveries(workdir / "engine.jsonl", result.recoveries)
    return result


def collect_in_process(app: App, result: PhaseResult) -> None:
    """Read the engine's own recovery counters before it stops."""
    health = app.health()
    resyncs = sum(max(0, s["snapshot_requests"] - 1) for s in health["symbols"].values())
    result.notes.append(f"engine counters: {resyncs} book resyncs, "
                        f"{sum(c['reconnects'] for c in health['connections'].values())} stream reconnects, "
                        f"{app.binance.venue.gaps if app.binance else 0} user-stream gaps")  # fmt: skip
