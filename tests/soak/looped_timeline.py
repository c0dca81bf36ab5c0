"""A recorded tape repeated end to end as one continuous market, for a day of market time.

The simulator's own `loop=True` starts the tape over with the same ids and times, so an engine's
exchange time would run backwards at every wrap (its trading loop then sees no fresh data and goes
REDUCING for good). Here copy k of the tape is shifted forward instead: receive and event times by
k periods (the tape's span plus a second), depth update ids by more than their span, trade and
aggTrade ids by exactly their span (trades stay contiguous). Between two copies the depth ids jump:
a real sequence gap. The simulator's book resyncs from the copy's own (shifted) recorded snapshot,
and a client must notice the gap and resync from a REST snapshot, as after any gap on Binance.
Prices jump there too, like a market gap.

Frames are made on demand (a day of a 6-minute tape is ~250 copies); the payload bytes of a
shifted frame are rewritten only when a connection actually sends them. Streams nothing here
subscribes to are left out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from engine.model import Market
from exchange.sim.timeline import DepthDiffInfo, Frame, Snapshot, Timeline, load_timeline

SEAM_GAP_NS = 1_000_000_000  # market silence between the end of one copy and the next
DEPTH_ID_JUMP = 1_000  # depth ids skipped at a seam: the gap every client must resync across
# streams nobody subscribes to here (a third to a half of the frames): bookTicker; spot's
# synthesized aggTrade (the engine and the exchange's matching read @trade); USDⓈ-M's @trade
# (the engine reads aggTrade, and so does the exchange when no @trade is served)
DROPPED_SUFFIXES = {
    Market.SPOT: ("@bookTicker", "@aggTrade"),
    Market.USDM: ("@bookTicker", "@trade"),
}

SymbolKey = tuple[Market, str]


@dataclass(frozen=True, slots=True)
class CopyShift:
    """How copy k of the tape is moved: times by ns, ids per symbol."""

    ns: int
    ms: int
    depth: dict[SymbolKey, int]
    trade: dict[SymbolKey, int]
    agg: dict[SymbolKey, int]


class ShiftedFrame(Frame):
    """A frame of copy k > 0: recorded fields moved by a CopyShift, payload re-encoded on demand."""

    __slots__ = ("_base", "_data", "_depth", "_shift")

    @classmethod
    def of(cls, base: Frame, shift: CopyShift) -> ShiftedFrame:
        frame = object.__new__(cls)
        put = object.__setattr__  # Frame is frozen; these are its plain slots
        put(frame, "ts_recv_ns", base.ts_recv_ns + shift.ns)
        put(frame, "market", base.market)
        put(frame, "stream", base.stream)
        put(frame, "symbol", base.symbol)
        put(frame, "tape_index", base.tape_index)
        put(frame, "synthesized", base.synthesized)
        put(frame, "_base", base)
        put(frame, "_shift", shift)
        put(frame, "_data", None)
        put(frame, "_depth", None)
        return frame

    @property  # type: ignore[override]
    def depth(self) -> DepthDiffInfo | None:
        base = self._base.depth
        if base is None:
            return None
        if self._depth is None:
            ids = self._shift.depth.get((self.market, self.symbol or ""), 0)
            ms = self._shift.ms
            shifted = replace(
                base,
                first_update_id=base.first_update_id + ids,
                final_update_id=base.final_update_id + ids,
                prev_final_update_id=None if base.prev_final_update_id is None
                else base.prev_final_update_id + ids,
                ts_event_ms=base.ts_event_ms + ms if base.ts_event_ms else base.ts_event_ms,
                ts_trans_ms=None if base.ts_trans_ms is None else base.ts_trans_ms + ms,
            )  # fmt: skip
            object.__setattr__(self, "_depth", shifted)
        return self._depth

    @property  # type: ignore[override]
    def data(self) -> bytes:
        if self._data is None:
            shifted = shift_payload(self._base.data, self._shift, (self.market, self.symbol or ""))
            object.__setattr__(self, "_data", shifted)
        return self._data  # type: ignore[return-value]

    @property  # type: ignore[override]
    def envelope(self) -> bytes:
        return b'{"stream":"%s","data":%s}' % (self.stream.encode(), self.data)


# The only integer fields of the events replayed here (prices and quantities are strings):
# times E/T, depth ids U/u/pu, the trade id t, aggTrade ids a/f/l.
_INTEGER_FIELD = re.compile(rb'"(E|T|U|u|pu|t|a|f|l)":(\d+)')


def shift_payload(data: bytes, shift: CopyShift, key: SymbolKey) -> bytes:
    """Move one event's times and ids (a regex over the bytes: far cheaper than a JSON round trip)."""
    depth, trade = shift.depth.get(key, 0), shift.trade.get(key, 0)
    moves = {b"E": shift.ms, b"T": shift.ms, b"U": depth, b"u": depth, b"pu": depth,
             b"t": trade, b"a": shift.agg.get(key, 0), b"f": trade, b"l": trade}  # fmt: skip

    def move(found: re.Match[bytes]) -> bytes:
        value = int(found[2])
        return b'"%s":%d' % (found[1], value + moves[found[1]] if value > 0 else value)

    return _INTEGER_FIELD.sub(move, data)


