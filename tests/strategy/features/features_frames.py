"""Frames for the feature-engine tests: per-second rows and one-minute candles.

Per-second rows are built here (the market-data fold is written in parallel): prices from the
real XRP/ETH aggTrades in ../shared/data/aggtrades folded per second, or a synthetic random
walk, with a synthetic order book around them that goes invalid (NaN depths) for stretches.
Candles come from the real USD-M one-minute klines in ../shared/data/klines.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd

from strategy.features.schema import DEPTH_BANDS_BP, MINUTE_COLUMNS, SECOND_COLUMNS


def _add_synthetic_book(rows: pd.DataFrame, rng: np.random.Generator, tick: float) -> pd.DataFrame:
    n = len(rows)
    spread_ticks = rng.integers(1, 4, n)
    bid = np.floor(rows["close"].to_numpy() / tick) * tick - (spread_ticks // 2) * tick
    rows["bid"] = bid
    rows["ask"] = bid + spread_ticks * tick
    for i, bp in enumerate(DEPTH_BANDS_BP):
        base = rng.lognormal(2.0 + i, 0.6, n)
        rows[f"bid_depth_{bp}bp"] = base * rng.uniform(0.5, 1.5, n)
        rows[f"ask_depth_{bp}bp"] = base * rng.uniform(0.5, 1.5, n)
    valid = np.ones(n, dtype=bool)
    valid[:7] = False  # the book syncs a few seconds after the first trade
    for start in rng.integers(50, max(n - 60, 51), size=max(n // 1500, 1)):
        valid[start : start + rng.integers(1, 40)] = False  # resyncs
    book_columns = ["bid", "ask", *(c for c in rows.columns if "_depth_" in c)]
    rows.loc[~valid, book_columns] = np.nan
    rows["book_valid"] = valid
    rows["late_frames"] = rng.poisson(0.01, n).astype(np.int64)
    rows["resyncs"] = (~valid & np.r_[True, valid[:-1]]).astype(np.int64)
    rows["stale_ms"] = np.where(valid, 0, 1000).astype(np.int64)
    return rows[list(SECOND_COLUMNS)]


def synthetic_rows(n: int = 3000, seed: int = 3, start_ms: int = 1_700_000_000_000) -> pd.DataFrame:
    """Per-second rows of a random walk with Poisson trades and a synthetic book."""
    rng = np.random.default_rng(seed)
    tick = 0.01
    price = np.round((100 + np.cumsum(rng.normal(0, 0.02, n))) / tick) * tick
    trades = rng.poisson(2.0, n).astype(np.int64)
    trades[rng.uniform(size=n) < 0.2] = 0
    volume = np.where(trades > 0, rng.lognormal(0, 1, n) * trades, 0.0)
    buy = volume * rng.uniform(0, 1, n)
    close = pd.Series(np.where(trades > 0, price, np.nan)).ffill().fillna(price[0]).to_numpy()
    rows = pd.DataFrame(
        {
            "ts": start_ms + 1000 * np.arange(n, dtype=np.int64),
            "open": close,
            "high": close + tick * (trades > 1),
            "low": close - tick * (trades > 2),
            "close": close,
            "vwap": close + tick * 0.25 * (trades > 1),
            "volume": volume,
            "quote_volume": volume * close,
            "trades": trades,
            "buy_volume": buy,
            "sell_volume": volume - buy,
        }
    )
    return _add_synthetic_book(rows, rng, tick)


def aggtrade_rows(shared_data: Path, hours: int = 3) -> pd.DataFrame:
    """Per-second rows folded from the real XRP/ETH aggTrades (busiest hours), synthetic book."""
    with gzip.open(shared_data / "aggtrades" / "XRP_ETH-trades.json.gz", "rt") as fh:
        trades = pd.DataFrame(
            json.load(fh), columns=["timestamp", "id", "type", "side", "price", "amount", "cost"]
        )
    hour = trades["timestamp"] // 3_600_000
    busiest = int(hour.value_counts().idxmax())
    first_ms = (busiest - 1) * 3_600_000
    trades = trades[
        (trades["timestamp"] >= first_ms) & (trades["timestamp"] < first_ms + hours * 3_600_000)
    ]
    second = (trades["timestamp"] // 1000) * 1000
    buy = np.where(trades["side"] == "buy", trades["amount"], 0.0)
    grouped = trades.assign(second=second, buy=buy).groupby("second")
    folded = pd.DataFrame(
        {
            "open": grouped["price"].first(),
            "high": grouped["price"].max(),
            "low": grouped["price"].min(),
            "close": grouped["price"].last(),
            "volume": grouped["amount"].sum(),
            "quote_volume": grouped["cost"].sum(),
            "trades": grouped["price"].size().astype(np.int64),
            "buy_volume": grouped["buy"].sum(),
        }
    )
    index = pd.RangeIndex(first_ms, first_ms + hours * 3_600_000, 1000)
    rows = folded.reindex(index)
    close = rows["close"].ffill().bfill()  # seconds without a trade repeat the last close
    for column in ("open", "high", "low"):
        rows[column] = rows[column].fillna(close)
    rows["close"] = close
    for column in ("volume", "quote_volume", "buy_volume"):
        rows[column] = rows[column].fillna(0.0)
    rows["trades"] = rows["trades"].fillna(0).astype(np.int64)
    rows["vwap"] = np.where(rows["volume"] > 0, rows["quote_volume"] / rows["volume"], close)
    rows["sell_volume"] = rows["volume"] - rows["buy_volume"]
    rows = rows.rename_axis("ts").reset_index()
    return _add_synthetic_book(rows, np.random.default_rng(11), tick=1e-8)


def candles_from_klines(path: Path) -> pd.DataFrame:
    """One-minute candles (feature-engine schema) from a Binance USD-M kline archive CSV."""
    k = pd.read_csv(path)
    candles = pd.DataFrame(
        {
            "ts": k["open_time"].astype(np.int64),
            "open": k["open"],
            "high": k["high"],
            "low": k["low"],
            "close": k["close"],
            "vwap": np.where(k["volume"] > 0, k["quote_volume"] / k["volume"], k["close"]),
            "volume": k["volume"],
            "quote_volume": k["quote_volume"],
            "trades": k["count"].astype(np.int64),
            "buy_volume": k["taker_buy_volume"],
            "seconds": np.full(len(k), 60, dtype=np.int64),
            "bid_depth_100bp": np.nan,  # klines carry no book
            "ask_depth_100bp": np.nan,
        }
    )
    return candles[list(MINUTE_COLUMNS)]
