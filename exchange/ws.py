"""Reconnecting websocket session: raw frames into a bounded queue, never a silent gap.

The reader only stamps frames and queues them, so a slow consumer never delays a pong (spot drops
a client that has not answered a ping within 60 s). Every loss — full queue, disconnect, stall —
is reported, because Binance never replays: the consumer must resync its books. Also here:
hand-made pongs (they prove the server alive), an outgoing budget, backoff with full jitter,
silence watchdogs, and rotation before 24 h or on `serverShutdown` with overlapping sockets.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import fnmatch
import json
import random
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import aiohttp
import structlog

from engine.clock import Clock
from exchange.binance.urls import MAX_STREAMS_PER_CONNECTION as MAX_STREAMS
from exchange.binance.urls import ConnectionSpec, redact_url, stream_kind

_NS = 1_000_000_000
_ENVELOPE = b'{"stream"'
_CONTROL_REPLIES = (b'{"result"', b'{"id"', b'{"code"')
_SHUTDOWN = b"serverShutdown"
_SHUTDOWN_SCAN_BYTES = 160  # the event type sits in the first few dozen bytes of a frame
_DATA_TYPES = (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)

Frame = tuple[int, Any]  # (ts_recv_ns, raw payload bytes) or (ts_recv_ns, gap marker)


@dataclass(frozen=True, slots=True)
class WsConfig:
    """Timing and budget settings of a WsSession (spot defaults; see field comments for USDⓈ-M)."""

    max_outgoing_per_s: int = 5  # Binance limit on pings+pongs+JSON per connection; USDⓈ-M: 10
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_reset_after_s: float = 60.0  # a connection healthy this long resets the backoff
    # No data frame and no server ping for this long: a zombie socket. Binance pings every 20 s
    # (spot) / 180 s (USDⓈ-M): go below that only if the streams never pause.
    connection_timeout_s: float = 90.0
    # Silence allowed per stream: key is a stream kind ('depth', 'markPrice') or a glob over
    # the stream name ('*@depth@100ms'); None = never stalls (quiet coins' trades).
    stall_timeout_s: Mapping[str, float | None] = field(default_factory=dict)
    rotate_after_s: float = 23 * 3600.0  # Binance disconnects at 24 h
    watchdog_interval_s: float = 1.0
    connect_timeout_s: float = 10.0
    send_timeout_s: float = 10.0
    close_timeout_s: float = 5.0
    max_msg_bytes: int = 4 * 1024 * 1024
    max_pending_pongs: int = 16

    def __post_init__(self) -> None:
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        positive = ("max_outgoing_per_s", "connection_timeout_s", "rotate_after_s")
        for name in (*positive, "watchdog_interval_s", "connect_timeout_s", "send_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        object.__setattr__(self, "stall_timeout_s", MappingProxyType(dict(self.stall_timeout_s)))

    def stall_timeout_for(self, stream: str) -> float | None:
        """Return the silence allowed on `stream` (first matching key), None if unwatched."""
        kind = stream_kind(stream)
        for key, seconds in self.stall_timeout_s.items():
            if key == kind or key == stream or fnmatch.fnmatchcase(stream, key):
                return seconds
        return None


class OutgoingBudget:
    """Pace writes so that any closed one-second window holds at most `per_second` messages.

    Binance's window alignment is unknown: spacing sends by 1/(per_second-1) s keeps any window
    [t, t+1 s] at <= per_second. No bursts needed: pings come every 20 s, params are batched.
    """

    def __init__(self, per_second: int, clock: Clock) -> None:
        self._spacing_ns = -(-_NS // (per_second - 1)) if per_second > 1 else _NS + 1
        self._clock = clock
        self._next_allowed_ns = 0

    async def acquire(self) -> None:
        """Wait until one more message may be written, then take its slot."""
        while (wait_ns := self._next_allowed_ns - self._clock.monotonic_ns()) > 0:
            await self._clock.sleep(wait_ns / _NS)
        self._next_allowed_ns = self._clock.monotonic_ns() + self._spacing_ns


class ConnectAttemptLimiter:
    """Cap connection attempts per window (spot: 300 per 5 min per IP); share one per IP."""

    def __init__(self, clock: Clock, max_attempts: int = 250, window_s: float = 300.0) -> None:
        self._clock = clock
        self._max_attempts = max_attempts
        self._window_ns = int(window_s * _NS)
        self._attempts_ns: collections.deque[int] = collections.deque()

    async def acquire(self) -> None:
        """Wait until another connection attempt fits in the window, then record it."""
        while len(self._attempts_ns) >= self._max_attempts:
            wait_ns = self._attempts_ns[0] + self._window_ns - self._clock.monotonic_ns()
            if wait_ns > 0:
                await self._clock.sleep(wait_ns / _NS)
            else:
                self._attempts_ns.popleft()
        self._attempts_ns.append(self._clock.monotonic_ns())


@dataclass(slots=True)
class WsStats:
    """Counters of one session since it was created (read them; the session writes them)."""

    frames: int = 0
    bytes: int = 0
    connects: int = 0
    reconnects: int = 0
    rotations: int = 0
    stalls: int = 0
    overflows: int = 0
    data_losses: int = 0
    pings_received: int = 0
    pings_answered: int = 0
    messages_sent: int = 0
    connect_failures: int = 0


@dataclass(eq=False, slots=True)
class _Conn:
    """One physical websocket: its tasks, liveness stamps and outbox."""

    seq: int
    ws: aiohttp.ClientWebSocketResponse[Literal[False]]
    opened_ns: int
    last_alive_ns: int  # last data frame or server ping
    activated_ns: int | None = None
    outbox: collections.deque[tuple[bool, bytes]] = field(default_factory=collections.deque)
    outbox_ready: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    writer: asyncio.Task[None] | None = None
    end_reason: str | None = None
    stalled: bool = False


class WsSession:
    """Keep one websocket connection alive and feed its raw frames into `queue`.

    Callbacks are plain functions called on the event loop; they must not block. Order on a
    break: on_disconnected(reason), on_data_lost(reason), later on_connected(). A full queue
    only calls on_data_lost. A seamless rotation calls none of them.
    """

    def __init__(
        self,
        spec: ConnectionSpec,
        queue: asyncio.Queue[Frame],
        clock: Clock,
        *,
        config: WsConfig | None = None,
        http: aiohttp.ClientSession | None = None,
        on_connected: Callable[[], None] | None = None,
        on_disconnected: Callable[[str], None] | None = None,
        on_data_lost: Callable[[str], None] | None = None,
        gap_marker: Callable[[str], object] | None = None,
        attempt_limiter: ConnectAttemptLimiter | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
    ) -> None:
        self.spec = spec
        self.stats = WsStats()
        self._queue = queue
        self._clock = clock
        self._cfg = config or WsConfig()
        self._http = http
        self._ws_timeout = aiohttp.ClientWSTimeout(None, self._cfg.close_timeout_s)  # recv, close
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._on_data_lost = on_data_lost
        self._gap_marker = gap_marker
        self._attempts = attempt_limiter or ConnectAttemptLimiter(clock)
        self._rng = rng or random.Random()
        self._log = structlog.get_logger("exchange.ws").bind(conn=name or spec.label)
        self._streams: dict[str, None] = dict.fromkeys(spec.streams)  # ordered set
        self._rebuild_watch_list()
        self._last_frame_ns: dict[bytes, int] = {}
        self._active: _Conn | None = None
        self._pending: _Conn | None = None
        self._rotation_reason: str | None = None
        self._connecting = False
        self._failures = 0
        self._seq = 0
        self._message_id = 0
        self._gap_reason: str | None = None  # a gap marker is owed to the queue
        self._overflowing = False
        self._closing = False
        self._close_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Connect and keep connected until close() or cancellation."""
        if self._tg is not None:
            raise RuntimeError("WsSession.run() can be called once")
        if self._closing:
            return  # closed before it ran
        owns_http = self._http is None
        self._http = self._http or aiohttp.ClientSession()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._spawn(self._watchdog_loop())
                self._start_connect(0.0)
                try:
                    await self._close_requested.wait()
                finally:
                    # Also on cancellation of run(): before the group cancels the readers, so
                    # their clean-up does not read shutdown as a connection loss.
                    self._closing = True
                    for task in list(self._tasks):
                        task.cancel()
        finally:
            self._closing = True
            if owns_http:
                await self._http.close()
            self._stopped.set()

    async def close(self) -> None:
        """Close every connection; return once run() has finished (at once if it never ran)."""
        self._closing = True
        self._close_requested.set()
        if self._tg is not None:
            await self._stopped.wait()

    @property
    def connected(self) -> bool:
        """Return True while a connection is delivering into the queue."""
        return self._active is not None

    @property
    def streams(self) -> tuple[str, ...]:
        """Return the streams this session keeps subscribed, across reconnects."""
        return tuple(self._streams)

    def subscribe(self, streams: Iterable[str]) -> None:
        """Add streams (one SUBSCRIBE message); they are re-subscribed after every reconnect."""
        new = [s for s in dict.fromkeys(streams) if s not in self._streams]
        if not new:
            return
        if len(self._streams) + len(new) > MAX_STREAMS:
            raise ValueError(f"more than {MAX_STREAMS} streams on one connection")
        self._streams.update(dict.fromkeys(new))
        self._control_all("SUBSCRIBE", new)

    def unsubscribe(self, streams: Iterable[str]) -> None:
        """Remove streams (one UNSUBSCRIBE message), also after reconnects."""
        gone = [s for s in dict.fromkeys(streams) if s in self._streams]
        if not gone:
            return
        for stream in gone:
            del self._streams[stream]
        self._control_all("UNSUBSCRIBE", gone)

    def _control_all(self, method: str, streams: list[str]) -> None:
        self._rebuild_watch_list()
        for conn in (self._active, self._pending):
            if conn is not None:
                self._send_control(conn, method, streams)

    def stats_fields(self) -> dict[str, Any]:
        """Return counters and per-stream last-frame times (monotonic ns) for the heartbeat."""
        fields = {f.name: getattr(self.stats, f.name) for f in dataclasses.fields(self.stats)}
        fields["connected"] = self.connected
        fields["last_frame_ns"] = {
            name.decode(errors="replace") or self.spec.route or "raw": ts
            for name, ts in self._last_frame_ns.items()
        }
        return fields

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        if self._tg is None or self._close_requested.is_set():
            coro.close()
            return None
        task = self._tg.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start_connect(self, delay_s: float) -> None:
        if self._connecting or self._closing:
            return
        self._connecting = True
        self._spawn(self._connect_after(delay_s))

    async def _connect_after(self, delay_s: float) -> None:
        if delay_s > 0:
            await self._clock.sleep(delay_s)
        await self._attempts.acquire()
        assert self._http is not None
        try:
            async with asyncio.timeout(self._cfg.connect_timeout_s):
                ws = await self._http.ws_connect(
                    self.spec.url,
                    autoping=False,  # we answer pings ourselves: budget + liveness
                    heartbeat=None,
                    compress=0,
                    max_msg_size=self._cfg.max_msg_bytes,
                    decode_text=False,  # bytes all the way to the consumer's decoder
                    timeout=self._ws_timeout,
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._connecting = False
            self.stats.connect_failures += 1
            self._retry_connect("ws.connect_failed", redact_url(f"{type(exc).__name__}: {exc}"))
            return
        self._connecting = False
        if self._closing:
            await self._close_ws(ws)
            return
        self._on_opened(ws)

    def _retry_connect(self, event: str, reason: str, **fields: object) -> None:
        delay_s = self._next_backoff_s()
        self._log.warning(event, reason=reason, retry_in_s=round(delay_s, 3), **fields)
        self._start_connect(delay_s)

    def _on_opened(self, ws: aiohttp.ClientWebSocketResponse[Literal[False]]) -> None:
        self._seq += 1
        now_ns = self._clock.monotonic_ns()
        conn = _Conn(self._seq, ws, opened_ns=now_ns, last_alive_ns=now_ns)
        conn.reader = self._spawn(self._read_loop(conn))
        conn.writer = self._spawn(self._write_loop(conn))
        in_url = set(self.spec.streams)
        extra = [s for s in self._streams if s not in in_url]
        removed = [s for s in self.spec.streams if s not in self._streams]
        if extra:
            self._send_control(conn, "SUBSCRIBE", extra)
        if removed:
            self._send_control(conn, "UNSUBSCRIBE", removed)
        if self._active is None:
            self._activate(conn)
        else:
            self._pending = conn
            self._log.info("ws.rotation_opened", seq=conn.seq, reason=self._rotation_reason)

    def _activate(self, conn: _Conn) -> None:
        conn.activated_ns = self._clock.monotonic_ns()
        self._active = conn
        self.stats.connects += 1
        self.stats.reconnects = self.stats.connects - 1
        self._log.info("ws.connected", seq=conn.seq, url=redact_url(self.spec.url))
        self._notify(self._on_connected)

    def _next_backoff_s(self) -> float:
        self._failures += 1
        ceiling = min(
            self._cfg.backoff_max_s, self._cfg.backoff_initial_s * 2 ** (self._failures - 1)
        )
        return self._rng.uniform(0.0, ceiling)  # full jitter

    async def _read_loop(self, conn: _Conn) -> None:
        reason = "connection lost"
        try:
            reason = await self._pump(conn)
        except (aiohttp.ClientError, OSError) as exc:
            reason = f"read error: {type(exc).__name__}: {exc}"
        finally:
            conn.end_reason = conn.end_reason or redact_url(reason)
            self._on_conn_ended(conn)
            if conn.writer is not None:
                conn.writer.cancel()
            await self._close_ws(conn.ws)

    async def _pump(self, conn: _Conn) -> str:
        ws, queue, clock, stats = conn.ws, self._queue, self._clock, self.stats
        while True:
            msg = await ws.receive()
            kind = msg.type
            if kind in _DATA_TYPES:
                data: bytes = msg.data
                now_ns = clock.monotonic_ns()
                conn.last_alive_ns = now_ns
                if data.startswith(_ENVELOPE):
                    # Binance writes '{"stream":"<name>",...' compactly; tolerate spacing anyway.
                    start = data.find(b'"', 9, 16) + 1
                    end = data.find(b'"', start, 256) if start else -1
                    stream = data[start:end] if end > 0 else b""
                elif data.startswith(_CONTROL_REPLIES):
                    continue  # replies to SUBSCRIBE/UNSUBSCRIBE: neither data nor a switch
                else:
                    stream = b""
                if conn is not self._active:
                    if conn is not self._pending:
                        continue  # retired: its replacement already delivers
                    self._switch_to(conn)
                stats.frames += 1
                stats.bytes += len(data)
                self._last_frame_ns[stream] = now_ns
                if data.find(_SHUTDOWN, 0, _SHUTDOWN_SCAN_BYTES) != -1:
                    self._request_rotation("serverShutdown")
                self._deliver(clock.now_ns(), data, queue)
            elif kind is aiohttp.WSMsgType.PING:
                conn.last_alive_ns = clock.monotonic_ns()
                stats.pings_received += 1
                self._queue_pong(conn, msg.data)
            elif kind is aiohttp.WSMsgType.PONG:
                continue
            elif kind is aiohttp.WSMsgType.CLOSE:
                return f"closed by server (code {msg.data}, {msg.extra or ''})"
            elif kind is aiohttp.WSMsgType.ERROR:
                return f"protocol error: {msg.data!r}"
            else:  # CLOSING, CLOSED
                return "connection lost"

    def _deliver(self, ts_recv_ns: int, data: bytes, queue: asyncio.Queue[Frame]) -> None:
        if self._gap_reason is not None:
            # Marker and frame go in together, so the marker sits exactly where the gap is.
            if queue.maxsize and queue.qsize() + 2 > queue.maxsize:
                self._overflow(queue)
                return
            self._place_gap_marker(ts_recv_ns, queue)
        try:
            queue.put_nowait((ts_recv_ns, data))
        except asyncio.QueueFull:
            self._overflow(queue)
            return
        if self._overflowing and queue.qsize() * 2 <= queue.maxsize:
            self._overflowing = False  # drained below half: a new overflow is a new episode

    def _overflow(self, queue: asyncio.Queue[Frame]) -> None:
        self.stats.overflows += 1
        reason = f"consumer queue full ({queue.maxsize} frames)"
        if self._gap_marker is not None and self._gap_reason is None:
            self._gap_reason = reason  # every dropped frame needs a marker after it
        if not self._overflowing:  # ... but one report per episode is enough
            self._overflowing = True
            self._log.warning("ws.queue_overflow", maxsize=queue.maxsize)
            self._data_lost(reason)

    def _data_lost(self, reason: str) -> None:
        self.stats.data_losses += 1
        if self._gap_marker is not None and self._gap_reason is None:
            self._gap_reason = reason
            if not self._queue.full():  # place it now; otherwise before the next frame
                self._place_gap_marker(self._clock.now_ns(), self._queue)
        self._notify(self._on_data_lost, reason)

    def _place_gap_marker(self, ts_recv_ns: int, queue: asyncio.Queue[Frame]) -> None:
        reason, self._gap_reason = self._gap_reason or "", None
        marker = self._notify(self._gap_marker, reason)
        if marker is not None:
            queue.put_nowait((ts_recv_ns, marker))

    def _notify(self, callback: Callable[..., object] | None, *args: str) -> object:
        if callback is None:
            return None
        try:
            return callback(*args)
        except Exception:  # noqa: BLE001 - a consumer bug must not kill the feed
            self._log.exception("ws.callback_failed", callback=getattr(callback, "__name__", "?"))
            return None

    def _queue_pong(self, conn: _Conn, payload: bytes) -> None:
        if sum(is_pong for is_pong, _ in conn.outbox) >= self._cfg.max_pending_pongs:
            # Only a ping flood gets here; the newest pings are the ones the server awaits.
            conn.outbox.remove(next(item for item in conn.outbox if item[0]))
        conn.outbox.append((True, payload))
        conn.outbox_ready.set()

    def _send_control(self, conn: _Conn, method: str, streams: list[str]) -> None:
        self._message_id += 1  # all params in one message: each message costs budget
        body = json.dumps({"method": method, "params": streams, "id": self._message_id})
        conn.outbox.append((False, body.encode()))
        conn.outbox_ready.set()

    async def _write_loop(self, conn: _Conn) -> None:
        budget = OutgoingBudget(self._cfg.max_outgoing_per_s, self._clock)
        while True:
            while not conn.outbox:
                conn.outbox_ready.clear()
                await conn.outbox_ready.wait()
            await budget.acquire()
            is_pong, data = conn.outbox.popleft()
            try:
                async with asyncio.timeout(self._cfg.send_timeout_s):
                    await (conn.ws.pong(data) if is_pong else conn.ws.send_str(data.decode()))
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self._drop(conn, f"send failed: {type(exc).__name__}: {exc}")
                return
            self.stats.messages_sent += 1
            self.stats.pings_answered += is_pong

    def _drop(self, conn: _Conn, reason: str) -> None:
        """End a connection; its reader's cleanup performs the state change."""
        if conn.end_reason is None:
            conn.end_reason = redact_url(reason)
        if conn.reader is not None and not conn.reader.done():
            conn.reader.cancel()

    def _switch_to(self, new: _Conn) -> None:
        old, self._active, self._pending = self._active, new, None
        new.activated_ns = self._clock.monotonic_ns()
        self.stats.rotations += 1
        self._log.info("ws.rotated", seq=new.seq, reason=self._rotation_reason)
        self._rotation_reason = None
        if old is not None:
            self._drop(old, "rotated out")

    def _request_rotation(self, reason: str) -> None:
        if self._closing or self._active is None or self._rotation_reason is not None:
            return
        self._rotation_reason = reason
        self._log.info("ws.rotating", reason=reason)
        self._start_connect(0.0)

    def _on_conn_ended(self, conn: _Conn) -> None:
        reason = conn.end_reason or "connection lost"
        if self._closing:
            return
        if conn is self._pending:
            self._pending = None
            self._retry_connect("ws.rotation_failed", reason, seq=conn.seq)
            return
        if conn is not self._active:
            return  # rotated out as planned
        self._active = None
        now_ns = self._clock.monotonic_ns()
        healthy_ns = now_ns - (conn.activated_ns or now_ns)
        if not conn.stalled and healthy_ns >= self._cfg.backoff_reset_after_s * _NS:
            self._failures = 0
        self._notify(self._on_disconnected, reason)
        self._data_lost(f"disconnected: {reason}")
        self._rotation_reason = None
        if self._pending is not None:
            # The old socket died mid-rotation: take the new one now; its first frames may
            # start after the old one's last.
            self._log.warning("ws.disconnected", seq=conn.seq, reason=reason)
            pending, self._pending = self._pending, None
            self._activate(pending)
            return
        self._retry_connect("ws.disconnected", reason, seq=conn.seq)

    async def _close_ws(self, ws: aiohttp.ClientWebSocketResponse[Literal[False]]) -> None:
        if ws.closed:
            return
        try:
            async with asyncio.timeout(self._cfg.close_timeout_s):
                await ws.close()
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass  # the socket is being discarded either way

    def _rebuild_watch_list(self) -> None:
        watched: list[tuple[bytes, str, int]] = []
        for stream in self._streams:
            seconds = self._cfg.stall_timeout_for(stream)
            if seconds is not None:
                watched.append((stream.encode(), stream, int(seconds * _NS)))
        self._watched = watched
        self._watch_since_ns = self._clock.monotonic_ns()

    async def _watchdog_loop(self) -> None:
        while True:
            await self._clock.sleep(self._cfg.watchdog_interval_s)
            self._check_health(self._clock.monotonic_ns())

    def _check_health(self, now_ns: int) -> None:
        pending = self._pending
        conn_timeout_ns = int(self._cfg.connection_timeout_s * _NS)
        if pending is not None and now_ns - pending.opened_ns > conn_timeout_ns:
            self._drop(pending, "new connection delivered no data")  # pings alone do not count
        conn = self._active
        if conn is None:
            return
        silent_ns = now_ns - conn.last_alive_ns
        if silent_ns > conn_timeout_ns:
            self._stall(conn, f"no frame and no ping for {silent_ns / _NS:.1f} s")
            return
        since_ns = max(conn.activated_ns or conn.opened_ns, self._watch_since_ns)
        for key, stream, timeout_ns in self._watched:
            silent_ns = now_ns - max(self._last_frame_ns.get(key, 0), since_ns)
            if silent_ns > timeout_ns:
                self._stall(conn, f"stream {stream} silent for {silent_ns / _NS:.1f} s")
                return
        if now_ns - conn.opened_ns >= self._cfg.rotate_after_s * _NS:
            self._request_rotation("max lifetime")

    def _stall(self, conn: _Conn, reason: str) -> None:
        self.stats.stalls += 1
        conn.stalled = True
        self._log.warning("ws.stall", seq=conn.seq, reason=reason)
        self._drop(conn, f"stall: {reason}")
