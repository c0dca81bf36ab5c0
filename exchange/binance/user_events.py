"""Binance user-data events: typed parsing and a fold into the engine's order events.

Wire formats are those of binance-api.md §6: spot `executionReport` / `outboundAccountPosition`
(wrapped by the WebSocket API as ``{"subscriptionId":N,"event":{...}}``) and USDⓈ-M
`ORDER_TRADE_UPDATE` / `ALGO_UPDATE` / `ACCOUNT_UPDATE` / `listenKeyExpired` (bare, or wrapped
as ``{"stream":K,"data":{...}}`` on a combined connection). Every amount is an exact Decimal from
the wire string. A malformed event raises `MalformedUserEvent`, which the stream clients count
and log; an event type we do not use parses to None.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from engine.model import Side
from engine.orders import (
    FundingPaid,
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)


class MalformedUserEvent(ValueError):
    """A user-data frame that is not JSON or lacks a field we need."""


# -- typed events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One order change: spot executionReport or USDⓈ-M ORDER_TRADE_UPDATE."""

    symbol: str
    client_order_id: str  # for a spot cancel: the original order's id (wire `C`), not the cancel's
    venue_order_id: str
    side: Side
    order_type: str
    execution_type: str  # NEW, TRADE, CANCELED, EXPIRED, REJECTED, CALCULATED, AMENDMENT, ...
    order_status: str
    quantity: Decimal
    price: Decimal
    last_qty: Decimal
    last_price: Decimal
    cum_qty: Decimal
    commission: Decimal
    commission_asset: str
    trade_id: int  # -1 (spot) / 0 (futures) when the update is not a trade
    maker: bool
    reject_reason: str
    expiry_reason: str
    realized_pnl: Decimal  # futures only; 0 on spot
    ts_event_ms: int
    ts_transaction_ms: int


@dataclass(frozen=True, slots=True)
class AlgoUpdate:
    """A USDⓈ-M conditional (algo) order change; after TRIGGERED its order follows as OrderUpdate."""

    symbol: str
    client_algo_id: str
    algo_id: int
    side: Side
    order_type: str
    status: str  # NEW, CANCELED, TRIGGERING, TRIGGERED, FINISHED, REJECTED, EXPIRED
    quantity: Decimal
    trigger_price: Decimal
    actual_order_id: str
    reject_message: str
    ts_event_ms: int


@dataclass(frozen=True, slots=True)
class BalanceSnapshot:
    """One asset's balance as the venue reports it now (spot free/locked; futures wallet)."""

    asset: str
    free: Decimal  # spot free; futures wallet balance
    locked: Decimal  # spot locked; futures 0
    cross_wallet: Decimal  # futures cross wallet; spot 0
    balance_change: Decimal  # futures `bc` (excluding PnL and commission); spot 0
    ts_event_ms: int


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    """One USDⓈ-M position as the venue reports it now; amount is signed (short < 0)."""

    symbol: str
    position_side: str
    amount: Decimal
    entry_price: Decimal
    unrealized_pnl: Decimal
    margin_type: str
    ts_event_ms: int


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """Spot outboundAccountPosition or USDⓈ-M ACCOUNT_UPDATE: only the changed rows."""

    reason: str  # futures `m` (ORDER, FUNDING_FEE, ...); spot "ACCOUNT_POSITION"
    balances: tuple[BalanceSnapshot, ...]
    positions: tuple[PositionSnapshot, ...]
    ts_event_ms: int


@dataclass(frozen=True, slots=True)
class ListenKeyExpired:
    """The futures listenKey expired: the socket may stay open but delivers nothing more."""

    ts_event_ms: int


@dataclass(frozen=True, slots=True)
class StreamTerminated:
    """Spot `eventStreamTerminated`: the WS API subscription ended; resubscribe."""

    ts_event_ms: int


UserEvent = OrderUpdate | AlgoUpdate | AccountSnapshot | ListenKeyExpired | StreamTerminated


# -- parsing -----------------------------------------------------------------------------------


