"""Tick-to-order latency on loopback: market-data frame in -> signed order request on the wire.

    python bench/tick_to_order.py [--quick] [--speed X] [--breakdown] [--profile] [--aiohttp]

Figure: per order a signal sends, the time from just before the frame that fired it enters the
engine (`TradingSink.on_frame`: decode, book sync, fold, row hooks) to the first bytes of its
`POST /api/v3/order` arriving at the venue: p50, p99, p99.9, max in µs, warm-up excluded. The
path is the engine's own: an `App` (pipeline, row logger, default feature sets) with a
`TradingLoop` assembled as `engine/modes.py` `build_trading` does, trading through `BinanceVenue`
-> `OrderManager` -> `BinanceRest` (HMAC) -> 127.0.0.1, with the SQLite journal on disk. As
`build_session` does, orders of an idle symbol are written to one of four warm connections
(`exchange/binance/wire.py`) inside the signal's call; an order behind another of its symbol,
or finding every connection busy, goes through the symbol's worker and aiohttp (`--aiohttp`: all
do; JSON `order_wire` counts both). Only the strategy is the bench's: a long entry on every K-th closed row of
half the symbols (strategies never see single trades: the frame firing it is the one closing a row).

Market data: 20 symbols, the spot BTCUSDT and ETHUSDT tapes (depth@100ms + trade, what a spot App
subscribes to) copied 10 times each under synthetic names, copy k shifted k x 50 ms so row
boundaries spread out, event times rebased to now; fed at `--speed` x real time (default 4, about
2,100-2,600 frames/s) by one task that sleeps until a frame is due and otherwise yields only
after a frame that gave the venue work, as the engine's frame consumer (exchange/binance/feed.py).

Venue: bench/t2o_venue.py, a minimal HTTP/1.1 server in its own process that stamps the arrival
of each request's first bytes, before any parsing (exchange/sim serves the tapes' two symbols only
and stamps nothing on arrival).

Baseline, same run, server, process and aiohttp: a bare `session.post` of a pre-signed order body,
no engine (one per 5 ms), from just before the call to the arrival stamp; its round trip too.
Goal: p99 < 2 ms. `--breakdown` stamps each stage (wall, and the engine thread's CPU time; a few
µs more); `--profile` runs cProfile over the feed. On a shared machine `chrt -f 1` in front keeps
other jobs off the CPU (JSON `sched_fifo`). Writes bench/results/tick_to_order.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import cProfile
import gc
import io
import json
import logging
import math
import multiprocessing
import os
import pstats
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp
import orjson
import structlog
from t2o_venue import BASELINE_PREFIX, ORDER_PATH, serve_venue

from engine.app import App
from engine.clock import LiveClock
from engine.config import ExecutionConfig, parse_config
from engine.journal import Journal
from engine.model import Market, instrument_from_exchange_info
from engine.modes import TradingSink, exchange_info_from_tape
from engine.orders import OrderEvent, OrderIntent
from engine.tape import read_tape
from engine.trading import TradingLoop
from exchange.binance.auth import BinanceKeys
from exchange.binance.order_manager import OrderManager, OrderManagerConfig
from exchange.binance.rest import BinanceRest
from exchange.binance.urls import BinanceEndpoints
from exchange.binance.venue import BinanceVenue, BinanceVenueConfig
from exchange.binance.wire import OrderWire
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET
from portfolio.portfolio import Portfolio
from risk.filters import parse_exchange_filters
from risk.gate import RiskGate
from strategy.signals.context import FeatureVector, StrategyContext
from strategy.signals.events import RowClosed, StrategyEvent
from strategy.signals.requests import EnterRequest, PositionSide, StrategyRequest

DATA = ROOT.parent / "shared" / "data" / "binance-tapes"
TAPES = {"BTC": DATA / "spot_btcusdt_20240808.gz", "ETH": DATA / "spot_ethusdt_20240808.gz"}
COPIES, SHIFT_MS = 10, 50  # 10 copies per tape: 20 symbols, seconds starting 50 ms apart
GOAL_P99_US = 2000.0
RESULTS = ROOT / "bench" / "results" / "tick_to_order.json"
_TIME_FIELD = re.compile(rb'"([ET])":(\d+)')
_current_order: contextvars.ContextVar[str | None] = contextvars.ContextVar("order", default=None)
Stamps = dict[str, dict[str, tuple[int, int]]]  # client id -> stage -> (wall ns, thread CPU ns)


def _stamp() -> tuple[int, int]:
    return time.perf_counter_ns(), time.thread_time_ns()


# -- market data: 20 symbols from two tapes ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    due_ns: int  # from the feed's start, at 1x
    symbol: str | None  # set for a REST snapshot body
    payload: bytes
    ts_recv_ns: int


def synthetic_symbols() -> list[tuple[str, str, int]]:
    """Return (symbol, tape, shift in ms) of the 20 symbols, the two tapes alternating."""
    return [(f"{base}{copy:02d}USDT", base, (2 * copy + k) * SHIFT_MS)
            for copy in range(COPIES) for k, base in enumerate(TAPES)]  # fmt: skip


def build_frames(tape_seconds: float) -> list[Frame]:
    """Return every symbol's renamed, shifted copy of its tape (event times from now), in order."""
    now_ms = LiveClock().now_ms()
    originals = {base: _depth_and_trades(path, tape_seconds) for base, path in TAPES.items()}
    frames: list[Frame] = []
    for symbol, base, shift_ms in synthetic_symbols():
        src = originals[base]
        first_event_ms = next(int(m.group(2)) for _, _, p in src if (m := _TIME_FIELD.search(p)))
        delta_ms = now_ms - first_event_ms + shift_ms
        renames = ((f'"stream":"{base.lower()}usdt@'.encode(), f'"stream":"{symbol.lower()}@'.encode()),
                   (f'"s":"{base}USDT"'.encode(), f'"s":"{symbol}"'.encode()))  # fmt: skip

        def shifted(m: re.Match[bytes], delta_ms: int = delta_ms) -> bytes:
            return b'"%s":%d' % (m.group(1), int(m.group(2)) + delta_ms)

        for recv_ns, snapshot, payload in src:
            if snapshot is None:
                for old, new in renames:
                    payload = payload.replace(old, new)
                payload = _TIME_FIELD.sub(shifted, payload)
            due_ns = recv_ns - src[0][0] + shift_ms * 1_000_000
            frames.append(Frame(due_ns, symbol if snapshot else None, payload, recv_ns + delta_ms * 1_000_000))  # fmt: skip
    frames.sort(key=lambda f: f.due_ns)  # stable: each symbol's frames keep their order
    return frames


