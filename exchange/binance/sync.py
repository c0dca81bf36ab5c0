"""Keep one symbol's local book in sync with Binance: buffer, snapshot, bracket, apply, detect gaps.

A plain synchronous state machine (no I/O): the caller feeds diffs and the snapshots it fetched,
and each call returns a `SyncAction` saying what to do next (fetch a snapshot or nothing) and what
happened (for logs and counters). The rules are Binance's, per market
(reference/binance-api.md §2.2-2.4):

spot     snapshot: drop buffered u <= lastUpdateId; first kept must have U <= lastUpdateId+1 <= u
         live:     u <= last_u -> stale, ignore;  U > last_u + 1 -> gap;  else apply
USDⓈ-M   snapshot: drop buffered u <  lastUpdateId; first kept must have U <= lastUpdateId <= u
         live:     u <= last_u -> duplicate, ignore (not a gap);  pu != last_u -> gap;  else apply

A snapshot whose id lies before the first buffered event (spot: U > lastUpdateId + 1, USDⓈ-M:
U > lastUpdateId) cannot be bridged: REFETCH. A snapshot newer than every buffered event is
normal (the REST call overtook the stream): it is kept and the next events are bracketed against
it. On a gap or a crossed book the book is invalid at once, cleared, and the sync restarts on the
same socket with the offending event as the first buffered one. A new snapshot always replaces
the book (python-binance #418: stale levels survived a merge).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import asdict, dataclass

from engine.events import DepthDiff, DepthSnapshot
from engine.model import Market
from exchange.book import OrderBook


class SyncState(enum.Enum):
    SYNCING = "syncing"  # buffering diffs until a snapshot can be bracketed
    LIVE = "live"  # book follows the stream


class SyncRequest(enum.Enum):
    """What the caller must do after a call."""

    NONE = "none"
    FETCH_SNAPSHOT = "fetch_snapshot"  # first diff buffered, or the book was lost (gap, crossed)
    REFETCH_SNAPSHOT = "refetch_snapshot"  # the snapshot is older than the buffered stream


class SyncResult(enum.Enum):
    """What happened (for logs and metrics)."""

    APPLIED = "applied"
    BUFFERED = "buffered"
    IGNORED_STALE = "ignored_stale"  # diff already contained in the book (u <= last_u)
    SYNCED = "synced"  # snapshot loaded, buffer applied: the book is valid again
    WAITING = "waiting"  # snapshot kept: no buffered diff reaches past it yet
    SNAPSHOT_TOO_OLD = "snapshot_too_old"
    SNAPSHOT_IGNORED = "snapshot_ignored"  # a snapshot arrived while LIVE (late duplicate)
    GAP = "gap"
    CROSSED = "crossed"
    REJECTED = "rejected"  # the book refused a level (off any grid, NaN): resync


@dataclass(frozen=True, slots=True)
class SyncAction:
    """The outcome of one call: what happened and what the caller must do."""

    result: SyncResult
    request: SyncRequest = SyncRequest.NONE
    reason: str = ""


@dataclass(slots=True)
class SyncCounters:
    diffs_applied: int = 0
    snapshots_requested: int = 0
    snapshots_loaded: int = 0
    snapshots_too_old: int = 0
    gaps: int = 0
    crossed: int = 0
    rejected: int = 0
    stale_ignored: int = 0  # live diffs with u <= last_u
    stale_dropped: int = 0  # buffered diffs older than the snapshot
    buffered_dropped: int = 0  # buffer overflow while waiting for a snapshot
    resyncs: int = 0  # times a LIVE (or syncing) book was thrown away
    invalidations: int = 0  # invalidate() calls (reconnects)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_APPLIED = SyncAction(SyncResult.APPLIED)
_BUFFERED = SyncAction(SyncResult.BUFFERED)
_STALE = SyncAction(SyncResult.IGNORED_STALE)
_FETCH_FIRST = SyncAction(SyncResult.BUFFERED, SyncRequest.FETCH_SNAPSHOT, "first diff buffered")
_WAITING = SyncAction(SyncResult.WAITING, reason="snapshot newer than every buffered diff")
_IGNORED_SNAPSHOT = SyncAction(SyncResult.SNAPSHOT_IGNORED, reason="book already live")


class BookSync:
    """Drive one symbol's OrderBook from diffs and snapshots by Binance's rules for its market."""

    def __init__(
        self, symbol: str, market: Market, book: OrderBook, *, max_buffer: int = 2000
    ) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be >= 1")
        self.symbol = symbol
        self.market = market
        self.book = book
        self.max_buffer = max_buffer
        self.counters = SyncCounters()
        self._spot = market is Market.SPOT
        self._state = SyncState.SYNCING
        self._buffer: deque[DepthDiff] = deque()
        self._snapshot: DepthSnapshot | None = None  # kept while it is newer than the buffer
        self._fetch_pending = False  # a snapshot was requested and has not arrived
        self._last_u: int | None = None
        self.last_invalid_reason = "not synced yet"

    # ------------------------------------------------------------ state

    @property
    def state(self) -> SyncState:
        return self._state

    @property
    def valid(self) -> bool:
        """Return True when consumers may use the book: LIVE and not crossed."""
        return self._state is SyncState.LIVE and not self.book.is_crossed()

    @property
    def last_update_id(self) -> int | None:
        """Return the id the book is at (u of the last applied diff, or the snapshot id)."""
        return self._last_u if self._state is SyncState.LIVE else None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # ------------------------------------------------------------ inputs

    def on_diff(self, diff: DepthDiff) -> SyncAction:
        """Feed one diff-depth event; return what happened and what to do."""
        if self._state is SyncState.LIVE:
            return self._apply_live(diff)
        return self._buffer_diff(diff)

    def on_snapshot(self, snap: DepthSnapshot) -> SyncAction:
        """Feed a REST snapshot the caller fetched; return what happened and what to do."""
        self._fetch_pending = False
        if self._state is SyncState.LIVE:
            return _IGNORED_SNAPSHOT
        self._snapshot = snap
        return self._try_sync()

    def invalidate(self, reason: str) -> None:
        """Throw the book away (disconnect, reconnect, 24 h rotation): resync from scratch."""
        self.counters.invalidations += 1
        if self._state is SyncState.LIVE:
            self.counters.resyncs += 1
        self._reset(reason)
        self._buffer.clear()  # the old connection's diffs cannot bridge to the new one
        self._fetch_pending = False  # ask again once the new stream delivers

    # ------------------------------------------------------------ live

    def _apply_live(self, diff: DepthDiff) -> SyncAction:
        last_u = self._last_u
        assert last_u is not None
        u = diff.final_update_id
        if u <= last_u:
            self.counters.stale_ignored += 1
            return _STALE
        if self._spot:
            if diff.first_update_id > last_u + 1:
                return self._lose_book(
                    diff, SyncResult.GAP, f"U={diff.first_update_id} > last_u+1={last_u + 1}"
                )
        elif diff.prev_final_update_id != last_u:
            return self._lose_book(
                diff, SyncResult.GAP, f"pu={diff.prev_final_update_id} != last_u={last_u}"
            )
        return self._apply(diff)

    def _apply(self, diff: DepthDiff) -> SyncAction:
        u = diff.final_update_id
        try:
            crossed = self.book.apply(diff.bids, diff.asks)
        except ValueError as exc:
            return self._lose_book(diff, SyncResult.REJECTED, str(exc))
        self._last_u = u
        self.counters.diffs_applied += 1
        # OrderBook.apply returns is_crossed() (one call less per diff); anything else asks.
        if crossed is not False and self.book.is_crossed():
            return self._lose_book(
                diff,
                SyncResult.CROSSED,
                f"best_bid {self.book.best_bid()} >= best_ask {self.book.best_ask()} at u={u}",
            )
        return _APPLIED

    def _lose_book(self, diff: DepthDiff, result: SyncResult, reason: str) -> SyncAction:
        """Invalidate now, restart syncing (diff kept unless rejected), ask for a snapshot."""
        counters = self.counters
        if result is SyncResult.GAP:
            counters.gaps += 1
        elif result is SyncResult.CROSSED:
            counters.crossed += 1
        else:
            counters.rejected += 1
        counters.resyncs += 1
        self._reset(f"{result.value}: {reason}")
        # Keep the offending diff (and any not yet applied): a fresh snapshot may precede it.
        # A rejected diff can never apply: drop it; a snapshot older than it then fails the
        # bracket test on the next diff and is refetched until one covers it.
        if result is not SyncResult.REJECTED:
            self._buffer.appendleft(diff)
            self._trim_buffer()
        return self._request(result, f"{result.value}: {reason}")

    def _reset(self, reason: str) -> None:
        self._state = SyncState.SYNCING
        self._last_u = None
        self._snapshot = None
        self.book.clear()
        self.last_invalid_reason = reason

    def _request(self, result: SyncResult, reason: str) -> SyncAction:
        self.counters.snapshots_requested += 1
        self._fetch_pending = True
        return SyncAction(result, SyncRequest.FETCH_SNAPSHOT, reason)

    # ------------------------------------------------------------ syncing

    def _buffer_diff(self, diff: DepthDiff) -> SyncAction:
        self._buffer.append(diff)
        self._trim_buffer()
        if self._snapshot is not None:
            return self._try_sync()
        if not self._fetch_pending:
            self.counters.snapshots_requested += 1
            self._fetch_pending = True
            return _FETCH_FIRST
        return _BUFFERED

    def _trim_buffer(self) -> None:
        # Dropping the oldest diffs is safe: a snapshot taken before the new first diff then
        # fails the bracket test and is refetched, instead of leaving a silent hole.
        while len(self._buffer) > self.max_buffer:
            self._buffer.popleft()
            self.counters.buffered_dropped += 1

    def _try_sync(self) -> SyncAction:
        snap = self._snapshot
        assert snap is not None
        lid = snap.last_update_id
        buffer = self._buffer
        # spot keeps u > lid; USDⓈ-M keeps u >= lid (its first diff may end exactly at lid)
        floor_u = lid + 1 if self._spot else lid
        while buffer and buffer[0].final_update_id < floor_u:
            buffer.popleft()
            self.counters.stale_dropped += 1
        if not buffer:
            return _WAITING
        first_u = buffer[0].first_update_id
        if first_u > (lid + 1 if self._spot else lid):
            self.counters.snapshots_too_old += 1
            self.counters.snapshots_requested += 1
            self._snapshot = None
            self._fetch_pending = True
            return SyncAction(
                SyncResult.SNAPSHOT_TOO_OLD,
                SyncRequest.REFETCH_SNAPSHOT,
                f"lastUpdateId={lid} precedes first buffered U={first_u}",
            )
        self._snapshot = None
        try:
            self.book.load_snapshot(snap.bids, snap.asks)  # replace, never merge
        except ValueError as exc:
            self.counters.rejected += 1
            self.book.clear()
            return self._request(SyncResult.REJECTED, f"snapshot rejected: {exc}")
        self._state = SyncState.LIVE
        self._last_u = lid
        self.counters.snapshots_loaded += 1
        if not self._spot:
            # The bracketing diff (U <= lid <= u) has no usable pu: apply it unchecked, even
            # when u == lid (its levels then already equal the snapshot's).
            action = self._apply(buffer.popleft())
            if action.request is not SyncRequest.NONE:
                return action
        while buffer:
            action = self._apply_live(buffer.popleft())
            if action.request is not SyncRequest.NONE:
                return action  # the rest of the buffer stays queued behind the offender
        return SyncAction(SyncResult.SYNCED, reason=f"synced at u={self._last_u}")
