"""OrderBook against a tiny Decimal reference: random updates, hand-made edges, real tapes."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.tape import read_tape
from exchange.book import BANDS_BPS, OrderBook

D = Decimal


class RefBook:
    """Reference: dict of Decimal price -> Decimal qty per side; bands by brute force."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def load(self, bids, asks) -> None:
        self.bids = {D(p): D(q) for p, q in bids if D(q) != 0}
        self.asks = {D(p): D(q) for p, q in asks if D(q) != 0}

    def apply(self, bids, asks) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, q in levels:
                if D(q) == 0:
                    side.pop(D(p), None)
                else:
                    side[D(p)] = D(q)

    def best_bid(self) -> float:
        return float(max(self.bids)) if self.bids else math.nan

    def best_ask(self) -> float:
        return float(min(self.asks)) if self.asks else math.nan

    def bands(self):
        if not self.bids or not self.asks:
            return None
        mid = (max(self.bids) + min(self.asks)) / 2
        bid_floor = [mid * (1 - D(b) / 10000) for b in BANDS_BPS]
        ask_cap = [mid * (1 + D(b) / 10000) for b in BANDS_BPS]
        bid = tuple(float(sum(q for p, q in self.bids.items() if p >= f)) for f in bid_floor)
        ask = tuple(float(sum(q for p, q in self.asks.items() if p <= c)) for c in ask_cap)
        return bid, ask

    def levels(self, side: str):
        if side == "bid":
            return [(float(p), float(q)) for p, q in sorted(self.bids.items(), reverse=True)]
        return [(float(p), float(q)) for p, q in sorted(self.asks.items())]


def as_floats(levels):
    """Wire strings -> floats, as the decoder hands them to the book."""
    return [(float(p), float(q)) for p, q in levels]


def assert_same(book: OrderBook, ref: RefBook, *, bands: bool = True, levels: bool = True) -> None:
    bb, ba = ref.best_bid(), ref.best_ask()
    assert book.best_bid() == bb or (math.isnan(bb) and math.isnan(book.best_bid()))
    assert book.best_ask() == ba or (math.isnan(ba) and math.isnan(book.best_ask()))
    crossed = bool(ref.bids and ref.asks and max(ref.bids) >= min(ref.asks))
    assert book.is_crossed() is crossed
    if levels:
        assert book.levels("bid") == ref.levels("bid")
        assert book.levels("ask") == ref.levels("ask")
        assert book.level_count("bid") == len(ref.bids)
        assert book.level_count("ask") == len(ref.asks)
    if bands:
        expected = ref.bands()
        got = book.depth_bands()
        if expected is None:
            assert all(math.isnan(x) for x in got[0] + got[1])
        else:
            assert got == expected


# ---------------------------------------------------------------- hand-made cases


def test_empty_and_one_sided_book_is_nan_everywhere() -> None:
    book = OrderBook("BTCUSDT")
    assert math.isnan(book.best_bid()) and math.isnan(book.best_ask()) and math.isnan(book.mid())
    assert book.best_bid_ticks() is None and book.best_ask_ticks() is None
    assert not book.is_crossed()
    assert all(math.isnan(x) for x in book.depth_bands()[0] + book.depth_bands()[1])
    book.load_snapshot([(100.0, 1.0)], [])
    assert book.best_bid() == 100.0 and math.isnan(book.best_ask())
    assert all(math.isnan(x) for x in book.depth_bands()[0] + book.depth_bands()[1])


