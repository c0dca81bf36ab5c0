"""Simulated execution venue for paper trading and backtests: deterministic, driven by exchange time.

`SimulatedVenue` is the synchronous matching core. It never reads a clock and draws no random
numbers: its only inputs are commands (`submit`, `cancel`, each with the exchange time it was
sent at) and market events (`on_book`, `on_trade`, `on_mark_price`, `advance`), so the same
sequence gives the same events whether it comes live (paper) or from a tape (backtest).

Time. A command sent at t reaches the venue at t + latency_ms. It is processed when the first
market call at or after that time arrives, before that call's own event, against the book as it
stands then (the book reported by the latest `on_book`). Funding settles the same way at each
funding time. Outcomes (accept/reject, fills) are stamped with the time the command arrived.

Matching (see docs/portfolio.md for the full rules):
- MARKET and the marketable part of a LIMIT walk the book best level first (taker, level prices).
  Liquidity our orders took stays taken until the level's visible quantity changes.
- A resting LIMIT fills as maker at its own price when the opposite best crosses it (`on_book`),
  when a trade whose aggressor hit our side prints strictly through it, or (queue model) when such
  trades at its price have used up the visible quantity that was ahead of it when it arrived.
- STOP_* / TAKE_PROFIT_* / TRAILING_STOP_MARKET trigger on trade prices (or mark prices for
  futures when configured), then execute as MARKET or LIMIT.
- Spot OCO lists (`submit_list`, exchange/simulated_oco.py): accepted or rejected whole, locked
  once; a leg that triggers or fills expires the other after its own events; a cancel ends both.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

from engine.events import MarkPriceUpdated, TradePrinted
from engine.model import Instrument, Market, Side
from engine.orders import (
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderType,
    TimeInForce,
)
from exchange.base import Balance, OpenOrder, VenuePosition
from exchange.simulated_account import Account, open_account, settle_funding
from exchange.simulated_oco import lock_holder, make_legs, oco_failure
from exchange.simulated_orders import (
    CONDITIONAL_TYPES,
    DEFAULT_FEES,
    LIMIT_AFTER_TRIGGER,
    BookView,
    Command,
    OrderValidator,
    QueueModel,
    Reject,
    SimOrder,
    SimulatedVenueConfig,
    SymbolState,
    TriggerSource,
    best_prices,
    check_filters,
    iter_levels,
    open_order_snapshots,
    priority,
    reference_price,
    stop_triggered,
    take_liquidity,
    taker_side_key,
    trailing_triggered,
    trigger_price,
    visible_at,
    vwap,
    walk_levels,
    walk_order,
    wire_price,
    wire_qty,
)

__all__ = ["BookView", "QueueModel", "SimulatedVenue", "SimulatedVenueConfig", "TriggerSource"]

_ZERO = Decimal(0)
_MAX_CONSUMED_LEVELS = 512  # remembered levels per side before the memory is dropped


class SimulatedVenue:
    """Deterministic matching core: commands and market events in, order events out."""

    def __init__(
        self,
        instruments: Iterable[Instrument],
        balances: Mapping[str, Decimal],
        config: SimulatedVenueConfig | None = None,
        validator: OrderValidator | None = None,
        *,
        next_order_id: int = 1,
        next_trade_id: int = 1,  # after a restart: above every trade id already journaled
    ) -> None:
        self.config = config or SimulatedVenueConfig()
        self._validator = validator  # None: the minimal tick/step/notional check_filters
        self.fees = self.config.fees or DEFAULT_FEES[self.config.market]
        self._symbols = {i.symbol: SymbolState(i) for i in instruments}
        for inst in self._symbols.values():
            if inst.instrument.market is not self.config.market:
                raise ValueError(
                    f"{inst.instrument.symbol} is {inst.instrument.market}, venue is {self.config.market}"
                )
        self.account: Account = open_account(self.config, balances, self.fees)
        self._queue: deque[Command] = deque()
        self._now_ms = 0
        self._seq = 0
        self._next_order_id = next_order_id
        self._next_trade_id = next_trade_id
        self.unknown_cancels = 0  # cancels of orders not open any more (Binance -2011)

    @property
    def now_ms(self) -> int:
        """Return the latest exchange time the venue has seen."""
        return self._now_ms

    # ------------------------------------------------------------------ commands

    def submit(self, intent: OrderIntent, now_ms: int) -> list[OrderEvent]:
        """Send an order at exchange time now_ms; return the events due by now_ms (latency 0)."""
        self._queue.append(
            Command(now_ms + self.config.latency_ms, intent, intent.symbol, intent.client_order_id)
        )
        return self.advance(now_ms)

    def submit_list(
        self, list_client_order_id: str, legs: Sequence[OrderIntent], now_ms: int
    ) -> list[OrderEvent]:
        """Send a spot OCO order list at now_ms: both legs are accepted or rejected together."""
        first = legs[0]
        self._queue.append(
            Command(
                now_ms + self.config.latency_ms,
                first,
                first.symbol,
                first.client_order_id,
                tuple(legs),
                list_client_order_id,
            )
        )
        return self.advance(now_ms)

    def cancel(self, symbol: str, client_order_id: str, now_ms: int) -> list[OrderEvent]:
        """Ask to cancel an order at now_ms; OrderCanceled follows if it is still open on arrival."""
        self._queue.append(Command(now_ms + self.config.latency_ms, None, symbol, client_order_id))
        return self.advance(now_ms)

    def advance(self, now_ms: int) -> list[OrderEvent]:
        """Process every command and funding settlement due at or before now_ms."""
        events: list[OrderEvent] = []
        queue = self._queue
        if (not queue or queue[0].effective_ms > now_ms) and not any(
            s.next_funding_ms is not None and s.next_funding_ms <= now_ms
            for s in self._symbols.values()
        ):
            self._now_ms = max(self._now_ms, now_ms)
            return events
        while True:
            command_ms = self._queue[0].effective_ms if self._queue else math.inf
            funding_ms, funding_state = math.inf, None
            for state in self._symbols.values():
                if state.next_funding_ms is not None and state.next_funding_ms < funding_ms:
                    funding_ms, funding_state = state.next_funding_ms, state
            if min(command_ms, funding_ms) > now_ms:
                break
            if funding_state is not None and funding_ms <= command_ms:
                self._now_ms = max(self._now_ms, int(funding_ms))
                events.extend(settle_funding(self.account, funding_state))
            else:
                command = self._queue.popleft()
                self._now_ms = max(self._now_ms, command.effective_ms)
                events.extend(self._run(command))
        self._now_ms = max(self._now_ms, now_ms)
        return events

    def _run(self, command: Command) -> list[OrderEvent]:
        ts = command.effective_ms
        if command.legs:
            return self._activate_list(command.list_id, command.legs, ts)
        if command.intent is not None:
            return self._activate(command.intent, ts)
        return self._cancel(command.symbol, command.client_order_id, ts)

    # ------------------------------------------------------------- market events

    def on_book(self, symbol: str, book: BookView, ts_ms: int) -> list[OrderEvent]:
        """Take the current book of symbol (already updated); fill resting orders it crosses."""
        state = self._symbols.get(symbol)
        if state is None:
            return []
        state.book = book
        for consumed in state.consumed.values():
            if len(consumed) > _MAX_CONSUMED_LEVELS:
                consumed.clear()
        events = self.advance(ts_ms)
        if not state.resting:
            return events
        best_bid, best_ask = best_prices(state)
        for order in list(state.resting):
            if order.intent.client_order_id not in state.orders:
                continue  # filled by an earlier order's cross in this loop
            price = order.working_price
            assert price is not None
            if order.side is Side.BUY:
                own_gone = best_bid is None or best_bid < price
                crossed = best_ask is not None and best_ask <= price
            else:
                own_gone = best_ask is None or best_ask > price
                crossed = best_bid is not None and best_bid >= price
            if own_gone:
                order.queue_ahead = _ZERO  # our price level emptied: nobody is ahead any more
            if crossed:
                events.extend(self._cross_resting(state, order, ts_ms))
        return events

    def on_trade(self, trade: TradePrinted) -> list[OrderEvent]:
        """Fill resting orders a trade reaches, then trigger conditional orders on its price."""
        state = self._symbols.get(trade.symbol)
        if state is None:
            return []
        ts = trade.ts_event_ms
        events = self.advance(ts)
        price = wire_price(state.instrument, trade.price)
        # buyer_is_maker: the aggressor sold, so it could only have hit our bids
        hit_side = Side.BUY if trade.buyer_is_maker else Side.SELL
        hit = [o for o in state.resting if o.side is hit_side]
        available = wire_qty(state.instrument, trade.qty) if hit else _ZERO
        for order in hit:
            if available <= 0:
                break
            limit = order.working_price
            assert limit is not None
            if price < limit if order.side is Side.BUY else price > limit:
                take = min(self._fillable(order), available)
            elif price == limit and self.config.queue_model is QueueModel.QUEUE:
                ahead = min(order.queue_ahead, available)
                order.queue_ahead -= ahead
                available -= ahead
                take = min(self._fillable(order), available)
            else:
                continue
            available -= take
            events.extend(self._fill_resting(state, order, limit, take, ts))
        state.last_price = price
        if state.waiting and (
            self.config.stop_trigger is TriggerSource.LAST or self.config.market is Market.SPOT
        ):
            events.extend(self._check_triggers(state, price, ts))
        return events

    def on_mark_price(self, mark: MarkPriceUpdated) -> list[OrderEvent]:
        """Settle funding due before this event, then take its mark price, rate and next time."""
        state = self._symbols.get(mark.symbol)
        if state is None:
            return []
        events = self.advance(mark.ts_event_ms)
        state.mark_price = wire_price(state.instrument, mark.mark_price)
        state.funding_rate = Decimal(repr(mark.funding_rate))
        if mark.next_funding_ms > state.last_funding_ms:
            state.next_funding_ms = mark.next_funding_ms
        if self.config.stop_trigger is TriggerSource.MARK and self.config.market is Market.USDM:
            events.extend(self._check_triggers(state, state.mark_price, mark.ts_event_ms))
        return events

    # ------------------------------------------------------------------ snapshots

    def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        """Return the open orders (resting or untriggered), in activation order."""
        if symbol is None:
            states = list(self._symbols.values())
        else:
            states = [self._symbols[symbol]] if symbol in self._symbols else []
        return open_order_snapshots(states)

    def open_order_count(self, symbol: str | None = None) -> int:
        """Return how many orders are open (cheap; open_orders builds snapshots)."""
        if symbol is not None:
            state = self._symbols.get(symbol)
            return len(state.orders) if state else 0
        return sum(len(s.orders) for s in self._symbols.values())

    def order_list_of(self, symbol: str, client_order_id: str) -> tuple[str, str] | None:
        """Return (list id, other leg's id) while an open order's OCO sibling is open, else None."""
        state = self._symbols.get(symbol)
        order = state.orders.get(client_order_id) if state else None
        if order is None or order.oco_sibling is None:
            return None
        return order.list_id, order.oco_sibling.intent.client_order_id

    def balances(self) -> dict[str, Balance]:
        return self.account.balances()

    def positions(self) -> dict[str, VenuePosition]:
        return self.account.positions()

    def marks(self) -> dict[str, Decimal]:
        """Return the price each symbol is valued at: mark price, else last trade price."""
        out = {}
        for symbol, state in self._symbols.items():
            price = state.mark_price if state.mark_price is not None else state.last_price
            if price is not None:
                out[symbol] = price
        return out

    # ------------------------------------------------------------------ internals

    def _fillable(self, order: SimOrder) -> Decimal:
        """Return how much of order may fill now (reduce-only orders stop at the position)."""
        if not order.intent.reduce_only:
            return order.remaining
        limit = self.account.reducible(order.symbol, order.side)
        return order.remaining if limit is None else min(order.remaining, limit)

    def _reject(self, intent: OrderIntent, reason: str, message: str, ts: int) -> list[OrderEvent]:
        return [OrderRejected(intent.symbol, intent.client_order_id, str(reason), message, ts)]

    def _activate(self, intent: OrderIntent, ts: int) -> list[OrderEvent]:
        state = self._symbols.get(intent.symbol)
        if state is None:
            return self._reject(
                intent, Reject.UNKNOWN_SYMBOL, f"unknown symbol {intent.symbol}", ts
            )
        if intent.client_order_id in state.orders:
            return self._reject(
                intent, Reject.DUPLICATE_CLIENT_ORDER_ID, "Duplicate order sent.", ts
            )
        failure = self._filter_failure(intent, state)
        if failure is not None:
            return self._reject(intent, failure[0], failure[1], ts)
        conditional = intent.type in CONDITIONAL_TYPES
        trigger_at = trigger_price(state, self.config)
        if (
            conditional
            and intent.type is not OrderType.TRAILING_STOP_MARKET
            and trigger_at is not None
            and stop_triggered(intent, trigger_at)
        ):
            return self._reject(
                intent, Reject.WOULD_TRIGGER_IMMEDIATELY, "Order would trigger immediately.", ts
            )
        order = SimOrder(
            intent, state.instrument, str(self._next_order_id), self._seq, triggered=not conditional
        )
        order.working_price = intent.price if intent.type is OrderType.LIMIT else None
        marks = self.marks()
        refusal = self.account.reserve(order, marks)
        if refusal is None and intent.type is OrderType.MARKET:
            plan = self._walk(state, order)
            qty, notional = vwap(plan)
            if qty > 0:
                refusal = self.account.check_taker(order, qty, notional, marks)
        if refusal is not None:
            self.account.release(order)
            return self._reject(
                intent, refusal, f"{refusal.value}: account cannot cover the order", ts
            )
        self._next_order_id += 1
        self._seq += 1
        state.orders[intent.client_order_id] = order
        events: list[OrderEvent] = [
            OrderAccepted(intent.symbol, intent.client_order_id, order.venue_order_id, ts)
        ]
        if order.triggered:
            events.extend(self._execute(state, order, ts))
        else:
            state.waiting.append(order)
            if intent.type is OrderType.TRAILING_STOP_MARKET and trigger_at is not None:
                trailing_triggered(order, trigger_at)  # starts tracking; cannot trigger yet
        return events

    def _filter_failure(self, intent: OrderIntent, state: SymbolState) -> tuple[str, str] | None:
        reference = reference_price(state, self.config)
        if self._validator is not None:
            return self._validator(intent, reference)
        return check_filters(intent, state.instrument, reference)

    def _activate_list(
        self, list_id: str, legs: tuple[OrderIntent, ...], ts: int
    ) -> list[OrderEvent]:
        def refuse(reason: str, message: str) -> list[OrderEvent]:
            return [self._reject(leg, reason, message, ts)[0] for leg in legs]

        state = self._symbols.get(legs[0].symbol)
        if state is None:
            return refuse(Reject.UNKNOWN_SYMBOL, f"unknown symbol {legs[0].symbol}")
        if any(leg.client_order_id in state.orders for leg in legs):
            return refuse(Reject.DUPLICATE_CLIENT_ORDER_ID, "Duplicate order sent.")
        for leg in legs:
            if (failure := self._filter_failure(leg, state)) is not None:
                return refuse(*failure)
        failure = oco_failure(
            legs, self.config.market, trigger_price(state, self.config), *best_prices(state)
        )
        if failure is not None:
            return refuse(*failure)
        orders = make_legs(legs, state.instrument, self._next_order_id, self._seq, list_id)
        holder = lock_holder(orders)  # the list locks once: one leg holds it for both
        refusal = self.account.reserve(holder, self.marks())
        if refusal is not None:
            self.account.release(holder)
            return refuse(refusal, f"{refusal.value}: account cannot cover the order list")
        self._next_order_id += len(orders)
        self._seq += len(orders)
        events: list[OrderEvent] = []
        for order in orders:
            state.orders[order.intent.client_order_id] = order
            events.append(
                OrderAccepted(order.symbol, order.intent.client_order_id, order.venue_order_id, ts)
            )
            if order.triggered:  # the LIMIT_MAKER leg rests at once
                assert order.working_price is not None
                order.queue_ahead = visible_at(state, order.side, order.working_price)
                bisect.insort(state.resting, order, key=priority)
            else:
                state.waiting.append(order)
        return events

    def _end_list(self, state: SymbolState, order: SimOrder, ts: int) -> list[OrderEvent]:
        """Expire the other leg of order's OCO (order triggered or fills); the lock moves over."""
        sibling = order.oco_sibling
        if sibling is None:
            return []
        order.oco_sibling = sibling.oco_sibling = None
        held = sibling.reserved > 0
        self._close(state, sibling)
        if held:  # the freed lock covers this leg: taking it again cannot fail
            self.account.reserve(order, self.marks())
        coid = sibling.intent.client_order_id
        return [OrderExpired(sibling.symbol, coid, ts, Reject.OCO_OTHER_LEG.value)]

    def _cancel(self, symbol: str, client_order_id: str, ts: int) -> list[OrderEvent]:
        state = self._symbols.get(symbol)
        order = state.orders.get(client_order_id) if state else None
        if state is None or order is None:
            self.unknown_cancels += 1
            return []
        sibling = order.oco_sibling
        self._close(state, order)
        events: list[OrderEvent] = [OrderCanceled(symbol, client_order_id, ts, "canceled")]
        if sibling is not None:  # cancelling one leg of an order list cancels the list
            order.oco_sibling = sibling.oco_sibling = None
            self._close(state, sibling)
            events.append(OrderCanceled(symbol, sibling.intent.client_order_id, ts, "canceled"))
        return events

    def _close(self, state: SymbolState, order: SimOrder) -> None:
        self.account.release(order)
        state.orders.pop(order.intent.client_order_id, None)
        for queue in (state.resting, state.waiting):
            if order in queue:
                queue.remove(order)

    def _expire(
        self, state: SymbolState, order: SimOrder, reason: Reject, ts: int
    ) -> list[OrderEvent]:
        self._close(state, order)
        return [OrderExpired(order.symbol, order.intent.client_order_id, ts, reason.value)]

    def _walk(
        self, state: SymbolState, order: SimOrder
    ) -> list[tuple[float, float, Decimal, Decimal]]:
        """Return the taker fills order would get from the current book (nothing is changed)."""
        return walk_order(state, order, self._fillable(order), self.config.fill_without_book)

    def _execute(self, state: SymbolState, order: SimOrder, ts: int) -> list[OrderEvent]:
        """Run a triggered order against the book: taker part, then rest, expire or complete."""
        intent = order.intent
        limit = order.working_price
        if intent.reduce_only and self._fillable(order) <= 0:
            return self._expire(state, order, Reject.REDUCE_ONLY_REJECTED, ts)
        plan = self._walk(state, order)
        qty, notional = vwap(plan)
        if order.post_only and qty > 0:
            return self._expire(state, order, Reject.POST_ONLY_WOULD_TAKE, ts)
        if intent.time_in_force is TimeInForce.FOK and limit is not None and qty < order.remaining:
            return self._expire(state, order, Reject.FOK_NOT_FILLED, ts)
        if qty > 0:
            refusal = self.account.check_taker(order, qty, notional, self.marks())
            if refusal is not None:
                return self._expire(state, order, refusal, ts)
        events: list[OrderEvent] = []
        key = taker_side_key(order.side)
        for level_key, level_qty, price, take in plan:
            if not math.isnan(level_key):
                take_liquidity(state.consumed[key], level_key, level_qty, take)
            events.append(self._fill(state, order, price, take, Liquidity.TAKER, ts))
        if order.remaining <= 0:
            return events
        if limit is None:
            if state.book is None and not plan:
                return events + self._expire(state, order, Reject.NO_BOOK, ts)
            reason = (
                Reject.REDUCE_ONLY_REJECTED if self._fillable(order) <= 0 else Reject.NO_LIQUIDITY
            )
            return events + self._expire(state, order, reason, ts)
        if intent.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            return events + self._expire(state, order, Reject.IOC_REMAINDER, ts)
        if intent.reduce_only and self._fillable(order) <= 0:
            return events + self._expire(state, order, Reject.REDUCE_ONLY_REJECTED, ts)
        order.queue_ahead = visible_at(state, order.side, limit)
        bisect.insort(state.resting, order, key=priority)
        return events

    def _cross_resting(self, state: SymbolState, order: SimOrder, ts: int) -> list[OrderEvent]:
        """Fill a resting order from opposite levels that crossed it (makers at our price)."""
        assert state.book is not None and order.working_price is not None
        key = taker_side_key(order.side)
        levels = iter_levels(state.book, key)
        plan = walk_levels(
            state.instrument,
            levels,
            order.side,
            self._fillable(order),
            order.working_price,
            state.consumed[key],
        )
        events: list[OrderEvent] = []
        for level_key, level_qty, _, take in plan:
            take_liquidity(state.consumed[key], level_key, level_qty, take)
            events.extend(self._fill_resting(state, order, order.working_price, take, ts))
            if order.intent.client_order_id not in state.orders:
                break
        return events

    def _fill_resting(
        self, state: SymbolState, order: SimOrder, price: Decimal, qty: Decimal, ts: int
    ) -> list[OrderEvent]:
        if qty <= 0:
            if order.intent.reduce_only and self._fillable(order) <= 0:
                return self._expire(state, order, Reject.REDUCE_ONLY_REJECTED, ts)
            return []
        other_leg = self._end_list(state, order, ts)  # an OCO's limit leg: before its fill
        events: list[OrderEvent] = [self._fill(state, order, price, qty, Liquidity.MAKER, ts)]
        events.extend(other_leg)
        if order.remaining > 0 and order.intent.reduce_only and self._fillable(order) <= 0:
            events.extend(self._expire(state, order, Reject.REDUCE_ONLY_REJECTED, ts))
        return events

    def _fill(
        self,
        state: SymbolState,
        order: SimOrder,
        price: Decimal,
        qty: Decimal,
        liquidity: Liquidity,
        ts: int,
    ) -> OrderFilled:
        fee = self.fees.fee(price, qty, maker=liquidity is Liquidity.MAKER)
        self.account.apply_fill(order, price, qty, fee)
        order.filled += qty
        complete = order.remaining <= 0
        if complete:
            self._close(state, order)
        trade_id = self._next_trade_id
        self._next_trade_id += 1
        futures = self.config.market is Market.USDM
        asset = self.config.margin_asset if futures else state.instrument.quote_asset
        coid = order.intent.client_order_id
        return OrderFilled(
            order.symbol,
            coid,
            trade_id,
            order.side,
            price,
            qty,
            fee,
            asset,
            liquidity,
            ts,
            complete,
        )

    def _check_triggers(self, state: SymbolState, price: Decimal, ts: int) -> list[OrderEvent]:
        events: list[OrderEvent] = []
        for order in list(state.waiting):
            if order.intent.client_order_id not in state.orders:
                continue  # the other leg of an OCO that just triggered
            if order.intent.type is OrderType.TRAILING_STOP_MARKET:
                fired = trailing_triggered(order, price)
            else:
                fired = stop_triggered(order.intent, price)
            if not fired:
                continue
            order.triggered = True
            state.waiting.remove(order)
            other_leg = self._end_list(state, order, ts)
            if order.intent.type in LIMIT_AFTER_TRIGGER:
                order.working_price = order.intent.price
            refusal = self.account.reserve(order, self.marks(), at_trigger=True)
            if refusal is not None:
                events.extend(self._expire(state, order, refusal, ts) + other_leg)
                continue
            events.extend(self._execute(state, order, ts) + other_leg)
        return events