def _depth_and_trades(path: Path, tape_seconds: float) -> list[tuple[int, str | None, bytes]]:
    out: list[tuple[int, str | None, bytes]] = []
    for frame in read_tape(path):
        if b"@bookTicker" in frame.payload[:40]:
            continue  # a spot App subscribes to depth and trade only
        if out and frame.ts_recv_ns - out[0][0] > tape_seconds * 1e9:
            break
        out.append((frame.ts_recv_ns, frame.snapshot_symbol, frame.payload))
    return out


def exchange_info(symbols: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    """Return exchangeInfo entries: each synthetic symbol with its tape symbol's filters."""
    tape_symbols = [base + "USDT" for base in TAPES]
    real = {e["symbol"]: e for e in exchange_info_from_tape(TAPES.values(), tape_symbols, Market.SPOT)}  # fmt: skip
    return [{**real[base + "USDT"], "symbol": symbol, "baseAsset": symbol.removesuffix("USDT")}
            for symbol, base, _ in symbols]  # fmt: skip


# -- the engine --------------------------------------------------------------------------------


class EveryKthRow:
    """Ask for a long entry on every K-th closed row of the chosen symbols; idle otherwise."""

    name = "bench-every-kth-row"

    def __init__(self, symbols: set[str], every: int) -> None:
        self.symbols, self.every, self.rows = symbols, every, dict.fromkeys(symbols, 0)

    def on_event(self, event: StrategyEvent, ctx: StrategyContext) -> list[StrategyRequest]:
        if type(event) is not RowClosed or event.symbol not in self.symbols:
            return []
        symbol = event.symbol
        self.rows[symbol] += 1
        if self.rows[symbol] % self.every or symbol in ctx.positions or not ctx.is_book_valid(symbol):  # fmt: skip
            return []
        close = float(ctx.rows[symbol].last("close"))
        if not math.isfinite(close) or close <= 0:
            return []
        price = Decimal(repr(close))
        return [EnterRequest(
            symbol=symbol, side=PositionSide.LONG, strength=1.0, reference_price=price,
            equity_fraction=0.05, stop_distance=price / 100, take_profits=(), trailing_stop_pct=None,
            reason="bench", confidence=1.0, threshold=0.5, contributions=(), ts_ms=ctx.now_ms,
        )]  # fmt: skip


class StampedVenue(BinanceVenue):
    """BinanceVenue noting the frame each order came from (and, for a breakdown, its stages)."""

    def __init__(self, *args: Any, breakdown: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frame_t0: tuple[int, int] | None = None  # (wall ns, thread CPU ns) of the frame
        self.sampled: dict[str, int] = {}  # client id -> wall t0 of the frame that fired it
        self.unsampled: list[str] = []
        self.stages: Stamps = {}
        self.breakdown = breakdown

    def submit(self, intent: OrderIntent, now_ms: int) -> list[OrderEvent]:
        cid = intent.client_order_id
        if self.frame_t0 is None:
            self.unsampled.append(cid)
        else:
            self.sampled[cid] = self.frame_t0[0]
            if self.breakdown:
                self.stages[cid] = {"t0": self.frame_t0, "submit": _stamp()}
        return super().submit(intent, now_ms)

    async def _send(self, command: Any) -> None:
        if self.breakdown and hasattr(command, "intent"):
            _current_order.set(command.intent.client_order_id)
            self.stages.setdefault(command.intent.client_order_id, {})["worker"] = _stamp()
        await super()._send(command)


def trace_config(stages: Stamps) -> aiohttp.TraceConfig:
    """Stamp an order's request start and headers-written moments (breakdown runs only)."""
    trace = aiohttp.TraceConfig()

    def stamper(name: str) -> Any:
        async def on(session: Any, ctx: Any, params: Any) -> None:
            cid = _current_order.get()
            if cid in stages:
                stages[cid].setdefault(name, _stamp())

        return on

    trace.on_request_start.append(stamper("request"))
    trace.on_request_headers_sent.append(stamper("headers"))  # written, not yet on the wire
    return trace


@dataclass
class Engine:
    app: App
    loop: TradingLoop
    venue: StampedVenue
    sink: TradingSink
    notes: list[str]  # how the assembly departed from the engine's own


def build_engine(entries: list[dict[str, Any]], journal: Journal, rest: BinanceRest, scratch: Path,
                 signal_symbols: set[str], every: int, breakdown: bool) -> Engine:  # fmt: skip
    """An App with a TradingLoop assembled as build_trading does, trading through BinanceVenue."""
    config = parse_config({
        "mode": "paper", "market": {"type": "spot", "symbols": [e["symbol"] for e in entries]},
        "logging": {"console": "off", "file": None}, "models": {"dir": str(scratch / "no-models")},
        "risk": {"max_open_positions": 100, "cooldown_after_stop_s": 0, "daily_loss_limit_pct": 100,
                 "error_storm_count": 10_000},
    })  # fmt: skip
    clock, market = LiveClock(), config.market.type
    app = App(config, clock=clock, journal=journal)  # without exchange_info: trading attached below
    instruments = {e["symbol"]: instrument_from_exchange_info(e, market) for e in entries}
    filters = {e["symbol"]: parse_exchange_filters(e, market) for e in entries}
    manager = OrderManager(rest, journal, clock, lambda e: venue.emit(e), OrderManagerConfig())
    venue = StampedVenue(market, list(instruments), rest, manager, clock, asyncio.Queue(),
                         BinanceVenueConfig(), breakdown=breakdown)  # fmt: skip
    features = app.features

    def vectors(symbol: str) -> dict[str, FeatureVector]:  # as build_trading's
        out = {}
        for label, plan in features.plans.items():
            vector = features.latest(symbol, label)
            if vector is not None:
                out[label] = FeatureVector(plan.columns, vector, 0)
        return out

    loop = TradingLoop(
        strategy=EveryKthRow(signal_symbols, every), gate=RiskGate(config.risk, filters),
        venue=venue, portfolio=Portfolio(instruments.values(), {"USDT": Decimal(10_000)}),
        instruments=instruments, market_data=app.pipeline.symbols, journal=journal,
        feature_vectors=vectors, model_warm=lambda _symbol: True,  # no models: always warm
    )  # fmt: skip
    notes = []
    on_events = getattr(loop, "on_venue_events", None)
    if on_events is None:
        notes.append("TradingLoop.on_venue_events absent: listener = loop._handle then loop.flush")

        def on_events(events: list[OrderEvent]) -> None:
            loop._handle(events)
            loop.flush()

    venue.set_listener(on_events)
    app.trading = loop  # App._book_changed feeds it the books
    app.add_row_hook(loop.on_rows_closed, decides=True)  # right after the features, as attach_trading
    return Engine(app, loop, venue, TradingSink(app.pipeline, loop), notes)


# -- runs --------------------------------------------------------------------------------------


@dataclass
class FeedStats:
    frames: int = 0
    wall_s: float = 0.0
    max_behind_us: float = 0.0  # how far the feed ever fell behind its schedule
    multi_order_frames: int = 0  # frames that fired more than one order


async def feed(engine: Engine, frames: list[Frame], speed: float, wanted: int) -> FeedStats:
    """Feed frames on schedule until `wanted` orders were sampled (or the frames ran out)."""
    stats, sink, venue, clock = FeedStats(), engine.sink, engine.venue, time.perf_counter_ns
    start_ns = clock()
    for frame in frames:
        due_ns, now_ns = start_ns + int(frame.due_ns / speed), clock()
        if due_ns > now_ns:
            await asyncio.sleep((due_ns - now_ns) / 1e9)
        else:
            stats.max_behind_us = max(stats.max_behind_us, (now_ns - due_ns) / 1e3)
        if frame.symbol is not None:
            sink.on_snapshot(frame.symbol, frame.payload, frame.ts_recv_ns)
            continue
        before = len(venue.sampled)
        venue.frame_t0 = (clock(), time.thread_time_ns() if venue.breakdown else 0)
        sink.on_frame(frame.payload, frame.ts_recv_ns)
        venue.frame_t0 = None
        if sink.wants_loop():  # as exchange/binance/feed.py's consumer: the venue's tasks run now
            await asyncio.sleep(0)
        stats.frames += 1
        stats.multi_order_frames += len(venue.sampled) - before > 1
        if len(venue.sampled) >= wanted:
            break
    stats.wall_s = (clock() - start_ns) / 1e9
    return stats


async def baseline_posts(http: aiohttp.ClientSession, url: str, n: int) -> dict[str, tuple[int, int]]:  # fmt: skip
    """POST n pre-signed order bodies one after another; return client id -> (t0, answered)."""
    signer = BinanceKeys.hmac(TEST_API_KEY, TEST_API_SECRET).signer
    headers = {"X-MBX-APIKEY": TEST_API_KEY, "Content-Type": "application/x-www-form-urlencoded"}
    bodies = []
    for i in range(n):
        text = (f"symbol=BTC00USDT&side=BUY&type=MARKET&quantity=0.03232&newClientOrderId="
                f"{BASELINE_PREFIX}{i}&newOrderRespType=FULL&recvWindow=5000&timestamp={LiveClock().now_ms()}")  # fmt: skip
        bodies.append((f"{BASELINE_PREFIX}{i}", f"{text}&signature={signer.sign(text.encode())}".encode()))  # fmt: skip
    out = {}
    for cid, body in bodies:
        t0 = time.perf_counter_ns()
        async with http.post(url + ORDER_PATH, data=body, headers=headers) as response:
            await response.read()
        out[cid] = (t0, time.perf_counter_ns())
        await asyncio.sleep(0.005)
    return out


async def measure(args: argparse.Namespace, frames: list[Frame], url: str, scratch: Path) -> dict[str, Any]:  # fmt: skip
    """Run the engine phase, then the baseline, then read the server's arrival stamps."""
    symbols = synthetic_symbols()
    names = [s for s, _, _ in symbols]
    journal = Journal.open(scratch / "journal.sqlite")
    stages: Stamps = {}
    traces = [trace_config(stages)] if args.breakdown else None
    async with aiohttp.ClientSession(trace_configs=traces) as http:
        size = ExecutionConfig().order_connections  # as build_session with the default config
        wire = None if args.aiohttp else OrderWire(url, LiveClock(), size=size)
        rest = BinanceRest(Market.SPOT, BinanceEndpoints(url, "ws://127.0.0.1:9"), LiveClock(), http,
                           BinanceKeys.hmac(TEST_API_KEY, TEST_API_SECRET), wire=wire)  # fmt: skip
        await rest.sync_time()
        signalling = set(names[::2])  # half the symbols signal
        engine = build_engine(exchange_info(symbols), journal, rest, scratch, signalling, args.every,
                              args.breakdown)  # fmt: skip
        engine.venue.stages = stages
        profiler = cProfile.Profile() if args.profile else None
        async with asyncio.TaskGroup() as tg:
            venue_task = tg.create_task(engine.venue.run(), name="venue")  # runs the wire too
            while wire is not None and wire.ready < size:
                await asyncio.sleep(0.01)
            gc.collect()  # as App.run once start-up is done: long-lived objects frozen
            gc.freeze()
            with profiler or contextlib.nullcontext():
                stats = await feed(engine, frames, args.speed, args.warmup + args.samples)
                drained = await engine.venue.drain(10.0)
            venue_task.cancel()
        baseline = await baseline_posts(http, url, args.baseline)
        async with http.get(url + "/bench/arrivals") as response:
            book = orjson.loads(await response.read())
    journal.close()
    return {"engine": engine, "stats": stats, "drained": drained, "baseline": baseline, "book": book,
            "profiler": profiler, "wire": wire}  # fmt: skip


def percentiles(values: list[float]) -> dict[str, float]:
    """Return n, p50, p99, p99.9, max and mean (nearest-rank percentiles), rounded to 0.1."""
    s = sorted(values)
    if not s:
        return {"n": 0}
    rank = lambda q: s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]
    return {"n": len(s), "p50": round(rank(0.5), 1), "p99": round(rank(0.99), 1),
            "p99_9": round(rank(0.999), 1), "max": round(s[-1], 1), "mean": round(sum(s) / len(s), 1)}  # fmt: skip


def report(args: argparse.Namespace, run: dict[str, Any]) -> dict[str, Any]:
    engine, stats, book = run["engine"], run["stats"], run["book"]
    wire = run["wire"]
    arrivals: dict[str, list[int]] = book["arrivals"]
    sampled = list(engine.venue.sampled.items())
    counted = sampled[args.warmup :]
    latency = [(arrivals[cid][0] - t0) / 1e3 for cid, t0 in counted if cid in arrivals]
    sent = [cid for cid, _ in sampled] + engine.venue.unsampled
    posts = {c: len(times) for c, times in arrivals.items() if not c.startswith(BASELINE_PREFIX)}
    one_way = [(arrivals[c][0] - t0) / 1e3 for c, (t0, _) in run["baseline"].items() if c in arrivals]  # fmt: skip
    fig, base = percentiles(latency), percentiles(one_way)
    quarter = max(1, len(latency) // 4)
    loop_stats = engine.loop.stats
    result: dict[str, Any] = {
        "figure": fig.get("p99"), "unit": "µs, p99 frame-in -> order request at the venue",
        "baseline": base.get("p99"),
        "baseline_name": "bare aiohttp POST of a pre-signed /api/v3/order body to the same server "
                         "from the same process, no engine: call -> arrival, p99",
        "ratio": round(fig["p99"] / base["p99"], 2) if fig.get("n") and base.get("n") else None,
        "goal": GOAL_P99_US, "met": bool(fig.get("n")) and fig["p99"] < GOAL_P99_US,
        "tick_to_order_us": fig, "baseline_one_way_us": base,
        "baseline_round_trip_us": percentiles([(done - t0) / 1e3 for t0, done in run["baseline"].values()]),
        "p50_first_quarter_us": percentiles(latency[:quarter]).get("p50"),
        "p50_last_quarter_us": percentiles(latency[-quarter:]).get("p50"),
        "samples": len(latency), "warmup_excluded": len(sampled) - len(counted),
        "orders_sent": len(sent), "posts_received": sum(posts.values()),
        "orders_reached_server_once": sum(1 for cid in sent if posts.get(cid) == 1),
        "orders_missing": sum(1 for cid in sent if cid not in posts),
        "orders_duplicated": sum(1 for cid in sent if posts.get(cid, 0) > 1),
        "unexpected_posts": sum(1 for cid in posts if cid not in set(sent)),
        "bad_signatures": book["bad_signatures"], "other_requests": book["other_requests"],
        "signals": loop_stats.requests, "denied": loop_stats.denied, "denials": loop_stats.denials,
        "orders_submitted_by_loop": loop_stats.submitted, "drained": run["drained"],
        "symbols": len(engine.loop.instruments), "signal_symbols": len(engine.loop.strategy.symbols),
        "every_kth_row": args.every, "speed_x_realtime": args.speed, "frames_fed": stats.frames,
        "frames_per_s": round(stats.frames / stats.wall_s) if stats.wall_s else 0,
        "feed_wall_s": round(stats.wall_s, 2), "feed_max_behind_us": round(stats.max_behind_us),
        "frames_firing_several_orders": stats.multi_order_frames, "quick": args.quick,
        "loadavg_1m_after": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(), "notes": engine.notes,
        "sched_fifo": os.sched_getscheduler(0) == os.SCHED_FIFO,  # e.g. under `chrt -f 1`
        "order_wire": {"sent": wire.sent, "no_idle_connection": wire.unavailable} if wire else None,
    }  # fmt: skip
    if args.breakdown:
        result["breakdown_us"] = breakdown(engine.venue.stages, dict(counted), arrivals)
    return result


def breakdown(stages: Stamps, counted: dict[str, int], arrivals: dict[str, list[int]]) -> dict[str, Any]:  # fmt: skip
    """Wall percentiles of each stage, and the engine thread's CPU time from frame to request."""
    spans = [("frame_to_submit", "t0", "submit"), ("submit_to_arrival", "submit", "arrival"),
             ("submit_to_worker", "submit", "worker"),  # the queued (aiohttp) path from here on
             ("worker_to_request", "worker", "request"), ("request_to_headers", "request", "headers"),
             ("headers_to_arrival", "headers", "arrival")]  # fmt: skip
    rows: dict[str, list[float]] = {name: [] for name, _, _ in spans}
    cpu: list[float] = []
    for cid in counted:
        m = dict(stages.get(cid, {}))
        if cid in arrivals:
            m["arrival"] = (arrivals[cid][0], 0)
        for name, a, b in spans:
            if a in m and b in m:
                rows[name].append((m[b][0] - m[a][0]) / 1e3)
        if "t0" in m and "headers" in m:
            cpu.append((m["headers"][1] - m["t0"][1]) / 1e3)
    out: dict[str, Any] = {name: percentiles(values) for name, values in rows.items()}
    out["engine_cpu_frame_to_headers"] = percentiles(cpu)
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag, kind, default, text in [
        ("--quick", bool, False, "a few hundred samples (bench/run, the smoke test)"),
        ("--speed", float, 4.0, "tape speed, x real time"),
        ("--every", int, 1, "fire on every K-th closed row of a signalling symbol"),
        ("--samples", int, None, "samples after warm-up (default 2500; quick 300)"),
        ("--breakdown", bool, False, "stamp each stage, wall and CPU (adds a few µs)"),
        ("--profile", bool, False, "cProfile the engine process during the feed"),
        ("--aiohttp", bool, False, "orders through the aiohttp session only (no warm order wire)"),
        ("--out", Path, RESULTS, "where to write the JSON"),
    ]:  # fmt: skip
        options = {"action": "store_true"} if kind is bool else {"type": kind, "default": default}
        parser.add_argument(flag, help=text, **options)  # type: ignore[arg-type]
    args = parser.parse_args()
    args.samples = args.samples or (300 if args.quick else 2500)
    args.warmup, args.baseline = (50, 300) if args.quick else (200, 2000)
    return args


def main() -> None:
    args = parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    orders_per_tape_s = len(synthetic_symbols()) / 2 / args.every
    frames = build_frames(min(340.0, (args.samples + args.warmup) / orders_per_tape_s * 1.2 + 5))
    ctx = multiprocessing.get_context("fork")  # before any event loop, socket or journal exists
    port_in, port_out = ctx.Pipe(duplex=False)
    server = ctx.Process(target=serve_venue, args=(port_out, TEST_API_SECRET), daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{port_in.recv()}"
        with tempfile.TemporaryDirectory(prefix="bench-t2o-") as tmp:
            run = asyncio.run(measure(args, frames, url, Path(tmp)))
    finally:
        server.terminate()
        server.join(5)
    r = report(args, run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if run["profiler"] is not None:
        text, r["profile"] = io.StringIO(), str(args.out.with_suffix(".profile.txt"))
        stats = pstats.Stats(run["profiler"], stream=text).sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(80)
        Path(r["profile"]).write_text(text.getvalue())
    t, b = r["tick_to_order_us"], r["baseline_one_way_us"]
    print(f"tick-to-order, {r['symbols']} symbols ({r['signal_symbols']} signalling), "
          f"{r['frames_per_s']} frames/s at {args.speed:g}x, {r['samples']} samples "
          f"({r['warmup_excluded']} warm-up excluded):\n"
          f"  p50 {t.get('p50')} µs  p99 {t.get('p99')} µs  p99.9 {t.get('p99_9')} µs  max {t.get('max')} µs\n"
          f"baseline ({r['baseline_name']}):\n  p50 {b.get('p50')} µs  p99 {b.get('p99')} µs  "
          f"max {b.get('max')} µs; its round trip p99 {r['baseline_round_trip_us'].get('p99')} µs\n"
          f"ratio (p99 / baseline p99): {r['ratio']}; goal p99 < {GOAL_P99_US:.0f} µs: "
          f"{'met' if r['met'] else 'NOT met'} (load average {r['loadavg_1m_after']}, {r['cpus']} CPUs"
          f"{', SCHED_FIFO' if r['sched_fifo'] else ''})\n"
          f"orders sent {r['orders_sent']}, POSTs received {r['posts_received']}, exactly once "
          f"{r['orders_reached_server_once']}, missing {r['orders_missing']}, duplicated "
          f"{r['orders_duplicated']}; through the order wire {r['order_wire']}")  # fmt: skip
    for name, row in r.get("breakdown_us", {}).items():
        if not row.get("n"):
            continue  # a stage no order went through (the wire path skips the worker's)
        print(f"  {name:28s} p50 {row.get('p50')} µs  p99 {row.get('p99')} µs  max {row.get('max')} µs")  # fmt: skip
    print("".join(f"note: {note}\n" for note in r["notes"]), end="")
    args.out.write_text(json.dumps(r, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
