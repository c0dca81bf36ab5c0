"""The Binance execution venue (testnet, live) behind the trading loop's venue interface.

The trading loop is synchronous and deterministic: it calls `submit`, `submit_list` and `cancel`
and expects order events later. Here those calls only enqueue a command on the symbol's queue and
return no events; one worker task per symbol sends them in order through the `OrderManager`
(journal first, §5.3 unknown-outcome protocol), so a cancel never overtakes the placement it
cancels and one slow symbol never delays another. Every order event — from a REST answer, the
user stream or a reconciliation — passes through the manager's fold, which emits each acceptance,
fill (by trade id) and terminal state exactly once, and reaches the loop through `set_listener`.

The user stream feeds the same fold. After a gap (`UserStreamGap` … `UserStreamLive`) every order
we still think is working is queried by client id and the account is re-read, because Binance
never replays user events. On USDⓈ-M the `countdownCancelAll` dead-man switch is re-armed for each
symbol that holds nothing while the engine lives, so a frozen engine's resting entries are
cancelled by the exchange; it is disarmed while a position is open, so a protective stop never
depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog

from engine.clock import Clock
from engine.events import MarkPriceUpdated, TradePrinted
from engine.model import Market
from engine.orders import (
    FundingPaid,
    Liquidity,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderRole,
    OrderStatus,
    SubmitOrderList,
)
from exchange.base import Balance, OpenOrder, VenuePosition
from exchange.binance.order_manager import OrderManager, TrackedOrder
from exchange.binance.orders import MalformedOrderBody, VenueFill, VenueOrder
from exchange.binance.rest import BinanceRest
from exchange.binance.user_events import (
    AccountSnapshot,
    AlgoUpdate,
    OrderUpdate,
    account_outputs,
)
from exchange.binance.userstream import UserStreamGap, UserStreamItem, UserStreamLive
from exchange.errors import ExchangeError, Rejected, Retryable, UnknownOutcome

log = structlog.get_logger("tickloop.binance.venue")

EventListener = Callable[[list[OrderEvent]], None]
_STATUS = {s.value: s for s in OrderStatus}
_RECONCILE_ATTEMPTS = 6
_RECONCILE_BACKOFF_S = 0.2
_RECONCILE_BACKOFF_MAX_S = 5.0
_ALGO_STATUS = {
    "NEW": OrderStatus.NEW,
    "CANCELED": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
}


@dataclass(frozen=True, slots=True)
class BinanceVenueConfig:
    latency_ms: int = 0  # the shutdown sequence reads it; a real venue answers by itself
    countdown_ms: int = 0  # USDⓈ-M dead-man switch per symbol; 0 leaves it off
    countdown_refresh_s: float = 20.0  # re-arm period (well inside countdown_ms)
    drain_timeout_s: float = 10.0
    reconcile_interval_s: float = 60.0  # openOrders vs our view (§5.3 step 4); 0 turns it off
    stale_check_s: float = 5.0  # how often entries older than the manager's max age are cancelled


@dataclass(frozen=True, slots=True)
class _Submit:
    intent: OrderIntent
    ts_ms: int


@dataclass(frozen=True, slots=True)
class _SubmitList:
    command: SubmitOrderList


@dataclass(frozen=True, slots=True)
class _Cancel:
    symbol: str
    client_order_id: str


@dataclass(frozen=True, slots=True)
class _Placing:
    """An order already on the wire: the worker finishes it (answer, retries, reconciliation)."""

    intent: OrderIntent
    finishing: Coroutine[Any, Any, OrderStatus]


_Command = _Submit | _SubmitList | _Cancel | _Placing


def venue_order_of(update: OrderUpdate) -> VenueOrder:
    """Translate a user-stream order update into the manager's VenueOrder (at most one fill)."""
    fills: tuple[VenueFill, ...] = ()
    if update.execution_type in ("TRADE", "CALCULATED") and update.last_qty > 0:
        liquidity = Liquidity.MAKER if update.maker else Liquidity.TAKER
        fills = (VenueFill(update.trade_id, update.last_price, update.last_qty, update.commission,
                           update.commission_asset, liquidity, update.ts_transaction_ms),)  # fmt: skip
    status = update.order_status
    return VenueOrder(
        symbol=update.symbol,
        client_order_id=update.client_order_id,
        venue_order_id=update.venue_order_id,
        status=OrderStatus.EXPIRED if status == "EXPIRED_IN_MATCH" else _STATUS.get(status, OrderStatus.NEW),
        side=update.side,
        orig_qty=update.quantity,
        executed_qty=update.cum_qty,
        ts_ms=update.ts_transaction_ms,
        fills=fills,
    )


