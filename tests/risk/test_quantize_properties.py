"""Property tests of quantize_order over every real symbol of both shared exchangeInfo files.

The checks are independent of risk/: the validator and the reference rounding below read the raw
exchangeInfo JSON and compute with Fraction, straight from Binance's filter documentation.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.model import Market, Side
from engine.orders import OrderType
from risk.filters import parse_exchange_filters
from risk.quantize import OrderDraft, QuantizedOrder, format_decimal, quantize_order

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "binance-rest"
FILES = {
    Market.SPOT: DATA / "spot_exchangeInfo_20211012.json",
    Market.USDM: DATA / "usdm_exchangeInfo_20210721.json",
}
if not all(p.is_file() for p in FILES.values()):
    pytest.skip(f"shared exchangeInfo files absent under {DATA}", allow_module_level=True)

SYMBOLS: dict[Market, list[dict]] = {
    market: json.loads(path.read_text())["symbols"] for market, path in FILES.items()
}
MARKET_TYPES = {OrderType.MARKET, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET}
TYPES = [
    OrderType.LIMIT,
    OrderType.MARKET,
    OrderType.STOP_MARKET,
    OrderType.TAKE_PROFIT_MARKET,
    OrderType.STOP_LIMIT,
]


def F(text: object) -> Fraction:
    return Fraction(str(text))


def raw_filters(entry: dict) -> dict[str, dict]:
    return {f["filterType"]: f for f in entry["filters"]}


def violations(
    market: Market,
    entry: dict,
    side: Side,
    order_type: OrderType,
    qty: Fraction,
    price: Fraction | None,
    stop: Fraction | None,
    ref: Fraction,
    reduce_only: bool,
) -> set[str]:
    """Return every Binance filter the order breaks, per the docs (spot vs futures spelling)."""
    f = raw_filters(entry)
    futures = market is Market.USDM
    broken: set[str] = set()
    pf = f["PRICE_FILTER"]
    lo, hi, tick = F(pf["minPrice"]), F(pf["maxPrice"]), F(pf["tickSize"])
    for value in (price, stop):
        if value is None:
            continue
        base = value - lo if futures else value  # futures: (price - minPrice) % tickSize == 0
        if value <= 0 or (lo and value < lo) or (hi and value > hi) or (tick and base % tick != 0):
            broken.add("PRICE_FILTER")
    if price is not None and "PERCENT_PRICE" in f:
        pp = f["PERCENT_PRICE"]
        up, down = F(pp["multiplierUp"]), F(pp["multiplierDown"])
        if futures:  # BUY: price <= mark * up; SELL: price >= mark * down
            if (side is Side.BUY and price > ref * up) or (
                side is Side.SELL and price < ref * down
            ):
                broken.add("PERCENT_PRICE")
        elif not ref * down <= price <= ref * up:
            broken.add("PERCENT_PRICE")
    lots = [("LOT_SIZE", f["LOT_SIZE"])]
    if order_type in MARKET_TYPES and "MARKET_LOT_SIZE" in f:
        lots.append(("MARKET_LOT_SIZE", f["MARKET_LOT_SIZE"]))
    for name, lot in lots:
        mn, mx, step = F(lot["minQty"]), F(lot["maxQty"]), F(lot["stepSize"])
        base = qty - mn if futures else qty
        if qty <= 0 or qty < mn or (mx and qty > mx) or (step and base % step != 0):
            broken.add(name)
    mn_filter = f.get("MIN_NOTIONAL")
    if mn_filter is not None:
        at = price if price is not None else stop if stop is not None else ref
        if futures:
            if not reduce_only and qty * at < F(mn_filter["notional"]):
                broken.add("MIN_NOTIONAL")
        elif (order_type is not OrderType.MARKET or mn_filter["applyToMarket"]) and qty * at < F(
            mn_filter["minNotional"]
        ):
            broken.add("MIN_NOTIONAL")
    return broken


def reference_snap(
    market: Market,
    entry: dict,
    side: Side,
    order_type: OrderType,
    qty: Fraction,
    price: Fraction | None,
    stop: Fraction | None,
) -> tuple[Fraction, Fraction | None, Fraction | None]:
    """The unique order within one tick (passive side) and one step (down) of the request."""
    f = raw_filters(entry)
    futures = market is Market.USDM
    tick = F(f["PRICE_FILTER"]["tickSize"])
    anchor = F(f["PRICE_FILTER"]["minPrice"]) if futures else Fraction(0)

    def snap_price(value: Fraction | None) -> Fraction | None:
        if value is None or tick == 0:
            return value
        k = (value - anchor) / tick
        return anchor + (math.floor(k) if side is Side.BUY else math.ceil(k)) * tick

    lot = f["LOT_SIZE"]
    step = F(lot["stepSize"])
    q_anchor = F(lot["minQty"]) if futures else Fraction(0)
    q = qty if step == 0 else q_anchor + math.floor((qty - q_anchor) / step) * step
    return q, snap_price(price), snap_price(stop)


@st.composite
def requests(draw: st.DrawFn):
    market = draw(st.sampled_from(list(SYMBOLS)))  # both files equally, whatever their sizes
    entry = draw(st.sampled_from(SYMBOLS[market]))
    f = raw_filters(entry)
    tick = F(f["PRICE_FILTER"]["tickSize"])
    lo, hi = F(f["PRICE_FILTER"]["minPrice"]), F(f["PRICE_FILTER"]["maxPrice"])
    ref = tick * draw(st.integers(1, 10**7))
    ref = min(max(ref, lo), hi)
    side = draw(st.sampled_from([Side.BUY, Side.SELL]))
    order_type = draw(st.sampled_from(TYPES))
    # Prices mostly near the reference, with digits finer than the tick; sometimes far away.
    factor = draw(st.one_of(st.floats(0.9, 1.1), st.floats(0.01, 10)))
    jitter = Fraction(draw(st.integers(0, 10**6)), 10**6) * tick
    raw_price = F(Decimal(repr(factor))) * ref + jitter
    price = raw_price if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
    stop = (
        raw_price
        if order_type is not OrderType.LIMIT and order_type is not OrderType.MARKET
        else None
    )
    at = price or stop or ref
    min_notional = F(
        f.get("MIN_NOTIONAL", {}).get("minNotional")
        or f.get("MIN_NOTIONAL", {}).get("notional")
        or 1
    )
    notional = min_notional * F(Decimal(repr(draw(st.floats(0.1, 100)))))
    qty_digits = draw(st.integers(0, 12))
    qty = Fraction(
        math.floor(notional / at * 10**qty_digits) + draw(st.integers(0, 3)), 10**qty_digits
    )
    reduce_only = draw(st.booleans())
    return market, entry, side, order_type, qty, price, stop, ref, reduce_only


def to_decimal(value: Fraction | None) -> Decimal | None:
    if value is None:
        return None
    return Decimal(value.numerator) / Decimal(value.denominator)  # exact: denominators are 2^a 5^b


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_quantize_is_valid_passive_idempotent_and_rejects_exactly_when_nothing_nearby(case):
    market, entry, side, order_type, qty, price, stop, ref, reduce_only = case
    filters = parse_exchange_filters(entry, market)
    draft = OrderDraft(
        entry["symbol"],
        side,
        order_type,
        to_decimal(qty),
        price=to_decimal(price),
        stop_price=to_decimal(stop),
        reduce_only=reduce_only,
    )
    result = quantize_order(draft, filters, to_decimal(ref))
    want_q, want_p, want_s = reference_snap(market, entry, side, order_type, qty, price, stop)
    broken = violations(market, entry, side, order_type, want_q, want_p, want_s, ref, reduce_only)
    event(
        f"{market.value} {result.filter if not isinstance(result, QuantizedOrder) else 'accepted'}"
    )
    if not isinstance(result, QuantizedOrder):
        assert broken, f"rejected {result} although {want_q} @ {want_p}/{want_s} is valid"
        assert result.filter in broken
        return
    assert not broken, f"accepted although the nearby order breaks {broken}"
    out = result.order
    got_q = F(out.quantity)
    got_p = None if out.price is None else F(out.price)
    got_s = None if out.stop_price is None else F(out.stop_price)
    assert (got_q, got_p, got_s) == (want_q, want_p, want_s)
    assert not violations(market, entry, side, order_type, got_q, got_p, got_s, ref, reduce_only)
    assert got_q <= qty  # never increases quantity
    tick = F(raw_filters(entry)["PRICE_FILTER"]["tickSize"])
    for before, after in ((price, got_p), (stop, got_s)):
        if before is not None:
            assert after is not None and abs(after - before) < tick or tick == 0
            assert (after <= before) if side is Side.BUY else (after >= before)  # passive side
    again = quantize_order(out, filters, to_decimal(ref))
    assert isinstance(again, QuantizedOrder) and again.order == out  # idempotent
    for value in (out.quantity, out.price, out.stop_price):
        if value is not None:
            text = format_decimal(value)
            assert "E" not in text and "e" not in text and Fraction(text) == F(value)
