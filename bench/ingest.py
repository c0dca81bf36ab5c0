"""Ingest throughput: JSON bytes -> applied book + folded row, three ways, one run.

    python bench/ingest.py

Frames: the depth, trade and REST-snapshot frames of the shared tapes
../shared/data/binance-tapes/*.gz, read into memory first (file I/O excluded), replayed in tape
order. bookTicker frames (most of those tapes) are left out: the engine does not subscribe to
them (depth + trade streams are what production ingests), and the baselines handle none.
Figure: messages per second, best of REPEATS runs (ours and the baselines interleaved round by
round), per tape and over all tapes.

* ours: the production path, `engine.marketdata.MarketDataPipeline(market, symbols,
  FoldConfig()).on_frame(payload, ts_recv_ns)` / `.on_snapshot(...)`: decode (msgspec) ->
  BookSync -> OrderBook (integer ticks, exact bands) -> SymbolFolder (per-second rows and
  one-minute candles in ring buffers, the book sampled once per second for bid/ask and depth
  bands), then `flush()`. The pipeline is built before the clock starts (its ring buffers for
  4 h of rows and a week of candles are a start-up cost, 1-15 ms, not a per-message one).
  Measured twice: with the compiled book core (exchange/_book_core.pyx, what the engine uses
  when it is built: `exchange.book.BOOK_IMPLEMENTATION`) and with the pure-Python reference
  book (`book_class=PythonOrderBook`). The headline figure is the path the engine uses.
  Per-stage split from cumulative runs of the same frames: decode only (FrameDecoder), + sync
  and book (FrameDecoder -> BookSync -> OrderBook), + fold (the whole pipeline); each stage is
  the difference of two of them.
* baseline "cryptofeed-style": orjson decode, Decimal prices and quantities into the
  `order-book` C extension's OrderBook, cryptofeed's `_check_update_id` (spot and futures
  versions) and its per-message delta lists and Trade objects (callbacks excluded). It folds
  nothing into rows: cryptofeed hands trades and books to user callbacks. Our figure includes
  the fold, so the headline ratio understates the like-for-like speed-up; that one (ours without
  the fold stage: decode + sync + book) is printed too.
* python-binance 1.0.37 `DepthCacheManager` logic on its `DepthCache` (orjson, string price
  keys, float quantities, strict `U == last+1` with re-initialisation from the snapshot); spot
  only: python-binance keeps futures books from partial depth, not diffs. No fold either.

Goal: ours >= 4x the cryptofeed-style path. Correctness is checked in the same run: the final
books of ours (both books) and of the cryptofeed-style path must be equal. Writes
bench/results/ingest.json (`figure_msg_per_s`, `ratio`, `met` are the engine's path; the
`compiled` and `python` entries give both books).
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path

import orjson
import structlog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from binance.ws.depthcache import DepthCache
from order_book import OrderBook as CfOrderBook

from engine.config import FoldConfig
from engine.events import DepthDiff
from engine.marketdata import MarketDataPipeline
from engine.model import Market
from engine.tape import TapeFrame, read_tape, tape_symbols
from exchange.binance.parse import FrameDecoder
from exchange.binance.sync import BookSync
from exchange.book import BOOK_IMPLEMENTATION, CompiledOrderBook, PythonOrderBook

DATA = ROOT.parent / "shared" / "data" / "binance-tapes"
TAPES = [
    ("spot_btcusdt_20240808.gz", Market.SPOT),
    ("spot_ethusdt_20240808.gz", Market.SPOT),
    ("usdm_btcusdt_20240808.gz", Market.USDM),
]
GOAL_RATIO = 4.0
REPEATS = 7

Frame = TapeFrame


def load_frames(path: Path) -> list[Frame]:
    """Depth, trade and snapshot frames of a tape, in tape order."""
    out = []
    for f in read_tape(path):
        head = f.payload[:48]
        if f.is_snapshot or b"@depth" in head or b"@trade" in head or b"@aggTrade" in head:
            out.append(f)
    return out


# ---------------------------------------------------------------- ours: the production path


BOOKS: dict[str, type] = {"python": PythonOrderBook}
if CompiledOrderBook is not None:
    BOOKS["compiled"] = CompiledOrderBook
ENGINE_BOOK = BOOK_IMPLEMENTATION  # the key of BOOKS the engine builds


def new_pipeline(market: Market, symbols: list[str], book_class: type) -> MarketDataPipeline:
    return MarketDataPipeline(market, symbols, FoldConfig(), book_class=book_class)


def run_pipeline(frames: Iterable[Frame], pipeline: MarketDataPipeline) -> MarketDataPipeline:
    """Feed every frame to the market-data pipeline the live feed and replay use."""
    on_frame, on_snapshot = pipeline.on_frame, pipeline.on_snapshot
    for frame in frames:
        if frame.snapshot_symbol is not None:
            on_snapshot(frame.snapshot_symbol, frame.payload, frame.ts_recv_ns)
        else:
            on_frame(frame.payload, frame.ts_recv_ns)
    pipeline.flush()
    return pipeline


def run_decode_only(frames: Iterable[Frame], market: Market) -> FrameDecoder:
    """Stage 1 alone: the pipeline's decoder on every frame."""
    decoder = FrameDecoder(market)
    decode, decode_snapshot = decoder.decode, decoder.decode_snapshot
    for frame in frames:
        if frame.snapshot_symbol is not None:
            decode_snapshot(frame.payload, frame.snapshot_symbol, frame.ts_recv_ns)
        else:
            decode(frame.payload, frame.ts_recv_ns)
    return decoder


