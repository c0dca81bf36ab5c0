"""RiskGate: the one place between strategy and venue.

Entries go through checks -> sizing -> quantisation -> reject memory and come out as one
SubmitOrder or a typed `Denied`. Exits and cancels always pass (reduce-only). Order events come
back in: an entry's fills produce its protective orders (risk.protection), protective fills move
stops, venue filter rejects are remembered so an identical order is never resent. Observations
fold the trading state (risk.state); entering HALTED yields the cancel/flatten commands.

The gate holds only derived state (plans, working entries, the state fold, the reject memory)
and never reads a clock: every call carries its exchange-time ms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

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
from risk.checks import (
    ADD_RULES,
    AccountView,
    Allowed,
    DenialReason,
    Denied,
    EntryContext,
    MarketView,
    PositionView,
    check_entry,
)
from risk.config import RiskConfig
from risk.dca import DcaState, after_add_filled, dca_add_quantity, replan_after_add
from risk.filters import ExchangeFilters, FilterReject, account_filter_failure
from risk.halt import OpenOrderView, halt_commands
from risk.ids import client_order_id
from risk.protection import (
    FilledEntry,
    ProtectionPlan,
    apply_order_event,
    cancel_protection,
    plan_protection,
)
from risk.quantize import OrderDraft, quantize_order
from risk.rejects import RejectMemory, filter_reject_of
from risk.sizing import Sizing, position_size
from risk.state import Observation, RiskState, TradingState, Transition, step

SENT_MEMORY = 4096  # intents remembered for matching venue rejects

HaltInputs = tuple[Sequence[OpenOrderView], Sequence[PositionView], Mapping[str, Decimal]]


@dataclass(frozen=True, slots=True)
class EntryRequest:
    """A strategy's wish to open a position."""

    symbol: str
    side: Side
    strength: Decimal  # signal strength; the size multiplier is clamp(strength, 0.5, 1.0)
    stop_distance: Decimal  # price units from entry to stop
    reference_price: Decimal  # the price the decision saw (mid or last)
    ts_ms: int
    limit_price: Decimal | None = None  # LIMIT entries; None uses reference_price
    band_price: Decimal | None = None  # spot average price / futures mark price for PERCENT_PRICE
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Approved:
    commands: tuple[Command, ...]
    intent: OrderIntent | None = None
    sizing: Sizing | None = None

    def __bool__(self) -> bool:
        return True


GateDecision = Approved | Denied


@dataclass(frozen=True, slots=True)
class GateUpdate:
    """What an observation or order event changed: state transitions and orders to send."""

    commands: tuple[Command, ...] = ()
    transitions: tuple[Transition, ...] = ()
    problems: tuple[str, ...] = ()  # for alerts: positions left unprotected or not flattened


@dataclass(frozen=True, slots=True)
class _Working:
    """An entry or DCA order on the venue, and what its fills add up to."""

    symbol: str
    side: Side
    seq: int
    stop_distance: Decimal
    is_add: bool
    filled_qty: Decimal = Decimal(0)
    filled_cost: Decimal = Decimal(0)


