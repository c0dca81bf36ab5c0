"""BookSync: every Binance rule on hand-built sequences, then real tapes with injected faults."""

from __future__ import annotations

import functools
import gc
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain
from pathlib import Path

import orjson
import pytest

from engine.events import DepthDiff, DepthSnapshot
from engine.model import Market
from engine.tape import read_tape
from exchange.binance.parse import FrameDecoder
from exchange.binance.sync import BookSync, SyncRequest, SyncResult, SyncState
from exchange.book import OrderBook

NONE, FETCH, REFETCH = SyncRequest.NONE, SyncRequest.FETCH_SNAPSHOT, SyncRequest.REFETCH_SNAPSHOT


def diff(U: int, u: int, pu: int | None = None, bids=(), asks=()) -> DepthDiff:
    return DepthDiff("X", 0, 0, U, u, pu, list(bids), list(asks))


def snapshot(lid: int, bids=((100.0, 1.0),), asks=((101.0, 1.0),)) -> DepthSnapshot:
    return DepthSnapshot("X", lid, None, 0, list(bids), list(asks))


def marked(i: int) -> list[tuple[float, float]]:
    """A bid level that identifies diff i in the book."""
    return [(float(50 + i), 1.0)]


def new_sync(market: Market, **kw) -> BookSync:
    return BookSync("X", market, OrderBook("X"), **kw)


def bid_prices(sync: BookSync) -> list[float]:
    return [p for p, _ in sync.book.levels("bid")]


# ---------------------------------------------------------------- spot rules


def test_spot_first_diff_asks_for_one_snapshot_and_buffers() -> None:
    sync = new_sync(Market.SPOT)
    first = sync.on_diff(diff(1, 5, bids=marked(1)))
    assert (first.result, first.request) == (SyncResult.BUFFERED, FETCH)
    again = sync.on_diff(diff(6, 9, bids=marked(2)))
    assert (again.result, again.request) == (SyncResult.BUFFERED, NONE)
    assert sync.counters.snapshots_requested == 1 and sync.buffered == 2
    assert not sync.valid and sync.last_update_id is None


def test_spot_snapshot_bracketed_with_plus_one() -> None:
    sync = new_sync(Market.SPOT)
    sync.on_diff(diff(1, 5, bids=marked(1)))
    sync.on_diff(diff(6, 9, bids=marked(2)))
    action = sync.on_snapshot(snapshot(5))  # drop u <= 5; 6 <= 5+1 <= 9
    assert (action.result, action.request) == (SyncResult.SYNCED, NONE)
    assert sync.valid and sync.state is SyncState.LIVE and sync.last_update_id == 9
    assert bid_prices(sync) == [100.0, 52.0]  # diff 1 dropped, diff 2 applied
    assert sync.counters.stale_dropped == 1 and sync.counters.snapshots_loaded == 1


def test_spot_snapshot_exactly_before_first_event_is_a_continuation() -> None:
    sync = new_sync(Market.SPOT)
    sync.on_diff(diff(6, 9, bids=marked(2)))
    assert sync.on_snapshot(snapshot(5)).result is SyncResult.SYNCED  # U = lid + 1


def test_spot_snapshot_older_than_stream_is_refetched() -> None:
    sync = new_sync(Market.SPOT)
    sync.on_diff(diff(7, 9, bids=marked(2)))
    action = sync.on_snapshot(snapshot(5))  # 7 > 5 + 1: updates 6 missing
    assert (action.result, action.request) == (SyncResult.SNAPSHOT_TOO_OLD, REFETCH)
    assert not sync.valid and sync.counters.snapshots_too_old == 1
    assert sync.counters.snapshots_requested == 2
    assert sync.on_snapshot(snapshot(8)).result is SyncResult.SYNCED
    assert sync.last_update_id == 9


def test_spot_snapshot_newer_than_stream_waits_for_events() -> None:
    sync = new_sync(Market.SPOT)
    sync.on_diff(diff(1, 9, bids=marked(1)))
    action = sync.on_snapshot(snapshot(20))
    assert (action.result, action.request) == (SyncResult.WAITING, NONE)
    assert sync.on_diff(diff(10, 15, bids=marked(2))).result is SyncResult.WAITING
    action = sync.on_diff(diff(16, 22, bids=marked(3)))  # 16 <= 21 <= 22
    assert (action.result, action.request) == (SyncResult.SYNCED, NONE)
    assert bid_prices(sync) == [100.0, 53.0] and sync.last_update_id == 22
    assert sync.counters.snapshots_requested == 1  # waiting never asked again


