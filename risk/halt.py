"""What to send when trading becomes HALTED: cancel entries, and optionally flatten.

Without flattening, protective orders stay on the venue (the positions remain protected) and only
working entry and DCA orders are cancelled. With flattening, every order of a symbol with a
position is cancelled first (spot protective orders lock the balance a market exit needs), then
the position is closed with reduce-only MARKET orders, split when it exceeds the market lot max.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from engine.model import Side
from engine.orders import CancelOrder, Command, OrderRole, OrderType, SubmitOrder
from risk.checks import PositionView
from risk.filters import ExchangeFilters
from risk.ids import client_order_id
from risk.quantize import OrderDraft, QuantizedOrder, quantize_order

ENTRY_ROLES = frozenset({OrderRole.ENTRY, OrderRole.DCA})
EXIT_ROLES = frozenset({OrderRole.EXIT, OrderRole.FLATTEN})


@dataclass(frozen=True, slots=True)
class OpenOrderView:
    """One order working on the venue."""

    symbol: str
    client_order_id: str
    role: OrderRole


@dataclass(frozen=True, slots=True)
class HaltPlan:
    commands: tuple[Command, ...]
    problems: tuple[str, ...]  # positions that could not be (fully) flattened, for the alert
    seq_used: int  # sequence numbers consumed by flatten orders


def max_market_quantity(filters: ExchangeFilters) -> Decimal | None:
    """Return the largest quantity one MARKET order may carry, or None when unlimited."""
    limits = [rule.max_qty for rule in filters.lot_for(OrderType.MARKET) if rule.max_qty]
    return min(limits) if limits else None


def flatten_orders(
    position: PositionView,
    filters: ExchangeFilters,
    reference_price: Decimal,
) -> tuple[list[QuantizedOrder], str | None]:
    """Return reduce-only MARKET orders closing a position, and a problem if dust remains."""
    side = Side.SELL if position.side is Side.BUY else Side.BUY
    remaining = position.quantity
    orders: list[QuantizedOrder] = []
    cap = max_market_quantity(filters)
    while remaining > 0:
        chunk = remaining if cap is None else min(remaining, cap)
        draft = OrderDraft(
            position.symbol, side, OrderType.MARKET, chunk, reduce_only=True, role=OrderRole.FLATTEN
        )
        result = quantize_order(draft, filters, reference_price)
        if not isinstance(result, QuantizedOrder):
            return orders, f"{position.symbol}: {remaining} left open ({result})"
        orders.append(result)
        remaining -= result.order.quantity
    return orders, None


def halt_commands(
    *,
    open_orders: Sequence[OpenOrderView],
    positions: Sequence[PositionView],
    filters: Mapping[str, ExchangeFilters],
    reference_prices: Mapping[str, Decimal],
    flatten: bool,
    prefix: str,
    next_seq: int,
    ts_ms: int,
) -> HaltPlan:
    """Return the cancels (and, if flatten, the market exits) that put the account at rest."""
    held = {p.symbol for p in positions}
    exiting = {o.symbol for o in open_orders if o.role in EXIT_ROLES}
    commands: list[Command] = []
    for order in open_orders:
        cancel = order.role in ENTRY_ROLES or (
            flatten and order.symbol in held and order.role not in EXIT_ROLES
        )
        if cancel:
            commands.append(
                CancelOrder(order.symbol, order.client_order_id, ts_ms, reason="halted")
            )
    problems: list[str] = []
    seq = next_seq
    if flatten:
        for position in positions:
            if position.symbol in exiting:
                continue  # an exit is already working; a second would oversell
            ref = reference_prices.get(position.symbol, position.entry_price)
            orders, problem = flatten_orders(position, filters[position.symbol], ref)
            for exit_order in orders:
                coid = client_order_id(prefix, position.symbol, seq, OrderRole.FLATTEN)
                commands.append(
                    SubmitOrder(exit_order.to_intent(coid), ts_ms, reason="halted: flatten")
                )
                seq += 1
            if problem:
                problems.append(problem)
    return HaltPlan(tuple(commands), tuple(problems), seq - next_seq)
