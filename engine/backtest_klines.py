"""Backtest over one-minute klines: the same trading loop, risk gate and simulated venue as paper
trading, driven by candles instead of a recorded tape.

Klines carry no book and no trades, so the market data is rebuilt from each candle:

- **Strategy input.** Each kline becomes a closed candle in the symbol's candle ring (the
  fold's schema; book columns NaN) and a `CandleClosed` at the candle's close time. There are no
  per-second rows (so no row-driven decisions) and no model scores: a candle strategy (the vote
  strategy) is what this drives. The candle feed stands in for a synced book: the risk gate's
  book checks see it as valid and as fresh as the last candle.
- **Fill model.** Within a candle the price walks open -> low -> high -> close when the candle
  closed at or above its open, else open -> high -> low -> close (the usual OHLC path
  assumption), as trade prints the simulated venue sees: at the open (candle time), the first
  extreme (+20 s), the second (+40 s) and the close (+59.999 s). Where a leg of that path
  crosses the trigger or limit price of an order working on the venue, a print at exactly that
  price is inserted first (nearest first), so a stop or target fills at its own price, not at
  the extreme; an order already crossed at the open fills at the open (a gap). The venue has no
  book (`fill_without_book`): market orders, triggered stops and targets fill in full at the
  last print as takers; resting limit orders fill as makers when a print passes through them
  (each print carries the candle's volume). Entries and strategy exits are decided at the
  candle's close and fill at its close price. No slippage, no funding (klines have no mark
  price or funding rate), fees from the venue's schedule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from engine.config import Config
from engine.events import TradePrinted
from engine.fold import CANDLE_COLUMNS, ROW_COLUMNS
from engine.journal import Journal
from engine.model import Instrument, instrument_from_exchange_info
from engine.modes import PAPER_QUOTE_BALANCE, next_sequence, next_trade_id
from engine.ring import ColumnRing
from engine.trading import MINUTE_MS, TradingLoop
from exchange.history import read_kline_csv
from exchange.simulated import SimulatedVenue, SimulatedVenueConfig
from portfolio.portfolio import Portfolio
from risk.filters import parse_exchange_filters
from risk.gate import RiskGate
from strategy.models.merge import klines_to_candles
from strategy.signals import build_strategy

LEG_MS = (0, 20_000, 40_000, 59_999)  # open, first extreme, second extreme, close


class KlineMarketData:
    """A symbol's market data as the trading loop reads it, fed one candle at a time."""

    def __init__(self, symbol: str, capacity: int) -> None:
        self.symbol = symbol
        self.rows = ColumnRing(ROW_COLUMNS, 1)  # klines have no per-second rows
        self.candles = ColumnRing(CANDLE_COLUMNS, capacity)
        self.book = None
        self.last_depth_event_ms: int | None = None  # the close of the last candle

    @property
    def book_valid(self) -> bool:
        return self.last_depth_event_ms is not None  # the candle feed stands in for the book


def read_klines(paths: Iterable[Path]) -> pd.DataFrame:
    """Read kline files (archive CSV, .csv.gz, Parquet) into candles, in time order."""
    frames = []
    for path in paths:
        path = Path(path)
        klines = pd.read_parquet(path) if path.suffix == ".parquet" else read_kline_csv(path)
        frames.append(klines_to_candles(klines))
    candles = pd.concat(frames, ignore_index=True).sort_values("ts", kind="stable")
    return candles.drop_duplicates("ts").reset_index(drop=True)


def candle_path(open_: float, high: float, low: float, close: float) -> tuple[float, ...]:
    """Return the candle's assumed price path: open, both extremes (dip first if it closed up)."""
    if close >= open_:
        return open_, low, high, close
    return open_, high, low, close


def working_prices(venue: SimulatedVenue, symbol: str) -> list[float]:
    """Return the trigger and limit prices of the orders working on symbol."""
    prices = []
    for order in venue.open_orders(symbol):
        intent = order.intent
        if intent is None:
            continue
        for price in (intent.stop_price, intent.price):
            if price is not None:
                prices.append(float(price))
    return prices


class KlineDriver:
    """Feed candles to a trading loop: the path's prints to the venue, then the closed candle."""

    def __init__(self, loop: TradingLoop, market: KlineMarketData, instrument: Instrument) -> None:
        self.loop = loop
        self.market = market
        self.instrument = instrument
        self.prints = 0
        self._trade_id = 0
        self._last: float | None = None

    def _print(self, ts_ms: int, price: float, qty: float, falling: bool) -> None:
        self._trade_id += 1
        self.prints += 1
        trade = TradePrinted(
            self.market.symbol, ts_ms, ts_ms, 0, self._trade_id, price, qty, falling
        )
        self.loop.on_trade(trade)
        self._last = price

    def _walk(self, ts_ms: int, target: float, qty: float) -> None:
        """Print from the last price to target, stopping at every working order price between."""
        tick = float(self.instrument.tick_size)
        while self._last is not None and abs(target - self._last) > tick / 2:
            up = target > self._last
            between = [
                p
                for p in working_prices(self.loop.venue, self.market.symbol)
                if (self._last + tick / 2 < p < target - tick / 2)
                or (target + tick / 2 < p < self._last - tick / 2)
            ]
            if not between:
                break
            self._print(ts_ms, min(between) if up else max(between), qty, falling=not up)
        self._print(ts_ms, target, qty, falling=self._last is not None and target < self._last)

    def on_candle(self, row: Mapping[str, Any]) -> None:
        """Run one closed candle: its price path, then the candle to the strategy."""
        ts = int(row["ts"])
        qty = max(float(row["volume"]), 1.0)
        path = candle_path(row["open"], row["high"], row["low"], row["close"])
        for leg_ms, price in zip(LEG_MS, path, strict=True):
            if leg_ms == 0 or self._last is None:
                # the open prints as it is: an order crossed by a gap fills at the open
                falling = self._last is not None and price < self._last
                self._print(ts, price, qty, falling)
            else:
                self._walk(ts + leg_ms, price, qty)
        market = self.market
        market.candles.append_row([row[name] for name in CANDLE_COLUMNS])
        market.last_depth_event_ms = ts + MINUTE_MS
        self.loop.on_rows_closed(market, 0)  # type: ignore[arg-type]
        self.loop.flush()


