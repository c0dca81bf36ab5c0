"""Protective orders that rest on the venue while a position is open, as a pure fold.

A filled entry becomes brackets, one per take-profit level: each bracket has a reduce-only stop
(STOP_MARKET at the stop price) and a target (TAKE_PROFIT_MARKET at entry +/- r x stop distance,
or on USDⓈ-M a TRAILING_STOP_MARKET runner for the last level), both for the bracket's quantity.
The brackets' quantities sum exactly to the position. A bracket is one OCO pair: on spot it goes
to the venue as one order list (`SubmitOrderList`, Binance `orderList/oco`: the base asset is
locked once for both legs; when one leg triggers the venue expires the other, and cancelling one
leg cancels both, so spot sends one cancel per pair). USDⓈ-M has no OCO: both legs are separate
reduce-only algo orders (they lock no balance) and the sibling is cancelled here when one fills.

Trigger-side rule: a stop must sit strictly on the losing side of the last price and a target on
the winning side, else Binance triggers it at once (or rejects it with -2021 / "Order would
trigger immediately"). A leg whose price is already crossed is not placed; its quantity exits at
market instead, which is what the venue would have done a moment later.

After the first target fills, the remaining stops move to break-even plus fees (and optionally
ratchet to the previous target after later ones). Moving means: USDⓈ-M submit the new stop, then
cancel the old (never unprotected); spot cancel the old pair, then submit the new pair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, localcontext

from engine.model import Market, Side
from engine.orders import (
    CancelOrder,
    Command,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderRole,
    OrderType,
    SubmitOrder,
    SubmitOrderList,
)
from risk.config import RiskConfig
from risk.filters import ExchangeFilters, FilterReject
from risk.ids import client_order_id
from risk.quantize import OrderDraft, QuantizedOrder, quantity_grid, quantize_order, snap_down

# Leg kinds. A market exit placed because a stop (target) was already crossed counts as that stop
# (target) filling; it is never re-sent automatically if it fails.
STOP, TARGET, EXIT_STOP, EXIT_TARGET = "stop", "target", "exit-stop", "exit-target"
STOP_KINDS = frozenset({STOP, EXIT_STOP})
TARGET_KINDS = frozenset({TARGET, EXIT_TARGET})


@dataclass(frozen=True, slots=True)
class FilledEntry:
    """An entry (or an entry plus DCA adds) that filled and now needs protection."""

    symbol: str
    side: Side  # BUY opened a long
    avg_price: Decimal
    quantity: Decimal  # on the step grid: it is what the venue filled
    stop_distance: Decimal  # price units from avg_price to the stop
    entry_id: str
    seq: int  # the entry's sequence number, shared by its protective orders' ids


@dataclass(frozen=True, slots=True)
class Bracket:
    level: int  # 1-based take-profit level
    quantity: Decimal
    target_price: Decimal | None
    stop: OrderIntent | None = None
    target: OrderIntent | None = None
    revision: int = 0
    done: bool = False


@dataclass(frozen=True, slots=True)
class ProtectionPlan:
    entry: FilledEntry
    market: Market
    prefix: str
    stop_price: Decimal  # where the stops rest now
    brackets: tuple[Bracket, ...]
    targets_hit: tuple[Decimal, ...] = ()  # target prices filled, in order
    legs: Mapping[str, tuple[int, str]] = field(
        default_factory=dict
    )  # every id issued -> (level, kind)
    problems: tuple[str, ...] = ()

    @property
    def closed(self) -> bool:
        return all(b.done for b in self.brackets)

    @property
    def long(self) -> bool:
        return self.entry.side is Side.BUY

    @property
    def exit_side(self) -> Side:
        return Side.SELL if self.long else Side.BUY

    def working_orders(self) -> tuple[OrderIntent, ...]:
        """Return every protective order that should be resting on the venue now."""
        return tuple(
            o for b in self.brackets if not b.done for o in (b.stop, b.target) if o is not None
        )

    @property
    def spot(self) -> bool:
        return self.market is Market.SPOT

    def oco_pairs(self) -> tuple[tuple[str, str], ...]:
        """Return (stop id, target id) of each bracket: the pairs spot must place as OCO lists."""
        return tuple(
            (b.stop.client_order_id, b.target.client_order_id)
            for b in self.brackets
            if not b.done and b.stop is not None and b.target is not None
        )


@dataclass(frozen=True, slots=True)
class ProtectionUpdate:
    plan: ProtectionPlan
    commands: tuple[Command, ...]
    stopped_out: bool = False  # a stop leg filled (feeds the cooldown rule)
    target_hit: bool = False


def break_even_price(side: Side, avg_price: Decimal, fee_pct: Decimal) -> Decimal:
    """Return the exit price at which a position opened at avg_price nets zero after both fees."""
    fee = fee_pct / 100
    with localcontext() as ctx:
        ctx.prec = 40
        if side is Side.BUY:  # q*x*(1-f) = q*e*(1+f)
            return avg_price * (1 + fee) / (1 - fee)
        return avg_price * (1 - fee) / (1 + fee)  # q*e*(1-f) = q*x*(1+f)


def _crossed(plan: ProtectionPlan, kind: str, price: Decimal, last_price: Decimal) -> bool:
    """Return True when a leg at price would trigger at once (not strictly on its own side)."""
    below = (kind == STOP) == plan.long  # a long's stop and a short's target rest below the market
    return price >= last_price if below else price <= last_price


def split_quantity(
    total: Decimal,
    fractions: tuple[Decimal, ...],
    filters: ExchangeFilters,
    valid: Callable[[int, Decimal], bool] | None = None,
) -> list[tuple[int, Decimal]]:
    """Split total into (level, quantity) on the step grid, summing exactly to total.

    Every level but the last is rounded down; the last takes the remainder. A level too small for
    the filters (`valid(level, qty)` false) is merged into the next one (the last into the one
    before), so a small position simply gets fewer levels.
    """
    step, anchor = quantity_grid(filters, OrderType.STOP_MARKET)
    raw = [snap_down(total * f, step, anchor) for f in fractions[:-1]]
    raw.append(total - sum(raw, Decimal(0)))
    merged: list[tuple[int, Decimal]] = []
    carry = Decimal(0)
    for index, qty in enumerate(raw, start=1):
        qty += carry
        carry = Decimal(0)
        if index < len(raw) and (qty <= 0 or (valid is not None and not valid(index, qty))):
            carry = qty
            continue
        merged.append((index, qty))
    last_level, last_qty = merged[-1]
    if len(merged) > 1 and (
        last_qty <= 0 or (valid is not None and not valid(last_level, last_qty))
    ):
        merged.pop()
        level, qty = merged.pop()
        merged.append((level, qty + last_qty))
    return merged


def _draft(
    plan: ProtectionPlan,
    kind: str,
    qty: Decimal,
    price: Decimal,
    config: RiskConfig,
    last_level: bool,
) -> OrderDraft:
    symbol, side, parent = plan.entry.symbol, plan.exit_side, plan.entry.entry_id
    if kind == STOP:
        return OrderDraft(
            symbol,
            side,
            OrderType.STOP_MARKET,
            qty,
            stop_price=price,
            reduce_only=True,
            role=OrderRole.STOP_LOSS,
            parent_id=parent,
        )
    callback = config.trailing.callback_rate_pct
    if last_level and callback is not None and plan.market is Market.USDM:
        return OrderDraft(
            symbol,
            side,
            OrderType.TRAILING_STOP_MARKET,
            qty,
            stop_price=price,
            callback_rate_pct=callback,
            reduce_only=True,
            role=OrderRole.TRAILING_STOP,
            parent_id=parent,
        )
    return OrderDraft(
        symbol,
        side,
        OrderType.TAKE_PROFIT_MARKET,
        qty,
        stop_price=price,
        reduce_only=True,
        role=OrderRole.TAKE_PROFIT,
        parent_id=parent,
    )


def _leg_id(plan: ProtectionPlan, role: OrderRole, level: int, revision: int) -> str:
    return client_order_id(plan.prefix, plan.entry.symbol, plan.entry.seq, role, level, revision)


def oco_list_id(stop_id: str) -> str:
    """Return the order-list id of an OCO pair: its stop's id with the role code `oc`.

    `tl-BTCUSDT-42-sl1r1` -> `tl-BTCUSDT-42-oc1r1`: as long as the stop's id, so <= 36 chars.
    """
    head, _, code = stop_id.rpartition("-")
    return f"{head}-oc{code[2:]}"


def _is_pair(plan: ProtectionPlan, bracket: Bracket) -> bool:
    """Return True when the bracket's legs rest as one spot OCO list."""
    return plan.spot and bracket.stop is not None and bracket.target is not None


