"""The compiled book core (exchange/_book_core.pyx) equals the pure-Python reference book.

PythonOrderBook (exchange/book.py) is the reference: test_book.py proves it against a Decimal
book. Here the compiled OrderBook must give the same answers to every query after every event:
on the shared tapes (spot and USDⓈ-M, their REST snapshot, then resyncs from snapshots the test
builds from its own plain-dict copy of the book), on random sequences with off-grid prices and
extreme prices and quantities, and through the whole market-data pipeline (rows equal).
"""

from __future__ import annotations

import copy
import math
import pickle
import tracemalloc
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import exchange.book
from engine.config import FoldConfig
from engine.events import DepthDiff, DepthSnapshot
from engine.marketdata import MarketDataPipeline
from engine.model import Market
from engine.tape import read_tape, tape_symbols
from exchange.binance.parse import FrameDecoder
from exchange.book import BANDS_BPS, PythonOrderBook

D = Decimal


def test_extension_is_built_and_selected() -> None:
    """Fails (never skips) without the extension: CI must build it (pip install -e .)."""
    try:
        import exchange._book_core as core
    except ImportError as exc:
        pytest.fail(f"exchange._book_core is not built ({exc}): run pip install -e '.[dev]'")
    assert exchange.book.BOOK_IMPLEMENTATION == "compiled"
    assert exchange.book.OrderBook is core.OrderBook is exchange.book.CompiledOrderBook
    assert core.BANDS_BPS == BANDS_BPS == (30, 100, 300, 1000)


@pytest.fixture(scope="module")
def compiled() -> type:
    try:
        from exchange._book_core import OrderBook
    except ImportError as exc:
        pytest.fail(f"exchange._book_core is not built ({exc}): run pip install -e '.[dev]'")
    return OrderBook


# ---------------------------------------------------------------- comparison


def _outcome(fn, *args):
    """('ok', result) or ('raised', exception type): both books must agree on either."""
    try:
        return "ok", fn(*args)
    except (ValueError, OverflowError) as exc:
        return "raised", type(exc)


def _same(a, b) -> bool:
    """Equality of floats and nested tuples where nan equals nan."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def assert_equal_books(got, ref, *, levels: bool = True) -> None:
    """Every public query of the compiled book equals the reference's."""
    for query in ("best_bid", "best_ask", "mid", "best_bid_ticks", "best_ask_ticks", "is_crossed"):
        assert _same(getattr(got, query)(), getattr(ref, query)()), query
    assert got.tick_size == ref.tick_size and got.qty_decimals == ref.qty_decimals
    for side in ("bid", "ask"):
        assert got.level_count(side) == ref.level_count(side), side
    bands_got, bands_ref = _outcome(got.depth_bands), _outcome(ref.depth_bands)
    assert _same(bands_got, bands_ref), (bands_got, bands_ref)
    if levels:
        for side in ("bid", "ask"):
            assert got.levels(side) == ref.levels(side), side
            assert got.levels(side, 3) == ref.levels(side, 3), side
    assert repr(got) == repr(ref)


# ---------------------------------------------------------------- shared tapes

FULL_LEVELS_EVERY = 25  # full level lists are compared every 25th diff (and at every snapshot)
RESYNC_EVERY = 1500  # diffs between resyncs


def _depth_events(path: Path, market: Market) -> list[DepthDiff | DepthSnapshot]:
    decoder = FrameDecoder(market)
    events: list[DepthDiff | DepthSnapshot] = []
    for frame in read_tape(path):
        if frame.snapshot_symbol is not None:
            events.append(
                decoder.decode_snapshot(frame.payload, frame.snapshot_symbol, frame.ts_recv_ns)
            )
        elif b"@depth" in frame.payload[:48]:
            event = decoder.decode(frame.payload, frame.ts_recv_ns)
            assert type(event) is DepthDiff
            events.append(event)
    return events


def _resync_snapshot(model: dict[str, dict[float, float]], depth: int):
    """A REST-like snapshot (the best `depth` levels) from the test's own plain-dict book."""
    bids = sorted(model["bid"].items(), reverse=True)[:depth]
    asks = sorted(model["ask"].items())[:depth]
    return bids, asks


