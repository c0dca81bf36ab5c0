"""The replay driver: walks the timeline at a speed, moves the books, hands frames to subscribers.

Pacing: frame i is due at ``origin + (ts_i - tape_origin) / speed`` of the injected clock's
monotonic time; ``speed`` 0 or inf sends as fast as the connections' queues drain. A ``delay``
fault or a pause holds the walk; after a delay, frames that fell due meanwhile go out back to
back (a burst), after a pause the walk continues where it stopped. Silences longer than
``max_idle_s`` of tape time (between tapes from different days) are skipped.

A frame is *emitted* when the walk reaches it: a diff then moves the simulator's own book, even
if a fault hides it from clients, and depth callbacks run after the frame was handed out.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import structlog

from engine.clock import Clock
from engine.model import Market
from exchange.sim.book import SimBook
from exchange.sim.connection import Connection
from exchange.sim.faults import Faults
from exchange.sim.timeline import Frame, Timeline

log = structlog.get_logger("tickloop.sim")

DepthSentCallback = Callable[[str, int], None]
StreamKey = tuple[Market, str]
_YIELD_EVERY = 128  # frames between forced yields when the replay runs flat out


class Replay:
    """One walk over the timeline shared by every connection of a simulator."""

    def __init__(
        self,
        timeline: Timeline,
        clock: Clock,
        faults: Faults,
        *,
        speed: float,
        loop: bool,
        max_idle_s: float,
        slow_consumer_timeout_s: float,
    ) -> None:
        self.timeline = timeline
        self.speed = speed
        self.flat_out = speed <= 0 or math.isinf(speed)
        self._clock = clock
        self._faults = faults
        self._loop = loop
        self._max_idle_ns = int(max_idle_s * 1e9)
        self._slow_consumer_timeout_s = slow_consumer_timeout_s
        keys = {(f.market, f.symbol) for f in timeline.frames if f.depth and f.symbol}
        keys |= set(timeline.snapshots)
        self.books = {k: SimBook(k[0], timeline.snapshots.get(k, [])) for k in keys}
        self.depth_callbacks: list[DepthSentCallback] = []
        self.subscribers: dict[StreamKey, list[tuple[Connection, str]]] = {}
        self.counters = {"frames_replayed": 0, "frames_sent": 0, "frames_gapped": 0,
                         "frames_duplicated": 0, "loops": 0, "slow_consumer_drops": 0}  # fmt: skip
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        self.explicit_start = False
        self.on_wrap: Callable[[], None] = lambda: None
        self._running = asyncio.Event()  # cleared by pause()
        self._running.set()
        self._congested: set[Connection] = set()
        self._held: dict[StreamKey, Frame] = {}  # reorder fault: diff waiting for the next one
        self._hold_until_ns = 0
        self.stall_until_ns = 0  # latest end of a stall; 0 when none is running
        self.position = -1  # index of the last emitted frame
        self._anchor: tuple[int, int] | None = None  # (monotonic ns, tape ns) of the pacing

    # ---- control ----------------------------------------------------------------------------

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def hold(self, ms: float) -> None:
        """Emit nothing for ms of real time, then catch up (the delay fault)."""
        until = self._clock.monotonic_ns() + int(ms * 1e6)
        self._hold_until_ns = max(self._hold_until_ns, until)

    def index(self, conn: Connection) -> None:
        """Re-index a connection's subscriptions (after any change, or to drop it)."""
        for key in list(self.subscribers):
            kept = [t for t in self.subscribers[key] if t[0] is not conn]
            if kept:
                self.subscribers[key] = kept
            else:
                del self.subscribers[key]
        self._congested.discard(conn)
        if not conn.closed:
            for name, stream_key in conn.subs.items():
                if stream_key is not None:
                    self.subscribers.setdefault(stream_key, []).append((conn, name))

    # ---- position ---------------------------------------------------------------------------

    def position_ns(self) -> int:
        """Return the tape receive time the replay has reached."""
        frames = self.timeline.frames
        last = frames[max(self.position, 0)].ts_recv_ns
        if self._anchor is None or self.flat_out or self.finished.is_set():
            return last
        mono0, tape0 = self._anchor
        paced = tape0 + int((self._clock.monotonic_ns() - mono0) * self.speed)
        upcoming = frames[min(self.position + 1, len(frames) - 1)].ts_recv_ns
        return max(last, min(paced, upcoming))

    def exchange_time_ms(self) -> int:
        """Return the exchange's clock at the replay position (recorder offset corrected)."""
        frame = self.timeline.frames[max(self.position, 0)]
        return self.position_ns() // 1_000_000 + self.timeline.exchange_offset_ms[frame.tape_index]

    # ---- the walk ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Replay once (or forever with loop=True), each pass after `started` is set."""
        while True:
            await self.started.wait()
            await self._play()
            if not self._loop:
                break
            self._wrap()
        self.finished.set()

    def _wrap(self) -> None:
        self.subscribers.clear()
        for book in self.books.values():
            book.reset()
        self._held.clear()
        self.position, self._anchor = -1, None
        self._faults.rewind_schedule()
        self.counters["loops"] += 1
        self.on_wrap()
        if not self.explicit_start:
            self.started.clear()  # wait for the clients to come back

    async def _play(self) -> None:
        clock = self._clock
        frames = self.timeline.frames
        tape_start = frames[0].ts_recv_ns
        mono0, tape0 = clock.monotonic_ns(), tape_start
        self._anchor = (mono0, tape0)
        prev_ts = tape_start
        faults = self._faults
        for index, frame in enumerate(frames):
            ts = frame.ts_recv_ns
            if faults.schedule:
                faults.fire_due((ts - tape_start) / 1e9)
            if not self.flat_out and ts - prev_ts > self._max_idle_ns:
                tape0 += ts - prev_ts - self._max_idle_ns
                self._anchor = (mono0, tape0)
            prev_ts = ts
            if not self._running.is_set():
                paused_at = clock.monotonic_ns()
                await self._running.wait()
                mono0 += clock.monotonic_ns() - paused_at
                self._anchor = (mono0, tape0)
            while True:
                now = clock.monotonic_ns()
                due = now if self.flat_out else mono0 + int((ts - tape0) / self.speed)
                wait_ns = max(due, self._hold_until_ns) - now
                if wait_ns <= 1_000_000:
                    break
                await clock.sleep(wait_ns / 1e9)
            self._emit(frame)
            self.position = index
            if self._congested:
                await self._relieve()
            elif index % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let sockets and REST run between batches

    async def _relieve(self) -> None:
        """Wait for connections over their high-water mark; drop those that never drain."""
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
        self.books[book_key].apply(depth)  # the exchange's book moves even if nobody hears it
        faults = self._faults
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
        for callback in self.depth_callbacks:
            callback(symbol, depth.final_update_id)

    def _deliver(self, frame: Frame) -> None:
        targets = self.subscribers.get(frame.key)
        if not targets:
            return
        copies = 1
        dups = self._faults.duplicates
        if dups:
            for key in (frame.symbol, None):
                if dups[key] > 0:
                    dups[key] -= 1
                    copies = 2
                    self.counters["frames_duplicated"] += 1
                    break
        now = self._clock.monotonic_ns() if self.stall_until_ns else 0
        if now and now >= self.stall_until_ns:
            self.stall_until_ns = now = 0
        sent = 0
        for conn, name in targets:
            if now and conn.is_stalled(now):
                continue
            if not conn.combined:
                payload = frame.data
            elif name == frame.stream:
                payload = frame.envelope
            else:  # an alias of the recorded diff stream: same data, the client's stream name
                payload = b'{"stream":"%s","data":%s}' % (name.encode(), frame.data)
            for _ in range(copies):
                if conn.send(payload):
                    self._congested.add(conn)
            sent += copies
        self.counters["frames_sent"] += sent