def test_spot_live_rules_stale_overlap_and_gap() -> None:
    sync = new_sync(Market.SPOT)
    sync.on_diff(diff(6, 9, bids=marked(2)))
    sync.on_snapshot(snapshot(5, bids=[(100.0, 1.0), (99.0, 7.0)]))
    assert sync.on_diff(diff(5, 9, bids=marked(3))).result is SyncResult.IGNORED_STALE
    assert sync.on_diff(diff(8, 8)).result is SyncResult.IGNORED_STALE
    assert sync.counters.stale_ignored == 2 and 53.0 not in bid_prices(sync)
    assert sync.on_diff(diff(9, 12, bids=marked(4))).result is SyncResult.APPLIED  # overlap
    assert sync.on_diff(diff(13, 13, bids=marked(5))).result is SyncResult.APPLIED  # U = u+1
    action = sync.on_diff(diff(15, 16, bids=marked(6)))  # 14 missing
    assert (action.result, action.request) == (SyncResult.GAP, FETCH)
    assert not sync.valid and sync.state is SyncState.SYNCING  # invalid at once
    assert sync.book.level_count("bid") == 0 and sync.buffered == 1
    assert sync.counters.gaps == 1 and sync.counters.resyncs == 1
    # resync on the same stream: the fresh snapshot replaces the old book entirely
    assert sync.on_diff(diff(17, 18, bids=marked(7))).request is NONE
    action = sync.on_snapshot(snapshot(16, bids=[(100.5, 2.0)]))
    assert action.result is SyncResult.SYNCED and sync.valid
    assert bid_prices(sync) == [100.5, 57.0]  # 99.0 of the old book did not survive


# ---------------------------------------------------------------- USDⓈ-M rules


def test_usdm_snapshot_bracketed_without_plus_one() -> None:
    fut, spot = new_sync(Market.USDM), new_sync(Market.SPOT)
    events = [(1, 4, 0), (5, 8, 4), (9, 12, 8)]
    for i, (U, u, pu) in enumerate(events):
        fut.on_diff(diff(U, u, pu, bids=marked(i)))
        spot.on_diff(diff(U, u, None, bids=marked(i)))
    assert fut.on_snapshot(snapshot(8)).result is SyncResult.SYNCED  # keeps u == 8: 5<=8<=8
    assert spot.on_snapshot(snapshot(8)).result is SyncResult.SYNCED  # drops u == 8
    assert bid_prices(fut) == [100.0, 52.0, 51.0]
    assert bid_prices(spot) == [100.0, 52.0]
    assert fut.last_update_id == spot.last_update_id == 12


def test_usdm_first_event_after_snapshot_id_is_refetched() -> None:
    fut = new_sync(Market.USDM)
    fut.on_diff(diff(9, 12, 8))
    action = fut.on_snapshot(snapshot(8))  # U=9 > 8: futures need U <= lastUpdateId
    assert (action.result, action.request) == (SyncResult.SNAPSHOT_TOO_OLD, REFETCH)


def test_usdm_live_duplicate_is_not_a_gap_and_pu_decides() -> None:
    fut = new_sync(Market.USDM)
    fut.on_diff(diff(5, 8, 4))
    fut.on_snapshot(snapshot(7))
    assert fut.on_diff(diff(5, 8, 4)).result is SyncResult.IGNORED_STALE  # duplicate
    assert fut.on_diff(diff(40, 50, 8, bids=marked(1))).result is SyncResult.APPLIED  # ids jump
    action = fut.on_diff(diff(60, 70, 55))
    assert (action.result, action.request) == (SyncResult.GAP, FETCH)
    assert fut.counters.gaps == 1 and fut.counters.stale_ignored == 1 and not fut.valid


def test_usdm_snapshot_newer_than_stream_waits() -> None:
    fut = new_sync(Market.USDM)
    fut.on_diff(diff(1, 4, 0))
    assert fut.on_snapshot(snapshot(10)).result is SyncResult.WAITING
    assert fut.on_diff(diff(5, 9, 4)).result is SyncResult.WAITING
    assert fut.on_diff(diff(10, 14, 9, bids=marked(1))).result is SyncResult.SYNCED
    assert fut.on_diff(diff(15, 16, 14)).result is SyncResult.APPLIED


# ---------------------------------------------------------------- both markets


