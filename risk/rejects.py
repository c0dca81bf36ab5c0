"""Remember venue filter rejects so an identical order is never sent again.

A filter reject (spot -1013 "Filter failure: X", futures -4003/-4014/-4016/-4164...) is
deterministic: resending the same order gets the same answer and burns order-rate budget. The
usual cause is stale exchangeInfo, so the memory is cleared per symbol when filters are reloaded.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from decimal import Decimal

from engine.orders import OrderIntent, OrderRejected
from risk.filters import FilterReject

# Every filter name the venue adapter may put in OrderRejected.reason for a filter failure.
FILTER_NAMES = frozenset(
    {
        "PRICE_FILTER",
        "PERCENT_PRICE",
        "PERCENT_PRICE_BY_SIDE",
        "LOT_SIZE",
        "MARKET_LOT_SIZE",
        "MIN_NOTIONAL",
        "NOTIONAL",
        "ICEBERG_PARTS",
        "MAX_NUM_ORDERS",
        "MAX_NUM_ALGO_ORDERS",
        "MAX_NUM_ICEBERG_ORDERS",
        "MAX_POSITION",
        "TRAILING_DELTA",
        "MAX_NUM_ORDER_AMENDS",
        "MAX_NUM_ORDER_LISTS",
        "EXCHANGE_MAX_NUM_ORDERS",
        "EXCHANGE_MAX_NUM_ALGO_ORDERS",
        "EXCHANGE_MAX_NUM_ICEBERG_ORDERS",
        "EXCHANGE_MAX_NUM_ORDER_LISTS",
        "CALLBACK_RATE",
    }
)
_FAILURE_RE = re.compile(r"Filter failure:\s*([A-Z_]+)")

Fingerprint = tuple[
    str, str, str, Decimal, Decimal | None, Decimal | None, Decimal | None, bool, str
]


def filter_reject_of(event: OrderRejected) -> FilterReject | None:
    """Return the filter a venue reject names (reason or message), or None for other rejects."""
    if event.reason in FILTER_NAMES:
        return FilterReject(event.reason, event.message)
    match = _FAILURE_RE.search(event.message)
    if match and match.group(1) in FILTER_NAMES:
        return FilterReject(match.group(1), event.message)
    return None


def fingerprint(intent: OrderIntent) -> Fingerprint:
    """Return what makes two orders the same to the exchange's filters (not the client id)."""
    return (
        intent.symbol,
        intent.side.value,
        intent.type.value,
        intent.quantity.normalize(),
        None if intent.price is None else intent.price.normalize(),
        None if intent.stop_price is None else intent.stop_price.normalize(),
        None if intent.callback_rate_pct is None else intent.callback_rate_pct.normalize(),
        intent.reduce_only,
        intent.time_in_force.value,
    )


class RejectMemory:
    """Bounded memory of orders the venue rejected for a filter reason."""

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._rejects: OrderedDict[Fingerprint, FilterReject] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rejects)

    def remember(self, intent: OrderIntent, reject: FilterReject) -> None:
        """Record that the venue rejected this order for a filter reason."""
        key = fingerprint(intent)
        self._rejects[key] = reject
        self._rejects.move_to_end(key)
        while len(self._rejects) > self._capacity:
            self._rejects.popitem(last=False)

    def known_reject(self, intent: OrderIntent) -> FilterReject | None:
        """Return the earlier reject of an identical order, or None if it may be sent."""
        return self._rejects.get(fingerprint(intent))

    def forget_symbol(self, symbol: str) -> None:
        """Drop the rejects of one symbol (call after its filters were reloaded)."""
        for key in [k for k in self._rejects if k[0] == symbol]:
            del self._rejects[key]
