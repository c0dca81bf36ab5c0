"""The trading core both paper trading and backtests drive: synchronous, exchange time only.

    market events ─► SimulatedVenue ─► order events ─► journal, portfolio, risk gate (protection)
    rows / candles / scores ─► strategy ─► requests ─► risk gate ─► SubmitOrder ─► journal ─► venue
    position changes ─► strategy

`TradingLoop` never reads a clock and never awaits: every input carries its exchange time, and
the venue is the deterministic `SimulatedVenue`, so the same frames in the same order give the
same intents and fills whether they come from sockets (paper) or from a tape (backtest).
Decision time is `max(event close time, venue time)`, so a row closed late by the fold's grace
never sends an order into the venue's past.

Take-profits: the strategy's `EnterRequest` carries its own take-profit levels and trailing
callback, but the risk gate owns the protective ladder (`risk.take_profit` r-multiples of the
stop distance, `risk.trailing`): one place decides what protects a position. The strategy's
stop distance is passed on and is what the ladder is measured in.

Trading state (risk/state.py) is fed on exchange time, once per second of it (the first market
event of each second, or `tick` while the feed is quiet): `DataObserved` with the time of the
latest valid data (a synced book event, a row closed on a valid book), then `ClockTicked`, then
`EquityObserved`; a venue reject is an `ErrorObserved` at once. Entering HALTED cancels entries
(one cancel per spot OCO list) and flattens when configured. "Today" is the UTC day of exchange
time: the day-start equity and the realised PnL today (net of fees and funding) reset at its
first second.

Notices for people (engine/trading_notices.py) go to `notice_listeners`: a TradeNotice per
filled order, a StateNotice per transition, an ErrorNotice when a person must act, a
SignalNotice when a score reaches its threshold, a DailySummaryNotice per UTC day.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog

from engine.events import MarkPriceUpdated, TradePrinted
from engine.journal import Journal
from engine.market_context import ContextInputs
from engine.marketdata import SymbolMarketData
from engine.model import Instrument, Side
from engine.notices import Notice
from engine.orders import (
    CancelOrder,
    Command,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    SubmitOrder,
    SubmitOrderList,
)
from engine.trading_notices import EntryReason, TradeNotices, top_contributions
from engine.trading_views import (
    BookValidity,
    LazyFeatures,
    open_order_views,
    position_views,
    risk_positions,
)
from exchange.binance.venue import BinanceVenue
from exchange.simulated import SimulatedVenue
from portfolio.portfolio import EquityCurve, Portfolio, SummaryTicker, summary_line
from risk.checks import AccountView, Denied, MarketView
from risk.checks import PositionView as RiskPosition
from risk.gate import EntryRequest, GateUpdate, HaltInputs, RiskGate
from risk.state import (
    DAY_MS,
    ClockTicked,
    DataObserved,
    EquityObserved,
    ErrorObserved,
    HaltRequested,
    Observation,
    ResumeRequested,
    TradingState,
    Transition,
)
from strategy.signals import (
    CandleClosed,
    EnterRequest,
    ExitRequest,
    FeatureVector,
    PositionClosed,
    PositionOpened,
    PositionSide,
    RowClosed,
    ScoreUpdated,
    StrategyContext,
)
from strategy.signals.factory import Strategy

SECOND_MS, MINUTE_MS = 1_000, 60_000
NoticeListener = Callable[[Notice], None]


@dataclass
class TradingStats:
    requests: int = 0
    denied: int = 0
    submitted: int = 0
    fills: int = 0
    rejected: int = 0
    denials: dict[str, int] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)


@dataclass
class _Open:
    side: PositionSide
    entry_ts_ms: int


class TradingLoop:
    """Strategy -> risk gate -> simulated venue -> portfolio and journal, deterministically."""

    def __init__(
        self,
        *,
        strategy: Strategy,
        gate: RiskGate,
        venue: SimulatedVenue | BinanceVenue,
        portfolio: Portfolio,
        instruments: Mapping[str, Instrument],
        market_data: Mapping[str, SymbolMarketData],
        journal: Journal | None = None,
        feature_vectors: Callable[[str], Mapping[str, FeatureVector]] | None = None,
        model_warm: Callable[[str], bool] | None = None,
        blocked: Mapping[str, str] | None = None,
        summary_interval_ms: int = MINUTE_MS,
        equity_interval_ms: int = MINUTE_MS,
        notice_listeners: list[NoticeListener] | None = None,
        bundle_id: Callable[[str], str] | None = None,
        feature_set_hash: Callable[[str], str] | None = None,
    ) -> None:
        self.strategy = strategy
        self.gate = gate
        self.venue = venue
        self.portfolio = portfolio
        self.instruments = dict(instruments)
        self.market_data = market_data
        self.journal = journal
        self._feature_vectors = feature_vectors or (lambda _symbol: {})
        self._model_warm = model_warm or (lambda _symbol: True)
        self.blocked = dict(blocked or {})  # symbols never entered (e.g. a refused model bundle)
        self.log = structlog.get_logger("engine.trading")
        self.notice_listeners: list[NoticeListener] = (
            notice_listeners if notice_listeners is not None else []
        )
        self.notices = TradeNotices(self.notice_listeners)
        self._bundle_id = bundle_id  # names the model bundles of a symbol (None: the strategy)
        self._feature_set_hash = feature_set_hash or (lambda _symbol: "")
        self.stats = TradingStats()
        self.scores: dict[str, ScoreUpdated] = {}
        self.last_price: dict[str, Decimal] = {}
        self.curve = EquityCurve(equity_interval_ms)
        self.summary = SummaryTicker(summary_interval_ms)
        self.summaries: list[str] = []
        self.day_start_equity = portfolio.equity()
        self._day: int | None = None  # UTC day number (exchange time) of day_start_equity
        self._day_start_trades = 0  # closed trades before the day began
        self._day_start_realized = self._realized_net()
        self._next_second_ms = 0  # exchange time of the next per-second risk feed
        self.exchange_time_ms = 0  # latest exchange time seen
        self.context_inputs = ContextInputs(lambda s: getattr(market_data.get(s), "market", None))
        self._data_ms: int | None = None  # exchange time of the latest valid market data
        self._data_reported_ms: int | None = None
        self._open: dict[str, _Open] = {}
        self._candles_seen: dict[str, int] = {}
        self._rings: tuple[dict[str, Any], dict[str, Any]] = ({}, {})  # rows, candles by symbol
        self._pending: deque[OrderEvent] = deque()
        self._rejects: list[OrderRejected] = []
        self.dirty = False  # journal rows written since the last flush

    # -- time --------------------------------------------------------------------------------
    def _now(self, event_ms: int) -> int:
        return max(event_ms, self.venue.now_ms)

    def tick(self, now_ms: int) -> None:
        """Exchange time reached now_ms without market data (lets stale data be noticed)."""
        self._time(now_ms)

    def _time(self, ts_ms: int) -> None:
        if ts_ms >= self._next_second_ms:
            self._next_second_ms = (ts_ms // SECOND_MS + 1) * SECOND_MS
            self._on_second(ts_ms)

    # -- control (Telegram, dashboard, the venue adapter) --------------------------------------
    def halt(self, reason: str, ts_ms: int) -> None:
        """Halt trading by hand: cancel entries (and flatten when configured)."""
        self._observe(HaltRequested(ts_ms, reason))

    def flatten(self, reason: str, ts_ms: int) -> list[str]:
        """Close every open position at market (reduce-only; its protective orders cancelled).

        Returns the symbols an exit was sent for. The trading state is left as it is: an
        operator who wants no new entries halts or stops entries as well.
        """
        now = self._now(ts_ms)
        closed = []
        for symbol, position in sorted(self.portfolio.positions.items()):
            if position.qty == 0:
                continue
            side = Side.BUY if position.qty > 0 else Side.SELL
            view = RiskPosition(symbol, side, abs(position.qty), position.avg_price)
            price = self.last_price.get(symbol, position.avg_price)
            decision = self.gate.request_exit(view, price, now, reason)
            if isinstance(decision, Denied):
                self._deny(symbol, decision.reason.value, decision.detail)
                continue
            self._execute(decision.commands)
            closed.append(symbol)
        return closed

    def resume(self, by: str, ts_ms: int) -> None:
        """Resume after a halt; the losses so far are acknowledged (risk/state.py)."""
        self._observe(ResumeRequested(ts_ms, by))

    def on_error(self, kind: str, ts_ms: int) -> None:
        """Count a venue or transport error toward the error storm that halts trading."""
        self._observe(ErrorObserved(ts_ms, kind))

    @property
    def trading_state(self) -> TradingState:
        return self.gate.trading_state

    def on_venue_events(self, events: list[OrderEvent]) -> None:
        """Fold order events an asynchronous venue (Binance) reports after the fact."""
        self._handle(events)
        self.flush()

    def take_over(self, update: GateUpdate, ts_ms: int, observation: Observation | None = None) -> None:
        """Act on a gate update made outside the loop (start-up protection): orders, problems, state."""
        for symbol, position in self.portfolio.open_positions().items():
            side = PositionSide.LONG if position.qty > 0 else PositionSide.SHORT
            self._open.setdefault(symbol, _Open(side, ts_ms))
        self._problems(update.problems, ts_ms)
        self._execute(update.commands)
        if observation is not None:
            self._observe(observation)

    # -- market inputs (after the pipeline applied them) ------------------------------------
    def on_trade(self, trade: TradePrinted) -> None:
        """Feed a printed trade to the venue (resting fills, stop triggers)."""
        price = self.last_price[trade.symbol] = Decimal(repr(trade.price))
        self.context_inputs.on_trade(trade.symbol, price, trade.ts_event_ms)
        self._handle(self.venue.on_trade(trade))
        self._time(trade.ts_event_ms)

    def on_mark_price(self, mark: MarkPriceUpdated) -> None:
        """Feed a futures mark price (funding, mark-triggered stops) to the venue and the filters."""
        self.context_inputs.on_mark_price(mark)
        self._handle(self.venue.on_mark_price(mark))
        self._time(mark.ts_event_ms)

    def on_book(self, state: SymbolMarketData) -> None:
        """Let the venue see a changed book (resting limit crosses); a valid book is fresh data."""
        ts = state.last_depth_event_ms
        if ts is None:
            return
        if state.book_valid:
            self._data_ms = ts if self._data_ms is None else max(self._data_ms, ts)
            self._handle(self.venue.on_book(state.symbol, state.book, ts))
        self._time(ts)

    # -- data inputs ---------------------------------------------------------------------------
    def on_rows_closed(self, state: SymbolMarketData, n_rows: int) -> None:
        """Row hook: RowClosed per closed row, CandleClosed per closed candle, to the strategy."""
        symbol = state.symbol
        rows = state.rows
        if n_rows and bool(rows.last("book_valid")):  # a row folded on a valid book is data
            closed_ms = int(rows.last("ts")) + SECOND_MS
            self._data_ms = closed_ms if self._data_ms is None else max(self._data_ms, closed_ms)
        for ts in rows.window("ts", min(n_rows, len(rows))):
            self._to_strategy(RowClosed(symbol, int(ts)), int(ts) + SECOND_MS)
        seen = self._candles_seen.get(symbol, 0)
        new = state.candles.total_appended - seen
        if new:
            self._candles_seen[symbol] = state.candles.total_appended
            for ts in state.candles.window("ts", min(new, len(state.candles))):
                self._to_strategy(CandleClosed(symbol, int(ts)), int(ts) + MINUTE_MS)
                self._vote_signal(symbol, int(ts) + MINUTE_MS)

    def on_score(self, score: ScoreUpdated) -> None:
        """Model listener: a fresh score goes to the strategy."""
        self.scores[score.symbol] = score
        ts, symbol = score.ts_ms + SECOND_MS, score.symbol
        price = float(self.last_price.get(symbol, 0))
        bundle = self._bundle_id(symbol) if self._bundle_id else ""
        self.notices.score(symbol, 1, score.confidence, score.threshold, ts, price, bundle,
                           score.contributions)
        if score.fall_confidence is not None and score.fall_threshold is not None:
            self.notices.score(symbol, -1, -score.fall_confidence, score.fall_threshold, ts, price,
                               bundle, score.contributions)
        self._to_strategy(score, ts)

    def _vote_signal(self, symbol: str, ts_ms: int) -> None:
        """Tell when the vote strategy's confidence reaches its threshold (either side)."""
        decisions = getattr(self.strategy, "decisions", None)  # the vote strategy keeps its last
        decision = decisions.get(symbol) if isinstance(decisions, Mapping) else None
        tally = getattr(decision, "tally", None)
        if decision is None or tally is None:
            return
        price = float(self.last_price.get(symbol, 0))
        for side in (1, -1):
            self.notices.score(symbol, side, tally.confidence, decision.threshold, ts_ms, price,
                               "vote", tally.contributions)

    # -- strategy -------------------------------------------------------------------------------
    def context(self, now_ms: int) -> StrategyContext:
        """Build the strategy's read-only view at now_ms."""
        md = self.market_data
        if len(self._rings[0]) != len(md):  # the rings themselves never change: mapped once
            self._rings = ({s: st.rows for s, st in md.items()}, {s: st.candles for s, st in md.items()})
        return StrategyContext(
            now_ms=now_ms,
            equity=self._equity(),
            rows=self._rings[0],
            candles=self._rings[1],
            features=LazyFeatures(md, self._feature_vectors),
            scores=dict(self.scores),
            positions=position_views(self._open, self.portfolio, self.last_price),
            book_valid=BookValidity(md),
            market=self.context_inputs.market(),
            sentiment=self.context_inputs.sentiment(),
        )

    def on_other_market_price(self, symbol: str, price: float) -> None:
        """Record the other market's price of symbol (spot for a futures engine, and vice versa)."""
        self.context_inputs.on_other_market_price(symbol, price, self.exchange_time_ms)

    def _to_strategy(self, event, event_ms: int) -> None:  # type: ignore[no-untyped-def]
        now = self._now(event_ms)
        for request in self.strategy.on_event(event, self.context(now)):
            self.stats.requests += 1
            if isinstance(request, EnterRequest):
                self._enter(request, now)
            elif isinstance(request, ExitRequest):
                self._exit(request, now)

    def _enter(self, request: EnterRequest, now: int) -> None:
        symbol = request.symbol
        if symbol in self.blocked:
            self._deny(symbol, "blocked", self.blocked[symbol])
            return
        entry = EntryRequest(
            symbol=symbol,
            side=request.side.entry_side,
            strength=Decimal(repr(request.strength)),
            stop_distance=request.stop_distance,
            reference_price=request.reference_price,
            ts_ms=now,
            reason=request.reason,
        )
        state = self.market_data.get(symbol)
        market = MarketView(
            symbol, state.book_valid if state else False,
            state.last_depth_event_ms if state else None, self._model_warm(symbol),
        )
        decision = self.gate.request_entry(entry, self.account_view(), market)
        if isinstance(decision, Denied):
            self._deny(symbol, decision.reason.value, decision.detail)
            self._journal_signal(request, now)
            return
        bundle = self._bundle_id(symbol) if self._bundle_id else request.reason
        why = EntryReason(request.confidence, request.threshold, bundle,
                          top_contributions(request.contributions))
        self.notices.entry_reason(symbol, why)  # before: a fill at once carries it
        self._execute(decision.commands)
        self.log.info("entry", symbol=symbol, side=request.side.value, strength=request.strength,
                      confidence=request.confidence, threshold=request.threshold, ts_ms=now)
        self._journal_signal(request, now)  # after the order left: the intent is the durable part

    def _journal_signal(self, request: EnterRequest, now: int) -> None:
        """Journal an entry signal with what produced it (batched: committed with the next write)."""
        if self.journal is None:
            return
        symbol = request.symbol
        modelled = self._bundle_id is not None and isinstance(self.scores.get(symbol), ScoreUpdated)
        self.journal.record_signal(
            symbol=symbol, ts_ms=now, score=request.confidence, threshold=request.threshold,
            direction=request.side.value,
            bundle_id=self._bundle_id(symbol) if modelled else f"strategy:{request.reason}",
            feature_set_hash=self._feature_set_hash(symbol) if modelled else "",
            contributions=dict(request.contributions),
        )
        self.dirty = True

    def _exit(self, request: ExitRequest, now: int) -> None:
        symbol = request.symbol
        position = self.portfolio.positions.get(symbol)
        if position is None or position.qty == 0:
            return
        side = Side.BUY if position.qty > 0 else Side.SELL
        view = RiskPosition(symbol, side, abs(position.qty), position.avg_price)
        price = self.last_price.get(symbol, position.avg_price)
        decision = self.gate.request_exit(view, price, now, request.reason.value)
        if isinstance(decision, Denied):
            self._deny(symbol, decision.reason.value, decision.detail)
            return
        self._execute(decision.commands)

    def _deny(self, symbol: str, reason: str, detail: str) -> None:
        self.stats.denied += 1
        self.stats.denials[reason] = self.stats.denials.get(reason, 0) + 1
        self.log.info("entry_denied", symbol=symbol, reason=reason, detail=detail)

    # -- commands and order events -------------------------------------------------------------
    def _execute(self, commands: tuple[Command, ...] | list[Command]) -> None:
        for command in commands:
            if isinstance(command, SubmitOrder):
                if self.journal is not None:  # the intent is durable before the venue hears of it
                    self.journal.record_intent(command.intent, command.ts_ms)
                self.stats.submitted += 1
                self.notices.sent(command)
                events = self.venue.submit(command.intent, self._now(command.ts_ms))
            elif isinstance(command, SubmitOrderList):  # spot OCO: both legs journaled first
                self.notices.sent(command)
                for intent in command.orders:
                    if self.journal is not None:
                        self.journal.record_intent(intent, command.ts_ms)
                    self.stats.submitted += 1
                events = self.venue.submit_list(
                    command.list_client_order_id, command.orders, self._now(command.ts_ms)
                )
            elif isinstance(command, CancelOrder):
                events = self.venue.cancel(command.symbol, command.client_order_id,
                                           self._now(command.ts_ms))
            else:
                continue
            self._handle(events)

    def _handle(self, events: list[OrderEvent]) -> None:
        if not events:
            return
        # Events queue up so that commands they cause run after the whole batch is folded.
        draining = bool(self._pending)
        self._pending.extend(events)
        if draining:
            return
        while self._pending:
            self._on_order_event(self._pending.popleft())

    def _on_order_event(self, event: OrderEvent) -> None:
        self.dirty = True
        if self.journal is not None:
            self.journal.record_order_event(event)
        symbol = getattr(event, "symbol", "")
        was_open = self._is_open(symbol)
        before = self.portfolio.positions.get(symbol)
        duplicates = self.portfolio.duplicate_fills
        self.portfolio.apply(event)
        if isinstance(event, OrderFilled) and self.portfolio.duplicate_fills == duplicates:
            after = self.portfolio.positions[symbol]
            realized = after.realized_pnl - (before.realized_pnl if before else 0)
            self.notices.filled(event, realized, after.fees - (before.fees if before else 0))
        ts = getattr(event, "ts_event_ms", self.venue.now_ms)
        if isinstance(event, OrderFilled):
            self.stats.fills += 1
            self.last_price.setdefault(symbol, event.price)
            self.log.info("fill", symbol=symbol, side=event.side.value, price=str(event.price),
                          quantity=str(event.quantity), client_order_id=event.client_order_id)
        elif isinstance(event, OrderRejected):
            self.stats.rejected += 1
            self.log.warning("order_rejected", symbol=symbol, client_order_id=event.client_order_id,
                             reason=event.reason, message=event.message)
            self._rejects.append(event)
        price = self.last_price.get(symbol, Decimal(0))
        update = self.gate.on_order_event(event, price, ts)
        self.notices.order_event(event, self.gate.plans.get(symbol))
        is_open = self._is_open(symbol)
        if is_open and not was_open:
            position = self.portfolio.positions[symbol]
            side = PositionSide.LONG if position.qty > 0 else PositionSide.SHORT
            self._open[symbol] = _Open(side, ts)
            self._to_strategy(PositionOpened(symbol, side, abs(position.qty), position.avg_price, ts), ts)
        elif was_open and not is_open:
            self._open.pop(symbol, None)
            self._to_strategy(PositionClosed(symbol, ts, getattr(event, "client_order_id", "")), ts)
        self._problems(update.problems, ts)
        self._execute(update.commands)
        while self._rejects:  # each venue reject counts toward an error storm (after its fold)
            rejected = self._rejects.pop(0)
            self._observe(ErrorObserved(rejected.ts_event_ms, rejected.reason))

    def _is_open(self, symbol: str) -> bool:
        position = self.portfolio.positions.get(symbol)
        return position is not None and position.qty != 0

    # -- views ------------------------------------------------------------------------------
    def _mark_all(self) -> None:
        for symbol, price in self.last_price.items():
            self.portfolio.mark(symbol, price)

    def _equity(self) -> Decimal:
        self._mark_all()
        return self.portfolio.equity()

    def _realized_net(self) -> Decimal:
        portfolio = self.portfolio
        return portfolio.realized_pnl() - portfolio.fees() + portfolio.funding()

    @property
    def realized_pnl_today(self) -> Decimal:
        """Return realised PnL since the UTC day began (exchange time), net of fees and funding."""
        return self._realized_net() - self._day_start_realized

    def account_view(self) -> AccountView:
        """Return the account as the risk gate judges entries on it."""
        counts = {s: self.venue.open_order_count(s) for s in self.instruments}
        return AccountView(
            equity=self._equity(), day_start_equity=self.day_start_equity,
            realized_pnl_today=self.realized_pnl_today,
            positions=risk_positions(self.portfolio), open_orders=counts,
        )

    def _halt_inputs(self) -> HaltInputs:
        return open_order_views(self.venue), risk_positions(self.portfolio), dict(self.last_price)

    # -- risk state ---------------------------------------------------------------------------
    def _observe(self, observation: Observation) -> None:
        update = self.gate.observe(observation, halt_inputs=self._halt_inputs)
        for transition in update.transitions:
            self.stats.transitions.append(transition)
            self.log.warning(
                "trading_state", from_state=transition.from_state.value,
                to_state=transition.to_state.value, trigger=transition.trigger.value,
                detail=transition.detail, ts_ms=transition.ts_ms,
            )
            self.notices.transition(transition)
        self._problems(update.problems, observation.ts_ms)
        self._execute(update.commands)

    def _problems(self, problems: tuple[str, ...], ts_ms: int) -> None:
        for problem in problems:
            self.log.error("protection_problem", problem=problem)
            self.notices.problem(ts_ms, problem)

    # -- periodic, on exchange time ----------------------------------------------------------
    def _on_second(self, ts_ms: int) -> None:
        """Once per second of exchange time: the UTC day, the risk state, the curve, the summary."""
        self.exchange_time_ms = max(self.exchange_time_ms, ts_ms)
        day = ts_ms // DAY_MS
        if day != self._day:
            self._new_day(day, ts_ms)
        if self._data_ms is not None and self._data_ms != self._data_reported_ms:
            self._data_reported_ms = self._data_ms
            self._observe(DataObserved(self._data_ms))
        self._observe(ClockTicked(ts_ms))
        self._observe(EquityObserved(self._equity(), ts_ms))
        if self.curve.due(ts_ms):
            point = self.curve.maybe_record(ts_ms, self.portfolio)  # marked just above
            if point is not None:
                self.dirty = True
                if self.journal is not None:
                    self.journal.record_equity(ts_ms, point.equity, point.gross_exposure,
                                               dict(self.last_price))
        if self.summary.due(ts_ms):
            line = summary_line(self.portfolio.summary_fields(self.curve))
            self.summaries.append(line)
            self.log.info("portfolio", ts_ms=ts_ms, summary=line)

    def _new_day(self, day: int, ts_ms: int) -> None:
        equity = self._equity()
        trades = self.portfolio.closed_trades
        if self._day is not None:  # the summary of the day that ended
            pnls = [t.pnl for t in trades[self._day_start_trades:]]
            self.notices.day_ended(self._day * DAY_MS, ts_ms, equity, self.day_start_equity, pnls)
        self._day = day
        self.day_start_equity = equity
        self._day_start_realized = self._realized_net()
        self._day_start_trades = len(trades)

    def flush(self) -> None:
        """Commit journaled rows (once per loop turn)."""
        if self.journal is not None and self.dirty:
            self.journal.flush()
        self.dirty = False

