"""Historical klines: download through ccxt (resumable, rate-limited) and read archive CSVs.

`tickloop download` fetches klines of any Binance interval, spot or USDⓈ-M, through ccxt's
binance client (its raw `klines` endpoints, which keep all 12 fields: quote volume, trade count
and taker-buy volume feed vwap and flow features). Bars are stored as Parquet, one file per
calendar month: `<out>/<market>/<SYMBOL>/<interval>/<YYYY-MM>.parquet`. A download resumes
after the newest stored bar; each month file is rewritten atomically (temp file + rename), so an
interrupted run loses at most the page in flight.

Rate limits: ccxt spaces requests (`enableRateLimit`); on top, the used weight Binance reports in
`X-MBX-USED-WEIGHT-1M` is read after every page, and past 90 % of the minute's budget the
download waits for the next minute. A 429/418 waits for `Retry-After` (else backs off
exponentially); other network errors back off and retry; exchange errors (bad symbol or
interval) raise HistoryError at once. All waiting goes through the injected Clock.

Binance's public bulk-archive files are read from local disk: `read_kline_csv` (klines, header
row optional, ms or µs times) and `read_aggtrades_csv` (spot and USDⓈ-M layouts).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from engine.clock import Clock, LiveClock
from engine.model import Market

KLINE_FIELDS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
STORED_FIELDS = KLINE_FIELDS[:-1]
INTERVAL_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 2_678_400_000,  # 31 days: an upper bound, used only to step and count pages
}
# USDⓈ-M weighs 10 for 1500 bars but 5 for 1000: 1000 gets the most bars per unit of weight.
PAGE_LIMIT = {Market.SPOT: 1000, Market.USDM: 1000}
WEIGHT_BUDGET = {Market.SPOT: 6000, Market.USDM: 2400}
_WEIGHT_HEADROOM = 0.9


class HistoryError(Exception):
    """A download cannot go on (unknown symbol, bad interval, retries exhausted)."""


def _decompressed(path: Path) -> bytes:
    raw = Path(path).read_bytes()
    if path.suffix == ".zip":
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            return archive.read(archive.namelist()[0])
    if path.suffix == ".gz":
        return gzip.decompress(raw)
    return raw


def _to_ms(values: pd.Series) -> pd.Series:
    # Spot archive files hold µs from 2025 on; Binance ms times stay below 1e14 until year 5138.
    return values.where(values < 10**14, values // 1000)


def read_kline_csv(path: Path) -> pd.DataFrame:
    """Read one archive kline file (.csv, .csv.gz or .zip; header row optional) with ms times."""
    raw = _decompressed(Path(path))
    has_header = not raw[:1].isdigit()
    frame = pd.read_csv(
        io.BytesIO(raw),
        header=0 if has_header else None,
        names=list(KLINE_FIELDS),
        dtype={"open_time": np.int64, "close_time": np.int64, "count": np.int64},
    )
    frame["open_time"] = _to_ms(frame["open_time"])
    frame["close_time"] = _to_ms(frame["close_time"])
    return frame[list(STORED_FIELDS)]


_AGG_SPOT = (
    "agg_trade_id",
    "price",
    "qty",
    "first_trade_id",
    "last_trade_id",
    "ts_ms",
    "is_buyer_maker",
    "is_best_match",
)
_AGG_HEADER = {"quantity": "qty", "transact_time": "ts_ms"}


def read_aggtrades_csv(path: Path) -> pd.DataFrame:
    """Read an archive aggTrades file (spot: no header, 8 fields; USDⓈ-M: header, 7 fields)."""
    raw = _decompressed(Path(path))
    if raw[:1].isdigit():
        frame = pd.read_csv(io.BytesIO(raw), header=None)
        frame.columns = list(_AGG_SPOT[: frame.shape[1]])
    else:
        frame = pd.read_csv(io.BytesIO(raw)).rename(columns=_AGG_HEADER)
    frame["ts_ms"] = _to_ms(frame["ts_ms"].astype(np.int64))
    frame["is_buyer_maker"] = frame["is_buyer_maker"].astype(str).str.lower().eq("true")
    return frame[
        [
            "agg_trade_id",
            "price",
            "qty",
            "first_trade_id",
            "last_trade_id",
            "ts_ms",
            "is_buyer_maker",
        ]
    ]


def aggtrades_to_klines(trades: pd.DataFrame, interval_ms: int = 60_000) -> pd.DataFrame:
    """Fold aggTrades into klines (only bars with trades; merge onto a raster for the rest)."""
    bucket = trades["ts_ms"] // interval_ms * interval_ms
    quote = trades["price"] * trades["qty"]
    taker_buy = ~trades["is_buyer_maker"]  # buyer is the taker
    grouped = trades.assign(
        bucket=bucket,
        quote=quote,
        buy=trades["qty"].where(taker_buy, 0.0),
        buy_quote=quote.where(taker_buy, 0.0),
        n=trades["last_trade_id"] - trades["first_trade_id"] + 1,
    ).groupby("bucket", sort=True)
    out = pd.DataFrame(
        {
            "open_time": grouped["bucket"].first().astype(np.int64),
            "open": grouped["price"].first(),
            "high": grouped["price"].max(),
            "low": grouped["price"].min(),
            "close": grouped["price"].last(),
            "volume": grouped["qty"].sum(),
            "close_time": grouped["bucket"].first().astype(np.int64) + interval_ms - 1,
            "quote_volume": grouped["quote"].sum(),
            "count": grouped["n"].sum().astype(np.int64),
            "taker_buy_volume": grouped["buy"].sum(),
            "taker_buy_quote_volume": grouped["buy_quote"].sum(),
        }
    )
    return out.reset_index(drop=True)


def klines_from_rows(rows: Iterable[Sequence[object]]) -> pd.DataFrame:
    """Turn REST kline rows (12 fields, numbers as strings) into a typed frame."""
    frame = pd.DataFrame([list(r)[:11] for r in rows], columns=list(STORED_FIELDS))
    for name in STORED_FIELDS:
        kind = np.int64 if name in ("open_time", "close_time", "count") else np.float64
        frame[name] = frame[name].astype(kind)
    return frame


# ---------------------------------------------------------------- storage (monthly Parquet)


def kline_dir(out_dir: Path, market: Market, symbol: str, interval: str) -> Path:
    """Return the directory that holds one series' month files."""
    return Path(out_dir) / market.value / symbol.upper() / interval


