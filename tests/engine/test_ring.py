"""ColumnRing: wrap-around, contiguous zero-copy windows, fixed memory, dtypes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ring import ColumnRing

SCHEMA = {"ts": np.int64, "price": np.float64, "ok": np.bool_}


def _fill(ring: ColumnRing, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        ring.append_row((i, i * 0.5, i % 2 == 0))


def test_empty_ring() -> None:
    ring = ColumnRing(SCHEMA, 4)
    assert len(ring) == 0
    assert ring.total_appended == 0
    assert ring.window("price", 3).size == 0
    frame = ring.to_frame()
    assert list(frame.columns) == ["ts", "price", "ok"]
    assert len(frame) == 0
    with pytest.raises(IndexError):
        ring.last("ts")


def test_before_wrap_keeps_everything_in_order() -> None:
    ring = ColumnRing(SCHEMA, 5)
    _fill(ring, 3)
    assert len(ring) == 3
    assert ring.window("ts").tolist() == [0, 1, 2]
    assert ring.window("price", 2).tolist() == [0.5, 1.0]
    assert ring.last("ts") == 2


def test_wrap_around_keeps_last_capacity_rows() -> None:
    ring = ColumnRing(SCHEMA, 4)
    _fill(ring, 11)
    assert len(ring) == 4
    assert ring.total_appended == 11
    assert ring.window("ts").tolist() == [7, 8, 9, 10]
    assert ring.window("price").tolist() == [3.5, 4.0, 4.5, 5.0]
    assert ring.window("ok").tolist() == [False, True, False, True]
    assert ring.window("ts", 2).tolist() == [9, 10]
    assert ring.last("price") == 5.0
    assert ring.last_row() == {"ts": 10, "price": 5.0, "ok": True}


def test_window_longer_than_retained_is_clipped_and_negative_rejected() -> None:
    ring = ColumnRing(SCHEMA, 8)
    _fill(ring, 3)
    assert ring.window("ts", 100).tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        ring.window("ts", -1)


def test_window_is_a_read_only_zero_copy_view() -> None:
    ring = ColumnRing(SCHEMA, 4)
    _fill(ring, 6)
    view = ring.window("price", 4)
    assert view.flags.c_contiguous
    assert not view.flags.owndata  # a view into the ring's storage, not a copy
    with pytest.raises(ValueError):
        view[0] = 99.0
    # The view aliases the storage: a later append shows through the double-written half.
    before = ring.window("ts", 1)
    ring.append_row((100, 1.0, True))
    assert ring.window("ts", 1).tolist() == [100]
    assert before.tolist() == [5]  # the old slot still holds the old newest value


def test_append_by_name_and_validation() -> None:
    ring = ColumnRing(SCHEMA, 3)
    ring.append(ts=5, price=1.25, ok=True)
    ring.append(price=2.5, ok=False, ts=6)
    assert ring.window("ts").tolist() == [5, 6]
    assert ring.window("price").tolist() == [1.25, 2.5]
    with pytest.raises(ValueError):
        ring.append(ts=1, price=1.0)  # missing a column
    with pytest.raises(ValueError):
        ring.append(ts=1, price=1.0, ok=True, extra=3)
    with pytest.raises(ValueError):
        ring.append_row((1, 2.0))
    with pytest.raises(ValueError):
        ColumnRing(SCHEMA, 0)


def test_to_frame_rows_in_order_with_dtypes() -> None:
    ring = ColumnRing(SCHEMA, 3)
    _fill(ring, 5)
    frame = ring.to_frame()
    expected = pd.DataFrame(
        {
            "ts": np.array([2, 3, 4], dtype=np.int64),
            "price": np.array([1.0, 1.5, 2.0]),
            "ok": np.array([True, False, True]),
        }
    )
    pd.testing.assert_frame_equal(frame, expected)
    # to_frame copies: appending later does not change the frame already taken.
    ring.append_row((9, 9.0, False))
    assert frame["ts"].tolist() == [2, 3, 4]


def test_clear_drops_rows_but_keeps_counting() -> None:
    ring = ColumnRing(SCHEMA, 3)
    _fill(ring, 5)
    ring.clear()
    assert len(ring) == 0
    assert ring.total_appended == 5
    ring.append_row((7, 3.5, False))
    assert ring.window("ts").tolist() == [7]
    assert ring.total_appended == 6


def test_no_growth_after_many_appends() -> None:
    ring = ColumnRing(SCHEMA, 16)
    nbytes = ring.nbytes
    assert nbytes == 2 * 16 * (8 + 8 + 1)
    _fill(ring, 10_000)
    assert ring.nbytes == nbytes
    assert len(ring) == 16
    assert ring.window("ts").tolist() == list(range(10_000 - 16, 10_000))


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 12),
    values=st.lists(st.integers(-(2**40), 2**40), max_size=60),
    n=st.integers(0, 15),
)
def test_window_equals_last_n_appended(capacity: int, values: list[int], n: int) -> None:
    ring = ColumnRing({"v": np.int64, "f": np.float64}, capacity)
    for count, v in enumerate(values, start=1):
        ring.append_row((v, v / 3))
        # Checked after every append so every write position (and the wrap) is covered.
        appended = values[:count]
        k = min(n, capacity, count)
        expected = appended[len(appended) - k :]
        got = ring.window("v", n)
        assert got.tolist() == expected
        assert got.flags.c_contiguous
        assert ring.window("f", n).tolist() == [x / 3 for x in expected]
        assert len(ring) == min(count, capacity)
        assert ring.total_appended == count
        assert ring.last("v") == v
