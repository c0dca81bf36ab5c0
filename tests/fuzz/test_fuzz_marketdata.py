"""Mutated and random market-data frames: never raised, always counted, never a corrupted book.

Frames are the real recorded ones (spot depth/trade/bookTicker, USDⓈ-M depth@0ms/trade/
bookTicker/markPrice, a 2021 multi-symbol USDⓈ-M capture with aggTrade and kline streams) and
go through the engine's own path: `MarketDataPipeline.on_frame` / `on_snapshot` (decoder,
BookSync, OrderBook, folder). A window of frames is mutated (bytes flipped, inserted, deleted,
truncated; JSON fields deleted, retyped, renamed; levels bent; frames dropped, duplicated,
swapped; junk inserted), then the stream continues clean and a fresh snapshot arrives.

Checked against an independent reference (fuzz_book_reference: stdlib JSON + a Decimal book by
Binance's rules) fed the very same frames:
* no call raises; every frame lands in exactly one decoder counter, the one the reference names
  (malformed and unknown frames are counted, never dropped silently);
* after every frame each symbol's sync state, update id, buffer length and validity equal the
  reference's, and a valid book has best bid < best ask;
* at checkpoints every level of every book equals the reference's;
* when no mutation changed a diff's content (only detectable damage: junk, drops, duplicates,
  reorders) and clean diffs follow, a valid book at the end equals the book of the unmutated
  stream: a fresh snapshot repairs everything.

Exchange-time fields (`E`, `T`) are mutated only within seconds of their value (or to 0, -1 or
days earlier): a frame dated far ahead is refused by the pipeline as malformed (issue #8), which
drops a diff the reference here would apply. That contract has its own tests: the day-ahead
test at the end, and tests/engine/test_marketdata_event_times.py.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fuzz_book_reference import (
    AMBIGUOUS,
    MALFORMED,
    RefSync,
    classify,
    classify_snapshot,
)
from fuzz_marketdata_harness import FOLD, Harness, Item, Stream, _clean_verdict, _load_stream
from fuzz_support import count, fuzz_settings
from hypothesis import event, given
from hypothesis import strategies as st

from engine.config import FoldConfig
from engine.marketdata import MarketDataPipeline
from engine.model import Market
from engine.tape import TapeFrame

SUITE = "marketdata"


@pytest.fixture(scope="module")
def streams(tapes: dict[str, Path], shared_data: Path) -> dict[str, Stream]:
    captures = shared_data / "binance-captures-2021"
    return {
        s.name: s
        for s in (
            _load_stream("spot_btcusdt", tapes["spot_btcusdt"], 3000),
            _load_stream("usdm_btcusdt", tapes["usdm_btcusdt"], 5000),
            _load_stream("usdm_btcusdt_2023", tapes["usdm_btcusdt_2023a"], 3000),
            _load_stream("usdm_5sym_2021", captures / "2021-04-05_usdm_5sym", 3000),
        )
    }


# ------------------------------------------------------------------------------- mutations

_TIME_DIGITS = re.compile(rb'"[ET]":(-?[0-9]+)')
_JSON_BYTES = list(b'"{}[],:.-0123456789eEtfnrul\\ ')
_EDIT_BYTE = st.one_of(st.sampled_from(_JSON_BYTES), st.integers(0x20, 0x7E), st.integers(0, 255))


def _frozen_positions(payload: bytes) -> set[int]:
    """Positions no byte edit may touch: the digits of E and T and the byte after them.

    A far-future E or T is not fuzzed here (the pipeline refuses it, the reference would not).
    """
    frozen: set[int] = set()
    for m in _TIME_DIGITS.finditer(payload):
        frozen.update(range(m.start(1), m.end(1) + 1))
    return frozen


def _byte_mutation(data: st.DataObject, payload: bytes) -> bytes:
    buf = bytearray(payload)
    if data.draw(st.integers(0, 9), label="truncate?") == 0:
        return bytes(buf[: data.draw(st.integers(0, max(0, len(buf) - 1)), label="cut")])
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        if not buf:
            break
        frozen = _frozen_positions(bytes(buf))
        pos = data.draw(st.integers(0, len(buf) - 1), label="pos")
        if pos in frozen:
            continue
        action = data.draw(st.sampled_from(["replace", "replace", "delete", "insert"]))
        if action == "replace":
            buf[pos] = data.draw(_EDIT_BYTE, label="byte")
        elif action == "delete":
            del buf[pos]
        elif pos - 1 not in frozen:  # never extend a time field by inserting before/after it
            buf.insert(pos, data.draw(_EDIT_BYTE, label="byte"))
    return bytes(buf)


_ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
_CANONICAL_NUMBER = st.builds(
    lambda whole, frac: f"{whole}.{frac}" if frac else str(whole),
    st.integers(0, 10**6),
    st.one_of(st.just(""), st.from_regex(r"[0-9]{1,8}", fullmatch=True)),
)
_JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _ASCII,
    _CANONICAL_NUMBER,
    st.sampled_from(["-1", "nan", "inf", "1e3", "", "0", "0.00000000", " 1", "0x10"]),
)
_JSON_KEYS = st.sampled_from(
    ["a", "b", "s", "u", "U", "pu", "p", "q", "m", "x", "stream", "data", "id"]
)
_JSON_VALUE = st.recursive(
    _JSON_SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_JSON_KEYS, inner, max_size=4)
    ),
    max_leaves=12,
)


def _time_value(data: st.DataObject, original: Any) -> Any:
    """A replacement for E or T: another type, or an int at most seconds later (or any earlier)."""
    if type(original) is int:
        return data.draw(
            st.one_of(
                st.integers(original - 10**9, original + 2_000),
                st.sampled_from([0, -1]),
                st.none(),
                st.just(str(original)),
                st.just(float(original)),
                st.just([original]),
            ),
            label="time",
        )
    return data.draw(st.one_of(st.none(), _ASCII), label="time")


def _level_mutation(data: st.DataObject, levels: list) -> list:
    levels = list(levels)
    action = data.draw(
        st.sampled_from(["qty", "price", "drop", "dup", "add", "shape", "bare", "zero"])
    )
    if not levels and action not in ("add", "bare"):
        action = "add"
    i = data.draw(st.integers(0, max(0, len(levels) - 1)), label="level")
    if action == "qty":
        levels[i] = [levels[i][0], data.draw(_JSON_SCALAR)]
    elif action == "price":
        levels[i] = [data.draw(_JSON_SCALAR), levels[i][1]]
    elif action == "zero":
        levels[i] = [levels[i][0], "0.00000000"]
    elif action == "drop":
        del levels[i]
    elif action == "dup":
        levels.insert(i, list(levels[i]))
    elif action == "add":
        levels.insert(i, [data.draw(_CANONICAL_NUMBER), data.draw(_CANONICAL_NUMBER)])
    elif action == "shape":
        levels[i] = data.draw(
            st.one_of(st.just(levels[i][:1]), st.just([*levels[i], "1"]), _JSON_SCALAR)
        )
    else:
        return data.draw(_JSON_VALUE, label="levels")
    return levels


def _json_mutation(data: st.DataObject, payload: bytes, snapshot: bool) -> bytes:
    obj = json.loads(payload)
    target = obj if snapshot or not isinstance(obj.get("data"), dict) else obj["data"]
    where = "body" if snapshot else data.draw(st.sampled_from(["data", "data", "data", "envelope"]))
    if where == "envelope":
        action = data.draw(
            st.sampled_from(["stream", "no-data", "data-type", "no-stream", "extra"])
        )
        if action == "stream":
            symbol, _, _ = obj["stream"].partition("@")
            suffix = data.draw(
                st.sampled_from(
                    ["kline_1m", "depth5", "depth20@100ms", "ticker", "trade", "aggTrade",
                     "bookTicker", "markPrice@1s", "depth@100ms", "depth", "", "@@"]
                )
            )  # fmt: skip
            obj["stream"] = data.draw(
                st.sampled_from([f"{symbol}@{suffix}", f"x{symbol}@{suffix}"])
            )
        elif action == "no-data":
            del obj["data"]
        elif action == "data-type":
            obj["data"] = data.draw(st.one_of(_JSON_SCALAR, st.lists(_JSON_SCALAR, max_size=3)))
        elif action == "no-stream":
            del obj["stream"]
        else:
            obj[data.draw(_JSON_KEYS)] = data.draw(_JSON_VALUE)
        return json.dumps(obj, separators=(",", ":")).encode()
    keys = sorted(target)
    key = data.draw(st.sampled_from(keys), label="key")
    action = data.draw(st.sampled_from(["delete", "retype", "levels", "rename"]))
    if action == "delete":
        del target[key]
    elif action == "rename":
        new_key = data.draw(st.sampled_from(["x", key.upper(), key.lower(), key + "_"]))
        if new_key not in ("E", "T"):
            target[new_key] = target.pop(key)
    elif key in ("E", "T"):
        target[key] = _time_value(data, target[key])
    elif action == "levels" and isinstance(target[key], list):
        target[key] = _level_mutation(data, target[key])
    else:
        target[key] = data.draw(_JSON_VALUE, label="value")
    return json.dumps(obj, separators=(",", ":")).encode()


_JUNK_KIND = st.sampled_from(["bytes", "json", "control", "unknown-stream"] + ["forged"] * 4)
_STEP_KIND = st.sampled_from(["diff", "diff", "diff", "snapshot", "tape"])


def _junk(data: st.DataObject, h: Harness, ts_recv_ns: int) -> bytes:
    """Return a frame that was never on the tape: bytes, JSON, control replies, forged events."""
    kind = data.draw(_JUNK_KIND)
    if kind == "bytes":
        return data.draw(st.binary(max_size=120))
    if kind == "json":
        return json.dumps(data.draw(_JSON_VALUE)).encode()
    if kind == "control":
        return json.dumps(
            data.draw(
                st.sampled_from(
                    [{"result": None, "id": 1}, {"result": [], "id": 7}, {"code": 2, "msg": "x"},
                     {"error": {"code": 0, "msg": "Unknown property"}, "id": 3}, {"id": None}]
                )
            )
        ).encode()  # fmt: skip
    now_ms = h.pipeline.exchange_time_ms or ts_recv_ns // 1_000_000
    symbol = data.draw(st.sampled_from([*h.stream.symbols, "NOSUCHCOIN"]))
    if kind == "unknown-stream":
        return json.dumps(
            {"stream": f"{symbol.lower()}@kline_1m", "data": {"e": "kline", "E": now_ms}}
        ).encode()
    return _forged_diff(data, h, symbol, now_ms)


def _near_id(ref: RefSync | None) -> int:
    """Return the update id the reference's stream is at (what forged ids are drawn around)."""
    if ref is None:
        return 10**9
    if ref.last_id is not None:
        return ref.last_id
    if ref.buffer:
        return ref.buffer[-1].final_id
    return ref.snapshot.last_update_id if ref.snapshot is not None else 10**9


