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
from collections.abc import Coroutine, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

import structlog
from aiohttp import WSMsgType, web

from engine.clock import Clock, LiveClock
from engine.model import Market
from exchange.sim.klines import KlineServer, add_kline_routes
from exchange.sim.book import SimBook
from exchange.sim.connection import CLOSE_TIMEOUT_S, Connection, Route, resolve_stream
from exchange.sim.controls import handle_control_message
from exchange.sim.exchange_info import DEFAULT_REST_DIR, ExchangeInfoCatalog
from exchange.sim.faults import Faults
from exchange.sim.replay import DepthSentCallback, Replay
from exchange.sim.rest import RestApi
from exchange.sim.timeline import Timeline, load_timeline
from exchange.sim.trading.simulator import TradingSim

log = structlog.get_logger("tickloop.sim")

_ROUTE_PREFIXES = {"": Route.UNROUTED, "/public": Route.PUBLIC, "/market": Route.MARKET,
                   "/fstream": Route.LEGACY_FUTURES}  # fmt: skip


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
        klines: KlineServer | None = None,
        slow_consumer_timeout_s: float = 10.0,
        max_idle_s: float = 60.0,
        trading: bool = False,
    ) -> None:
        self.timeline = tapes if isinstance(tapes, Timeline) else load_timeline(tapes, markets)
        if not self.timeline.frames:
            raise ValueError("the tapes hold no websocket frames")
        self.speed = speed
        self.host, self._port = host, port
        self.clock: Clock = clock or LiveClock()
        self.faults = Faults(self, seed)
        self.exchange_info = ExchangeInfoCatalog(self.timeline, exchange_info_dir)
        self.replay = Replay(
            self.timeline,
            self.clock,
            self.faults,
            speed=speed,
            loop=loop,
            max_idle_s=max_idle_s,
            slow_consumer_timeout_s=slow_consumer_timeout_s,
        )
        self.replay.on_wrap = self._on_wrap
        self._ping_interval_s, self._pong_timeout_s = ping_interval_s, pong_timeout_s
        self._autostart, self._start_delay_s = autostart, start_delay_s
        self._close_when_finished = close_when_finished
        self._slow_consumer_timeout_s = slow_consumer_timeout_s
        self._conns: dict[int, Connection] = {}
        self._no_conns = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._replay_task: asyncio.Task[None] | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._next_conn_id = 0
        self._counters = {"connections_total": 0, "rate_limit_disconnects": 0}
        self.app = web.Application()
        self.rest = RestApi(self)
        self.rest.register(self.app)
        # Signed trading endpoints and user streams (exchange/sim/trading), opt-in.
        self.trading: TradingSim | None = None
        if trading:
            self.trading = TradingSim(self)
            self.trading.register(self.app)
        self.klines = klines
        if klines is not None:  # /api/v3/klines and /fapi/v1/klines for history downloads
            add_kline_routes(self.app, klines, with_info=False)
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
        self._replay_task = self._spawn(self._run_replay(), "sim-replay")

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
        self.replay.explicit_start = True
        self.replay.started.set()

    def pause(self) -> None:
        """Hold the replay before its next frame (connections and REST keep working)."""
        self.replay.pause()

    def resume(self) -> None:
        """Continue a paused replay where it stopped, without a catch-up burst."""
        self.replay.resume()

    async def wait_finished(self) -> None:
        """Wait until the last frame is emitted and written out by every connection (not with loop)."""
        await self.replay.finished.wait()
        for conn in list(self._conns.values()):
            await conn.wait_flushed(self._slow_consumer_timeout_s)

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
        return self.replay.books.get((market or self.market_of(symbol), symbol))

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
        self.replay.depth_callbacks.append(callback)

    def replay_position_ns(self) -> int:
        """Return the tape receive time the replay has reached."""
        return self.replay.position_ns()

    def server_time_ms(self) -> int:
        """Return the exchange's clock at the replay position (what /time answers)."""
        return self.replay.exchange_time_ms()

    def status(self) -> dict[str, Any]:
        """Return counters, connections, faults and the replay position (GET /_sim/status)."""
        replay = self.replay
        return {
            **replay.counters,
            **self._counters,
            "connections_open": len(self._conns),
            "frames_total": len(self.timeline.frames),
            "faults_injected": dict(self.faults.injected),
            "replay": {
                "started": replay.started.is_set(),
                "finished": replay.finished.is_set(),
                "speed": None if replay.flat_out else self.speed,
                "position_index": replay.position,
                "ts_recv_ns": self.replay_position_ns(),
                "server_time_ms": self.server_time_ms(),
            },
            "books": {
                f"{m.value}:{s}": {
                    "last_update_id": b.served_update_id,
                    "synced": b.synced,
                    "tape_gaps": b.tape_gaps,
                }
                for (m, s), b in sorted(replay.books.items())
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
        self.replay.stall_until_ns = max(self.replay.stall_until_ns, until)
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
        self.replay.hold(ms)

    def depth_symbols(self) -> list[str]:
        return sorted({s for _, s in self.replay.books})

    def tape_duration_s(self) -> float:
        return (self.timeline.end_ns - self.timeline.start_ns) / 1e9

    async def _close_later(self, conns: list[Connection], delay_s: float) -> None:
        await self.clock.sleep(delay_s)
        for conn in conns:
            conn.close_after_flush(1001, "server shutdown")

    # ---- replay ------------------------------------------------------------------------------

    async def _run_replay(self) -> None:
        await self.replay.run()
        if self._close_when_finished:
            for conn in list(self._conns.values()):
                conn.close_after_flush(1000, "replay finished")

    def _on_wrap(self) -> None:
        # Clients must resync after a wrap (ids go back in time): end their connections.
        for conn in list(self._conns.values()):
            conn.close_after_flush(1001, "replay restarts")

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
        self._counters["connections_total"] += 1
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
                    self._counters["rate_limit_disconnects"] += 1
                    conn.close_now(1008, "Too many requests")
                    continue
                if msg.type is WSMsgType.PING:
                    conn.send_pong(msg.data)
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
        self.replay.index(conn)
        if self._autostart and not self.replay.started.is_set() and self._start_task is None:
            self._start_task = self._spawn(self._start_after_delay(), "sim-autostart")

    def unsubscribe(self, conn: Connection, names: list[str]) -> None:
        """Remove stream names from a connection's subscriptions and re-index it."""
        for name in names:
            conn.subs.pop(name, None)
        self.replay.index(conn)

    async def _start_after_delay(self) -> None:
        try:
            await self.clock.sleep(self._start_delay_s)
            self.replay.started.set()
        finally:
            self._start_task = None

    def _forget(self, conn: Connection) -> None:
        self._conns.pop(conn.conn_id, None)
        if not self._conns:
            self._no_conns.set()
        conn.subs.clear()
        self.replay.index(conn)

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
    if sim.trading is not None:
        from exchange.sim.trading import TEST_API_KEY

        # the loopback key pair is public test data, never a real credential
        print(f"tickloop sim: trading on; BINANCE_API_KEY={TEST_API_KEY} (secret: exchange/sim/trading)")
    await sim.serve_forever()
