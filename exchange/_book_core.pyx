# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, embedsignature=True
"""Compiled order book: exchange/book.py's PythonOrderBook, exactly, at a fraction of its cost.

exchange/book.py is the reference; this module re-implements its observable behaviour exactly
(tests/exchange/test_book_core.py compares the two after every event of the shared tapes and on
random sequences). `exchange.book.OrderBook` selects this class when it is importable.

Layout. Same keys as the reference: prices are integer ticks under a signed key (bids +ticks,
asks -ticks, so "better" is always "larger key"), quantities exact integer units
(qty * 10**qty_decimals). Each side keeps a window of 512-1024 buckets around mid (12 % beyond mid
to 2 % through it, bucket width a power of two); a bucket is a small array of (key, units) sorted
best first (a few dozen levels on BTCUSDT), found by a shift and searched by branchless
bisection, with its exact sum in a 128-bit integer. Levels outside the window sit in two more
sorted arrays (`below`, `above`). Memory is PyMem (traced by tracemalloc): 32 bytes per bucket
header while a window is open (~64 KB per book), level arrays only for populated buckets.

Exactness. Units are held as the integer-valued double the reference's `floor(qty * qs + 0.5)`
produces, so each level is exactly the reference's Python int. Sums are __int128; a level of
2**100 units or more (never from the wire: the decoder caps quantities below 1e15) is left out
of them and summed as a Python int when bands are asked for. Every float operation that decides
a key, a unit count or an output is the reference's own operation, in the same order, on IEEE
doubles (the build disables FMA contraction: setup.py).
"""

from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_AsDouble, PyFloat_CheckExact
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.math cimport floor, isfinite, rint
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy, memmove

import math
from decimal import Decimal

cdef extern from *:
    """
    typedef __int128 tl_i128;

    /* floor(x / d) for d > 0 (C division truncates toward zero) */
    static inline tl_i128 tl_floordiv(tl_i128 x, tl_i128 d) {
        tl_i128 q = x / d;
        if ((x % d) != 0 && x < 0) q -= 1;
        return q;
    }

    /* Exact i128 of an integer-valued double below 2**100 in magnitude; one instruction for the
       usual |x| < 2**62 (libgcc's __fixdfti costs ~10x that). */
    static inline tl_i128 tl_units(double x) {
        if (x < 4611686018427387904.0 && x > -4611686018427387904.0) return (tl_i128)(long long)x;
        return (tl_i128)x;
    }

    /* Index of key in a bucket sorted by descending key, or of the first level worse than it:
       a branchless bisection (the comparisons are unpredictable; a cmov is not). */
    static inline Py_ssize_t tl_search(const void *levels, Py_ssize_t n, long long key) {
        const struct { long long key; double units; } *lv = levels, *base = lv;
        if (n == 0) return 0;
        while (n > 1) {
            Py_ssize_t half = n >> 1;
            base = (base[half].key > key) ? base + half : base;
            n -= half;
        }
        return (base - lv) + (base->key > key);
    }

    static inline int tl_fits53(tl_i128 x) {
        return x > -((tl_i128)1 << 53) && x < ((tl_i128)1 << 53);
    }

    /* Exact conversion to a Python int (a new reference), for sums beyond 2**53. */
    static PyObject *tl_i128_to_pylong(tl_i128 x) {
        unsigned __int128 u = x < 0 ? -(unsigned __int128)x : (unsigned __int128)x;
        PyObject *hi = PyLong_FromUnsignedLongLong((unsigned long long)(u >> 64));
        PyObject *lo = PyLong_FromUnsignedLongLong((unsigned long long)u);
        PyObject *shift = PyLong_FromLong(64);
        PyObject *shifted = NULL, *sum = NULL, *out = NULL;
        if (hi && lo && shift) shifted = PyNumber_Lshift(hi, shift);
        if (shifted) sum = PyNumber_Or(shifted, lo);
        if (sum) out = x < 0 ? PyNumber_Negative(sum) : (Py_INCREF(sum), sum);
        Py_XDECREF(hi); Py_XDECREF(lo); Py_XDECREF(shift); Py_XDECREF(shifted); Py_XDECREF(sum);
        return out;
    }
    """
    ctypedef long long i128 "tl_i128"  # arithmetic only: never converted implicitly
    i128 tl_floordiv(i128 x, i128 d) nogil
    bint tl_fits53(i128 x) nogil
    i128 tl_units(double x) nogil
    Py_ssize_t tl_search(const void* levels, Py_ssize_t n, long long key) nogil
    object tl_i128_to_pylong(i128 x)