# (tenths of a price unit from mid, quantity); strategies built once: building them per draw
# costs more than the engine's work
_FORGED_LEVELS = st.lists(
    st.tuples(st.integers(-50, 50), st.sampled_from(["0", "0.5", "1.25", "0.00000000", "3"])),
    max_size=4,
)
_ID_OFFSET = st.integers(-5, 3)
_FINAL_OFFSET = st.integers(-1, 5)
_SNAPSHOT_OFFSET = st.integers(-6, 4)
_E_OFFSET = st.integers(-2_000, 1_000)
_PU = st.sampled_from(["last", "last", "U-1", "last-1"])


def _forged_levels(data: st.DataObject, ref: RefSync | None) -> tuple[list, list]:
    """Levels within a few ticks of mid: new, changed, deleted, and crossing ones."""
    mid = Decimal(0)
    if ref is not None:
        bid, ask = ref.best()
        mid = (bid + ask) / 2 if bid is not None and ask is not None else (bid or ask or mid)
    sides = []
    for label in ("bids", "asks"):
        levels = data.draw(_FORGED_LEVELS, label=label)
        sides.append(
            [[format(max(Decimal(0), mid + Decimal(t) / 10), "f"), qty] for t, qty in levels]
        )
    return sides[0], sides[1]


def _forged_diff(data: st.DataObject, h: Harness, symbol: str, now_ms: int) -> bytes:
    """A diff near the current book: gaps, stale ids, duplicates, crossed levels, deletions."""
    ref = h.refs.get(symbol)
    last_id = _near_id(ref)
    first = last_id + data.draw(_ID_OFFSET, label="U")
    final = first + data.draw(_FINAL_OFFSET, label="u")
    bids, asks = _forged_levels(data, ref)
    body: dict[str, Any] = {
        "e": "depthUpdate",
        "E": now_ms + data.draw(_E_OFFSET, label="E"),
        "s": symbol,
        "U": first,
        "u": final,
        "b": bids,
        "a": asks,
    }
    if h.usdm:
        pu = data.draw(_PU, label="pu")
        body["pu"] = {"last": last_id, "U-1": first - 1, "last-1": last_id - 1}[pu]
    stream = f"{symbol.lower()}@depth@100ms"
    return json.dumps({"stream": stream, "data": body}, separators=(",", ":")).encode()


