"""One market's account on the simulated exchange: the matching core fed by the replay, the order
records Binance reports, and the user-data events each change produces.

Matching is the project's deterministic `SimulatedVenue` (public API only). Commands are stamped
with the exchange time of the replay (the server time clients sync to); the venue runs with zero
latency, so a placement's acceptance and its taker fills come back from the same call and the
REST response can report them, as Binance's RESULT/FULL responses do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING

from engine.events import MarkPriceUpdated, TradePrinted
from engine.model import Instrument, Market, instrument_from_exchange_info
from engine.orders import (
    FundingPaid,
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
)
from exchange.sim.rest import BinanceError
from exchange.sim.trading.feed import ReplayTap, SimBookView, watch_books
from exchange.sim.trading.orders import ZERO, AlgoRecord, Fill, OrderRecord, fmt
from exchange.simulated import SimulatedVenue
from exchange.simulated_orders import SimulatedVenueConfig

if TYPE_CHECKING:
    from exchange.sim.server import SimServer

Listener = Callable[[dict], None]

_SPOT_REJECTS = {
    "INSUFFICIENT_BALANCE": (-2010, "Account has insufficient balance for requested action."),
    "DUPLICATE_CLIENT_ORDER_ID": (-2010, "Duplicate order sent."),
    "WOULD_TRIGGER_IMMEDIATELY": (-2010, "Order would trigger immediately."),
    "POST_ONLY_WOULD_TAKE": (-2010, "Order would immediately match and take."),
    "UNKNOWN_SYMBOL": (-1121, "Invalid symbol."),
    "OCO_PRICES": (-2010, "The relationship of the prices for the orders is not correct."),
}
_FUTURES_REJECTS = {
    "INSUFFICIENT_BALANCE": (-2019, "Margin is insufficient."),
    "DUPLICATE_CLIENT_ORDER_ID": (-4116, "ClientOrderId is duplicated."),
    "WOULD_TRIGGER_IMMEDIATELY": (-2021, "Order would immediately trigger."),
    "REDUCE_ONLY_REJECTED": (-2022, "ReduceOnly Order is rejected."),
    "POST_ONLY_WOULD_TAKE": (-5022, ("Due to the order could not be executed as maker, the Post "
                                     "Only order will be rejected. The order will not be recorded "
                                     "in the order history")),
    "FOK_NOT_FILLED": (-5021, ("Due to the order could not be filled immediately, the FOK order "
                               "has been rejected. The order will not be recorded in the order "
                               "history")),
    "MIN_NOTIONAL": (-4164, ("Order's notional must be no smaller than 5 (unless you choose "
                             "reduce only).")),
    "UNKNOWN_SYMBOL": (-1121, "Invalid symbol."),
}  # fmt: skip
_REJECTED_AFTER_ACCEPT = {"POST_ONLY_WOULD_TAKE", "FOK_NOT_FILLED"}  # Binance answers an error


def reject_error(market: Market, reason: str, message: str) -> BinanceError:
    """Map a venue reject reason to Binance's code and message for the market."""
    table = _SPOT_REJECTS if market is Market.SPOT else _FUTURES_REJECTS
    if reason in table:
        code, msg = table[reason]
        return BinanceError(400, code, msg)
    return BinanceError(400, -1013, f"Filter failure: {reason}")


