"""Balances per asset as a pure fold of fills, fees and funding.

Spot: a BUY adds the base quantity and pays price * qty of quote; a SELL the reverse; the fee
leaves whichever asset it was charged in (quote in the simulator; base or BNB on Binance).
USDⓈ-M: the margin asset's wallet moves by realised PnL, fees and funding only (the position
itself lives in portfolio.position).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from engine.model import Instrument, Side
from engine.orders import FundingPaid, OrderFilled

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Ledger:
    """Balances by asset; immutable: every apply returns a new ledger."""

    balances: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, balances: Mapping[str, Decimal]) -> Ledger:
        return cls(MappingProxyType({a: Decimal(v) for a, v in balances.items()}))

    def get(self, asset: str) -> Decimal:
        return self.balances.get(asset, _ZERO)

    def credit(self, changes: Mapping[str, Decimal]) -> Ledger:
        """Return a ledger with each asset moved by its amount (negative: debit)."""
        out = dict(self.balances)
        for asset, amount in changes.items():
            if amount:
                out[asset] = out.get(asset, _ZERO) + amount
        return Ledger(MappingProxyType(out))

    def apply_spot_fill(self, fill: OrderFilled, instrument: Instrument) -> Ledger:
        """Fold a spot fill: base against quote, then the fee in its own asset."""
        notional = fill.price * fill.quantity
        sign = 1 if fill.side is Side.BUY else -1
        changes = {
            instrument.base_asset: sign * fill.quantity,
            instrument.quote_asset: -sign * notional,
        }
        out = self.credit(changes)
        return out.credit({fill.fee_asset: -fill.fee})

    def apply_futures_fill(self, fill: OrderFilled, margin_asset: str, realized: Decimal) -> Ledger:
        """Fold a futures fill: the realised PnL it produced, less its fee."""
        return self.credit({margin_asset: realized}).credit({fill.fee_asset: -fill.fee})

    def apply_funding(self, funding: FundingPaid) -> Ledger:
        return self.credit({funding.asset: funding.amount})