@pytest.mark.parametrize("market", [Market.SPOT, Market.USDM])
def test_buffer_overflow_drops_oldest_and_forces_a_refetch(market: Market) -> None:
    sync = new_sync(market, max_buffer=3)
    ids = [(1, 10), (11, 20), (21, 30), (31, 40), (41, 50)]
    for U, u in ids:
        sync.on_diff(diff(U, u, U - 1))
    assert sync.buffered == 3 and sync.counters.buffered_dropped == 2
    action = sync.on_snapshot(snapshot(15))  # its successors 16..20 were dropped
    assert (action.result, action.request) == (SyncResult.SNAPSHOT_TOO_OLD, REFETCH)
    assert sync.on_snapshot(snapshot(30)).result is SyncResult.SYNCED
    assert sync.last_update_id == 50


@pytest.mark.parametrize("market", [Market.SPOT, Market.USDM])
def test_crossed_book_is_invalid_and_resynced(market: Market) -> None:
    sync = new_sync(market)
    sync.on_diff(diff(1, 2, 0))
    sync.on_snapshot(snapshot(1))
    assert sync.valid
    action = sync.on_diff(diff(3, 4, 2, bids=[(101.0, 1.0)]))  # bid == best ask
    assert (action.result, action.request) == (SyncResult.CROSSED, FETCH)
    assert not sync.valid and sync.counters.crossed == 1 and sync.buffered == 1


@pytest.mark.parametrize("market", [Market.SPOT, Market.USDM])
def test_invalidate_forces_a_fresh_sync(market: Market) -> None:
    sync = new_sync(market)
    sync.on_diff(diff(1, 2, 0))
    sync.on_snapshot(snapshot(1))
    sync.invalidate("reconnect")
    assert not sync.valid and sync.book.level_count("bid") == 0 and sync.buffered == 0
    assert sync.last_invalid_reason == "reconnect" and sync.counters.invalidations == 1
    assert sync.on_diff(diff(100, 101, 99)).request is FETCH


def test_snapshot_while_live_is_ignored_and_rejected_levels_resync() -> None:
    sync = new_sync(Market.SPOT)
    sync.on_diff(diff(1, 2))
    sync.on_snapshot(snapshot(1))
    assert sync.on_snapshot(snapshot(5)).result is SyncResult.SNAPSHOT_IGNORED
    action = sync.on_diff(diff(3, 4, bids=[(math.nan, 1.0)]))
    assert (action.result, action.request) == (SyncResult.REJECTED, FETCH)
    assert not sync.valid
    assert sync.buffered == 0  # a diff that can never apply is not kept for the resync
    sync.on_diff(diff(5, 6, bids=marked(5)))
    bad = sync.on_snapshot(snapshot(4, bids=[(100.123456789, 1.0)]))  # more than 8 decimals
    assert (bad.result, bad.request) == (SyncResult.REJECTED, FETCH) and not sync.valid
    assert sync.on_snapshot(snapshot(4)).result is SyncResult.SYNCED
    assert bid_prices(sync) == [100.0, 55.0] and sync.counters.rejected == 2


# ---------------------------------------------------------------- real tapes

TAPE_CASES = [
    ("binance-tapes/spot_btcusdt_20240808.gz", Market.SPOT),
    ("binance-tapes/spot_ethusdt_20240808.gz", Market.SPOT),
    ("binance-tapes/usdm_btcusdt_20240808.gz", Market.USDM),
    ("binance-tapes-2023/btcusdt_20230404.dat.gz+btcusdt_20230405.dat.gz", Market.USDM),
    ("binance-captures-2021/2021-04-05_spot_10sym", Market.SPOT),
    ("binance-captures-2021/2021-04-05_usdm_5sym", Market.USDM),
    ("binance-captures-2021/2021-04-17_spot_10sym", Market.SPOT),
    ("binance-captures-2021/2021-04-17_usdm_4sym", Market.USDM),
    ("binance-captures-2021/2021-04-17_coinm_10sym", Market.USDM),  # COIN-M: the pu rule too
    ("binance-captures-2021/2021-07-22_usdm_4sym", Market.USDM),
    ("binance-captures-2021/2021-07-22_coinm_10sym", Market.USDM),
    ("binance-captures-2021/2021-08-14_spot_4sym", Market.SPOT),
    ("binance-captures-2021/2021-10-12_spot_4sym", Market.SPOT),
]


@dataclass
class SymbolTape:
    """One symbol's depth events in tape order, decoded and raw (for the reference)."""

    events: list[tuple[DepthDiff | DepthSnapshot, dict]] = field(default_factory=list)