class Desk:
    """Account, orders and user events of one market (spot or USDⓈ-M) of the simulator."""

    def __init__(
        self,
        sim: SimServer,
        market: Market,
        balances: Mapping[str, Decimal],
        leverage: int = 1,
    ) -> None:
        self.sim = sim
        self.market = market
        catalog = sim.exchange_info
        self.instruments: dict[str, Instrument] = {}
        for symbol in catalog.symbols(market):
            entry = catalog.entry(market, symbol)
            if entry is not None:
                self.instruments[symbol] = instrument_from_exchange_info(entry, market)
        config = SimulatedVenueConfig(market=market, leverage=leverage)
        self.venue = SimulatedVenue(self.instruments.values(), balances, config)
        self.orders: dict[int, OrderRecord] = {}
        self.algos: dict[int, AlgoRecord] = {}
        self.listeners: list[Listener] = []
        self._by_key: dict[str, OrderRecord | AlgoRecord] = {}  # venue client id -> record
        self._next_id = 8_000_000_000 if market is Market.USDM else 40_000_000_000
        self._position: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (qty, entry) mirror
        self._views: dict[str, SimBookView] = {}
        self._reported_balances = self.venue.balances()
        if self.instruments:
            self.tap = ReplayTap(sim, market, self._on_trade, self._on_mark)
            watch_books(sim, market, self._on_book)
            for symbol in self.instruments:
                book = sim.replay.books.get((market, symbol))
                if book is not None:
                    self._views[symbol] = view = SimBookView(book)
                    self.venue.on_book(symbol, view, sim.server_time_ms())

    # ---- time and ids -----------------------------------------------------------------------

    def now_ms(self) -> int:
        """Return the exchange time commands are stamped with (never behind the venue)."""
        return max(self.sim.server_time_ms(), self.venue.now_ms)

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # ---- market events ----------------------------------------------------------------------

    def _on_trade(self, trade: TradePrinted) -> None:
        self._fold(self.venue.on_trade(trade), trade.ts_event_ms)

    def _on_mark(self, mark: MarkPriceUpdated) -> None:
        self._fold(self.venue.on_mark_price(mark), mark.ts_event_ms)

    def _on_book(self, symbol: str, view: SimBookView, ts_ms: int) -> None:
        self.tap.check_wrapped()
        self._fold(self.venue.on_book(symbol, self._views.get(symbol, view), ts_ms), ts_ms)

    # ---- commands ---------------------------------------------------------------------------

    def place(self, record: OrderRecord | AlgoRecord, intent: OrderIntent) -> list[Fill]:
        """Submit intent for record; return the fills of the call, or raise Binance's reject."""
        key = intent.client_order_id
        previous = self._by_key.get(key)  # an open order with this id is rejected as duplicate
        self._by_key[key] = record
        events = self.venue.submit(intent, self.now_ms())
        own = [e for e in events if getattr(e, "client_order_id", None) == key]
        if own and isinstance(own[0], OrderRejected):
            self._restore(key, previous)
            raise reject_error(self.market, own[0].reason, own[0].message)
        if (
            len(own) == 2
            and isinstance(own[1], OrderExpired)
            and own[1].reason in _REJECTED_AFTER_ACCEPT
            and (self.market is Market.USDM or record_type(record) == "LIMIT_MAKER")
        ):
            self._restore(key, previous)
            rest = [e for e in events if e not in own]
            self._fold(rest, self.now_ms())
            raise reject_error(self.market, own[1].reason, "")
        if isinstance(record, OrderRecord):
            self.orders[record.order_id] = record
        else:
            self.algos[record.algo_id] = record
        before = len(record.fills) if isinstance(record, OrderRecord) else 0
        self._fold(events, self.now_ms())
        return record.fills[before:] if isinstance(record, OrderRecord) else []

    def place_list(self, list_id: int, records: list[OrderRecord], legs: list[OrderIntent]) -> None:
        """Submit a spot OCO list (both legs or neither), or raise Binance's reject."""
        keys = [leg.client_order_id for leg in legs]
        previous = [self._by_key.get(k) for k in keys]
        for key, record in zip(keys, records, strict=True):
            self._by_key[key] = record
        events = self.venue.submit_list(str(list_id), legs, self.now_ms())
        rejected = [e for e in events if isinstance(e, OrderRejected) and e.client_order_id in keys]
        if rejected:
            for key, prior in zip(keys, previous, strict=True):
                self._restore(key, prior)
            raise reject_error(self.market, rejected[0].reason, rejected[0].message)
        for record in records:
            self.orders[record.order_id] = record
        self._fold(events, self.now_ms())

    def _restore(self, key: str, previous: OrderRecord | AlgoRecord | None) -> None:
        if previous is None:
            self._by_key.pop(key, None)
        else:
            self._by_key[key] = previous

    def cancel(self, record: OrderRecord | AlgoRecord) -> None:
        """Cancel an open record at once (the venue has no latency)."""
        key = next((k for k, r in self._by_key.items() if r is record), None)
        if key is None:
            return
        self._fold(self.venue.cancel(record.symbol, key, self.now_ms()), self.now_ms())

    def open_orders(self, symbol: str | None = None) -> list[OrderRecord]:
        return [o for o in self.orders.values() if o.is_open and symbol in (None, o.symbol)]

    def open_algos(self, symbol: str | None = None) -> list[AlgoRecord]:
        return [a for a in self.algos.values() if a.is_open and symbol in (None, a.symbol)]

    def find_order(self, symbol: str, order_id: str | None, client_id: str | None) -> OrderRecord:
        """Return an order by id or client id (the latest with that client id), else -2013."""
        found = None
        if order_id is not None:
            found = self.orders.get(int(order_id)) if order_id.isdigit() else None
            if found is not None and client_id is not None and found.client_order_id != client_id:
                found = None
        elif client_id is not None:
            matches = [o for o in self.orders.values() if o.client_order_id == client_id]
            found = max(matches, key=lambda o: o.order_id) if matches else None
        if found is None or found.symbol != symbol:
            raise BinanceError(400, -2013, "Order does not exist.")
        return found

    # ---- folding venue events into records and user events ----------------------------------

    def _emit(self, event: dict) -> None:
        for listener in list(self.listeners):
            listener(event)

    def _fold(self, events: list[OrderEvent], ts_ms: int) -> None:
        if not events:
            return
        filled = any(isinstance(e, OrderFilled) for e in events)
        for event in events:
            if isinstance(event, FundingPaid):
                self._emit(self._account_update("FUNDING_FEE", event.ts_event_ms, [],
                                                balance_change=event.amount))  # fmt: skip
                continue
            record = self._by_key.get(event.client_order_id)
            if record is None:
                continue
            if isinstance(record, AlgoRecord):
                self._algo_event(record, event)
            else:
                self._order_event(record, event)
        if self.market is Market.SPOT:
            # the venue moved balances while it produced the events: compare with the last report
            after = self.venue.balances()
            changed = [a for a, b in after.items() if self._reported_balances.get(a) != b]
            self._reported_balances = after
            if changed:
                self._emit(
                    {
                        "e": "outboundAccountPosition", "E": ts_ms, "u": ts_ms,
                        "B": [{"a": a, "f": fmt(after[a].free, self.market),
                               "l": fmt(after[a].locked, self.market)} for a in changed],
                    }
                )  # fmt: skip
        elif filled:
            symbols = sorted({e.symbol for e in events if isinstance(e, OrderFilled)})
            self._emit(self._account_update("ORDER", ts_ms, symbols))

    def _order_event(self, order: OrderRecord, event: OrderEvent) -> None:
        ts = event.ts_event_ms
        order.update_time_ms = ts
        fill = None
        if isinstance(event, OrderAccepted):
            order.status, exec_type = "NEW", "NEW"
        elif isinstance(event, OrderFilled):
            fill = Fill(
                event.trade_id,
                event.price,
                event.quantity,
                event.fee,
                event.fee_asset,
                event.liquidity is Liquidity.MAKER,
                ts,
                self._realize(order, event),
            )
            order.fills.append(fill)
            order.executed_qty += event.quantity
            order.cum_quote += event.price * event.quantity
            order.status = "FILLED" if event.order_complete else "PARTIALLY_FILLED"
            if order.close_position and self._position.get(order.symbol, (ZERO,))[0] == 0:
                # closePosition: the order is whatever closed the position (the core expires the rest)
                order.orig_qty, order.status = order.executed_qty, "FILLED"
            exec_type = "TRADE"
        elif isinstance(event, OrderCanceled):
            order.status, exec_type = "CANCELED", "CANCELED"
        elif isinstance(event, OrderExpired):
            if order.status == "FILLED":
                return  # a closePosition order already reported its last fill as FILLED
            exec_type = "EXPIRED"
            order.expiry_reason = event.reason
            order.status = "EXPIRED"
        else:
            return
        if self.market is Market.SPOT:
            self._emit(order.execution_report(exec_type, ts, fill))
        else:
            self._emit(order.order_trade_update(exec_type, ts, fill))

    def _algo_event(self, algo: AlgoRecord, event: OrderEvent) -> None:
        """Advance an algo order; once triggered, its events belong to the order it became."""
        ts = event.ts_event_ms
        algo.update_time_ms = ts
        if isinstance(event, OrderAccepted):
            self._emit(algo.algo_update(ts))
            return
        if isinstance(event, OrderCanceled) and algo.actual_order_id is None:
            algo.status = "CANCELED"
            self._emit(algo.algo_update(ts))
            return
        if algo.actual_order_id is None:  # first fill or expiry: the trigger fired
            order = OrderRecord(
                Market.USDM, algo.symbol, self.new_id(), algo.client_algo_id, algo.side,
                "MARKET", algo.time_in_force, algo.quantity, ZERO, algo.trigger_price, ts,
                orig_type=algo.order_type, reduce_only=algo.reduce_only,
                close_position=algo.close_position, algo_id=algo.algo_id,
            )  # fmt: skip
            self.orders[order.order_id] = order
            algo.actual_order_id, algo.trigger_time_ms = order.order_id, ts
            algo.status = "TRIGGERED"
            self._emit(algo.algo_update(ts))
            self._order_event(order, OrderAccepted(algo.symbol, algo.client_algo_id, "", ts))
        order = self.orders[algo.actual_order_id]
        self._order_event(order, event)
        if not order.is_open and algo.status != "FINISHED":
            algo.status = "FINISHED"
            self._emit(algo.algo_update(ts))

    def _realize(self, order: OrderRecord, fill: OrderFilled) -> Decimal:
        """Fold a futures fill into the position mirror; return its realized PnL."""
        if self.market is not Market.USDM:
            return ZERO
        qty, entry = self._position.get(order.symbol, (ZERO, ZERO))
        signed = fill.quantity if fill.side.value == "BUY" else -fill.quantity
        realized = ZERO
        if qty == 0 or (qty > 0) == (signed > 0):
            new_qty = qty + signed
            entry = (entry * abs(qty) + fill.price * fill.quantity) / abs(new_qty)
        else:
            closed = min(fill.quantity, abs(qty))
            realized = (fill.price - entry) * closed * (1 if qty > 0 else -1)
            new_qty = qty + signed
            if new_qty == 0:
                entry = ZERO
            elif (new_qty > 0) != (qty > 0):
                entry = fill.price
        self._position[order.symbol] = (new_qty, entry)
        return realized

    def _account_update(
        self, reason: str, ts_ms: int, symbols: list[str], balance_change: Decimal = ZERO
    ) -> dict:
        wallet = getattr(self.venue.account, "wallet", ZERO)
        positions = self.venue.positions()
        marks = self.venue.marks()
        rows = []
        for symbol in symbols:
            pos = positions.get(symbol)
            qty, entry = (pos.qty, pos.entry_price) if pos else (ZERO, ZERO)
            mark = marks.get(symbol, entry)
            rows.append(
                {"s": symbol, "pa": fmt(qty, self.market), "ep": fmt(entry, self.market),
                 "bep": fmt(entry, self.market), "cr": "0",
                 "up": fmt((mark - entry) * qty, self.market), "mt": "cross", "iw": "0",
                 "ps": "BOTH"}
            )  # fmt: skip
        # bc: the balance change other than PnL and commission (a funding payment's amount)
        asset = {"a": "USDT", "wb": fmt(wallet, self.market), "cw": fmt(wallet, self.market),
                 "bc": fmt(balance_change, self.market) if balance_change else "0"}  # fmt: skip
        return {"e": "ACCOUNT_UPDATE", "E": ts_ms, "T": ts_ms,
                "a": {"m": reason, "B": [asset], "P": rows}}  # fmt: skip


def record_type(record: OrderRecord | AlgoRecord) -> str:
    return record.type if isinstance(record, OrderRecord) else record.order_type
