"""The simulator's own order book per symbol, kept independent of exchange/book.py.

Tests compare the engine's book against this one, so it shares no code with it: levels are the
wire's exact price/qty strings in plain dicts, and the sync rules are written out again here from
reference/binance-api.md §2 (spot: first diff brackets ``lastUpdateId+1``, chain ``U == u+1``;
USDⓈ-M: first diff brackets ``lastUpdateId``, chain ``pu == u``).

The book advances as each diff is *emitted* by the replay (also diffs a ``gap`` fault hides from
clients): the exchange's book moved even if a client did not hear about it.
"""

from __future__ import annotations

import heapq
from decimal import Decimal

from engine.model import Market
from exchange.sim.timeline import DepthDiffInfo, Snapshot

Levels = list[list[str]]


def _is_zero(qty: str) -> bool:
    # "0.00000000" (spot), "0.000" (futures), "0": zero once digits and point are stripped
    return not qty.strip("0.")


def _sorted_levels(side: dict[str, str], descending: bool, limit: int | None) -> Levels:
    if limit is not None and limit < len(side) // 4:
        pick = heapq.nlargest if descending else heapq.nsmallest
        keys = pick(limit, side, key=float)
    else:
        keys = sorted(side, key=float, reverse=descending)[:limit]
    return [[price, side[price]] for price in keys]


class SimBook:
    """Exchange-side book of one symbol: recorded snapshot plus every diff emitted after it."""

    def __init__(self, market: Market, snapshots: list[Snapshot]) -> None:
        self.market = market
        self._snapshots = sorted(snapshots, key=lambda s: s.ts_recv_ns)
        self.reset()

    def reset(self) -> None:
        """Forget every emitted diff, as at the start of the tape (a replay loop wraps)."""
        self._snapshot_index = 0  # next recorded snapshot to sync from
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.last_update_id: int | None = None  # None while not synced with the diff stream
        self.last_trans_ms: int | None = None
        self.last_event_ms: int | None = None
        self.diffs_applied = 0
        self.tape_gaps = 0  # chain breaks found in the recorded tape itself

    @property
    def synced(self) -> bool:
        return self.last_update_id is not None

    @property
    def served_update_id(self) -> int | None:
        """Return the lastUpdateId a REST snapshot taken now carries."""
        if self.last_update_id is not None:
            return self.last_update_id
        snap = self.pending_snapshot
        return None if snap is None else snap.last_update_id

    @property
    def pending_snapshot(self) -> Snapshot | None:
        """Return the recorded snapshot the book syncs (or synced) from, if any."""
        if self._snapshot_index < len(self._snapshots):
            return self._snapshots[self._snapshot_index]
        return self._snapshots[-1] if self._snapshots else None

    def apply(self, diff: DepthDiffInfo) -> bool:
        """Advance the book by one emitted diff; return True if it changed the book."""
        if self.last_update_id is None:
            return self._apply_unsynced(diff)
        if self.market is Market.USDM:
            chained = diff.prev_final_update_id == self.last_update_id
            stale = diff.final_update_id <= self.last_update_id and not chained
        else:
            stale = diff.final_update_id <= self.last_update_id
            chained = not stale and diff.first_update_id <= self.last_update_id + 1
        if stale:
            return False
        if not chained:  # the recorded tape itself has a gap: resync from a later snapshot
            self.tape_gaps += 1
            self.last_update_id = None
            self._snapshot_index += 1
            return self._apply_unsynced(diff)
        self._set_levels(diff)
        return True

    def _apply_unsynced(self, diff: DepthDiffInfo) -> bool:
        if not self._snapshots:
            # No recorded snapshot: the book is whatever the diffs built from empty.
            self.bids.clear()
            self.asks.clear()
            self._set_levels(diff)
            return True
        while self._snapshot_index < len(self._snapshots):
            snap = self._snapshots[self._snapshot_index]
            sync_id = snap.last_update_id + (1 if self.market is Market.SPOT else 0)
            if self.market is Market.SPOT:
                too_old = diff.final_update_id <= snap.last_update_id
            else:
                too_old = diff.final_update_id < snap.last_update_id
            if too_old:
                return False  # the stream has not reached the snapshot yet
            if diff.first_update_id <= sync_id <= diff.final_update_id:
                self.bids = {p: q for p, q in snap.bids if not _is_zero(q)}
                self.asks = {p: q for p, q in snap.asks if not _is_zero(q)}
                self._set_levels(diff)
                return True
            self._snapshot_index += 1  # snapshot older than the stream: try a later one
        return False

    def _set_levels(self, diff: DepthDiffInfo) -> None:
        for side, levels in ((self.bids, diff.bids), (self.asks, diff.asks)):
            for price, qty in levels:
                if _is_zero(qty):
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_update_id = diff.final_update_id
        self.last_trans_ms = diff.ts_trans_ms
        self.last_event_ms = diff.ts_event_ms
        self.diffs_applied += 1

    def depth(self, limit: int | None) -> tuple[int | None, Levels, Levels]:
        """Return (lastUpdateId, bids, asks) best first, as a REST snapshot would serve them.

        Before the stream has reached past the recorded snapshot, that snapshot is served as is
        (newer than the stream: clients must keep buffering until a diff brackets it).
        """
        if self.last_update_id is None:
            snap = self.pending_snapshot
            if snap is None:
                return None, [], []
            bids = [lv for lv in snap.bids if not _is_zero(lv[1])]
            asks = [lv for lv in snap.asks if not _is_zero(lv[1])]
            if limit is not None:
                bids, asks = bids[:limit], asks[:limit]
            return snap.last_update_id, bids, asks
        return (
            self.last_update_id,
            _sorted_levels(self.bids, True, limit),
            _sorted_levels(self.asks, False, limit),
        )

    def levels(
        self, depth: int | None = None
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """Return the current (bids, asks) as exact Decimal pairs, best first, depth per side."""
        _, bids, asks = self.depth(depth)
        return (
            [(Decimal(p), Decimal(q)) for p, q in bids],
            [(Decimal(p), Decimal(q)) for p, q in asks],
        )