def read_stored_klines(out_dir: Path, market: Market, symbol: str, interval: str) -> pd.DataFrame:
    """Read every stored month of a series, oldest first."""
    files = sorted(kline_dir(out_dir, market, symbol, interval).glob("*.parquet"))
    if not files:
        return klines_from_rows([])
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return frame.drop_duplicates("open_time").sort_values("open_time").reset_index(drop=True)


def _store(directory: Path, bars: pd.DataFrame) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    month = pd.to_datetime(bars["open_time"], unit="ms", utc=True).dt.strftime("%Y-%m")
    for key, part in bars.groupby(month.to_numpy(), sort=True):
        path = directory / f"{key}.parquet"
        if path.exists():
            part = pd.concat([pd.read_parquet(path), part], ignore_index=True)
        part = part.drop_duplicates("open_time", keep="last").sort_values("open_time")
        staging = path.with_suffix(".parquet.tmp")
        part.reset_index(drop=True).to_parquet(staging, index=False)
        os.replace(staging, path)


def import_archive(
    paths: Sequence[Path], market: Market, symbol: str, interval: str, out_dir: Path
) -> int:
    """Store archive kline files in the download layout (so training reads one place); return bars."""
    bars = pd.concat([read_kline_csv(Path(p)) for p in paths], ignore_index=True)
    bars = bars.drop_duplicates("open_time").sort_values("open_time").reset_index(drop=True)
    _store(kline_dir(out_dir, market, symbol.upper(), interval), bars)
    return len(bars)


# ---------------------------------------------------------------- download


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """What one series' download did."""

    market: Market
    symbol: str
    interval: str
    directory: Path
    bars_written: int
    pages: int
    retries: int
    resumed_from_ms: int | None  # first bar asked for, when earlier bars were already stored


def make_exchange(market: Market, base_url: str | None = None):
    """Create a ccxt async binance client, optionally pointed at another base URL (simulator)."""
    import ccxt.async_support as ccxt

    exchange = ccxt.binance(
        {
            "enableRateLimit": True,
            "options": {"defaultType": "spot" if market is Market.SPOT else "future"},
        }
    )
    if base_url is not None:
        base = base_url.rstrip("/")
        exchange.urls["api"]["public"] = f"{base}/api/v3"
        exchange.urls["api"]["fapiPublic"] = f"{base}/fapi/v1"
    return exchange