BANDS_BPS = (30, 100, 300, 1000)
"""Depth bands, in basis points of mid (must equal exchange.book.BANDS_BPS)."""

cdef int64_t[4] _BPS = [30, 100, 300, 1000]
cdef int64_t _E8 = 100000000
cdef int _MAX_QTY_DECIMALS = 12
cdef double _EXACT_UNITS = 9007199254740992.0  # 2**53: integers a float holds exactly
cdef double _HUGE_UNITS = 1267650600228229401496703205376.0  # 2**100: kept out of i128 sums
cdef int64_t _MAX_UNITS = 9007199254740991  # wire prices: 0 <= price * 1e8 <= 2**53 - 1
cdef int64_t _NO_LEVEL = -(1 << 62)  # best key of an empty side (below any real key)
cdef int64_t _WINDOW_WORSE_PCT = 12
cdef int64_t _WINDOW_BETTER_PCT = 2
cdef int64_t _BUCKETS_PER_SIDE = 1024
cdef double[13] _POW10 = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12]
cdef double _NAN = float("nan")


cdef struct Level:
    int64_t key
    double units  # integer-valued: exactly the reference's Python int


cdef struct Bucket:
    Level* lv  # sorted by key, descending (best first)
    int32_t n
    int32_t cap
    i128 sum  # exact sum of the units (huge levels excepted); next to lv: one cache line


cdef struct Side:
    int64_t sign
    double min_key  # keys of wire prices: bids [0, max_ticks], asks [-max_ticks, 0]
    double max_key
    int64_t lo  # window: keys [lo, hi) in `count` buckets of `width` = 2**shift keys
    int64_t hi
    int64_t width
    int shift  # a shift, not a 64-bit division, finds a key's bucket
    int64_t count  # 0 = no window yet
    Bucket* buckets
    Bucket below  # keys < lo
    Bucket above  # keys >= hi
    int64_t best
    int64_t huge  # levels of >= 2**100 units (not in the sums)


# ------------------------------------------------------------------ buckets


cdef inline Py_ssize_t _search(const Bucket* b, int64_t key) noexcept nogil:
    """Index of key in b, or of the first level worse than key (bisection, descending keys)."""
    return tl_search(b.lv, b.n, key)


cdef int _grow(Bucket* b) except -1:
    cdef int32_t cap = 8 if b.cap == 0 else b.cap * 2
    cdef Level* lv = <Level*>PyMem_Realloc(b.lv, cap * sizeof(Level))
    if lv == NULL:
        raise MemoryError()
    b.lv = lv
    b.cap = cap
    return 0


cdef inline void _add_units(Side* s, Bucket* b, double units, int sign) noexcept nogil:
    if units >= _HUGE_UNITS or units <= -_HUGE_UNITS:
        s.huge += sign
    elif sign > 0:
        b.sum += tl_units(units)
    else:
        b.sum -= tl_units(units)


cdef inline Bucket* _locate(Side* s, int64_t key) noexcept nogil:
    if key < s.lo:
        return &s.below
    if key >= s.hi:
        return &s.above
    return &s.buckets[(key - s.lo) >> s.shift]


cdef int _set(Side* s, int64_t key, double units) except -1:
    cdef Bucket* b = _locate(s, key)
    cdef Py_ssize_t i = _search(b, key)
    if i < b.n and b.lv[i].key == key:
        _add_units(s, b, b.lv[i].units, -1)
        b.lv[i].units = units
    else:
        if b.n == b.cap:
            _grow(b)
        if i < b.n:
            memmove(&b.lv[i + 1], &b.lv[i], (b.n - i) * sizeof(Level))
        b.lv[i].key = key
        b.lv[i].units = units
        b.n += 1
    _add_units(s, b, units, 1)
    return 0


