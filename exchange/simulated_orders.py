"""Configuration, order state and the pure rules of the simulated venue: filters, fees, triggers,
book walking.

Nothing here knows about accounts or time; `exchange/simulated.py` strings these rules together.
Book prices and quantities arrive as wire floats; they become exact Decimals on the instrument's
grids here (price to its tick, quantity *down* to its step), so every fill is a price and a
quantity Binance could have produced.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from engine.model import Instrument, Market, Side
from engine.orders import OrderIntent, OrderStatus, OrderType, TimeInForce
from exchange.base import OpenOrder

FEE_QUANTUM = Decimal("0.00000001")  # Binance reports commissions with 8 decimals
_BPS = Decimal(10_000)
_FIRST_LEVELS = 50  # levels asked for first when walking a side (most walks stop earlier)
_ZERO = Decimal(0)


class Reject(enum.StrEnum):
    """Reasons the simulated venue rejects or expires an order (OrderRejected/OrderExpired.reason)."""

    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    PRICE_FILTER = "PRICE_FILTER"
    LOT_SIZE = "LOT_SIZE"
    NOTIONAL = "NOTIONAL"  # spot NOTIONAL / MIN_NOTIONAL
    MIN_NOTIONAL = "MIN_NOTIONAL"  # futures -4164
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"  # spot -2010; futures -2019 margin
    WOULD_TRIGGER_IMMEDIATELY = "WOULD_TRIGGER_IMMEDIATELY"  # spot -2010, futures -2021
    REDUCE_ONLY_REJECTED = "REDUCE_ONLY_REJECTED"  # futures -2022
    CALLBACK_RATE = "CALLBACK_RATE"  # futures name; spot calls it TRAILING_DELTA
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"  # GTX: expired (-5022) instead of taking
    FOK_NOT_FILLED = "FOK_NOT_FILLED"  # FOK: expired (-5021)
    IOC_REMAINDER = "IOC_REMAINDER"
    NO_LIQUIDITY = "NO_LIQUIDITY"  # a market order ran out of book
    NO_BOOK = "NO_BOOK"  # a market order activated while no book was known
    OCO_INVALID = "OCO_INVALID"  # not a valid order list (legs, types, quantities; not on futures)
    OCO_PRICES = "OCO_PRICES"  # spot -2010 "The relationship of the prices ... is not correct."
    OCO_OTHER_LEG = "OCO_OTHER_LEG"  # expired: the other leg of its OCO triggered or filled


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Maker and taker commission in basis points of notional, charged in the quote asset."""

    maker_bps: Decimal
    taker_bps: Decimal

    def fee(self, price: Decimal, qty: Decimal, maker: bool) -> Decimal:
        """Return the commission of one fill, rounded half-up to 8 decimals."""
        bps = self.maker_bps if maker else self.taker_bps
        return (price * qty * bps / _BPS).quantize(FEE_QUANTUM, rounding=ROUND_HALF_UP)

    @property
    def max_rate(self) -> Decimal:
        return max(self.maker_bps, self.taker_bps) / _BPS


DEFAULT_FEES: Mapping[Market, FeeSchedule] = {
    Market.SPOT: FeeSchedule(Decimal(10), Decimal(10)),  # 0.10 % / 0.10 %, regular tier
    Market.USDM: FeeSchedule(Decimal(2), Decimal(5)),  # 0.02 % / 0.05 %
}


class QueueModel(enum.StrEnum):
    """When a resting limit fills from trades printed exactly at its price."""

    THROUGH = "through"  # never: only trades strictly through the price fill it (conservative)
    QUEUE = "queue"  # once such trades used up the visible quantity ahead of it


class TriggerSource(enum.StrEnum):
    LAST = "last"  # Binance CONTRACT_PRICE / spot: last trade price
    MARK = "mark"  # futures workingType=MARK_PRICE


@dataclass(frozen=True, slots=True)
class SimulatedVenueConfig:
    market: Market = Market.SPOT
    latency_ms: int = 0  # one-way: a command sent at t is processed at t + latency_ms
    fees: FeeSchedule | None = None  # None: Binance's regular tier for the market
    leverage: int = 1  # futures
    margin_asset: str = "USDT"  # futures
    queue_model: QueueModel = QueueModel.QUEUE
    stop_trigger: TriggerSource = TriggerSource.LAST
    fill_without_book: bool = False  # True: market orders with no book fill at the last trade

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0: {self.latency_ms}")