def test_band_bounds_are_inclusive_and_exact() -> None:
    # mid = (99.70 + 100.30) / 2 = 100.00 exactly: 30 bps bounds are 99.70 and 100.30,
    # 100 bps 99.00 and 101.00, 300 bps 97.00 / 103.00, 1000 bps 90.00 / 110.00.
    book = OrderBook("X", tick_size=D("0.01"))
    bids = [(99.70, 1.0), (99.00, 2.0), (98.99, 4.0), (97.00, 8.0), (96.99, 16.0), (90.0, 32.0),
            (89.99, 64.0)]  # fmt: skip
    asks = [(100.30, 1.0), (101.00, 2.0), (101.01, 4.0), (103.00, 8.0), (103.01, 16.0),
            (110.0, 32.0), (110.01, 64.0)]  # fmt: skip
    book.load_snapshot(bids, asks)
    assert book.mid() == 100.0
    assert book.depth_bands() == ((1.0, 3.0, 15.0, 63.0), (1.0, 3.0, 15.0, 63.0))
    # a bid one tick above/below the 30 bps bound moves the first band by exactly its size
    book.apply([(99.69, 0.5)], [(100.31, 0.25)])
    assert book.depth_bands()[0][0] == 1.0 and book.depth_bands()[1][0] == 1.0
    # best levels deleted: mid stays 100.00, and 99.69 / 100.31 lie just outside 30 bps
    book.apply([(99.70, 0.0)], [(100.30, 0.0)])
    assert book.best_bid() == 99.69 and book.best_ask() == 100.31 and book.mid() == 100.0
    assert book.depth_bands() == ((0.0, 2.5, 14.5, 62.5), (0.0, 2.25, 14.25, 62.25))


def test_snapshot_replaces_the_whole_book() -> None:
    book = OrderBook("X")
    book.load_snapshot([(100.0, 1.0), (99.0, 2.0)], [(101.0, 1.0), (150.0, 3.0)])
    book.load_snapshot([(100.5, 1.0)], [(101.5, 1.0)])
    assert book.levels("bid") == [(100.5, 1.0)]
    assert book.levels("ask") == [(101.5, 1.0)]
    # mid 101.0: each best is 49.5 bps away, outside the 30 bps band
    assert book.depth_bands() == ((0.0, 1.0, 1.0, 1.0), (0.0, 1.0, 1.0, 1.0))


def test_zero_quantity_deletes_and_unknown_deletes_are_harmless() -> None:
    book = OrderBook("X")
    # futures send "0.000", spot "0.00000000": both decode to 0.0
    book.load_snapshot([(100.0, 1.5), (99.0, float("0.000"))], [(101.0, 2.0)])
    assert book.level_count("bid") == 1
    book.apply([(100.0, float("0.00000000")), (42.0, 0.0)], [(555.0, 0.0)])
    assert book.level_count("bid") == 0 and book.level_count("ask") == 1
    assert math.isnan(book.best_bid())


def test_next_best_found_after_deleting_best_levels() -> None:
    book = OrderBook("X", tick_size=D("0.01"))
    bids = [(100.0 - i * 0.37, 1.0) for i in range(200)]
    asks = [(100.01 + i * 0.41, 1.0) for i in range(200)]
    bids = [(round(p, 2), q) for p, q in bids]
    asks = [(round(p, 2), q) for p, q in asks]
    book.load_snapshot(bids, asks)
    ref = RefBook()
    ref.load(bids, asks)
    for i in range(150):
        book.apply([(bids[i][0], 0.0)], [(asks[i][0], 0.0)])
        ref.apply([(bids[i][0], 0.0)], [(asks[i][0], 0.0)])
        assert book.best_bid() == ref.best_bid() and book.best_ask() == ref.best_ask()
    assert_same(book, ref)


def test_crossed_detection() -> None:
    book = OrderBook("X")
    book.load_snapshot([(100.0, 1.0)], [(101.0, 1.0)])
    assert not book.is_crossed()
    assert book.apply([(101.0, 1.0)], []) is True  # bid == ask: apply says so too
    assert book.is_crossed()
    assert book.apply([(101.0, 0.0)], []) is False
    assert not book.is_crossed()
    assert book.apply([], [(100.5, 1.0), (99.0, 2.0)]) is True  # an ask below the best bid
    assert book.apply([(100.0, 0.0)], [(99.0, 0.0)]) is False
    assert book.apply([(100.0, 0.0)], [(101.0, 0.0), (100.5, 0.0)]) is False  # one side empty
    assert not book.is_crossed() and math.isnan(book.best_ask())


