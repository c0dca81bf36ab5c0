"""Position sizing: risk a fixed share of equity between entry and stop, capped by exposure.

    quantity = min( equity * risk_pct / 100 / stop_distance * clamp(strength, 0.5, 1.0),
                    equity * max_position_pct / 100 * leverage / price )

Percentages are in percent (1 means 1 %). All arithmetic is Decimal; the result is not yet on
the symbol's step grid (risk.quantize rounds it down).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext

STRENGTH_FLOOR = Decimal("0.5")
STRENGTH_CEILING = Decimal("1.0")
HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class Sizing:
    """A position size and how it was reached (for logs and alerts)."""

    quantity: Decimal
    risk_quantity: Decimal  # size that loses exactly risk_pct at the stop, after the multiplier
    cap_quantity: Decimal  # size at max_position_pct x leverage
    strength_multiplier: Decimal
    capped: bool  # True when the exposure cap, not the risk budget, set the size


def strength_multiplier(strength: Decimal) -> Decimal:
    """Clamp a signal strength to the multiplier range [0.5, 1.0]."""
    return min(max(strength, STRENGTH_FLOOR), STRENGTH_CEILING)


def position_size(
    *,
    equity: Decimal,
    price: Decimal,
    stop_distance: Decimal,
    strength: Decimal,
    risk_pct: Decimal,
    max_position_pct: Decimal,
    leverage: Decimal,
) -> Sizing:
    """Return the base-asset quantity to trade for one entry."""
    if equity <= 0 or price <= 0 or stop_distance <= 0:
        raise ValueError(
            f"equity, price and stop_distance must be > 0: {equity}, {price}, {stop_distance}"
        )
    if risk_pct <= 0 or max_position_pct <= 0 or leverage <= 0:
        raise ValueError("risk_pct, max_position_pct and leverage must be > 0")
    multiplier = strength_multiplier(strength)
    with localcontext() as ctx:
        ctx.prec = 40
        risk_quantity = equity * risk_pct / HUNDRED / stop_distance * multiplier
        cap_quantity = equity * max_position_pct / HUNDRED * leverage / price
    capped = cap_quantity < risk_quantity
    return Sizing(
        quantity=cap_quantity if capped else risk_quantity,
        risk_quantity=risk_quantity,
        cap_quantity=cap_quantity,
        strength_multiplier=multiplier,
        capped=capped,
    )
