"""Live Binance market-data feed: websocket sessions, REST depth snapshots, one consumer loop.

The feed owns I/O only. Frames are handed, in arrival order, to a `FrameSink` (the engine's
market-data pipeline): socket readers enqueue raw bytes and never block; one consumer drains the
queue; snapshots fetched over REST and connection losses travel through the same queue, so the
sink sees them in the order they happened relative to the frames.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import structlog

from engine.clock import Clock
from engine.model import Market
from exchange.binance.urls import (
    BinanceEndpoints,
    ConnectionSpec,
    depth_snapshot_url,
    depth_snapshot_weight,
)
from exchange.ws import WsConfig, WsSession


class FrameSink(Protocol):
    def on_frame(self, payload: bytes, ts_recv_ns: int) -> None: ...

    def on_snapshot(self, symbol: str, payload: bytes, ts_recv_ns: int) -> None: ...

    def on_connection_lost(self, symbols: Iterable[str], reason: str) -> None: ...


FrameTap = Callable[[int, bytes, str | None], None]  # (ts_recv_ns, payload, snapshot_symbol)


@dataclass(frozen=True, slots=True)
class _SnapshotArrived:
    symbol: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class _ConnectionLost:
    symbols: tuple[str, ...]
    reason: str


@dataclass
class FeedStats:
    frames: int = 0
    snapshots_fetched: int = 0
    snapshot_failures: int = 0
    connection_losses: int = 0
    snapshot_weight_used: int = 0
    by_connection: dict[str, dict] = field(default_factory=dict)


class SnapshotError(Exception):
    """A depth snapshot could not be fetched; the caller retries later."""


def _symbols_of(spec: ConnectionSpec) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.partition("@")[0].upper() for s in spec.streams if not s.startswith("!")))


class MarketFeed:
    """Connect the configured streams and feed every frame and snapshot to a sink, in order."""

    def __init__(
        self,
        *,
        market: Market,
        endpoints: BinanceEndpoints,
        connections: list[ConnectionSpec],
        sink: FrameSink,
        clock: Clock,
        http: aiohttp.ClientSession,
        queue_size: int = 100_000,
        snapshot_limit: int = 1000,
        min_resync_interval_s: float = 1.0,
        ws_config: WsConfig | None = None,
        tap: FrameTap | None = None,
    ) -> None:
        self.market = market
        self.endpoints = endpoints
        self.connections = connections
        self.sink = sink
        self.clock = clock
        self.http = http
        self.snapshot_limit = snapshot_limit
        self.min_resync_interval_s = min_resync_interval_s
        self.tap = tap
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=queue_size)
        self.stats = FeedStats()
        self._wanted: asyncio.Queue[str] = asyncio.Queue()
        self._pending: set[str] = set()
        self._last_fetch_ns: dict[str, int] = {}
        self._log = structlog.get_logger("exchange.feed").bind(market=str(market))
        self.sessions = [
            WsSession(
                spec,
                self.queue,
                clock,
                config=ws_config,
                http=http,
                # the session places this marker in the frame queue exactly where data was lost
                # (disconnect, stall, queue overflow), so frames received before are handled first
                gap_marker=self._loss_marker(spec),
            )
            for spec in connections
        ]

    @staticmethod
    def _loss_marker(spec: ConnectionSpec) -> Callable[[str], object]:
        symbols = _symbols_of(spec)
        return lambda reason: _ConnectionLost(symbols, reason)

    def request_snapshot(self, symbol: str) -> None:
        """Ask for a fresh depth snapshot of symbol (deduplicated; fetched by the snapshot task)."""
        if symbol not in self._pending:
            self._pending.add(symbol)
            self._wanted.put_nowait(symbol)

    async def run(self) -> None:
        """Run sessions, the consumer and the snapshot fetcher until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for session in self.sessions:
                tg.create_task(session.run(), name=f"ws:{session.spec.label}")
            tg.create_task(self._consume(), name="feed:consume")
            tg.create_task(self._fetch_snapshots(), name="feed:snapshots")

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()

    async def _consume(self) -> None:
        queue, sink, tap = self.queue, self.sink, self.tap
        # a sink that queued work for other tasks (an order to send) asks for the loop at once,
        # so the order does not wait behind the frames already buffered
        wants_loop = getattr(sink, "wants_loop", None)
        while True:
            ts_recv_ns, item = await queue.get()
            while True:
                if type(item) is bytes:
                    self.stats.frames += 1
                    if tap is not None:
                        tap(ts_recv_ns, item, None)
                    sink.on_frame(item, ts_recv_ns)
                    if wants_loop is not None and wants_loop():
                        await asyncio.sleep(0)
                elif type(item) is _SnapshotArrived:
                    if tap is not None:
                        tap(ts_recv_ns, item.payload, item.symbol)
                    sink.on_snapshot(item.symbol, item.payload, ts_recv_ns)
                elif type(item) is _ConnectionLost:
                    self.stats.connection_losses += 1
                    sink.on_connection_lost(item.symbols, item.reason)
                try:  # drain what is already queued without yielding per frame
                    ts_recv_ns, item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break

    async def _fetch_snapshots(self) -> None:
        while True:
            symbol = await self._wanted.get()
            last = self._last_fetch_ns.get(symbol)
            if last is not None:
                wait_s = self.min_resync_interval_s - (self.clock.monotonic_ns() - last) / 1e9
                if wait_s > 0:
                    await self.clock.sleep(wait_s)  # snapshot weight is expensive (up to 250)
            self._pending.discard(symbol)
            self._last_fetch_ns[symbol] = self.clock.monotonic_ns()
            try:
                payload = await self.fetch_snapshot(symbol)
            except SnapshotError as exc:
                self.stats.snapshot_failures += 1
                self._log.warning("snapshot_failed", symbol=symbol, reason=str(exc))
                await self.clock.sleep(min(30.0, 1.0 + random.random() * 2 ** min(self.stats.snapshot_failures, 5)))
                self.request_snapshot(symbol)
                continue
            self.stats.snapshots_fetched += 1
            await self.queue.put((self.clock.now_ns(), _SnapshotArrived(symbol, payload)))

    async def fetch_snapshot(self, symbol: str) -> bytes:
        """GET the REST depth snapshot of symbol; raise SnapshotError on any failure."""
        url = depth_snapshot_url(self.endpoints, self.market, symbol, self.snapshot_limit)
        self.stats.snapshot_weight_used += depth_snapshot_weight(self.market, self.snapshot_limit)
        try:
            async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                body = await resp.read()
                if resp.status != 200:
                    retry_after = resp.headers.get("Retry-After")
                    if retry_after and retry_after.isdigit():
                        await self.clock.sleep(min(float(retry_after), 300.0))
                    raise SnapshotError(f"HTTP {resp.status}: {body[:200]!r}")
                return body
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise SnapshotError(f"{type(exc).__name__}: {exc}") from None