class RiskGate:
    """Vet every order between strategy and venue; keep positions protected."""

    def __init__(
        self,
        config: RiskConfig,
        filters: Mapping[str, ExchangeFilters],
        *,
        next_seq: int = 1,
        state: RiskState | None = None,
    ) -> None:
        self.config = config
        self._filters = dict(filters)
        self._seq = next_seq  # give the journal's next free sequence number after a restart
        self.risk_state = state or RiskState()
        self.rejects = RejectMemory()
        self.plans: dict[str, ProtectionPlan] = {}
        self.stop_outs_ms: dict[str, int] = {}
        self._working: dict[str, _Working] = {}
        self._dca: dict[str, DcaState] = {}
        self._sent: dict[str, OrderIntent] = {}
        # symbol -> the exit order on its way: an asynchronous venue reports its fill later, and
        # the position looks open until then; a second exit would sell what is not held
        self._exits: dict[str, str] = {}

    @property
    def trading_state(self) -> TradingState:
        return self.risk_state.mode

    @property
    def next_seq(self) -> int:
        return self._seq

    def update_filters(self, filters: Mapping[str, ExchangeFilters]) -> None:
        """Adopt freshly loaded exchangeInfo filters; earlier venue rejects may now pass."""
        for symbol in filters:
            self.rejects.forget_symbol(symbol)
        self._filters.update(filters)

    # -- entries ---------------------------------------------------------------------------

    def request_entry(
        self, request: EntryRequest, account: AccountView, market: MarketView
    ) -> GateDecision:
        """Return the entry order for a strategy's request, or why it is denied."""
        filters = self._filters.get(request.symbol)
        if filters is None:
            return Denied(
                DenialReason.INVALID_REQUEST, f"{request.symbol}: no exchange filters loaded"
            )
        if request.reference_price <= 0 or not 0 < request.stop_distance < request.reference_price:
            return Denied(
                DenialReason.INVALID_REQUEST,
                f"need 0 < stop_distance {request.stop_distance} < price {request.reference_price}",
            )
        decision = check_entry(
            self._context(request.symbol, request.side, account, market, request.ts_ms), self.config
        )
        if isinstance(decision, Denied):
            return decision
        price = request.limit_price or request.reference_price
        sizing = position_size(
            equity=account.equity,
            price=price,
            stop_distance=request.stop_distance,
            strength=request.strength,
            risk_pct=self.config.risk_pct,
            max_position_pct=self.config.max_position_pct,
            leverage=self.config.leverage,
        )
        order_type = (
            OrderType.LIMIT if self.config.entry_order_type == "LIMIT" else OrderType.MARKET
        )
        draft = OrderDraft(
            request.symbol,
            request.side,
            order_type,
            _fit_to_maxima(sizing.quantity, filters, order_type, price),
            price=price if order_type is OrderType.LIMIT else None,
        )
        intent = self._vet(
            draft,
            filters,
            request.band_price or request.reference_price,
            account,
            OrderRole.ENTRY,
            level=0,
        )
        if isinstance(intent, Denied):
            return intent
        self._working[intent.client_order_id] = _Working(
            request.symbol, request.side, self._seq, request.stop_distance, is_add=False
        )
        self._seq += 1
        return Approved(
            (self._send(intent, request.ts_ms, request.reason or "entry"),), intent, sizing
        )

    def request_add(
        self,
        symbol: str,
        reference_price: Decimal,
        ts_ms: int,
        account: AccountView,
        market: MarketView,
    ) -> GateDecision | None:
        """Return a DCA add for an open position if one is due (None when not due)."""
        plan, dca = self.plans.get(symbol), self._dca.get(symbol)
        if plan is None or dca is None or plan.targets_hit:
            return None
        quantity = dca_add_quantity(dca, self.config.dca, reference_price)
        if quantity is None:
            return None
        if any(w.symbol == symbol for w in self._working.values()):
            return Denied(DenialReason.DCA_LIMIT, f"{symbol}: an entry or add is still working")
        beyond_stop = (
            reference_price <= plan.stop_price if plan.long else reference_price >= plan.stop_price
        )
        if beyond_stop:
            return Denied(
                DenialReason.DCA_LIMIT, f"{symbol}: price {reference_price} is beyond the stop"
            )
        decision = check_entry(
            self._context(symbol, plan.entry.side, account, market, ts_ms), self.config, ADD_RULES
        )
        if isinstance(decision, Denied):
            return decision
        cap = (
            account.equity
            * self.config.max_position_pct
            / 100
            * self.config.leverage
            / reference_price
        )
        quantity = min(quantity, cap - plan.entry.quantity)
        if quantity <= 0:
            return Denied(DenialReason.DCA_LIMIT, f"{symbol}: position already at max_position_pct")
        filters = self._filters[symbol]
        quantity = _fit_to_maxima(quantity, filters, OrderType.MARKET, reference_price)
        draft = OrderDraft(
            symbol,
            plan.entry.side,
            OrderType.MARKET,
            quantity,
            role=OrderRole.DCA,
            parent_id=plan.entry.entry_id,
        )
        intent = self._vet(
            draft,
            filters,
            reference_price,
            account,
            OrderRole.DCA,
            level=dca.adds_done + 1,
            seq=plan.entry.seq,
        )
        if isinstance(intent, Denied):
            return intent
        self._working[intent.client_order_id] = _Working(
            symbol, plan.entry.side, plan.entry.seq, plan.entry.stop_distance, is_add=True
        )
        return Approved((self._send(intent, ts_ms, f"dca add {dca.adds_done + 1}"),), intent)

    def _context(
        self, symbol: str, side: Side, account: AccountView, market: MarketView, ts_ms: int
    ) -> EntryContext:
        stop_outs = {**account.last_stop_out_ms}
        for sym, ts in self.stop_outs_ms.items():
            stop_outs[sym] = max(ts, stop_outs.get(sym, ts))
        # What the gate sent or protects counts even before the account view catches up.
        pending = tuple(
            PositionView(w.symbol, w.side, w.filled_qty, Decimal(0))
            for w in self._working.values()
            if not w.is_add and account.exposure(w.symbol) is None
        ) + tuple(
            PositionView(sym, plan.entry.side, plan.entry.quantity, plan.entry.avg_price)
            for sym, plan in self.plans.items()
            if account.exposure(sym) is None
            and sym not in {w.symbol for w in self._working.values()}
        )
        account = replace(
            account, last_stop_out_ms=stop_outs, pending_entries=account.pending_entries + pending
        )
        filters = self._filters[symbol]
        market = replace(
            market, symbol_trading=market.symbol_trading and filters.status == "TRADING"
        )
        shorting = filters.market is Market.USDM
        return EntryContext(symbol, side, account, market, self.trading_state, ts_ms, shorting)

    def _vet(
        self,
        draft: OrderDraft,
        filters: ExchangeFilters,
        band_price: Decimal,
        account: AccountView,
        role: OrderRole,
        level: int,
        seq: int | None = None,
    ) -> OrderIntent | Denied:
        result = quantize_order(draft, filters, band_price)
        if isinstance(result, FilterReject):
            return Denied(DenialReason.FILTER_REJECT, str(result))
        held = account.exposure(draft.symbol)
        failure = account_filter_failure(
            filters,
            side=draft.side,
            order_type=draft.type,
            quantity=result.order.quantity,
            open_orders=account.open_orders.get(draft.symbol, 0),
            open_algo_orders=account.open_algo_orders.get(draft.symbol, 0),
            base_position=held.quantity if held else Decimal(0),
        )
        if failure is not None:
            return Denied(DenialReason.FILTER_REJECT, str(failure))
        coid = client_order_id(
            self.config.client_id_prefix,
            draft.symbol,
            self._seq if seq is None else seq,
            role,
            level,
        )
        intent = result.to_intent(coid)
        if (known := self.rejects.known_reject(intent)) is not None:
            return Denied(
                DenialReason.FILTER_REJECT, f"venue rejected this exact order before: {known}"
            )
        return intent

    def _send(self, intent: OrderIntent, ts_ms: int, reason: str) -> SubmitOrder:
        self._remember_sent(intent)
        return SubmitOrder(intent, ts_ms, reason)

    def _remember_commands(self, commands: Sequence[Command]) -> None:
        for command in commands:
            if isinstance(command, SubmitOrder):
                self._remember_sent(command.intent)
            elif isinstance(command, SubmitOrderList):
                for intent in command.orders:
                    self._remember_sent(intent)

    def _remember_sent(self, intent: OrderIntent) -> None:
        """Keep recent intents so a venue reject can be matched to what was sent (bounded)."""
        self._sent[intent.client_order_id] = intent
        while len(self._sent) > SENT_MEMORY:
            del self._sent[next(iter(self._sent))]

    # -- exits and cancels -----------------------------------------------------------------

    def request_exit(
        self, position: PositionView, reference_price: Decimal, ts_ms: int, reason: str = "exit"
    ) -> GateDecision:
        """Close a position at market (once); its protective orders are cancelled."""
        if (working := self._exits.get(position.symbol)) is not None:
            return Denied(DenialReason.EXIT_WORKING, f"exit {working} is still working")
        filters = self._filters[position.symbol]
        side = Side.SELL if position.side is Side.BUY else Side.BUY
        draft = OrderDraft(
            position.symbol,
            side,
            OrderType.MARKET,
            position.quantity,
            reduce_only=True,
            role=OrderRole.EXIT,
        )
        result = quantize_order(draft, filters, reference_price)
        if isinstance(result, FilterReject):
            return Denied(DenialReason.FILTER_REJECT, f"cannot exit {position.quantity}: {result}")
        intent = result.to_intent(
            client_order_id(
                self.config.client_id_prefix, position.symbol, self._seq, OrderRole.EXIT
            )
        )
        self._seq += 1
        exit_order = self._send(intent, ts_ms, reason)
        self._exits[position.symbol] = intent.client_order_id
        # Working entries/adds are cancelled too; any part of them that still fills gets protected.
        cancels: tuple[Command, ...] = tuple(
            CancelOrder(w.symbol, coid, ts_ms, reason)
            for coid, w in self._working.items()
            if w.symbol == position.symbol
        )
        if (plan := self.plans.pop(position.symbol, None)) is not None:
            cancels += cancel_protection(plan, ts_ms, reason).commands
        self._dca.pop(position.symbol, None)
        # Spot protective orders lock the balance the exit needs; futures keep them until it went.
        ordered = (
            cancels + (exit_order,) if filters.market is Market.SPOT else (exit_order, *cancels)
        )
        return Approved(ordered, intent)

    def request_cancel(
        self, symbol: str, client_order_id: str, ts_ms: int, reason: str = ""
    ) -> Approved:
        """Cancel an order (always allowed)."""
        return Approved((CancelOrder(symbol, client_order_id, ts_ms, reason),))

    # -- positions found at start-up -------------------------------------------------------

    def adopt_protection(self, plan: ProtectionPlan) -> None:
        """Follow a protection plan rebuilt from orders already working on the venue."""
        self.plans[plan.entry.symbol] = plan

    def protect_position(
        self,
        symbol: str,
        side: Side,
        quantity: Decimal,
        reference_price: Decimal,
        stop_distance: Decimal,
        ts_ms: int,
    ) -> GateUpdate:
        """Return the orders that protect an unprotected position, as if it had just filled."""
        seq, self._seq = self._seq, self._seq + 1
        entry = FilledEntry(symbol, side, reference_price, quantity, stop_distance, "", seq)
        update = plan_protection(entry, self.config, self._filters[symbol], reference_price, ts_ms)
        self.plans[symbol] = update.plan
        self._remember_commands(update.commands)
        return GateUpdate(update.commands, problems=update.plan.problems)

    # -- feedback --------------------------------------------------------------------------

    def observe(
        self,
        observation: Observation,
        *,
        open_orders: Sequence[OpenOrderView] = (),
        positions: Sequence[PositionView] = (),
        reference_prices: Mapping[str, Decimal] | None = None,
        halt_inputs: Callable[[], HaltInputs] | None = None,
    ) -> GateUpdate:
        """Fold an observation into the trading state; on entering HALTED return the halt orders.

        The account (open orders, positions, reference prices) matters only on entering HALTED:
        pass it directly, or as `halt_inputs`, called only then.
        """
        self.risk_state, transitions = step(self.risk_state, observation, self.config)
        halted = any(t.to_state is TradingState.HALTED for t in transitions)
        if not halted:
            return GateUpdate(transitions=transitions)
        if halt_inputs is not None:
            open_orders, positions, reference_prices = halt_inputs()
        flatten = self.config.flatten_on_halt
        plan = halt_commands(
            open_orders=open_orders,
            positions=positions,
            filters=self._filters,
            reference_prices=reference_prices or {},
            flatten=flatten,
            prefix=self.config.client_id_prefix,
            next_seq=self._seq,
            ts_ms=observation.ts_ms,
        )
        self._seq += plan.seq_used
        cancels = [c for c in plan.commands if isinstance(c, CancelOrder)]
        submits = [c for c in plan.commands if isinstance(c, SubmitOrder)]
        if flatten:
            cancelled = {c.client_order_id for c in cancels}
            for position in positions:
                if (protection := self.plans.pop(position.symbol, None)) is not None:
                    extra = cancel_protection(
                        protection, observation.ts_ms, "halted: flatten"
                    ).commands
                    cancels += [
                        c
                        for c in extra
                        if isinstance(c, CancelOrder) and c.client_order_id not in cancelled
                    ]
        for command in submits:
            self._remember_sent(command.intent)
        return GateUpdate(tuple(cancels) + tuple(submits), transitions, plan.problems)

    def on_order_event(self, event: OrderEvent, last_price: Decimal, ts_ms: int) -> GateUpdate:
        """Fold a venue order event: protect fills, follow protective orders, remember rejects."""
        if (
            isinstance(event, OrderRejected)
            and (sent := self._sent.get(event.client_order_id))
            and (reject := filter_reject_of(event)) is not None
        ):
            self.rejects.remember(sent, reject)
        coid = getattr(event, "client_order_id", None)
        symbol = getattr(event, "symbol", "")
        if self._exits.get(symbol) == coid and (
            isinstance(event, OrderCanceled | OrderExpired | OrderRejected)
            or (isinstance(event, OrderFilled) and event.order_complete)
        ):
            del self._exits[symbol]  # done (or failed: a new exit may be asked for)
        if coid in self._working:
            return self._on_working_event(coid, event, last_price, ts_ms)
        symbol = getattr(event, "symbol", "")
        plan = self.plans.get(symbol)
        if plan is None:
            return GateUpdate()
        update = apply_order_event(
            plan, event, self.config, self._filters[symbol], last_price, ts_ms
        )
        if update.stopped_out:
            self.stop_outs_ms[symbol] = getattr(event, "ts_event_ms", ts_ms)
        if update.plan.closed:  # late cancel confirmations then find no plan and change nothing
            self.plans.pop(symbol, None)
            self._dca.pop(symbol, None)
        else:
            self.plans[symbol] = update.plan
        self._remember_commands(update.commands)
        return GateUpdate(update.commands, problems=update.plan.problems if update.commands else ())

    def _on_working_event(
        self, coid: str, event: OrderEvent, last_price: Decimal, ts_ms: int
    ) -> GateUpdate:
        working = self._working[coid]
        done = False
        if isinstance(event, OrderFilled):
            working = replace(
                working,
                filled_qty=working.filled_qty + event.quantity,
                filled_cost=working.filled_cost + event.quantity * event.price,
            )
            self._working[coid] = working
            done = event.order_complete
        elif isinstance(event, OrderCanceled | OrderExpired | OrderRejected):
            done = True
        if not done:
            return GateUpdate()
        del self._working[coid]
        if working.filled_qty <= 0:
            return GateUpdate()
        avg = working.filled_cost / working.filled_qty
        filters = self._filters[working.symbol]
        if working.is_add and (plan := self.plans.get(working.symbol)) is not None:
            update = replan_after_add(
                plan, working.filled_qty, avg, self.config, filters, last_price, ts_ms
            )
            self._dca[working.symbol] = after_add_filled(self._dca[working.symbol], avg)
        else:
            entry = FilledEntry(
                working.symbol,
                working.side,
                avg,
                working.filled_qty,
                working.stop_distance,
                coid,
                working.seq,
            )
            update = plan_protection(entry, self.config, filters, last_price, ts_ms)
            self._dca[working.symbol] = DcaState(working.side, working.filled_qty, avg)
        self.plans[working.symbol] = update.plan
        self._remember_commands(update.commands)
        return GateUpdate(update.commands, problems=update.plan.problems)


def _fit_to_maxima(
    quantity: Decimal,
    filters: ExchangeFilters,
    order_type: OrderType,
    price: Decimal,
) -> Decimal:
    """Shrink a size to the symbol's max quantity and max notional (never grow it)."""
    for rule in filters.lot_for(order_type):
        if rule.max_qty:
            quantity = min(quantity, rule.max_qty)
    for notional in filters.notionals:
        applies = notional.apply_max_to_market or order_type is not OrderType.MARKET
        if notional.max_notional and applies:
            quantity = min(quantity, notional.max_notional / price)
    return quantity


__all__ = [
    "Allowed",
    "Approved",
    "EntryRequest",
    "GateDecision",
    "GateUpdate",
    "HaltInputs",
    "RiskGate",
]