def _forged_snapshot(data: st.DataObject, h: Harness, symbol: str, now_ms: int) -> bytes:
    """A REST snapshot near the stream's ids: too old, bracketing, ahead; possibly crossed."""
    ref = h.refs.get(symbol)
    bids, asks = _forged_levels(data, ref)
    body: dict[str, Any] = {
        "lastUpdateId": _near_id(ref) + data.draw(_SNAPSHOT_OFFSET, label="lastUpdateId"),
        "bids": bids,
        "asks": asks,
    }
    if h.usdm:
        body["E"] = body["T"] = now_ms
    return json.dumps(body, separators=(",", ":")).encode()


_OP = st.sampled_from(
    ["keep"] * 4 + ["drop", "dup", "swap", "bytes", "bytes", "json", "json", "junk", "junk"]
)


def _window(data: st.DataObject, h: Harness, frames: tuple[TapeFrame, ...]) -> list[Item]:
    items: list[Item] = []
    i = 0
    while i < len(frames):
        frame = frames[i]
        clean = Item(frame.payload, frame.ts_recv_ns, frame.snapshot_symbol)
        op = data.draw(_OP, label="op")
        event(f"op {op}")
        if op == "keep":
            items.append(clean)
        elif op == "dup":
            items += [clean, clean]
        elif op == "swap" and i + 1 < len(frames):
            nxt = frames[i + 1]
            items += [Item(nxt.payload, nxt.ts_recv_ns, nxt.snapshot_symbol), clean]
            i += 1
        elif op == "bytes":
            mutated = _byte_mutation(data, frame.payload)
            items.append(Item(mutated, frame.ts_recv_ns, frame.snapshot_symbol, frame.payload))
        elif op == "json":
            mutated = _json_mutation(data, frame.payload, frame.snapshot_symbol is not None)
            items.append(Item(mutated, frame.ts_recv_ns, frame.snapshot_symbol, frame.payload))
        elif op == "junk":
            items.append(Item(_junk(data, h, frame.ts_recv_ns), frame.ts_recv_ns, junk=True))
            items.append(clean)
        i += 1
    return items


