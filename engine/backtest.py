"""`tickloop backtest TAPE`: replay a tape through the very App paper trading runs.

The App is built exactly as for paper trading (pipeline, features, models, strategy, risk gate,
simulated venue, portfolio, journal); only the edges differ, chosen in engine/modes.py: the
replay clock, the tape as market data, and exchangeInfo reconstructed from the tape as the
loopback simulator serves it. Writes DIR/result.json (metrics, counts) and DIR/report.html.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from engine.app import App
from engine.clock import ReplayClock
from engine.config import Config
from engine.journal import Journal
from engine.modes import exchange_info_from_tape
from engine.tape import TapeFrame, infer_market, read_tape, tape_symbols

_STREAM = re.compile(rb'"stream":\s*"([^"]+)"')


def subscribed_streams(config: Config) -> frozenset[str]:
    """Return the stream names a live App of this config subscribes to."""
    from exchange.binance.urls import market_streams

    cfg = config
    routes = market_streams(
        cfg.market.type, cfg.market.symbols, depth_speed_ms=cfg.streams.depth_speed_ms,
        trades=cfg.streams.trade_stream(cfg.market.type),  # type: ignore[arg-type]
        mark_price=cfg.streams.mark_price,
    )
    return frozenset(s for streams in routes.values() for s in streams)


@dataclass(frozen=True)
class BacktestResult:
    frames: int
    intents: int
    fills: int
    closed_trades: int
    final_equity: float
    metrics: dict[str, Any] | None
    summary: str
    journal: str

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


def backtest_config(config: Config, tape: Path) -> Config:
    """Return the config for a backtest of tape: its market and symbols, mode backtest."""
    market = infer_market(tape)
    return config.model_copy(update={
        "mode": "backtest",
        "market": config.market.model_copy(update={"type": market, "symbols": tuple(tape_symbols(tape))}),
    })


def run_backtest(
    tape: Path,
    config: Config,
    journal_path: Path,
    *,
    progress: bool = False,
    on_app: Callable[[App], None] | None = None,
) -> tuple[App, BacktestResult]:
    """Replay tape through a trading App on the replay clock; return the App and its result.

    on_app sees the App before the first frame (attach notice listeners, swap the strategy).
    """
    config = backtest_config(config, tape)
    entries = exchange_info_from_tape([tape], config.market.symbols, config.market.type)
    journal = Journal.open(journal_path)
    clock = ReplayClock()
    app = App(config, clock=clock, journal=journal, exchange_info=entries,
              tick_sizes={e["symbol"]: _tick(e) for e in entries})
    assert app.trading is not None
    if on_app is not None:
        on_app(app)
    bar = tqdm(desc="backtest", unit="frame", disable=not progress)
    try:
        frames = replay_frames(app, clock, read_tape(tape), bar.update)
    finally:
        bar.close()
    app.pipeline.flush()  # the end of the data closes the open rows, as a stopping App does
    app.trading.flush()
    result = _result(app, journal, journal_path, frames)
    journal.close()
    return app, result


class _ServedStreams:
    """Turn tape frames into what a live App subscribed to these streams receives.

    Exactly what the loopback simulator serves (so paper and backtest see the same frames): a
    diff-depth stream recorded at another speed (`@depth@0ms`) is the subscribed depth stream, and
    a USDⓈ-M tape that recorded only `@trade` gives the `@aggTrade` stream the simulator
    synthesises from it (one aggTrade per MARKET trade, ids contiguous from the first trade id).
    """

    def __init__(self, wanted: frozenset[str], market: object) -> None:
        from exchange.sim.timeline import DIFF_STREAM_RE

        self.wanted = wanted
        self.market = market
        self._diff_re = DIFF_STREAM_RE
        self.depth_of = {s.partition("@")[0]: s for s in wanted if DIFF_STREAM_RE.match(s)}
        self.agg_wanted = {s.partition("@")[0] for s in wanted if s.endswith("@aggTrade")}
        self.agg_recorded: set[str] = set()
        self.next_agg_id: dict[str, int] = {}

    def payload_for(self, payload: bytes) -> bytes | None:
        match = _STREAM.search(payload, 0, 200)
        if match is None:
            return payload  # not an envelope: the decoder counts it
        stream = match.group(1).decode()
        if stream in self.wanted:
            if stream.endswith("@aggTrade"):
                self.agg_recorded.add(stream.partition("@")[0])
            return payload
        symbol = stream.partition("@")[0]
        if self._diff_re.match(stream) and symbol in self.depth_of:
            return payload  # the simulator serves any recorded depth speed as the subscribed one
        if stream.endswith("@trade") and symbol in self.agg_wanted and symbol not in self.agg_recorded:
            return self._as_agg_trade(symbol, payload)
        return None

    def _as_agg_trade(self, symbol: str, payload: bytes) -> bytes | None:
        import orjson

        from exchange.sim.timeline import agg_trade_bytes, envelope

        trade = orjson.loads(payload)["data"]
        if trade.get("X", "MARKET") != "MARKET":
            return None  # the aggTrade stream carries market trades only
        agg_id = self.next_agg_id.setdefault(symbol, int(trade["t"]))
        self.next_agg_id[symbol] = agg_id + 1
        return envelope(f"{symbol}@aggTrade", agg_trade_bytes(trade, agg_id, self.market))  # type: ignore[arg-type]


def replay_frames(
    app: App,
    clock: ReplayClock,
    frames: Iterable[TapeFrame],
    progress: Callable[[int], object] | None = None,
) -> int:
    """Feed tape frames to a trading App on its replay clock; return how many it took.

    A tape may hold streams the App does not subscribe to (bookTicker): live never sees them,
    and they would move exchange time (row closes) differently, so the replay skips them too.
    """
    served = _ServedStreams(subscribed_streams(app.config), app.config.market.type)
    sink = app.sink
    taken = 0
    for frame in frames:
        clock.advance_to(frame.ts_recv_ns)
        if frame.snapshot_symbol is not None:
            sink.on_snapshot(frame.snapshot_symbol, frame.payload, frame.ts_recv_ns)
        else:
            payload = served.payload_for(frame.payload)
            if payload is None:
                continue
            sink.on_frame(payload, frame.ts_recv_ns)
        taken += 1
        if progress is not None and taken % 10_000 == 0:
            progress(10_000)
    if progress is not None:
        progress(taken % 10_000)
    return taken


def _tick(entry: dict) -> object:
    from engine.model import Market, instrument_from_exchange_info

    market = Market.USDM if "contractType" in entry else Market.SPOT
    return instrument_from_exchange_info(entry, market).tick_size


def _result(app: App, journal: Journal, journal_path: Path, frames: int) -> BacktestResult:
    from portfolio.portfolio import summary_line
    from portfolio.report import build_report

    loop = app.trading
    assert loop is not None
    report = build_report(journal)
    metrics = asdict(report.metrics) if report.metrics is not None else None
    return BacktestResult(
        frames=frames,
        intents=len(journal.intents()),
        fills=len(journal.fills()),
        closed_trades=len(report.trades),
        final_equity=float(loop._equity()),
        metrics=metrics,
        summary=summary_line(loop.portfolio.summary_fields(loop.curve)),
        journal=str(journal_path),
    )


def backtest_command(tape: Path, config: Config, journal: Path | None, out: Path) -> str:
    """Run a backtest, write result.json and report.html into out; return a summary line."""
    from engine.commands import setup_logging
    from portfolio.report import run_report

    setup_logging(config)
    out.mkdir(parents=True, exist_ok=True)
    journal_path = journal or out / "journal.sqlite"
    if journal_path.exists():
        journal_path.unlink()  # a backtest journal describes one run
    _, result = run_backtest(tape, config, journal_path, progress=True)
    (out / "result.json").write_text(result.as_json(), encoding="utf-8")
    run_report(journal_path, out / "report.html")
    return (
        f"backtest of {tape.name}: {result.frames} frames, {result.intents} orders, "
        f"{result.fills} fills, {result.closed_trades} round trips; {result.summary} -> {out}"
    )
