"""Builders shared by the fold tests: book samples, a fake book, and a feed driving a SymbolFolder."""


from __future__ import annotations

import math

import pandas as pd
import pytest

from engine.events import TradePrinted
from engine.fold import (
    BookSample,
    SymbolFolder,
    new_candle_ring,
    new_row_ring,
)

M = 1_700_000_040_000  # a minute boundary (epoch ms)
S = M + 7_000  # a second boundary in the middle of that minute
NAN = math.nan

BOOK_NAMES = (
    ["bid", "ask"]
    + [f"bid_depth_{bp}bp" for bp in (30, 100, 300, 1000)]
    + [f"ask_depth_{bp}bp" for bp in (30, 100, 300, 1000)]
)


def book(bid: float, valid: bool = True) -> BookSample:
    """A distinct, recognisable book state: every number derived from `bid`."""
    return BookSample(
        valid,
        bid,
        bid + 2.0,
        (bid + 0.1, bid + 0.2, bid + 0.3, bid + 0.4),
        (bid + 0.5, bid + 0.6, bid + 0.7, bid + 0.8),
    )


def book_values(sample: BookSample) -> dict[str, float]:
    numbers = [sample.bid, sample.ask, *sample.bid_depths, *sample.ask_depths]
    return dict(zip(BOOK_NAMES, numbers, strict=True))


class FakeBook:
    """Stands in for the order book: holds the state the last applied event left."""

    def __init__(self) -> None:
        self.state = BookSample(False, NAN, NAN, (NAN,) * 4, (NAN,) * 4)
        self.sample_calls = 0

    def sample(self) -> BookSample:
        self.sample_calls += 1
        return self.state


class Feed:
    """Drive a folder the way the pipeline does (depth: notify the folder, then apply)."""

    def __init__(self, grace_ms: int = 2500, capacity: int = 10_000) -> None:
        self.book = FakeBook()
        self.folder = SymbolFolder(
            "BTCUSDT", new_row_ring(capacity), new_candle_ring(capacity), grace_ms=grace_ms
        )

    def trade(
        self,
        trade_id: int,
        ts_trade_ms: int,
        price: float,
        qty: float,
        *,
        seller: bool = False,
        ts_event_ms: int | None = None,
        count: int = 1,
    ) -> int:
        return self.folder.on_trade(
            TradePrinted(
                symbol="BTCUSDT",
                ts_event_ms=ts_trade_ms if ts_event_ms is None else ts_event_ms,
                ts_trade_ms=ts_trade_ms,
                ts_recv_ns=0,
                trade_id=trade_id,
                price=price,
                qty=qty,
                buyer_is_maker=seller,
                trade_count=count,
            )
        )

    def depth(self, ts_event_ms: int | None, state: BookSample) -> int:
        closed = self.folder.on_depth_event(ts_event_ms, self.book)
        self.book.state = state
        return closed

    def rows(self) -> pd.DataFrame:
        return self.folder.rows.to_frame()

    def candles(self) -> pd.DataFrame:
        return self.folder.candles.to_frame()


def assert_row(row: pd.Series, **expected: float) -> None:
    for name, want in expected.items():
        have = row[name]
        if isinstance(want, float) and math.isnan(want):
            assert math.isnan(have), f"{name}: {have} != nan"
        elif isinstance(want, float):
            assert have == pytest.approx(want, rel=1e-12), f"{name}: {have} != {want}"
        else:
            assert have == want, f"{name}: {have} != {want}"


def assert_book(row: pd.Series, sample: BookSample | None) -> None:
    if sample is None or not sample.valid:
        assert not row["book_valid"]
        for name in BOOK_NAMES:
            assert math.isnan(row[name]), name
    else:
        assert row["book_valid"]
        assert_row(row, **book_values(sample))


# ------------------------------------------------------------------------- hand-built cases
