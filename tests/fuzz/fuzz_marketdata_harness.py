"""The market-data fuzz suite's harness: real tape streams, and the engine's pipeline fed side by
side with the independent reference (fuzz_book_reference), compared after every frame."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from fuzz_book_reference import (
    AGG_TRADE,
    AMBIGUOUS,
    DEPTH,
    MALFORMED,
    TRADE,
    RefSync,
    Snapshot,
    Verdict,
    classify,
    classify_snapshot,
)

from engine.config import FoldConfig
from engine.marketdata import MarketDataPipeline
from engine.model import Market
from engine.tape import TapeFrame, read_tape
from exchange.binance.sync import SyncState

_BOOK_TICKER_KEEP_EVERY = 10  # bookTicker is most of a tape and touches no book: thin it out
FOLD = FoldConfig(rows_capacity=600, candles_capacity=60)  # small rings: cheap to build per example


@dataclass(frozen=True)
class Stream:
    name: str
    market: Market
    symbols: tuple[str, ...]
    frames: tuple[TapeFrame, ...]


def _stream_symbol(payload: bytes) -> str | None:
    if not payload.startswith(b'{"stream":"'):
        return None
    name = payload[11 : payload.find(b'"', 11)]
    at = name.find(b"@")
    return name[:at].decode().upper() if at > 0 else None


def _load_stream(name: str, path: Path, lines: int) -> Stream:
    frames: list[TapeFrame] = []
    symbols: dict[str, None] = {}
    market = Market.SPOT
    for i, frame in enumerate(itertools.islice(read_tape(path), lines)):
        if frame.snapshot_symbol is not None:
            symbols.setdefault(frame.snapshot_symbol, None)
        else:
            if b'"pu":' in frame.payload and b"depthUpdate" in frame.payload:
                market = Market.USDM
            if b"@bookTicker" in frame.payload[:40] and i % _BOOK_TICKER_KEEP_EVERY:
                continue
            if (symbol := _stream_symbol(frame.payload)) is not None:
                symbols.setdefault(symbol, None)
        frames.append(frame)
    return Stream(name, market, tuple(symbols), tuple(frames))



# ------------------------------------------------------------------------------- the harness

_CLEAN_VERDICTS: dict[tuple[bool, bytes], Verdict] = {}
_CLEAN_SNAPSHOTS: dict[tuple[bool, bytes], Snapshot] = {}


def _clean_snapshot(payload: bytes, usdm: bool) -> Snapshot:
    key = (usdm, payload)
    snap = _CLEAN_SNAPSHOTS.get(key)
    if snap is None:
        parsed = classify_snapshot(payload, usdm)
        assert isinstance(parsed, Snapshot), payload[:200]
        snap = _CLEAN_SNAPSHOTS[key] = parsed
    return snap


def _clean_verdict(payload: bytes, usdm: bool) -> Verdict:
    key = (usdm, payload)
    verdict = _CLEAN_VERDICTS.get(key)
    if verdict is None:
        verdict = _CLEAN_VERDICTS[key] = classify(payload, usdm)
        assert verdict.counter not in (AMBIGUOUS, MALFORMED), (verdict, payload[:200])
    return verdict


@dataclass
class Item:
    """One delivery: a websocket frame, or a REST snapshot body of `snapshot_symbol`."""

    payload: bytes
    ts_recv_ns: int
    snapshot_symbol: str | None = None
    original: bytes | None = None  # the recorded bytes a mutation started from
    junk: bool = False
    built: Snapshot | None = None  # a snapshot this test built itself (no need to parse it)


@dataclass
class Harness:
    stream: Stream
    pipeline: MarketDataPipeline = field(init=False)
    refs: dict[str, RefSync] = field(init=False)
    truth: dict[str, RefSync] = field(init=False)  # the unmutated stream's books
    semantic: bool = False  # a mutation changed what a diff or snapshot says
    last_clean_diff_ms: dict[str, int] = field(default_factory=dict)  # E of the last clean diff
    frames_fed: int = 0

    def __post_init__(self) -> None:
        self.usdm = self.stream.market is Market.USDM
        self.pipeline = MarketDataPipeline(self.stream.market, self.stream.symbols, FOLD)
        spot = not self.usdm
        self.refs = {s: RefSync(spot) for s in self.stream.symbols}
        self.truth = {s: RefSync(spot) for s in self.stream.symbols}

    # -- inputs -------------------------------------------------------------------------------
    def truth_feed(self, frame: TapeFrame) -> None:
        if frame.snapshot_symbol is not None:
            snap = _clean_snapshot(frame.payload, self.usdm)
            self.truth[frame.snapshot_symbol].on_snapshot(snap)
            return
        diff = _clean_verdict(frame.payload, self.usdm).diff
        if diff is not None and diff.symbol in self.truth:
            self.truth[diff.symbol].on_diff(diff)
            self.last_clean_diff_ms[diff.symbol] = diff.ts_event_ms

    def deliver(self, item: Item) -> bool:
        """Feed one item to the engine and the reference; False when the reference cannot judge it."""
        if item.snapshot_symbol is not None:
            return self._deliver_snapshot(item)
        verdict = (
            _clean_verdict(item.payload, self.usdm)
            if item.original is None and not item.junk
            else classify(item.payload, self.usdm)
        )
        if verdict.counter == AMBIGUOUS:
            return False
        if item.original is not None:
            before = _clean_verdict(item.original, self.usdm)
            if verdict.diff is not None and verdict.diff != before.diff:
                self.semantic = True
        if item.junk and verdict.diff is not None:
            self.semantic = True
        pipeline = self.pipeline
        counters_before = dict(pipeline.decoder.counters)
        unknown_before = pipeline.stats.unknown_symbol
        pipeline.on_frame(item.payload, item.ts_recv_ns)  # never raises
        self.frames_fed += 1
        changed = {
            kind: n - counters_before[kind]
            for kind, n in pipeline.decoder.counters.items()
            if n != counters_before[kind]
        }
        assert changed == {verdict.counter: 1}, (verdict, changed, item.payload[:300])
        tracked = verdict.symbol in self.refs
        if verdict.counter in (DEPTH, TRADE, AGG_TRADE) and not tracked:
            assert pipeline.stats.unknown_symbol == unknown_before + 1
        if verdict.diff is not None and tracked:
            self.refs[verdict.diff.symbol].on_diff(verdict.diff)
        self.check_states(item)
        return True

    def _deliver_snapshot(self, item: Item) -> bool:
        symbol = item.snapshot_symbol
        assert symbol is not None
        if item.built is not None:
            snap: Snapshot | str = item.built
        elif item.original is None and not item.junk:
            snap = _clean_snapshot(item.payload, self.usdm)
        else:
            snap = classify_snapshot(item.payload, self.usdm)
        if snap == AMBIGUOUS:
            return False
        if item.original is not None and snap != _clean_snapshot(item.original, self.usdm):
            self.semantic = True
        stats = self.pipeline.stats
        malformed_before, loaded_before = stats.malformed_snapshots, stats.snapshots
        self.pipeline.on_snapshot(symbol, item.payload, item.ts_recv_ns)  # never raises
        if snap == MALFORMED:
            assert (stats.malformed_snapshots, stats.snapshots) == (
                malformed_before + 1,
                loaded_before,
            ), item.payload[:300]
        else:
            assert isinstance(snap, Snapshot)
            assert (stats.malformed_snapshots, stats.snapshots) == (
                malformed_before,
                loaded_before + 1,
            )
            self.refs[symbol].on_snapshot(snap)
        self.check_states(item)
        return True

    def fresh_snapshot(self, symbol: str, ts_recv_ns: int) -> Item | None:
        """Return the REST snapshot Binance would send now: the unmutated stream's book."""
        truth = self.truth[symbol]
        if not truth.live or symbol not in self.last_clean_diff_ms:
            return None
        assert truth.last_id is not None
        body: dict[str, Any] = {"lastUpdateId": truth.last_id}
        if self.usdm:
            body["E"] = body["T"] = self.last_clean_diff_ms[symbol]
        body["bids"] = [[format(p, "f"), format(q, "f")] for p, q in truth.bids.items()]
        body["asks"] = [[format(p, "f"), format(q, "f")] for p, q in truth.asks.items()]
        built = Snapshot(truth.last_id, tuple(truth.bids.items()), tuple(truth.asks.items()))
        payload = json.dumps(body, separators=(",", ":")).encode()
        return Item(payload, ts_recv_ns, symbol, built=built)

    # -- checks -------------------------------------------------------------------------------
    def check_states(self, item: Item) -> None:
        for symbol, md in self.pipeline.symbols.items():
            ref = self.refs[symbol]
            sync = md.sync
            context = (symbol, item.payload[:300])
            assert (sync.state is SyncState.LIVE) == ref.live, context
            assert sync.last_update_id == (ref.last_id if ref.live else None), context
            assert sync.buffered == len(ref.buffer), context
            assert md.book_valid == ref.valid, context
            if md.book_valid:
                bid, ask = md.book.best_bid(), md.book.best_ask()
                assert not bid >= ask, (context, bid, ask)  # NaN (an empty side) passes
                ref_bid, ref_ask = ref.best()
                assert _same(bid, ref_bid), context
                assert _same(ask, ref_ask), context

    def check_books(self) -> None:
        for symbol, md in self.pipeline.symbols.items():
            bids, asks = self.refs[symbol].levels()
            assert md.book.levels("bid") == bids, symbol
            assert md.book.levels("ask") == asks, symbol


def _same(engine_price: float, ref_price: Decimal | None) -> bool:
    return math.isnan(engine_price) if ref_price is None else engine_price == float(ref_price)


# ------------------------------------------------------------------------------- mutations

