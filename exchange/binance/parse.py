"""Decode Binance market-data frames (raw JSON bytes) into engine events, strictly, never raising.

One typed msgspec decoder per message kind (`strict=False` turns Binance's string numbers into
floats in C, ~5x faster than orjson + float()). A combined-stream frame is routed by its stream
name, read straight from the bytes before decoding (once a stream was seen, by one lookup of the
frame's first 40 bytes), so each frame is decoded once into the right struct, and the hot kinds
(depth, trade, aggTrade) are decoded and built into their event in a single call. Anything
else (raw `/ws` payloads, control replies, junk) takes a slower generic path. Bad frames are
counted by kind in `FrameDecoder.counters` and logged, rate-limited per (kind, stream) on the
frames' own receive time (no wall clock here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec
import structlog

from engine.events import (
    BookTickerUpdated,
    DepthDiff,
    DepthSnapshot,
    MarketEvent,
    MarkPriceUpdated,
    ServerShutdownAnnounced,
    TradePrinted,
)
from engine.model import Market

# Non-negative finite numbers: rejects "nan", "inf" and negatives at no measurable cost.
_Num = Annotated[float, msgspec.Meta(ge=0, lt=1e15)]
_Levels = list[tuple[_Num, _Num]]

DEPTH, TRADE, AGG_TRADE, BOOK_TICKER, MARK_PRICE, SHUTDOWN = (
    "depthUpdate",
    "trade",
    "aggTrade",
    "bookTicker",
    "markPriceUpdate",
    "serverShutdown",
)
CONTROL, MALFORMED, UNKNOWN = "control", "malformed", "unknown"
COUNTER_KINDS = (
    DEPTH,
    TRADE,
    AGG_TRADE,
    BOOK_TICKER,
    MARK_PRICE,
    SHUTDOWN,
    CONTROL,
    MALFORMED,
    UNKNOWN,
)

_LOG_INTERVAL_NS = 10_000_000_000  # at most one log line per (kind, stream) per 10 s
_MAX_ROUTES = 4096  # bound on cached stream names (junk names must not grow memory)
_MAX_LOG_KEYS = 1024


class MalformedFrame(ValueError):
    """A REST or websocket payload does not have the documented shape."""


# ---------------------------------------------------------------- wire structs
# gc=False: they hold scalars and lists of float pairs only, so they can never be part of a
# cycle, and keeping ~10^5 short-lived objects per second out of the cyclic collector pays.


class _Depth(msgspec.Struct, gc=False):
    E: int
    s: str
    U: int
    u: int
    b: _Levels
    a: _Levels
    pu: int | None = None  # USDⓈ-M only
    T: int | None = None  # USDⓈ-M only


class _Trade(msgspec.Struct, gc=False):
    E: int
    s: str
    t: int
    p: _Num
    q: _Num
    T: int
    m: bool


class _AggTrade(msgspec.Struct, gc=False):
    E: int
    s: str
    a: int
    p: _Num
    q: _Num
    f: int
    l: int  # Binance's name
    T: int
    m: bool


class _BookTicker(msgspec.Struct, gc=False):
    u: int
    s: str
    b: _Num
    B: _Num
    a: _Num
    A: _Num
    E: int | None = None  # spot bookTicker carries no time


class _MarkPrice(msgspec.Struct, gc=False):
    E: int
    s: str
    p: _Num
    T: int
    i: str = ""  # index price; "" on some delivery contracts
    r: str = ""  # funding rate; "" on delivery contracts


class _Shutdown(msgspec.Struct, gc=False):
    E: int


class _Snapshot(msgspec.Struct, gc=False):
    lastUpdateId: int
    bids: _Levels
    asks: _Levels
    E: int | None = None  # USDⓈ-M only
    T: int | None = None


_ABSENT = msgspec.Raw(b"")


class _Head(msgspec.Struct):
    """Generic envelope: whichever of these keys the frame has."""

    stream: str | None = None
    data: msgspec.Raw = _ABSENT  # Raw cannot sit in a union: empty means absent
    e: str | None = None
    result: msgspec.Raw = _ABSENT
    id: Any = None
    code: Any = None
    error: msgspec.Raw = _ABSENT
    u: Any = None  # spot bookTicker has no "e": recognised by u + s + b
    s: Any = None
    b: Any = None


def _envelope(data_type: type) -> type:
    return msgspec.defstruct(
        f"_Env{data_type.__name__}", [("stream", str), ("data", data_type)], gc=False
    )


_STRUCT_BY_KIND: dict[str, type] = {
    DEPTH: _Depth,
    TRADE: _Trade,
    AGG_TRADE: _AggTrade,
    BOOK_TICKER: _BookTicker,
    MARK_PRICE: _MarkPrice,
    SHUTDOWN: _Shutdown,
}

# stream-name suffix (after "<symbol>@") -> kind; depth speeds share one kind.
_KIND_BY_SUFFIX = {
    "depth": DEPTH,
    "depth@100ms": DEPTH,
    "depth@250ms": DEPTH,
    "depth@500ms": DEPTH,
    "depth@1000ms": DEPTH,
    "depth@0ms": DEPTH,
    "trade": TRADE,
    "aggTrade": AGG_TRADE,
    "bookTicker": BOOK_TICKER,
    "markPrice": MARK_PRICE,
    "markPrice@1s": MARK_PRICE,
}


# (kind, frame handler: envelope bytes + ts_recv_ns -> event; None for an unknown stream)
_Route = tuple[str, Callable[[bytes, int], MarketEvent] | None]


_STREAM_PREFIX = b'{"stream":"'
# A frame's first bytes: the prefix, the stream name and its closing quote (names up to 28
# characters), then the fixed '","data":{"e":"<kind>"' of that stream. The closing quote inside
# the window makes the window name exactly one stream, so it can key the route.
_HEAD_LEN = 40


class FrameDecoder:
    """Decode websocket frames of one market into events; count and log what it drops."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_KINDS, 0)
        # Bound only when a line is written (rare), so structlog's configuration at that time
        # applies even if it changed after this decoder was built.
        self._log = structlog.get_logger("exchange.parse")
        self._data_decoders: dict[str, msgspec.json.Decoder[Any]] = {
            kind: msgspec.json.Decoder(t, strict=False) for kind, t in _STRUCT_BY_KIND.items()
        }
        self._env_decoders: dict[str, msgspec.json.Decoder[Any]] = {
            kind: msgspec.json.Decoder(_envelope(t), strict=False)
            for kind, t in _STRUCT_BY_KIND.items()
        }
        self._head_decoder = msgspec.json.Decoder(_Head)
        self._routes: dict[bytes, _Route] = {}
        # keyed by a frame's first _HEAD_LEN bytes when they hold the whole stream name
        self._routes_by_head: dict[bytes, _Route] = {}
        self._symbols: dict[str, str] = {}
        self._log_state: dict[tuple[str, str], list[int]] = {}  # -> [last_log_ns, suppressed]
        self._builders: dict[str, Callable[[Any, int], MarketEvent]] = {
            DEPTH: self._depth,
            TRADE: self._trade,
            AGG_TRADE: self._agg_trade,
            BOOK_TICKER: self._book_ticker,
            MARK_PRICE: self._mark_price,
            SHUTDOWN: self._shutdown,
        }
        # The hot kinds decode and build in one call; the others compose decoder and builder.
        self._depth_env = self._env_decoders[DEPTH].decode
        self._trade_env = self._env_decoders[TRADE].decode
        self._agg_trade_env = self._env_decoders[AGG_TRADE].decode
        self._handlers: dict[str, Callable[[bytes, int], MarketEvent]] = {
            DEPTH: self._depth_frame,
            TRADE: self._trade_frame,
            AGG_TRADE: self._agg_trade_frame,
        }
        for kind in (BOOK_TICKER, MARK_PRICE, SHUTDOWN):
            self._handlers[kind] = self._composed(self._env_decoders[kind].decode, kind)

    # -------------------------------------------------------------- entry points

    def decode(self, payload: bytes | str, ts_recv_ns: int) -> MarketEvent | None:
        """Return the event a frame carries, or None (control, malformed, unknown: counted)."""
        try:
            if type(payload) is bytes:
                # Fast path: the frame's first bytes (prefix, stream name, its closing quote)
                # name a route seen before; one slice and one lookup instead of a search.
                route = self._routes_by_head.get(payload[:_HEAD_LEN])
                if route is not None:
                    kind, handler = route
                    event = handler(payload, ts_recv_ns)  # type: ignore[misc]
                    self.counters[kind] += 1
                    return event
            else:  # str text frame, bytearray, memoryview
                payload = payload.encode() if isinstance(payload, str) else bytes(payload)
            if payload.startswith(_STREAM_PREFIX):
                end = payload.find(b'"', 11)
                name = payload[11:end]
                route = self._routes.get(name)
                if route is None:
                    route = self._route(name)
                kind, handler = route
                if handler is not None:
                    if 11 < end < _HEAD_LEN and len(self._routes_by_head) < _MAX_ROUTES:
                        self._routes_by_head[payload[:_HEAD_LEN]] = route
                    event = handler(payload, ts_recv_ns)
                    self.counters[kind] += 1
                    return event
            return self._decode_generic(payload, ts_recv_ns)
        except (msgspec.DecodeError, msgspec.ValidationError, MalformedFrame) as exc:
            self._drop(MALFORMED, self._stream_of(payload), str(exc), ts_recv_ns)
            return None
        except Exception as exc:  # noqa: BLE001 (never raise into the socket reader)
            self._drop(MALFORMED, self._stream_of(payload), repr(exc), ts_recv_ns)
            return None

    def decode_snapshot(self, payload: bytes, symbol: str, ts_recv_ns: int) -> DepthSnapshot:
        """Decode a REST depth snapshot; raise MalformedFrame with the reason on bad input."""
        try:
            snap = msgspec.json.decode(payload, type=_Snapshot, strict=False)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise MalformedFrame(f"depth snapshot of {symbol}: {exc}") from None
        if self.market is Market.USDM and snap.E is None:
            raise MalformedFrame(f"depth snapshot of {symbol}: USDⓈ-M snapshot without E")
        return DepthSnapshot(
            symbol=self._symbol(symbol),
            last_update_id=snap.lastUpdateId,
            ts_event_ms=snap.E,
            ts_recv_ns=ts_recv_ns,
            bids=snap.bids,
            asks=snap.asks,
        )

    # ------------------------------------------------------------ routing

    def _route(self, name: bytes) -> _Route:
        text = name.decode("utf-8", "replace")
        _, at, suffix = text.partition("@")
        kind = _KIND_BY_SUFFIX.get(suffix) if at else None
        if kind is None and text in ("!serverShutdown", "serverShutdown"):
            kind = SHUTDOWN
        route: _Route = (kind, self._handlers[kind]) if kind else (UNKNOWN, None)
        if len(self._routes) < _MAX_ROUTES:
            self._routes[name] = route
        return route

    def _decode_generic(self, payload: bytes, ts_recv_ns: int) -> MarketEvent | None:
        head = self._head_decoder.decode(payload)
        if head.stream is None:  # raw /ws payload or a control reply: dispatch on "e"
            return self._from_raw(head, payload, "", ts_recv_ns)
        if not head.data:
            raise MalformedFrame("combined-stream frame without data")
        kind = self._route(head.stream.encode())[0]
        if kind == UNKNOWN:
            # Only the shutdown notice is trusted by its "e" on an unknown stream name: a
            # USDⓈ-M partial-depth stream also says "depthUpdate" but is no diff.
            if self._head_decoder.decode(head.data).e != SHUTDOWN:
                self._drop(UNKNOWN, head.stream, "unsupported stream", ts_recv_ns)
                return None
            kind = SHUTDOWN
        event = self._builders[kind](self._data_decoders[kind].decode(head.data), ts_recv_ns)
        self.counters[kind] += 1
        return event

    def _from_raw(
        self, head: _Head, raw: bytes, stream: str, ts_recv_ns: int
    ) -> MarketEvent | None:
        kind = head.e
        if kind is None:
            if head.code is not None or head.error:
                self.counters[CONTROL] += 1
                self._note(
                    "control_error", stream, raw[:200].decode("utf-8", "replace"), ts_recv_ns
                )
                return None
            if head.id is not None or head.result:
                self.counters[CONTROL] += 1  # subscribe ack / LIST_SUBSCRIPTIONS reply
                return None
            if head.u is not None and head.s is not None and head.b is not None:
                kind = BOOK_TICKER  # spot bookTicker: no "e"
        builder = self._builders.get(kind or "")
        if builder is None:
            self._drop(UNKNOWN, stream, f"event type {kind!r}", ts_recv_ns)
            return None
        data = self._data_decoders[kind].decode(raw)  # type: ignore[index]
        event = builder(data, ts_recv_ns)
        self.counters[kind] += 1  # type: ignore[index]
        return event

    # ------------------------------------------------------------ builders

    def _composed(
        self, decode_envelope: Callable[[bytes], Any], kind: str
    ) -> Callable[[bytes, int], MarketEvent]:
        build = self._builders[kind]

        def handle(payload: bytes, ts_recv_ns: int) -> MarketEvent:
            return build(decode_envelope(payload).data, ts_recv_ns)

        return handle

    def _depth_frame(self, payload: bytes, ts_recv_ns: int) -> DepthDiff:
        d = self._depth_env(payload).data
        if d.pu is None and self.market is Market.USDM:
            raise MalformedFrame("USDⓈ-M depthUpdate without pu")
        s = d.s
        return DepthDiff(
            self._symbols.get(s) or self._symbol(s), d.E, ts_recv_ns, d.U, d.u, d.pu, d.b, d.a
        )

    def _trade_frame(self, payload: bytes, ts_recv_ns: int) -> TradePrinted:
        d = self._trade_env(payload).data
        s = d.s
        t = d.t
        return TradePrinted(
            self._symbols.get(s) or self._symbol(s), d.E, d.T, ts_recv_ns, t, d.p, d.q, d.m, 1, t
        )

    def _agg_trade_frame(self, payload: bytes, ts_recv_ns: int) -> TradePrinted:
        return self._agg_trade(self._agg_trade_env(payload).data, ts_recv_ns)

    def _symbol(self, s: str) -> str:
        """Return the canonical (upper-case, shared) symbol string; callers try the cache first."""
        sym = s.upper()
        if len(self._symbols) < _MAX_ROUTES:
            self._symbols[s] = sym
        return sym

    def _depth(self, d: _Depth, ts_recv_ns: int) -> DepthDiff:
        if d.pu is None and self.market is Market.USDM:
            raise MalformedFrame("USDⓈ-M depthUpdate without pu")
        return DepthDiff(
            self._symbols.get(d.s) or self._symbol(d.s), d.E, ts_recv_ns, d.U, d.u, d.pu, d.b, d.a
        )

    def _trade(self, d: _Trade, ts_recv_ns: int) -> TradePrinted:
        return TradePrinted(
            self._symbols.get(d.s) or self._symbol(d.s),
            d.E,
            d.T,
            ts_recv_ns,
            d.t,
            d.p,
            d.q,
            d.m,
            1,
            d.t,
        )

    def _agg_trade(self, d: _AggTrade, ts_recv_ns: int) -> TradePrinted:
        if d.l < d.f:
            raise MalformedFrame(f"aggTrade last id {d.l} < first id {d.f}")
        symbol = self._symbols.get(d.s) or self._symbol(d.s)
        return TradePrinted(symbol, d.E, d.T, ts_recv_ns, d.l, d.p, d.q, d.m, d.l - d.f + 1, d.f)

    def _book_ticker(self, d: _BookTicker, ts_recv_ns: int) -> BookTickerUpdated:
        return BookTickerUpdated(
            self._symbols.get(d.s) or self._symbol(d.s), d.u, d.E, ts_recv_ns, d.b, d.B, d.a, d.A
        )

    def _mark_price(self, d: _MarkPrice, ts_recv_ns: int) -> MarkPriceUpdated:
        try:
            index = float(d.i) if d.i else float("nan")
            rate = float(d.r) if d.r else float("nan")
        except ValueError:
            raise MalformedFrame(f"markPriceUpdate i={d.i!r} r={d.r!r}") from None
        return MarkPriceUpdated(
            self._symbols.get(d.s) or self._symbol(d.s), d.E, ts_recv_ns, d.p, index, rate, d.T
        )

    def _shutdown(self, d: _Shutdown, ts_recv_ns: int) -> ServerShutdownAnnounced:
        return ServerShutdownAnnounced(d.E, ts_recv_ns)

    # ------------------------------------------------------------ drops and logs

    @staticmethod
    def _stream_of(payload: object) -> str:
        if isinstance(payload, bytes) and payload.startswith(_STREAM_PREFIX):
            end = payload.find(b'"', 11)
            if 11 < end <= 200:
                return payload[11:end].decode("utf-8", "replace")
        return ""

    def _drop(self, kind: str, stream: str, reason: str, ts_recv_ns: int) -> None:
        self.counters[kind] += 1
        self._note(f"frame_{kind}", stream, reason, ts_recv_ns)

    def _note(self, event: str, stream: str, reason: str, ts_recv_ns: int) -> None:
        """Log a dropped frame: the first per (event, stream kind), then one per interval.

        Keyed by the stream kind ("kline_1m", not "btcusdt@kline_1m") so that 400 symbols'
        worth of one bad stream still log one line per interval.
        """
        key = (event, stream.partition("@")[2] or stream)
        state = self._log_state.get(key)
        if state is None:
            if len(self._log_state) >= _MAX_LOG_KEYS:
                key = (event, "*")  # a storm of distinct junk stream names shares one line
                state = self._log_state.get(key)
            if state is None:
                state = self._log_state[key] = [ts_recv_ns - _LOG_INTERVAL_NS, 0]
        if ts_recv_ns - state[0] < _LOG_INTERVAL_NS:
            state[1] += 1
            return
        suppressed = state[1]
        state[0], state[1] = ts_recv_ns, 0
        self._log.bind(market=str(self.market), stream=stream).warning(
            event, reason=reason[:300], suppressed=suppressed
        )