def _without_gc(fn):
    """Building millions of small long-lived objects: cyclic GC passes only cost time here."""

    @functools.wraps(fn)
    def wrapper(*args):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args)
        finally:
            if enabled:
                gc.enable()

    return wrapper


@functools.cache
@_without_gc
def load_depth(data: Path, spec: str, market: Market) -> dict[str, SymbolTape]:
    folder, _, names = spec.partition("/")
    paths = [data / folder / n for n in names.split("+")]
    frames = chain.from_iterable(read_tape(p) for p in paths)
    decoder = FrameDecoder(market)
    out: dict[str, SymbolTape] = {}
    for frame in frames:
        if frame.is_snapshot:
            assert frame.snapshot_symbol
            snap = decoder.decode_snapshot(frame.payload, frame.snapshot_symbol, frame.ts_recv_ns)
            out.setdefault(snap.symbol, SymbolTape()).events.append(
                (snap, orjson.loads(frame.payload))
            )
        elif b"@depth" in frame.payload[:48]:
            event = decoder.decode(frame.payload, frame.ts_recv_ns)
            assert isinstance(event, DepthDiff)
            raw = orjson.loads(frame.payload)["data"]
            out.setdefault(event.symbol, SymbolTape()).events.append((event, raw))
    return out


STRIDE = 31


class Reference:
    """The exchange's book by id: the snapshot, then every later diff in order (tapes are
    gap-free), on Decimal dicts. Independent of BookSync's buffering and bracketing."""

    def __init__(self, tape: SymbolTape, futures: bool) -> None:
        raws = [raw for _, raw in tape.events]
        snap_at = next(i for i, raw in enumerate(raws) if "lastUpdateId" in raw)
        self.snapshot = raws[snap_at]
        lid = self.snapshot["lastUpdateId"]
        diffs = [raw for raw in raws if "lastUpdateId" not in raw]
        self.diffs = [d for d in diffs if d["u"] > lid or (futures and d["u"] == lid)]
        # best bid/ask at every STRIDE-th id (max() over Decimal keys is the slow part)
        self.bests: dict[int, tuple[float, float]] = {}
        for n, (u, bids, asks) in enumerate(self._states()):
            if n % STRIDE == 0 or n == len(self.diffs):
                self.bests[u] = (_best(bids, max), _best(asks, min))
        self.final_bids, self.final_asks = bids, asks

    def _states(self) -> Iterator[tuple[int, dict, dict]]:
        bids = {Decimal(p): Decimal(q) for p, q in self.snapshot["bids"] if Decimal(q)}
        asks = {Decimal(p): Decimal(q) for p, q in self.snapshot["asks"] if Decimal(q)}
        yield self.snapshot["lastUpdateId"], bids, asks
        for d in self.diffs:
            for side, levels in ((bids, d["b"]), (asks, d["a"])):
                for p, q in levels:
                    if Decimal(q) == 0:
                        side.pop(Decimal(p), None)
                    else:
                        side[Decimal(p)] = Decimal(q)
            yield d["u"], bids, asks

    def snapshot_at(self, u: int, symbol: str) -> DepthSnapshot:
        """A fresh snapshot as Binance would serve it at id u."""
        for uid, bids, asks in self._states():
            if uid == u:
                return DepthSnapshot(symbol, u, None, 0, _floats(bids), _floats(asks))
        raise AssertionError(f"id {u} not in the stream")


@functools.cache
@_without_gc
def reference(data: Path, spec: str, market: Market, symbol: str) -> Reference:
    return Reference(load_depth(data, spec, market)[symbol], futures=market is Market.USDM)


def _best(side: dict, pick) -> float:
    return float(pick(side)) if side else math.nan


def _floats(side: dict) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q in side.items()]


def assert_book_equals(book: OrderBook, bids: dict, asks: dict) -> None:
    assert book.levels("bid") == sorted(_floats(bids), reverse=True)
    assert book.levels("ask") == sorted(_floats(asks))


