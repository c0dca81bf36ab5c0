"""Order value types, trading commands (imperative) and order events (past tense).

Shared by strategies, risk, the simulated venue, the Binance venue, the portfolio and the journal.
Every price and quantity that can reach an exchange is a Decimal, already quantised by the
instrument's filters (risk/filters) before it becomes an OrderIntent. Times are exchange-time ms.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from engine.model import Side


class OrderType(enum.StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_MARKET = "STOP_MARKET"  # spot: STOP_LOSS; futures algo: STOP_MARKET
    STOP_LIMIT = "STOP_LIMIT"  # spot: STOP_LOSS_LIMIT
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"  # spot: TAKE_PROFIT
    TAKE_PROFIT_LIMIT = "TAKE_PROFIT_LIMIT"
    TRAILING_STOP_MARKET = "TRAILING_STOP_MARKET"


class TimeInForce(enum.StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    GTX = "GTX"  # post-only


class OrderStatus(enum.StrEnum):
    PENDING = "PENDING"  # intent journaled, not yet acknowledged by the venue
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    UNKNOWN = "UNKNOWN"  # outcome unknown: reconcile, never blindly resend

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.PENDING, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNKNOWN)


class OrderRole(enum.StrEnum):
    """Why an order exists; protective roles must always rest on the venue while a position is open."""

    ENTRY = "entry"
    EXIT = "exit"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING_STOP = "trailing_stop"
    DCA = "dca"
    FLATTEN = "flatten"


class Liquidity(enum.StrEnum):
    MAKER = "maker"
    TAKER = "taker"


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order the engine wants on the venue; client_order_id is deterministic and <= 36 chars."""

    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    role: OrderRole = OrderRole.ENTRY
    price: Decimal | None = None  # LIMIT / *_LIMIT
    stop_price: Decimal | None = None  # trigger of STOP_* / TAKE_PROFIT_*; activation of trailing
    callback_rate_pct: Decimal | None = None  # TRAILING_STOP_MARKET
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    parent_id: str | None = None  # the entry a protective order belongs to

    def __post_init__(self) -> None:
        if not 1 <= len(self.client_order_id) <= 36:
            raise ValueError(f"client_order_id must be 1..36 chars: {self.client_order_id!r}")
        if self.quantity <= 0:
            raise ValueError(f"quantity must be > 0: {self.quantity}")
        needs_price = self.type in (OrderType.LIMIT, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT_LIMIT)
        if needs_price and self.price is None:
            raise ValueError(f"{self.type} needs a price")
        needs_stop = self.type not in (OrderType.MARKET, OrderType.LIMIT, OrderType.TRAILING_STOP_MARKET)
        if needs_stop and self.stop_price is None:
            raise ValueError(f"{self.type} needs a stop_price")


# -- commands (what strategies and risk ask for) -------------------------------------------------

@dataclass(frozen=True, slots=True)
class SubmitOrder:
    intent: OrderIntent
    ts_ms: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CancelOrder:
    symbol: str
    client_order_id: str
    ts_ms: int
    reason: str = ""


class ContingencyType(enum.StrEnum):
    OCO = "OCO"  # one-cancels-other (spot POST /api/v3/orderList/oco)


@dataclass(frozen=True, slots=True)
class SubmitOrderList:
    """Place orders as one venue order list: OCO = one-cancels-other, the quantity locked once.

    Spot only (Binance POST /api/v3/orderList/oco): two legs on the same symbol, side and
    quantity, one resting above the last price and one below it (SELL: take-profit or limit
    above, stop below; BUY mirrors). When one leg triggers or fills the venue expires the other;
    cancelling either leg cancels both. Each leg keeps its own client order id and reports its
    own order events; `list_client_order_id` names the list (<= 36 chars).
    """

    list_client_order_id: str
    orders: tuple[OrderIntent, ...]
    ts_ms: int
    reason: str = ""
    contingency: ContingencyType = ContingencyType.OCO

    def __post_init__(self) -> None:
        if not 1 <= len(self.list_client_order_id) <= 36:
            raise ValueError(
                f"list_client_order_id must be 1..36 chars: {self.list_client_order_id!r}"
            )
        if len(self.orders) != 2:
            raise ValueError(f"an OCO list has exactly two orders, not {len(self.orders)}")
        first, second = self.orders
        if (first.symbol, first.side, first.quantity) != (
            second.symbol,
            second.side,
            second.quantity,
        ):
            raise ValueError("OCO legs must share symbol, side and quantity")
        if first.client_order_id == second.client_order_id:
            raise ValueError(f"OCO legs need distinct client order ids: {first.client_order_id}")

    @property
    def symbol(self) -> str:
        return self.orders[0].symbol


Command = SubmitOrder | CancelOrder | SubmitOrderList


# -- events (what happened on the venue) ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OrderAccepted:
    symbol: str
    client_order_id: str
    venue_order_id: str
    ts_event_ms: int


@dataclass(frozen=True, slots=True)
class OrderRejected:
    symbol: str
    client_order_id: str
    reason: str  # a RejectReason value from risk/exchange (e.g. "PRICE_FILTER", "INSUFFICIENT_BALANCE")
    message: str
    ts_event_ms: int


@dataclass(frozen=True, slots=True)
class OrderFilled:
    """One fill (trade) of an order; trade_id is unique per symbol and deduplicates fills."""

    symbol: str
    client_order_id: str
    trade_id: int
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    liquidity: Liquidity
    ts_event_ms: int
    order_complete: bool  # True when this fill completes the order


@dataclass(frozen=True, slots=True)
class OrderCanceled:
    symbol: str
    client_order_id: str
    ts_event_ms: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OrderExpired:
    symbol: str
    client_order_id: str
    ts_event_ms: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FundingPaid:
    """A futures funding settlement: amount > 0 received, < 0 paid (in the margin asset)."""

    symbol: str
    amount: Decimal
    rate: Decimal
    asset: str
    ts_event_ms: int


OrderEvent = OrderAccepted | OrderRejected | OrderFilled | OrderCanceled | OrderExpired | FundingPaid