def parse_user_frame(raw: bytes | str) -> UserEvent | None:
    """Parse one user-data frame (bare or wrapped); None for event types we do not use."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedUserEvent(f"not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise MalformedUserEvent("not a JSON object")
    if "event" in message and "subscriptionId" in message:
        message = message["event"]
    elif "stream" in message and "data" in message:
        message = message["data"]
    if not isinstance(message, dict):
        raise MalformedUserEvent("wrapped event is not a JSON object")
    return parse_user_event(message)


def parse_user_event(event: dict[str, Any]) -> UserEvent | None:
    """Parse one decoded user-data event; None for event types we do not use."""
    kind = event.get("e")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        return None
    try:
        return parser(event)
    # AttributeError: a nested object ("o", "a") that is a list or a number has no .get()
    except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as exc:
        raise MalformedUserEvent(f"{kind}: {type(exc).__name__}: {exc}") from exc


def _dec(value: Any) -> Decimal:
    if isinstance(value, float):
        raise TypeError("amount is a JSON number, expected a string")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError(f"non-finite amount {value!r}")
    return result


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"expected an integer, got {value!r}")
    return int(value)


def _execution_report(e: dict[str, Any]) -> OrderUpdate:
    original = e.get("C") or ""
    return OrderUpdate(
        symbol=str(e["s"]),
        client_order_id=str(original or e["c"]),
        venue_order_id=str(_int(e["i"])),
        side=Side(e["S"]),
        order_type=str(e["o"]),
        execution_type=str(e["x"]),
        order_status=str(e["X"]),
        quantity=_dec(e["q"]),
        price=_dec(e["p"]),
        last_qty=_dec(e["l"]),
        last_price=_dec(e["L"]),
        cum_qty=_dec(e["z"]),
        commission=_dec(e.get("n") or "0"),
        commission_asset=str(e.get("N") or ""),
        trade_id=_int(e["t"]),
        maker=bool(e["m"]),
        reject_reason=str(e.get("r") or "NONE"),
        expiry_reason=str(e.get("eR") or ""),
        realized_pnl=Decimal(0),
        ts_event_ms=_int(e["E"]),
        ts_transaction_ms=_int(e["T"]),
    )


def _order_trade_update(e: dict[str, Any]) -> OrderUpdate:
    o = e["o"]
    expiry = str(o.get("er", "0"))
    return OrderUpdate(
        symbol=str(o["s"]),
        client_order_id=str(o["c"]),
        venue_order_id=str(_int(o["i"])),
        side=Side(o["S"]),
        order_type=str(o["o"]),
        execution_type=str(o["x"]),
        order_status=str(o["X"]),
        quantity=_dec(o["q"]),
        price=_dec(o["p"]),
        last_qty=_dec(o["l"]),
        last_price=_dec(o["L"]),
        cum_qty=_dec(o["z"]),
        commission=_dec(o.get("n") or "0"),
        commission_asset=str(o.get("N") or ""),
        trade_id=_int(o["t"]),
        maker=bool(o["m"]),
        reject_reason="NONE",
        expiry_reason="" if expiry == "0" else expiry,
        realized_pnl=_dec(o.get("rp") or "0"),
        ts_event_ms=_int(e["E"]),
        ts_transaction_ms=_int(o.get("T", e.get("T", e["E"]))),
    )


def _algo_update(e: dict[str, Any]) -> AlgoUpdate:
    o = e["o"]
    return AlgoUpdate(
        symbol=str(o["s"]),
        client_algo_id=str(o["caid"]),
        algo_id=_int(o["aid"]),
        side=Side(o["S"]),
        order_type=str(o["o"]),
        status=str(o["X"]),
        quantity=_dec(o["q"]),
        trigger_price=_dec(o.get("tp") or "0"),
        actual_order_id=str(o.get("ai") or ""),
        reject_message=str(o.get("rm") or ""),
        ts_event_ms=_int(e.get("T", e["E"])),
    )


def _account_position(e: dict[str, Any]) -> AccountSnapshot:
    ts = _int(e["E"])
    balances = tuple(
        BalanceSnapshot(str(b["a"]), _dec(b["f"]), _dec(b["l"]), Decimal(0), Decimal(0), ts)
        for b in e["B"]
    )
    return AccountSnapshot("ACCOUNT_POSITION", balances, (), ts)


def _account_update(e: dict[str, Any]) -> AccountSnapshot:
    a = e["a"]
    ts = _int(e.get("T", e["E"]))
    balances = tuple(
        BalanceSnapshot(str(b["a"]), _dec(b["wb"]), Decimal(0), _dec(b.get("cw") or "0"),
                        _dec(b.get("bc") or "0"), ts)
        for b in a.get("B", ())
    )  # fmt: skip
    positions = tuple(
        PositionSnapshot(str(p["s"]), str(p.get("ps", "BOTH")), _dec(p["pa"]), _dec(p["ep"]),
                         _dec(p.get("up") or "0"), str(p.get("mt", "")), ts)
        for p in a.get("P", ())
    )  # fmt: skip
    return AccountSnapshot(str(a["m"]), balances, positions, ts)


_PARSERS: dict[str, Callable[[dict[str, Any]], UserEvent]] = {
    "executionReport": _execution_report,
    "ORDER_TRADE_UPDATE": _order_trade_update,
    "ALGO_UPDATE": _algo_update,
    "outboundAccountPosition": _account_position,
    "ACCOUNT_UPDATE": _account_update,
    "listenKeyExpired": lambda e: ListenKeyExpired(_int(e["E"])),
    "eventStreamTerminated": lambda e: StreamTerminated(_int(e["E"])),
}


# -- folding into engine events ------------------------------------------------------------------

FoldOutput = OrderEvent | BalanceSnapshot | PositionSnapshot

_TRADE_TYPES = frozenset({"TRADE", "CALCULATED"})  # CALCULATED: a liquidation fill (futures)
_FINAL_EXPIRY_STATUSES = frozenset({"EXPIRED", "EXPIRED_IN_MATCH"})


def order_events(update: OrderUpdate) -> list[OrderEvent]:
    """Translate one order update into engine order events (no dedup; see UserEventFold)."""
    ts = update.ts_transaction_ms
    kind = update.execution_type
    if kind == "NEW":
        return [OrderAccepted(update.symbol, update.client_order_id, update.venue_order_id, ts)]
    if kind in _TRADE_TYPES:
        if update.last_qty <= 0:
            return []
        return [
            OrderFilled(
                symbol=update.symbol,
                client_order_id=update.client_order_id,
                trade_id=update.trade_id,
                side=update.side,
                price=update.last_price,
                quantity=update.last_qty,
                fee=update.commission,
                fee_asset=update.commission_asset,
                liquidity=Liquidity.MAKER if update.maker else Liquidity.TAKER,
                ts_event_ms=ts,
                order_complete=update.order_status == "FILLED",
            )
        ]
    if kind == "CANCELED":
        return [OrderCanceled(update.symbol, update.client_order_id, ts)]
    if kind == "EXPIRED" or (
        kind == "TRADE_PREVENTION" and update.order_status in _FINAL_EXPIRY_STATUSES
    ):
        reason = update.expiry_reason or (kind if kind != "EXPIRED" else "")
        return [OrderExpired(update.symbol, update.client_order_id, ts, reason)]
    if kind == "REJECTED":
        return [OrderRejected(update.symbol, update.client_order_id, update.reject_reason,
                              "rejected by the venue", ts)]  # fmt: skip
    return []  # REPLACED, AMENDMENT, a non-final TRADE_PREVENTION: nothing the engine tracks


def algo_events(update: AlgoUpdate) -> list[OrderEvent]:
    """Translate an algo (conditional) order change into events under its client algo id."""
    cid, ts = update.client_algo_id, update.ts_event_ms
    if update.status == "NEW":
        return [OrderAccepted(update.symbol, cid, f"algo:{update.algo_id}", ts)]
    if update.status == "CANCELED":
        return [OrderCanceled(update.symbol, cid, ts)]
    if update.status == "EXPIRED":
        return [OrderExpired(update.symbol, cid, ts)]
    if update.status == "REJECTED":
        return [OrderRejected(update.symbol, cid, "ALGO_REJECTED", update.reject_message, ts)]
    # TRIGGERING/TRIGGERED/FINISHED: the resulting order reports itself via ORDER_TRADE_UPDATE.
    return []


def account_outputs(snapshot: AccountSnapshot) -> list[FoldOutput]:
    """Return balance and position snapshots, and FundingPaid for a FUNDING_FEE update."""
    out: list[FoldOutput] = [*snapshot.balances, *snapshot.positions]
    if snapshot.reason == "FUNDING_FEE":
        # The event names no symbol when funding hits a cross position (only `B` is pushed),
        # and never the rate: symbol "" means "some position of this asset", rate 0 "unknown".
        symbol = snapshot.positions[0].symbol if len(snapshot.positions) == 1 else ""
        for balance in snapshot.balances:
            if balance.balance_change != 0:
                out.append(FundingPaid(symbol, balance.balance_change, Decimal(0), balance.asset,
                                       snapshot.ts_event_ms))  # fmt: skip
    return out


class UserEventFold:
    """Fold parsed user events into engine outputs, dropping fills already seen (by trade id)."""

    def __init__(self, remember_trades: int = 100_000) -> None:
        self._seen: set[tuple[str, int]] = set()
        self._order: deque[tuple[str, int]] = deque()
        self._remember = remember_trades
        self.duplicate_fills = 0

    def apply(self, event: UserEvent) -> list[FoldOutput]:
        """Return the engine outputs of one event (empty for a duplicate fill or a marker)."""
        if isinstance(event, OrderUpdate):
            out: list[FoldOutput] = []
            for order_event in order_events(event):
                if isinstance(order_event, OrderFilled) and not self._first_time(order_event):
                    continue
                out.append(order_event)
            return out
        if isinstance(event, AlgoUpdate):
            return list(algo_events(event))
        if isinstance(event, AccountSnapshot):
            return account_outputs(event)
        return []

    def _first_time(self, fill: OrderFilled) -> bool:
        key = (fill.symbol, fill.trade_id)
        if key in self._seen:
            self.duplicate_fills += 1
            return False
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > self._remember:
            self._seen.discard(self._order.popleft())
        return True