def test_regrid_when_a_price_is_off_the_inferred_tick() -> None:
    ref = RefBook()
    book = OrderBook("X")
    bids = [("100.0", "1"), ("99.9", "2"), ("95.0", "3")]
    asks = [("100.1", "1"), ("100.5", "2.5"), ("130.0", "7")]
    book.load_snapshot(as_floats(bids), as_floats(asks))
    ref.load(bids, asks)
    assert book.tick_size == D("0.1") and book.qty_decimals == 1
    assert_same(book, ref)
    # finer price and finer quantity arrive mid-way through a diff
    upd_b = [("99.95", "0.25"), ("100.0", "0"), ("100.03", "0.00000001")]
    upd_a = [("100.07", "3.125"), ("100.1", "0")]
    book.apply(as_floats(upd_b), as_floats(upd_a))
    ref.apply(upd_b, upd_a)
    assert book.tick_size == D("0.01") and book.qty_decimals == 8
    assert_same(book, ref)
    assert book.best_bid_ticks() == 10003 and book.best_ask_ticks() == 10007


def test_given_tick_is_refined_when_the_exchange_sends_a_finer_price() -> None:
    book = OrderBook("X", tick_size=D("0.5"))
    book.load_snapshot([(100.0, 1.0)], [(101.5, 1.0)])
    assert book.best_bid_ticks() == 200
    book.apply([(100.25, 2.0)], [])
    assert book.tick_size == D("0.25") and book.best_bid() == 100.25
    assert book.best_bid_ticks() == 401 and book.level_count("bid") == 2


def test_prices_beyond_eight_decimals_are_rejected() -> None:
    book = OrderBook("X")
    book.load_snapshot([(1.0, 1.0)], [(2.0, 1.0)])
    with pytest.raises(ValueError):
        book.apply([(1.123456789, 1.0)], [])
    with pytest.raises(ValueError):
        book.apply([(float("nan"), 1.0)], [])


def test_huge_meme_coin_quantities_stay_exact() -> None:
    # 1000 levels of ~1e12 units: at a fixed 8-decimal scale the sums would overflow int64.
    bids = [(f"0.{1000000 - i:07d}", f"{10**12 + i * 7919}.{i % 100:02d}") for i in range(1000)]
    asks = [(f"0.{1000001 + i:07d}", f"{9 * 10**11 + i * 104729}.5") for i in range(1000)]
    ref = RefBook()
    ref.load(bids, asks)
    book = OrderBook("1000SATSUSDT")
    book.load_snapshot(as_floats(bids), as_floats(asks))
    assert_same(book, ref)
    upd = [(bids[3][0], "12345678901234.5"), (bids[0][0], "0")]
    book.apply(as_floats(upd), [])
    ref.apply(upd, [])
    assert_same(book, ref)
    assert sum(book.depth_bands()[0]) > 2**63 / 10**8


def test_large_move_recentres_the_window() -> None:
    """Walk the whole book 40 % up in steps, then 60 % down; bands stay exact."""
    ref = RefBook()
    book = OrderBook("X")
    mid = 1000_00  # in cents
    bids = [(f"{(mid - i) / 100:.2f}", "1.5") for i in range(1, 300)]
    asks = [(f"{(mid + i) / 100:.2f}", "2.5") for i in range(1, 300)]
    book.load_snapshot(as_floats(bids), as_floats(asks))
    ref.load(bids, asks)
    for step in [1] * 40 + [-1] * 60:
        old = mid
        mid = mid + step * 1000  # 1 % of the start price per step
        new_b = [(f"{(mid - i) / 100:.2f}", f"{i % 7 + 1}") for i in range(1, 300, 3)]
        new_a = [(f"{(mid + i) / 100:.2f}", f"{i % 5 + 1}") for i in range(1, 300, 3)]
        gone_b = [(f"{p}", "0") for p in list(ref.bids) if p >= D(mid) / 100]
        gone_a = [(f"{p}", "0") for p in list(ref.asks) if p <= D(mid) / 100]
        book.apply(as_floats(gone_b + new_b), as_floats(gone_a + new_a))
        ref.apply(gone_b + new_b, gone_a + new_a)
        assert_same(book, ref, levels=False)
        del old
    assert_same(book, ref)