class _Builder:
    """Accumulates commands and the plan while one step of the fold runs."""

    def __init__(
        self,
        plan: ProtectionPlan,
        config: RiskConfig,
        filters: ExchangeFilters,
        last_price: Decimal,
        ts_ms: int,
    ) -> None:
        self.plan, self.config, self.filters = plan, config, filters
        self.last_price, self.ts_ms = last_price, ts_ms
        self.commands: list[Command] = []
        self.legs = dict(plan.legs)
        self.problems = list(plan.problems)

    def quantize(self, draft: OrderDraft) -> QuantizedOrder | FilterReject:
        return quantize_order(draft, self.filters, self.last_price)

    def submit(self, intent: OrderIntent, level: int, kind: str, reason: str) -> None:
        self.legs[intent.client_order_id] = (level, kind)
        self.commands.append(SubmitOrder(intent, self.ts_ms, reason=reason))

    def submit_pair(self, stop: OrderIntent, target: OrderIntent, level: int, reason: str) -> None:
        """Submit a spot bracket as one OCO list (stop first, the list named after it)."""
        self.legs[stop.client_order_id] = (level, STOP)
        self.legs[target.client_order_id] = (level, TARGET)
        listed = SubmitOrderList(
            oco_list_id(stop.client_order_id), (stop, target), self.ts_ms, reason
        )
        self.commands.append(listed)

    def cancel(self, intent: OrderIntent | None, reason: str) -> None:
        if intent is not None:
            self.commands.append(
                CancelOrder(intent.symbol, intent.client_order_id, self.ts_ms, reason)
            )

    def cancel_bracket(self, bracket: Bracket, reason: str) -> None:
        """Cancel a bracket's legs: one cancel takes a whole spot OCO list."""
        self.cancel(bracket.stop, reason)
        if not _is_pair(self.plan, bracket):
            self.cancel(bracket.target, reason)

    def exit_now(self, bracket: Bracket, kind: str, reason: str) -> Bracket:
        """Close a bracket's quantity with a reduce-only MARKET order (its legs are not placed)."""
        revision = bracket.revision + 1
        draft = OrderDraft(
            self.plan.entry.symbol,
            self.plan.exit_side,
            OrderType.MARKET,
            bracket.quantity,
            reduce_only=True,
            role=OrderRole.EXIT,
            parent_id=self.plan.entry.entry_id,
        )
        result = self.quantize(draft)
        if isinstance(result, FilterReject):
            self.problems.append(f"level {bracket.level}: market exit impossible ({result})")
            return replace(bracket, stop=None, target=None, revision=revision)
        intent = result.to_intent(_leg_id(self.plan, OrderRole.EXIT, bracket.level, revision))
        self.submit(intent, bracket.level, kind, reason)
        return replace(bracket, stop=None, target=None, revision=revision)

    def place(self, bracket: Bracket, revision: int, reason: str) -> Bracket:
        """Submit a bracket's stop and target, or exit at market if either is already crossed."""
        plan = self.plan
        last = bracket.level == len(self.config.take_profit)
        stop = self.quantize(
            _draft(plan, STOP, bracket.quantity, plan.stop_price, self.config, last)
        )
        if isinstance(stop, FilterReject):
            self.problems.append(f"level {bracket.level}: stop impossible ({stop})")
            return self.exit_now(bracket, EXIT_STOP, f"{reason}: stop cannot be placed")
        # Judge the trigger side on the quantised price: rounding moved the stop toward the market.
        assert stop.order.stop_price is not None
        if _crossed(plan, STOP, stop.order.stop_price, self.last_price):
            return self.exit_now(
                bracket, EXIT_STOP, f"{reason}: stop {stop.order.stop_price} already crossed"
            )
        target: QuantizedOrder | FilterReject | None = None
        if bracket.target_price is not None:
            target = self.quantize(
                _draft(plan, TARGET, bracket.quantity, bracket.target_price, self.config, last)
            )
            if isinstance(target, QuantizedOrder):
                assert target.order.stop_price is not None
                if _crossed(plan, TARGET, target.order.stop_price, self.last_price):
                    return self.exit_now(
                        bracket, EXIT_TARGET, f"{reason}: target {bracket.target_price} reached"
                    )
            else:
                self.problems.append(f"level {bracket.level}: target impossible ({target})")
        stop_intent = stop.to_intent(_leg_id(plan, OrderRole.STOP_LOSS, bracket.level, revision))
        target_intent = None
        if isinstance(target, QuantizedOrder):
            target_intent = target.to_intent(
                _leg_id(plan, target.order.role, bracket.level, revision)
            )
        if target_intent is not None and plan.spot:
            self.submit_pair(stop_intent, target_intent, bracket.level, reason)
        else:
            self.submit(stop_intent, bracket.level, STOP, reason)
            if target_intent is not None:
                self.submit(target_intent, bracket.level, TARGET, reason)
        return replace(bracket, stop=stop_intent, target=target_intent, revision=revision)

    def finish(self, plan: ProtectionPlan, **outcome: bool) -> ProtectionUpdate:
        plan = replace(plan, legs=self.legs, problems=tuple(self.problems))
        return ProtectionUpdate(plan, tuple(self.commands), **outcome)


