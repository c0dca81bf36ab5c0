"""Binance symbol filters: parsed once from exchangeInfo, checked exactly with Decimal.

Spot and USDⓈ-M spell the same rules differently (futures MIN_NOTIONAL uses the key `notional`,
futures PERCENT_PRICE is one-sided per order side against the mark price, futures grids are
anchored at minPrice/minQty). `ExchangeFilters` hides the spelling; `filter_failure` is the one
validator of an order against every order-level filter, and `account_filter_failure` checks the
filters that depend on the account (open order counts, spot MAX_POSITION).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.model import Market, Side
from engine.orders import OrderType

ZERO = Decimal(0)

# Order types that execute at market once live or triggered: MARKET_LOT_SIZE applies to them too.
MARKET_EXECUTED = frozenset(
    {
        OrderType.MARKET,
        OrderType.STOP_MARKET,
        OrderType.TAKE_PROFIT_MARKET,
        OrderType.TRAILING_STOP_MARKET,
    }
)
# Conditional ("algo") types: counted by MAX_NUM_ALGO_ORDERS.
CONDITIONAL = frozenset(
    {
        OrderType.STOP_MARKET,
        OrderType.STOP_LIMIT,
        OrderType.TAKE_PROFIT_MARKET,
        OrderType.TAKE_PROFIT_LIMIT,
        OrderType.TRAILING_STOP_MARKET,
    }
)
# USDⓈ-M callbackRate bounds in percent (API docs; the 2026-10-23 raise to 20 keeps 10 valid).
FUTURES_CALLBACK_MIN_PCT = Decimal("0.1")
FUTURES_CALLBACK_MAX_PCT = Decimal(10)


@dataclass(frozen=True, slots=True)
class FilterReject:
    """An order no exchange filter would accept; `filter` names the Binance filter."""

    filter: str
    message: str

    def __str__(self) -> str:
        return f"Filter failure: {self.filter} ({self.message})"


@dataclass(frozen=True, slots=True)
class PriceRule:
    min_price: Decimal = ZERO  # 0 disables
    max_price: Decimal = ZERO  # 0 disables
    tick_size: Decimal = ZERO  # 0 disables


@dataclass(frozen=True, slots=True)
class LotRule:
    min_qty: Decimal = ZERO
    max_qty: Decimal = ZERO  # 0 disables
    step_size: Decimal = ZERO  # 0 disables (spot MARKET_LOT_SIZE often has stepSize 0)


@dataclass(frozen=True, slots=True)
class NotionalRule:
    """Spot MIN_NOTIONAL / NOTIONAL and futures MIN_NOTIONAL in one shape."""

    min_notional: Decimal = ZERO
    max_notional: Decimal = ZERO  # 0 disables (only spot NOTIONAL has a max)
    apply_min_to_market: bool = True
    apply_max_to_market: bool = True
    waived_for_reduce_only: bool = False  # futures: -4164 "unless you choose reduce only"
    filter_name: str = "MIN_NOTIONAL"


@dataclass(frozen=True, slots=True)
class PercentPriceRule:
    """Allowed price band around the reference (spot avg/reference price, futures mark price)."""

    bid_up: Decimal  # BUY: price <= ref * bid_up
    bid_down: Decimal | None  # BUY: price >= ref * bid_down (None: futures has no floor)
    ask_up: Decimal | None  # SELL: price <= ref * ask_up (None: futures has no ceiling)
    ask_down: Decimal  # SELL: price >= ref * ask_down
    filter_name: str = "PERCENT_PRICE"


@dataclass(frozen=True, slots=True)
class TrailingDeltaRule:
    """Spot trailingDelta bounds in BIPS; 'above' for BUY stops / SELL take-profits."""

    min_above: int
    max_above: int
    min_below: int
    max_below: int


@dataclass(frozen=True, slots=True)
class ExchangeFilters:
    """Every filter Binance publishes for one symbol, spot or USDⓈ-M."""

    symbol: str
    market: Market
    status: str = "TRADING"
    price: PriceRule = PriceRule()
    lot: LotRule = LotRule()
    market_lot: LotRule | None = None
    notionals: tuple[NotionalRule, ...] = ()
    percent_prices: tuple[PercentPriceRule, ...] = ()
    trailing_delta: TrailingDeltaRule | None = None
    max_num_orders: int | None = None
    max_num_algo_orders: int | None = None
    max_num_iceberg_orders: int | None = None
    iceberg_parts: int | None = None
    max_position: Decimal | None = None
    max_num_order_amends: int | None = None
    max_num_order_lists: int | None = None
    order_types: tuple[str, ...] = ()
    unknown_filters: tuple[str, ...] = ()  # kept, not fatal: Binance adds filters over time

    @property
    def grid_anchored_at_min(self) -> bool:
        """USDⓈ-M grids count from minPrice/minQty; spot grids count from zero."""
        return self.market is Market.USDM

    @property
    def price_anchor(self) -> Decimal:
        return self.price.min_price if self.grid_anchored_at_min else ZERO

    def lot_for(self, order_type: OrderType) -> tuple[LotRule, ...]:
        """Return the quantity rules an order type must satisfy (all of them)."""
        if order_type in MARKET_EXECUTED and self.market_lot is not None:
            return (self.lot, self.market_lot)
        return (self.lot,)


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def parse_exchange_filters(entry: Mapping[str, Any], market: Market) -> ExchangeFilters:
    """Build ExchangeFilters from one `symbols[]` entry of spot or USDⓈ-M exchangeInfo."""
    by_type = {f["filterType"]: f for f in entry.get("filters", [])}
    known: dict[str, Any] = {}
    notionals: list[NotionalRule] = []
    bands: list[PercentPriceRule] = []
    futures = market is Market.USDM
    for name, f in by_type.items():
        if name == "PRICE_FILTER":
            known["price"] = PriceRule(
                _dec(f["minPrice"]), _dec(f["maxPrice"]), _dec(f["tickSize"])
            )
        elif name in ("LOT_SIZE", "MARKET_LOT_SIZE"):
            rule = LotRule(_dec(f["minQty"]), _dec(f["maxQty"]), _dec(f["stepSize"]))
            known["lot" if name == "LOT_SIZE" else "market_lot"] = rule
        elif name == "MIN_NOTIONAL" and "notional" in f:  # USDⓈ-M spelling
            notionals.append(NotionalRule(_dec(f["notional"]), waived_for_reduce_only=True))
        elif name == "MIN_NOTIONAL":  # spot, pre-2022
            apply = bool(f.get("applyToMarket", True))
            notionals.append(NotionalRule(_dec(f["minNotional"]), apply_min_to_market=apply))
        elif name == "NOTIONAL":  # spot, 2022+
            notionals.append(
                NotionalRule(
                    _dec(f.get("minNotional", 0)),
                    _dec(f.get("maxNotional", 0)),
                    apply_min_to_market=bool(f.get("applyMinToMarket", True)),
                    apply_max_to_market=bool(f.get("applyMaxToMarket", True)),
                    filter_name="NOTIONAL",
                )
            )
        elif name == "PERCENT_PRICE" and futures:  # one-sided per side, vs mark price
            up, down = _dec(f["multiplierUp"]), _dec(f["multiplierDown"])
            bands.append(PercentPriceRule(bid_up=up, bid_down=None, ask_up=None, ask_down=down))
        elif name == "PERCENT_PRICE":
            up, down = _dec(f["multiplierUp"]), _dec(f["multiplierDown"])
            bands.append(PercentPriceRule(bid_up=up, bid_down=down, ask_up=up, ask_down=down))
        elif name == "PERCENT_PRICE_BY_SIDE":
            bands.append(
                PercentPriceRule(
                    bid_up=_dec(f["bidMultiplierUp"]),
                    bid_down=_dec(f["bidMultiplierDown"]),
                    ask_up=_dec(f["askMultiplierUp"]),
                    ask_down=_dec(f["askMultiplierDown"]),
                    filter_name="PERCENT_PRICE_BY_SIDE",
                )
            )
        elif name == "TRAILING_DELTA":
            known["trailing_delta"] = TrailingDeltaRule(
                int(f["minTrailingAboveDelta"]),
                int(f["maxTrailingAboveDelta"]),
                int(f["minTrailingBelowDelta"]),
                int(f["maxTrailingBelowDelta"]),
            )
        elif name == "MAX_NUM_ORDERS":  # spot maxNumOrders, futures limit
            known["max_num_orders"] = _opt_int(f.get("maxNumOrders", f.get("limit")))
        elif name == "MAX_NUM_ALGO_ORDERS":
            known["max_num_algo_orders"] = _opt_int(f.get("maxNumAlgoOrders", f.get("limit")))
        elif name == "MAX_NUM_ICEBERG_ORDERS":
            known["max_num_iceberg_orders"] = _opt_int(f.get("maxNumIcebergOrders"))
        elif name == "ICEBERG_PARTS":
            known["iceberg_parts"] = _opt_int(f.get("limit"))
        elif name == "MAX_POSITION":
            known["max_position"] = _dec(f["maxPosition"])
        elif name == "MAX_NUM_ORDER_AMENDS":
            known["max_num_order_amends"] = _opt_int(f.get("maxNumOrderAmends"))
        elif name == "MAX_NUM_ORDER_LISTS":
            known["max_num_order_lists"] = _opt_int(f.get("maxNumOrderLists"))
        else:
            known.setdefault("unknown_filters", ())
            known["unknown_filters"] += (name,)
    return ExchangeFilters(
        symbol=entry["symbol"],
        market=market,
        status=str(entry.get("status", "TRADING")),
        notionals=tuple(notionals),
        percent_prices=tuple(bands),
        order_types=tuple(entry.get("orderTypes", ())),
        **known,
    )


def load_exchange_filters(
    exchange_info: Mapping[str, Any], market: Market
) -> dict[str, ExchangeFilters]:
    """Parse every symbol of an exchangeInfo response, keyed by symbol."""
    return {s["symbol"]: parse_exchange_filters(s, market) for s in exchange_info["symbols"]}


# -- the validator ---------------------------------------------------------------------------


def on_grid(value: Decimal, step: Decimal, anchor: Decimal = ZERO) -> bool:
    """Return True when value sits on the grid anchor + k * step (a zero step disables the rule)."""
    return step == 0 or (value - anchor) % step == 0


def _price_failure(label: str, value: Decimal, filters: ExchangeFilters) -> FilterReject | None:
    rule = filters.price
    if value <= 0:
        return FilterReject("PRICE_FILTER", f"{label} {value} must be > 0")
    if rule.min_price and value < rule.min_price:
        return FilterReject("PRICE_FILTER", f"{label} {value} below minPrice {rule.min_price}")
    if rule.max_price and value > rule.max_price:
        return FilterReject("PRICE_FILTER", f"{label} {value} above maxPrice {rule.max_price}")
    if not on_grid(value, rule.tick_size, filters.price_anchor):
        return FilterReject(
            "PRICE_FILTER", f"{label} {value} not a multiple of tickSize {rule.tick_size}"
        )
    return None


def _band_failure(
    price: Decimal, side: Side, ref: Decimal, rule: PercentPriceRule
) -> FilterReject | None:
    up, down = (rule.bid_up, rule.bid_down) if side is Side.BUY else (rule.ask_up, rule.ask_down)
    if up is not None and price > ref * up:
        return FilterReject(rule.filter_name, f"price {price} above {up} x reference {ref}")
    if down is not None and price < ref * down:
        return FilterReject(rule.filter_name, f"price {price} below {down} x reference {ref}")
    return None


def _lot_failure(qty: Decimal, rule: LotRule, name: str, anchor: Decimal) -> FilterReject | None:
    if qty <= 0 or qty < rule.min_qty:
        return FilterReject(name, f"quantity {qty} below minQty {rule.min_qty}")
    if rule.max_qty and qty > rule.max_qty:
        return FilterReject(name, f"quantity {qty} above maxQty {rule.max_qty}")
    if not on_grid(qty, rule.step_size, anchor):
        return FilterReject(name, f"quantity {qty} not a multiple of stepSize {rule.step_size}")
    return None


def notional_price(
    order_type: OrderType,
    price: Decimal | None,
    stop_price: Decimal | None,
    reference_price: Decimal,
) -> Decimal:
    """Return the price a notional check uses: limit price, else trigger price, else reference."""
    if price is not None:
        return price
    if stop_price is not None and order_type is not OrderType.TRAILING_STOP_MARKET:
        return stop_price
    return reference_price


def filter_failure(
    filters: ExchangeFilters,
    *,
    side: Side,
    order_type: OrderType,
    quantity: Decimal,
    price: Decimal | None,
    stop_price: Decimal | None,
    reference_price: Decimal,
    reduce_only: bool = False,
    callback_rate_pct: Decimal | None = None,
) -> FilterReject | None:
    """Return the first filter an order breaks, or None when Binance would accept it."""
    for label, value in (("price", price), ("stopPrice", stop_price)):
        if value is not None and (failure := _price_failure(label, value, filters)):
            return failure
    if price is not None:
        for band in filters.percent_prices:
            if failure := _band_failure(price, side, reference_price, band):
                return failure
    anchored = filters.grid_anchored_at_min
    for lot, name in zip(
        filters.lot_for(order_type), ("LOT_SIZE", "MARKET_LOT_SIZE"), strict=False
    ):
        if failure := _lot_failure(quantity, lot, name, lot.min_qty if anchored else ZERO):
            return failure
    notional = quantity * notional_price(order_type, price, stop_price, reference_price)
    is_market = order_type is OrderType.MARKET
    for rule in filters.notionals:
        if rule.waived_for_reduce_only and reduce_only:
            continue
        if (
            rule.min_notional
            and notional < rule.min_notional
            and (rule.apply_min_to_market or not is_market)
        ):
            return FilterReject(rule.filter_name, f"notional {notional} below {rule.min_notional}")
        if (
            rule.max_notional
            and notional > rule.max_notional
            and (rule.apply_max_to_market or not is_market)
        ):
            return FilterReject(rule.filter_name, f"notional {notional} above {rule.max_notional}")
    if order_type is OrderType.TRAILING_STOP_MARKET:
        return _trailing_failure(filters, side, callback_rate_pct)
    return None


def _trailing_failure(
    filters: ExchangeFilters,
    side: Side,
    callback_rate_pct: Decimal | None,
) -> FilterReject | None:
    if callback_rate_pct is None:
        return FilterReject("TRAILING_DELTA", "trailing stop without a callback rate")
    if filters.market is Market.USDM:
        lo, hi = FUTURES_CALLBACK_MIN_PCT, FUTURES_CALLBACK_MAX_PCT
        if not lo <= callback_rate_pct <= hi or not on_grid(callback_rate_pct, lo):
            return FilterReject(
                "CALLBACK_RATE", f"callbackRate {callback_rate_pct} not in {lo}..{hi} by {lo}"
            )
        return None
    bips = callback_rate_pct * 100
    if bips != bips.to_integral_value() or bips <= 0:
        return FilterReject(
            "TRAILING_DELTA", f"trailingDelta {bips} bips must be a positive integer"
        )
    rule = filters.trailing_delta
    if rule is None:
        return None
    # A long's trailing stop sells below the market ("below" bounds); a short's buys above.
    low, high = (
        (rule.min_below, rule.max_below) if side is Side.SELL else (rule.min_above, rule.max_above)
    )
    if not low <= bips <= high:
        return FilterReject("TRAILING_DELTA", f"trailingDelta {bips} bips not in {low}..{high}")
    return None


def account_filter_failure(
    filters: ExchangeFilters,
    *,
    side: Side,
    order_type: OrderType,
    quantity: Decimal,
    open_orders: int,
    open_algo_orders: int,
    base_position: Decimal = ZERO,
    open_buy_quantity: Decimal = ZERO,
) -> FilterReject | None:
    """Return the account-dependent filter (order counts, MAX_POSITION) one more order breaks."""
    if filters.max_num_orders is not None and open_orders + 1 > filters.max_num_orders:
        return FilterReject(
            "MAX_NUM_ORDERS", f"{open_orders} open orders, limit {filters.max_num_orders}"
        )
    if (
        order_type in CONDITIONAL
        and filters.max_num_algo_orders is not None
        and open_algo_orders + 1 > filters.max_num_algo_orders
    ):
        return FilterReject(
            "MAX_NUM_ALGO_ORDERS",
            f"{open_algo_orders} open conditional orders, limit {filters.max_num_algo_orders}",
        )
    if filters.max_position is not None and side is Side.BUY:
        position = base_position + open_buy_quantity + quantity
        if position > filters.max_position:
            return FilterReject(
                "MAX_POSITION", f"position {position} above maxPosition {filters.max_position}"
            )
    return None