@pytest.mark.parametrize(
    ("name", "market"),
    [("spot_btcusdt", Market.SPOT), ("spot_ethusdt", Market.SPOT), ("usdm_btcusdt", Market.USDM)],
)
def test_tape_books_equal_after_every_event(tapes, compiled, name, market) -> None:
    events = _depth_events(tapes[name], market)
    got, ref = compiled("X"), PythonOrderBook("X")
    model: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    pending: list[DepthDiff] = []
    last_u: int | None = None
    applied = resyncs = 0

    def load(bids, asks) -> None:
        for book in (got, ref):
            book.clear()
            book.load_snapshot(bids, asks)
        model["bid"] = {p: q for p, q in bids if q}
        model["ask"] = {p: q for p, q in asks if q}
        assert_equal_books(got, ref)

    for event in events:
        if isinstance(event, DepthSnapshot):
            load(event.bids, event.asks)
            last_u = event.last_update_id
            todo, pending = pending, []
        elif last_u is None:
            pending.append(event)
            continue
        else:
            todo = [event]
        for diff in todo:
            u = diff.final_update_id
            if u < last_u or (u == last_u and market is Market.SPOT):
                continue
            crossed = got.apply(diff.bids, diff.asks)
            assert crossed is ref.apply(diff.bids, diff.asks)
            for side, levels in (("bid", diff.bids), ("ask", diff.asks)):
                for p, q in levels:
                    if q:
                        model[side][p] = q
                    else:
                        model[side].pop(p, None)
            last_u = u
            applied += 1
            full = applied % FULL_LEVELS_EVERY == 0
            assert_equal_books(got, ref, levels=full)
            if full:  # and both equal the test's own plain-dict book
                assert ref.levels("bid") == sorted(model["bid"].items(), reverse=True)
                assert ref.levels("ask") == sorted(model["ask"].items())
            if applied % RESYNC_EVERY == 0:
                # a resync replaces the book with a shallower snapshot: levels beyond its
                # depth must vanish from both books (replace, never merge)
                resyncs += 1
                load(*_resync_snapshot(model, depth=300 * resyncs))
    assert applied > 3000 and resyncs >= 2
    assert_equal_books(got, ref)
    assert got.level_count("bid") == len(model["bid"]) and not got.is_crossed()
    # a pickled or copied book is the same book (grid, levels, bands) and stays independent
    for twin in (pickle.loads(pickle.dumps(got)), copy.deepcopy(got)):
        assert_equal_books(twin, ref)
        twin.clear()
    assert_equal_books(got, ref)


def test_compiled_book_memory_is_below_the_reference(tapes, compiled) -> None:
    """Sparse per symbol: the real spot BTCUSDT book takes less memory than the reference's."""
    events = _depth_events(tapes["spot_btcusdt"], Market.SPOT)
    snap = next(e for e in events if isinstance(e, DepthSnapshot))
    diffs = [
        e for e in events if isinstance(e, DepthDiff) and e.final_update_id > snap.last_update_id
    ]

    def build(cls) -> tuple[object, int]:
        tracemalloc.start()
        try:
            book = cls("BTCUSDT")
            book.load_snapshot(snap.bids, snap.asks)
            for d in diffs:
                book.apply(d.bids, d.asks)
            return book, tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()

    got, got_bytes = build(compiled)
    ref, ref_bytes = build(PythonOrderBook)
    assert_equal_books(got, ref)
    assert 0 < got_bytes < ref_bytes
    # an empty book owns no level storage
    tracemalloc.start()
    empty = compiled("X")
    empty_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert empty_bytes < 1024
    del empty


def _pipeline_rows(path: Path, market: Market, book_class: type) -> dict[str, np.ndarray]:
    symbols = tape_symbols(path)
    pipeline = MarketDataPipeline(market, symbols, FoldConfig(), book_class=book_class)
    for frame in read_tape(path):
        if frame.snapshot_symbol is not None:
            pipeline.on_snapshot(frame.snapshot_symbol, frame.payload, frame.ts_recv_ns)
        else:
            pipeline.on_frame(frame.payload, frame.ts_recv_ns)
    pipeline.flush()
    (state,) = pipeline.symbols.values()
    assert type(state.book) is book_class
    return {c: state.rows.window(c) for c in state.rows.columns}


@pytest.mark.parametrize(("name", "market"), [("spot_ethusdt", Market.SPOT)])
def test_pipeline_rows_equal_with_either_book(tapes, compiled, name, market) -> None:
    got = _pipeline_rows(tapes[name], market, compiled)
    ref = _pipeline_rows(tapes[name], market, PythonOrderBook)
    assert got.keys() == ref.keys() and len(got["ts"]) > 300
    for column, values in ref.items():
        np.testing.assert_array_equal(got[column], values, err_msg=column)
    assert got["book_valid"].all()


# ---------------------------------------------------------------- random sequences

_TICKS = [D("1"), D("0.5"), D("0.25"), D("0.01"), D("0.001"), D("0.00000001")]
_MAX_UNITS = 2**53 - 1  # wire prices: price * 1e8 below 2**53