def plan_protection(
    entry: FilledEntry,
    config: RiskConfig,
    filters: ExchangeFilters,
    last_price: Decimal,
    ts_ms: int,
    prefix: str | None = None,
    first_revision: int = 0,
) -> ProtectionUpdate:
    """Return the protection plan of a filled entry and the orders that put it on the venue."""
    long = entry.side is Side.BUY
    sign = 1 if long else -1
    stop_price = entry.avg_price - sign * entry.stop_distance
    targets = [
        entry.avg_price + sign * level.r_multiple * entry.stop_distance
        for level in config.take_profit
    ]
    fractions = tuple(level.fraction for level in config.take_profit) or (Decimal(1),)
    plan = ProtectionPlan(entry, filters.market, prefix or config.client_id_prefix, stop_price, ())
    probe = _Builder(plan, config, filters, last_price, ts_ms)

    def valid(level: int, qty: Decimal) -> bool:
        last = level == len(targets)
        drafts = [_draft(plan, STOP, qty, stop_price, config, last)]
        if targets:
            drafts.append(_draft(plan, TARGET, qty, targets[level - 1], config, last))
        return all(isinstance(probe.quantize(d), QuantizedOrder) for d in drafts)

    slices = split_quantity(entry.quantity, fractions, filters, valid)
    brackets = tuple(
        Bracket(level, qty, targets[level - 1] if targets else None, revision=first_revision)
        for level, qty in slices
    )
    builder = _Builder(replace(plan, brackets=brackets), config, filters, last_price, ts_ms)
    placed = tuple(builder.place(b, first_revision, "protect entry") for b in brackets)
    return builder.finish(replace(builder.plan, brackets=placed))