def run_decode_book(
    frames: Iterable[Frame], market: Market, book_class: type
) -> dict[str, BookSync]:
    """Stages 1+2: decode, then one BookSync + book per symbol (no fold, trades dropped)."""
    decoder = FrameDecoder(market)
    syncs: dict[str, BookSync] = {}
    decode = decoder.decode
    for frame in frames:
        if frame.snapshot_symbol is not None:
            snap = decoder.decode_snapshot(frame.payload, frame.snapshot_symbol, frame.ts_recv_ns)
            sync = syncs.get(snap.symbol)
            if sync is None:
                sync = syncs[snap.symbol] = BookSync(snap.symbol, market, book_class(snap.symbol))
            sync.on_snapshot(snap)
            continue
        event = decode(frame.payload, frame.ts_recv_ns)
        if type(event) is DepthDiff:
            sync = syncs.get(event.symbol)
            if sync is None:
                sync = syncs[event.symbol] = BookSync(
                    event.symbol, market, book_class(event.symbol)
                )
            sync.on_diff(event)
    return syncs


# ---------------------------------------------------------------- cryptofeed-style baseline


class CfTrade:
    """Shape of cryptofeed.types.Trade (a Cython class there)."""

    __slots__ = ("amount", "exchange", "id", "price", "raw", "side", "symbol", "timestamp", "type")

    def __init__(
        self, exchange, symbol, side, amount, price, timestamp, id=None, type=None, raw=None
    ):
        self.exchange = exchange
        self.symbol = symbol
        self.side = side
        self.amount = amount
        self.price = price
        self.timestamp = timestamp
        self.id = id
        self.type = type
        self.raw = raw


class CfBook:
    """cryptofeed.types.OrderBook: the order_book C structure plus a delta marker."""

    __slots__ = ("book", "delta")

    def __init__(self, bids: dict, asks: dict) -> None:
        self.book = CfOrderBook()
        for p, q in bids.items():
            self.book.bids[p] = q
        for p, q in asks.items():
            self.book.asks[p] = q
        self.delta = None