# ---------------------------------------------------------------- property test

_TICK_CHOICES = [D("1"), D("0.5"), D("0.01"), D("0.001"), D("0.00000001")]


@st.composite
def _scenario(draw):
    tick = draw(st.sampled_from(_TICK_CHOICES))
    centre = draw(st.integers(50, 200_000))
    span = max(10, centre // draw(st.sampled_from([2, 10, 50, 500])))
    ticks = st.integers(max(1, centre - span), centre + span)
    # one quantity step per book, as on the exchange; units stay below 2**53 (float wire)
    qty_decimals = draw(st.sampled_from([0, 3, 8]))
    qty = st.one_of(
        st.just(D(0)),
        st.integers(1, 10**6).map(lambda n: D(n) / 10**qty_decimals),
        st.integers(1, 10**15).map(lambda n: D(n) / 10**qty_decimals),
    )

    def side():
        return st.lists(st.tuples(ticks.map(lambda t: D(t) * tick), qty), max_size=25)

    steps = draw(
        st.lists(st.tuples(st.sampled_from(["snap", "apply", "apply", "apply"]), side(), side()),
                 min_size=1, max_size=30)
    )  # fmt: skip
    finer = draw(st.booleans())  # sometimes a price on a 10x finer grid shows up later
    return tick, steps, finer


def _wire(levels):
    return [(f"{p:f}", f"{q:f}") for p, q in levels]


@settings(max_examples=150, deadline=None)
@given(_scenario(), st.booleans())
def test_random_update_sequences_match_reference(scenario, give_tick) -> None:
    tick, steps, finer = scenario
    book = OrderBook("X", tick_size=tick if give_tick else None)
    ref = RefBook()
    for i, (kind, bids, asks) in enumerate(steps):
        if finer and i == len(steps) // 2 and bids and tick >= D("1e-7"):
            bids = [*bids, (bids[0][0] + tick / 10, D("1"))]
        wb, wa = _wire(bids), _wire(asks)
        if kind == "snap":
            book.load_snapshot(as_floats(wb), as_floats(wa))
            ref.load(wb, wa)
        else:
            book.apply(as_floats(wb), as_floats(wa))
            ref.apply(wb, wa)
        assert_same(book, ref, levels=(i == len(steps) - 1))


# ---------------------------------------------------------------- real tapes


def _replay_tape(path: Path, check_every: int) -> tuple[OrderBook, RefBook, int]:
    """Book and reference through a tape's depth stream (snapshot + diffs with u past it)."""
    book, ref = OrderBook("X"), RefBook()
    pending: list[dict] = []
    last_id: int | None = None
    futures = False
    checked = 0
    for frame in read_tape(path):
        if frame.is_snapshot:
            snap = orjson.loads(frame.payload)
            book.load_snapshot(as_floats(snap["bids"]), as_floats(snap["asks"]))
            ref.load(snap["bids"], snap["asks"])
            last_id = snap["lastUpdateId"]
            futures = "E" in snap
            todo, pending = pending, []
        elif b"@depth" in frame.payload[:48]:
            todo = [orjson.loads(frame.payload)["data"]]
            if last_id is None:
                pending.extend(todo)
                continue
        else:
            continue
        for diff in todo:
            if diff["u"] < last_id or (diff["u"] == last_id and not futures):
                continue
            book.apply(as_floats(diff["b"]), as_floats(diff["a"]))
            ref.apply(diff["b"], diff["a"])
            last_id = diff["u"]
            checked += 1
            assert book.best_bid() == ref.best_bid() and book.best_ask() == ref.best_ask()
            if checked % check_every == 0:
                assert_same(book, ref, levels=False)
    return book, ref, checked


@pytest.mark.parametrize("name", ["spot_btcusdt", "spot_ethusdt", "usdm_btcusdt"])
def test_real_tape_book_matches_reference(tapes, name) -> None:
    book, ref, checked = _replay_tape(tapes[name], check_every=97)
    assert checked > 3000
    assert_same(book, ref)
    assert not book.is_crossed()
