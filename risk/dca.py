"""Optional DCA (averaging into a losing position) with hard limits, as pure functions.

An add is due when the price has moved `spacing_pct` against the position since the last fill
(entry or add); add n (1-based) is `initial_quantity x size_multiplier ** n`; at most `max_adds`.
The stop stays where it was: after an add fills, `replan_after_add` re-bases the targets on the new
average price and keeps the original stop price, so the risk taken by an add is visible in the
stop distance (the gate caps the total position by max_position_pct x leverage).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from engine.model import Side
from risk.config import DcaConfig, RiskConfig
from risk.filters import ExchangeFilters
from risk.protection import ProtectionPlan, ProtectionUpdate, cancel_protection, plan_protection


@dataclass(frozen=True, slots=True)
class DcaState:
    """The adds made to one position so far."""

    side: Side
    initial_quantity: Decimal
    last_fill_price: Decimal
    adds_done: int = 0


def adverse_move_pct(side: Side, reference: Decimal, last_price: Decimal) -> Decimal:
    """Return how far price moved against a position since reference, in percent (<0: in favour)."""
    move = (reference - last_price) if side is Side.BUY else (last_price - reference)
    return move / reference * 100


def dca_add_quantity(state: DcaState, config: DcaConfig, last_price: Decimal) -> Decimal | None:
    """Return the quantity of the next add if one is due now, else None."""
    if not config.enabled or state.adds_done >= config.max_adds:
        return None
    if adverse_move_pct(state.side, state.last_fill_price, last_price) < config.spacing_pct:
        return None
    return state.initial_quantity * config.size_multiplier ** (state.adds_done + 1)


def after_add_filled(state: DcaState, fill_price: Decimal) -> DcaState:
    """Return the DCA state once an add filled at fill_price."""
    return replace(state, adds_done=state.adds_done + 1, last_fill_price=fill_price)


def average_price(
    quantity_a: Decimal, price_a: Decimal, quantity_b: Decimal, price_b: Decimal
) -> Decimal:
    """Return the volume-weighted average price of two fills."""
    return (quantity_a * price_a + quantity_b * price_b) / (quantity_a + quantity_b)


def replan_after_add(
    plan: ProtectionPlan,
    add_quantity: Decimal,
    add_price: Decimal,
    config: RiskConfig,
    filters: ExchangeFilters,
    last_price: Decimal,
    ts_ms: int,
) -> ProtectionUpdate:
    """Cancel the old protection and protect the enlarged position (same stop, new targets)."""
    old = plan.entry
    cancelled = cancel_protection(plan, ts_ms, "dca add filled: re-plan")
    new_avg = average_price(old.quantity, old.avg_price, add_quantity, add_price)
    original_stop = (
        old.avg_price - old.stop_distance if plan.long else old.avg_price + old.stop_distance
    )
    distance = new_avg - original_stop if plan.long else original_stop - new_avg
    entry = replace(
        old, avg_price=new_avg, quantity=old.quantity + add_quantity, stop_distance=distance
    )
    if distance <= 0:
        raise ValueError(
            f"add at {add_price} puts the average {new_avg} beyond the stop {original_stop}"
        )
    # The new legs reuse level numbers: their revisions start above every id the old plan issued.
    first_revision = 1 + max((b.revision for b in plan.brackets), default=0)
    fresh = plan_protection(entry, config, filters, last_price, ts_ms, plan.prefix, first_revision)
    legs = {**cancelled.plan.legs, **fresh.plan.legs}
    return ProtectionUpdate(replace(fresh.plan, legs=legs), cancelled.commands + fresh.commands)
