"""What the trading loop tells a person: notices built from its orders, states, scores and days.

`TradeNotices` is the loop's notice desk. It follows each order from its command to its last
fill and sends (to every listener, a failing listener logged and skipped):

- `TradeNotice` once per order that filled, when it completes (or is cancelled/expires after
  partial fills): kind from the order's role (entry, exit, stop_loss, take_profit, flatten), the
  volume-weighted price and total quantity of its fills, the reason it was sent, and why: for
  entries the score, threshold, bundle and top contributions of the request plus the stop and
  first target placed; for exits the realised PnL of the closed quantity net of the order's fees.
- `StateNotice` for every trading-state transition, `ErrorNotice` (needs a person) on entering
  HALTED and for every protection problem (a position left unprotected or not flattened).
- `SignalNotice` when a score reaches its threshold from below (model scores; the vote
  strategy's confidence at each candle), per symbol and side.
- `DailySummaryNotice` at the first exchange-time second of each UTC day, for the day that ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import structlog

from engine.notices import (
    Contribution,
    DailySummaryNotice,
    ErrorNotice,
    Notice,
    SignalNotice,
    StateNotice,
    TradeNotice,
)
from engine.orders import (
    Command,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderRole,
    SubmitOrder,
    SubmitOrderList,
)
from risk.protection import ProtectionPlan
from risk.state import DAY_MS, TradingState, Transition

TOP_CONTRIBUTIONS = 5
KIND_OF_ROLE = {
    OrderRole.ENTRY: "entry",
    OrderRole.DCA: "entry",
    OrderRole.EXIT: "exit",
    OrderRole.STOP_LOSS: "stop_loss",
    OrderRole.TAKE_PROFIT: "take_profit",
    OrderRole.TRAILING_STOP: "take_profit",
    OrderRole.FLATTEN: "flatten",
}
NoticeListener = Callable[[Notice], None]


@dataclass(frozen=True, slots=True)
class EntryReason:
    """Why a position was entered: the request's score and what drove it."""

    score: float
    threshold: float
    bundle_id: str
    contributions: tuple[Contribution, ...]


@dataclass(slots=True)
class _Execution:
    """One order on its way: what was sent and what its fills add up to so far."""

    intent: OrderIntent
    reason: str
    qty: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    realized: Decimal = Decimal(0)  # change of the position's realised PnL over its fills
    last_ms: int = 0
    why: EntryReason | None = field(default=None)


def top_contributions(contributions: tuple[Contribution, ...]) -> tuple[Contribution, ...]:
    """Return the largest contributions by magnitude, largest first."""
    ranked = sorted(contributions, key=lambda c: abs(c[1]), reverse=True)
    return tuple(ranked[:TOP_CONTRIBUTIONS])


