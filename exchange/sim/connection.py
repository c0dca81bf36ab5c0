"""One simulated market-data websocket connection: routing, subscriptions, send queue, keep-alive.

Routing follows Binance (reference/binance-api.md §1.1):

* ``/stream?streams=a/b`` (combined) and ``/ws/<stream>[/<stream>]`` (raw) serve spot symbols.
  For a symbol only served as USDⓈ-M they act as the *legacy unrouted* futures URL and deliver
  only ``/public`` streams (the 2026 behaviour that silently starves old clients).
  ``/fstream/stream`` and ``/fstream/ws`` force that legacy futures behaviour (simulator-only path,
  for a symbol served on both markets).
* ``/public/...`` delivers USDⓈ-M depth, bookTicker and trade streams; ``/market/...`` delivers
  aggTrade, markPrice, kline and the rest. A stream asked on the wrong route is accepted and never
  delivers anything.

Every diff-depth name of a symbol (``@depth``, ``@depth@100ms``, ``@depth@250ms``, ``@depth@500ms``,
``@depth@0ms``) is served from the diff stream the tape recorded, with the envelope's stream name
rewritten to the one the client asked for: the ids chain the same at any cadence.

Frames are queued per connection and written by the connection's own task, so one slow client
never blocks the replay; the replay waits (bounded) only when a queue is over its high-water mark.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from engine.clock import Clock
from engine.model import Market
from exchange.sim.timeline import DIFF_STREAM_RE, Timeline

QUEUE_HIGH_WATER = 2048  # frames queued before the replay waits for this connection
QUEUE_LOW_WATER = 256
CLOSE_TIMEOUT_S = 2.0
_PUBLIC_FUTURES_RE = re.compile(
    r"^(?:[a-z0-9_]+@(?:(?:rpiD|d)epth\d*(?:@\d+ms)?|bookTicker|trade)|!bookTicker)$"
)


class Route(enum.StrEnum):
    """Which Binance URL family a connection was opened on."""

    UNROUTED = "unrouted"  # /stream, /ws: spot, or legacy futures for futures-only symbols
    PUBLIC = "public"  # USDⓈ-M /public
    MARKET = "market"  # USDⓈ-M /market
    LEGACY_FUTURES = "fstream"  # simulator-only: legacy unrouted USDⓈ-M


def is_public_futures_stream(stream: str) -> bool:
    """Return True when a USDⓈ-M stream belongs to the /public route."""
    return bool(_PUBLIC_FUTURES_RE.match(stream))


def resolve_stream(route: Route, stream: str, timeline: Timeline) -> tuple[Market, str] | None:
    """Return the timeline stream key a client stream name receives on a route, if any."""
    symbol = None if stream.startswith("!") else stream.partition("@")[0].upper()
    if route is Route.UNROUTED:
        served = timeline.markets.get(symbol, set()) if symbol else set()
        spot_wide = symbol is None and (Market.SPOT, stream) in timeline.streams
        market = Market.SPOT if Market.SPOT in served or spot_wide or not served else Market.USDM
    else:
        market = Market.USDM
    if market is Market.USDM:
        public = is_public_futures_stream(stream)
        if route is Route.MARKET and public or route is not Route.MARKET and not public:
            return None
    if (market, stream) in timeline.streams:
        return (market, stream)
    if symbol and DIFF_STREAM_RE.match(stream):
        recorded = timeline.diff_stream_of(market, symbol)
        if recorded is not None:
            return (market, recorded)
    return None


@dataclass(frozen=True, slots=True)
class _Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class _Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class Connection:
    """Server side of one client websocket: what it subscribed to and what it is owed."""

    def __init__(
        self,
        conn_id: int,
        ws: web.WebSocketResponse,
        transport: asyncio.BaseTransport | None,
        route: Route,
        combined: bool,
        clock: Clock,
        spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]],
    ) -> None:
        self.conn_id = conn_id
        self.ws = ws
        self.route = route
        self.combined = combined
        self.subs: dict[str, tuple[Market, str] | None] = {}  # client name -> timeline key
        self.frames_sent = 0
        self.closed = False
        self.closing = False  # the writer is in the close handshake
        self.stalled_until_ns = 0
        self.stall_pings = True
        self._transport = transport
        self._clock = clock
        self._spawn = spawn
        self._queue: deque[bytes | _Ping | _Pong | _Close] = deque()
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._flushed = asyncio.Event()  # set while nothing is queued
        self._flushed.set()
        self._pings: dict[bytes, int] = {}  # payload -> pong deadline (monotonic ns)
        self._incoming_ns: deque[int] = deque()
        self._writer = spawn(self._write_loop(), f"sim-ws-writer-{conn_id}")
        self._keepalive: asyncio.Task[None] | None = None

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def is_stalled(self, now_ns: int) -> bool:
        return now_ns < self.stalled_until_ns

    def send(self, payload: bytes) -> bool:
        """Queue one text frame; return True when the queue is over its high-water mark."""
        if self.closed:
            return False
        self._queue.append(payload)
        if not self._wakeup.is_set():
            self._wakeup.set()
            self._flushed.clear()
        if len(self._queue) >= QUEUE_HIGH_WATER:
            self._drained.clear()
            return True
        return False

    def send_pong(self, payload: bytes | bytearray) -> None:
        """Answer a client ping ahead of pending frames."""
        self._send_first(_Pong(bytes(payload)))

    def _send_first(self, item: _Ping | _Pong) -> None:
        if not self.closed:
            self._queue.appendleft(item)
            self._wakeup.set()

    async def wait_drained(self, timeout_s: float) -> bool:
        """Wait until the queue is back under its low-water mark; False on timeout."""
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def wait_flushed(self, timeout_s: float) -> bool:
        """Wait until everything queued has been written to the socket; False on timeout."""
        try:
            await asyncio.wait_for(self._flushed.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def close_after_flush(self, code: int, reason: str) -> None:
        """Close the connection once everything queued so far has been written."""
        if not self.closed:
            self._queue.append(_Close(code, reason))
            self._wakeup.set()

    def close_now(self, code: int, reason: str) -> None:
        """Drop pending frames and close with a close frame (abort if the client is stuck)."""
        if self.closed:
            return
        self._queue.clear()
        self._queue.append(_Close(code, reason))
        self._wakeup.set()
        self._spawn(self._abort_later(CLOSE_TIMEOUT_S), f"sim-ws-close-{self.conn_id}")

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, like a network failure."""
        self._mark_closed()
        if self._transport is not None:
            self._transport.abort()  # type: ignore[attr-defined]

    def note_incoming(self, limit_per_s: int) -> bool:
        """Count one incoming frame; return False when the per-second limit is exceeded."""
        now = self._clock.monotonic_ns()
        window = self._incoming_ns
        window.append(now)
        while window and window[0] <= now - 1_000_000_000:
            window.popleft()
        return len(window) <= limit_per_s

    def note_pong(self, payload: bytes | bytearray) -> None:
        """Settle the ping this pong echoes (and every earlier one)."""
        payload = bytes(payload)
        if payload in self._pings:
            deadline = self._pings[payload]
            self._pings = {p: d for p, d in self._pings.items() if d > deadline}

    def start_keepalive(self, interval_s: float, timeout_s: float) -> None:
        self._keepalive = self._spawn(
            self._keepalive_loop(interval_s, timeout_s), f"sim-ws-keepalive-{self.conn_id}"
        )

    async def _keepalive_loop(self, interval_s: float, timeout_s: float) -> None:
        clock = self._clock
        interval_ns = int(interval_s * 1e9)
        next_ping_ns = clock.monotonic_ns() + interval_ns
        counter = 0
        while not self.closed:
            now = clock.monotonic_ns()
            if self._pings and min(self._pings.values()) <= now:
                self.close_now(1008, "Pong timeout")
                return
            if now >= next_ping_ns:
                if not (self.is_stalled(now) and not self.stall_pings):
                    counter += 1
                    payload = b"%d-%d" % (clock.now_ns() // 1_000_000, counter)
                    self._pings[payload] = now + int(timeout_s * 1e9)
                    self._send_first(_Ping(payload))
                next_ping_ns = now + interval_ns
            wake = min([next_ping_ns, *self._pings.values()])
            await clock.sleep(max(wake - clock.monotonic_ns(), 0) / 1e9 + 0.001)

    async def _abort_later(self, delay_s: float) -> None:
        await self._clock.sleep(delay_s)
        if not self.ws.closed:
            self.abort()

    async def _write_loop(self) -> None:
        ws = self.ws
        queue = self._queue
        text = WSMsgType.TEXT
        try:
            while True:
                while not queue:
                    self._drained.set()
                    self._flushed.set()
                    self._wakeup.clear()
                    await self._wakeup.wait()
                item = queue.popleft()
                if isinstance(item, bytes):
                    await ws.send_frame(item, text)
                    self.frames_sent += 1
                elif isinstance(item, _Ping):
                    await ws.ping(item.payload)
                elif isinstance(item, _Pong):
                    await ws.pong(item.payload)
                else:
                    self._mark_closed()
                    self.closing = True
                    await ws.close(code=item.code, message=item.reason.encode())
                    return
                if len(queue) <= QUEUE_LOW_WATER and not self._drained.is_set():
                    self._drained.set()
        except (ConnectionError, RuntimeError):
            self._mark_closed()  # the client went away mid-write

    def _mark_closed(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.clear()
            self._drained.set()  # never leave the replay waiting on a dead connection
            self._flushed.set()
            if self._keepalive is not None and self._keepalive is not asyncio.current_task():
                self._keepalive.cancel()

    async def finish(self) -> None:
        """Let a close handshake in progress complete, then release the connection's tasks."""
        self._mark_closed()
        if self.closing and not self._writer.done():
            await asyncio.wait([self._writer], timeout=CLOSE_TIMEOUT_S)
        for task in (self._writer, self._keepalive):
            if task is not None and not task.done():
                task.cancel()
