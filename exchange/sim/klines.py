"""Loopback kline server: Binance's `/api/v3/klines` and `/fapi/v1/klines` from kline CSVs.

Serves one-minute klines loaded from files in Binance's public-archive layout (12 columns,
with or without the futures header row, `.csv`, `.csv.gz` or `.zip`) for spot and USDⓈ-M, and
any longer interval aggregated from them. Request parameters, limits, errors, the 12-field
response rows and the used-weight headers follow Binance (reference/binance-api.md §8.1):

* `symbol`, `interval` required; `startTime`, `endTime`, `limit` (default 500; max 1000 spot,
  1500 USDⓈ-M; out of range -> -1130); with `startTime` the oldest bars from it, with only
  `endTime` the newest bars up to it, with neither the newest bars;
* weight per request: spot 2; USDⓈ-M 1/2/5/10 by limit; counted per minute of the server clock
  and returned in `X-MBX-USED-WEIGHT-1M`; over the budget (6000 spot, 2400 USDⓈ-M) -> HTTP 429
  with `Retry-After`;
* `fail_next(n, retry_after_s)` makes the next n kline requests answer 429 with `Retry-After`
  (a fault for tests), `requests` records every kline request's parameters.

`add_kline_routes(app, server)` registers the routes on an existing aiohttp app (the main
simulator); `build_klines_app(server)` makes a standalone one. Also served: `exchangeInfo` and
`time` for both markets.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from aiohttp import web

from engine.clock import Clock, LiveClock
from exchange.history import KLINE_FIELDS, read_kline_csv

MINUTE_MS = 60_000
FIXED_INTERVALS_MS = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "2h": 120 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "6h": 360 * MINUTE_MS,
    "8h": 480 * MINUTE_MS,
    "12h": 720 * MINUTE_MS,
    "1d": 1440 * MINUTE_MS,
    "3d": 3 * 1440 * MINUTE_MS,
    "1w": 7 * 1440 * MINUTE_MS,
}
_WEEK_OFFSET_MS = 4 * 1440 * MINUTE_MS  # 1970-01-01 was a Thursday; Binance weeks start Monday
MAX_LIMIT = {"spot": 1000, "usdm": 1500}
WEIGHT_BUDGET = {"spot": 6000, "usdm": 2400}


@dataclass
class KlineServer:
    """The data and state behind the kline routes."""

    clock: Clock = field(default_factory=LiveClock)
    minutes: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    _fail: list[int] = field(default_factory=list)  # Retry-After seconds of the next 429s
    _weight: dict[str, tuple[int, int]] = field(default_factory=dict)  # market -> (minute, used)

    def add_file(self, market: str, symbol: str, paths: Iterable[Path]) -> None:
        """Load one-minute kline files for a (market, symbol); overlapping bars count once."""
        frames = [read_kline_csv(Path(p)) for p in paths]
        if (market, symbol) in self.minutes:
            frames.insert(0, self.minutes[(market, symbol)])
        merged = pd.concat(frames, ignore_index=True).drop_duplicates("open_time")
        self.minutes[(market, symbol)] = merged.sort_values("open_time").reset_index(drop=True)

    def fail_next(self, n: int = 1, retry_after_s: int = 1) -> None:
        """Answer the next n kline requests with HTTP 429 and this Retry-After."""
        self._fail.extend([retry_after_s] * n)

    def bars(self, market: str, symbol: str, interval: str) -> pd.DataFrame:
        """Return the bars of an interval (aggregated from minutes)."""
        minutes = self.minutes[(market, symbol)]
        if interval == "1m":
            return minutes
        return aggregate(minutes, interval)

    def _charge(self, market: str, weight: int) -> tuple[int, bool]:
        minute = self.clock.now_ns() // 1_000_000 // MINUTE_MS
        start, used = self._weight.get(market, (minute, 0))
        used = used + weight if start == minute else weight
        self._weight[market] = (minute, used)
        return used, used > WEIGHT_BUDGET[market]


def aggregate(minutes: pd.DataFrame, interval: str) -> pd.DataFrame:
    """Aggregate one-minute klines into a longer Binance interval (1M by calendar month)."""
    open_time = minutes["open_time"].to_numpy()
    if interval == "1M":
        stamps = pd.to_datetime(open_time, unit="ms", utc=True)
        starts = np.array(
            [calendar.timegm((t.year, t.month, 1, 0, 0, 0)) * 1000 for t in stamps], dtype=np.int64
        )
        ends = np.array(
            [
                calendar.timegm((t.year + t.month // 12, t.month % 12 + 1, 1, 0, 0, 0)) * 1000 - 1
                for t in stamps
            ],
            dtype=np.int64,
        )
    else:
        length = FIXED_INTERVALS_MS[interval]
        offset = _WEEK_OFFSET_MS if interval == "1w" else 0
        starts = (open_time - offset) // length * length + offset
        ends = starts + length - 1
    grouped = minutes.assign(bucket=starts, bucket_end=ends).groupby("bucket", sort=True)
    out = pd.DataFrame(
        {
            "open_time": grouped["bucket"].first(),
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(),
            "close_time": grouped["bucket_end"].first(),
            "quote_volume": grouped["quote_volume"].sum(),
            "count": grouped["count"].sum(),
            "taker_buy_volume": grouped["taker_buy_volume"].sum(),
            "taker_buy_quote_volume": grouped["taker_buy_quote_volume"].sum(),
        }
    )
    return out.reset_index(drop=True)


def _number(value: float) -> str:
    # Shortest round-trip text; sums are rounded to 8 decimals like Binance's own strings.
    return repr(float(round(value, 8)))


def _rows(frame: pd.DataFrame) -> list[list[object]]:
    columns = [frame[name].to_numpy() for name in KLINE_FIELDS[:-1]]
    rows = []
    for values in zip(*columns, strict=True):
        rows.append(
            [
                int(values[0]),
                _number(values[1]),
                _number(values[2]),
                _number(values[3]),
                _number(values[4]),
                _number(values[5]),
                int(values[6]),
                _number(values[7]),
                int(values[8]),
                _number(values[9]),
                _number(values[10]),
                "0",
            ]
        )
    return rows


def _error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)


def _weight(market: str, limit: int) -> int:
    if market == "spot":
        return 2
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def _int_param(query: dict[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    return int(value)  # ValueError -> -1100 below


def _klines_handler(server: KlineServer, market: str):
    async def handle(request: web.Request) -> web.Response:
        query = dict(request.query)
        server.requests.append({"market": market, **query})
        if server._fail:
            retry_after = server._fail.pop(0)
            return _error(
                429,
                -1003,
                "Too many requests; current request weight is over the limit.",
                {"Retry-After": str(retry_after)},
            )
        for name in ("symbol", "interval"):
            if not query.get(name):
                return _error(
                    400,
                    -1102,
                    f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
                )
        try:
            given = _int_param(query, "limit")
            limit = 500 if given is None else given
            start = _int_param(query, "startTime")
            end = _int_param(query, "endTime")
        except ValueError:
            return _error(400, -1100, "Illegal characters found in a parameter.")
        used, over = server._charge(market, _weight(market, limit))
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if over:
            headers["Retry-After"] = str(60 - (server.clock.now_ns() // 10**9) % 60)
            return _error(
                429,
                -1003,
                "Too many requests; current limit of IP request weight per "
                f"minute is {WEIGHT_BUDGET[market]}.",
                headers,
            )
        if not 1 <= limit <= MAX_LIMIT[market]:
            return _error(400, -1130, "Data sent for parameter 'limit' is not valid.", headers)
        interval = query["interval"]
        if interval != "1M" and interval not in FIXED_INTERVALS_MS:
            return _error(400, -1120, "Invalid interval.", headers)
        if (market, query["symbol"]) not in server.minutes:
            return _error(400, -1121, "Invalid symbol.", headers)
        if start is not None and end is not None and start > end:
            return _error(400, -1023, "Start time is greater than end time.", headers)
        bars = server.bars(market, query["symbol"], interval)
        open_time = bars["open_time"].to_numpy()
        lo = 0 if start is None else int(np.searchsorted(open_time, start, side="left"))
        hi = len(bars) if end is None else int(np.searchsorted(open_time, end, side="right"))
        picked = (
            bars.iloc[lo : min(hi, lo + limit)]
            if start is not None
            else bars.iloc[max(hi - limit, lo) : hi]
        )
        return web.json_response(_rows(picked), headers=headers)

    return handle


def _exchange_info_handler(server: KlineServer, market: str):
    async def handle(request: web.Request) -> web.Response:
        symbols = sorted(s for m, s in server.minutes if m == market)
        return web.json_response(
            {
                "timezone": "UTC",
                "serverTime": server.clock.now_ns() // 1_000_000,
                "rateLimits": [
                    {
                        "rateLimitType": "REQUEST_WEIGHT",
                        "interval": "MINUTE",
                        "intervalNum": 1,
                        "limit": WEIGHT_BUDGET[market],
                    }
                ],
                "symbols": [
                    {
                        "symbol": s,
                        "status": "TRADING",
                        "baseAsset": s[:-4],
                        "quoteAsset": s[-4:],
                        "filters": [],
                    }
                    for s in symbols
                ],
            }
        )

    return handle


def _time_handler(server: KlineServer):
    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"serverTime": server.clock.now_ns() // 1_000_000})

    return handle


def add_kline_routes(app: web.Application, server: KlineServer, with_info: bool = True) -> None:
    """Register the kline routes of both markets (and, with_info, exchangeInfo and time)."""
    for market, prefix in (("spot", "/api/v3"), ("usdm", "/fapi/v1")):
        app.router.add_get(f"{prefix}/klines", _klines_handler(server, market))
        if with_info:  # the main simulator serves its own exchangeInfo and time
            app.router.add_get(f"{prefix}/exchangeInfo", _exchange_info_handler(server, market))
            app.router.add_get(f"{prefix}/time", _time_handler(server))


def build_klines_app(server: KlineServer) -> web.Application:
    """Return a standalone aiohttp app serving the kline routes."""
    app = web.Application()
    add_kline_routes(app, server)
    return app