def _moved_stop(plan: ProtectionPlan, config: RiskConfig) -> Decimal | None:
    """Return where the stops go after the latest target, or None to leave them."""
    trailing = config.trailing
    candidate = None
    if len(plan.targets_hit) >= 2 and trailing.step_to_previous_target:
        candidate = plan.targets_hit[-2]
    elif plan.targets_hit and trailing.break_even_after_first_target:
        candidate = break_even_price(
            plan.entry.side, plan.entry.avg_price, trailing.break_even_fee_pct
        )
    if candidate is None:
        return None
    better = candidate > plan.stop_price if plan.long else candidate < plan.stop_price
    return candidate if better else None


def _move_stops(builder: _Builder, plan: ProtectionPlan, new_stop: Decimal) -> ProtectionPlan:
    builder.plan = plan = replace(plan, stop_price=new_stop)
    brackets = []
    for b in plan.brackets:
        if b.done or b.stop is None:
            brackets.append(b)
            continue
        shown = new_stop.quantize(Decimal("1e-12")).normalize()  # break-even has 40 digits
        reason = f"stop to {shown} after target {len(plan.targets_hit)}"
        if plan.spot:  # the OCO pair goes as a whole: cancel it, then re-place it
            builder.cancel_bracket(b, reason)
            brackets.append(builder.place(b, b.revision + 1, reason))
        else:  # new stop first, so the position is never without one
            moved = builder.place(replace(b, target_price=None), b.revision + 1, reason)
            builder.cancel(b.stop, reason)
            if moved.stop is None:  # crossed: exited at market, so the target goes too
                builder.cancel(b.target, reason)
                brackets.append(moved)
            else:
                brackets.append(replace(moved, target=b.target, target_price=b.target_price))
    return replace(plan, brackets=tuple(brackets))


