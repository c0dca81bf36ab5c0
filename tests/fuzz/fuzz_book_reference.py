"""An independent reference for the market-data fuzz suite: frame verdicts and a Decimal book.

Written from the wire formats and book-sync rules (../shared/reference/binance-api.md §1.4,
§2.2-2.4, and the rules stated in exchange/binance/sync.py's docstring), not from the decoder:
`classify` parses a raw frame with the standard library into a verdict (the decoder counter it
must land in, and the diff it carries), and `RefSync` keeps one symbol's book in exact Decimals
by Binance's rules.

Where the documented contract does not decide (lax coercions: an int sent as "123" or 1.0, a
number sent as a JSON number, "1e3", invalid UTF-8 in an ignored field, escapes, more digits
than a float holds) the verdict is AMBIGUOUS, and the fuzz suite does not use that frame for
comparisons. A definite defect (not JSON, a missing field, a wrong container, a negative number)
makes a frame MALFORMED even when it also has an ambiguous part.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

DEPTH, TRADE, AGG_TRADE, BOOK_TICKER, MARK_PRICE, SHUTDOWN = (
    "depthUpdate", "trade", "aggTrade", "bookTicker", "markPriceUpdate", "serverShutdown",
)  # fmt: skip
MALFORMED, UNKNOWN, CONTROL, AMBIGUOUS = "malformed", "unknown", "control", "ambiguous"
KINDS = frozenset({DEPTH, TRADE, AGG_TRADE, BOOK_TICKER, MARK_PRICE, SHUTDOWN})

# Stream names after "<symbol>@" (binance-api.md §1.4; the tapes' USDⓈ-M depth is @depth@0ms).
STREAM_KINDS = {
    "depth": DEPTH, "depth@100ms": DEPTH, "depth@250ms": DEPTH, "depth@500ms": DEPTH,
    "depth@1000ms": DEPTH, "depth@0ms": DEPTH, "trade": TRADE, "aggTrade": AGG_TRADE,
    "bookTicker": BOOK_TICKER, "markPrice": MARK_PRICE, "markPrice@1s": MARK_PRICE,
}  # fmt: skip
_CANONICAL = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")
_MAX_NUMBER = Decimal(10) ** 15  # the decoder's documented bound on any price or quantity
# beyond these a float no longer holds the wire value exactly: the book's grid is then undefined
_MAX_PRICE = Decimal(9 * 10**7)
_MAX_QTY = Decimal(10**7)
_MAX_DIGITS = 15
_MAX_DECIMALS = 8

Level = tuple[Decimal, Decimal]


@dataclass(frozen=True)
class Diff:
    symbol: str
    ts_event_ms: int
    first_id: int  # U
    final_id: int  # u
    prev_final_id: int | None  # pu (USDⓈ-M)
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True)
class Snapshot:
    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True)
class Verdict:
    counter: str  # the decoder counter the frame must land in, or AMBIGUOUS
    symbol: str | None = None  # upper-case symbol of a decoded market event
    diff: Diff | None = None  # for depth diffs


class _Check:
    """Collect defects of one frame: a definite one wins over an ambiguous one."""

    def __init__(self) -> None:
        self.malformed = False
        self.ambiguous = False

    def bad(self) -> None:
        self.malformed = True

    def unsure(self) -> None:
        self.ambiguous = True

    def int_(self, obj: dict, key: str, optional: bool = False) -> int | None:
        if key not in obj:
            if not optional:
                self.bad()
            return None
        value = obj[key]
        if value is None:
            if not optional:
                self.bad()
            return None
        if type(value) is int:
            return value
        if isinstance(value, (bool, str, float)):
            self.unsure()  # lax coercion territory ("123", 1.0, true)
        else:
            self.bad()
        return None

    def str_(self, obj: dict, key: str, default: str | None = None) -> str | None:
        if key not in obj:
            if default is None:
                self.bad()
            return default
        value = obj[key]
        if isinstance(value, str):
            return value
        self.bad()  # no coercion into a string
        return None

    def bool_(self, obj: dict, key: str) -> bool | None:
        if key not in obj:
            self.bad()
            return None
        value = obj[key]
        if isinstance(value, bool):
            return value
        if isinstance(value, (str, int, float)):
            self.unsure()
        else:
            self.bad()
        return None

    def num(self, value: Any, limit: Decimal | None = None) -> Decimal | None:
        if isinstance(value, str):
            if _CANONICAL.fullmatch(value):
                number = Decimal(value)
                if number >= _MAX_NUMBER:
                    self.bad()
                    return None
                whole, _, fraction = value.partition(".")
                fraction = fraction.rstrip("0")
                significant = (whole.lstrip("0") + fraction).lstrip("0")
                too_long = len(significant) > _MAX_DIGITS or len(fraction) > _MAX_DECIMALS
                if too_long or (limit is not None and number >= limit):
                    self.unsure()
                return number
            try:
                float(value)
            except ValueError:
                self.bad()
            else:
                self.unsure()  # "1e3", " 1", "+1", "01", "nan": not the canonical wire form
            return None
        if isinstance(value, (bool, int, float)):
            self.unsure()
        else:
            self.bad()
        return None

    def num_field(self, obj: dict, key: str) -> Decimal | None:
        if key not in obj:
            self.bad()
            return None
        return self.num(obj[key])

    def levels(self, obj: dict, key: str) -> tuple[Level, ...]:
        if key not in obj:
            self.bad()
            return ()
        value = obj[key]
        if not isinstance(value, list):
            self.bad()
            return ()
        out = []
        for entry in value:
            if not isinstance(entry, list) or len(entry) != 2:
                self.bad()
                continue
            price, qty = self.num(entry[0], _MAX_PRICE), self.num(entry[1], _MAX_QTY)
            if price is not None and qty is not None:
                out.append((price, qty))
        return tuple(out)


class _Unsure(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _Unsure
    return dict(pairs)


def _no_constant(_name: str) -> Any:
    raise _Unsure  # NaN / Infinity literals: not JSON


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Unsure
    return value


def load_json(payload: bytes) -> tuple[str, Any]:
    """Return (MALFORMED|AMBIGUOUS|"ok", value) for one payload, strictly."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return AMBIGUOUS, None  # the decoder checks UTF-8 only in the fields it reads
    if "\\u" in text:
        return AMBIGUOUS, None  # escapes (lone surrogates) are read differently by parsers
    try:
        return "ok", json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except _Unsure:
        return AMBIGUOUS, None
    except RecursionError:
        return AMBIGUOUS, None
    except ValueError:
        return MALFORMED, None