class CryptofeedStyle:
    """cryptofeed's Binance handler path, minus callbacks and network."""

    def __init__(self, futures: bool) -> None:
        self.futures = futures
        self.l2_book: dict[str, CfBook] = {}
        self.last_update_id: dict[str, int] = {}
        self.pending: dict[str, list[dict]] = {}  # messages queued while the snapshot loads
        self.trades = 0
        self.resets = 0

    def snapshot(self, pair: str, payload: bytes) -> None:
        resp = orjson.loads(payload)
        self.last_update_id[pair] = resp["lastUpdateId"]
        self.l2_book[pair] = CfBook(
            {Decimal(u[0]): Decimal(u[1]) for u in resp["bids"]},
            {Decimal(u[0]): Decimal(u[1]) for u in resp["asks"]},
        )
        for msg in self.pending.pop(pair, []):
            self._book(msg, pair)

    def message(self, raw: bytes) -> None:
        msg = orjson.loads(raw)
        pair, _ = msg["stream"].split("@", 1)
        msg = msg["data"]
        pair = pair.upper()
        kind = msg.get("e")
        if kind == "depthUpdate":
            if pair not in self.l2_book:
                self.pending.setdefault(pair, []).append(msg)
                return
            self._book(msg, pair)
        elif kind in ("trade", "aggTrade"):
            self._trade(msg)

    def _trade(self, msg: dict) -> None:
        CfTrade(
            "BINANCE",
            msg["s"],
            "sell" if msg["m"] else "buy",
            Decimal(msg["q"]),
            Decimal(msg["p"]),
            msg["T"] / 1000.0,
            id=str(msg.get("a", msg.get("t"))),
            raw=msg,
        )
        self.trades += 1

    def _check_update_id(self, pair: str, msg: dict) -> bool:
        last = self.last_update_id[pair]
        book = self.l2_book[pair]
        if self.futures:
            if book.delta is None and msg["u"] < last:
                return True
            if msg["U"] <= last <= msg["u"] or last == msg["pu"]:
                self.last_update_id[pair] = msg["u"]
                return False
        else:
            if book.delta is None and msg["u"] <= last:
                return True
            if msg["U"] <= last and msg["u"] <= last:
                return True
            if msg["U"] <= last + 1 <= msg["u"] or last + 1 == msg["U"]:
                self.last_update_id[pair] = msg["u"]
                return False
        self.resets += 1
        self.l2_book.clear()
        self.last_update_id.clear()
        return True

    def _book(self, msg: dict, pair: str) -> None:
        if self._check_update_id(pair, msg):
            return
        book = self.l2_book[pair]
        delta: dict[str, list] = {"bid": [], "ask": []}
        for s, side in (("b", "bid"), ("a", "ask")):
            levels = book.book[side]
            for update in msg[s]:
                price = Decimal(update[0])
                amount = Decimal(update[1])
                delta[side].append((price, amount))
                if amount == 0:
                    if price in levels:
                        del levels[price]
                else:
                    levels[price] = amount
        book.delta = delta


def run_cryptofeed_path(frames: Iterable[Frame], market: Market) -> CryptofeedStyle:
    feed = CryptofeedStyle(futures=market is Market.USDM)
    for frame in frames:
        if frame.snapshot_symbol is not None:
            feed.snapshot(frame.snapshot_symbol, frame.payload)
        else:
            feed.message(frame.payload)
    return feed


# ---------------------------------------------------------------- python-binance baseline


