"""The one quantisation function: snap an order to the symbol's grids, then validate every filter.

Rounding rules (all Decimal, no float ever):
- price and stopPrice: BUY rounds down, SELL rounds up, to the tick grid. For limit orders that is
  the passive side. For stops the same rule moves the trigger toward the market, never away from
  it: a long's SELL stop rounds up and a short's BUY stop rounds down, so the loss at the stop can
  only be smaller than the stop distance the position was sized on. Take-profits rounded this way
  ask for at most one tick more profit.
- quantity rounds down to the step grid (for market-executed types the grid common to LOT_SIZE
  and MARKET_LOT_SIZE), so quantisation never increases exposure.
- nothing else moves: a price outside PRICE_FILTER or a percent-price band, a quantity outside
  min/max, a notional outside its bounds is a `FilterReject` naming the Binance filter. So the
  function rejects exactly when no valid order lies within one tick (passive side) and one step
  (down) of the request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

from engine.model import Market, Side
from engine.orders import OrderIntent, OrderRole, OrderType, TimeInForce
from risk.filters import (
    ZERO,
    ExchangeFilters,
    FilterReject,
    LotRule,
    filter_failure,
    notional_price,
)


@dataclass(frozen=True, slots=True)
class OrderDraft:
    """An order before quantisation: an OrderIntent without its client id and grid guarantees."""

    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None
    callback_rate_pct: Decimal | None = None
    reduce_only: bool = False
    time_in_force: TimeInForce = TimeInForce.GTC
    role: OrderRole = OrderRole.ENTRY
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class QuantizedOrder:
    """A draft whose every number satisfies the symbol's filters; notional in quote units."""

    order: OrderDraft
    notional: Decimal

    def to_intent(self, client_order_id: str) -> OrderIntent:
        """Return the OrderIntent for this order under the given client order id."""
        o = self.order
        return OrderIntent(
            client_order_id=client_order_id,
            symbol=o.symbol,
            side=o.side,
            type=o.type,
            quantity=o.quantity,
            role=o.role,
            price=o.price,
            stop_price=o.stop_price,
            callback_rate_pct=o.callback_rate_pct,
            time_in_force=o.time_in_force,
            reduce_only=o.reduce_only,
            parent_id=o.parent_id,
        )


def format_decimal(value: Decimal) -> str:
    """Return value as a plain decimal string: no exponent, no trailing zeros ("0.001", "100")."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def snap_down(value: Decimal, step: Decimal, anchor: Decimal = ZERO) -> Decimal:
    """Return the largest grid point anchor + k*step that is <= value (step 0: value unchanged)."""
    return _snap(value, step, anchor, ROUND_FLOOR)


def snap_up(value: Decimal, step: Decimal, anchor: Decimal = ZERO) -> Decimal:
    """Return the smallest grid point anchor + k*step that is >= value (step 0: value unchanged)."""
    return _snap(value, step, anchor, ROUND_CEILING)


def _snap(value: Decimal, step: Decimal, anchor: Decimal, rounding: str) -> Decimal:
    if step == 0:
        return value
    with localcontext() as ctx:
        ctx.prec = 60  # exact for any Binance price/qty: 20 integer + 18 fractional digits at most
        steps = ((value - anchor) / step).to_integral_value(rounding=rounding)
        snapped = anchor + steps * step
        # Keep the grid's own number of decimals so the wire string never carries extra precision.
        exponent = min(_exponent(step), _exponent(anchor), 0)
        return snapped.quantize(Decimal(1).scaleb(exponent))


def _exponent(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return exponent


def snap_price(value: Decimal, side: Side, filters: ExchangeFilters) -> Decimal:
    """Round a price or trigger to the tick grid: BUY down, SELL up."""
    tick, anchor = filters.price.tick_size, filters.price_anchor
    return snap_down(value, tick, anchor) if side is Side.BUY else snap_up(value, tick, anchor)


def quantity_grid(filters: ExchangeFilters, order_type: OrderType) -> tuple[Decimal, Decimal]:
    """Return (step, anchor) of the quantity grid an order type must sit on."""
    rules = [r for r in filters.lot_for(order_type) if r.step_size != 0]
    if not rules:
        return ZERO, ZERO
    anchored = filters.grid_anchored_at_min
    steps = {r.step_size for r in rules}
    anchors = {_anchor(r, anchored) for r in rules}
    if len(steps) == 1 and len(anchors) == 1:
        return steps.pop(), anchors.pop()
    # Different grids on LOT_SIZE and MARKET_LOT_SIZE (not seen in real data): use their common
    # multiple from zero; the final validation rejects anything this does not satisfy.
    exponent = min(_exponent(s) for s in steps)
    scale = Decimal(1).scaleb(-exponent)
    common = math.lcm(*(int(s * scale) for s in steps))
    return Decimal(common) / scale, ZERO


def _anchor(rule: LotRule, anchored: bool) -> Decimal:
    return rule.min_qty if anchored else ZERO


def quantize_order(
    draft: OrderDraft,
    filters: ExchangeFilters,
    reference_price: Decimal,
) -> QuantizedOrder | FilterReject:
    """Snap a draft to the symbol's grids and return it, or the filter no nearby order passes.

    reference_price is what Binance compares with: spot the average/reference price
    (PERCENT_PRICE*, notional of MARKET orders), USDⓈ-M the mark price.
    """
    if draft.symbol != filters.symbol:
        raise ValueError(f"filters of {filters.symbol} used for {draft.symbol}")
    price = None if draft.price is None else snap_price(draft.price, draft.side, filters)
    stop = None if draft.stop_price is None else snap_price(draft.stop_price, draft.side, filters)
    step, anchor = quantity_grid(filters, draft.type)
    quantity = snap_down(draft.quantity, step, anchor) if draft.quantity > 0 else draft.quantity
    callback = draft.callback_rate_pct
    if callback is not None:
        # Futures callbackRate moves in 0.1 % steps, spot trailingDelta in whole BIPS (0.01 %);
        # rounding down keeps the trailing stop at least as tight as asked.
        callback_step = Decimal("0.1") if filters.market is Market.USDM else Decimal("0.01")
        callback = snap_down(callback, callback_step)
    failure = filter_failure(
        filters,
        side=draft.side,
        order_type=draft.type,
        quantity=quantity,
        price=price,
        stop_price=stop,
        reference_price=reference_price,
        reduce_only=draft.reduce_only,
        callback_rate_pct=callback,
    )
    if failure is not None:
        return failure
    order = replace(
        draft, quantity=quantity, price=price, stop_price=stop, callback_rate_pct=callback
    )
    notional = quantity * notional_price(draft.type, price, stop, reference_price)
    return QuantizedOrder(order=order, notional=notional)
