"""Stream routing, combined-stream URL splitting and REST URLs (expected values from the API docs)."""

from __future__ import annotations

import pytest

from engine.model import Market
from exchange.binance.urls import (
    SPOT_PROD,
    SPOT_TESTNET,
    USDM_PROD,
    USDM_TESTNET,
    BinanceEndpoints,
    ConnectionSpec,
    combined_stream_urls,
    default_endpoints,
    depth_snapshot_url,
    depth_snapshot_weight,
    exchange_info_url,
    market_streams,
    redact_url,
    server_time_url,
    stream_kind,
    usdm_private_stream_spec,
    usdm_route,
)


def test_default_endpoints_match_binance_documentation() -> None:
    assert default_endpoints(Market.SPOT) == BinanceEndpoints(
        "https://api.binance.com", "wss://stream.binance.com:9443", False
    )
    assert default_endpoints(Market.SPOT, testnet=True) == BinanceEndpoints(
        "https://testnet.binance.vision", "wss://stream.testnet.binance.vision", False
    )
    assert default_endpoints(Market.USDM) == BinanceEndpoints(
        "https://fapi.binance.com", "wss://fstream.binance.com", True
    )
    assert default_endpoints(Market.USDM, testnet=True) == BinanceEndpoints(
        "https://demo-fapi.binance.com", "wss://fstream.binancefuture.com", True
    )
    assert {SPOT_PROD, SPOT_TESTNET, USDM_PROD, USDM_TESTNET} == {
        default_endpoints(m, testnet=t) for m in Market for t in (False, True)
    }


def test_endpoints_are_overridable_and_lose_trailing_slashes() -> None:
    local = BinanceEndpoints("http://127.0.0.1:8080/", "ws://127.0.0.1:8081/", routed=True)
    assert local.rest_base == "http://127.0.0.1:8080"
    assert local.ws_base == "ws://127.0.0.1:8081"
    specs = combined_stream_urls(local, {"public": ["btcusdt@depth@100ms"]})
    assert specs == [
        ConnectionSpec(
            "ws://127.0.0.1:8081/public/stream?streams=btcusdt@depth@100ms",
            "public",
            ("btcusdt@depth@100ms",),
        )
    ]


def test_spot_streams_depth_and_trade_on_one_route() -> None:
    routes = market_streams(Market.SPOT, ["BTCUSDT", "ethusdt"])
    assert routes == {
        "": ["btcusdt@depth@100ms", "btcusdt@trade", "ethusdt@depth@100ms", "ethusdt@trade"]
    }


def test_spot_options() -> None:
    routes = market_streams(Market.SPOT, ["BTCUSDT"], depth_speed_ms=1000, trades="aggTrade")
    assert routes == {"": ["btcusdt@depth", "btcusdt@aggTrade"]}
    assert market_streams(Market.SPOT, ["BTCUSDT"], trades=None) == {"": ["btcusdt@depth@100ms"]}
    with pytest.raises(ValueError, match="markPrice"):
        market_streams(Market.SPOT, ["BTCUSDT"], mark_price=True)
    for speed in (250, 500, 0):
        with pytest.raises(ValueError, match="depth_speed_ms"):
            market_streams(Market.SPOT, ["BTCUSDT"], depth_speed_ms=speed)


def test_usdm_2026_routing_depth_public_aggtrade_and_markprice_market() -> None:
    routes = market_streams(Market.USDM, ["BTCUSDT", "ETHUSDT"], trades="aggTrade", mark_price=True)
    assert routes == {
        "public": ["btcusdt@depth@100ms", "ethusdt@depth@100ms"],
        "market": [
            "btcusdt@aggTrade",
            "btcusdt@markPrice@1s",
            "ethusdt@aggTrade",
            "ethusdt@markPrice@1s",
        ],
    }


def test_usdm_trade_stream_goes_to_public_like_ccxt() -> None:
    routes = market_streams(Market.USDM, ["BTCUSDT"], trades="trade")
    assert routes == {"public": ["btcusdt@depth@100ms", "btcusdt@trade"]}


def test_usdm_depth_speeds() -> None:
    assert market_streams(Market.USDM, ["X1USDT"], depth_speed_ms=250, trades=None) == {
        "public": ["x1usdt@depth"]
    }
    assert market_streams(Market.USDM, ["X1USDT"], depth_speed_ms=500, trades=None) == {
        "public": ["x1usdt@depth@500ms"]
    }
    with pytest.raises(ValueError, match="depth_speed_ms"):
        market_streams(Market.USDM, ["X1USDT"], depth_speed_ms=1000)