def _header(headers: dict[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


async def _fetch_page(exchange, market: Market, params: dict, clock: Clock, max_retries: int):
    import ccxt.async_support as ccxt

    call = exchange.public_get_klines if market is Market.SPOT else exchange.fapipublic_get_klines
    retries = 0
    while True:
        try:
            return await call(params), retries
        except (ccxt.DDoSProtection, ccxt.RateLimitExceeded) as exc:
            wait = _header(exchange.last_response_headers, "Retry-After")
            delay = float(wait) if wait else min(2.0**retries, 60.0)
            error: Exception = exc
        except ccxt.NetworkError as exc:
            delay, error = min(2.0**retries, 60.0), exc
        except ccxt.ExchangeError as exc:
            raise HistoryError(f"{params['symbol']} {params['interval']}: {exc}") from exc
        retries += 1
        if retries > max_retries:
            raise HistoryError(f"giving up after {max_retries} retries: {error}") from error
        await clock.sleep(delay)


async def download_klines(
    market: Market,
    symbol: str,
    interval: str,
    start_ms: int,
    end_ms: int,
    out_dir: Path,
    *,
    base_url: str | None = None,
    clock: Clock | None = None,
    progress: bool = True,
    page_limit: int | None = None,
    flush_pages: int = 20,
    max_retries: int = 8,
) -> DownloadResult:
    """Download [start_ms, end_ms) of a series into monthly Parquet files, resuming if stored."""
    if interval not in INTERVAL_MS:
        raise HistoryError(f"{interval!r} is not a Binance interval ({', '.join(INTERVAL_MS)})")
    clock = clock or LiveClock()
    symbol = symbol.upper()
    directory = kline_dir(out_dir, market, symbol, interval)
    stored = read_stored_klines(out_dir, market, symbol, interval)
    resumed = None
    cursor = start_ms
    if len(stored) and int(stored["open_time"].iloc[-1]) >= start_ms:
        cursor = int(stored["open_time"].iloc[-1]) + 1
        resumed = cursor
    limit = page_limit or PAGE_LIMIT[market]
    step = INTERVAL_MS[interval]
    exchange = make_exchange(market, base_url)
    pending: list[pd.DataFrame] = []
    written = pages = retries = 0
    bar = tqdm(
        total=max((end_ms - start_ms) // step, 0),
        initial=max((cursor - start_ms) // step, 0),
        desc=f"{market.value} {symbol} {interval}",
        unit="bar",
        disable=not progress,
    )
    try:
        while cursor < end_ms:
            params = {
                "symbol": symbol,
                "interval": interval,
                "startTime": cursor,
                "endTime": end_ms - 1,
                "limit": limit,
            }
            rows, tries = await _fetch_page(exchange, market, params, clock, max_retries)
            retries += tries
            pages += 1
            page = klines_from_rows(rows)
            now_ms = clock.now_ns() // 1_000_000
            page = page[(page["open_time"] < end_ms) & (page["close_time"] < now_ms)]
            if len(page):
                pending.append(page)
                bar.update(len(page))
            if len(pending) >= flush_pages:
                written += _flush(directory, pending)
            if len(rows) < limit or not len(page):
                break  # the exchange has nothing newer in the range
            cursor = int(page["open_time"].iloc[-1]) + 1
            await _respect_weight(exchange, market, clock)
    finally:
        written += _flush(directory, pending)
        bar.close()
        await exchange.close()
    return DownloadResult(market, symbol, interval, directory, written, pages, retries, resumed)


def _flush(directory: Path, pending: list[pd.DataFrame]) -> int:
    if not pending:
        return 0
    bars = pd.concat(pending, ignore_index=True)
    pending.clear()
    _store(directory, bars)
    return len(bars)


async def _respect_weight(exchange, market: Market, clock: Clock) -> None:
    used = _header(exchange.last_response_headers, "X-MBX-USED-WEIGHT-1M")
    if used is not None and int(used) >= _WEIGHT_HEADROOM * WEIGHT_BUDGET[market]:
        seconds_into_minute = (clock.now_ns() / 1e9) % 60
        await clock.sleep(60 - seconds_into_minute + 0.5)


def run_download(
    symbols: Sequence[str],
    market: Market,
    interval: str,
    start_ms: int,
    end_ms: int,
    out_dir: Path,
    *,
    base_url: str | None = None,
    progress: bool = True,
) -> list[DownloadResult]:
    """Download several symbols one after the other (the `tickloop download` body)."""

    async def _all() -> list[DownloadResult]:
        return [
            await download_klines(
                market, s, interval, start_ms, end_ms, out_dir, base_url=base_url, progress=progress
            )
            for s in symbols
        ]

    return asyncio.run(_all())