# ------------------------------------------------------------------------------- properties


@fuzz_settings(ci_examples=40, deep_examples=1500)
@given(data=st.data())
def test_mutated_tape_frames_are_counted_and_never_corrupt_a_book(
    streams: dict[str, Stream], data: st.DataObject
) -> None:
    count(SUITE)
    stream = streams[data.draw(st.sampled_from(sorted(streams)), label="tape")]
    frames = stream.frames
    width = data.draw(st.integers(1, 40), label="window")
    tail = data.draw(st.integers(10, 300), label="tail")
    start = data.draw(st.integers(0, min(1500, len(frames) - width - tail)), label="start")
    fresh_at = data.draw(st.integers(0, tail - 1), label="fresh snapshot at")
    h = Harness(stream)

    for frame in frames[:start]:
        h.truth_feed(frame)
        assert h.deliver(Item(frame.payload, frame.ts_recv_ns, frame.snapshot_symbol))
    window = frames[start : start + width]
    for item in _window(data, h, window):
        if not h.deliver(item):
            event("mutation not judged by the reference: recorded frame sent instead")
            assert item.original is not None or item.junk
            if item.original is not None:
                h.deliver(Item(item.original, item.ts_recv_ns, item.snapshot_symbol))
    for frame in window:
        h.truth_feed(frame)
    h.check_books()

    clean_diffs_after: set[str] = set()
    for n, frame in enumerate(frames[start + width : start + width + tail]):
        if n == fresh_at:
            for symbol in stream.symbols:
                fresh = h.fresh_snapshot(symbol, frame.ts_recv_ns)
                if fresh is not None:
                    assert h.deliver(fresh)
            h.check_books()
        h.truth_feed(frame)
        assert h.deliver(Item(frame.payload, frame.ts_recv_ns, frame.snapshot_symbol))
        diff = _clean_verdict(frame.payload, h.usdm).diff if frame.snapshot_symbol is None else None
        if diff is not None:
            clean_diffs_after.add(diff.symbol)
    h.check_books()
    count(SUITE, "frames", h.frames_fed)

    if h.semantic:
        event("a mutation changed a diff's content: compared with the reference only")
        return
    for symbol, md in h.pipeline.symbols.items():
        if md.book_valid and symbol in clean_diffs_after:
            event("valid at the end after detectable damage: compared with the clean stream")
            bids, asks = h.truth[symbol].levels()
            assert md.book.levels("bid") == bids, symbol
            assert md.book.levels("ask") == asks, symbol


