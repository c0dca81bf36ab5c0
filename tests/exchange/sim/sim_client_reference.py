"""A client's view of Binance market data, written from the documented rules for the simulator
tests (reference/binance-api.md §2.2, §2.3). It shares no code with the simulator, so the tests
compare two independent implementations."""

from __future__ import annotations

import functools
import heapq
import json
from decimal import Decimal
from pathlib import Path

from engine.tape import read_tape

Side = dict[Decimal, Decimal]


class ClientBook:
    """A client's local book: snapshot, then diffs by the market's documented sync rule."""

    def __init__(self, futures: bool, snapshot: dict) -> None:
        self.futures = futures
        self.bids: Side = {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
        self.asks: Side = {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
        self.last = int(snapshot["lastUpdateId"])
        self.synced = False

    def feed(self, diff: dict) -> bool:
        """Apply one diff if the rules say so; return True when it was applied."""
        first, final = diff["U"], diff["u"]
        if not self.synced:
            if self.futures:
                if final < self.last:
                    return False
                assert first <= self.last <= final, "first futures diff must bracket the id"
            else:
                if final <= self.last:
                    return False
                assert first <= self.last + 1 <= final, "first spot diff must bracket id+1"
            self.synced = True
        elif self.futures:
            assert diff["pu"] == self.last, "futures chain broken"
        else:
            if final <= self.last:
                return False
            assert first == self.last + 1, "spot chain broken"
        for side, levels in ((self.bids, diff["b"]), (self.asks, diff["a"])):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(qty)
        self.last = final
        return True

    def levels(self, depth: int | None = None) -> tuple[list, list]:
        if depth is None:
            return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())
        return heapq.nlargest(depth, self.bids.items()), heapq.nsmallest(depth, self.asks.items())


@functools.cache
def recorded_snapshot(path: Path) -> dict:
    return next(json.loads(f.payload) for f in read_tape(path) if f.snapshot_symbol)


@functools.cache
def recorded_diffs(path: Path) -> list[dict]:
    return [
        json.loads(f.payload)["data"]
        for f in read_tape(path)
        if f.snapshot_symbol is None and b"@depth" in f.payload[:40]
    ]