def kind_of_stream(name: str) -> str | None:
    """Return the event kind a combined-stream name carries (None: a stream the engine skips)."""
    _, at, suffix = name.partition("@")
    if at and suffix in STREAM_KINDS:
        return STREAM_KINDS[suffix]
    if name in ("!serverShutdown", "serverShutdown"):
        return SHUTDOWN
    return None


def _undecided_stream(name: str) -> bool:
    """True for an update speed Binance may add (depth@Xms, markPrice@Xs): not decided here."""
    return kind_of_stream(name) is None and name.partition("@")[2].startswith(
        ("depth@", "markPrice@")
    )


def _validate(kind: str, data: Any, usdm: bool) -> Verdict:
    if not isinstance(data, dict):
        return Verdict(MALFORMED)
    check = _Check()
    symbol = None
    diff = None
    if kind == DEPTH:
        ts = check.int_(data, "E")
        symbol = check.str_(data, "s")
        first, final = check.int_(data, "U"), check.int_(data, "u")
        prev = check.int_(data, "pu", optional=True)
        check.int_(data, "T", optional=True)
        bids, asks = check.levels(data, "b"), check.levels(data, "a")
        if not (check.malformed or check.ambiguous):
            if usdm and prev is None:
                return Verdict(MALFORMED)  # USDⓈ-M diffs chain by pu
            assert symbol is not None and ts is not None and first is not None
            assert final is not None
            diff = Diff(symbol.upper(), ts, first, final, prev, bids, asks)
    elif kind == TRADE:
        check.int_(data, "E")
        symbol = check.str_(data, "s")
        check.int_(data, "t")
        check.num_field(data, "p")
        check.num_field(data, "q")
        check.int_(data, "T")
        check.bool_(data, "m")
    elif kind == AGG_TRADE:
        check.int_(data, "E")
        symbol = check.str_(data, "s")
        check.int_(data, "a")
        check.num_field(data, "p")
        check.num_field(data, "q")
        first, last = check.int_(data, "f"), check.int_(data, "l")
        check.int_(data, "T")
        check.bool_(data, "m")
        if first is not None and last is not None and last < first and not check.ambiguous:
            check.bad()
    elif kind == BOOK_TICKER:
        check.int_(data, "u")
        symbol = check.str_(data, "s")
        for key in ("b", "B", "a", "A"):
            check.num_field(data, key)
        check.int_(data, "E", optional=True)
    elif kind == MARK_PRICE:
        check.int_(data, "E")
        symbol = check.str_(data, "s")
        check.num_field(data, "p")
        check.int_(data, "T")
        for key in ("i", "r"):
            text = check.str_(data, key, default="")
            if text:
                try:
                    float(text)  # index price and funding rate: the engine reads them with float()
                except ValueError:
                    check.bad()
    else:  # SHUTDOWN
        check.int_(data, "E")
    if check.malformed:
        return Verdict(MALFORMED)
    if check.ambiguous:
        return Verdict(AMBIGUOUS)
    return Verdict(kind, symbol.upper() if symbol is not None else None, diff)