def _bests(book: OrderBook) -> tuple[float, float]:
    return book.best_bid(), book.best_ask()


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("spec", "market"), TAPE_CASES, ids=[c[0].split("/")[-1] for c in TAPE_CASES]
)
def test_real_tape_syncs_once_without_gaps(shared_data: Path, spec: str, market: Market) -> None:
    tapes = load_depth(shared_data, spec, market)
    assert tapes
    for symbol, tape in tapes.items():
        ref = reference(shared_data, spec, market, symbol)
        sync = BookSync(symbol, market, OrderBook(symbol))
        applied = 0
        for event, _ in tape.events:
            if isinstance(event, DepthSnapshot):
                action = sync.on_snapshot(event)
            else:
                action = sync.on_diff(event)
            assert action.request is not SyncRequest.REFETCH_SNAPSHOT, (symbol, action)
            assert action.result not in (SyncResult.GAP, SyncResult.CROSSED), (symbol, action)
            if sync.valid:
                applied += 1
                expected = ref.bests.get(sync.last_update_id)  # type: ignore[arg-type]
                assert expected is None or _same(_bests(sync.book), expected), symbol
        c = sync.counters
        assert (c.snapshots_loaded, c.gaps, c.crossed, c.resyncs) == (1, 0, 0, 0), symbol
        assert sync.valid and applied > 0, symbol
        assert sync.last_update_id == ref.diffs[-1]["u"] if ref.diffs else True
        assert_book_equals(sync.book, ref.final_bids, ref.final_asks)


FAULT_CASES = [
    ("binance-tapes/spot_btcusdt_20240808.gz", Market.SPOT),
    ("binance-tapes/usdm_btcusdt_20240808.gz", Market.USDM),
    ("binance-captures-2021/2021-07-22_coinm_10sym", Market.USDM),
]


def _replay_with_fault(tape: SymbolTape, ref: Reference, market: Market, fault: str, at: int):
    """Feed the symbol's diffs after the sync with one fault injected at diff `at`; answer
    every snapshot request with a fresh reference snapshot three diffs later."""
    symbol = tape.events[0][0].symbol
    sync = BookSync(symbol, market, OrderBook(symbol))
    order = ref.diffs
    index_of = {id(raw): i for i, raw in enumerate(order)}
    live = [ev for ev, raw in tape.events if isinstance(ev, DepthDiff) and id(raw) in index_of]
    sync.on_diff(live[0])
    sync.on_snapshot(DepthSnapshot(symbol, ref.snapshot["lastUpdateId"], None, 0,
                                   _floats_raw(ref.snapshot["bids"]),
                                   _floats_raw(ref.snapshot["asks"])))  # fmt: skip
    assert sync.valid
    feed = list(range(1, len(live)))
    k = at
    if fault == "drop":
        feed.remove(k)
    elif fault == "duplicate":
        feed.insert(feed.index(k) + 1, k)
    elif fault == "reorder":
        j = feed.index(k)
        feed[j], feed[j + 1] = feed[j + 1], feed[j]
    results = []
    newest = 0  # highest exchange index fed so far
    fetch_due: int | None = None
    for n, i in enumerate(feed):
        newest = max(newest, i)
        action = sync.on_diff(live[i])
        results.append(action.result)
        if action.request is not SyncRequest.NONE:
            fetch_due = n + 3  # the REST answer arrives a few diffs later
            fetch_id = live[newest].final_update_id
        if fetch_due == n:
            fetch_due = None
            action = sync.on_snapshot(ref.snapshot_at(fetch_id, symbol))
            results.append(action.result)
        expected = ref.bests.get(sync.last_update_id)  # type: ignore[arg-type]
        if sync.valid and expected is not None:
            assert _same(_bests(sync.book), expected)
    return sync, results


def _floats_raw(levels) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q in levels if float(q)]


@pytest.mark.parametrize(
    ("spec", "market"), FAULT_CASES, ids=[c[0].split("/")[-1] for c in FAULT_CASES]
)
@pytest.mark.parametrize("fault", ["drop", "duplicate", "reorder"])
def test_injected_faults_on_real_tapes_are_detected_and_healed(
    shared_data: Path, spec: str, market: Market, fault: str
) -> None:
    tapes = load_depth(shared_data, spec, market)
    symbol = max(tapes, key=lambda s: len(tapes[s].events))  # the busiest book
    tape = tapes[symbol]
    ref = reference(shared_data, spec, market, symbol)
    at = len(ref.diffs) // 2
    sync, results = _replay_with_fault(tape, ref, market, fault, at)
    if fault == "duplicate":
        assert sync.counters.gaps == 0 and sync.counters.stale_ignored == 1
        assert SyncResult.GAP not in results
    else:
        assert sync.counters.gaps == 1 and results.count(SyncResult.GAP) == 1
        assert sync.counters.snapshots_loaded == 2 and SyncResult.SYNCED in results
    assert sync.valid and sync.last_update_id == ref.diffs[-1]["u"]
    assert_book_equals(sync.book, ref.final_bids, ref.final_asks)