def test_symbols_are_checked_and_deduplicated() -> None:
    routes = market_streams(Market.SPOT, ["BTCUSDT", "btcusdt"], trades=None)
    assert routes == {"": ["btcusdt@depth@100ms"]}
    with pytest.raises(ValueError, match="not a Binance symbol"):
        market_streams(Market.SPOT, ["BTC/USDT"])


# The routing table of the USDⓈ-M "Important WebSocket Change Notice" (reference §1.1).
@pytest.mark.parametrize(
    ("stream", "route"),
    [
        ("btcusdt@bookTicker", "public"),
        ("!bookTicker", "public"),
        ("btcusdt@depth5", "public"),
        ("btcusdt@depth20@100ms", "public"),
        ("btcusdt@depth@500ms", "public"),
        ("btcusdt@depth", "public"),
        ("btcusdt@trade", "public"),
        ("btcusdt@aggTrade", "market"),
        ("btcusdt@markPrice", "market"),
        ("btcusdt@markPrice@1s", "market"),
        ("!markPrice@arr@1s", "market"),
        ("btcusdt@kline_1m", "market"),
        ("btcusdt_perpetual@continuousKline_1m", "market"),
        ("btcusdt@miniTicker", "market"),
        ("!miniTicker@arr", "market"),
        ("btcusdt@ticker", "market"),
        ("!ticker@arr", "market"),
        ("btcusdt@forceOrder", "market"),
        ("!forceOrder@arr", "market"),
        ("defiusdt@compositeIndex", "market"),
        ("!contractInfo", "market"),
        ("!assetIndex@arr", "market"),
    ],
)
def test_usdm_route_table(stream: str, route: str) -> None:
    assert usdm_route(stream) == route


def test_stream_kind() -> None:
    assert stream_kind("btcusdt@depth@100ms") == "depth"
    assert stream_kind("btcusdt@depth20@100ms") == "depth"
    assert stream_kind("btcusdt@markPrice@1s") == "markPrice"
    assert stream_kind("!markPrice@arr") == "markPrice"
    assert stream_kind("btcusdt@kline_1m") == "kline"


def test_combined_urls_spot_and_routed() -> None:
    spot = combined_stream_urls(SPOT_PROD, {"": ["btcusdt@depth@100ms", "btcusdt@trade"]})
    assert [s.url for s in spot] == [
        "wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms/btcusdt@trade"
    ]
    assert spot[0].route == "" and spot[0].streams == ("btcusdt@depth@100ms", "btcusdt@trade")
    usdm = combined_stream_urls(
        USDM_PROD,
        market_streams(Market.USDM, ["BTCUSDT"], trades="aggTrade", mark_price=True),
    )
    assert [(s.route, s.url) for s in usdm] == [
        ("public", "wss://fstream.binance.com/public/stream?streams=btcusdt@depth@100ms"),
        (
            "market",
            "wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade/btcusdt@markPrice@1s",
        ),
    ]


def test_route_must_match_endpoint_kind() -> None:
    with pytest.raises(ValueError, match="routed"):
        combined_stream_urls(USDM_PROD, {"": ["btcusdt@depth"]})
    with pytest.raises(ValueError, match="not routed"):
        combined_stream_urls(SPOT_PROD, {"public": ["btcusdt@depth"]})


def test_split_at_the_stream_limit_keeps_every_stream_once_in_order() -> None:
    streams = [f"s{i:04d}usdt@trade" for i in range(2500)]
    specs = combined_stream_urls(SPOT_PROD, {"": streams}, 1024, max_url_chars=10**9)
    assert [len(s.streams) for s in specs] == [1024, 1024, 452]
    assert [x for s in specs for x in s.streams] == streams
    for spec in specs:
        assert spec.url == SPOT_PROD.ws_base + "/stream?streams=" + "/".join(spec.streams)


def test_split_keeps_urls_short() -> None:
    symbols = [f"COIN{i:03d}USDT" for i in range(400)]
    routes = market_streams(Market.USDM, symbols, trades="aggTrade", mark_price=True)
    specs = combined_stream_urls(USDM_PROD, routes)
    assert all(len(s.url) <= 4000 for s in specs)
    assert len(specs) > 2  # 1200 streams of ~20 chars cannot fit two 4000-char URLs
    for route, streams in routes.items():
        assert [x for s in specs if s.route == route for x in s.streams] == streams
    # tighter limits are honoured too, and a stream count limit of 1 gives one URL per stream
    small = combined_stream_urls(USDM_PROD, routes, max_url_chars=200)
    assert all(len(s.url) <= 200 for s in small)
    one_each = combined_stream_urls(USDM_PROD, {"public": ["a1usdt@depth", "b1usdt@depth"]}, 1)
    assert [s.streams for s in one_each] == [("a1usdt@depth",), ("b1usdt@depth",)]


