"""Fixed-size columnar ring buffers whose recent windows are contiguous zero-copy numpy views.

Each column is one numpy array of twice the capacity and every value is written twice, at
`i` and `i + capacity` (the "double-write" trick). Whatever the write position, the last `n`
values of a column then sit next to each other in memory, so feature code reads
`ring.window("close", 300)` without copying or re-ordering, and memory never grows however
long the process runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

ColumnSchema = Mapping[str, Any]  # ordered column name -> numpy dtype (anything np.dtype() takes)


class ColumnRing:
    """Keep the last `capacity` rows of a fixed set of typed columns."""

    __slots__ = ("_arrays", "_capacity", "_head", "_index", "_names", "_size", "_total")

    def __init__(self, columns: ColumnSchema, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        if not columns:
            raise ValueError("a ring needs at least one column")
        self._capacity = int(capacity)
        self._names: tuple[str, ...] = tuple(columns)
        self._index: dict[str, int] = {name: i for i, name in enumerate(self._names)}
        self._arrays: list[np.ndarray] = [
            np.zeros(2 * self._capacity, dtype=np.dtype(dtype)) for dtype in columns.values()
        ]
        self._head = 0  # next write position, in [0, capacity)
        self._size = 0  # retained rows, <= capacity
        self._total = 0  # rows appended since creation (clear() does not reset it)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def columns(self) -> tuple[str, ...]:
        return self._names

    @property
    def dtypes(self) -> dict[str, np.dtype]:
        return {name: arr.dtype for name, arr in zip(self._names, self._arrays, strict=True)}

    @property
    def total_appended(self) -> int:
        return self._total

    @property
    def nbytes(self) -> int:
        return sum(arr.nbytes for arr in self._arrays)

    def __len__(self) -> int:
        return self._size

    def append_row(self, values: Sequence[Any]) -> None:
        """Append one row given as a sequence in column order (the fast path)."""
        if len(values) != len(self._arrays):
            raise ValueError(f"expected {len(self._arrays)} values, got {len(values)}")
        i = self._head
        j = i + self._capacity
        for arr, value in zip(self._arrays, values):
            arr[i] = value
            arr[j] = value
        self._advance()

    def append(self, **values: Any) -> None:
        """Append one row given by column name; every column must be present."""
        if values.keys() != self._index.keys():
            missing = sorted(set(self._names) - values.keys())
            unknown = sorted(values.keys() - set(self._names))
            raise ValueError(f"append: missing columns {missing}, unknown columns {unknown}")
        self.append_row([values[name] for name in self._names])

    def _advance(self) -> None:
        head = self._head + 1
        self._head = 0 if head == self._capacity else head
        if self._size < self._capacity:
            self._size += 1
        self._total += 1

    def window(self, column: str, n: int | None = None) -> np.ndarray:
        """Return the last `n` values of `column` (all retained if None) as a read-only view.

        `n` larger than the number of retained rows is clipped to it, like `DataFrame.tail`.
        """
        arr = self._arrays[self._index[column]]
        if n is None or n > self._size:
            n = self._size
        elif n < 0:
            raise ValueError(f"window length must be >= 0, got {n}")
        end = self._head + self._capacity
        view = arr[end - n : end]
        view.flags.writeable = False
        return view

    def last(self, column: str) -> Any:
        """Return the most recent value of `column`; IndexError when the ring is empty."""
        if self._size == 0:
            raise IndexError("last() on an empty ring")
        return self._arrays[self._index[column]][self._head + self._capacity - 1].item()

    def last_row(self) -> dict[str, Any]:
        """Return the most recent row as a dict of Python scalars."""
        if self._size == 0:
            raise IndexError("last_row() on an empty ring")
        k = self._head + self._capacity - 1
        return {name: arr[k].item() for name, arr in zip(self._names, self._arrays, strict=True)}

    def to_frame(self) -> pd.DataFrame:
        """Copy the retained rows, oldest first, into a DataFrame with the ring's dtypes."""
        return pd.DataFrame(
            {name: self.window(name).copy() for name in self._names}, columns=list(self._names)
        )

    def clear(self) -> None:
        """Drop every retained row (memory is kept; total_appended keeps counting)."""
        self._head = 0
        self._size = 0
