"""Merge market-data sources onto one regular time raster, flagging gaps instead of hiding them.

Sources are klines (downloaded or archive: `open_time`, ...), candles or per-second rows
(`ts`, ...). Each is brought to the raster interval (finer sources are aggregated: open first,
high max, low min, close last, volumes and trade counts summed, vwap re-derived, book columns
last), reindexed onto every step of the raster, and its columns prefixed with the source name
(`usdm_close`, `spot_close`, `rows_bid_depth_100bp`). A step a source has no bar for stays NaN
and sets `<name>_missing`: nothing is forward-filled here, so a gap is visible to whoever reads
the frame (the feature engine forward-fills TA-Lib inputs and windows holding NaN give NaN;
labels whose window holds a missing bar are NaN).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from strategy.features.schema import MINUTE_COLUMNS

_SUM = (
    "volume",
    "quote_volume",
    "trades",
    "buy_volume",
    "sell_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "late_frames",
    "resyncs",
)


def klines_to_candles(klines: pd.DataFrame, interval_ms: int = 60_000) -> pd.DataFrame:
    """Turn klines (Binance fields) into candles of the feature engine's minute schema."""
    volume = klines["volume"].to_numpy(dtype=np.float64)
    quote = klines["quote_volume"].to_numpy(dtype=np.float64)
    close = klines["close"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        vwap = np.where(volume > 0, quote / volume, close)
    candles = pd.DataFrame(
        {
            "ts": klines["open_time"].to_numpy(dtype=np.int64),
            "open": klines["open"].to_numpy(dtype=np.float64),
            "high": klines["high"].to_numpy(dtype=np.float64),
            "low": klines["low"].to_numpy(dtype=np.float64),
            "close": close,
            "vwap": vwap,
            "volume": volume,
            "quote_volume": quote,
            "trades": klines["count"].to_numpy(dtype=np.float64),
            "buy_volume": klines["taker_buy_volume"].to_numpy(dtype=np.float64),
            "seconds": np.full(len(klines), interval_ms // 1000, dtype=np.int64),
            "bid_depth_100bp": np.nan,  # klines carry no order book
            "ask_depth_100bp": np.nan,
        }
    )
    return candles[list(MINUTE_COLUMNS)]


def resample(frame: pd.DataFrame, interval_ms: int, spacing_ms: int = 1000) -> pd.DataFrame:
    """Aggregate bars or rows (`ts` in ms, `spacing_ms` apart) into bars of `interval_ms`."""
    bucket = frame["ts"].to_numpy(dtype=np.int64) // interval_ms * interval_ms
    grouped = frame.drop(columns=["ts"]).groupby(bucket, sort=True)
    out = {}
    for column in frame.columns:
        if (
            column == "ts"
            or not pd.api.types.is_numeric_dtype(frame[column].dtype)
            and not pd.api.types.is_bool_dtype(frame[column].dtype)
        ):
            continue
        if column == "open":
            out[column] = grouped[column].first()
        elif column == "high":
            out[column] = grouped[column].max()
        elif column == "low":
            out[column] = grouped[column].min()
        elif column in _SUM or column == "seconds":
            out[column] = grouped[column].sum()
        else:
            out[column] = grouped[column].last()
    result = pd.DataFrame(out)
    if "seconds" not in result.columns:
        result["seconds"] = grouped.size().to_numpy() * (spacing_ms // 1000)
    if {"quote_volume", "volume", "close"} <= set(result.columns):
        volume = result["volume"].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            result["vwap"] = np.where(
                volume > 0,
                result["quote_volume"].to_numpy(dtype=np.float64) / volume,
                result["close"].to_numpy(dtype=np.float64),
            )
    result.insert(0, "ts", result.index.to_numpy(dtype=np.int64))
    return result.reset_index(drop=True)


def _spacing_ms(ts: np.ndarray) -> int:
    steps = np.diff(np.unique(ts))
    return int(np.median(steps)) if len(steps) else 0


def _normalised(frame: pd.DataFrame, interval_ms: int) -> pd.DataFrame:
    if "open_time" in frame.columns:
        spacing = _spacing_ms(frame["open_time"].to_numpy())
        frame = klines_to_candles(frame, spacing or interval_ms)
    frame = frame.drop(columns=[c for c in ("symbol",) if c in frame.columns])
    if frame["ts"].duplicated().any():
        raise ValueError("a source has two bars with the same timestamp")
    spacing = _spacing_ms(frame["ts"].to_numpy())
    if spacing and spacing < interval_ms:
        frame = resample(frame, interval_ms, spacing)
    elif spacing > interval_ms:
        raise ValueError(f"a source is coarser ({spacing} ms) than the raster ({interval_ms} ms)")
    if (frame["ts"].to_numpy() % interval_ms != 0).any():
        raise ValueError(f"a source has timestamps off the {interval_ms} ms raster")
    return frame


def merge_sources(
    sources: Mapping[str, pd.DataFrame],
    interval_ms: int = 60_000,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> pd.DataFrame:
    """Align sources on a raster [start, end) of `interval_ms`; columns `<name>_<column>`."""
    normalised = {name: _normalised(frame, interval_ms) for name, frame in sources.items()}
    non_empty = [f for f in normalised.values() if len(f)]
    if not non_empty:
        raise ValueError("no source has any bar")
    first = min(int(f["ts"].iloc[0]) for f in non_empty) if start_ms is None else start_ms
    last = max(int(f["ts"].iloc[-1]) for f in non_empty) + 1 if end_ms is None else end_ms
    first = -(-first // interval_ms) * interval_ms
    raster = np.arange(first, last, interval_ms, dtype=np.int64)
    merged = pd.DataFrame({"ts": raster})
    for name, frame in normalised.items():
        aligned = frame.assign(present_=True).set_index("ts").reindex(raster)
        merged[f"{name}_missing"] = aligned.pop("present_").isna().to_numpy()
        for column in aligned.columns:
            merged[f"{name}_{column}"] = aligned[column].to_numpy()
    return merged


def source_frame(
    merged: pd.DataFrame, name: str, columns: tuple[str, ...] = MINUTE_COLUMNS
) -> pd.DataFrame:
    """Take one source back out of a merged frame, unprefixed, in the given schema (NaN if absent)."""
    out = pd.DataFrame({"ts": merged["ts"].to_numpy()})
    for column in columns:
        if column == "ts":
            continue
        key = f"{name}_{column}"
        out[column] = merged[key].to_numpy(dtype=np.float64) if key in merged.columns else np.nan
    return out


def gap_report(merged: pd.DataFrame, name: str) -> list[tuple[int, int]]:
    """Return the [start, end) ms spans where a source has no bar."""
    missing = merged[f"{name}_missing"].to_numpy()
    ts = merged["ts"].to_numpy()
    step = int(ts[1] - ts[0]) if len(ts) > 1 else 0
    spans = []
    edges = np.flatnonzero(np.diff(np.r_[0, missing.astype(np.int8), 0]))
    for begin, end in zip(edges[::2], edges[1::2], strict=True):
        spans.append((int(ts[begin]), int(ts[end - 1]) + step))
    return spans
