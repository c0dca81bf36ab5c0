"""Composition root: build_app(config) wires the market-data path; App.run() owns the TaskGroup.

No package imports this module; the CLI builds an App and runs it. Two Apps in one process are
independent (no global state), which the tests rely on.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from engine.clock import Clock, LiveClock
from engine.config import Config
from engine.journal import Journal
from engine.livefeatures import LiveFeatures
from engine.livemodels import LiveModels
from engine.marketdata import MarketDataPipeline, SymbolMarketData
from engine.model import Market
from engine.modes import TradingSink, build_trading, fetch_exchange_info, on_binance, trades
from engine.notices import Notice
from engine.recorder import ParquetCollector, TapeWriter
from engine.shutdown import (
    FLUSH_RESERVE_S,
    INTAKE_SHARE,
    ShutdownSequence,
    cancel_open_orders,
    shutdown_config_of,
)
from engine.trading import TradingLoop
from exchange.binance.feed import MarketFeed
from exchange.binance.urls import BinanceEndpoints, combined_stream_urls, market_streams
from exchange.ws import WsConfig


def endpoints_of(config: Config) -> BinanceEndpoints:
    ep = config.endpoints.for_market(config.market.type)
    return BinanceEndpoints(ep.rest, ep.ws, ep.routed)


@dataclass
class RowLogger:
    """Log every closed per-second row at debug level and one summary per symbol per minute."""

    log: structlog.stdlib.BoundLogger = field(default_factory=lambda: structlog.get_logger("engine.rows"))
    _debug: bool | None = None

    def __call__(self, state: SymbolMarketData, n_rows: int) -> None:
        rows = state.rows
        ts = int(rows.last("ts"))
        if self._debug is None:  # the level is set once at start-up
            check = getattr(self.log, "isEnabledFor", None) or getattr(self.log, "is_enabled_for", None)
            self._debug = True if check is None else bool(check(logging.DEBUG))
        if ts % 60_000 != 59_000 and not self._debug:
            return  # neither a debug row line nor the minute line: read nothing more
        self.log.debug(
            "row", symbol=state.symbol, ts=ts, close=float(rows.last("close")),
            volume=float(rows.last("volume")), trades=int(rows.last("trades")),
            bid=float(rows.last("bid")), ask=float(rows.last("ask")), book_valid=bool(rows.last("book_valid")),
        )
        if ts % 60_000 == 59_000:
            self.log.info(
                "minute", symbol=state.symbol, ts=ts - 59_000, close=float(rows.last("close")),
                bid=float(rows.last("bid")), ask=float(rows.last("ask")),
                bid_depth_100bp=float(rows.last("bid_depth_100bp")),
                ask_depth_100bp=float(rows.last("ask_depth_100bp")), book_valid=bool(rows.last("book_valid")),
            )


class App:
    """One engine: feed, pipeline, features, models, trading loop, recorder/collector, heartbeat."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        record_to: Path | None = None,
        collect_to: Path | None = None,
        tick_sizes: dict[str, object] | None = None,
        on_book_changed: Callable[[SymbolMarketData], None] | None = None,
        exchange_info: list[dict] | None = None,
        journal: Journal | None = None,
        journal_path: Path | None = None,
    ) -> None:
        self.config = config
        # long-running side services (notifier, dashboard, ...) started in run()'s TaskGroup
        self._services: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        self.notice_listeners: list[Callable[[Notice], None]] = []
        self.clock = clock or LiveClock()
        self.log = structlog.get_logger("engine.app")
        self.recorder = TapeWriter(record_to) if record_to else None
        self.collector = ParquetCollector(collect_to) if collect_to else None
        self.features = LiveFeatures(config.features, config.market.symbols)
        self.models = LiveModels(config.models.dir, config.market.symbols, self.features.plans)
        self._started_with_models = self.models.available
        if self.models.available:
            self.features.listeners.append(self.models)
        self._row_hooks: list[Callable[[SymbolMarketData, int], None]] = [self.features, RowLogger()]
        self._on_book_changed = on_book_changed
        # a journal passed in belongs to the caller (flushed on stop); one opened here is closed
        self._owns_journal = journal is None and journal_path is not None
        if self._owns_journal:
            assert journal_path is not None
            journal_path.parent.mkdir(parents=True, exist_ok=True)
            journal = Journal.open(journal_path)
        self.journal = journal
        self.shutdown_config = shutdown_config_of(config)
        self.shutdown: ShutdownSequence | None = None
        self._final_logged = False
        self.trading: TradingLoop | None = None
        if self.collector is not None:
            self._row_hooks.append(self.collector)  # type: ignore[arg-type]
        self.pipeline = MarketDataPipeline(
            config.market.type,
            config.market.symbols,
            config.fold,
            request_snapshot=self._request_snapshot,
            on_rows_closed=self._rows_closed,
            on_book_changed=self._book_changed,
            tick_sizes=tick_sizes,
        )
        self.sink: MarketDataPipeline | TradingSink = self.pipeline
        if trades(config) and exchange_info is not None and not on_binance(config):
            self.attach_trading(exchange_info)
        self.binance: Any = None  # the BinanceSession of modes testnet and live
        self.feed: MarketFeed | None = None
        self._stopped = asyncio.Event()

    def attach_trading(self, exchange_info: list[dict], **venue: Any) -> None:
        """Start trading with these exchangeInfo entries: simulated venue, or `venue` (Binance)."""
        self.trading = build_trading(
            self.config, exchange_info, self.pipeline, self.features,
            self.models if self.models.available else None, self.journal, **venue,
        )
        # after LiveFeatures: a row's vectors and scores reach the strategy before its RowClosed
        self.add_row_hook(self.trading.on_rows_closed, decides=True)
        self.models.listeners.append(self.trading.on_score)
        self.trading.notice_listeners.append(self.notify)
        self.add_service("trading-clock", self._tick_while_silent)
        if self.config.strategy.filters.basis.enabled:
            from engine.othermarket import OtherMarketPrices

            other = Market.SPOT if self.config.market.type is Market.USDM else Market.USDM
            poller = OtherMarketPrices(other, self.config.endpoints.for_market(other).rest,
                                       self.config.market.symbols, self.clock)
            trading = self.trading
            self.add_service("other-market-prices", lambda: poller.run(trading.on_other_market_price))
        sentiment = self.config.strategy.filters.sentiment
        if sentiment.enabled:
            from strategy.signals.sentiment import SentimentFeed

            feed = SentimentFeed(sentiment, self.clock)
            self.trading.context_inputs.sentiment_source = feed.cached

            async def refresh_sentiment() -> None:
                try:  # every failure degrades to neutral inside the feed (logged once)
                    while True:
                        await feed.get()
                        await self.clock.sleep(min(sentiment.ttl_s, sentiment.retry_s))
                finally:
                    await feed.close()

            self.add_service("sentiment", refresh_sentiment)
        self.sink = TradingSink(self.pipeline, self.trading)

    def _book_changed(self, state: SymbolMarketData) -> None:
        if self._on_book_changed is not None:
            self._on_book_changed(state)
        if self.trading is not None:
            self.trading.on_book(state)

    def _request_snapshot(self, symbol: str) -> None:
        if self.feed is not None:
            self.feed.request_snapshot(symbol)

    def _rows_closed(self, state: SymbolMarketData, n_rows: int) -> None:
        for hook in self._row_hooks:
            hook(state, n_rows)

    def add_row_hook(self, hook, *, decides: bool = False) -> None:  # type: ignore[no-untyped-def]
        """Call hook per closed row; one that decides (trading) runs right after the features,
        ahead of bookkeeping (row log lines, the collector) that would only delay its orders."""
        at = self._row_hooks.index(self.features) + 1 if decides else len(self._row_hooks)
        self._row_hooks.insert(at, hook)

    def _tap(self, ts_recv_ns: int, payload: bytes, snapshot_symbol: str | None) -> None:
        assert self.recorder is not None
        if snapshot_symbol is None:
            self.recorder.write_frame(ts_recv_ns, payload)
        else:
            self.recorder.write_snapshot(ts_recv_ns, snapshot_symbol, payload)

    def connection_specs(self):  # type: ignore[no-untyped-def]
        cfg = self.config
        routes = market_streams(
            cfg.market.type, cfg.market.symbols, depth_speed_ms=cfg.streams.depth_speed_ms,
            trades=cfg.streams.trade_stream(cfg.market.type),  # type: ignore[arg-type]
            mark_price=cfg.streams.mark_price,
        )
        return combined_stream_urls(endpoints_of(cfg), routes)

    def stop(self) -> None:
        """Ask run() to shut down (safe from a signal handler; repeated calls are harmless)."""
        self._stopped.set()

    def reload_models(self) -> str:
        """Reload promoted model bundles (the /reload command); return what changed, in words."""
        trading = self.trading
        before = {s: [m.bundle.path.name for m in ms] for s, ms in self.models.models.items()}
        refused_before = dict(self.models.refused)
        self.models.reload(self.config.models.dir, self.config.market.symbols, self.features.plans)
        if not self._started_with_models:  # the strategy was chosen at start (vote without models)
            if self.models.available:
                return ("New bundles verified, but this engine started without models and runs the vote "
                        "strategy: restart it to trade them.")
            return "No promoted bundles." + (f" Refused: {self.models.refused}" if self.models.refused else "")
        if trading is not None:  # a refused coin is not traded; a coin whose refusal cleared is again
            for symbol, reason in refused_before.items():
                if trading.blocked.get(symbol) == reason and symbol not in self.models.refused:
                    del trading.blocked[symbol]
            trading.blocked.update(self.models.refused)
        after = {s: [m.bundle.path.name for m in ms] for s, ms in self.models.models.items()}
        self.log.info("models_reloaded", before=before, after=after, refused=self.models.refused)
        refused = f" Refused (not traded): {self.models.refused}." if self.models.refused else ""
        return f"Models reloaded: {after or 'none'}.{refused}"

    async def _tick_while_silent(self) -> None:
        """Advance the trading loop's clock while the feed is silent, so stale data is noticed.

        Exchange time only moves with frames; when none arrive for a while (a dead feed), the
        loop is ticked at the last exchange time plus the wall time since it last moved.
        """
        last_seen_ms, last_moved_ns = -1, self.clock.monotonic_ns()
        while True:
            await self.clock.sleep(1.0)
            trading = self.trading
            if trading is None:
                continue
            now_ns = self.clock.monotonic_ns()
            if trading.exchange_time_ms != last_seen_ms:
                last_seen_ms, last_moved_ns = trading.exchange_time_ms, now_ns
                continue
            silent_ms = (now_ns - last_moved_ns) // 1_000_000
            if last_seen_ms > 0 and silent_ms >= 2_000:
                trading.tick(last_seen_ms + silent_ms)

    def add_service(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `run()` in the App's TaskGroup next to the feed; it is cancelled on stop."""
        self._services.append((name, run))

    def notify(self, notice: Notice) -> None:
        """Hand a notice to every listener (Telegram, dashboard); a failing listener is logged, never fatal."""
        for listener in self.notice_listeners:
            try:
                listener(notice)
            except Exception:
                self.log.exception("notice_listener_failed", notice=type(notice).__name__)

    async def run(self, duration_s: float | None = None) -> None:
        """Run until stop(), SIGTERM, the duration or cancellation; then shut down in order, timed."""
        cfg = self.config
        self.shutdown = ShutdownSequence(self.shutdown_config.timeout_s, self.clock, self.log)
        async with aiohttp.ClientSession() as http:
            try:
                if trades(cfg) and self.trading is None and not on_binance(cfg):
                    self.attach_trading(await fetch_exchange_info(cfg, http))
                self.feed = MarketFeed(
                    market=cfg.market.type,
                    endpoints=endpoints_of(cfg),
                    connections=self.connection_specs(),
                    sink=self.sink,
                    clock=self.clock,
                    http=http,
                    queue_size=cfg.streams.queue_size,
                    snapshot_limit=cfg.book.snapshot_limit,
                    min_resync_interval_s=cfg.book.min_resync_interval_s,
                    ws_config=self._ws_config(),
                    tap=self._tap if self.recorder else None,
                )
                async with asyncio.TaskGroup() as tg:
                    venue_tasks = await self._start_binance(tg, http) if on_binance(cfg) else []
                    # What start-up built (models, books, rings, config) lives as long as the
                    # engine: out of the collector's reach, a full collection no longer walks it
                    # (bench/tick_to_order's process saw full collections of 150-250 ms)
                    gc.collect()
                    gc.freeze()
                    intake = [tg.create_task(self.feed.run(), name="feed"),
                              tg.create_task(self._heartbeat(), name="heartbeat")]
                    stop_task = tg.create_task(self._stopped.wait(), name="stop")
                    timer = tg.create_task(self.clock.sleep(duration_s), name="duration") if duration_s else None
                    services = venue_tasks + [tg.create_task(run(), name=name) for name, run in self._services]
                    waiters = [t for t in (stop_task, timer) if t is not None]
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                    self.log.info("stopping", reason="stop" if stop_task.done() else "duration",
                                  timeout_s=self.shutdown.timeout_s,
                                  orders_on_exit=self.shutdown_config.orders_on_exit)
                    for task in waiters:
                        task.cancel()
                    # Within the group: a task that ignores cancellation cannot delay the durable steps.
                    await self._shut_down(intake, services)
            finally:
                await self._shut_down([], [])  # after a crash or a cancellation; done steps are skipped
                gc.unfreeze()  # a process running engines one after another (tests) reclaims them

    async def _shut_down(self, intake: list[asyncio.Task], services: list[asyncio.Task]) -> None:
        """Stop intake, keep or cancel orders, flush and close files, stop services, log the end."""
        seq = self.shutdown
        assert seq is not None
        seq.start()
        await seq.step("intake", lambda: self._stop_intake(intake), INTAKE_SHARE * seq.timeout_s)
        await seq.step("orders", self._orders_on_exit, max(0.0, seq.remaining_s - FLUSH_RESERVE_S))
        await seq.step("journal", self._close_journal)
        if self.recorder is not None:
            await seq.step("recorder", self.recorder.close)
        if self.collector is not None:
            await seq.step("collector", self.collector.close)
        await seq.step("services", lambda: _cancel_and_wait(services))
        if not self._final_logged:
            self._final_logged = True
            self._log_final(seq)

    async def _stop_intake(self, tasks: list[asyncio.Task]) -> None:
        # Close the sockets first (close handshakes), then stop the consumer: no frame, hence no
        # strategy decision, is handled after this step.
        if self.feed is not None:
            try:
                await asyncio.wait_for(self.feed.close(), INTAKE_SHARE * self.shutdown_config.timeout_s / 2)
            except TimeoutError:
                self.log.warning("feed_close_timeout")
        await _cancel_and_wait(tasks)

    async def _start_binance(self, tg: asyncio.TaskGroup, http: aiohttp.ClientSession) -> list[asyncio.Task]:
        """Testnet/live: start the venue and user stream, reconcile, then trade (engine.live_start)."""
        from engine.config import load_secrets
        from engine.live_start import (
            binance_keys,
            build_session,
            current_prices,
            protect_holdings,
            start_session,
        )
        from exchange.binance.startup import patiently

        cfg = self.config
        assert self.journal is not None, "modes testnet and live journal every order"
        session = build_session(cfg, self.clock, http, self.journal, binance_keys(load_secrets()))
        self.binance = session
        # the user stream signs its subscription on the exchange's time
        await patiently("server time", session.rest.sync_time, self.clock)
        tasks = [tg.create_task(session.venue.run(), name="binance-orders"),
                 tg.create_task(session.stream.run(), name="user-stream")]
        report = await start_session(session, cfg, self.journal, self.clock)
        balances = {a: b.total for a, b in session.venue.balances().items()}
        # through the signed client: typed errors, retried, and the rate budgets seeded from it
        info = await patiently("exchangeInfo", session.rest.exchange_info, self.clock)
        wanted = set(cfg.market.symbols)
        entries = [e for e in info.get("symbols", []) if e.get("symbol") in wanted]
        self.attach_trading(entries, venue=session.venue,
                            balances=balances, restore_fills=self.journal.fills())
        assert self.trading is not None
        prices = await patiently("prices", lambda: current_prices(session.rest, cfg.market.symbols), self.clock)
        for symbol, price in prices.items():
            self.trading.last_price[symbol] = price
            self.trading.portfolio.mark(symbol, price)
        self.trading.day_start_equity = self.trading.portfolio.start_equity = self.trading.portfolio.equity()
        session.venue.set_listener(self.trading.on_venue_events)
        protect_holdings(self.trading, session.venue, report, cfg.execution.adopt_stop_pct,
                         session.venue.now_ms)
        self.log.info("binance_trading_started", mode=cfg.mode, positions=len(session.venue.positions()),
                      open_orders=session.venue.open_order_count())
        return tasks

    async def _orders_on_exit(self) -> None:
        policy = self.shutdown_config.orders_on_exit
        if self.trading is None:
            return
        loop = self.trading
        if self.binance is not None:  # asynchronous venue: queue the cancels, wait for answers
            venue = self.binance.venue
            cancelled, kept = cancel_open_orders(venue, policy, lambda event: None)
            drained = await venue.drain()
            await venue.close()
            self.log.info("orders_on_exit", policy=policy, cancelled=cancelled, kept=kept, answered=drained)
            return

        def record(event) -> None:  # type: ignore[no-untyped-def]
            if self.journal is not None:
                self.journal.record_order_event(event)
            loop.portfolio.apply(event)

        cancelled, kept = cancel_open_orders(loop.venue, policy, record, loop.venue.config.latency_ms)
        self.log.info("orders_on_exit", policy=policy, cancelled=cancelled, kept=kept)

    def _close_journal(self) -> None:
        if self.trading is not None:
            self.trading.flush()
        if self.journal is not None:
            self.journal.flush()
            if self._owns_journal:
                self.journal.close()
                self._owns_journal = False

    def _log_final(self, seq: ShutdownSequence) -> None:
        extra = {}
        if self.recorder is not None:
            extra["recorded"] = {"frames": self.recorder.frames, "snapshots": self.recorder.snapshots}
        self.log.info("stopped", **seq.summary(), **extra, **self.health())

    def _ws_config(self) -> WsConfig:
        s = self.config.streams
        spot = self.config.market.type is Market.SPOT
        return WsConfig(
            max_outgoing_per_s=5 if spot else 10,
            backoff_initial_s=s.backoff_initial_s,
            backoff_max_s=s.backoff_max_s,
            # Binance pings every 20 s on spot, every 180 s on USDⓈ-M
            connection_timeout_s=s.connection_timeout_s or (90.0 if spot else 200.0),
            stall_timeout_s=dict(s.stall_timeout_s),
            rotate_after_s=s.rotate_after_h * 3600,
        )

    def health(self) -> dict:
        """Return the figures of the heartbeat line."""
        symbols = {}
        for symbol, st in self.pipeline.symbols.items():
            symbols[symbol] = {
                "book_valid": st.book_valid, "gaps": st.gaps, "snapshot_requests": st.snapshot_requests,
                "rows": st.rows.total_appended, "best_bid": st.book.best_bid(), "best_ask": st.book.best_ask(),
            }
        connections = {}
        if self.feed is not None:
            for session in self.feed.sessions:
                connections[session.spec.label] = session.stats_fields()
        stats = self.pipeline.stats
        return {"frames": stats.frames, "decoder": dict(self.pipeline.decoder.counters),
                "malformed_times": stats.malformed_times, "malformed_snapshots": stats.malformed_snapshots,
                "connections": connections, "symbols": symbols, "features": self.features.status()}

    async def _heartbeat(self) -> None:
        interval = self.config.logging.heartbeat_s
        last_frames = self.pipeline.stats.frames
        while True:
            await self.clock.sleep(interval)
            health = self.health()
            frames = health["frames"]
            self.log.info("heartbeat", msgs_per_s=round((frames - last_frames) / interval, 1), **health)
            last_frames = frames
            if self.journal is not None:  # the WAL is folded in here, off the order path
                self.journal.checkpoint()


async def _cancel_and_wait(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