class BookView(Protocol):
    """What the venue reads from an order book (exchange.book.OrderBook satisfies it)."""

    def best_bid(self) -> float: ...

    def best_ask(self) -> float: ...

    def levels(self, side: str, n: int | None = None) -> list[tuple[float, float]]: ...


_STOP_TYPES = frozenset({OrderType.STOP_MARKET, OrderType.STOP_LIMIT})
_TAKE_PROFIT_TYPES = frozenset({OrderType.TAKE_PROFIT_MARKET, OrderType.TAKE_PROFIT_LIMIT})
CONDITIONAL_TYPES = _STOP_TYPES | _TAKE_PROFIT_TYPES | {OrderType.TRAILING_STOP_MARKET}
LIMIT_AFTER_TRIGGER = frozenset({OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT_LIMIT})


@dataclass(slots=True, eq=False)  # identity: two orders are never "equal"
class SimOrder:
    """One accepted order and its mutable matching state inside the simulated venue."""

    intent: OrderIntent
    instrument: Instrument
    venue_order_id: str
    seq: int  # activation order: time priority among our own orders
    triggered: bool  # False while a conditional order waits for its trigger
    filled: Decimal = _ZERO
    working_price: Decimal | None = None  # limit price while resting; None executes as market
    queue_ahead: Decimal = _ZERO  # visible quantity ahead of us at working_price
    trail_active: bool = False
    trail_extreme: Decimal | None = None  # best price seen since a trailing stop activated
    reserved: Decimal = _ZERO  # what the account holds back for this order (asset by account)
    list_id: str = ""  # the order list (OCO) it belongs to
    oco_sibling: SimOrder | None = None  # the other leg while both are open

    @property
    def symbol(self) -> str:
        return self.intent.symbol

    @property
    def side(self) -> Side:
        return self.intent.side

    @property
    def remaining(self) -> Decimal:
        return self.intent.quantity - self.filled

    @property
    def post_only(self) -> bool:
        return self.intent.time_in_force is TimeInForce.GTX


OrderValidator = Callable[[OrderIntent, Decimal | None], tuple[str, str] | None]
"""Exchange-filter check (intent, reference price) -> (reason, message) of a reject, or None.

The composition root may pass one built on risk.filters (every Binance filter, from exchangeInfo);
exchange/ does not import risk/ itself."""


@dataclass(slots=True)
class SymbolState:
    """What the venue knows of one symbol: book, prices, funding, open orders."""

    instrument: Instrument
    book: BookView | None = None
    last_price: Decimal | None = None
    mark_price: Decimal | None = None
    funding_rate: Decimal | None = None
    next_funding_ms: int | None = None
    last_funding_ms: int = -1
    orders: dict[str, SimOrder] = field(default_factory=dict)  # open, by client order id
    resting: list[SimOrder] = field(default_factory=list)  # working limits, by price-time priority
    waiting: list[SimOrder] = field(default_factory=list)  # untriggered, in activation order
    consumed: dict[str, Consumed] = field(default_factory=lambda: {"bid": {}, "ask": {}})


@dataclass(frozen=True, slots=True)
class Command:
    """A submit (intent set), an order list (legs set) or a cancel, due at effective_ms."""

    effective_ms: int
    intent: OrderIntent | None  # None: a cancel
    symbol: str
    client_order_id: str
    legs: tuple[OrderIntent, ...] = ()  # an OCO order list: its legs (intent is the first)
    list_id: str = ""


# -- conversions --------------------------------------------------------------------------------


def wire_price(instrument: Instrument, price: float) -> Decimal:
    """Return a wire price as an exact Decimal on the instrument's tick grid."""
    return instrument.ticks_to_price(instrument.price_to_ticks(price))


def wire_qty(instrument: Instrument, qty: float) -> Decimal:
    """Return a wire quantity as a Decimal rounded down to the instrument's step."""
    return floor_to_step(Decimal(repr(qty)), instrument.step_size)