def test_duplicate_streams_are_sent_once() -> None:
    specs = combined_stream_urls(SPOT_PROD, {"": ["a1usdt@trade", "a1usdt@trade"]})
    assert specs[0].streams == ("a1usdt@trade",)


def test_depth_snapshot_urls_and_limits() -> None:
    assert (
        depth_snapshot_url(SPOT_PROD, Market.SPOT, "btcusdt", 5000)
        == "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=5000"
    )
    assert (
        depth_snapshot_url(USDM_PROD, Market.USDM, "BTCUSDT", 1000)
        == "https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
    )
    for limit in (1, 7, 4999):
        depth_snapshot_url(SPOT_PROD, Market.SPOT, "BTCUSDT", limit)
    for limit in (0, 5001):
        with pytest.raises(ValueError, match="limit"):
            depth_snapshot_url(SPOT_PROD, Market.SPOT, "BTCUSDT", limit)
    for limit in (5, 10, 20, 50, 100, 500, 1000):
        depth_snapshot_url(USDM_PROD, Market.USDM, "BTCUSDT", limit)
    for limit in (1, 200, 5000):
        with pytest.raises(ValueError, match="limit"):
            depth_snapshot_url(USDM_PROD, Market.USDM, "BTCUSDT", limit)


@pytest.mark.parametrize(
    ("market", "limit", "weight"),
    [
        (Market.SPOT, 100, 5),
        (Market.SPOT, 101, 25),
        (Market.SPOT, 500, 25),
        (Market.SPOT, 1000, 50),
        (Market.SPOT, 1001, 250),
        (Market.SPOT, 5000, 250),
        (Market.USDM, 5, 2),
        (Market.USDM, 50, 2),
        (Market.USDM, 100, 5),
        (Market.USDM, 500, 10),
        (Market.USDM, 1000, 20),
    ],
)
def test_depth_snapshot_weight(market: Market, limit: int, weight: int) -> None:
    assert depth_snapshot_weight(market, limit) == weight


def test_exchange_info_and_time_urls() -> None:
    assert (
        exchange_info_url(SPOT_PROD, Market.SPOT) == "https://api.binance.com/api/v3/exchangeInfo"
    )
    assert (
        exchange_info_url(SPOT_PROD, Market.SPOT, ["btcusdt", "ETHUSDT"])
        == "https://api.binance.com/api/v3/exchangeInfo?symbols=%5B%22BTCUSDT%22%2C%22ETHUSDT%22%5D"
    )
    assert (
        exchange_info_url(USDM_PROD, Market.USDM, ["BTCUSDT"])
        == "https://fapi.binance.com/fapi/v1/exchangeInfo"
    )
    assert (
        server_time_url(SPOT_TESTNET, Market.SPOT) == "https://testnet.binance.vision/api/v3/time"
    )
    assert (
        server_time_url(USDM_TESTNET, Market.USDM) == "https://demo-fapi.binance.com/fapi/v1/time"
    )


def test_private_stream_spec_and_redaction() -> None:
    key = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6saf11pvjal1iblA"
    spec = usdm_private_stream_spec(USDM_PROD, key)
    assert spec.url == (
        f"wss://fstream.binance.com/private/ws?listenKey={key}"
        "&events=ORDER_TRADE_UPDATE/ACCOUNT_UPDATE"
    )
    assert spec.route == "private" and spec.streams == ()
    assert key not in redact_url(spec.url)
    assert redact_url(spec.url).startswith("wss://fstream.binance.com/private/ws?listenKey=***&")
    legacy = usdm_private_stream_spec(BinanceEndpoints("h://r", "ws://127.0.0.1:1", False), key)
    assert legacy.url == f"ws://127.0.0.1:1/ws/{key}"
    assert redact_url(legacy.url) == "ws://127.0.0.1:1/ws/***"
    public = "wss://fstream.binance.com/public/stream?streams=btcusdt@depth@100ms"
    assert redact_url(public) == public
    with pytest.raises(ValueError):
        usdm_private_stream_spec(USDM_PROD, "bad key&x=1")