_PREFIX = b'{"stream":"'


def classify(payload: bytes, usdm: bool) -> Verdict:
    """Return the verdict on one websocket frame (combined-stream envelope or raw payload)."""
    if payload.startswith(_PREFIX):
        end = payload.find(b'"', len(_PREFIX))
        if end < 0:
            return Verdict(MALFORMED)  # an unterminated string is never JSON
        name = payload[len(_PREFIX) : end]
        if b"\\" in name:
            return Verdict(AMBIGUOUS)
        text = name.decode("utf-8", "replace")
        if _undecided_stream(text):
            return Verdict(AMBIGUOUS)
        kind = kind_of_stream(text)
        if kind is not None:
            status, top = load_json(payload)
            if status != "ok":
                return Verdict(status)
            if not isinstance(top, dict) or "data" not in top:
                return Verdict(MALFORMED)
            return _validate(kind, top["data"], usdm)
    status, top = load_json(payload)
    if status != "ok":
        return Verdict(status)
    if not isinstance(top, dict):
        return Verdict(MALFORMED)
    stream, e = top.get("stream"), top.get("e")
    if stream is not None and not isinstance(stream, str):
        return Verdict(MALFORMED)
    if e is not None and not isinstance(e, str):
        return Verdict(MALFORMED)
    if stream is not None:
        if "data" not in top:
            return Verdict(MALFORMED)
        if _undecided_stream(stream):
            return Verdict(AMBIGUOUS)
        kind = kind_of_stream(stream)
        if kind is None:
            data = top["data"]
            if not isinstance(data, dict):
                return Verdict(MALFORMED)
            for key in ("e", "stream"):
                if data.get(key) is not None and not isinstance(data[key], str):
                    return Verdict(MALFORMED)
            if data.get("e") == SHUTDOWN:
                return Verdict(AMBIGUOUS)  # trusted by its "e" on any stream name: not decided here
            return Verdict(UNKNOWN)
        return _validate(kind, top["data"], usdm)
    if "stream" in top:
        return Verdict(AMBIGUOUS)  # "stream": null
    if e is None:
        if top.get("code") is not None or "error" in top:
            return Verdict(CONTROL)
        if top.get("id") is not None or "result" in top:
            return Verdict(CONTROL)
        if all(top.get(k) is not None for k in ("u", "s", "b")):
            return _validate(BOOK_TICKER, top, usdm)  # spot bookTicker carries no "e"
        return Verdict(UNKNOWN)
    if e not in KINDS:
        return Verdict(UNKNOWN)
    return _validate(e, top, usdm)


def classify_snapshot(payload: bytes, usdm: bool) -> Snapshot | str:
    """Return the snapshot a REST depth body carries, or MALFORMED / AMBIGUOUS."""
    status, top = load_json(payload)
    if status != "ok":
        return status
    if not isinstance(top, dict):
        return MALFORMED
    check = _Check()
    last_id = check.int_(top, "lastUpdateId")
    bids, asks = check.levels(top, "bids"), check.levels(top, "asks")
    ts = check.int_(top, "E", optional=True)
    check.int_(top, "T", optional=True)
    if check.malformed:
        return MALFORMED
    if check.ambiguous:
        return AMBIGUOUS
    if usdm and ts is None:
        return MALFORMED
    assert last_id is not None
    return Snapshot(last_id, bids, asks)