def floor_to_step(qty: Decimal, step: Decimal) -> Decimal:
    return (qty // step) * step if step > 0 else qty


# -- filters (what Binance checks before the matching engine) -------------------------------------


def check_filters(
    intent: OrderIntent, instrument: Instrument, reference_price: Decimal | None
) -> tuple[Reject, str] | None:
    """Return (reason, message) when Binance would reject the order by its filters, else None.

    reference_price values a MARKET order for the notional filter (last trade, else mid); with
    no reference the notional of a market order is not checked.
    """
    tick, step = instrument.tick_size, instrument.step_size
    for name, value in (("price", intent.price), ("stop_price", intent.stop_price)):
        if value is None:
            continue
        if value <= 0 or (tick > 0 and value % tick != 0):
            return (
                Reject.PRICE_FILTER,
                f"Filter failure: PRICE_FILTER ({name} {value}, tick {tick})",
            )
    qty = intent.quantity
    if step > 0 and qty % step != 0:
        return Reject.LOT_SIZE, f"Filter failure: LOT_SIZE (quantity {qty}, step {step})"
    if qty < instrument.min_qty or (instrument.max_qty > 0 and qty > instrument.max_qty):
        return Reject.LOT_SIZE, (
            f"Filter failure: LOT_SIZE (quantity {qty} outside {instrument.min_qty}..{instrument.max_qty})"
        )
    if intent.type is OrderType.TRAILING_STOP_MARKET:
        rate = intent.callback_rate_pct
        if rate is None or not Decimal("0.1") <= rate <= Decimal(20):
            return Reject.CALLBACK_RATE, f"callback rate {rate} outside 0.1..20 %"
    futures = instrument.market is Market.USDM
    if instrument.min_notional > 0 and not (futures and intent.reduce_only):
        price = intent.price if intent.price is not None else intent.stop_price
        price = price if price is not None else reference_price
        if price is not None and price * qty < instrument.min_notional:
            reason = Reject.MIN_NOTIONAL if futures else Reject.NOTIONAL
            return (
                reason,
                f"Filter failure: {reason.value} ({price * qty} < {instrument.min_notional})",
            )
    return None


# -- triggers -----------------------------------------------------------------------------------


def stop_triggered(intent: OrderIntent, price: Decimal) -> bool:
    """Return True when a STOP_* / TAKE_PROFIT_* order triggers at price (Binance's side rules)."""
    stop = intent.stop_price
    assert stop is not None
    buy = intent.side is Side.BUY
    if intent.type in _STOP_TYPES:
        return price >= stop if buy else price <= stop
    return price <= stop if buy else price >= stop


def trailing_triggered(order: SimOrder, price: Decimal) -> bool:
    """Fold one price into a trailing stop; return True when it triggers.

    SELL: activates when price >= activation (stop_price; at once without one), then triggers when
    price <= highest * (1 - rate). BUY mirrors with the lowest price.
    """
    intent = order.intent
    sell = intent.side is Side.SELL
    if not order.trail_active:
        activation = intent.stop_price
        if activation is not None and (price < activation if sell else price > activation):
            return False
        order.trail_active = True
        order.trail_extreme = price
    extreme = order.trail_extreme
    assert extreme is not None and intent.callback_rate_pct is not None
    rate = intent.callback_rate_pct / 100
    if sell:
        order.trail_extreme = extreme = max(extreme, price)
        return price <= extreme * (1 - rate)
    order.trail_extreme = extreme = min(extreme, price)
    return price >= extreme * (1 + rate)


# -- walking the book ---------------------------------------------------------------------------


def crosses(side: Side, limit: Decimal | None, price: Decimal) -> bool:
    """Return True when a taker on side may trade at price under its limit (None: any price)."""
    if limit is None:
        return True
    return price <= limit if side is Side.BUY else price >= limit


Consumed = dict[float, tuple[float, Decimal]]
"""Liquidity our own orders took from a book level: level key -> (level qty seen then, qty taken).

The real book never sees our orders, so a level we traded against stays in it. What we took is
remembered until the level's visible quantity changes (the market re-stated it)."""


def walk_levels(
    instrument: Instrument,
    levels: Iterable[tuple[float, float]],
    side: Side,
    qty: Decimal,
    limit: Decimal | None,
    consumed: Consumed,
) -> list[tuple[float, float, Decimal, Decimal]]:
    """Return the fills (level key, level qty, price, qty) of a taker of qty walking best-first levels.

    Stops at the limit price; what our earlier orders already took from an unchanged level is
    not available again.
    """
    fills: list[tuple[float, float, Decimal, Decimal]] = []
    left = qty
    for key, level_qty in levels:
        if left <= 0:
            break
        price = wire_price(instrument, key)
        if not crosses(side, limit, price):
            break
        seen = consumed.get(key)
        taken = seen[1] if seen is not None and seen[0] == level_qty else _ZERO
        take = min(left, wire_qty(instrument, level_qty) - taken)
        if take > 0:
            fills.append((key, level_qty, price, take))
            left -= take
    return fills


def take_liquidity(consumed: Consumed, key: float, level_qty: float, qty: Decimal) -> None:
    """Remember that qty was taken from the level key whose visible quantity is level_qty."""
    seen = consumed.get(key)
    taken = seen[1] if seen is not None and seen[0] == level_qty else _ZERO
    consumed[key] = (level_qty, taken + qty)


def vwap(fills: Iterable[tuple[float, float, Decimal, Decimal]]) -> tuple[Decimal, Decimal]:
    """Return (total qty, total notional) of walk fills."""
    qty = notional = _ZERO
    for _, _, price, take in fills:
        qty += take
        notional += price * take
    return qty, notional


def walk_order(
    state: SymbolState, order: SimOrder, qty: Decimal, fill_without_book: bool
) -> list[tuple[float, float, Decimal, Decimal]]:
    """Return the taker fills of qty of order against the state's book (nothing is changed).

    Without a book a market-type order fills at the last trade when fill_without_book is set.
    """
    if state.book is None:
        if order.working_price is None and fill_without_book and state.last_price and qty > 0:
            return [(math.nan, math.nan, state.last_price, qty)]
        return []
    key = taker_side_key(order.side)
    levels = iter_levels(state.book, key)
    return walk_levels(
        state.instrument, levels, order.side, qty, order.working_price, state.consumed[key]
    )


def visible_at(state: SymbolState, side: Side, price: Decimal) -> Decimal:
    """Return the book's visible quantity at price on side (the queue ahead of a new order)."""
    if state.book is None:
        return _ZERO
    own = "bid" if side is Side.BUY else "ask"
    for key, qty in iter_levels(state.book, own):
        level = wire_price(state.instrument, key)
        if level == price:
            return wire_qty(state.instrument, qty)
        if level < price if side is Side.BUY else level > price:
            break
    return _ZERO


def best_prices(state: SymbolState) -> tuple[Decimal | None, Decimal | None]:
    """Return the book's best bid and ask on the tick grid (None for an empty side or no book)."""
    if state.book is None:
        return None, None
    bid, ask = state.book.best_bid(), state.book.best_ask()
    inst = state.instrument
    return (
        None if math.isnan(bid) else wire_price(inst, bid),
        None if math.isnan(ask) else wire_price(inst, ask),
    )


def reference_price(state: SymbolState, config: SimulatedVenueConfig) -> Decimal | None:
    """Return what filters value an order against: futures mark, else last trade, else mid."""
    if config.market is Market.USDM and state.mark_price is not None:
        return state.mark_price
    if state.last_price is not None:
        return state.last_price
    if state.book is not None:
        bid, ask = state.book.best_bid(), state.book.best_ask()
        if not (math.isnan(bid) or math.isnan(ask)):
            return wire_price(state.instrument, (bid + ask) / 2)
    return None


def trigger_price(state: SymbolState, config: SimulatedVenueConfig) -> Decimal | None:
    """Return the price conditional orders trigger on (mark for futures when configured)."""
    if config.stop_trigger is TriggerSource.MARK and config.market is Market.USDM:
        return state.mark_price
    return state.last_price


def open_order_snapshots(states: Iterable[SymbolState]) -> list[OpenOrder]:
    """Return the open orders of states as OpenOrder snapshots, in activation order."""
    orders = sorted((o for s in states for o in s.orders.values()), key=lambda o: o.seq)
    return [
        OpenOrder(
            o.symbol,
            o.intent.client_order_id,
            o.venue_order_id,
            o.side,
            o.intent.quantity,
            o.filled,
            OrderStatus.PARTIALLY_FILLED if o.filled > 0 else OrderStatus.NEW,
            o.intent,
        )
        for o in orders
    ]


def iter_levels(book: BookView, side: str) -> Iterator[tuple[float, float]]:
    """Yield a side's levels best first, asking the book for all of them only if needed."""
    first = book.levels(side, _FIRST_LEVELS)
    yield from first
    if len(first) == _FIRST_LEVELS:
        yield from book.levels(side)[_FIRST_LEVELS:]


def taker_side_key(side: Side) -> str:
    return "ask" if side is Side.BUY else "bid"


def priority(order: SimOrder) -> tuple[int, Decimal, int]:
    """Sort key of resting orders: per side, best price first, then time."""
    price = order.working_price or _ZERO
    return (0, -price, order.seq) if order.side is Side.BUY else (1, price, order.seq)
