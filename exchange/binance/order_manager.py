"""Place, reconcile and cancel Binance orders without ever placing one twice.

Every venue report goes through the pure fold (`exchange.binance.order_fold.fold_order`), which
emits each acceptance, fill and terminal event once. `OrderManager` is the async shell around
it: it journals the intent before sending,
and on an unknown outcome (timeout, 5xx, -1006/-1007) follows API reference §5.3: mark the intent
UNKNOWN, query by client order id with backoff until the truth is known, and resend (with the
same client id) only once the order can no longer appear: the `timestamp` the request carried is
older than its recvWindow plus a margin, so Binance would refuse it now. Querying goes on at least
until then, whatever recvWindow is. A duplicate-id rejection means an earlier attempt landed:
query and adopt that order. A cancel whose outcome stays unknown is owed and re-issued by
`retry_cancels` until the venue says the order is closed. An order that can leave at once is
written inside `submit_now` (BinanceRest.send_order_now) and finished by the same `_place`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog

from engine.clock import Clock
from engine.journal import Journal
from engine.model import Market
from engine.orders import (
    OrderEvent,
    OrderIntent,
    OrderRole,
    OrderStatus,
    SubmitOrderList,
)
from exchange.binance.order_fold import TrackedOrder, fold_order
from exchange.binance.orders import (
    MalformedOrderBody,
    OrderRequest,
    VenueOrder,
    cancel_request,
    oco_request,
    order_by_id_request,
    order_request,
    parse_algo,
    parse_oco,
    parse_order,
    parse_trades,
    query_request,
    rejected_event,
    trades_request,
)
from exchange.binance.rest import BinanceRest
from exchange.errors import (
    ExchangeError,
    Rejected,
    RejectReason,
    Retryable,
    SentRequest,
    UnknownOutcome,
)

log = structlog.get_logger("tickloop.binance.orders")

EventSink = Callable[[OrderEvent], None]
_ABSENT_REASONS = (RejectReason.NO_SUCH_ORDER, RejectReason.ORDER_ARCHIVED)
_WORKING = frozenset(
    {OrderStatus.PENDING, OrderStatus.UNKNOWN, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED}
)


class Lookup(enum.Enum):
    FOUND = "found"
    ABSENT = "absent"  # not on the venue, and it can no longer appear
    UNRESOLVED = "unresolved"  # gave up asking: the intent stays UNKNOWN


@dataclass(frozen=True, slots=True)
class OrderManagerConfig:
    recv_window_ms: int = 5000  # the BinanceRest's; used when a request's own is unknown
    absent_margin_ms: int = 2000  # clock error and transit on top of recvWindow
    query_backoff_s: float = 0.1
    query_backoff_max_s: float = 2.0
    # stop querying an unknown order this long after it could last have appeared (its timestamp
    # + recvWindow + margin) or after the lookup began, whichever is later; it stays UNKNOWN
    give_up_s: float = 60.0
    max_send_retries: int = 3  # Retryable answers: nothing happened, send again
    max_resends: int = 1  # resends after "not placed"
    max_entry_age_s: float | None = None  # cancel_stale() cancels older open entries
    # After an unknown outcome, first wait this long for the user stream to report the order
    # (§5.3 step 2) before querying by client id; 0 queries at once.
    stream_wait_s: float = 0.0


class OrderManager:
    """One venue's order placement and reconciliation over a BinanceRest."""

    def __init__(
        self,
        rest: BinanceRest,
        journal: Journal,
        clock: Clock,
        sink: EventSink,
        config: OrderManagerConfig | None = None,
    ) -> None:
        self.market: Market = rest.market
        self._rest = rest
        self._journal = journal
        self._clock = clock
        self._sink = sink
        self._config = config or OrderManagerConfig()
        self._orders: dict[str, TrackedOrder] = {}  # working (or possibly working) orders
        # finished orders, newest last, kept for late reports (a user-stream event after the REST
        # answer) and queries; bounded so a long session does not grow without end
        self._finished: OrderedDict[str, TrackedOrder] = OrderedDict()
        self._finished_max = 10_000
        self._reported = asyncio.Event()  # set whenever a venue report advanced an order
        # cancels asked for whose order may still be working: re-issued by retry_cancels()
        self._cancels_owed: set[str] = set()
        self._cancelling: set[str] = set()  # a cancel of these is being sent right now

    # -- queries ---------------------------------------------------------------------------------

    def status(self, client_order_id: str) -> OrderStatus | None:
        """Return what we know of an order's status, None for an id we never saw."""
        tracked = self.tracked(client_order_id)
        return tracked.status if tracked else None

    def tracked(self, client_order_id: str) -> TrackedOrder | None:
        """Return the tracked state of one order (working or recently finished)."""
        return self._orders.get(client_order_id) or self._finished.get(client_order_id)

    # -- commands --------------------------------------------------------------------------------

    def open_orders(self) -> list[TrackedOrder]:
        """Return every order that is or may be working: in flight, unknown, new, part-filled."""
        return list(self._orders.values())

    def remember(
        self, intent: OrderIntent, *, algo: bool, status: OrderStatus, filled: Decimal,
        trade_ids: set[int], venue_order_id: str | None,
    ) -> TrackedOrder:
        """Track an order from the journal with what was already reported (after a restart)."""
        tracked = TrackedOrder(
            intent, algo, self._clock.monotonic_ns(), status, venue_order_id, filled,
            set(trade_ids), accepted=status not in (OrderStatus.PENDING, OrderStatus.UNKNOWN),
            sends=1,
        )
        self._orders[intent.client_order_id] = tracked
        return tracked

    async def submit(
        self,
        intent: OrderIntent,
        ts_ms: int,
        *,
        close_position: bool = False,
        journaled: bool = False,
    ) -> OrderStatus:
        """Journal intent (unless the caller did), place it, return its status once known."""
        request = order_request(self.market, intent, close_position=close_position)
        tracked = TrackedOrder(intent, request.is_algo, self._clock.monotonic_ns())
        if not journaled:
            self._journal.record_intent(intent, ts_ms)
        self._orders[intent.client_order_id] = tracked
        await self._place([tracked], request, ts_ms)
        return tracked.status

    def submit_now(
        self, intent: OrderIntent, ts_ms: int
    ) -> Coroutine[Any, Any, OrderStatus] | None:
        """Write intent (journaled by the caller) to a warm connection before returning, if it can go at once.

        Returns the coroutine that finishes the placement as `submit` does (answer, retries,
        the unknown-outcome protocol); None, with nothing sent or tracked, when it must go
        through `submit` (BinanceRest.send_order_now says when).
        """
        request = order_request(self.market, intent)
        sending = self._rest.send_order_now(
            request.method, request.path, request.params, weight=request.weight
        )
        if sending is None:
            return None
        tracked = TrackedOrder(intent, request.is_algo, self._clock.monotonic_ns())
        self._orders[intent.client_order_id] = tracked
        return self._finish_placing(tracked, request, ts_ms, sending)

    async def _finish_placing(
        self, tracked: TrackedOrder, request: OrderRequest, ts_ms: int, sending: Awaitable[Any]
    ) -> OrderStatus:
        await self._place([tracked], request, ts_ms, sent_first=sending)
        return tracked.status

    async def submit_list(
        self, command: SubmitOrderList, *, journaled: bool = False
    ) -> list[OrderStatus]:
        """Journal both legs of a spot OCO (unless the caller did), place it, return their status."""
        if self.market is not Market.SPOT:
            raise ValueError("order lists exist on spot only")
        request = oco_request(command)
        now_ns = self._clock.monotonic_ns()
        legs = [TrackedOrder(leg, False, now_ns) for leg in command.orders]
        for leg in legs:
            if not journaled:
                self._journal.record_intent(leg.intent, command.ts_ms)
            self._orders[leg.intent.client_order_id] = leg
        await self._place(legs, request, command.ts_ms)
        return [leg.status for leg in legs]

    async def cancel(self, client_order_id: str) -> OrderStatus:
        """Cancel one of our orders; an order already closed is reconciled instead.

        Until the venue says the order is closed the cancel is owed: one that could not be
        confirmed (every attempt, or the status check after them, refused) is re-issued by
        retry_cancels(), never dropped.
        """
        tracked = self._require(client_order_id)
        if tracked.status in _WORKING:
            self._cancels_owed.add(client_order_id)
        self._cancelling.add(client_order_id)
        try:
            await self._send_cancel(tracked)
        finally:
            self._cancelling.discard(client_order_id)
        if client_order_id in self._cancels_owed:
            log.warning("order_cancel_owed", client_order_id=client_order_id,
                        status=tracked.status.value)  # fmt: skip
        return tracked.status

    def cancels_owed(self) -> list[str]:
        """Return the client ids whose cancel is not confirmed yet (retry_cancels re-sends them)."""
        return sorted(self._cancels_owed)

    async def retry_cancels(self) -> list[str]:
        """Re-issue every owed cancel of an order known to rest; return their client ids."""
        due = [
            cid for cid in sorted(self._cancels_owed)
            if cid not in self._cancelling and (tracked := self._orders.get(cid)) is not None
            # PENDING/UNKNOWN: the placement path owns it; the cancel waits until it is found
            and tracked.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)
        ]  # fmt: skip
        for cid in due:
            log.info("order_cancel_reissued", client_order_id=cid)
            try:
                await self.cancel(cid)
            except (ExchangeError, MalformedOrderBody) as exc:  # still owed: the next pass tries
                log.error("order_cancel_reissue_failed", client_order_id=cid, error=repr(exc))
        return due

    async def _send_cancel(self, tracked: TrackedOrder) -> None:
        client_order_id = tracked.intent.client_order_id
        request = cancel_request(self.market, tracked.intent.symbol, client_order_id, tracked.algo)
        attempts = 0
        while True:
            try:
                body = await self._call(request)
                break
            except Rejected as exc:
                if exc.reason not in (RejectReason.ORDER_NOT_OPEN, *_ABSENT_REASONS):
                    raise
                await self._check(tracked)
                return
            except (UnknownOutcome, Retryable) as exc:
                # A cancel may be sent again (a second one for a closed order is -2011): keep
                # asking until the venue says the order is closed; past max_send_retries the
                # cancel stays owed (retry_cancels).
                attempts += 1
                if isinstance(exc, UnknownOutcome) or attempts > self._config.max_send_retries:
                    await self._check(tracked)
                    if tracked.status not in _WORKING or attempts > self._config.max_send_retries:
                        if tracked.status in _WORKING:
                            log.error("order_cancel_failed", client_order_id=client_order_id,
                                      status=tracked.status.value, error=repr(exc))  # fmt: skip
                        return
                log.warning("order_cancel_retry", client_order_id=client_order_id, error=repr(exc))
                if isinstance(exc, Retryable) and not exc.resync_clock:
                    await self._clock.sleep(exc.retry_after_s or self._config.query_backoff_s)
        try:
            order = None if tracked.algo else parse_order(self.market, body)
        except MalformedOrderBody as exc:  # cancelled, but the answer is unreadable: ask
            log.warning("cancel_answer_malformed", client_order_id=client_order_id, error=str(exc))
            order = None
        if order is None:
            await self._check(tracked)
        else:
            await self._check(tracked, order)

    async def _check(self, tracked: TrackedOrder, order: VenueOrder | None = None) -> None:
        """Apply order (else query it); a refused or unreadable answer leaves tracked as it was."""
        try:
            await self._absorb(tracked, order if order is not None else await self._query(tracked))
        except (Retryable, UnknownOutcome, MalformedOrderBody) as exc:
            cid = tracked.intent.client_order_id
            log.warning("order_status_check_failed", client_order_id=cid, error=repr(exc))

    async def cancel_stale(self) -> list[str]:
        """Cancel open entry orders older than max_entry_age_s; return their client ids."""
        max_age_s = self._config.max_entry_age_s
        if max_age_s is None:
            return []
        now_ns = self._clock.monotonic_ns()
        stale = [
            cid
            for cid, t in self._orders.items()
            if t.intent.role is OrderRole.ENTRY
            and t.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)
            and now_ns - t.created_mono_ns > max_age_s * 1e9
        ]
        for cid in stale:
            log.info("order_stale_cancel", client_order_id=cid)
            await self.cancel(cid)
        return stale

    async def refresh(self, client_order_id: str) -> OrderStatus:
        """Query one order by client id and apply what the venue says."""
        tracked = self._require(client_order_id)
        await self._absorb(tracked, await self._query(tracked))
        return tracked.status

    async def recover(self, ts_ms: int) -> None:
        """Reconcile every intent the journal left UNKNOWN (after a crash mid-send).

        An order found is adopted; one still absent recvWindow + margin after this call can no
        longer appear (its timestamp is too old) and is reported OrderRejected("NOT_PLACED").
        """
        # Whatever a previous process sent, it stamped before this call: one deadline for them all
        # (waiting recvWindow + margin per intent made a restart with n of them n times slower).
        started_ns = self._clock.monotonic_ns()
        absent_after_ns = self._absent_after_ns(None)
        for record in self._journal.unknown_intents():
            intent = record.intent
            algo = self.market is Market.USDM and order_request(self.market, intent).is_algo
            tracked = TrackedOrder(intent, algo, started_ns, OrderStatus.UNKNOWN, sends=1)
            self._orders[intent.client_order_id] = tracked
            if await self._lookup(tracked, absent_after_ns) is Lookup.ABSENT:
                log.warning("order_never_placed", client_order_id=intent.client_order_id)
                reason = Rejected(RejectReason.OTHER, "absent after an unknown outcome")
                self._emit_reject(tracked, reason, ts_ms, "NOT_PLACED")

    def apply(self, order: VenueOrder) -> list[OrderEvent]:
        """Apply a venue report (e.g. from the user stream) to one of our orders; emit its events."""
        tracked = self.tracked(order.client_order_id)
        if tracked is None:
            return []
        events = fold_order(tracked, order)
        self._retire_if_done(tracked)
        for event in events:
            self._sink(event)
        if events:
            self._reported.set()
        return events

    # -- placement and reconciliation ------------------------------------------------------------

    async def _place(
        self,
        legs: list[TrackedOrder],
        request: OrderRequest,
        ts_ms: int,
        *,
        sent_first: Awaitable[Any] | None = None,
    ) -> None:
        """Place request (its answer already awaited in sent_first when it went out at once)."""
        retries = 0
        while True:
            for leg in legs:
                leg.sends += 1
            try:
                if sent_first is not None:
                    answer, sent_first = sent_first, None
                    body = await answer
                else:
                    body = await self._call(request, order=True)
            except Retryable as exc:
                retries += 1
                for leg in legs:
                    leg.sends -= 1  # refused before execution: it was not a placement
                if retries > self._config.max_send_retries:
                    for leg in legs:
                        self._emit_reject(leg, Rejected(RejectReason.OTHER, exc.message), ts_ms)
                    return
                if not exc.resync_clock:  # after -1021 BinanceRest already resynced the clock
                    await self._clock.sleep(exc.retry_after_s or self._config.query_backoff_s)
                continue
            except Rejected as exc:
                if exc.reason is RejectReason.DUPLICATE:
                    log.warning("order_duplicate_adopt", client_order_id=_ids(legs))
                    for leg in legs:
                        await self._lookup(leg, None)
                    return
                for leg in legs:
                    self._emit_reject(leg, exc, ts_ms)
                return
            except UnknownOutcome as exc:
                log.warning("order_unknown_outcome", client_order_id=_ids(legs), error=repr(exc))
                absent_after_ns = self._absent_after_ns(exc.sent)
                for leg in legs:
                    if leg.accepted or leg.status is OrderStatus.REJECTED:
                        continue  # the user stream already told us: the answer lost nothing
                    leg.status = OrderStatus.UNKNOWN
                    self._journal.mark_unknown(leg.intent.client_order_id, ts_ms, exc.message)
                if await self._reported_by_stream(legs):
                    return
                lookups = [await self._lookup(leg, absent_after_ns) for leg in legs]
                if any(lookup is not Lookup.ABSENT for lookup in lookups):
                    return
                if legs[0].sends > self._config.max_resends:
                    return  # stays UNKNOWN: a person decides
                log.warning("order_not_placed_resend", client_order_id=_ids(legs))
                continue
            try:
                await self._absorb_answer(legs, request, body)
            except MalformedOrderBody as exc:  # accepted (HTTP 2xx) but unreadable: find it
                log.warning("order_answer_malformed", client_order_id=_ids(legs), error=str(exc))
                for leg in legs:
                    if not leg.accepted:
                        leg.status = OrderStatus.UNKNOWN
                        self._journal.mark_unknown(leg.intent.client_order_id, ts_ms, str(exc))
                for leg in legs:
                    await self._lookup(leg, None)
            return

    async def _absorb_answer(
        self, legs: list[TrackedOrder], request: OrderRequest, body: Any
    ) -> None:
        if request.path.endswith("/oco"):
            reports = {o.client_order_id: o for o in parse_oco(body)}
            for leg in legs:
                report = reports.get(leg.intent.client_order_id)
                if report is not None:
                    await self._absorb(leg, report)
                else:
                    await self.refresh(leg.intent.client_order_id)
        elif request.is_algo:
            await self._absorb(legs[0], parse_algo(body))
        else:
            await self._absorb(legs[0], parse_order(self.market, body))

    async def _reported_by_stream(self, legs: list[TrackedOrder]) -> bool:
        """Wait up to stream_wait_s for the user stream to report every leg; True if it did."""
        deadline_ns = self._clock.monotonic_ns() + int(self._config.stream_wait_s * 1e9)
        while not all(leg.accepted or leg.status is OrderStatus.REJECTED for leg in legs):
            left_s = (deadline_ns - self._clock.monotonic_ns()) / 1e9
            if left_s <= 0:
                return False
            self._reported.clear()
            try:
                await asyncio.wait_for(self._reported.wait(), left_s)
            except TimeoutError:
                return False
        return True

    def _absent_after_ns(self, sent: SentRequest | None) -> int:
        """Return when (monotonic ns) an order sent as `sent` can no longer appear on the venue.

        Binance executes a request only while server time - its timestamp <= its recvWindow
        (API reference §3.3, §5.3), so that is the timestamp it carried plus its recvWindow plus
        a margin for clock error, moved onto the monotonic clock. Without the request (after a
        restart), the current server time bounds the timestamp of anything sent before.
        """
        now_server_ms = self._rest.timestamp_ms()
        stamped_ms, window_ms = now_server_ms, float(self._config.recv_window_ms)
        if sent is not None:
            try:
                stamped_ms = int(sent.params["timestamp"])
                window_ms = float(sent.params.get("recvWindow", window_ms))
            except (KeyError, ValueError):  # not a signed request as we send them: assume now
                stamped_ms = now_server_ms
            if stamped_ms > 10**14:  # microseconds (spot accepts them)
                stamped_ms //= 1000
        left_ms = stamped_ms + window_ms + self._config.absent_margin_ms - now_server_ms
        return self._clock.monotonic_ns() + max(0, int(left_ms * 1_000_000))

    async def _lookup(self, tracked: TrackedOrder, absent_after_ns: int | None) -> Lookup:
        """Query by client id with backoff; ABSENT only once the order can no longer appear.

        absent_after_ns None: the order landed (a duplicate id, a readable 2xx), never absent.
        Querying goes on until give_up_s after absent_after_ns, so an order is always either found
        or declared absent, however long its recvWindow.
        """
        config = self._config
        start_ns = self._clock.monotonic_ns()
        last_chance_ns = start_ns if absent_after_ns is None else max(start_ns, absent_after_ns)
        give_up_ns = last_chance_ns + int(config.give_up_s * 1e9)
        delay_s = config.query_backoff_s
        while True:
            asked_ns = self._clock.monotonic_ns()
            try:
                order = await self._query(tracked)
            except Rejected as exc:
                if exc.reason not in _ABSENT_REASONS:
                    raise
                # "not found" proves absence only for a question asked after the deadline
                if absent_after_ns is not None and asked_ns >= absent_after_ns:
                    return Lookup.ABSENT
            except (Retryable, UnknownOutcome, MalformedOrderBody) as exc:
                log.info("order_query_retry", client_order_id=tracked.intent.client_order_id,
                         error=repr(exc))  # fmt: skip
            else:
                await self._absorb(tracked, order)
                return Lookup.FOUND
            now_ns = self._clock.monotonic_ns()
            if now_ns >= give_up_ns:
                return Lookup.UNRESOLVED
            if absent_after_ns is not None and now_ns < absent_after_ns:
                # ask once more right when the order can no longer appear, not a backoff later
                await self._clock.sleep(min(delay_s, (absent_after_ns - now_ns) / 1e9))
            else:
                await self._clock.sleep(delay_s)
            delay_s = min(delay_s * 2, config.query_backoff_max_s)

    async def _query(self, tracked: TrackedOrder) -> VenueOrder:
        intent = tracked.intent
        request = query_request(self.market, intent.symbol, intent.client_order_id, tracked.algo)
        body = await self._call(request)
        return parse_algo(body) if tracked.algo else parse_order(self.market, body)

    async def _absorb(self, tracked: TrackedOrder, order: VenueOrder) -> None:
        """Complete order with what its body lacked (a triggered algo's order, trades), apply it."""
        if tracked.algo and order.actual_order_id:
            # the algo fired: its status and fills are those of the order it became
            body = await self._call(
                order_by_id_request(self.market, order.symbol, order.actual_order_id)
            )
            triggered = parse_order(self.market, body)
            order = dataclasses.replace(
                triggered,
                client_order_id=tracked.intent.client_order_id,
                venue_order_id=order.venue_order_id,
            )
            venue_id = triggered.venue_order_id
        else:
            venue_id = order.venue_order_id
        known = tracked.filled_qty + sum(
            (f.quantity for f in order.fills if f.trade_id not in tracked.trade_ids), Decimal(0)
        )
        if order.executed_qty > known:
            rows = await self._call(trades_request(self.market, order.symbol, venue_id))
            if isinstance(rows, list):
                # Only this order's trades: others' (an endpoint that ignored orderId) would be
                # folded as our fills and journaled under the wrong order for good. Rows that are
                # not objects stay, for the parser to refuse.
                rows = [r for r in rows
                        if not isinstance(r, dict) or str(r.get("orderId")) == venue_id]  # fmt: skip
            order = dataclasses.replace(order, fills=parse_trades(self.market, rows))
        self.apply(dataclasses.replace(order, client_order_id=tracked.intent.client_order_id))

    def _require(self, client_order_id: str) -> TrackedOrder:
        tracked = self.tracked(client_order_id)
        if tracked is None:
            raise KeyError(client_order_id)
        return tracked

    def _retire_if_done(self, tracked: TrackedOrder) -> None:
        """Move a finished order out of the working set (kept a while for late reports)."""
        if tracked.status in _WORKING:
            return
        cid = tracked.intent.client_order_id
        self._cancels_owed.discard(cid)  # closed: nothing left to cancel
        if self._orders.pop(cid, None) is None:
            return
        self._finished[cid] = tracked
        while len(self._finished) > self._finished_max:
            self._finished.popitem(last=False)

    def _emit_reject(
        self, tracked: TrackedOrder, exc: Rejected, ts_ms: int, reason: str | None = None
    ) -> None:
        tracked.status = OrderStatus.REJECTED
        self._retire_if_done(tracked)
        intent = tracked.intent
        event = rejected_event(intent.symbol, intent.client_order_id, exc, ts_ms)
        self._sink(dataclasses.replace(event, reason=reason) if reason else event)

    async def _call(self, request: OrderRequest, *, order: bool = False) -> Any:
        return await self._rest.request(
            request.method,
            request.path,
            request.params,
            signed=True,
            weight=request.weight,
            order=order,
        )


def _ids(legs: list[TrackedOrder]) -> str:
    return ",".join(leg.intent.client_order_id for leg in legs)