@fuzz_settings(ci_examples=60, deep_examples=3000)
@given(data=st.data())
def test_forged_diffs_and_snapshots_follow_the_sync_rules(
    streams: dict[str, Stream], data: st.DataObject
) -> None:
    """Ids around the book's (stale, duplicate, gap, bracket), crossing levels, early snapshots."""
    count(SUITE)
    stream = streams[data.draw(st.sampled_from(sorted(streams)), label="tape")]
    h = Harness(stream)
    frames = iter(stream.frames)
    for frame in frames:  # up to the first book that is live
        h.truth_feed(frame)
        assert h.deliver(Item(frame.payload, frame.ts_recv_ns, frame.snapshot_symbol))
        if any(ref.live for ref in h.refs.values()):
            break
    live = [s for s, ref in h.refs.items() if ref.live]
    steps = data.draw(st.integers(1, 60), label="steps")
    for _ in range(steps):
        kind = data.draw(_STEP_KIND)
        frame = next(frames)
        now_ms = h.pipeline.exchange_time_ms or frame.ts_recv_ns // 1_000_000
        symbol = data.draw(st.sampled_from(live), label="symbol")
        if kind == "tape":
            item = Item(frame.payload, frame.ts_recv_ns, frame.snapshot_symbol)
        elif kind == "diff":
            item = Item(_forged_diff(data, h, symbol, now_ms), frame.ts_recv_ns, junk=True)
        else:
            payload = _forged_snapshot(data, h, symbol, now_ms)
            item = Item(payload, frame.ts_recv_ns, symbol, junk=True)
        assert h.deliver(item)
    h.check_books()
    count(SUITE, "frames", h.frames_fed)