class LoopedFrames(Sequence[Frame]):
    """copies x the base frames, copy k shifted by k periods; indexable and iterable lazily."""

    def __init__(self, base: list[Frame], copies: int, unit: CopyShift) -> None:
        self._base = base
        self._n = len(base)
        self._copies = copies
        self._unit = unit
        self._shifts: dict[int, CopyShift] = {}
        self._recent: dict[int, Frame] = {}  # the replay reads the current and next frame often

    def shift_of(self, copy: int) -> CopyShift:
        shift = self._shifts.get(copy)
        if shift is None:
            u = self._unit
            shift = CopyShift(
                u.ns * copy, u.ms * copy,
                {k: v * copy for k, v in u.depth.items()},
                {k: v * copy for k, v in u.trade.items()},
                {k: v * copy for k, v in u.agg.items()},
            )  # fmt: skip
            self._shifts = {copy: shift}  # copies are walked in order: keep one
        return shift

    def __len__(self) -> int:
        return self._n * self._copies

    def __getitem__(self, index: int) -> Frame:  # type: ignore[override]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        frame = self._recent.get(index)
        if frame is None:
            copy, at = divmod(index, self._n)
            base = self._base[at]
            frame = base if copy == 0 else ShiftedFrame.of(base, self.shift_of(copy))
            if len(self._recent) > 8:
                self._recent.clear()
            self._recent[index] = frame
        return frame

    def __iter__(self) -> Iterator[Frame]:
        yield from self._base
        for copy in range(1, self._copies):
            shift = self.shift_of(copy)
            for base in self._base:
                yield ShiftedFrame.of(base, shift)


def looped_timeline(tapes: Sequence[Path], market_s: float) -> Timeline:
    """Return the tapes' timeline repeated (shifted) to cover at least market_s seconds."""
    recorded = load_timeline(tapes)
    frames = [f for f in recorded.frames if not f.stream.endswith(DROPPED_SUFFIXES[f.market])]
    span_ns = frames[-1].ts_recv_ns - frames[0].ts_recv_ns
    period_ms = math.ceil((span_ns + SEAM_GAP_NS) / 1e6)
    copies = max(1, math.ceil(market_s * 1e3 / period_ms))
    unit = CopyShift(period_ms * 1_000_000, period_ms, _depth_spans(frames), *_trade_spans(frames))
    snapshots: dict[SymbolKey, list[Snapshot]] = {}
    for key, snaps in recorded.snapshots.items():
        out = snapshots.setdefault(key, [])
        for copy in range(copies):
            ids, ms = unit.depth.get(key, 0) * copy, unit.ms * copy
            out += [
                replace(s, ts_recv_ns=s.ts_recv_ns + unit.ns * copy, last_update_id=s.last_update_id + ids,
                        ts_event_ms=None if s.ts_event_ms is None else s.ts_event_ms + ms,
                        ts_trans_ms=None if s.ts_trans_ms is None else s.ts_trans_ms + ms)
                for s in snaps
            ]  # fmt: skip
    return Timeline(
        frames=LoopedFrames(frames, copies, unit),  # type: ignore[arg-type]
        snapshots=snapshots,
        markets=recorded.markets,
        streams=frozenset(f.key for f in frames),
        exchange_offset_ms=recorded.exchange_offset_ms,
        tape_paths=recorded.tape_paths,
    )


def _depth_spans(frames: list[Frame]) -> dict[SymbolKey, int]:
    lows: dict[SymbolKey, int] = {}
    highs: dict[SymbolKey, int] = {}
    for f in frames:
        if f.depth is not None and f.symbol:
            key = (f.market, f.symbol)
            lows[key] = min(lows.get(key, f.depth.first_update_id), f.depth.first_update_id)
            highs[key] = max(highs.get(key, 0), f.depth.final_update_id)
    return {k: highs[k] - lows[k] + DEPTH_ID_JUMP for k in lows}


def _trade_spans(frames: list[Frame]) -> tuple[dict[SymbolKey, int], dict[SymbolKey, int]]:
    ids: dict[tuple[str, SymbolKey], list[int]] = {}
    for f in frames:
        if f.symbol and f.stream.endswith(("@trade", "@aggTrade")):
            body = orjson.loads(f.data)
            kind = "trade" if body.get("e") == "trade" else "agg"
            key = (kind, (f.market, f.symbol))
            span = ids.setdefault(key, [body["t" if kind == "trade" else "a"]] * 2)
            value = body["t" if kind == "trade" else "a"]
            span[0], span[1] = min(span[0], value), max(span[1], value)
            if kind == "agg":  # f/l are trade ids: the trade span must cover them too
                tkey = ("trade", (f.market, f.symbol))
                tspan = ids.setdefault(tkey, [body["f"], body["l"]])
                tspan[0], tspan[1] = min(tspan[0], body["f"]), max(tspan[1], body["l"])
    trade = {k: hi - lo + 1 for (kind, k), (lo, hi) in ids.items() if kind == "trade"}
    agg = {k: hi - lo + 1 for (kind, k), (lo, hi) in ids.items() if kind == "agg"}
    return trade, agg
