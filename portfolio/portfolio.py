"""The portfolio: ledger + positions + marks, valued in one asset; equity curve; summary line.

`Portfolio` is a thin shell over the pure folds (`Ledger`, `Position`): it routes each order
event to them, deduplicates fills by (symbol, trade_id) so a replayed or duplicated user-stream
fill counts once, and values everything at the latest marks. Keep one Portfolio per venue
(spot and USDⓈ-M symbols share names).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.model import Instrument, Market
from engine.orders import FundingPaid, OrderEvent, OrderFilled
from portfolio.ledger import Ledger
from portfolio.position import ClosedTrade, Position

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """One sample of the equity curve, in the valuation asset."""

    ts_ms: int
    equity: float
    gross_exposure: float  # sum of |qty| * mark over open positions


class Portfolio:
    """Balances, positions, PnL, fees and funding of one venue, valued at the latest marks."""

    def __init__(
        self,
        instruments: Iterable[Instrument],
        balances: Mapping[str, Decimal],
        valuation_asset: str = "USDT",
        margin_asset: str = "USDT",
    ) -> None:
        self.instruments = {i.symbol: i for i in instruments}
        self.valuation_asset = valuation_asset
        self.margin_asset = margin_asset
        self.ledger = Ledger.of(balances)
        self.positions: dict[str, Position] = {}
        self.marks: dict[str, Decimal] = {}
        self.closed_trades: list[ClosedTrade] = []
        self.duplicate_fills = 0
        self._seen_fills: set[tuple[str, int]] = set()
        self.start_equity = self.equity()

    # ------------------------------------------------------------------ folding

    def apply(self, event: OrderEvent) -> ClosedTrade | None:
        """Fold an order event (fills and funding change the portfolio; others are ignored)."""
        if isinstance(event, FundingPaid):
            self.ledger = self.ledger.apply_funding(event)
            pos = self.positions.get(event.symbol) or Position(event.symbol)
            self.positions[event.symbol] = pos.apply_funding(event)
            return None
        if not isinstance(event, OrderFilled):
            return None
        key = (event.symbol, event.trade_id)
        if key in self._seen_fills:
            self.duplicate_fills += 1
            return None
        self._seen_fills.add(key)
        instrument = self.instruments[event.symbol]
        before = self.positions.get(event.symbol) or Position(event.symbol)
        after, closed = before.apply_fill(event, self._fee_in_quote(event, instrument))
        self.positions[event.symbol] = after
        if instrument.market is Market.USDM:
            realized = after.realized_pnl - before.realized_pnl
            self.ledger = self.ledger.apply_futures_fill(event, self.margin_asset, realized)
        else:
            self.ledger = self.ledger.apply_spot_fill(event, instrument)
        if event.symbol not in self.marks:
            self.marks[event.symbol] = event.price
        if closed is not None:
            self.closed_trades.append(closed)
        return closed

    def restore_positions(self, fills: Iterable[OrderFilled]) -> None:
        """Rebuild positions from fills already in the balances (a restart): ledger untouched.

        Their trade ids count as seen, so the same fill reported again changes nothing.
        """
        for fill in fills:
            key = (fill.symbol, fill.trade_id)
            if key in self._seen_fills or fill.symbol not in self.instruments:
                continue
            self._seen_fills.add(key)
            fee = self._fee_in_quote(fill, self.instruments[fill.symbol])
            before = self.positions.get(fill.symbol) or Position(fill.symbol)
            self.positions[fill.symbol] = before.apply_fill(fill, fee)[0]
            self.marks.setdefault(fill.symbol, fill.price)

    def mark(self, symbol: str, price: Decimal | float) -> None:
        """Value symbol at price from now on (last trade, mid or mark price)."""
        self.marks[symbol] = price if isinstance(price, Decimal) else Decimal(repr(price))

    def _fee_in_quote(self, fill: OrderFilled, instrument: Instrument) -> Decimal:
        if fill.fee_asset in (instrument.quote_asset, self.margin_asset):
            return fill.fee
        if fill.fee_asset == instrument.base_asset:
            return fill.fee * fill.price
        price = self._asset_price(fill.fee_asset, instrument.quote_asset)
        return fill.fee * price if price is not None else _ZERO

    # ------------------------------------------------------------------ valuation

    def _asset_price(self, asset: str, in_asset: str) -> Decimal | None:
        for symbol, inst in self.instruments.items():
            if (
                inst.market is Market.SPOT
                and inst.base_asset == asset
                and inst.quote_asset == in_asset
            ):
                return self.marks.get(symbol)
        return None

    def unvalued_assets(self) -> list[str]:
        """Return assets held that no mark can value (they count as zero in equity)."""
        return sorted(
            a
            for a, amount in self.ledger.balances.items()
            if amount
            and a != self.valuation_asset
            and self._asset_price(a, self.valuation_asset) is None
        )

    def equity(self) -> Decimal:
        """Return balances valued at marks plus unrealised futures PnL, in the valuation asset."""
        total = _ZERO
        for asset, amount in self.ledger.balances.items():
            if asset == self.valuation_asset:
                total += amount
            else:
                price = self._asset_price(asset, self.valuation_asset)
                total += amount * price if price is not None else _ZERO
        for symbol, pos in self.positions.items():
            if pos.qty and self.instruments[symbol].market is Market.USDM:
                total += pos.unrealized_pnl(self.marks.get(symbol, pos.avg_price))
        return total

    def unrealized_pnl(self) -> Decimal:
        return sum(
            (
                p.unrealized_pnl(self.marks.get(s, p.avg_price))
                for s, p in self.positions.items()
                if p.qty
            ),
            _ZERO,
        )

    def realized_pnl(self) -> Decimal:
        return sum((p.realized_pnl for p in self.positions.values()), _ZERO)

    def fees(self) -> Decimal:
        return sum((p.fees for p in self.positions.values()), _ZERO)

    def funding(self) -> Decimal:
        return sum((p.funding for p in self.positions.values()), _ZERO)

    def gross_exposure(self) -> Decimal:
        """Return the sum of |qty| * mark over open positions."""
        return sum(
            (
                abs(p.qty) * self.marks.get(s, p.avg_price)
                for s, p in self.positions.items()
                if p.qty
            ),
            _ZERO,
        )

    def open_positions(self) -> dict[str, Position]:
        return {s: p for s, p in sorted(self.positions.items()) if p.qty}

    def snapshot(self, ts_ms: int) -> EquityPoint:
        """Return the equity curve sample at ts_ms."""
        return EquityPoint(ts_ms, float(self.equity()), float(self.gross_exposure()))

    # ------------------------------------------------------------------ summary

    def summary_fields(self, curve: EquityCurve | None = None) -> dict[str, Any]:
        """Return the figures of the periodic portfolio log line (floats, rounded).

        Return and drawdown are measured from the curve's first sample and peak when given, else
        from the equity at construction (which values only what had a mark then).
        """
        equity = float(self.equity())
        start = curve.points[0].equity if curve and curve.points else float(self.start_equity)
        peak = max(curve.peak_equity or equity, equity) if curve else equity
        return {
            "equity": round(equity, 2),
            "asset": self.valuation_asset,
            "return_pct": round((equity / start - 1) * 100, 3) if start else 0.0,
            "drawdown_pct": round((1 - equity / peak) * 100, 3) if peak > 0 else 0.0,
            "realized_pnl": round(float(self.realized_pnl()), 2),
            "unrealized_pnl": round(float(self.unrealized_pnl()), 2),
            "fees": round(float(self.fees()), 4),
            "funding": round(float(self.funding()), 4),
            "gross_exposure": round(float(self.gross_exposure()), 2),
            "trades": len(self.closed_trades),
            "positions": {
                s: f"{p.qty:+f}@{p.avg_price:f}" for s, p in self.open_positions().items()
            },
        }


def summary_line(fields: Mapping[str, Any]) -> str:
    """Return the one-line text of summary fields (for the console and Telegram)."""
    positions = " ".join(f"{s}:{v}" for s, v in fields["positions"].items()) or "flat"
    return (
        f"equity={fields['equity']:.2f} {fields['asset']} return={fields['return_pct']:+.2f}% "
        f"dd={fields['drawdown_pct']:.2f}% realised={fields['realized_pnl']:+.2f} "
        f"unrealised={fields['unrealized_pnl']:+.2f} fees={fields['fees']:.2f} "
        f"funding={fields['funding']:+.2f} exposure={fields['gross_exposure']:.2f} "
        f"trades={fields['trades']} positions={positions}"
    )


class EquityCurve:
    """Equity samples taken on a fixed grid of exchange time (default every 60 s)."""

    def __init__(self, interval_ms: int = 60_000) -> None:
        if interval_ms <= 0:
            raise ValueError(f"interval_ms must be > 0: {interval_ms}")
        self.interval_ms = interval_ms
        self.points: list[EquityPoint] = []
        self.peak_equity: float | None = None
        self._next_ms: int | None = None

    def due(self, ts_ms: int) -> bool:
        """Return True when ts_ms reached the next grid time (always for the first sample)."""
        return self._next_ms is None or ts_ms >= self._next_ms

    def record(self, point: EquityPoint) -> None:
        """Append a sample and move the next grid time past it."""
        self.points.append(point)
        self.peak_equity = max(self.peak_equity or point.equity, point.equity)
        self._next_ms = (point.ts_ms // self.interval_ms + 1) * self.interval_ms

    def maybe_record(self, ts_ms: int, portfolio: Portfolio) -> EquityPoint | None:
        """Sample portfolio when due; return the new point or None."""
        if not self.due(ts_ms):
            return None
        point = portfolio.snapshot(ts_ms)
        self.record(point)
        return point


class SummaryTicker:
    """Says when the periodic summary line is due, on exchange time (default every 60 s)."""

    def __init__(self, interval_ms: int = 60_000) -> None:
        self.interval_ms = interval_ms
        self._next_ms: int | None = None

    def due(self, ts_ms: int) -> bool:
        """Return True (and schedule the next one) when a summary is due at ts_ms."""
        if self._next_ms is not None and ts_ms < self._next_ms:
            return False
        self._next_ms = (ts_ms // self.interval_ms + 1) * self.interval_ms
        return True
