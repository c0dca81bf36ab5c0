"""Value types shared by every package: markets, symbols, instruments and their exchange filters."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from decimal import Decimal

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")


class Market(enum.StrEnum):
    """Binance venue a symbol trades on."""

    SPOT = "spot"
    USDM = "usdm"


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"


def is_binance_symbol(text: str) -> bool:
    """Return True when text has the shape of a Binance symbol (upper-case letters and digits)."""
    return bool(SYMBOL_RE.match(text))


def decimal_places(value: Decimal) -> int:
    """Return the number of significant decimal places of a positive decimal (0.0100 -> 2)."""
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable symbol and the filters Binance enforces on it.

    Prices are carried as integer ticks (price / tick_size) and quantities as integer
    steps (qty / step_size) wherever exactness matters; the Decimal fields are the
    exchange's own numbers, taken from exchangeInfo.
    """

    symbol: str
    market: Market
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal = Decimal(0)
    max_qty: Decimal = Decimal(0)
    min_notional: Decimal = Decimal(0)
    base_asset: str = ""
    quote_asset: str = ""

    @property
    def price_decimals(self) -> int:
        return decimal_places(self.tick_size)

    @property
    def qty_decimals(self) -> int:
        return decimal_places(self.step_size)

    def price_to_ticks(self, price: float) -> int:
        """Convert a wire price (float from the decoder) to integer ticks, exactly for on-grid prices."""
        return round(price * self.ticks_per_unit)

    @property
    def ticks_per_unit(self) -> float:
        return float(1 / self.tick_size)

    def ticks_to_price(self, ticks: int) -> Decimal:
        return self.tick_size * ticks


def instrument_from_exchange_info(entry: dict, market: Market) -> Instrument:
    """Build an Instrument from one `symbols[]` entry of spot or USDⓈ-M exchangeInfo."""
    filters = {f["filterType"]: f for f in entry.get("filters", [])}
    price = filters.get("PRICE_FILTER", {})
    lot = filters.get("LOT_SIZE", {})
    min_notional = Decimal(0)
    if "NOTIONAL" in filters:  # spot since 2022
        min_notional = Decimal(filters["NOTIONAL"].get("minNotional", "0"))
    elif "MIN_NOTIONAL" in filters:  # spot key minNotional, futures key notional
        f = filters["MIN_NOTIONAL"]
        min_notional = Decimal(f.get("minNotional", f.get("notional", "0")))
    return Instrument(
        symbol=entry["symbol"],
        market=market,
        tick_size=Decimal(price.get("tickSize", "0.00000001")).normalize(),
        step_size=Decimal(lot.get("stepSize", "0.00000001")).normalize(),
        min_qty=Decimal(lot.get("minQty", "0")),
        max_qty=Decimal(lot.get("maxQty", "0")),
        min_notional=min_notional,
        base_asset=entry.get("baseAsset", ""),
        quote_asset=entry.get("quoteAsset", ""),
    )