def utc_day(ts_ms: int) -> str:
    """Return the UTC date (YYYY-MM-DD) of an exchange time."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


class TradeNotices:
    """Build the trading loop's notices and hand them to its listeners."""

    def __init__(self, listeners: list[NoticeListener]) -> None:
        self.listeners = listeners
        self.log = structlog.get_logger("engine.trading")
        self._orders: dict[str, _Execution] = {}
        self._entry_reasons: dict[str, EntryReason] = {}  # per symbol: the pending entry's why
        self._above: dict[tuple[str, int], bool] = {}  # (symbol, side) -> score at threshold

    def emit(self, notice: Notice) -> None:
        """Hand a notice to every listener; a failing listener never stops trading."""
        for listener in self.listeners:
            try:
                listener(notice)
            except Exception:  # a notifier bug must never stop trading
                self.log.exception("notice_listener_failed", notice=type(notice).__name__)

    # -- orders ---------------------------------------------------------------------------
    def entry_reason(self, symbol: str, reason: EntryReason) -> None:
        """Remember why the next entry of symbol is sent."""
        self._entry_reasons[symbol] = reason

    def sent(self, command: Command) -> None:
        """Follow the orders of a submitted command."""
        if isinstance(command, SubmitOrder):
            intents: tuple[OrderIntent, ...] = (command.intent,)
        elif isinstance(command, SubmitOrderList):
            intents = command.orders
        else:
            return
        for intent in intents:
            execution = _Execution(intent, command.reason)
            if intent.role is OrderRole.ENTRY:
                execution.why = self._entry_reasons.pop(intent.symbol, None)
            self._orders[intent.client_order_id] = execution

    def filled(self, fill: OrderFilled, realized_change: Decimal, fee_in_quote: Decimal) -> None:
        """Add a fill (and what it realised) to its order."""
        execution = self._orders.get(fill.client_order_id)
        if execution is None:
            return
        execution.qty += fill.quantity
        execution.notional += fill.price * fill.quantity
        execution.fees += fee_in_quote
        execution.realized += realized_change
        execution.last_ms = fill.ts_event_ms

    def order_event(self, event: OrderEvent, plan: ProtectionPlan | None) -> None:
        """Send the order's TradeNotice when this event ends an order that filled."""
        coid: str | None = getattr(event, "client_order_id", None)
        execution = self._orders.get(coid) if coid is not None else None
        if coid is None or execution is None:
            return
        if isinstance(event, OrderRejected):
            del self._orders[coid]  # never on the venue: no trade to tell
            return
        ended = isinstance(event, OrderCanceled | OrderExpired) or (
            isinstance(event, OrderFilled) and event.order_complete
        )
        if not ended:
            return
        del self._orders[coid]
        if execution.qty > 0:
            self.emit(self._trade_notice(execution, plan))

    def _trade_notice(self, execution: _Execution, plan: ProtectionPlan | None) -> TradeNotice:
        intent = execution.intent
        kind = KIND_OF_ROLE[intent.role]
        price = execution.notional / execution.qty
        stop = target = None
        if plan is not None and not plan.closed:  # where the next working legs rest
            bracket = next(b for b in plan.brackets if not b.done)
            stop = bracket.stop.stop_price if bracket.stop else None
            target = bracket.target.stop_price if bracket.target else None
        if intent.role is OrderRole.STOP_LOSS:
            stop = intent.stop_price
        elif intent.role in (OrderRole.TAKE_PROFIT, OrderRole.TRAILING_STOP):
            target = intent.stop_price
        why = execution.why
        entry = kind == "entry"
        return TradeNotice(
            symbol=intent.symbol,
            ts_ms=execution.last_ms,
            kind=kind,  # type: ignore[arg-type]
            side=intent.side.value,
            price=price,
            quantity=execution.qty,
            reason=execution.reason,
            score=why.score if why else None,
            threshold=why.threshold if why else None,
            bundle_id=why.bundle_id if why else "",
            contributions=why.contributions if why else (),
            stop_price=stop,
            target_price=target,
            realized_pnl=None if entry else execution.realized - execution.fees,
        )

    # -- states, problems, signals, days -----------------------------------------------------
    def transition(self, transition: Transition) -> None:
        """Tell the state change; entering HALTED also needs a person to resume."""
        reason = f"{transition.trigger.value}: {transition.detail}"
        self.emit(
            StateNotice(
                transition.ts_ms, transition.from_state.value, transition.to_state.value, reason
            )
        )
        if transition.to_state is TradingState.HALTED:
            message = f"trading halted ({reason}); entries stay refused until a manual resume"
            self.emit(ErrorNotice(transition.ts_ms, "risk", message, needs_person=True))

    def problem(self, ts_ms: int, problem: str) -> None:
        """Tell a protection problem (a position left unprotected or not flattened)."""
        self.emit(ErrorNotice(ts_ms, "protection", problem, needs_person=True))

    def score(
        self,
        symbol: str,
        side: int,
        score: float,
        threshold: float,
        ts_ms: int,
        price: float,
        bundle_id: str = "",
        contributions: tuple[Contribution, ...] = (),
    ) -> None:
        """Send a SignalNotice when side's score (magnitude) reaches threshold from below."""
        above = abs(score) >= threshold
        was_above = self._above.get((symbol, side), False)
        self._above[(symbol, side)] = above
        if above and not was_above:
            self.emit(
                SignalNotice(
                    symbol, ts_ms, score, threshold, price, bundle_id,
                    top_contributions(contributions),
                )
            )  # fmt: skip

    def day_ended(
        self,
        day_start_ms: int,
        ts_ms: int,
        equity: Decimal,
        start_equity: Decimal,
        trade_pnls: list[Decimal],
    ) -> None:
        """Send the summary of the UTC day that began at day_start_ms."""
        pnl = equity - start_equity
        pct = float(pnl / start_equity * 100) if start_equity else 0.0
        wins = sum(1 for p in trade_pnls if p > 0)
        day = utc_day(day_start_ms)
        self.emit(DailySummaryNotice(day, ts_ms, equity, pnl, pct, len(trade_pnls), wins))


def day_start_ms(ts_ms: int) -> int:
    """Return the start (00:00 UTC) of the day holding ts_ms, in ms."""
    return ts_ms // DAY_MS * DAY_MS


__all__ = ["EntryReason", "NoticeListener", "TradeNotices", "day_start_ms", "top_contributions"]
