"""Rows from the replay path equal an independent computation of the documented semantics.

The reference below shares no code with the engine: plain json, Decimal books synced by the
rules in binance-api.md §2, trades grouped by the second of their trade time T, book columns
taken after the last depth event of each second. Tolerance 1e-9 relative, as the external check.
"""

from __future__ import annotations

import gzip
import json
import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from engine.config import FoldConfig
from engine.replay import replay_tape

BANDS = (30, 100, 300, 1000)


class ReferenceBook:
    def __init__(self, futures: bool) -> None:
        self.futures = futures
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.last_u: int | None = None
        self.buffer: list[dict] = []
        self.snapshot: dict | None = None
        self.valid = False

    def _apply(self, ev: dict) -> None:
        for side, key in ((self.bids, "b"), (self.asks, "a")):
            for p, q in ev[key]:
                price, qty = Decimal(p), Decimal(q)
                if qty == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_u = ev["u"]

    def on_diff(self, ev: dict) -> None:
        if not self.valid:
            self.buffer.append(ev)
            if self.snapshot is not None:
                self.on_snapshot(self.snapshot)  # a snapshot newer than the stream waits for it
            return
        if ev["u"] <= self.last_u:
            return
        gap = ev["pu"] != self.last_u if self.futures else ev["U"] > self.last_u + 1
        if gap:
            self.valid = False
            self.bids.clear()
            self.asks.clear()
            self.buffer = [ev]
            return
        self._apply(ev)

    def on_snapshot(self, snap: dict) -> None:
        lid = snap["lastUpdateId"]
        self.snapshot = snap
        keep = [e for e in self.buffer if (e["u"] >= lid if self.futures else e["u"] > lid)]
        if not keep:
            return  # the stream has not reached the snapshot yet: wait for more diffs
        first = keep[0]
        ok = first["U"] <= lid <= first["u"] if self.futures else first["U"] <= lid + 1 <= first["u"]
        if not ok:
            return
        self.snapshot = None
        self.bids = {Decimal(p): Decimal(q) for p, q in snap["bids"] if Decimal(q) != 0}
        self.asks = {Decimal(p): Decimal(q) for p, q in snap["asks"] if Decimal(q) != 0}
        self.valid = True
        self.last_u = lid
        for ev in keep:
            self._apply(ev)  # the first bridges the snapshot; later ones are contiguous in these tapes
        self.buffer = []

    def state(self) -> tuple:
        if not self.valid or not self.bids or not self.asks:
            return (False,) + (math.nan,) * 10
        bids = sorted(self.bids.items(), reverse=True)
        asks = sorted(self.asks.items())
        bb, ba = bids[0][0], asks[0][0]
        mid = (bb + ba) / 2

        def within(levels: list, inside) -> list[float]:  # type: ignore[no-untyped-def]
            out = []
            for b in BANDS:
                total = Decimal(0)
                for p, q in levels:  # best first: stop at the first level outside the band
                    if not inside(p, b):
                        break
                    total += q
                out.append(float(total))
            return out

        bid_d = within(bids, lambda p, b: p >= mid * (1 - Decimal(b) / 10000))
        ask_d = within(asks, lambda p, b: p <= mid * (1 + Decimal(b) / 10000))
        return (True, float(bb), float(ba), *bid_d, *ask_d)


