"""The simulator's REST endpoints: time, exchangeInfo (recorded and synthesized), depth, errors."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from engine.clock import ReplayClock
from engine.tape import read_tape
from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline


def recorded_exchange_info(shared_data: Path, market: str) -> dict:
    name = {"spot": "spot_exchangeInfo_20211012.json", "usdm": "usdm_exchangeInfo_20210721.json"}
    return json.loads((shared_data / "binance-rest" / name[market]).read_text())


def event_times_ms(path: Path) -> list[int]:
    times = []
    for frame in read_tape(path):
        if frame.snapshot_symbol is None:
            data = json.loads(frame.payload)["data"]
            if "E" in data:
                times.append(data["E"])
    return times


def filters_of(entry: dict) -> dict[str, dict]:
    return {f["filterType"]: f for f in entry["filters"]}


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict, dict]:
    async with http.get(url) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def test_server_time_is_the_exchange_time_of_the_replay_position(
    spot_timeline: Timeline, spot_tape: Path
) -> None:
    times = event_times_ms(spot_tape)
    async with (
        SimServer(spot_timeline, speed=0, autostart=False) as sim,
        aiohttp.ClientSession() as http,
    ):
        _, before, _ = await get(http, f"{sim.base_http}/api/v3/time")
        sim.start()
        await sim.wait_finished()
        _, after, _ = await get(http, f"{sim.base_http}/fapi/v1/time")
    # The recorder ran ~1.27 s behind the exchange: server time follows the exchange's E.
    assert abs(before["serverTime"] - times[0]) < 100
    assert abs(after["serverTime"] - max(times)) < 100


async def test_exchange_info_serves_the_recorded_entry(
    spot_timeline: Timeline, usdm_timeline: Timeline, shared_data: Path
) -> None:
    for timeline, prefix, market in (
        (spot_timeline, "/api/v3", "spot"),
        (usdm_timeline, "/fapi/v1", "usdm"),
    ):
        recorded = recorded_exchange_info(shared_data, market)
        expected = next(s for s in recorded["symbols"] if s["symbol"] == "BTCUSDT")
        async with SimServer(timeline, autostart=False) as sim, aiohttp.ClientSession() as http:
            status, body, _ = await get(http, f"{sim.base_http}{prefix}/exchangeInfo")
            assert status == 200
            assert body["symbols"] == [expected]
            weight = [r for r in body["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT"]
            assert len(weight) == 1 and weight[0]["limit"] > 0
            status, one, _ = await get(http, f"{sim.base_http}{prefix}/exchangeInfo?symbol=BTCUSDT")
            assert status == 200 and one["symbols"] == [expected]
            url = f'{sim.base_http}{prefix}/exchangeInfo?symbols=["BTCUSDT"]'
            status, many, _ = await get(http, url)
            assert status == 200 and many["symbols"] == [expected]
            status, error, _ = await get(
                http, f"{sim.base_http}{prefix}/exchangeInfo?symbol=XRPUSDT"
            )
            assert (status, error) == (400, {"code": -1121, "msg": "Invalid symbol."})


@pytest.mark.parametrize(
    ("timeline_name", "prefix", "tick", "step"),
    [
        # spot BTCUSDT: the recorded 2021 exchangeInfo has tick 0.01 and step 0.00001
        ("spot_timeline", "/api/v3", "0.01", "0.00001"),
        # USDⓈ-M BTCUSDT trades on a 0.1 tick since 2022 (every tape price ends in 0 at 0.01)
        # and a 0.001 step; the 2021 file still says 0.01, so this also proves the inference
        ("usdm_timeline", "/fapi/v1", "0.1", "0.001"),
    ],
)
async def test_exchange_info_synthesizes_filters_from_the_tape(
    request: pytest.FixtureRequest, tmp_path: Path, timeline_name: str, prefix: str, tick: str,
    step: str,
) -> None:  # fmt: skip
    timeline = request.getfixturevalue(timeline_name)
    async with (
        SimServer(timeline, autostart=False, exchange_info_dir=tmp_path) as sim,
        aiohttp.ClientSession() as http,
    ):
        status, body, _ = await get(http, f"{sim.base_http}{prefix}/exchangeInfo")
    assert status == 200
    (entry,) = body["symbols"]
    assert entry["symbol"] == "BTCUSDT" and entry["status"] == "TRADING"
    assert (entry["baseAsset"], entry["quoteAsset"]) == ("BTC", "USDT")
    filters = filters_of(entry)
    assert Decimal(filters["PRICE_FILTER"]["tickSize"]) == Decimal(tick)
    assert Decimal(filters["LOT_SIZE"]["stepSize"]) == Decimal(step)


def test_usdm_tape_prices_really_sit_on_a_tenth_grid(usdm_timeline: Timeline) -> None:
    """The hand-derived expectation above, checked against the raw tape."""
    prices = [p for f in usdm_timeline.frames if f.depth for p, _ in f.depth.bids + f.depth.asks]
    assert all(Decimal(p) % Decimal("0.1") == 0 for p in prices)
    assert any(Decimal(p) % 1 != 0 for p in prices)


async def test_depth_limits_errors_and_weight_headers(
    spot_timeline: Timeline, usdm_timeline: Timeline
) -> None:
    async with SimServer(spot_timeline, autostart=False) as sim, aiohttp.ClientSession() as http:
        base = f"{sim.base_http}/api/v3/depth"
        status, body, headers = await get(http, f"{base}?symbol=BTCUSDT")
        assert status == 200 and len(body["bids"]) == len(body["asks"]) == 100  # default limit
        assert headers["X-MBX-USED-WEIGHT-1M"] == "5"
        status, body, headers = await get(http, f"{base}?symbol=BTCUSDT&limit=6000")
        assert status == 200 and len(body["bids"]) == 1000  # clamped to 5000; tape has 1000
        assert headers["X-MBX-USED-WEIGHT-1M"] == str(5 + 250)
        assert set(body) == {"lastUpdateId", "bids", "asks"}
        bids = [Decimal(p) for p, _ in body["bids"]]
        asks = [Decimal(p) for p, _ in body["asks"]]
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
        status, body, _ = await get(http, base)
        assert status == 400 and body["code"] == -1102
        status, body, _ = await get(http, f"{base}?symbol=DOGEUSDT")
        assert (status, body) == (400, {"code": -1121, "msg": "Invalid symbol."})
    async with SimServer(usdm_timeline, autostart=False) as sim, aiohttp.ClientSession() as http:
        base = f"{sim.base_http}/fapi/v1/depth"
        status, body, headers = await get(http, f"{base}?symbol=BTCUSDT")
        assert status == 200 and len(body["bids"]) == 500  # futures default limit
        assert headers["X-MBX-USED-WEIGHT-1M"] == "10"
        assert {"lastUpdateId", "E", "T", "bids", "asks"} == set(body)
        status, body, _ = await get(http, f"{base}?symbol=BTCUSDT&limit=7")
        assert status == 400 and body["code"] == -1130
        status, body, _ = await get(http, f"{base}?symbol=BTCUSDT&limit=5")
        assert status == 200 and len(body["bids"]) == 5


async def test_weight_budget_exhaustion_answers_429(spot_timeline: Timeline) -> None:
    clock = ReplayClock(start_ns=1_723_161_600_000_000_000)  # frozen: no minute rollover mid-test
    async with (
        SimServer(spot_timeline, autostart=False, clock=clock) as sim,
        aiohttp.ClientSession() as http,
    ):
        url = f"{sim.base_http}/api/v3/depth?symbol=BTCUSDT&limit=5000"  # weight 250
        statuses = []
        for _ in range(25):  # 25 * 250 > 6000
            status, body, headers = await get(http, url)
            statuses.append(status)
        assert statuses[:24] == [200] * 24
        assert statuses[24] == 429 and body["code"] == -1003 and int(headers["Retry-After"]) > 0
