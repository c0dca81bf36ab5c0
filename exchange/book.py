"""Order book of one symbol in integer ticks, with exact depth bands around mid in ~15 µs.

`OrderBook` is the book the engine uses: the compiled core (exchange/_book_core.pyx, built by
`pip install -e .`) when it is importable, else `PythonOrderBook` below, the reference
implementation the core is tested against. `BOOK_IMPLEMENTATION` says which ("compiled" or
"python"); this module is the one place that decides.

Layout. Prices are integer ticks and quantities exact integers (qty * 10**qty_decimals), so
nothing drifts however long the book lives. Both sides are stored the same way under a signed
key: bids under +ticks, asks under -ticks, so "better" is always "larger key" and one code path
serves both sides. Each side keeps a window of coarse price buckets around mid (from 12 % beyond
mid to 2 % through it, ~1k buckets, width chosen from mid); each bucket holds a dict of its levels
and their exact integer sum, both maintained on every update. Levels outside the window live in
two plain dicts (`below`, `above`). A depth band is a `sum()` over the fully covered buckets plus
an exact scan of the one edge bucket, instead of a scan over every level (bench/bands.py).
The window is re-centred (rebuilt, ~1 ms) when a best price leaves it, i.e. after a ~2 % move.

Grid. The tick is given (exchangeInfo) or inferred from the first snapshot as the GCD of its prices
at 1e-8 resolution. Internally the tick in units of 1e-8 is kept a divisor of 10**8, so the float
ticks-per-unit is an exact integer and `ticks / tpu == price` is an exact on-grid test. A price
or quantity off the grid refines the grid (rare; everything is rebuilt) instead of being rounded
into a neighbouring level. Sums are Python ints: no overflow whatever the quantities (meme coins);
quantities beyond 2**53 units are taken as the float wire value gives them.

Domain. Prices are wire prices: at most 8 decimals and 0 <= price * 1e8 < 2**53 (~90M). Setting
a level outside raises ValueError (deleting one is a no-op); so do NaN or infinite prices and
quantities. Both implementations share this domain exactly (keys always fit 54 bits).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from math import floor
from typing import TYPE_CHECKING, Literal

from engine.events import Levels

BANDS_BPS: tuple[int, int, int, int] = (30, 100, 300, 1000)
"""Depth bands, in basis points of mid, reported by `OrderBook.depth_bands`."""

_E8 = 10**8  # wire prices have at most 8 decimals
_MAX_QTY_DECIMALS = 12
_EXACT_UNITS = 2**53  # integers a float holds exactly
_MAX_UNITS = 2**53 - 1  # wire prices: 0 <= price * 1e8 <= _MAX_UNITS (exchange/_book_core.pyx)
_NO_LEVEL = -(1 << 80)  # key of the best level of an empty side (below any real key)
_NAN4 = (math.nan, math.nan, math.nan, math.nan)

# Window geometry, in percent of mid: from 12 % beyond mid (worse side) to 2 % through it. The 10 %
# band needs mid to stay within ~2 % of the window's centre; leaving that re-centres the window.
_WINDOW_WORSE_PCT = 12
_WINDOW_BETTER_PCT = 2
_BUCKETS_PER_SIDE = 1024


class _Side:
    """One side of the book under signed keys (bids: +ticks, asks: -ticks)."""

    __slots__ = (
        "above",
        "below",
        "best",
        "buckets",
        "count",
        "hi",
        "lo",
        "max_key",
        "min_key",
        "sign",
        "sums",
        "width",
    )

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.set_domain(_E8)
        self.lo = 0
        self.width = 1
        self.count = 0  # number of buckets; 0 = no window yet
        self.hi = 0  # lo + count * width: the first key beyond the window
        self.buckets: list[dict[int, int] | None] = []
        self.sums: list[int] = []
        self.below: dict[int, int] = {}  # keys < lo (worse than the window)
        self.above: dict[int, int] = {}  # keys >= lo + count * width (better than the window)
        self.best = _NO_LEVEL

    def set_domain(self, te8: int) -> None:
        """Keys of wire prices on a tick of te8: bids [0, max_ticks], asks [-max_ticks, 0]."""
        max_ticks = _MAX_UNITS // te8
        self.min_key = 0 if self.sign > 0 else -max_ticks
        self.max_key = max_ticks if self.sign > 0 else 0

    def items(self) -> Iterator[tuple[int, int]]:
        """Yield every (key, qty_int) of this side, in no particular order."""
        for bucket in self.buckets:
            if bucket:
                yield from bucket.items()
        yield from self.below.items()
        yield from self.above.items()

    def level_count(self) -> int:
        return sum(len(b) for b in self.buckets if b) + len(self.below) + len(self.above)

    def reset(self) -> None:
        self.lo, self.width, self.count, self.hi = 0, 1, 0, 0
        self.buckets, self.sums = [], []
        self.below, self.above = {}, {}
        self.best = _NO_LEVEL

    def fill(self, items: Iterator[tuple[int, int]] | list[tuple[int, int]]) -> None:
        """Distribute levels into the current window (buckets already allocated and empty)."""
        lo, width, count = self.lo, self.width, self.count
        buckets, sums, below, above = self.buckets, self.sums, self.below, self.above
        best = _NO_LEVEL
        for key, qty in items:
            j = (key - lo) // width
            if 0 <= j < count:
                bucket = buckets[j]
                if bucket is None:
                    buckets[j] = {key: qty}
                else:
                    bucket[key] = qty
                sums[j] += qty
            elif j < 0:
                below[key] = qty
            else:
                above[key] = qty
            if key > best:  # noqa: PLR1730
                best = key
        self.best = best

    def find_best(self, start_key: int) -> int:
        """Return the best key at or below start_key's bucket (the old best was just deleted)."""
        if self.above:
            return max(self.above)
        j = min((start_key - self.lo) // self.width, self.count - 1)
        buckets = self.buckets
        while j >= 0:
            bucket = buckets[j]
            if bucket:
                return max(bucket)
            j -= 1
        return max(self.below) if self.below else _NO_LEVEL

    def band_sums(self, thresholds: tuple[int, ...]) -> list[int]:
        """Return, per key threshold (decreasing), the exact quantity resting at keys >= it."""
        lo, width, count, sums, buckets = self.lo, self.width, self.count, self.sums, self.buckets
        best = self.best
        top = min(count - 1, (best - lo) // width) if best >= lo else -1
        cur = top  # buckets (cur, top] are summed into `running`
        running = 0
        out = []
        for thr in thresholds:
            j = (thr - lo) // width
            partial = 0
            if j >= count:
                pass  # threshold beyond the window: only `above` can count
            elif j >= 0:
                if j < cur:
                    running += sum(sums[j + 1 : cur + 1])
                    cur = j
                bucket = buckets[j]
                if bucket and j <= top:
                    partial = sum([q for k, q in bucket.items() if k >= thr])
            else:  # threshold below the window (window not re-centred): exact slow path
                if cur >= 0:
                    running += sum(sums[0 : cur + 1])
                    cur = -1
                partial = sum([q for k, q in self.below.items() if k >= thr])
            total = running + partial
            if self.above:
                total += sum([q for k, q in self.above.items() if k >= thr])
            out.append(total)
        return out


class PythonOrderBook:
    """Local order book of one symbol: integer ticks, exact quantities, fast depth bands.

    The reference implementation (pure Python); `OrderBook` is the compiled core when built.
    """

    __slots__ = ("_asks", "_bids", "_qd", "_qs", "_te8", "_tpu", "symbol")

    def __init__(
        self,
        symbol: str,
        tick_size: Decimal | str | float | None = None,
        qty_decimals: int | None = None,
    ) -> None:
        self.symbol = symbol
        self._bids = _Side(1)
        self._asks = _Side(-1)
        self._te8: int | None = None  # tick in units of 1e-8, always a divisor of 10**8
        self._tpu = 0.0  # ticks per unit of price (an exact integer as float)
        if tick_size is not None:
            units = Decimal(str(tick_size)) * _E8  # str(): a float 0.01 means "0.01"
            if units <= 0 or units != units.to_integral_value():
                raise ValueError(f"tick_size {tick_size} is not a positive multiple of 1e-8")
            self._set_tick(math.gcd(int(units), _E8))
        self._qd = -1  # quantity decimals; -1 until the first levels are seen
        self._qs = 1.0
        if qty_decimals is not None:
            if not 0 <= qty_decimals <= _MAX_QTY_DECIMALS:
                raise ValueError(f"qty_decimals {qty_decimals} outside 0..{_MAX_QTY_DECIMALS}")
            self._set_qty_decimals(qty_decimals)

    # ---------------------------------------------------------------- grid

    @property
    def tick_size(self) -> Decimal | None:
        """Return the price grid the book stores (None before any price was seen)."""
        return None if self._te8 is None else Decimal(self._te8) / _E8

    @property
    def qty_decimals(self) -> int | None:
        return None if self._qd < 0 else self._qd

    def _set_tick(self, te8: int) -> None:
        self._te8 = te8
        self._tpu = float(_E8 // te8)
        # a finer grid multiplies keys, never prices: every stored key stays in the domain
        self._bids.set_domain(te8)
        self._asks.set_domain(te8)

    def _set_qty_decimals(self, qd: int) -> None:
        self._qd = qd
        self._qs = float(10**qd)

    def _infer_grid(self, levels: Levels) -> bool:
        """Refine the grid (finer tick, more qty decimals) until every level is exactly on it.

        Return True when the grid changed (the book was then rebuilt on the new grid).
        """
        te8 = self._te8
        qd = max(self._qd, 0)
        for price, qty in levels:
            units = round(price * _E8)
            if units / _E8 != price or not 0 <= units < 2**53:
                raise ValueError(f"{self.symbol}: price {price!r} is not a wire price")
            te8 = math.gcd(te8 if te8 is not None else _E8, units)
            scale = float(10**qd)
            # beyond 2**53 units a float quantity is as exact as it gets: stop refining
            while floor(qty * scale + 0.5) / scale != qty and qty * scale < _EXACT_UNITS:
                qd += 1
                if qd > _MAX_QTY_DECIMALS:
                    raise ValueError(f"{self.symbol}: quantity {qty!r} has too many decimals")
                scale = float(10**qd)
        if te8 is None or (te8 == self._te8 and qd == self._qd):
            return False
        bids, asks = self._export_levels()
        self._set_tick(te8)
        self._set_qty_decimals(qd)
        self._rebuild(bids, asks)
        return True

    def _export_levels(self) -> tuple[Levels, Levels]:
        """Return both sides as exact (price, qty) floats, for re-keying on a new grid."""
        out = []
        for side in (self._bids, self._asks):
            stpu = self._tpu * side.sign
            qs = self._qs
            out.append([(key / stpu, qty / qs) for key, qty in side.items()])
        return out[0], out[1]

    def _rebuild(self, bids: Levels, asks: Levels) -> None:
        """Re-key levels on the current grid and re-centre the window."""
        qs = self._qs
        for side, levels in ((self._bids, bids), (self._asks, asks)):
            stpu = self._tpu * side.sign
            side.reset()
            side.above = {floor(p * stpu + 0.5): floor(q * qs + 0.5) for p, q in levels}
            side.best = max(side.above) if side.above else _NO_LEVEL
        self._recenter()

    # ------------------------------------------------------------ updates

    def clear(self) -> None:
        """Remove every level (the grid is kept: it belongs to the instrument)."""
        self._bids.reset()
        self._asks.reset()

    def load_snapshot(self, bids: Levels, asks: Levels) -> None:
        """Replace the whole book with a snapshot (never merge: stale levels must not survive)."""
        self.clear()
        try:
            self._infer_grid(bids)
            self._infer_grid(asks)
            self._rebuild([lv for lv in bids if lv[1] != 0.0], [lv for lv in asks if lv[1] != 0.0])
        except OverflowError as exc:  # floor() of an infinity
            raise ValueError(f"{self.symbol}: {exc}") from exc

    def apply(self, bids: Levels, asks: Levels) -> bool:
        """Set absolute quantities per price (0 deletes); return True if now crossed.

        Unknown levels are fine. Raises ValueError for a price or quantity no grid can hold
        (more than 8 price decimals, NaN); the book is then partly updated and must be resynced.
        The return value is `is_crossed()`, spared a call on the hot path.
        """
        try:
            if self._te8 is None or self._qd < 0:
                self._infer_grid(bids)
                self._infer_grid(asks)
            if bids:
                self._apply_side(self._bids, bids)
            if asks:
                self._apply_side(self._asks, asks)
        except OverflowError as exc:  # floor() of an infinity
            raise ValueError(f"{self.symbol}: {exc}") from exc
        b, a = self._bids, self._asks
        if not (b.lo <= b.best < b.hi or b.best == _NO_LEVEL) or not (
            a.lo <= a.best < a.hi or a.best == _NO_LEVEL
        ):
            self._recenter()
        return b.best >= -a.best and b.best != _NO_LEVEL and a.best != _NO_LEVEL

    def _apply_side(self, side: _Side, levels: Levels) -> None:
        # Hot path (10^5..10^6 levels/s per process): locals only, one dict op per level,
        # no quantity conversion for deletions (about half of Binance's levels).
        to_int = floor
        stpu = self._tpu * side.sign
        qs = self._qs
        lo, width, count = side.lo, side.width, side.count
        buckets, sums = side.buckets, side.sums
        best = side.best
        lost_best = False
        for price, qty in levels:
            key = to_int(price * stpu + 0.5)
            if key / stpu != price:
                self._off_grid(side, levels, best, price, qty)
                return
            j = (key - lo) // width
            if qty:
                n = to_int(qty * qs + 0.5)
                if n / qs != qty and n < _EXACT_UNITS:
                    self._off_grid(side, levels, best, price, qty)
                    return
                if 0 <= j < count:
                    bucket = buckets[j]
                    if bucket is None:
                        buckets[j] = {key: n}
                        sums[j] += n
                    else:
                        old = bucket.get(key, 0)
                        bucket[key] = n
                        sums[j] += n - old
                elif j < 0:
                    # below the window, the only place a key under the domain can land: the
                    # window's lo is never below min_key (_recenter)
                    if key < side.min_key:
                        raise ValueError(f"{self.symbol}: price {price!r} outside the book")
                    side.below[key] = n
                else:
                    side.above[key] = n
                if key > best:  # not max(): a call per level costs more
                    # only a new best can exceed the domain (best itself never does)
                    if key > side.max_key:
                        raise ValueError(f"{self.symbol}: price {price!r} outside the book")
                    best = key
            elif 0 <= j < count:
                bucket = buckets[j]
                if bucket is not None:
                    old = bucket.pop(key, 0)
                    if old:
                        sums[j] -= old
                        if not bucket:
                            buckets[j] = None  # an emptied dict keeps its table: free it
                        if key == best:
                            lost_best = True
            elif (side.below if j < 0 else side.above).pop(key, 0) and key == best:
                lost_best = True
        side.best = side.find_best(best) if lost_best else best

    def _off_grid(self, side: _Side, levels: Levels, best: int, price: float, qty: float) -> None:
        """Refine the grid for a level off it, then replay the whole list on the new grid.

        Absolute quantities make replaying the already applied prefix harmless.
        """
        side.best = best
        if not self._infer_grid([(price, qty)]):
            raise ValueError(f"{self.symbol}: cannot put {price!r} x {qty!r} on a grid")
        self._apply_side(side, levels)

    def _recenter(self) -> None:
        """Rebuild both windows around the current mid (or the only side's best)."""
        b, a = self._bids.best, self._asks.best
        if b != _NO_LEVEL and a != _NO_LEVEL:
            mid = (b - a) // 2  # asks are stored as -ticks
        elif b != _NO_LEVEL:
            mid = b
        elif a != _NO_LEVEL:
            mid = -a
        else:
            for side in (self._bids, self._asks):
                side.reset()
            return
        mid = max(mid, 1)
        width = max(1, mid * (_WINDOW_WORSE_PCT + _WINDOW_BETTER_PCT) // (100 * _BUCKETS_PER_SIDE))
        count = mid * (_WINDOW_WORSE_PCT + _WINDOW_BETTER_PCT) // (100 * width) + 2
        for side in (self._bids, self._asks):
            items = list(side.items())
            side.reset()
            side.lo = max(side.sign * mid - mid * _WINDOW_WORSE_PCT // 100, side.min_key)
            side.width = width
            side.count = count
            side.hi = side.lo + count * width
            side.buckets = [None] * count
            side.sums = [0] * count
            side.fill(items)

    # ------------------------------------------------------------ queries

    def best_bid_ticks(self) -> int | None:
        b = self._bids.best
        return None if b == _NO_LEVEL else b

    def best_ask_ticks(self) -> int | None:
        a = self._asks.best
        return None if a == _NO_LEVEL else -a

    def best_bid(self) -> float:
        """Return the best bid price (nan when there are no bids)."""
        b = self._bids.best
        return math.nan if b == _NO_LEVEL else b / self._tpu

    def best_ask(self) -> float:
        """Return the best ask price (nan when there are no asks)."""
        a = self._asks.best
        return math.nan if a == _NO_LEVEL else -a / self._tpu

    def mid(self) -> float:
        """Return (best_bid + best_ask) / 2 (nan when a side is empty)."""
        b, a = self._bids.best, self._asks.best
        if b == _NO_LEVEL or a == _NO_LEVEL:
            return math.nan
        return (b - a) / (2 * self._tpu)

    def is_crossed(self) -> bool:
        """Return True when best_bid >= best_ask (a corrupt book; never true on Binance)."""
        b, a = self._bids.best, self._asks.best
        return b != _NO_LEVEL and a != _NO_LEVEL and b >= -a

    def depth_bands(
        self,
    ) -> tuple[tuple[float, float, float, float], tuple[float, float, float, float]]:
        """Return base quantity within 30/100/300/1000 bps of mid: (bid bands, ask bands).

        Bounds are inclusive and decided exactly on integer ticks: a bid at p counts for band b
        iff p >= mid * (1 - b/10000), an ask iff p <= mid * (1 + b/10000). When either side is
        empty, mid is undefined and every band of both sides is nan.
        """
        bids, asks = self._bids, self._asks
        b, a = bids.best, asks.best
        if b == _NO_LEVEL or a == _NO_LEVEL:
            return _NAN4, _NAN4
        two_mid = b - a  # bid_ticks + ask_ticks
        # bid: 2*p*10000 >= two_mid*(10000-bps)  <=>  p >= ceil(two_mid*(10000-bps)/20000)
        bid_thr = tuple(-((-two_mid * (10000 - bps)) // 20000) for bps in BANDS_BPS)
        # ask: p <= floor(two_mid*(10000+bps)/20000); key = -p >= -floor(...)
        ask_thr = tuple(-((two_mid * (10000 + bps)) // 20000) for bps in BANDS_BPS)
        if bid_thr[-1] < bids.lo or ask_thr[-1] < asks.lo or bids.above or asks.above:
            self._recenter()
        qs = self._qs
        bid_sums = bids.band_sums(bid_thr)
        ask_sums = asks.band_sums(ask_thr)
        return (
            (bid_sums[0] / qs, bid_sums[1] / qs, bid_sums[2] / qs, bid_sums[3] / qs),
            (ask_sums[0] / qs, ask_sums[1] / qs, ask_sums[2] / qs, ask_sums[3] / qs),
        )

    def _side(self, side: str) -> _Side:
        if side in ("bid", "bids"):
            return self._bids
        if side in ("ask", "asks"):
            return self._asks
        raise ValueError(f"side must be 'bid' or 'ask', not {side!r}")

    def levels(self, side: str, n: int | None = None) -> list[tuple[float, float]]:
        """Return up to n (price, qty) levels of a side, best first (slow: tests, snapshots)."""
        s = self._side(side)
        stpu = self._tpu * s.sign
        qs = self._qs
        items = sorted(s.items(), reverse=True)
        if n is not None:
            items = items[:n]
        return [(key / stpu, qty / qs) for key, qty in items]

    def level_count(self, side: str) -> int:
        """Return the number of price levels on a side."""
        return self._side(side).level_count()

    def __repr__(self) -> str:
        return (
            f"OrderBook({self.symbol!r}, bid={self.best_bid()}, ask={self.best_ask()}, "
            f"levels={self.level_count('bid')}/{self.level_count('ask')})"
        )


def _compiled_book() -> type | None:
    """Return the compiled core's OrderBook when the extension is built and agrees on bands."""
    try:
        from exchange import _book_core
    except ImportError:
        return None
    return _book_core.OrderBook if _book_core.BANDS_BPS == BANDS_BPS else None


CompiledOrderBook: type | None = _compiled_book()
"""exchange._book_core.OrderBook, or None when the extension is not importable."""

if TYPE_CHECKING:
    OrderBook = PythonOrderBook
else:
    OrderBook = CompiledOrderBook or PythonOrderBook
"""The order book the engine builds: the compiled core when importable, else the reference."""

BOOK_IMPLEMENTATION: Literal["compiled", "python"] = (
    "compiled" if CompiledOrderBook is not None else "python"
)
"""Which implementation `OrderBook` is (printed by bench/ingest.py and `tickloop doctor`)."""