cdef bint _delete(Side* s, int64_t key) noexcept nogil:
    """Remove key; return True if it was there."""
    cdef Bucket* b = _locate(s, key)
    cdef Py_ssize_t i = _search(b, key)
    if i >= b.n or b.lv[i].key != key:
        return False
    _add_units(s, b, b.lv[i].units, -1)
    b.n -= 1
    if i < b.n:
        memmove(&b.lv[i], &b.lv[i + 1], (b.n - i) * sizeof(Level))
    return True


cdef int64_t _max_key(Side* s, int64_t start_key) noexcept nogil:
    """Best key of the side, knowing no key is above start_key (the old best was deleted)."""
    cdef int64_t j
    if s.above.n:
        return s.above.lv[0].key
    if s.count and start_key >= s.lo:
        j = (start_key - s.lo) >> s.shift
        if j > s.count - 1:
            j = s.count - 1
        while j >= 0:
            if s.buckets[j].n:
                return s.buckets[j].lv[0].key
            j -= 1
    if s.below.n:
        return s.below.lv[0].key
    return _NO_LEVEL


cdef int64_t _level_count(const Side* s) noexcept nogil:
    cdef int64_t n = s.below.n + s.above.n
    cdef int64_t j
    for j in range(s.count):
        n += s.buckets[j].n
    return n


cdef void _free_window(Side* s) noexcept:
    cdef int64_t j
    if s.buckets != NULL:
        for j in range(s.count):
            PyMem_Free(s.buckets[j].lv)
        PyMem_Free(s.buckets)
    s.buckets = NULL
    s.count = 0
    s.lo = 0
    s.hi = 0
    s.width = 1
    s.shift = 0


cdef void _reset(Side* s) noexcept:
    _free_window(s)
    PyMem_Free(s.below.lv)
    PyMem_Free(s.above.lv)
    s.below.lv = NULL
    s.below.n = s.below.cap = 0
    s.above.lv = NULL
    s.above.n = s.above.cap = 0
    s.below.sum = 0
    s.above.sum = 0
    s.best = _NO_LEVEL
    s.huge = 0


cdef Level* _export(const Side* s, int64_t* n_out) except? NULL:
    """All levels of the side, best first (a new PyMem array; NULL when empty)."""
    cdef int64_t n = _level_count(s), k = 0, j
    n_out[0] = n
    if n == 0:
        return NULL
    cdef Level* out = <Level*>PyMem_Malloc(n * sizeof(Level))
    if out == NULL:
        raise MemoryError()
    memcpy(&out[k], s.above.lv, s.above.n * sizeof(Level))
    k += s.above.n
    j = s.count - 1
    while j >= 0:
        if s.buckets[j].n:
            memcpy(&out[k], s.buckets[j].lv, s.buckets[j].n * sizeof(Level))
            k += s.buckets[j].n
        j -= 1
    if s.below.n:
        memcpy(&out[k], s.below.lv, s.below.n * sizeof(Level))
    return out


cdef int _open_window(Side* s, int64_t mid, int shift, int64_t count) except -1:
    """Allocate an empty window around mid (the side holds no levels)."""
    cdef int64_t width = (<int64_t>1) << shift
    s.lo = s.sign * mid - mid * _WINDOW_WORSE_PCT // 100
    s.width = width
    s.shift = shift
    s.count = count
    s.hi = s.lo + count * width
    s.buckets = <Bucket*>PyMem_Calloc(count, sizeof(Bucket))
    if s.buckets == NULL:
        raise MemoryError()
    return 0


cdef int _fill_sorted(Side* s, const Level* levels, int64_t n) except -1:
    """Append levels given best first (so each bucket stays sorted without a search)."""
    cdef int64_t i
    cdef Bucket* b
    for i in range(n):
        b = _locate(s, levels[i].key)
        if b.n == b.cap:
            _grow(b)
        b.lv[b.n] = levels[i]
        b.n += 1
        _add_units(s, b, levels[i].units, 1)
    s.best = levels[0].key if n else _NO_LEVEL
    return 0


cdef int _refill(Side* s, int64_t mid, int shift, int64_t count) except -1:
    """Move every level of the side into a new window."""
    cdef int64_t n
    cdef Level* levels = _export(s, &n)
    try:
        _reset(s)
        _open_window(s, mid, shift, count)
        _fill_sorted(s, levels, n)
    finally:
        PyMem_Free(levels)
    return 0