class PythonBinanceSpot:
    """DepthCacheManager._process_depth_message / _init_cache on a DepthCache, no network:
    a re-initialisation reloads the latest snapshot the tape holds."""

    def __init__(self) -> None:
        self.cache: DepthCache | None = None
        self.last_update_id: int | None = None
        self.buffer: list[dict] = []
        self.snapshot: dict | None = None
        self.reinits = 0
        self.trades = 0

    def _init_cache(self) -> None:
        assert self.snapshot is not None
        self.last_update_id = None
        self.buffer_before, self.buffer = self.buffer, []
        self.cache = DepthCache("BTCUSDT", conv_type=float)
        res = self.snapshot
        for bid in res["bids"]:
            self.cache.add_bid(bid)
        for ask in res["asks"]:
            self.cache.add_ask(ask)
        self.last_update_id = res["lastUpdateId"]
        for msg in self.buffer_before:
            self._process(msg)

    def on_snapshot(self, payload: bytes) -> None:
        self.snapshot = orjson.loads(payload)
        self._init_cache()

    def message(self, raw: bytes) -> None:
        msg = orjson.loads(raw)["data"]  # the depth socket delivers the raw payload
        if msg.get("e") == "depthUpdate":
            self._process(msg)
        else:
            self.trades += 1  # trade sockets hand the decoded dict to the caller

    def _process(self, msg: dict) -> None:
        if self.last_update_id is None:
            self.buffer.append(msg)
            return
        if msg["u"] <= self.last_update_id:
            return
        if msg["U"] != self.last_update_id + 1:
            self.reinits += 1
            self._init_cache()
        assert self.cache is not None
        for bid in msg.get("b", []) + msg.get("bids", []):
            self.cache.add_bid(bid)
        for ask in msg.get("a", []) + msg.get("asks", []):
            self.cache.add_ask(ask)
        self.cache.update_time = msg.get("E") or msg.get("lastUpdateId")
        self.last_update_id = msg["u"]


def run_python_binance_path(frames: Iterable[Frame], market: Market) -> PythonBinanceSpot:
    pb = PythonBinanceSpot()
    for frame in frames:
        if frame.snapshot_symbol is not None:
            pb.on_snapshot(frame.payload)
        else:
            pb.message(frame.payload)
    return pb


# ---------------------------------------------------------------- measurement


def best_seconds(
    runs: dict[str, tuple[Callable[..., object], Callable[[], object] | None]],
    repeats: int = REPEATS,
) -> dict[str, float]:
    """Best wall time per named run: fn() or fn(setup()) with setup untimed.

    The runs are interleaved (one of each per round), so a neighbour's load that comes and
    goes (2 shared cores) weighs on ours and the baselines alike instead of skewing the ratio.
    """
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, (fn, setup) in runs.items():
            arg = setup() if setup is not None else None
            gc.collect()
            t0 = time.perf_counter()
            fn() if setup is None else fn(arg)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def books_agree(books: dict[str, PythonOrderBook], cf: CryptofeedStyle) -> bool:
    for symbol, book in books.items():
        theirs = cf.l2_book[symbol].book
        theirs_b = sorted(
            ((float(p), float(q)) for p, q in theirs.bids.to_dict().items()), reverse=True
        )
        theirs_a = sorted((float(p), float(q)) for p, q in theirs.asks.to_dict().items())
        if book.levels("bid") != theirs_b or book.levels("ask") != theirs_a:
            return False
    return True