def reference_rows(path: Path) -> dict[int, dict]:
    futures = False
    lines = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            _ts, payload = line.split(" ", 1)
            obj = json.loads(payload)
            lines.append(obj)
            if obj.get("data", {}).get("e") == "depthUpdate" and "pu" in obj["data"]:
                futures = True
    book = ReferenceBook(futures)
    trades: dict[int, tuple] = {}
    book_at: dict[int, tuple] = {}
    last_depth_sec: int | None = None
    max_ts = 0
    for obj in lines:
        if "lastUpdateId" in obj:
            book.on_snapshot(obj)
            continue
        data = obj["data"]
        kind = data.get("e")
        if "E" in data:
            max_ts = max(max_ts, data["E"])
        if kind == "depthUpdate":
            second = data["E"] // 1000 * 1000
            if last_depth_sec is not None and second != last_depth_sec:
                book_at[last_depth_sec] = book.state()  # state after the last event of that second
            book.on_diff(data)
            last_depth_sec = second
        elif kind == "trade":
            trades.setdefault(data["t"], (data["T"], float(data["p"]), float(data["q"]), data["m"]))
            max_ts = max(max_ts, data["T"])
    if last_depth_sec is not None:
        book_at[last_depth_sec] = book.state()
    by_sec: dict[int, list] = {}
    for _tid, (t, p, q, m) in sorted(trades.items()):
        by_sec.setdefault(t // 1000 * 1000, []).append((p, q, m))
    first = min(by_sec)
    rows: dict[int, dict] = {}
    close = math.nan
    book_state = (False,) + (math.nan,) * 10
    for s in range(first, max_ts // 1000 * 1000 + 1000, 1000):
        ts_trades = by_sec.get(s, [])
        if ts_trades:
            prices = [p for p, _, _ in ts_trades]
            vol = sum(q for _, q, _ in ts_trades)
            quote = 0.0
            for p, q, _ in ts_trades:
                quote += p * q
            row = dict(open=prices[0], high=max(prices), low=min(prices), close=prices[-1],
                       volume=vol, quote_volume=quote, trades=len(ts_trades),
                       buy_volume=sum(q for _, q, m in ts_trades if not m),
                       sell_volume=sum(q for _, q, m in ts_trades if m))
            row["vwap"] = quote / vol
            close = prices[-1]
        else:
            row = dict(open=close, high=close, low=close, close=close, volume=0.0, quote_volume=0.0,
                       trades=0, buy_volume=0.0, sell_volume=0.0, vwap=close)
        if s in book_at:
            book_state = book_at[s]
        names = ["book_valid", "bid", "ask"] + [f"bid_depth_{b}bp" for b in BANDS] + [f"ask_depth_{b}bp" for b in BANDS]
        row.update(dict(zip(names, book_state)))
        rows[s] = row
    return rows


COLUMNS = ["open", "high", "low", "close", "vwap", "volume", "quote_volume", "trades", "buy_volume",
           "sell_volume", "bid", "ask"] + [f"{side}_depth_{b}bp" for side in ("bid", "ask") for b in BANDS]


@pytest.mark.parametrize("name", ["spot_btcusdt", "spot_ethusdt", "usdm_btcusdt", "usdm_btcusdt_2023a", "usdm_btcusdt_2023b"])
def test_replay_rows_equal_independent_reference(tapes: dict[str, Path], name: str) -> None:
    path = tapes[name]
    expected = reference_rows(path)
    got = replay_tape(path, FoldConfig()).rows
    assert list(got["ts"]) == sorted(expected), "row timestamps differ from the reference"
    for col in COLUMNS:
        want = np.array([expected[s][col] for s in got["ts"]], dtype=float)
        have = got[col].to_numpy(dtype=float)
        both_nan = np.isnan(want) & np.isnan(have)
        close = np.isclose(have, want, rtol=1e-9, atol=0.0) | both_nan
        bad = np.flatnonzero(~close)
        assert bad.size == 0, f"{name} {col}: {bad.size} rows differ, first at ts={got['ts'].iloc[bad[0]]}: {have[bad[0]]} != {want[bad[0]]}"
    valid = np.array([expected[s]["book_valid"] for s in got["ts"]], dtype=bool)
    assert (got["book_valid"].to_numpy() == valid).all()
    if name != "usdm_btcusdt_2023b":  # that tape continues 2023a and holds no snapshot
        assert valid.mean() > 0.95


def test_candles_aggregate_rows(tapes: dict[str, Path]) -> None:
    result = replay_tape(tapes["spot_btcusdt"], FoldConfig())
    rows, candles = result.rows, result.candles
    assert len(candles) >= 5
    for _, candle in candles.iterrows():
        minute = rows[(rows["ts"] >= candle["ts"]) & (rows["ts"] < candle["ts"] + 60_000)]
        assert candle["seconds"] == len(minute)
        assert candle["open"] == minute["open"].iloc[0]
        assert candle["close"] == minute["close"].iloc[-1]
        assert candle["high"] == minute["high"].max()
        assert candle["low"] == minute["low"].min()
        assert candle["trades"] == minute["trades"].sum()
        assert math.isclose(candle["volume"], minute["volume"].sum(), rel_tol=1e-12)
        assert math.isclose(candle["buy_volume"], minute["buy_volume"].sum(), rel_tol=1e-12)
        assert math.isclose(candle["vwap"], minute["quote_volume"].sum() / minute["volume"].sum(), rel_tol=1e-9)
        last = minute.iloc[-1]
        for col in ("bid_depth_100bp", "ask_depth_100bp"):
            assert (math.isnan(candle[col]) and math.isnan(last[col])) or candle[col] == last[col]