cdef int _geometry(int64_t b, int64_t a, int64_t* mid, int* shift, int64_t* count) noexcept:
    """Window around mid as in the reference's _recenter, bucket width rounded up to a power
    of two (512..1024 buckets); 0 when both sides are empty."""
    cdef int64_t m
    if b != _NO_LEVEL and a != _NO_LEVEL:
        m = (b - a) // 2  # asks are stored as -ticks; b - a >= 0 (prices are >= 0)
    elif b != _NO_LEVEL:
        m = b
    elif a != _NO_LEVEL:
        m = -a
    else:
        return 0
    if m < 1:
        m = 1
    cdef int64_t span = _WINDOW_WORSE_PCT + _WINDOW_BETTER_PCT
    cdef int64_t want = m * span // (100 * _BUCKETS_PER_SIDE)
    shift[0] = 0
    while ((<int64_t>1) << shift[0]) < want:
        shift[0] += 1
    count[0] = m * span // (100 * ((<int64_t>1) << shift[0])) + 2
    mid[0] = m
    return 1


# ------------------------------------------------------------------ the book


cdef class OrderBook:
    """Local order book of one symbol: integer ticks, exact quantities, fast depth bands."""

    cdef public object symbol
    cdef int64_t _te8  # tick in units of 1e-8, a divisor of 10**8; 0 until known
    cdef double _tpu  # ticks per unit of price (an exact integer as float)
    cdef int _qd  # quantity decimals; -1 until the first levels are seen
    cdef double _qs
    cdef Side _bids
    cdef Side _asks

    def __cinit__(self):
        self._bids.sign = 1
        self._asks.sign = -1
        self._set_tick(_E8)  # until __init__ sets the real grid
        _reset(&self._bids)
        _reset(&self._asks)

    def __dealloc__(self):
        _reset(&self._bids)
        _reset(&self._asks)

    def __init__(self, symbol, tick_size=None, qty_decimals=None):
        self.symbol = symbol
        self._te8 = 0
        self._tpu = 0.0
        if tick_size is not None:
            units = Decimal(str(tick_size)) * _E8  # str(): a float 0.01 means "0.01"
            if units <= 0 or units != units.to_integral_value():
                raise ValueError(f"tick_size {tick_size} is not a positive multiple of 1e-8")
            self._set_tick(math.gcd(int(units), _E8))
        self._qd = -1
        self._qs = 1.0
        if qty_decimals is not None:
            if not 0 <= qty_decimals <= _MAX_QTY_DECIMALS:
                raise ValueError(f"qty_decimals {qty_decimals} outside 0..{_MAX_QTY_DECIMALS}")
            self._set_qty_decimals(qty_decimals)

    # ---------------------------------------------------------------- grid

    @property
    def tick_size(self):
        """Return the price grid the book stores (None before any price was seen)."""
        return None if self._te8 == 0 else Decimal(self._te8) / _E8

    @property
    def qty_decimals(self):
        return None if self._qd < 0 else self._qd

    cdef void _set_tick(self, int64_t te8) noexcept:
        self._te8 = te8
        self._tpu = <double>(_E8 // te8)
        # a finer grid multiplies keys, never prices: every stored key stays in the domain
        cdef double max_ticks = <double>(_MAX_UNITS // te8)
        self._bids.min_key = 0.0
        self._bids.max_key = max_ticks
        self._asks.min_key = -max_ticks
        self._asks.max_key = 0.0

    cdef void _set_qty_decimals(self, int qd) noexcept:
        self._qd = qd
        self._qs = _POW10[qd]

    cdef int _infer_grid(self, object levels) except -1:
        """Refine the grid until every level is exactly on it; 1 when it changed (rebuilt)."""
        cdef int64_t te8 = self._te8, units_i
        cdef int qd = self._qd if self._qd > 0 else 0
        cdef double price, qty, units, scale, x
        cdef object seq = _as_list(levels)
        cdef Py_ssize_t i, m = PyList_GET_SIZE(seq)
        for i in range(m):
            _pair(<object>PyList_GET_ITEM(seq, i), &price, &qty)
            units = rint(price * <double>_E8)  # round(): half to even, like Python's
            if not (units >= 0.0 and units < _EXACT_UNITS) or units / <double>_E8 != price:
                raise ValueError(f"{self.symbol}: price {price!r} is not a wire price")
            units_i = <int64_t>units
            te8 = _gcd(te8 if te8 != 0 else _E8, units_i)
            scale = _POW10[qd]
            while True:
                x = qty * scale + 0.5
                if not isfinite(x):
                    raise ValueError(f"{self.symbol}: quantity {qty!r} is not a wire quantity")
                # beyond 2**53 units a float quantity is as exact as it gets: stop refining
                if not (floor(x) / scale != qty and qty * scale < _EXACT_UNITS):
                    break
                qd += 1
                if qd > _MAX_QTY_DECIMALS:
                    raise ValueError(f"{self.symbol}: quantity {qty!r} has too many decimals")
                scale = _POW10[qd]
        if te8 == 0 or (te8 == self._te8 and qd == self._qd):
            return 0
        bids = self._export_levels(&self._bids)
        asks = self._export_levels(&self._asks)
        self._set_tick(te8)
        self._set_qty_decimals(qd)
        self._rebuild(bids, asks)
        return 1

    cdef list _export_levels(self, Side* s):
        """Both sides as exact (price, qty) floats, for re-keying on a new grid."""
        return self._levels_list(s, -1)

    cdef int _rebuild(self, object bids, object asks) except -1:
        """Re-key non-zero levels on the current grid and open a window around mid."""
        cdef object bseq = _as_list(bids), aseq = _as_list(asks)
        cdef int64_t b = _NO_LEVEL, a = _NO_LEVEL, mid, count
        cdef int shift
        _reset(&self._bids)
        _reset(&self._asks)
        b = self._best_of(bseq, 1.0)
        a = self._best_of(aseq, -1.0)
        if _geometry(b, a, &mid, &shift, &count):
            _open_window(&self._bids, mid, shift, count)
            _open_window(&self._asks, mid, shift, count)
        self._fill(&self._bids, bseq)
        self._fill(&self._asks, aseq)
        return 0

    cdef int64_t _best_of(self, list seq, double sign) except? -1:
        cdef double price, qty, stpu = self._tpu * sign
        cdef int64_t best = _NO_LEVEL, key
        cdef Py_ssize_t i
        for i in range(PyList_GET_SIZE(seq)):
            _pair(<object>PyList_GET_ITEM(seq, i), &price, &qty)
            if qty != 0.0:
                key = <int64_t>floor(price * stpu + 0.5)
                if key > best:
                    best = key
        return best

    cdef int _fill(self, Side* s, list seq) except -1:
        cdef double price, qty, stpu = self._tpu * s.sign, units
        cdef int64_t best = _NO_LEVEL, key
        cdef Py_ssize_t i
        for i in range(PyList_GET_SIZE(seq)):
            _pair(<object>PyList_GET_ITEM(seq, i), &price, &qty)
            if qty != 0.0:
                key = <int64_t>floor(price * stpu + 0.5)
                units = floor(qty * self._qs + 0.5)
                if not isfinite(units):
                    raise ValueError(f"{self.symbol}: quantity {qty!r} is not a wire quantity")
                _set(s, key, units)
                if key > best:
                    best = key
        s.best = best
        return 0

    # ------------------------------------------------------------ updates

    def clear(self):
        """Remove every level (the grid is kept: it belongs to the instrument)."""
        _reset(&self._bids)
        _reset(&self._asks)

    def load_snapshot(self, bids, asks):
        """Replace the whole book with a snapshot (never merge: stale levels must not survive)."""
        self.clear()
        bids = _as_list(bids)
        asks = _as_list(asks)
        self._infer_grid(bids)
        self._infer_grid(asks)
        self._rebuild(bids, asks)

    def apply(self, bids, asks):
        """Set absolute quantities per price (0 deletes); return True if now crossed.

        Unknown levels are fine. Raises ValueError for a price or quantity no grid can hold
        (more than 8 price decimals, NaN); the book is then partly updated and must be resynced.
        The return value is `is_crossed()`, spared a call on the hot path.
        """
        if self._te8 == 0 or self._qd < 0:
            self._infer_grid(bids)
            self._infer_grid(asks)
        if bids:
            self._apply_side(&self._bids, bids)
        if asks:
            self._apply_side(&self._asks, asks)
        cdef Side* b = &self._bids
        cdef Side* a = &self._asks
        if not (b.lo <= b.best < b.hi or b.best == _NO_LEVEL) or not (
            a.lo <= a.best < a.hi or a.best == _NO_LEVEL
        ):
            self._recenter()
        return b.best >= -a.best and b.best != _NO_LEVEL and a.best != _NO_LEVEL

    cdef int _apply_side(self, Side* s, object levels) except -1:
        # Hot path: one bisection in a bucket of a few dozen levels per price, no Python objects.
        cdef object seq = _as_list(levels)
        cdef Py_ssize_t i, m = PyList_GET_SIZE(seq)
        cdef double stpu = self._tpu * s.sign, qs = self._qs
        cdef double price, qty, kd, units
        cdef int64_t key, best = s.best
        cdef bint lost_best = False
        cdef PyObject* item
        cdef PyObject* p
        cdef PyObject* q
        for i in range(m):
            item = PyList_GET_ITEM(seq, i)
            if PyTuple_CheckExact(<object>item) and PyTuple_GET_SIZE(<object>item) == 2:
                p = PyTuple_GET_ITEM(<object>item, 0)
                q = PyTuple_GET_ITEM(<object>item, 1)
                if PyFloat_CheckExact(<object>p) and PyFloat_CheckExact(<object>q):
                    price = PyFloat_AS_DOUBLE(<object>p)
                    qty = PyFloat_AS_DOUBLE(<object>q)
                else:
                    _pair(<object>item, &price, &qty)
            else:
                _pair(<object>item, &price, &qty)
            kd = floor(price * stpu + 0.5)
            if kd / stpu != price:
                return self._off_grid(s, seq, best, price, qty)
            if qty != 0.0:
                units = floor(qty * qs + 0.5)
                if not isfinite(units):
                    raise ValueError(f"{self.symbol}: quantity {qty!r} is not a wire quantity")
                if units / qs != qty and units < _EXACT_UNITS:
                    return self._off_grid(s, seq, best, price, qty)
                if not (s.min_key <= kd <= s.max_key):
                    raise ValueError(f"{self.symbol}: price {price!r} outside the book's range")
                key = <int64_t>kd
                _set(s, key, units)
                if key > best:
                    best = key
            elif s.min_key <= kd <= s.max_key:  # a deletion out of range deletes nothing
                key = <int64_t>kd
                if _delete(s, key) and key == best:
                    lost_best = True
        s.best = _max_key(s, best) if lost_best else best
        return 0

    cdef int _off_grid(self, Side* s, list seq, int64_t best, double price, double qty) except -1:
        """Refine the grid for a level off it, then replay the whole list on the new grid."""
        s.best = best
        if not self._infer_grid([(price, qty)]):
            raise ValueError(f"{self.symbol}: cannot put {price!r} x {qty!r} on a grid")
        return self._apply_side(s, seq)

    cdef int _recenter(self) except -1:
        """Rebuild both windows around the current mid (or the only side's best)."""
        cdef int64_t mid, count
        cdef int shift
        if not _geometry(self._bids.best, self._asks.best, &mid, &shift, &count):
            _reset(&self._bids)
            _reset(&self._asks)
            return 0
        _refill(&self._bids, mid, shift, count)
        _refill(&self._asks, mid, shift, count)
        return 0

    # ------------------------------------------------------------ queries

    def best_bid_ticks(self):
        b = self._bids.best
        return None if b == _NO_LEVEL else b

    def best_ask_ticks(self):
        a = self._asks.best
        return None if a == _NO_LEVEL else -a

    def best_bid(self):
        """Return the best bid price (nan when there are no bids)."""
        b = self._bids.best
        return _NAN if b == _NO_LEVEL else <double>b / self._tpu

    def best_ask(self):
        """Return the best ask price (nan when there are no asks)."""
        a = self._asks.best
        return _NAN if a == _NO_LEVEL else <double>(-a) / self._tpu

    def mid(self):
        """Return (best_bid + best_ask) / 2 (nan when a side is empty)."""
        b, a = self._bids.best, self._asks.best
        if b == _NO_LEVEL or a == _NO_LEVEL:
            return _NAN
        return <double>(b - a) / (2 * self._tpu)

    def is_crossed(self):
        """Return True when best_bid >= best_ask (a corrupt book; never true on Binance)."""
        b, a = self._bids.best, self._asks.best
        return b != _NO_LEVEL and a != _NO_LEVEL and b >= -a

    def depth_bands(self):
        """Return base quantity within 30/100/300/1000 bps of mid: (bid bands, ask bands).

        Bounds are inclusive and decided exactly on integer ticks: a bid at p counts for band b
        iff p >= mid * (1 - b/10000), an ask iff p <= mid * (1 + b/10000). When either side is
        empty, mid is undefined and every band of both sides is nan.
        """
        cdef Side* bids = &self._bids
        cdef Side* asks = &self._asks
        cdef int64_t b = bids.best, a = asks.best
        if b == _NO_LEVEL or a == _NO_LEVEL:
            return (_NAN, _NAN, _NAN, _NAN), (_NAN, _NAN, _NAN, _NAN)
        cdef i128 two_mid = <i128>b - <i128>a  # bid_ticks + ask_ticks
        cdef i128[4] bid_thr
        cdef i128[4] ask_thr
        cdef int k
        for k in range(4):
            # bid: p >= ceil(two_mid*(10000-bps)/20000)
            # ask: -p >= -floor(two_mid*(10000+bps)/20000)
            bid_thr[k] = -tl_floordiv(-two_mid * (10000 - _BPS[k]), 20000)
            ask_thr[k] = -tl_floordiv(two_mid * (10000 + _BPS[k]), 20000)
        if bid_thr[3] < bids.lo or ask_thr[3] < asks.lo or bids.above.n or asks.above.n:
            self._recenter()
        return self._band_floats(bids, bid_thr), self._band_floats(asks, ask_thr)

    cdef tuple _band_floats(self, Side* s, i128* thr):
        cdef i128[4] sums
        _band_sums(s, thr, sums)
        cdef double qs = self._qs
        out = []
        cdef int k
        for k in range(4):
            if s.huge:
                total = tl_i128_to_pylong(sums[k]) + self._huge_sum(s, thr[k])
                out.append(total / qs)
            elif tl_fits53(sums[k]):
                out.append(<double>sums[k] / qs)
            else:
                out.append(tl_i128_to_pylong(sums[k]) / qs)
        return tuple(out)

    cdef object _huge_sum(self, Side* s, i128 thr):
        """Exact sum (a Python int) of the levels kept out of the i128 sums, at keys >= thr."""
        total = 0
        cdef int64_t n, i
        cdef Level* levels = _export(s, &n)
        try:
            for i in range(n):
                if levels[i].key < thr:
                    break
                if levels[i].units >= _HUGE_UNITS or levels[i].units <= -_HUGE_UNITS:
                    total += int(levels[i].units)
        finally:
            PyMem_Free(levels)
        return total

    cdef Side* _side(self, object side) except NULL:
        if side == "bid" or side == "bids":
            return &self._bids
        if side == "ask" or side == "asks":
            return &self._asks
        raise ValueError(f"side must be 'bid' or 'ask', not {side!r}")

    def levels(self, side, n=None):
        """Return up to n (price, qty) levels of a side, best first (slow: tests, snapshots)."""
        cdef Side* s = self._side(side)
        cdef int64_t total = _level_count(s), limit
        if n is None:
            limit = total
        else:
            limit = n  # a negative n drops that many from the end, like a slice
            limit = max(min(limit, total), 0) if limit >= 0 else max(total + limit, 0)
        return self._levels_list(s, limit)

    cdef list _levels_list(self, Side* s, int64_t limit):
        cdef double stpu = self._tpu * s.sign, qs = self._qs
        cdef int64_t n, i
        cdef Level* levels = _export(s, &n)
        if limit < 0 or limit > n:
            limit = n
        out = []
        try:
            for i in range(limit):
                out.append((<double>levels[i].key / stpu, levels[i].units / qs))
        finally:
            PyMem_Free(levels)
        return out

    def level_count(self, side):
        """Return the number of price levels on a side."""
        return _level_count(self._side(side))

    def __repr__(self):
        return (
            f"OrderBook({self.symbol!r}, bid={self.best_bid()}, ask={self.best_ask()}, "
            f"levels={self.level_count('bid')}/{self.level_count('ask')})"
        )

    def __reduce__(self):
        """Pickle (and copy) as symbol, grid and exact (key, units) levels; rebuild the window."""
        return (
            _restore,
            (self.symbol, self._te8, self._qd, _raw(&self._bids), _raw(&self._asks)),
        )

    cdef int _load_raw(self, list bids, list asks) except -1:
        """Refill from best-first (key, units) lists taken by _raw on the same grid."""
        cdef int64_t b = bids[0][0] if bids else _NO_LEVEL, a = asks[0][0] if asks else _NO_LEVEL
        cdef int64_t mid, count
        cdef int shift
        _reset(&self._bids)
        _reset(&self._asks)
        if _geometry(b, a, &mid, &shift, &count):
            _open_window(&self._bids, mid, shift, count)
            _open_window(&self._asks, mid, shift, count)
        for key, units in bids:
            _set(&self._bids, key, units)
        for key, units in asks:
            _set(&self._asks, key, units)
        self._bids.best = b
        self._asks.best = a
        return 0


def _restore(symbol, int64_t te8, int qd, list bids, list asks):
    """Rebuild a pickled OrderBook (see OrderBook.__reduce__)."""
    cdef OrderBook book = OrderBook(symbol)
    if te8:
        book._set_tick(te8)
    if qd >= 0:
        book._set_qty_decimals(qd)
    book._load_raw(bids, asks)
    return book


cdef list _raw(const Side* s):
    cdef int64_t n, i
    cdef Level* levels = _export(s, &n)
    try:
        return [(levels[i].key, levels[i].units) for i in range(n)]
    finally:
        PyMem_Free(levels)


# ------------------------------------------------------------------ helpers


cdef int _band_sums(Side* s, i128* thr, i128* out) except -1:
    """Per threshold (decreasing), the exact i128 sum of the units at keys >= it."""
    cdef int64_t lo = s.lo, width = s.width, count = s.count, j, top, cur
    cdef i128 running = 0, partial, total
    cdef Py_ssize_t i
    cdef int k
    cdef Bucket* b
    top = -1
    if count and s.best >= lo:
        top = (s.best - lo) >> s.shift
        if top > count - 1:
            top = count - 1
    cur = top  # buckets (cur, top] are summed into `running`
    for k in range(4):
        partial = 0
        if count and thr[k] < <i128>s.hi:
            if thr[k] >= <i128>lo:
                j = <int64_t>((thr[k] - lo) >> s.shift)
                while cur > j:
                    running += s.buckets[cur].sum
                    cur -= 1
                if j <= top:
                    b = &s.buckets[j]
                    partial = _prefix_sum(b, thr[k])
            else:
                while cur >= 0:
                    running += s.buckets[cur].sum
                    cur -= 1
        total = running + partial
        if not count or thr[k] < <i128>lo:
            total += _prefix_sum(&s.below, thr[k])
        total += _prefix_sum(&s.above, thr[k])
        out[k] = total
    return 0


cdef i128 _prefix_sum(const Bucket* b, i128 thr) noexcept nogil:
    """Exact sum of the (non-huge) units at keys >= thr in one bucket."""
    cdef i128 total = 0
    cdef Py_ssize_t i
    cdef double units
    for i in range(b.n):
        if b.lv[i].key < thr:
            break
        units = b.lv[i].units
        if units < _HUGE_UNITS and units > -_HUGE_UNITS:
            total += tl_units(units)
    return total


cdef int64_t _gcd(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t t
    while b:
        t = a % b
        a = b
        b = t
    return a


cdef inline list _as_list(object levels):
    return levels if type(levels) is list else list(levels)


cdef int _pair(object item, double* price, double* qty) except -1:
    """Unpack one (price, qty) level the way the reference's `for price, qty in levels` does."""
    p, q = item
    price[0] = p if PyFloat_CheckExact(p) else PyFloat_AsDouble(p)
    qty[0] = q if PyFloat_CheckExact(q) else PyFloat_AsDouble(q)
    return 0


cdef extern from "Python.h":
    bint PyTuple_CheckExact(object o)
