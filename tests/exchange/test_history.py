"""Kline download through ccxt against the loopback kline server (real FILUSDT klines).

Expected values come from pandas reading the same archive CSV directly, never from the code
under test.
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pandas as pd
import pytest
from aiohttp import web

from engine.model import Market
from exchange.history import (
    HistoryError,
    aggtrades_to_klines,
    download_klines,
    import_archive,
    read_aggtrades_csv,
    read_kline_csv,
    read_stored_klines,
)
from exchange.sim.klines import KlineServer, build_klines_app

DAY = 86_400_000
FIELDS = [
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
]


class SteppingClock:
    """A clock in 2030 whose sleeps are recorded and advance it instantly."""

    def __init__(self) -> None:
        self.now = int(pd.Timestamp("2030-01-01 00:00:10", tz="UTC").value)
        self.sleeps: list[float] = []

    def now_ns(self) -> int:
        return self.now

    def monotonic_ns(self) -> int:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += int(seconds * 1e9)


@pytest.fixture(scope="module")
def fil_file(shared_data: Path) -> Path:
    return shared_data / "klines" / "usdm-1m" / "FILUSDT-1m-2023-08.csv.gz"


@pytest.fixture(scope="module")
def fil_expected(fil_file: Path) -> pd.DataFrame:
    return pd.read_csv(fil_file)[FIELDS]


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
async def server(fil_file: Path, clock: SteppingClock) -> AsyncIterator[tuple[KlineServer, str]]:
    state = KlineServer(clock=clock)
    state.add_file("usdm", "FILUSDT", [fil_file])
    state.add_file("spot", "FILUSDT", [fil_file])
    runner = web.AppRunner(build_klines_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield state, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def first_ms(expected: pd.DataFrame) -> int:
    return int(expected["open_time"].iloc[0])


async def test_download_equals_the_archive_and_resumes(
    server, fil_expected, clock, tmp_path: Path
) -> None:
    state, base = server
    start = first_ms(fil_expected)
    half = await download_klines(
        Market.USDM,
        "FILUSDT",
        "1m",
        start,
        start + DAY,
        tmp_path,
        base_url=base,
        clock=clock,
        progress=False,
    )
    assert (half.bars_written, half.pages, half.resumed_from_ms) == (1440, 2, None)
    requests_before = len(state.requests)
    full = await download_klines(
        Market.USDM,
        "filusdt",
        "1m",
        start,
        start + 2 * DAY + 7 * 60_000,
        tmp_path,
        base_url=base,
        clock=clock,
        progress=False,
    )
    assert full.resumed_from_ms == start + DAY - 60_000 + 1
    assert full.bars_written == 1440 + 7
    assert int(state.requests[requests_before]["startTime"]) == start + DAY - 60_000 + 1
    assert {r["limit"] for r in state.requests} == {"1000"}
    stored = read_stored_klines(tmp_path, Market.USDM, "FILUSDT", "1m")
    pd.testing.assert_frame_equal(
        stored, fil_expected.iloc[: 2 * 1440 + 7].reset_index(drop=True), check_dtype=False
    )
    assert sorted(p.name for p in full.directory.iterdir()) == ["2023-08.parquet"]


async def test_rate_limit_answers_are_waited_out(
    server, fil_expected, clock, tmp_path: Path
) -> None:
    state, base = server
    state.fail_next(2, retry_after_s=7)
    start = first_ms(fil_expected)
    result = await download_klines(
        Market.SPOT,
        "FILUSDT",
        "1m",
        start,
        start + 500 * 60_000,
        tmp_path,
        base_url=base,
        clock=clock,
        progress=False,
    )
    assert result.retries == 2 and clock.sleeps == [7.0, 7.0]
    assert result.bars_written == 500
    assert [r["market"] for r in state.requests] == ["spot"] * 3


async def test_used_weight_near_the_budget_waits_for_the_next_minute(
    server, fil_expected, clock, tmp_path: Path
) -> None:
    state, base = server
    minute = clock.now // 10**9 // 60
    state._weight["usdm"] = (minute, 2200)  # another client of this IP used most of the minute
    start = first_ms(fil_expected)
    result = await download_klines(
        Market.USDM,
        "FILUSDT",
        "1m",
        start,
        start + 2000 * 60_000,
        tmp_path,
        base_url=base,
        clock=clock,
        progress=False,
    )
    assert result.bars_written == 2000
    assert clock.sleeps == [pytest.approx(50.5)]  # 10 s into the minute: wait out the other 50


async def test_longer_intervals_are_aggregated_like_binance(
    server, fil_expected, clock, tmp_path: Path
) -> None:
    _, base = server
    start = first_ms(fil_expected)
    result = await download_klines(
        Market.SPOT,
        "FILUSDT",
        "4h",
        start,
        start + 3 * DAY,
        tmp_path,
        base_url=base,
        clock=clock,
        progress=False,
    )
    got = read_stored_klines(tmp_path, Market.SPOT, "FILUSDT", "4h")
    minutes = fil_expected.iloc[: 3 * 1440].copy()
    minutes.index = pd.to_datetime(minutes["open_time"], unit="ms", utc=True)
    expected = minutes.resample("4h").agg(
        {
            "open": "first",
            "high": "max",
            "low": "min",
            "close": "last",
            "volume": "sum",
            "count": "sum",
            "quote_volume": "sum",
        }
    )
    assert result.bars_written == 18
    np.testing.assert_array_equal(got["open_time"], expected.index.as_unit("ms").astype("int64"))
    np.testing.assert_array_equal(got["close_time"] - got["open_time"], 4 * 3_600_000 - 1)
    for column in ("open", "high", "low", "close", "count"):
        np.testing.assert_array_equal(got[column], expected[column])
    np.testing.assert_allclose(got["volume"], expected["volume"], rtol=1e-12)


async def test_exchange_errors_stop_the_download(server, clock, tmp_path: Path) -> None:
    _, base = server
    with pytest.raises(HistoryError, match="Invalid symbol"):
        await download_klines(
            Market.USDM,
            "NOPEUSDT",
            "1m",
            0,
            DAY,
            tmp_path,
            base_url=base,
            clock=clock,
            progress=False,
        )
    with pytest.raises(HistoryError, match="not a Binance interval"):
        await download_klines(
            Market.USDM,
            "FILUSDT",
            "7m",
            0,
            DAY,
            tmp_path,
            base_url=base,
            clock=clock,
            progress=False,
        )


async def test_server_speaks_binance_parameters(server, fil_expected, fil_file: Path) -> None:
    fil_text = pd.read_csv(fil_file, dtype=str, nrows=1)
    _, base = server
    start = first_ms(fil_expected)
    async with aiohttp.ClientSession() as http:

        async def get(path: str, **params: object) -> tuple[int, object, dict[str, str]]:
            async with http.get(
                f"{base}{path}", params={k: str(v) for k, v in params.items()}
            ) as r:
                return r.status, await r.json(), dict(r.headers)

        status, body, headers = await get(
            "/api/v3/klines", symbol="FILUSDT", interval="1m", startTime=start, limit=3
        )
        assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "2"
        text = fil_text.iloc[0]  # the archive's own strings
        assert body[0] == [
            int(text.iloc[0]),
            *text.iloc[1:6],
            int(text.iloc[6]),
            text.iloc[7],
            int(text.iloc[8]),
            *text.iloc[9:11],
            "0",
        ]
        status, body, _ = await get(
            "/api/v3/klines", symbol="FILUSDT", interval="1m", endTime=start + 10 * 60_000, limit=2
        )
        assert [r[0] for r in body] == [start + 9 * 60_000, start + 10 * 60_000]  # newest up to end
        status, body, _ = await get("/api/v3/klines", symbol="FILUSDT", interval="1m", limit=1001)
        assert (status, body["code"]) == (400, -1130)
        status, body, headers = await get(
            "/fapi/v1/klines", symbol="FILUSDT", interval="1m", limit=1500
        )
        assert status == 200 and len(body) == 1500 and headers["X-MBX-USED-WEIGHT-1M"] == "10"
        assert body[-1][0] == int(fil_expected["open_time"].iloc[-1])  # no time given: the newest
        status, body, _ = await get("/fapi/v1/klines", symbol="FILUSDT", interval="2m")
        assert (status, body["code"]) == (400, -1120)
        status, body, _ = await get("/fapi/v1/klines", interval="1m")
        assert (status, body["code"]) == (400, -1102)
        status, body, _ = await get(
            "/fapi/v1/klines", symbol="FILUSDT", interval="1m", startTime=start + 5, endTime=start
        )
        assert (status, body["code"]) == (400, -1023)


def test_archive_readers_handle_both_layouts(tmp_path: Path) -> None:
    # Spot archive: no header, µs times from 2025, zipped.
    spot_line = "1735689600000000,93576.00,93610.93,93537.50,93610.93,8.21827,1735689659999999,769057.22,1284,3.90,365000.1,0\n"
    with zipfile.ZipFile(tmp_path / "BTCUSDT-1m-2025-01-01.zip", "w") as archive:
        archive.writestr("BTCUSDT-1m-2025-01-01.csv", spot_line)
    spot = read_kline_csv(tmp_path / "BTCUSDT-1m-2025-01-01.zip")
    assert spot["open_time"].tolist() == [1735689600000] and spot["close_time"].tolist() == [
        1735689659999
    ]
    assert spot["count"].tolist() == [1284] and spot["close"].tolist() == [93610.93]
    spot_trades = (
        "1,0.5,2.0,10,12,1735689600123456,True,True\n2,0.6,1.0,13,13,1735689601000000,False,True\n"
    )
    (tmp_path / "spot-agg.csv").write_text(spot_trades)
    um_trades = (
        "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
        "1,0.5,2.0,10,12,1690848000123,true\n2,0.6,1.0,13,13,1690848061000,false\n"
    )
    (tmp_path / "um-agg.csv.gz").write_bytes(gzip.compress(um_trades.encode()))
    for name, first_ts in (("spot-agg.csv", 1735689600123), ("um-agg.csv.gz", 1690848000123)):
        trades = read_aggtrades_csv(tmp_path / name)
        assert trades["ts_ms"].iloc[0] == first_ts
        assert trades["is_buyer_maker"].tolist() == [True, False]
        assert trades["qty"].tolist() == [2.0, 1.0]
    klines = aggtrades_to_klines(read_aggtrades_csv(tmp_path / "um-agg.csv.gz"))
    assert klines["open_time"].tolist() == [1690848000000, 1690848060000]
    assert klines["count"].tolist() == [3, 1]
    assert klines["taker_buy_volume"].tolist() == [0.0, 1.0]  # buyer maker: a taker sell
    assert klines["quote_volume"].tolist() == [1.0, 0.6]


def test_archive_files_import_into_the_download_layout(
    fil_file: Path, fil_expected, tmp_path: Path
) -> None:
    assert import_archive([fil_file, fil_file], Market.USDM, "filusdt", "1m", tmp_path) == 44640
    stored = read_stored_klines(tmp_path, Market.USDM, "FILUSDT", "1m")
    pd.testing.assert_frame_equal(stored, fil_expected, check_dtype=False)