def build_kline_loop(
    config: Config,
    entry: Mapping[str, Any],
    journal: Journal | None,
    balances: Mapping[str, Decimal] | None = None,
) -> tuple[TradingLoop, KlineDriver]:
    """Assemble strategy, risk gate, book-less simulated venue and portfolio for one symbol."""
    market = config.market.type
    instrument = instrument_from_exchange_info(dict(entry), market)
    symbol = instrument.symbol
    filters = {symbol: parse_exchange_filters(dict(entry), market)}
    balances = balances or {"USDT": PAPER_QUOTE_BALANCE}
    venue = SimulatedVenue(
        [instrument],
        balances,
        SimulatedVenueConfig(
            market=market, leverage=int(config.risk.leverage), fill_without_book=True
        ),
        next_trade_id=next_trade_id(journal),
    )
    md = KlineMarketData(symbol, config.fold.candles_capacity)
    loop = TradingLoop(
        strategy=build_strategy(config.strategy, market, model_available=False),
        gate=RiskGate(
            config.risk, filters, next_seq=next_sequence(journal, config.risk.client_id_prefix)
        ),
        venue=venue,
        portfolio=Portfolio([instrument], balances),
        instruments={symbol: instrument},
        market_data={symbol: md},  # type: ignore[dict-item]
        journal=journal,
    )
    return loop, KlineDriver(loop, md, instrument)


def run_kline_backtest(
    candles: pd.DataFrame,
    config: Config,
    entry: Mapping[str, Any],
    journal_path: Path,
) -> TradingLoop:
    """Backtest config's strategy over candles of one symbol (entry: its exchangeInfo)."""
    journal = Journal.open(journal_path)
    try:
        loop, driver = build_kline_loop(config, entry, journal)
        records = candles[list(CANDLE_COLUMNS)].to_dict("records")
        for row in records:
            if not all(math.isfinite(row[c]) for c in ("open", "high", "low", "close")):
                continue  # a hole in the data: no prices to walk
            driver.on_candle(row)
        loop.flush()
    finally:
        journal.close()
    return loop


def kline_backtest_command(
    paths: list[Path], config: Config, exchange_info: Path, journal: Path | None, out: Path
) -> str:
    """Backtest over kline files, write result.json and report.html into out; return a summary.

    exchange_info is a saved exchangeInfo body holding the symbol (config.market.symbols[0]).
    """
    from engine.backtest import BacktestResult
    from portfolio.portfolio import summary_line
    from portfolio.report import build_report, run_report

    symbol = config.market.symbols[0]
    body = json.loads(Path(exchange_info).read_text(encoding="utf-8"))
    entry = next((e for e in body.get("symbols", []) if e.get("symbol") == symbol), None)
    if entry is None:
        raise ValueError(f"{exchange_info} has no exchangeInfo entry for {symbol}")
    out.mkdir(parents=True, exist_ok=True)
    journal_path = journal or out / "journal.sqlite"
    if journal_path.exists():
        journal_path.unlink()  # a backtest journal describes one run
    candles = read_klines(paths)
    loop = run_kline_backtest(candles, config, entry, journal_path)
    opened = Journal.open(journal_path)
    try:
        report = build_report(opened)
        result = BacktestResult(
            frames=len(candles),
            intents=len(opened.intents()),
            fills=len(opened.fills()),
            closed_trades=len(report.trades),
            final_equity=float(loop.portfolio.equity()),
            metrics=asdict(report.metrics) if report.metrics is not None else None,
            summary=summary_line(loop.portfolio.summary_fields(loop.curve)),
            journal=str(journal_path),
        )
    finally:
        opened.close()
    (out / "result.json").write_text(result.as_json(), encoding="utf-8")
    run_report(journal_path, out / "report.html")
    return (
        f"kline backtest of {symbol}: {len(candles)} candles, {result.intents} orders, "
        f"{result.fills} fills, {result.closed_trades} round trips; {result.summary} -> {out}"
    )


__all__ = [
    "KlineDriver",
    "KlineMarketData",
    "build_kline_loop",
    "candle_path",
    "kline_backtest_command",
    "read_klines",
    "run_kline_backtest",
]