@st.composite
def _scenario(draw):
    tick = draw(st.sampled_from(_TICKS))
    max_ticks = _MAX_UNITS // int(tick * 10**8)
    # centre anywhere from a few ticks to the top of the wire range
    centre = draw(st.one_of(st.integers(1, 200_000), st.integers(1, max_ticks)))
    span = max(3, centre // draw(st.sampled_from([2, 10, 50, 500, 10**6])))
    ticks = st.integers(max(0, centre - span), centre + span)
    qty_decimals = draw(st.sampled_from([0, 3, 8, 12]))
    qty = st.one_of(
        st.just(D(0)),
        st.integers(1, 10**6).map(lambda n: D(n) / 10**qty_decimals),
        st.integers(1, 10**15).map(lambda n: D(n) / 10**qty_decimals),
    )
    extreme_qty = st.sampled_from([D("1e15"), D("123456789012345678"), D("1e40"), D("1e200")])

    def price(t: int) -> Decimal:
        return D(t) * tick

    def level():
        return st.one_of(
            st.tuples(ticks.map(price), qty),
            st.tuples(ticks.map(price), extreme_qty),
            # off the assumed grid: a 10x finer price (refines the grid when it still fits)
            st.tuples(ticks.map(lambda t: price(t) + tick / 10), qty),
        )

    def side():
        return st.lists(level(), max_size=12)

    op = st.one_of(
        st.tuples(st.just("apply"), side(), side()),
        st.tuples(st.just("apply"), side(), side()),
        st.tuples(st.just("snap"), side(), side()),
        st.tuples(st.just("clear"), st.just([]), st.just([])),
        # odd levels (NaN, infinite, negative, too many decimals, beyond the wire range): both
        # books must agree, mostly on raising ValueError
        st.tuples(
            st.just("bad"),
            st.sampled_from(
                [
                    [("nan", "1")],
                    [("1", "nan")],
                    [("inf", "1")],
                    [("1", "inf")],
                    [("-5", "1")],
                    [("1", "-2")],
                    [("0.123456789", "1")],
                    [("1", "0.0000000000001")],
                    [("99999999", "1")],  # beyond 2**53 units of 1e-8
                    [("1", "1e300")],
                ]
            ),
            st.just([]),
        ),
    )
    steps = draw(st.lists(op, min_size=1, max_size=25))
    give_tick = draw(st.booleans())
    return tick, give_tick, steps


def _wire(levels) -> list[tuple[float, float]]:
    """Decimal or string levels -> the floats the decoder hands to the book."""
    return [(float(p), float(q)) for p, q in levels]


@settings(max_examples=300, deadline=None)
@given(_scenario())
def test_random_sequences_equal_the_reference(compiled, scenario) -> None:
    tick, give_tick, steps = scenario
    given_tick = tick if give_tick else None
    got, ref = compiled("X", given_tick), PythonOrderBook("X", given_tick)
    for kind, bids, asks in steps:
        wb, wa = _wire(bids), _wire(asks)
        if kind == "clear":
            got.clear()
            ref.clear()
            continue
        load_or_apply = "load_snapshot" if kind == "snap" else "apply"
        r_got = _outcome(getattr(got, load_or_apply), wb, wa)
        r_ref = _outcome(getattr(ref, load_or_apply), wb, wa)
        assert _same(r_got, r_ref), (kind, r_got, r_ref)
        if r_ref[0] == "raised":
            # a refused level leaves a partly updated book: the sync clears it and resyncs
            got.clear()
            ref.clear()
        assert_equal_books(got, ref)
    assert_equal_books(pickle.loads(pickle.dumps(got)), ref)


@pytest.mark.parametrize("qty_decimals", [None, 0, 8, 12])
def test_extreme_quantities_sum_exactly(compiled, qty_decimals) -> None:
    """Sums beyond 2**64 units, and levels beyond 2**100 units (kept out of the 128-bit sums)."""
    bids = [(100.0 - i, float(10**15 - i)) for i in range(50)] + [(40.0, 1e200), (39.0, 3e199)]
    asks = [(101.0 + i, 7e14 + i) for i in range(50)] + [(150.0, 2.5e120)]
    got, ref = compiled("X", "1", qty_decimals), PythonOrderBook("X", "1", qty_decimals)
    for book in (got, ref):
        book.load_snapshot(bids, asks)
    assert_equal_books(got, ref)
    for book in (got, ref):
        book.apply([(40.0, 0.0), (99.0, 2e200)], [(101.0, 0.0)])
    assert_equal_books(got, ref)
    # by hand: mid = (100 + 102) / 2 = 101; the 1000 bp band holds bids >= 90.9, asks <= 111.1
    qs = float(10 ** (qty_decimals or 0))

    def units(qty: float) -> int:
        return math.floor(qty * qs + 0.5)

    bid_levels = {100.0 - i: float(10**15 - i) for i in range(50)} | {99.0: 2e200}
    want_bid = sum(units(q) for p, q in bid_levels.items() if p >= 90.9)
    want_ask = sum(units(7e14 + i) for i in range(1, 50) if 101.0 + i <= 111.1)
    bid_bands, ask_bands = got.depth_bands()
    assert bid_bands[3] == want_bid / qs and ask_bands[3] == want_ask / qs
