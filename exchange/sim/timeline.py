"""Load recorded tapes into one immutable replay timeline of pre-split, ready-to-send frames.

Loading does all the parsing the replay would otherwise repeat per send: each websocket frame
keeps the recorded envelope bytes (sent as-is on combined streams) and the raw ``data`` bytes
(sent as-is on raw ``/ws`` streams); depth diffs are parsed once for their ids and levels, which
the simulator's own book needs. REST snapshots are kept per symbol, not on the send timeline.

Tapes whose trades are recorded as ``<s>@trade`` only get a synthesized ``<s>@aggTrade`` stream
(one aggTrade per trade, ids contiguous), because USDⓈ-M clients normally read aggTrade on
``/market`` and the recorded tapes carry none. Synthesized frames are the only frames whose bytes
are not recorded ones.
"""

from __future__ import annotations

import heapq
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from engine.model import Market
from engine.tape import read_tape

DIFF_STREAM_RE = re.compile(r"^([a-z0-9_]+)@depth(?:@(\d+)ms)?$")
_ENVELOPE_HEAD = b'{"stream":"'
_OFFSET_SAMPLE = 2000  # frames per tape used to estimate exchange-vs-recorder clock offset


@dataclass(frozen=True, slots=True)
class DepthDiffInfo:
    """Ids and levels of one diff-depth event, levels as the wire's [price, qty] strings."""

    first_update_id: int  # U
    final_update_id: int  # u
    prev_final_update_id: int | None  # pu (USDⓈ-M only)
    bids: list[list[str]]
    asks: list[list[str]]
    ts_event_ms: int  # E
    ts_trans_ms: int | None  # T (USDⓈ-M only)