_LOST: Any = object()  # the best level was deleted: recompute


def _set_levels(side: dict, levels: tuple[Level, ...], best: Any, better: Any) -> Any:
    """Set absolute quantities (0 deletes); return the new best price, or _LOST."""
    for price, qty in levels:
        if qty == 0:
            if side.pop(price, None) is not None and price == best:
                best = _LOST
        else:
            side[price] = qty
            if best is not _LOST and (best is None or better(price, best)):
                best = price
    return best


@dataclass
class RefSync:
    """One symbol's book in exact Decimals, kept by Binance's sync rules (no I/O)."""

    spot: bool
    max_buffer: int = 2000
    live: bool = False
    last_id: int | None = None
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    buffer: deque[Diff] = field(default_factory=deque)
    snapshot: Snapshot | None = None
    _best: tuple[Decimal | None, Decimal | None] | None = None  # cache; None: recompute

    def best(self) -> tuple[Decimal | None, Decimal | None]:
        """Return (best bid, best ask); None for an empty side."""
        if self._best is None:
            self._best = (max(self.bids, default=None), min(self.asks, default=None))
        return self._best

    @property
    def crossed(self) -> bool:
        bid, ask = self.best()
        return bid is not None and ask is not None and bid >= ask

    @property
    def valid(self) -> bool:
        return self.live and not self.crossed

    def levels(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Return (bids best first, asks best first) as floats, for comparison with the engine."""
        bids = [(float(p), float(q)) for p, q in sorted(self.bids.items(), reverse=True)]
        asks = [(float(p), float(q)) for p, q in sorted(self.asks.items())]
        return bids, asks

    def on_diff(self, diff: Diff) -> None:
        if self.live:
            self._live(diff)
            return
        self.buffer.append(diff)
        self._trim()
        if self.snapshot is not None:
            self._try_sync()

    def on_snapshot(self, snap: Snapshot) -> None:
        if self.live:
            return  # a late snapshot never replaces a live book
        self.snapshot = snap
        self._try_sync()

    def _live(self, diff: Diff) -> None:
        assert self.last_id is not None
        if diff.final_id <= self.last_id:
            return  # already in the book (spot: stale; USDⓈ-M: a duplicate, not a gap)
        if self.spot:
            gap = diff.first_id > self.last_id + 1
        else:
            gap = diff.prev_final_id != self.last_id
        if gap:
            self._lose(diff)
        else:
            self._apply(diff)

    def _apply(self, diff: Diff) -> None:
        bid, ask = self.best()
        self._best = (
            _set_levels(self.bids, diff.bids, bid, better=lambda a, b: a > b),
            _set_levels(self.asks, diff.asks, ask, better=lambda a, b: a < b),
        )
        if self._best[0] is _LOST or self._best[1] is _LOST:
            self._best = None  # a deleted best level: recompute on the next question
        self.last_id = diff.final_id
        if self.crossed:
            self._lose(diff)

    def _lose(self, diff: Diff) -> None:
        # the offending diff starts the new buffer: a fresh snapshot may precede it
        self.live, self.last_id, self.snapshot = False, None, None
        self.bids, self.asks, self._best = {}, {}, None
        self.buffer.appendleft(diff)
        self._trim()

    def _trim(self) -> None:
        while len(self.buffer) > self.max_buffer:
            self.buffer.popleft()

    def _try_sync(self) -> None:
        snap = self.snapshot
        assert snap is not None
        lid = snap.last_update_id
        floor = lid + 1 if self.spot else lid  # spot drops u <= lid, USDⓈ-M only u < lid
        while self.buffer and self.buffer[0].final_id < floor:
            self.buffer.popleft()
        if not self.buffer:
            return  # keep the snapshot until a diff reaches past it
        if self.buffer[0].first_id > (lid + 1 if self.spot else lid):
            self.snapshot = None  # older than the stream: a newer one is needed
            return
        self.snapshot = None
        self.bids = {p: q for p, q in snap.bids if q != 0}
        self.asks = {p: q for p, q in snap.asks if q != 0}
        self._best = None
        self.live, self.last_id = True, lid
        if not self.spot:
            self._apply(self.buffer.popleft())  # the bracketing diff: its pu is not checked
            if not self.live:
                return
        while self.buffer and self.live:
            self._live(self.buffer.popleft())