_STREAM_NAMES = st.sampled_from(
    ["btcusdt@depth@100ms", "btcusdt@trade", "btcusdt@aggTrade", "btcusdt@bookTicker",
     "btcusdt@markPrice", "!serverShutdown", "x@y"]
)  # fmt: skip
_ANY_FRAME = st.one_of(
    st.binary(max_size=200),
    _JSON_VALUE.map(lambda v: json.dumps(v).encode()),
    st.builds(
        lambda stream, data: json.dumps({"stream": stream, "data": data}).encode(),
        _STREAM_NAMES,
        _JSON_VALUE,
    ),
)


@pytest.mark.parametrize("market", [Market.SPOT, Market.USDM])
@fuzz_settings(ci_examples=100, deep_examples=5000)
@given(payloads=st.lists(_ANY_FRAME, min_size=1, max_size=20))
def test_random_frames_never_raise_and_each_is_counted_once(
    market: Market, payloads: list[bytes]
) -> None:
    count(SUITE)
    count(SUITE, "frames", len(payloads))
    pipeline = MarketDataPipeline(market, ["BTCUSDT"], FOLD)
    usdm = market is Market.USDM
    for n, payload in enumerate(payloads):
        before = dict(pipeline.decoder.counters)
        pipeline.on_frame(payload, 1_723_161_000_000_000_000 + n)
        changed = {k: v - before[k] for k, v in pipeline.decoder.counters.items() if v != before[k]}
        assert sum(changed.values()) == 1 and len(changed) == 1, (payload, changed)
        verdict = classify(payload, usdm)
        if verdict.counter != AMBIGUOUS:
            assert changed == {verdict.counter: 1}, (payload, verdict, changed)
    assert pipeline.stats.frames == len(payloads)
    md = pipeline.symbols["BTCUSDT"]
    assert not md.book_valid  # no snapshot ever came
    pipeline.on_snapshot("BTCUSDT", payloads[0], 1)  # a frame is no snapshot: never raises


@fuzz_settings(ci_examples=100, deep_examples=3000)
@given(body=st.one_of(st.binary(max_size=200), _JSON_VALUE.map(lambda v: json.dumps(v).encode())))
def test_random_snapshot_bodies_never_raise_and_are_counted(body: bytes) -> None:
    count(SUITE)
    for market in (Market.SPOT, Market.USDM):
        pipeline = MarketDataPipeline(market, ["BTCUSDT"], FOLD)
        pipeline.on_snapshot("BTCUSDT", body, 1)
        verdict = classify_snapshot(body, market is Market.USDM)
        stats = pipeline.stats
        assert stats.malformed_snapshots + stats.snapshots == 1
        if verdict == MALFORMED:
            assert stats.malformed_snapshots == 1
        elif verdict != AMBIGUOUS:
            assert stats.snapshots == 1


def test_a_frame_dated_a_day_ahead_does_not_close_a_day_of_rows(
    streams: dict[str, Stream],
) -> None:
    stream = streams["spot_btcusdt"]
    pipeline = MarketDataPipeline(stream.market, stream.symbols, FoldConfig())
    frames = stream.frames[:1000]
    for frame in frames:
        if frame.snapshot_symbol is not None:
            pipeline.on_snapshot(frame.snapshot_symbol, frame.payload, frame.ts_recv_ns)
        else:
            pipeline.on_frame(frame.payload, frame.ts_recv_ns)
    trade = next(f for f in reversed(frames) if b"@trade" in f.payload[:40])
    forged = json.loads(trade.payload)
    forged["data"]["E"] += 86_400_000
    forged["data"]["t"] += 1
    folder = pipeline.symbols["BTCUSDT"].folder
    closed_before = folder.rows_closed
    exchange_time_before = pipeline.exchange_time_ms
    pipeline.on_frame(json.dumps(forged).encode(), trade.ts_recv_ns)
    # the contract: an event time implausibly far ahead of the exchange clock carried on by
    # receive time is malformed (counted, logged, dropped) and does not move time
    assert folder.rows_closed - closed_before < 3_600
    assert pipeline.stats.malformed_times == 1
    assert pipeline.exchange_time_ms == exchange_time_before