@dataclass(frozen=True, slots=True)
class Frame:
    """One websocket frame of the timeline, pre-split for sending without re-encoding."""

    ts_recv_ns: int
    market: Market
    stream: str  # recorded stream name, e.g. "btcusdt@depth@100ms"
    symbol: str | None  # upper-case, None for all-market streams ("!bookTicker")
    envelope: bytes  # recorded combined-stream envelope
    data: bytes  # recorded raw payload (the envelope's "data" value)
    tape_index: int
    depth: DepthDiffInfo | None = None
    synthesized: bool = False

    @property
    def key(self) -> tuple[Market, str]:
        return (self.market, self.stream)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A recorded REST depth snapshot of one symbol."""

    ts_recv_ns: int
    market: Market
    symbol: str
    last_update_id: int
    bids: list[list[str]]
    asks: list[list[str]]
    ts_event_ms: int | None  # futures "E"
    ts_trans_ms: int | None  # futures "T"


@dataclass(frozen=True)
class Timeline:
    """All tapes merged by receive time, with per-symbol snapshots and clock offsets."""

    frames: list[Frame]
    snapshots: dict[tuple[Market, str], list[Snapshot]]
    markets: dict[str, set[Market]]  # symbol -> markets it is served on
    streams: frozenset[tuple[Market, str]]  # every (market, recorded stream) on the timeline
    exchange_offset_ms: list[int]  # per tape: exchange time minus recorder time
    tape_paths: list[Path] = field(default_factory=list)

    @property
    def start_ns(self) -> int:
        return self.frames[0].ts_recv_ns if self.frames else 0

    @property
    def end_ns(self) -> int:
        return self.frames[-1].ts_recv_ns if self.frames else 0

    def diff_stream_of(self, market: Market, symbol: str) -> str | None:
        """Return the recorded diff-depth stream name of a symbol, if the timeline has one."""
        for m, stream in self.streams:
            match = DIFF_STREAM_RE.match(stream)
            if m is market and match and match.group(1) == symbol.lower():
                return stream
        return None

    def depth_symbols(self) -> list[tuple[Market, str]]:
        """Return every (market, symbol) that has diff-depth frames, sorted."""
        found = {
            (m, match.group(1).upper())
            for m, s in self.streams
            if (match := DIFF_STREAM_RE.match(s)) is not None
        }
        return sorted(found)


def _split_envelope(payload: bytes) -> tuple[str, bytes] | None:
    """Return (stream, data bytes) of a compact combined-stream envelope, None if not compact."""
    if not payload.startswith(_ENVELOPE_HEAD):
        return None
    end = payload.find(b'"', len(_ENVELOPE_HEAD))
    if end < 0 or not payload.startswith(b',"data":', end + 1) or not payload.endswith(b"}"):
        return None
    stream = payload[len(_ENVELOPE_HEAD) : end].decode()
    return stream, payload[end + 9 : -1]


def envelope(stream: str, data: bytes) -> bytes:
    """Wrap a payload in a combined-stream envelope."""
    return _envelope(stream, data)


def _envelope(stream: str, data: bytes) -> bytes:
    return b'{"stream":"%s","data":%s}' % (stream.encode(), data)


def _stream_symbol(stream: str) -> str | None:
    if stream.startswith("!"):
        return None
    return stream.partition("@")[0].upper()


def _infer_usdm(stream: str, data: dict) -> bool:
    if "pu" in data or stream.partition("@")[2].startswith(("markPrice", "continuousKline")):
        return True
    return data.get("e") == "bookTicker"  # spot bookTicker has no event type


def _parse_diff(data: dict) -> DepthDiffInfo:
    return DepthDiffInfo(
        first_update_id=int(data["U"]),
        final_update_id=int(data["u"]),
        prev_final_update_id=int(data["pu"]) if "pu" in data else None,
        bids=data.get("b", []),
        asks=data.get("a", []),
        ts_event_ms=int(data.get("E", 0)),
        ts_trans_ms=int(data["T"]) if "T" in data else None,
    )


def agg_trade_bytes(trade: dict, agg_id: int, market: Market) -> bytes:
    """Return the aggTrade payload the simulator serves for one recorded trade (also used by backtests)."""
    return _agg_trade_bytes(trade, agg_id, market)


def _agg_trade_bytes(trade: dict, agg_id: int, market: Market) -> bytes:
    agg: dict = {
        "e": "aggTrade",
        "E": trade["E"],
        "s": trade["s"],
        "a": agg_id,
        "p": trade["p"],
        "q": trade["q"],
    }
    if market is Market.USDM:
        agg["nq"] = trade["q"]
    agg.update({"f": trade["t"], "l": trade["t"], "T": trade["T"], "m": trade["m"]})
    if market is Market.SPOT:
        agg["M"] = True
    return orjson.dumps(agg)


def _load_one(
    path: Path, tape_index: int, markets: Mapping[str, Market]
) -> tuple[list[Frame], list[Snapshot], int]:
    """Parse one tape into frames and snapshots; return them with the tape's clock offset (ms)."""
    raw_frames: list[tuple[int, str, bytes, bytes, DepthDiffInfo | None, dict | None]] = []
    raw_snapshots: list[tuple[int, str, dict]] = []
    usdm_votes = 0
    offsets: list[int] = []
    for tf in read_tape(path):
        if tf.snapshot_symbol is not None:
            body = orjson.loads(tf.payload)
            raw_snapshots.append((tf.ts_recv_ns, tf.snapshot_symbol, body))
            usdm_votes += "E" in body
            continue
        split = _split_envelope(tf.payload)
        parsed: dict | None = None
        if split is None:
            try:
                parsed = orjson.loads(tf.payload)
            except orjson.JSONDecodeError:
                continue  # not JSON: nothing a Binance client could receive either
            if not isinstance(parsed, dict) or "stream" not in parsed or "data" not in parsed:
                continue
            split = (parsed["stream"], orjson.dumps(parsed["data"]))
        stream, data = split
        diff = None
        trade = None
        if DIFF_STREAM_RE.match(stream) or stream.endswith("@trade") or len(offsets) < 50:
            body = parsed["data"] if parsed is not None else orjson.loads(data)
            if DIFF_STREAM_RE.match(stream):
                diff = _parse_diff(body)
            elif stream.endswith("@trade"):
                trade = body
            usdm_votes += _infer_usdm(stream, body)
            if "E" in body and len(offsets) < _OFFSET_SAMPLE:
                offsets.append(int(body["E"]) - tf.ts_recv_ns // 1_000_000)
        envelope = tf.payload if parsed is None else _envelope(stream, data)
        raw_frames.append((tf.ts_recv_ns, stream, envelope, data, diff, trade))

    tape_market = Market.USDM if usdm_votes else Market.SPOT
    has_agg = {s.partition("@")[0] for _, s, *_ in raw_frames if s.endswith("@aggTrade")}
    frames: list[Frame] = []
    next_agg_id: dict[str, int] = {}
    for ts, stream, envelope, data, diff, trade in raw_frames:
        symbol = _stream_symbol(stream)
        market = markets.get(symbol, tape_market) if symbol else tape_market
        frames.append(Frame(ts, market, stream, symbol, envelope, data, tape_index, diff))
        lower = stream.partition("@")[0]
        if trade is None or lower in has_agg or trade.get("X", "MARKET") != "MARKET":
            continue
        agg_id = next_agg_id.setdefault(lower, int(trade["t"]))
        next_agg_id[lower] = agg_id + 1
        agg_stream = f"{lower}@aggTrade"
        agg_data = _agg_trade_bytes(trade, agg_id, market)
        agg_env = _envelope(agg_stream, agg_data)
        frames.append(
            Frame(ts, market, agg_stream, symbol, agg_env, agg_data, tape_index, synthesized=True)
        )
    snapshots = [
        Snapshot(
            ts_recv_ns=ts,
            market=markets.get(sym, tape_market),
            symbol=sym,
            last_update_id=int(body["lastUpdateId"]),
            bids=body.get("bids", []),
            asks=body.get("asks", []),
            ts_event_ms=body.get("E"),
            ts_trans_ms=body.get("T"),
        )
        for ts, sym, body in raw_snapshots
        if "lastUpdateId" in body
    ]
    offset_ms = int(statistics.median(offsets)) if offsets else 0
    return frames, snapshots, offset_ms


def load_timeline(
    tapes: Iterable[str | Path], markets: Mapping[str, Market] | None = None
) -> Timeline:
    """Read tapes (files or capture folders) into one timeline merged by receive time."""
    paths = [Path(p) for p in tapes]
    if not paths:
        raise ValueError("at least one tape is needed")
    per_tape: list[list[Frame]] = []
    snapshots: dict[tuple[Market, str], list[Snapshot]] = {}
    offsets: list[int] = []
    for index, path in enumerate(paths):
        frames, snaps, offset_ms = _load_one(path, index, markets or {})
        per_tape.append(frames)
        offsets.append(offset_ms)
        for snap in snaps:
            snapshots.setdefault((snap.market, snap.symbol), []).append(snap)
    merged = list(heapq.merge(*per_tape, key=lambda f: f.ts_recv_ns))
    symbol_markets: dict[str, set[Market]] = {}
    for frame in merged:
        if frame.symbol:
            symbol_markets.setdefault(frame.symbol, set()).add(frame.market)
    for market, symbol in snapshots:
        symbol_markets.setdefault(symbol, set()).add(market)
    return Timeline(
        frames=merged,
        snapshots=snapshots,
        markets=symbol_markets,
        streams=frozenset(f.key for f in merged),
        exchange_offset_ms=offsets,
        tape_paths=paths,
    )