def measure_tape(name: str, market: Market) -> dict:
    path = DATA / name
    frames = load_frames(path)
    symbols = tape_symbols(path)
    n = len(frames)
    cf = run_cryptofeed_path(frames, market)
    agree = {}
    for key, book_class in BOOKS.items():
        pipeline = run_pipeline(frames, new_pipeline(market, symbols, book_class))
        agree[key] = books_agree({s: st.book for s, st in pipeline.symbols.items()}, cf)
    rows = sum(st.folder.rows_closed for st in pipeline.symbols.values())
    runs: dict[str, tuple[Callable[..., object], Callable[[], object] | None]] = {
        "cryptofeed": (lambda: run_cryptofeed_path(frames, market), None),
        "decode": (lambda: run_decode_only(frames, market), None),
    }
    for key, book_class in BOOKS.items():
        runs[f"ours_{key}"] = (
            lambda pipeline: run_pipeline(frames, pipeline),
            functools.partial(new_pipeline, market, symbols, book_class),
        )
        runs[f"decode_book_{key}"] = (
            functools.partial(run_decode_book, frames, market, book_class),
            None,
        )
    if market is Market.SPOT:
        runs["python_binance"] = (lambda: run_python_binance_path(frames, market), None)
    seconds = best_seconds(runs)
    seconds["ours"] = seconds[f"ours_{ENGINE_BOOK}"]  # the engine's path, under its old name
    seconds["decode_book"] = seconds[f"decode_book_{ENGINE_BOOK}"]
    t_cf = seconds["cryptofeed"]
    row = {
        "tape": name,
        "messages": n,
        "depth_diffs": sum(1 for f in frames if b"@depth" in f.payload[:48]),
        "rows_folded": rows,
        "book_implementation": ENGINE_BOOK,
        "ours_msg_per_s": n / seconds["ours"],
        "cryptofeed_msg_per_s": n / t_cf,
        "ratio_vs_cryptofeed": t_cf / seconds["ours"],
        "stage_us_per_msg": _stages(seconds, ENGINE_BOOK, n),
        "books_agree": all(agree.values()),
        "gaps_ours": sum(st.gaps for st in pipeline.symbols.values()),
        "resets_cryptofeed": cf.resets,
        "seconds": seconds,
    }
    for key in BOOKS:
        row[key] = {
            "msg_per_s": n / seconds[f"ours_{key}"],
            "ratio_vs_cryptofeed": t_cf / seconds[f"ours_{key}"],
            "stage_us_per_msg": _stages(seconds, key, n),
            "books_agree": agree[key],
        }
    if market is Market.SPOT:
        t_pb = seconds["python_binance"]
        row["python_binance_msg_per_s"] = n / t_pb
        row["ratio_vs_python_binance"] = t_pb / seconds["ours"]
        row["python_binance_reinits"] = run_python_binance_path(frames, market).reinits
    return row


def _stages(seconds: dict[str, float], book: str, messages: int) -> dict[str, float]:
    """Per-stage µs/msg of our path with one book, from cumulative best times."""
    t_decode, t_book, t_all = (
        seconds["decode"],
        seconds[f"decode_book_{book}"],
        seconds[f"ours_{book}"],
    )
    return {
        "decode": t_decode / messages * 1e6,
        "sync_book": (t_book - t_decode) / messages * 1e6,
        "fold": (t_all - t_book) / messages * 1e6,
        "total": t_all / messages * 1e6,
    }


def print_tape(row: dict) -> None:
    pb_text = (
        f"python-binance {row['python_binance_msg_per_s']:>9,.0f}/s"
        f" (x{row['ratio_vs_python_binance']:.2f}, {row['python_binance_reinits']} re-inits)"
        if "python_binance_msg_per_s" in row
        else "python-binance n/a (futures: partial depth only)"
    )
    print(
        f"{row['tape']:26s} {row['messages']:6d} msgs ({row['depth_diffs']} diffs,"
        f" {row['rows_folded']} rows)  cryptofeed-style {row['cryptofeed_msg_per_s']:>9,.0f}/s"
        f"  books agree: {row['books_agree']}   {pb_text}"
    )
    for key in BOOKS:
        st = row[key]["stage_us_per_msg"]
        engine = "  <- engine" if key == ENGINE_BOOK else ""
        print(
            f"{'':26s} ours, {key + ' book':13s} {row[key]['msg_per_s']:>9,.0f}/s"
            f" (x{row[key]['ratio_vs_cryptofeed']:.2f})   µs/msg: decode {st['decode']:.2f}"
            f" + sync+book {st['sync_book']:.2f} + fold {st['fold']:.2f} = {st['total']:.2f}"
            f"{engine}"
        )


