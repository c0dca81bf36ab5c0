"""Positions found at start-up: is each one protected, and by which of our orders?

After a restart the risk gate has no protection plans; the venue still has the position and,
normally, the protective orders the gate placed before. Those orders carry deterministic client
ids (`risk/ids.py`: `<prefix>-<symbol>-<seq>-sl<level>[r<rev>]`), and their intents are in the
journal, so the plan is rebuilt from them — one bracket per level, the newest revision of each
leg — and the gate follows it as if it had never stopped. A position whose working stops do not
cover its whole quantity is *unprotected*: the caller places fresh protection or goes REDUCING — and
still follows the stops that do exist, so an exit cancels them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from engine.model import Market, Side
from engine.orders import OrderIntent, OrderRole
from risk.ids import parse_client_order_id
from risk.protection import STOP, TARGET, Bracket, FilledEntry, ProtectionPlan

STOP_ROLES = frozenset({OrderRole.STOP_LOSS, OrderRole.TRAILING_STOP})


@dataclass(frozen=True, slots=True)
class Verdict:
    """One position's protection at start-up."""

    symbol: str
    side: Side  # BUY: a long position
    quantity: Decimal  # absolute
    covered: Decimal  # quantity our working stops would close
    plan: ProtectionPlan | None  # the plan rebuilt from our working stops (None: there are none)

    @property
    def protected(self) -> bool:
        return self.plan is not None and self.covered >= self.quantity


def judge_position(
    symbol: str,
    signed_qty: Decimal,
    avg_price: Decimal,
    working: Iterable[OrderIntent],
    market: Market,
) -> Verdict:
    """Rebuild the plan of a position from our working protective orders on its closing side."""
    side = Side.BUY if signed_qty > 0 else Side.SELL
    closing = Side.SELL if side is Side.BUY else Side.BUY
    quantity = abs(signed_qty)
    legs: dict[int, dict[str, tuple[int, OrderIntent]]] = {}  # level -> kind -> (revision, intent)
    prefix, seq = "", 0
    for intent in working:
        parsed = parse_client_order_id(intent.client_order_id)
        if parsed is None or intent.symbol != symbol or intent.side is not closing:
            continue
        kind = STOP if parsed.role in STOP_ROLES else TARGET if parsed.role is OrderRole.TAKE_PROFIT else None
        if kind is None:
            continue
        level = parsed.level or 1
        best = legs.setdefault(level, {}).get(kind)
        if best is None or parsed.revision > best[0]:
            legs[level][kind] = (parsed.revision, intent)
            prefix, seq = parsed.prefix, parsed.seq
    stops = {level: kinds[STOP][1] for level, kinds in legs.items() if STOP in kinds}
    covered = sum((s.quantity for s in stops.values()), Decimal(0))
    if not stops:
        return Verdict(symbol, side, quantity, covered, None)
    brackets = []
    leg_ids: dict[str, tuple[int, str]] = {}
    for level in sorted(stops):
        stop = stops[level]
        target = legs[level].get(TARGET, (0, None))[1]
        revision = max(kinds[0] for kinds in legs[level].values())
        target_price = (target.price or target.stop_price) if target is not None else None
        brackets.append(Bracket(level, stop.quantity, target_price, stop, target, revision))
        leg_ids[stop.client_order_id] = (level, STOP)
        if target is not None:
            leg_ids[target.client_order_id] = (level, TARGET)
    stop_price = stops[min(stops)].stop_price or Decimal(0)
    entry = FilledEntry(symbol, side, avg_price, quantity, abs(avg_price - stop_price), "", seq)
    plan = ProtectionPlan(entry, market, prefix, stop_price, tuple(brackets), legs=leg_ids)
    return Verdict(symbol, side, quantity, covered, plan)


def fresh_stop_distance(reference_price: Decimal, stop_pct: Decimal) -> Decimal:
    """Return the stop distance for an unprotected position: stop_pct of the reference price."""
    return reference_price * stop_pct / 100
