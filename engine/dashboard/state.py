"""What the dashboard shows, kept from the engine's listeners: one JSON-ready snapshot a second.

`DashboardState` is a row hook, a model-score listener and a notice listener of an App. It keeps
a bounded history per coin (one dot per closed second: exchange time, close, the confidence the
strategy compares at that moment), the last price move, and the latest alerts; everything else
(positions, PnL, equity curve, trading state, recent trades) is read from the trading loop when a
snapshot is taken, so nothing here grows with the run's length.

Confidence is shown only where the engine has one: the model strategy's long-side confidence and
threshold (per-coin threshold overrides applied, as the strategy applies them), else the vote
strategy's last tally; otherwise the coin's honest status (features warming up, no model, model
refused) and no number.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from engine.dashboard.config import DashboardConfig
from engine.notices import (
    DailySummaryNotice,
    ErrorNotice,
    MismatchNotice,
    Notice,
    SignalNotice,
    StateNotice,
    TradeNotice,
)
from strategy.signals import ScoreUpdated
from strategy.signals.model_strategy import ModelStrategy
from strategy.signals.requests import PositionSide

if TYPE_CHECKING:  # the dashboard reads an App; it never builds one
    from engine.app import App
    from engine.marketdata import SymbolMarketData

HistoryPoint = tuple[int, float, float | None]  # (row ts_ms, close, confidence or None)


def finite(value: Any) -> float | None:
    """Return value as a float, or None when it is missing, NaN or infinite (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass
class Reading:
    """A confidence the strategy compares with a threshold, and where it came from."""

    source: str  # model | vote
    confidence: float
    threshold: float
    low: float  # the confidence's range, for the bar
    high: float
    ts_ms: int
    action: str = ""


@dataclass
class CoinTrack:
    """Per-coin memory the rings do not hold: the trajectory and the last price move."""

    history: deque[HistoryPoint]
    last_close: float | None = None
    last_move: str | None = None  # up | down: sign of the last change of the per-second close
    last_move_ts_ms: int | None = None
    rows_seen: int = 0


@dataclass
class DashboardState:
    """Listen to an App and build the dashboard snapshot on demand."""

    app: App
    config: DashboardConfig = field(default_factory=DashboardConfig)
    coins: dict[str, CoinTrack] = field(init=False)
    alerts: deque[dict[str, Any]] = field(init=False)
    seq: int = 0  # snapshots taken (the page shows it: proof of updates)

    def __post_init__(self) -> None:
        self.coins = {
            symbol: CoinTrack(deque(maxlen=self.config.history_points))
            for symbol in self.app.pipeline.symbols
        }
        self.alerts = deque(maxlen=self.config.alerts)
        # The same resolution of (confidence, threshold) as the model strategy, without its I/O.
        self._model_sides = ModelStrategy(self.app.config.strategy, self.app.config.market.type)
        self._combined = self.app.config.strategy.model.sides == "combined"

    def attach(self) -> None:
        """Register as row hook and notice listener of the App."""
        self.app.add_row_hook(self.on_rows_closed)
        self.app.notice_listeners.append(self.on_notice)

    # -- listeners ------------------------------------------------------------------------------
    def on_rows_closed(self, state: SymbolMarketData, n_rows: int) -> None:
        """Row hook: one history dot per closed second, and the direction of the last move."""
        track = self.coins.get(state.symbol)
        if track is None:
            return
        rows = state.rows
        n = min(n_rows, len(rows))
        reading = self.reading(state.symbol)
        confidence = reading.confidence if reading is not None else None
        for ts, close in zip(rows.window("ts", n), rows.window("close", n), strict=True):
            price = finite(close)
            track.rows_seen += 1
            if price is None:
                continue  # no trade yet since the start: no price to plot
            if track.last_close is not None and price != track.last_close:
                track.last_move = "up" if price > track.last_close else "down"
                track.last_move_ts_ms = int(ts)
            track.last_close = price
            track.history.append((int(ts), price, confidence))

    def on_notice(self, notice: Notice) -> None:
        """Notice listener: keep the latest alerts for the page."""
        self.alerts.append(describe_notice(notice))

    # -- readings -------------------------------------------------------------------------------
    def reading(self, symbol: str) -> Reading | None:
        """Return the confidence the strategy compares for symbol now, or None when there is none."""
        score = self.app.models.latest.get(symbol)
        if score is not None:
            return self._model_reading(score)
        decisions: Mapping[str, Any] | None = getattr(self._strategy(), "decisions", None)
        decision = decisions.get(symbol) if decisions else None
        if decision is not None and decision.tally is not None:
            return Reading(
                "vote",
                float(decision.tally.confidence),
                float(decision.threshold),
                -1.0,
                1.0,
                int(decision.ts_ms),
                decision.action,
            )
        return None

    def _model_reading(self, score: ScoreUpdated) -> Reading:
        sides = self._model_sides.side_scores(score)
        long = next(s for s in sides if s.side is PositionSide.LONG)
        low = -1.0 if self._combined else 0.0
        return Reading(
            "model", float(long.confidence), float(long.threshold), low, 1.0, score.ts_ms
        )

    def _strategy(self) -> object | None:
        trading = self.app.trading
        return trading.strategy if trading is not None else None

    def status(self, symbol: str) -> str:
        """Say why a coin has no confidence yet (or what its feature sets are doing)."""
        models = self.app.models
        features = self.app.features.status().get(symbol, {})
        feature_text = (
            ", ".join(f"{label} {s}" for label, s in features.items()) or "none configured"
        )
        if symbol in models.refused:
            return f"model refused ({models.refused[symbol]}); not traded"
        if symbol in models.models:
            return f"model loaded, features warming up: {feature_text}"
        strategy = self._strategy()
        if getattr(strategy, "name", "") == "vote":
            candles = len(self.app.pipeline.symbols[symbol].candles)
            needed = self.app.config.strategy.vote.warmup_candles
            return f"vote strategy warming up: {candles}/{needed} one-minute candles"
        if strategy is not None:
            return f"no model promoted for this coin; features: {feature_text}"
        return f"no model promoted; not trading; features: {feature_text}"

    # -- snapshot -------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Return everything the page shows, stamped with the newest exchange time seen."""
        self.seq += 1
        coins = [self._coin(symbol, track) for symbol, track in self.coins.items()]
        exchange_ms = [c["exchange_ts_ms"] for c in coins if c["exchange_ts_ms"] is not None]
        trading = self.app.trading
        return {
            "seq": self.seq,
            "ts_ms": max(exchange_ms) if exchange_ms else None,
            "mode": self.app.config.mode,
            "market": self.app.config.market.type.value,
            "strategy": getattr(self._strategy(), "name", None),
            "frames": self.app.pipeline.stats.frames,
            "coins": coins,
            "trading": trading_view(trading, self.config) if trading is not None else None,
            "alerts": list(self.alerts)[::-1],  # newest first
        }

    def _coin(self, symbol: str, track: CoinTrack) -> dict[str, Any]:
        state = self.app.pipeline.symbols[symbol]
        rows = state.rows
        last = rows.last_row() if len(rows) else None
        row_ts = int(last["ts"]) if last else None
        event_ms = [t for t in (row_ts, state.last_depth_event_ms) if t is not None]
        reading = self.reading(symbol)
        coin: dict[str, Any] = {
            "symbol": symbol,
            "price": finite(last["close"]) if last else None,
            "bid": finite(last["bid"]) if last else None,
            "ask": finite(last["ask"]) if last else None,
            "row_ts_ms": row_ts,
            "exchange_ts_ms": max(event_ms) if event_ms else None,
            "book_valid": state.book_valid,
            "last_move": track.last_move,
            "last_move_ts_ms": track.last_move_ts_ms,
            "rows": track.rows_seen,
            "confidence": None,
            "threshold": None,
            "range": None,
            "source": None,
            "above": None,
            "confidence_ts_ms": None,
            "status": None,
            "history": [[ts, price, conf] for ts, price, conf in track.history],
        }
        if reading is None:
            coin["status"] = self.status(symbol)
        else:
            coin.update(
                confidence=reading.confidence,
                threshold=reading.threshold,
                range=[reading.low, reading.high],
                source=reading.source,
                above=reading.confidence >= reading.threshold,
                confidence_ts_ms=reading.ts_ms,
                status=f"vote: {reading.action}" if reading.source == "vote" else None,
            )
        return coin


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def trading_view(trading: Any, config: DashboardConfig) -> dict[str, Any]:
    """Return positions, PnL, equity curve, trading state and recent trades of a trading loop."""
    portfolio = trading.portfolio
    summary = portfolio.summary_fields(trading.curve)
    positions = []
    for symbol, position in portfolio.open_positions().items():
        mark = portfolio.marks.get(symbol)
        positions.append(
            {
                "symbol": symbol,
                "qty": _dec(position.qty),
                "avg_price": _dec(position.avg_price),
                "mark": _dec(mark),
                "unrealized_pnl": finite(position.unrealized_pnl(mark))
                if mark is not None
                else None,
            }
        )
    trades = [
        {
            "symbol": t.symbol,
            "direction": t.direction.value,
            "opened_ms": t.opened_ms,
            "closed_ms": t.closed_ms,
            "quantity": _dec(t.quantity),
            "entry_price": _dec(t.entry_price),
            "exit_price": _dec(t.exit_price),
            "pnl": finite(t.pnl),
            "return_pct": finite(t.return_pct),
        }
        for t in portfolio.closed_trades[-config.recent_trades :]
    ][::-1]
    curve = [[p.ts_ms, finite(p.equity)] for p in trading.curve.points[-config.equity_points :]]
    stats = trading.stats
    return {
        "state": trading.gate.trading_state.value,
        "asset": summary["asset"],
        "equity": summary["equity"],
        "return_pct": summary["return_pct"],
        "drawdown_pct": summary["drawdown_pct"],
        "realized_pnl": summary["realized_pnl"],
        "unrealized_pnl": summary["unrealized_pnl"],
        "fees": summary["fees"],
        "funding": summary["funding"],
        "gross_exposure": summary["gross_exposure"],
        "closed_trades": summary["trades"],
        "positions": positions,
        "equity_curve": curve,
        "recent_trades": trades,
        "orders": {
            "requests": stats.requests,
            "denied": stats.denied,
            "submitted": stats.submitted,
            "fills": stats.fills,
            "rejected": stats.rejected,
        },
    }


def _score_text(score: float | None, threshold: float | None) -> str:
    if score is None or threshold is None:
        return ""
    return f" (score {score:.3f} vs threshold {threshold:.3f})"


_DESCRIBE: dict[type, Callable[[Any], tuple[str, str, str]]] = {
    SignalNotice: lambda n: (
        "signal",
        n.symbol,
        f"signal at {n.price:g}{_score_text(n.score, n.threshold)}",
    ),
    TradeNotice: lambda n: (
        "trade",
        n.symbol,
        f"{n.kind} {n.side} {n.quantity:f} @ {n.price:f}"
        f"{_score_text(n.score, n.threshold)}"
        + (f" pnl {n.realized_pnl:+f}" if n.realized_pnl is not None else "")
        + (f": {n.reason}" if n.reason else ""),
    ),
    StateNotice: lambda n: ("state", "", f"trading {n.from_state} -> {n.to_state}: {n.reason}"),
    ErrorNotice: lambda n: (
        "error",
        "",
        f"{n.component}: {n.message}" + (" (needs a person)" if n.needs_person else ""),
    ),
    MismatchNotice: lambda n: ("mismatch", n.symbol, n.detail),
    DailySummaryNotice: lambda n: (
        "summary",
        "",
        (
            f"{n.day}: equity {n.equity:f}, pnl {n.pnl:+f} "
            f"({n.pnl_pct:+.2f}%), {n.trades} trades, {n.wins} won"
        ),
    ),
}


def describe_notice(notice: Notice) -> dict[str, Any]:
    """Turn a notice into one line for the alerts list: kind, exchange time, symbol, text."""
    describe = _DESCRIBE.get(type(notice))
    if describe is None:
        return {
            "kind": "other",
            "ts_ms": getattr(notice, "ts_ms", None),
            "symbol": "",
            "text": type(notice).__name__,
        }
    kind, symbol, text = describe(notice)
    return {"kind": kind, "ts_ms": notice.ts_ms, "symbol": symbol, "text": text}
