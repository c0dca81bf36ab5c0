"""The loopback Binance market-data simulator: an aiohttp server replaying recorded tapes.

One replay task walks the merged timeline by receive time at ``speed`` tape seconds per real
second (0 or inf: as fast as the sockets take it). Each frame is queued, as recorded, to every
connection subscribed to its stream, and each diff-depth frame advances the simulator's own book,
so a REST snapshot taken at any moment is consistent with what has been streamed.

The replay starts on ``start()`` or, by default, ``start_delay_s`` after the first websocket
subscription (room for the client's second routed connection to join). With ``loop=True`` the
replay starts over at the end: every connection is closed after its last frame (clients must
reconnect and resync), the books go back to the recorded snapshot, and ids, event times and the
server time repeat from the start of the tape.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

import structlog
from aiohttp import WSMsgType, web

from engine.clock import Clock, LiveClock
from engine.model import Market
from exchange.sim.book import SimBook
from exchange.sim.connection import CLOSE_TIMEOUT_S, Connection, Route, resolve_stream
from exchange.sim.controls import handle_control_message
from exchange.sim.exchange_info import DEFAULT_REST_DIR, ExchangeInfoCatalog
from exchange.sim.faults import Faults
from exchange.sim.rest import RestApi
from exchange.sim.timeline import Frame, Timeline, load_timeline

log = structlog.get_logger("tickloop.sim")

DepthSentCallback = Callable[[str, int], None]
_ROUTE_PREFIXES = {"": Route.UNROUTED, "/public": Route.PUBLIC, "/market": Route.MARKET,
                   "/fstream": Route.LEGACY_FUTURES}  # fmt: skip
_YIELD_EVERY = 128  # frames between forced yields when the replay runs flat out


class SimServer:
    """Replay tapes over Binance's REST and websocket market-data protocol on 127.0.0.1."""

    def __init__(
        self,
        tapes: Sequence[str | Path] | Timeline,
        *,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        ping_interval_s: float = 20.0,
        pong_timeout_s: float = 60.0,
        seed: int = 0,
        clock: Clock | None = None,
        markets: Mapping[str, Market] | None = None,
        autostart: bool = True,
        start_delay_s: float = 0.2,
        loop: bool = False,
        close_when_finished: bool = False,
        exchange_info_dir: Path | None = DEFAULT_REST_DIR,
        slow_consumer_timeout_s: float = 10.0,
        max_idle_s: float = 60.0,
    ) -> None:
        self.timeline = tapes if isinstance(tapes, Timeline) else load_timeline(tapes, markets)
        if not self.timeline.frames:
            raise ValueError("the tapes hold no websocket frames")
        self.speed = speed
        self.host, self._port = host, port
        self.clock: Clock = clock or LiveClock()
        self.faults = Faults(self, seed)
        self.exchange_info = ExchangeInfoCatalog(self.timeline, exchange_info_dir)
        self._inf = speed <= 0 or math.isinf(speed)
        self._ping_interval_s, self._pong_timeout_s = ping_interval_s, pong_timeout_s
        self._autostart, self._start_delay_s = autostart, start_delay_s
        self._loop, self._close_when_finished = loop, close_when_finished
        self._slow_consumer_timeout_s = slow_consumer_timeout_s
        self._max_idle_ns = int(max_idle_s * 1e9)
        keys = {(f.market, f.symbol) for f in self.timeline.frames if f.depth and f.symbol}
        keys |= set(self.timeline.snapshots)
        self._books = {k: SimBook(k[0], self.timeline.snapshots.get(k, [])) for k in keys}
        self._depth_callbacks: list[DepthSentCallback] = []
        self._conns: dict[int, Connection] = {}
        self._no_conns = asyncio.Event()
        self._index: dict[tuple[Market, str], list[tuple[Connection, str]]] = {}
        self._congested: set[Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._replay_task: asyncio.Task[None] | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._finished = asyncio.Event()
        self._running = asyncio.Event()  # cleared by pause()
        self._running.set()
        self._explicit_start = False
        self._hold_until_ns = 0
        self._stall_until_ns = 0
        self._held: dict[tuple[Market, str], Frame] = {}  # reorder fault: diff waiting for the next
        self._position = -1  # index of the last emitted frame
        self._anchor: tuple[int, int] | None = None  # (monotonic ns, tape ns) of the pacing origin
        self._next_conn_id = 0
        self.counters = {"frames_replayed": 0, "frames_sent": 0, "frames_gapped": 0,
                         "frames_duplicated": 0, "connections_total": 0, "loops": 0,
                         "slow_consumer_drops": 0, "rate_limit_disconnects": 0}  # fmt: skip
        self.app = web.Application()
        RestApi(self).register(self.app)
        for prefix in _ROUTE_PREFIXES:
            self.app.router.add_get(f"{prefix}/stream", self._ws_handler)
            self.app.router.add_get(f"{prefix}/ws", self._ws_handler)
            self.app.router.add_get(f"{prefix}/ws/{{streams:.*}}", self._ws_handler)

    # ---- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Bind the server and arm the replay task (which waits for its start)."""
        self._runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]
        self._replay_task = self._spawn(self._replay(), "sim-replay")

    async def close(self) -> None:
        """Close every websocket, stop the replay and the server; leave no task behind."""
        if self._replay_task is not None:
            self._replay_task.cancel()
        for conn in list(self._conns.values()):
            conn.close_now(1001, "server closing")
        if self._conns:
            try:  # let handlers finish their close handshakes
                await asyncio.wait_for(self._no_conns.wait(), CLOSE_TIMEOUT_S + 1)
            except TimeoutError:
                log.warning("sim_close_timeout", connections=len(self._conns))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def serve_forever(self) -> None:
        """Serve until cancelled (the CLI's entry point); close cleanly on the way out."""
        if self._runner is None:
            await self.open()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    def start(self) -> None:
        """Start the replay now instead of waiting for the first subscription."""
        self._explicit_start = True
        self._started.set()

    def pause(self) -> None:
        """Hold the replay before its next frame (connections and REST keep working)."""
        self._running.clear()

    def resume(self) -> None:
        """Continue a paused replay where it stopped, without a catch-up burst."""
        self._running.set()

    async def wait_finished(self) -> None:
        """Wait until the replay has emitted the last frame (never returns with loop=True)."""
        await self._finished.wait()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_http(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def base_ws(self) -> str:
        return f"ws://{self.host}:{self._port}"

    # ---- what tests and REST read ------------------------------------------------------------

    def market_of(self, symbol: str) -> Market:
        """Return the market a symbol is served on (ValueError if none, or both)."""
        markets = self.timeline.markets.get(symbol.upper(), set())
        if len(markets) != 1:
            raise ValueError(f"{symbol} is served on {sorted(markets) or 'no market'}")
        return next(iter(markets))

    def book_of(self, symbol: str, market: Market | None = None) -> SimBook | None:
        """Return the simulator's own book of a symbol, None if it has no depth data."""
        symbol = symbol.upper()
        return self._books.get((market or self.market_of(symbol), symbol))

    def book_levels(
        self, symbol: str, market: Market | None = None, depth: int | None = None
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """Return the simulator's (bids, asks) of a symbol as Decimal pairs, best first."""
        book = self.book_of(symbol, market)
        if book is None:
            raise KeyError(f"no depth data for {symbol}")
        return book.levels(depth)

    def last_update_id(self, symbol: str, market: Market | None = None) -> int | None:
        """Return the id a REST snapshot would carry now (None without depth data)."""
        book = self.book_of(symbol, market)
        return None if book is None else book.served_update_id

    def on_depth_sent(self, callback: DepthSentCallback) -> None:
        """Call callback(symbol, final_update_id) after each diff is emitted and applied."""
        self._depth_callbacks.append(callback)

    def replay_position_ns(self) -> int:
        """Return the tape receive time the replay has reached."""
        frames = self.timeline.frames
        last = frames[max(self._position, 0)].ts_recv_ns
        if self._anchor is None or self._inf or self._finished.is_set():
            return last
        mono0, tape0 = self._anchor
        paced = tape0 + int((self.clock.monotonic_ns() - mono0) * self.speed)
        upcoming = frames[min(self._position + 1, len(frames) - 1)].ts_recv_ns
        return max(last, min(paced, upcoming))

    def server_time_ms(self) -> int:
        """Return the exchange's clock at the replay position (what /time answers)."""
        frame = self.timeline.frames[max(self._position, 0)]
        offset_ms = self.timeline.exchange_offset_ms[frame.tape_index]
        return self.replay_position_ns() // 1_000_000 + offset_ms

    def status(self) -> dict[str, Any]:
        """Return counters, connections, faults and the replay position (GET /_sim/status)."""
        return {
            **self.counters,
            "connections_open": len(self._conns),
            "frames_total": len(self.timeline.frames),
            "faults_injected": dict(self.faults.injected),
            "replay": {
                "started": self._started.is_set(),
                "finished": self._finished.is_set(),
                "speed": None if self._inf else self.speed,
                "position_index": self._position,
                "ts_recv_ns": self.replay_position_ns(),
                "server_time_ms": self.server_time_ms(),
            },
            "books": {
                f"{m.value}:{s}": {"last_update_id": b.served_update_id, "synced": b.synced}
                for (m, s), b in sorted(self._books.items())
            },
        }

    # ---- fault target (see faults.FaultTarget) ----------------------------------------------

    def drop_all(self) -> int:
        conns = list(self._conns.values())
        for conn in conns:
            conn.abort()
        return len(conns)

    def stall_all(self, seconds: float, pings: bool) -> int:
        until = self.clock.monotonic_ns() + int(seconds * 1e9)
        self._stall_until_ns = max(self._stall_until_ns, until)
        for conn in self._conns.values():
            conn.stalled_until_ns, conn.stall_pings = until, pings
        return len(self._conns)

    def shutdown_all(self, after_ms: int) -> int:
        notice = b'{"e":"serverShutdown","E":%d}' % self.server_time_ms()
        envelope = b'{"stream":"!serverShutdown","data":%s}' % notice
        conns = list(self._conns.values())
        for conn in conns:
            conn.send(envelope if conn.combined else notice)
        self._spawn(self._close_later(conns, after_ms / 1000), "sim-server-shutdown")
        return len(conns)

    def hold_replay(self, ms: float) -> None:
        self._hold_until_ns = max(self._hold_until_ns, self.clock.monotonic_ns() + int(ms * 1e6))

    def depth_symbols(self) -> list[str]:
        return sorted({s for _, s in self._books})

    def tape_duration_s(self) -> float:
        return (self.timeline.end_ns - self.timeline.start_ns) / 1e9

    async def _close_later(self, conns: list[Connection], delay_s: float) -> None:
        await self.clock.sleep(delay_s)
        for conn in conns:
            conn.close_after_flush(1001, "server shutdown")

    # ---- replay ------------------------------------------------------------------------------

    async def _replay(self) -> None:
        while True:
            await self._started.wait()
            await self._play()
            if not self._loop:
                break
            self._wrap()
        self._finished.set()
        if self._close_when_finished:
            for conn in list(self._conns.values()):
                conn.close_after_flush(1000, "replay finished")

    def _wrap(self) -> None:
        for conn in list(self._conns.values()):
            conn.close_after_flush(1001, "replay restarts")
        self._index.clear()
        for book in self._books.values():
            book.reset()
        self._held.clear()
        self._position, self._anchor = -1, None
        self.faults.rewind_schedule()
        self.counters["loops"] += 1
        if not self._explicit_start:
            self._started.clear()  # wait for the clients to come back

    async def _play(self) -> None:
        clock = self.clock
        frames = self.timeline.frames
        tape_start = frames[0].ts_recv_ns
        mono0, tape0 = clock.monotonic_ns(), tape_start
        self._anchor = (mono0, tape0)
        prev_ts = tape_start
        faults = self.faults
        for index, frame in enumerate(frames):
            ts = frame.ts_recv_ns
            if faults.schedule:
                faults.fire_due((ts - tape_start) / 1e9)
            if not self._inf and ts - prev_ts > self._max_idle_ns:
                tape0 += ts - prev_ts - self._max_idle_ns  # skip long silences between tapes
                self._anchor = (mono0, tape0)
            prev_ts = ts
            if not self._running.is_set():
                paused_at = clock.monotonic_ns()
                await self._running.wait()
                mono0 += clock.monotonic_ns() - paused_at
                self._anchor = (mono0, tape0)
            while True:
                now = clock.monotonic_ns()
                due = now if self._inf else mono0 + int((ts - tape0) / self.speed)
                wait_ns = max(due, self._hold_until_ns) - now
                if wait_ns <= 1_000_000:
                    break
                await clock.sleep(wait_ns / 1e9)
            self._emit(frame)
            self._position = index
            if self._congested:
                await self._relieve()
            elif index % _YIELD_EVERY == 0:
                await asyncio.sleep(0)

    async def _relieve(self) -> None:
        for conn in list(self._congested):
            if not await conn.wait_drained(self._slow_consumer_timeout_s):
                log.warning("sim_slow_consumer_dropped", conn_id=conn.conn_id)
                self.counters["slow_consumer_drops"] += 1
                conn.abort()
        self._congested.clear()

    def _emit(self, frame: Frame) -> None:
        self.counters["frames_replayed"] += 1
        depth = frame.depth
        symbol = frame.symbol
        if depth is None or symbol is None:
            self._deliver(frame)
            return
        book_key = (frame.market, symbol)
        self._books[book_key].apply(depth)  # the exchange's book moves even if nobody hears it
        faults = self.faults
        if faults.gaps[symbol] > 0:
            faults.gaps[symbol] -= 1
            self.counters["frames_gapped"] += 1
        elif faults.reorders[symbol] > 0 and book_key not in self._held:
            faults.reorders[symbol] -= 1
            self._held[book_key] = frame
        else:
            held = self._held.pop(book_key, None)
            self._deliver(frame)
            if held is not None:
                self._deliver(held)
        # After delivery, so a fault injected from a callback hits the frames that follow.
        for callback in self._depth_callbacks:
            callback(symbol, depth.final_update_id)

    def _deliver(self, frame: Frame) -> None:
        targets = self._index.get(frame.key)
        if not targets:
            return
        copies = 1
        dups = self.faults.duplicates
        if dups:
            for key in (frame.symbol, None):
                if dups[key] > 0:
                    dups[key] -= 1
                    copies = 2
                    self.counters["frames_duplicated"] += 1
                    break
        now = self.clock.monotonic_ns() if self._stall_until_ns else 0
        if now and now >= self._stall_until_ns:
            self._stall_until_ns = now = 0
        sent = 0
        for conn, name in targets:
            if now and conn.is_stalled(now):
                continue
            if not conn.combined:
                payload = frame.data
            elif name == frame.stream:
                payload = frame.envelope
            else:
                payload = b'{"stream":"%s","data":%s}' % (name.encode(), frame.data)
            for _ in range(copies):
                if conn.send(payload):
                    self._congested.add(conn)
            sent += copies
        self.counters["frames_sent"] += sent

    # ---- websockets --------------------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        prefix = next((p for p in _ROUTE_PREFIXES if p and path.startswith(p + "/")), "")
        route = _ROUTE_PREFIXES[prefix]
        rest = path[len(prefix) :]
        combined = rest == "/stream"
        if combined:
            names = [s for s in request.query.get("streams", "").split("/") if s]
        else:
            names = [s for s in request.match_info.get("streams", "").split("/") if s]
        ws = web.WebSocketResponse(autoping=False, compress=False, timeout=CLOSE_TIMEOUT_S)
        await ws.prepare(request)
        self._next_conn_id += 1
        conn = Connection(
            self._next_conn_id, ws, request.transport, route, combined, self.clock, self._spawn
        )
        self._conns[conn.conn_id] = conn
        self._no_conns.clear()
        self.counters["connections_total"] += 1
        conn.start_keepalive(self._ping_interval_s, self._pong_timeout_s)
        if names:
            self.subscribe(conn, names)
        limit_per_s = 5 if route is Route.UNROUTED else 10
        try:
            while True:
                msg = await ws.receive()
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                                WSMsgType.ERROR):  # fmt: skip
                    break
                if not conn.note_incoming(limit_per_s):
                    self.counters["rate_limit_disconnects"] += 1
                    conn.close_now(1008, "Too many requests")
                    continue
                if msg.type is WSMsgType.PING:
                    conn.send_first(("pong", msg.data))
                elif msg.type is WSMsgType.PONG:
                    conn.note_pong(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    reply = handle_control_message(self, conn, msg.data)
                    if reply is not None:
                        conn.send(reply)
        finally:
            self._forget(conn)
            await conn.finish()
        return ws

    def subscribe(self, conn: Connection, names: list[str]) -> None:
        """Add stream names to a connection's subscriptions and re-index it."""
        for name in names:
            conn.subs[name] = resolve_stream(conn.route, name, self.timeline)
        self._reindex(conn)
        if self._autostart and not self._started.is_set() and self._start_task is None:
            self._start_task = self._spawn(self._start_after_delay(), "sim-autostart")

    def unsubscribe(self, conn: Connection, names: list[str]) -> None:
        """Remove stream names from a connection's subscriptions and re-index it."""
        for name in names:
            conn.subs.pop(name, None)
        self._reindex(conn)

    async def _start_after_delay(self) -> None:
        try:
            await self.clock.sleep(self._start_delay_s)
            self._started.set()
        finally:
            self._start_task = None

    def _reindex(self, conn: Connection) -> None:
        for key in list(self._index):
            kept = [t for t in self._index[key] if t[0] is not conn]
            if kept:
                self._index[key] = kept
            else:
                del self._index[key]
        if conn.closed:
            return
        for name, key in conn.subs.items():
            if key is not None:
                self._index.setdefault(key, []).append((conn, name))

    def _forget(self, conn: Connection) -> None:
        self._conns.pop(conn.conn_id, None)
        if not self._conns:
            self._no_conns.set()
        conn.subs.clear()
        self._reindex(conn)
        self._congested.discard(conn)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sim_task_failed", task=task.get_name(), error=repr(task.exception()))


async def run_sim(
    tapes: Sequence[str | Path],
    speed: float = 1.0,
    port: int = 0,
    host: str = "127.0.0.1",
    **options: Any,
) -> None:
    """Serve tapes on host:port until cancelled, logging the URLs clients should use."""
    sim = SimServer(tapes, speed=speed, host=host, port=port, **options)
    await sim.open()
    symbols = {s: sorted(m.value for m in ms) for s, ms in sim.timeline.markets.items()}
    log.info("sim_listening", http=sim.base_http, ws=sim.base_ws, symbols=symbols, speed=speed)
    print(f"tickloop sim: REST {sim.base_http}  websockets {sim.base_ws}  symbols {symbols}")
    await sim.serve_forever()