def _replace_lost_leg(
    builder: _Builder, plan: ProtectionPlan, bracket: Bracket, kind: str, rejected: bool, why: str
) -> ProtectionPlan:
    """Restore protection after a leg vanished without our cancel (expired, rejected...)."""
    if kind == STOP or (kind == TARGET and _is_pair(plan, bracket)):
        # Never leave the quantity without a stop: re-place the pair; a rejected stop (most often
        # "would trigger immediately") is not sent again unchanged: the quantity exits at market.
        # A spot OCO loses both legs at once (the venue ends the list), so there is nothing to
        # cancel, and a lost target there means a lost stop too.
        if not _is_pair(plan, bracket):
            builder.cancel(bracket.target, why)
        fixed = (
            builder.exit_now(bracket, EXIT_STOP, why)
            if rejected
            else builder.place(bracket, bracket.revision + 1, why)
        )
    elif kind == TARGET:
        builder.problems.append(
            f"level {bracket.level}: target lost ({why}); the stop still protects it"
        )
        fixed = replace(bracket, target=None)
    else:
        builder.problems.append(
            f"level {bracket.level}: market exit failed ({why}); position left open"
        )
        fixed = bracket
    return replace(
        plan, brackets=tuple(fixed if b.level == bracket.level else b for b in plan.brackets)
    )


def apply_order_event(
    plan: ProtectionPlan,
    event: OrderEvent,
    config: RiskConfig,
    filters: ExchangeFilters,
    last_price: Decimal,
    ts_ms: int,
) -> ProtectionUpdate:
    """Fold one order event of this position into the plan; return the orders it calls for."""
    coid = getattr(event, "client_order_id", None)
    if coid is None or coid not in plan.legs:
        return ProtectionUpdate(plan, ())
    level, kind = plan.legs[coid]
    bracket = next(b for b in plan.brackets if b.level == level)
    builder = _Builder(plan, config, filters, last_price, ts_ms)
    if isinstance(event, OrderCanceled | OrderExpired | OrderRejected):
        live = {o.client_order_id for o in (bracket.stop, bracket.target) if o is not None}
        if bracket.done or (coid not in live and kind in (STOP, TARGET)):
            return builder.finish(plan)  # a leg we cancelled or replaced ourselves
        rejected = isinstance(event, OrderRejected)
        detail = event.message if isinstance(event, OrderRejected) else event.reason
        why = f"{type(event).__name__} {coid} {detail}".strip()
        return builder.finish(_replace_lost_leg(builder, plan, bracket, kind, rejected, why))
    if not isinstance(event, OrderFilled) or not event.order_complete or bracket.done:
        return builder.finish(plan)
    live = {o.client_order_id for o in (bracket.stop, bracket.target) if o is not None}
    if _is_pair(plan, bracket) and coid in live:
        pass  # the venue expired the other leg of the OCO when this one triggered
    elif _is_pair(plan, bracket):  # an older pair won the race with its replacement
        builder.cancel_bracket(bracket, f"{kind} {coid} filled")
    else:  # includes a newer stop when an old one won the race
        for leg in (bracket.stop, bracket.target):
            if leg is not None and leg.client_order_id != coid:
                builder.cancel(leg, f"{kind} {coid} filled")
    brackets = tuple(replace(b, done=True) if b.level == level else b for b in plan.brackets)
    plan = replace(plan, brackets=brackets)
    if kind in TARGET_KINDS and bracket.target_price is not None:
        plan = replace(plan, targets_hit=(*plan.targets_hit, bracket.target_price))
        new_stop = _moved_stop(plan, config)
        if new_stop is not None and not plan.closed:
            plan = _move_stops(builder, plan, new_stop)
    return builder.finish(plan, stopped_out=kind in STOP_KINDS, target_hit=kind in TARGET_KINDS)


def cancel_protection(plan: ProtectionPlan, ts_ms: int, reason: str) -> ProtectionUpdate:
    """Cancel every working leg (before a manual exit, a flatten, or a re-plan after DCA).

    A spot OCO pair takes one cancel (of its stop): the venue cancels the list.
    """
    commands: list[Command] = []
    for bracket in plan.brackets:
        if bracket.done:
            continue
        legs = (bracket.stop,) if _is_pair(plan, bracket) else (bracket.stop, bracket.target)
        for order in legs:
            if order is not None:
                commands.append(CancelOrder(order.symbol, order.client_order_id, ts_ms, reason))
    brackets = tuple(replace(b, done=True) for b in plan.brackets)
    return ProtectionUpdate(replace(plan, brackets=brackets), tuple(commands))