def main() -> None:
    # The pipeline logs book_synced at info on every run; keep the figures readable.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(
        f"order book the engine uses: {ENGINE_BOOK}"
        + ("" if "compiled" in BOOKS else " (exchange._book_core not built: pip install -e .)")
    )
    rows = []
    for name, market in TAPES:
        row = measure_tape(name, market)
        rows.append(row)
        print_tape(row)

    def total(key: str, spot_only: bool = False) -> float:
        return sum(
            r["seconds"][key] for r in rows if not spot_only or "python_binance" in r["seconds"]
        )

    messages = sum(r["messages"] for r in rows)
    spot_messages = sum(r["messages"] for r in rows if "python_binance" in r["seconds"])
    t_cf = total("cryptofeed")

    def stages(book: str) -> dict[str, float]:
        return {
            "decode": total("decode") / messages * 1e6,
            "sync_book": (total(f"decode_book_{book}") - total("decode")) / messages * 1e6,
            "fold": (total(f"ours_{book}") - total(f"decode_book_{book}")) / messages * 1e6,
            "total": total(f"ours_{book}") / messages * 1e6,
        }

    per_book = {
        key: {
            "msg_per_s": messages / total(f"ours_{key}"),
            "ratio": t_cf / total(f"ours_{key}"),
            "met": t_cf / total(f"ours_{key}") >= GOAL_RATIO,
            "ratio_without_fold": t_cf / total(f"decode_book_{key}"),
            "stage_us_per_msg": stages(key),
            "books_agree": all(r[key]["books_agree"] for r in rows),
        }
        for key in BOOKS
    }
    ratio = t_cf / total("ours")
    summary = {
        "figure": "MarketDataPipeline.on_frame/on_snapshot + flush: decode, sync, book, fold"
        f" ({ENGINE_BOOK} book, the engine's path)",
        "figure_msg_per_s": messages / total("ours"),
        "value": messages / total("ours"),
        "unit": "msg/s",
        "baseline": "cryptofeed-style (orjson + Decimal + order-book C OrderBook; no fold)",
        "baseline_msg_per_s": messages / t_cf,
        "baseline_value": messages / t_cf,
        "ratio": ratio,
        "goal_ratio": GOAL_RATIO,
        "goal": f">= {GOAL_RATIO:g}x the cryptofeed-style path",
        "met": ratio >= GOAL_RATIO,
        "book_implementation": ENGINE_BOOK,
        "ratio_without_fold": t_cf / total("decode_book"),
        "stage_us_per_msg": stages(ENGINE_BOOK),
        "compiled": per_book.get("compiled"),
        "python": per_book["python"],
        "python_binance_spot_msg_per_s": spot_messages / total("python_binance", True),
        "ours_spot_msg_per_s": spot_messages / total("ours", True),
        "ratio_vs_python_binance_spot": total("python_binance", True) / total("ours", True),
        "all_books_agree": all(r["books_agree"] for r in rows),
        "tapes": rows,
    }
    print()
    print(
        f"baseline cryptofeed-style      : {summary['baseline_msg_per_s']:>9,.0f} msg/s"
        " (folds no rows)"
    )
    for key, fig in per_book.items():
        st = fig["stage_us_per_msg"]
        engine = "   <- the engine's path" if key == ENGINE_BOOK else ""
        print(
            f"ours, {key + ' book':13s} (all): {fig['msg_per_s']:>9,.0f} msg/s   ratio"
            f" x{fig['ratio']:.2f}   goal: x{GOAL_RATIO:.1f}   met: {fig['met']}{engine}"
        )
        print(
            f"  µs/msg: decode {st['decode']:.2f} + sync+book {st['sync_book']:.2f}"
            f" + fold {st['fold']:.2f} = {st['total']:.2f};  like for like (without the fold"
            f" stage): x{fig['ratio_without_fold']:.2f}"
        )
    print(
        f"headline (engine, {ENGINE_BOOK} book): x{ratio:.2f}   goal: x{GOAL_RATIO:.1f}"
        f"   met: {summary['met']}"
    )
    print(
        f"python-binance (spot tapes)    : {summary['python_binance_spot_msg_per_s']:,.0f} msg/s"
        f"   ours on the same: {summary['ours_spot_msg_per_s']:,.0f} msg/s"
        f"   ratio x{summary['ratio_vs_python_binance_spot']:.2f} (python-binance folds no rows)"
    )
    print(f"books agree (both of ours vs cryptofeed-style): {summary['all_books_agree']}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