class BinanceVenue:
    """Orders to Binance through an OrderManager; the user stream and REST keep it honest."""

    def __init__(
        self,
        market: Market,
        symbols: Sequence[str],
        rest: BinanceRest,
        manager: OrderManager,
        clock: Clock,
        user_queue: asyncio.Queue[UserStreamItem],
        config: BinanceVenueConfig | None = None,
    ) -> None:
        self.market = market
        self.config = config or BinanceVenueConfig()
        self.manager = manager
        self._rest = rest
        self._clock = clock
        self._user_queue = user_queue
        self._queues: dict[str, asyncio.Queue[_Command]] = {s: asyncio.Queue() for s in symbols}
        self._busy: dict[str, bool] = {s: False for s in symbols}
        self._listener: EventListener | None = None
        self._early: list[OrderEvent] = []  # events before a listener was set (start-up)
        # queued, not yet handed to the manager: they count as open (a halt must see them)
        self._queued: dict[str, OrderIntent] = {}
        self._queued_signal = False  # a command was queued since the frame reader last asked
        self._lists: dict[str, tuple[str, str]] = {}  # leg id -> (list id, other leg id)
        self._algo_of_order: dict[str, str] = {}  # triggered algo's order id -> client algo id
        self._balances: dict[str, Balance] = {}
        self._positions: dict[str, VenuePosition] = {}
        self._marks: dict[str, Decimal] = {}
        self.stream_live = False
        self.gaps = 0

    # -- the loop's synchronous interface ------------------------------------------------------
    @property
    def now_ms(self) -> int:
        """Return the venue's time: our clock corrected by the measured server-time offset."""
        return self._rest.timestamp_ms()

    def set_listener(self, listener: EventListener) -> None:
        """Deliver every order event to listener from now on (and those held since start-up)."""
        self._listener = listener
        early, self._early = self._early, []
        if early:
            listener(early)

    def emit(self, event: OrderEvent) -> None:
        """The manager's sink: pass one event on (held until a listener is set)."""
        if isinstance(event, OrderCanceled | OrderExpired | OrderRejected) or (
            isinstance(event, OrderFilled) and event.order_complete
        ):
            self._end_list(event.client_order_id)
        if self._listener is None:
            self._early.append(event)
        else:
            self._listener([event])

    def submit(self, intent: OrderIntent, now_ms: int) -> list[OrderEvent]:
        """Send or queue an order (the caller journaled it); its events arrive through the listener.

        When nothing of the symbol is queued or being sent, the order is written to a warm
        connection before this returns (no task switch between the signal and the wire); the
        symbol's worker then finishes it, so what is queued after it still goes after it.
        """
        queue = self._queue(intent.symbol)
        if not self._busy.get(intent.symbol) and queue.empty():
            finishing = self.manager.submit_now(intent, now_ms)
            if finishing is not None:
                self._busy[intent.symbol] = True
                queue.put_nowait(_Placing(intent, finishing))
                self._queued_signal = True
                return []
        queue.put_nowait(_Submit(intent, now_ms))
        self._queued[intent.client_order_id] = intent
        self._queued_signal = True
        return []

    def submit_list(
        self, list_client_order_id: str, legs: Sequence[OrderIntent], now_ms: int
    ) -> list[OrderEvent]:
        """Queue a spot OCO list (both legs journaled by the caller)."""
        first, second = legs
        self._lists[first.client_order_id] = (list_client_order_id, second.client_order_id)
        self._lists[second.client_order_id] = (list_client_order_id, first.client_order_id)
        command = SubmitOrderList(list_client_order_id, tuple(legs), now_ms)
        self._queue(first.symbol).put_nowait(_SubmitList(command))
        for leg in legs:
            self._queued[leg.client_order_id] = leg
        self._queued_signal = True
        return []

    def cancel(self, symbol: str, client_order_id: str, now_ms: int) -> list[OrderEvent]:
        """Queue a cancel behind anything already queued for the symbol."""
        self._queue(symbol).put_nowait(_Cancel(symbol, client_order_id))
        self._queued_signal = True
        return []

    def take_queued_signal(self) -> bool:
        """Return (and clear) whether a command was queued: its sender needs the event loop."""
        queued, self._queued_signal = self._queued_signal, False
        return queued

    def advance(self, now_ms: int) -> list[OrderEvent]:
        return []  # the exchange keeps its own time

    def on_book(self, symbol: str, book: Any, ts_ms: int) -> list[OrderEvent]:
        return []  # the exchange matches; nothing to simulate

    def on_trade(self, trade: TradePrinted) -> list[OrderEvent]:
        self._marks[trade.symbol] = Decimal(str(trade.price))
        return []

    def on_mark_price(self, mark: MarkPriceUpdated) -> list[OrderEvent]:
        self._marks[mark.symbol] = Decimal(str(mark.mark_price))
        return []

    def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        """Return the orders working (or possibly working) on the venue, as far as we know."""
        queued = [OpenOrder(i.symbol, i.client_order_id, "", i.side, i.quantity, Decimal(0),
                            OrderStatus.PENDING, i) for i in self._queued.values()]  # fmt: skip
        working = [_open_order(t) for t in self.manager.open_orders()]
        return [o for o in queued + working if symbol is None or o.symbol == symbol]

    def open_order_count(self, symbol: str | None = None) -> int:
        """Return len(open_orders(symbol)) without building them (asked per symbol per entry)."""
        intents = [*self._queued.values(), *(t.intent for t in self.manager.open_orders())]
        return sum(1 for i in intents if symbol is None or i.symbol == symbol)

    def order_list_of(self, symbol: str, client_order_id: str) -> tuple[str, str] | None:
        """Return (list id, other leg id) while both legs of an OCO are working, else None."""
        pair = self._lists.get(client_order_id)
        if pair is None or self.manager.status(pair[1]) in _DONE:
            return None
        return pair

    def balances(self) -> dict[str, Balance]:
        return dict(self._balances)

    def positions(self) -> dict[str, VenuePosition]:
        return {s: p for s, p in self._positions.items() if p.qty != 0}

    def marks(self) -> dict[str, Decimal]:
        return dict(self._marks)

    def set_account(self, balances: dict[str, Balance], positions: dict[str, VenuePosition]) -> None:
        """Replace the account view with a REST reading (start-up, after a user-stream gap)."""
        self._balances = dict(balances)
        self._positions = dict(positions)

    @property
    def idle(self) -> bool:
        """True when no command is queued or being sent."""
        return not any(self._busy.values()) and all(q.empty() for q in self._queues.values())

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued command was sent and answered; False on timeout."""
        deadline_ns = self._clock.monotonic_ns() + int((timeout_s or self.config.drain_timeout_s) * 1e9)
        while not self.idle:
            if self._clock.monotonic_ns() >= deadline_ns:
                return False
            await self._clock.sleep(0.005)
        return True

    # -- the tasks -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Send queued commands, fold the user stream, keep the dead-man switch armed."""
        async with asyncio.TaskGroup() as tg:
            for symbol in self._queues:
                tg.create_task(self._worker(symbol), name=f"orders-{symbol}")
            tg.create_task(self._consume_user_stream(), name="user-events")
            if self._rest.wire is not None:  # warm connections new orders are written to at once
                tg.create_task(self._rest.wire.run(), name="order-wire")
            if self.market is Market.USDM and self.config.countdown_ms > 0:
                tg.create_task(self._keep_countdown(), name="countdown")
            tg.create_task(self._age_out_entries(), name="stale-entries")
            if self.config.reconcile_interval_s > 0:
                tg.create_task(self._reconcile_periodically(), name="reconcile")

    async def _worker(self, symbol: str) -> None:
        queue = self._queues[symbol]
        while True:
            command = await queue.get()
            self._busy[symbol] = True
            try:
                await self._send(command)
            except (ExchangeError, MalformedOrderBody) as exc:  # the manager decided what it could
                log.error("order_command_failed", symbol=symbol, command=type(command).__name__,
                          error=repr(exc))  # fmt: skip
            except Exception:  # noqa: BLE001 - one bad answer must not stop the symbol's orders
                log.exception("order_command_crashed", symbol=symbol, command=type(command).__name__)
            finally:
                self._busy[symbol] = not queue.empty()

    async def _send(self, command: _Command) -> None:
        if isinstance(command, _Submit | _SubmitList):
            legs = (command.intent,) if isinstance(command, _Submit) else command.command.orders
            for leg in legs:  # from here on the manager tracks it (PENDING until answered)
                self._queued.pop(leg.client_order_id, None)
        if isinstance(command, _Placing):
            await command.finishing
        elif isinstance(command, _Submit):
            await self.manager.submit(command.intent, command.ts_ms, journaled=True)
        elif isinstance(command, _SubmitList):
            await self.manager.submit_list(command.command, journaled=True)
        elif (tracked := self.manager.tracked(command.client_order_id)) is None or (
            tracked.status is OrderStatus.REJECTED  # never reached the book: nothing to cancel
        ):
            log.warning("cancel_unknown_order", symbol=command.symbol,
                        client_order_id=command.client_order_id)  # fmt: skip
        else:
            await self.manager.cancel(command.client_order_id)

    async def _consume_user_stream(self) -> None:
        while True:
            item = await self._user_queue.get()
            try:
                await self.on_user_item(item)
            except (ExchangeError, MalformedOrderBody) as exc:
                log.error("user_event_reconcile_failed", error=repr(exc))
            except Exception:  # noqa: BLE001 - the user stream must keep flowing
                log.exception("user_event_crashed", item=type(item).__name__)

    async def on_user_item(self, item: UserStreamItem) -> None:
        """Fold one user-stream item; reconcile by REST when the stream comes back."""
        if isinstance(item, UserStreamGap):
            self.stream_live = False
            self.gaps += 1
            log.warning("user_stream_gap", reason=item.reason)
        elif isinstance(item, UserStreamLive):
            self.stream_live = True
            if item.after != "start":
                await self.reconcile_working()
        elif isinstance(item, OrderUpdate):
            order = venue_order_of(item)
            if self.manager.tracked(order.client_order_id) is None:
                algo_id = self._algo_of_order.get(order.venue_order_id)
                if algo_id is None:
                    log.info("foreign_order_update", symbol=order.symbol,
                             client_order_id=order.client_order_id)  # fmt: skip
                    return
                order = _as_client(order, algo_id)
            self.manager.apply(order)
        elif isinstance(item, AlgoUpdate):
            self._on_algo(item)
        elif isinstance(item, AccountSnapshot):
            self._on_account(item)

    async def reconcile_working(self) -> int:
        """Query every order we think may be working; return how many were queried."""
        # In flight (PENDING) or being settled (UNKNOWN): the manager's placement path owns them,
        # and the venue may not know them yet (-2013), as in reconcile_open_orders.
        working = [t for t in self.manager.open_orders()
                   if t.status not in (OrderStatus.PENDING, OrderStatus.UNKNOWN)]  # fmt: skip
        for tracked in working:
            cid = tracked.intent.client_order_id
            try:
                await self._persist(lambda cid=cid: self.manager.refresh(cid))  # type: ignore[misc]
            except Rejected as exc:  # one order the venue refuses to show must not stop the rest
                log.warning("reconcile_order_failed", client_order_id=cid, error=repr(exc))
        await self._persist(self.refresh_account)
        log.info("reconciled_after_gap", orders=len(working))
        return len(working)

    async def _persist(self, call: Callable[[], Awaitable[Any]]) -> None:
        # Binance never replays user events: a reconciliation given up after one 429/5xx
        # loses whatever happened during the gap for good.
        delay_s = _RECONCILE_BACKOFF_S
        for attempt in range(1, _RECONCILE_ATTEMPTS + 1):
            try:
                await call()
                return
            except (Retryable, UnknownOutcome) as exc:
                if attempt == _RECONCILE_ATTEMPTS:
                    raise
                log.warning("reconcile_retry", attempt=attempt, error=repr(exc))
                wait_s = exc.retry_after_s if isinstance(exc, Retryable) else None
                await self._clock.sleep(wait_s or delay_s)
                delay_s = min(delay_s * 2, _RECONCILE_BACKOFF_MAX_S)

    async def refresh_account(self) -> None:
        """Re-read balances and positions by REST."""
        from exchange.binance.startup import read_account  # the start-up reader, shared

        balances, positions = await read_account(self._rest)
        self.set_account(balances, positions)

    async def _age_out_entries(self) -> None:
        while True:
            await self._clock.sleep(self.config.stale_check_s)
            try:
                await self.manager.cancel_stale()
            except ExchangeError as exc:
                log.warning("stale_cancel_failed", error=repr(exc))
            # a cancel refused until the end (429, 5xx) is owed: send it again until it holds
            await self.manager.retry_cancels()

    async def _reconcile_periodically(self) -> None:
        while True:
            await self._clock.sleep(self.config.reconcile_interval_s)
            try:
                await self.reconcile_open_orders()
            except ExchangeError as exc:
                log.warning("reconcile_failed", error=repr(exc))

    async def reconcile_open_orders(self) -> list[str]:
        """Compare the venue's open orders with ours; query the ones that ended unseen.

        Cancels not confirmed yet (refused to the end by 429/5xx) are sent again first.
        Returns the client ids the venue lists that we do not track (placed by someone else).
        """
        from exchange.binance.startup import venue_open_orders

        await self.manager.retry_cancels()
        foreign: list[str] = []
        for symbol in self._queues:
            listed = await venue_open_orders(self._rest, symbol)
            on_venue = {str(o.get("clientOrderId") or o.get("clientAlgoId") or "") for o in listed}
            for tracked in self.manager.open_orders():
                cid = tracked.intent.client_order_id
                if tracked.intent.symbol == symbol and cid not in on_venue and tracked.status not in (
                    OrderStatus.PENDING, OrderStatus.UNKNOWN
                ):  # in flight or being reconciled by the manager: not ours to query here
                    await self.manager.refresh(cid)
            foreign += sorted(c for c in on_venue if self.manager.tracked(c) is None)
        if foreign:
            log.warning("foreign_open_orders", client_order_ids=foreign)
        return foreign

    def _holds(self, symbol: str) -> bool:
        """True while symbol has a position or protective orders working."""
        position = self._positions.get(symbol)
        return (position is not None and position.qty != 0) or any(
            o.intent is not None and o.intent.role in _PROTECTIVE for o in self.open_orders(symbol)
        )

    async def _keep_countdown(self) -> None:
        # Armed only while a symbol holds nothing: a frozen engine's resting entries are then
        # cancelled by the exchange. Whether the countdown also cancels conditional (algo) orders
        # is not documented since their move to the algo service, so while a position is open the
        # switch is disarmed: its protective stop must stay on the exchange whatever happens here.
        armed: set[str] = set()
        while True:
            for symbol in self._queues:
                holds = self._holds(symbol)
                if holds and symbol not in armed:
                    continue
                countdown_ms = 0 if holds else self.config.countdown_ms
                try:
                    await self._rest.post("/fapi/v1/countdownCancelAll",
                                          {"symbol": symbol, "countdownTime": countdown_ms},
                                          signed=True, weight=10)  # fmt: skip
                except ExchangeError as exc:
                    log.warning("countdown_rearm_failed", symbol=symbol, error=repr(exc))
                    continue
                if holds:
                    armed.discard(symbol)
                    log.info("countdown_disarmed", symbol=symbol, reason="position protected")
                else:
                    armed.add(symbol)
            await self._clock.sleep(self.config.countdown_refresh_s)

    async def close(self) -> None:
        """Disarm the dead-man switch (a clean stop keeps the orders the shutdown policy kept)."""
        if self.market is not Market.USDM or self.config.countdown_ms <= 0:
            return
        for symbol in self._queues:
            with contextlib.suppress(ExchangeError):
                await self._rest.post("/fapi/v1/countdownCancelAll",
                                      {"symbol": symbol, "countdownTime": 0}, signed=True, weight=10)  # fmt: skip

    # -- folding -----------------------------------------------------------------------------
    def _on_algo(self, update: AlgoUpdate) -> None:
        if update.actual_order_id:
            self._algo_of_order[update.actual_order_id] = update.client_algo_id
        status = _ALGO_STATUS.get(update.status)
        if status is None or self.manager.tracked(update.client_algo_id) is None:
            return  # TRIGGERING/TRIGGERED/FINISHED: the order it became reports itself
        self.manager.apply(VenueOrder(
            update.symbol, update.client_algo_id, str(update.algo_id), status, update.side,  # as REST says
            update.quantity, Decimal(0), update.ts_event_ms,
        ))  # fmt: skip

    def _on_account(self, snapshot: AccountSnapshot) -> None:
        for output in account_outputs(snapshot):
            if isinstance(output, FundingPaid):
                self.emit(output)  # type: ignore[arg-type]
            elif hasattr(output, "free"):
                b = output
                if self.market is Market.USDM:
                    self._balances[b.asset] = Balance(b.asset, b.free, Decimal(0))  # type: ignore[union-attr]
                else:
                    self._balances[b.asset] = Balance(b.asset, b.free, b.locked)  # type: ignore[union-attr]
            else:
                p = output
                if p.position_side in ("BOTH", ""):  # type: ignore[union-attr]
                    self._positions[p.symbol] = VenuePosition(p.symbol, p.amount, p.entry_price)  # type: ignore[union-attr]

    def _end_list(self, client_order_id: str) -> None:
        pair = self._lists.pop(client_order_id, None)
        if pair is not None:
            self._lists.pop(pair[1], None)

    def _queue(self, symbol: str) -> asyncio.Queue[_Command]:
        queue = self._queues.get(symbol)
        if queue is None:
            raise ValueError(f"{symbol} is not a symbol this venue trades")
        return queue


_PROTECTIVE = frozenset({OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT, OrderRole.TRAILING_STOP})
_DONE = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED,
                   OrderStatus.REJECTED, None})  # fmt: skip


def _as_client(order: VenueOrder, client_order_id: str) -> VenueOrder:
    return dataclasses.replace(order, client_order_id=client_order_id)


def _open_order(tracked: TrackedOrder) -> OpenOrder:
    intent = tracked.intent
    return OpenOrder(intent.symbol, intent.client_order_id, tracked.venue_order_id or "",
                     intent.side, intent.quantity, tracked.filled_qty, tracked.status, intent)  # fmt: skip
