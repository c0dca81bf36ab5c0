"""Binance base URLs, market-data stream names, their 2026 routing, and REST URLs.

Spot serves every stream on one host (`{ws}/stream?streams=...`). USDⓈ-M split its websocket
host in 2026 into `/public` (depth, bookTicker), `/market` (aggTrade, markPrice, klines,
tickers, ...) and `/private` (user data); an unrouted or wrongly routed connection subscribes
without error and then never delivers (§1.1 and §10 of the API reference), so the route of every
stream is decided here, in one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode

from engine.model import Market, is_binance_symbol

MAX_STREAMS_PER_CONNECTION = 1024  # both venues since 2025-07-02 (USDⓈ-M was 200 before)
# Binance documents no URL limit; common proxies and servers cut request lines at 8 KiB.
MAX_URL_CHARS = 4000

ROUTE_SPOT = ""
ROUTE_PUBLIC = "public"
ROUTE_MARKET = "market"
ROUTE_PRIVATE = "private"

SPOT_DEPTH_LIMIT_MAX = 5000
USDM_DEPTH_LIMITS = frozenset({5, 10, 20, 50, 100, 500, 1000})

TradeStream = Literal["trade", "aggTrade"]


@dataclass(frozen=True, slots=True)
class BinanceEndpoints:
    """REST and websocket base URLs of one venue; `routed` selects the USDⓈ-M path routing."""

    rest_base: str
    ws_base: str
    routed: bool = False

    def __post_init__(self) -> None:
        # Strip trailing slashes once so every URL built below has exactly one separator.
        object.__setattr__(self, "rest_base", self.rest_base.rstrip("/"))
        object.__setattr__(self, "ws_base", self.ws_base.rstrip("/"))


SPOT_PROD = BinanceEndpoints("https://api.binance.com", "wss://stream.binance.com:9443", False)
SPOT_TESTNET = BinanceEndpoints(
    "https://testnet.binance.vision", "wss://stream.testnet.binance.vision", False
)
USDM_PROD = BinanceEndpoints("https://fapi.binance.com", "wss://fstream.binance.com", True)
# Testnet routing is unverified upstream (reference §1.1); override `routed` in config if needed.
USDM_TESTNET = BinanceEndpoints(
    "https://demo-fapi.binance.com", "wss://fstream.binancefuture.com", True
)


def default_endpoints(market: Market, *, testnet: bool = False) -> BinanceEndpoints:
    """Return Binance's own endpoints for a market (production or testnet)."""
    if market is Market.SPOT:
        return SPOT_TESTNET if testnet else SPOT_PROD
    return USDM_TESTNET if testnet else USDM_PROD


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """One websocket connection to open: its URL, its route and the streams it carries."""

    url: str
    route: str
    streams: tuple[str, ...]

    @property
    def label(self) -> str:
        """Return a short log-safe name: route and stream count, never the URL."""
        return f"{self.route or 'spot'}:{len(self.streams)}"


# USDⓈ-M streams served on /public (Important-WebSocket-Change-Notice, 2026); everything else
# public-market is on /market. `trade` is undocumented on futures; ccxt routes it to /public.
_USDM_PUBLIC_KINDS = frozenset({"depth", "bookTicker", "rpiDepth", "trade"})
_KIND_RE = re.compile(r"[A-Za-z]+")


def stream_kind(stream: str) -> str:
    """Return a stream's channel: 'btcusdt@depth@100ms' -> 'depth', '!markPrice@arr' -> 'markPrice'."""
    # '<symbol>@<channel>[@opts]' or '!<channel>[@arr]'; channels may carry digits ('depth20')
    # or '_<interval>' ('kline_1m'), which do not change the route.
    body = stream[1:] if stream.startswith("!") else stream.partition("@")[2]
    match = _KIND_RE.match(body)
    return match.group(0) if match else body


def usdm_route(stream: str) -> str:
    """Return the USDⓈ-M route ('public' or 'market') that delivers a market-data stream."""
    return ROUTE_PUBLIC if stream_kind(stream) in _USDM_PUBLIC_KINDS else ROUTE_MARKET


def _depth_stream(market: Market, symbol: str, speed_ms: int) -> str:
    # Spot: 1000 ms (bare) or 100 ms. USDⓈ-M: 250 ms (bare), 500 ms or 100 ms.
    bare_ms = 1000 if market is Market.SPOT else 250
    allowed = {100, 1000} if market is Market.SPOT else {100, 250, 500}
    if speed_ms not in allowed:
        raise ValueError(
            f"depth_speed_ms={speed_ms} not offered on {market}: choose from {sorted(allowed)}"
        )
    return f"{symbol}@depth" if speed_ms == bare_ms else f"{symbol}@depth@{speed_ms}ms"


def market_streams(
    market: Market,
    symbols: Iterable[str],
    *,
    depth_speed_ms: int = 100,
    trades: TradeStream | None = "trade",
    mark_price: bool = False,
) -> dict[str, list[str]]:
    """Map each route to the lower-case depth, trade and mark-price streams of `symbols`."""
    if mark_price and market is Market.SPOT:
        raise ValueError("markPrice streams exist on USDⓈ-M only")
    if trades not in (None, "trade", "aggTrade"):
        raise ValueError(f"trades must be 'trade', 'aggTrade' or None, not {trades!r}")
    routes: dict[str, list[str]] = {}

    def add(stream: str) -> None:
        route = ROUTE_SPOT if market is Market.SPOT else usdm_route(stream)
        routes.setdefault(route, []).append(stream)

    seen: set[str] = set()
    for raw_symbol in symbols:
        if not is_binance_symbol(raw_symbol.upper()):
            raise ValueError(f"{raw_symbol!r} is not a Binance symbol")
        symbol = raw_symbol.lower()
        if symbol in seen:
            continue
        seen.add(symbol)
        add(_depth_stream(market, symbol, depth_speed_ms))
        if trades is not None:
            add(f"{symbol}@{trades}")
        if mark_price:
            add(f"{symbol}@markPrice@1s")
    return routes


def _combined_url(endpoints: BinanceEndpoints, route: str, streams: Iterable[str]) -> str:
    prefix = f"{endpoints.ws_base}/{route}" if route else endpoints.ws_base
    return f"{prefix}/stream?streams={'/'.join(streams)}"


def combined_stream_urls(
    endpoints: BinanceEndpoints,
    routes: Mapping[str, Iterable[str]],
    max_streams_per_connection: int = MAX_STREAMS_PER_CONNECTION,
    *,
    max_url_chars: int = MAX_URL_CHARS,
) -> list[ConnectionSpec]:
    """Split each route's streams over as few combined-stream connections as the limits allow."""
    if max_streams_per_connection < 1:
        raise ValueError("max_streams_per_connection must be >= 1")
    specs: list[ConnectionSpec] = []
    for route, route_streams in routes.items():
        if endpoints.routed and not route:
            raise ValueError(f"{endpoints.ws_base} is routed: every stream needs a route")
        if not endpoints.routed and route:
            raise ValueError(f"{endpoints.ws_base} is not routed: route {route!r} is invalid")
        streams = list(dict.fromkeys(route_streams))  # de-duplicate, keep order
        base_chars = len(_combined_url(endpoints, route, []))
        batch: list[str] = []
        batch_chars = base_chars
        for stream in streams:
            if any(ch in stream for ch in "/?&# "):
                raise ValueError(f"{stream!r} is not a stream name")
            extra = len(stream) + (1 if batch else 0)
            if base_chars + len(stream) > max_url_chars:
                raise ValueError(f"stream {stream!r} alone exceeds max_url_chars")
            if batch and (
                len(batch) >= max_streams_per_connection or batch_chars + extra > max_url_chars
            ):
                specs.append(
                    ConnectionSpec(_combined_url(endpoints, route, batch), route, tuple(batch))
                )
                batch, batch_chars, extra = [], base_chars, len(stream)
            batch.append(stream)
            batch_chars += extra
        if batch:
            specs.append(
                ConnectionSpec(_combined_url(endpoints, route, batch), route, tuple(batch))
            )
    return specs


def usdm_private_stream_spec(
    endpoints: BinanceEndpoints,
    listen_key: str,
    events: Iterable[str] = ("ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"),
) -> ConnectionSpec:
    """Return the USDⓈ-M user-data connection for a listenKey (the URL carries a secret)."""
    if not listen_key or not listen_key.isalnum():
        raise ValueError("listen_key must be a non-empty alphanumeric token")
    if endpoints.routed:
        query = urlencode({"listenKey": listen_key, "events": "/".join(events)}, safe="/")
        url = f"{endpoints.ws_base}/{ROUTE_PRIVATE}/ws?{query}"
        return ConnectionSpec(url, ROUTE_PRIVATE, ())
    return ConnectionSpec(f"{endpoints.ws_base}/ws/{listen_key}", "", ())


_LISTEN_KEY_QUERY_RE = re.compile(r"((?:listenKey|signature|apiKey)=)[^&\s\"']+", re.IGNORECASE)
_LISTEN_KEY_PATH_RE = re.compile(r"/ws/[A-Za-z0-9]{32,}")


def redact_url(url: str) -> str:
    """Hide listenKeys and signatures in a URL so it can be logged."""
    url = _LISTEN_KEY_QUERY_RE.sub(r"\1***", url)
    return _LISTEN_KEY_PATH_RE.sub("/ws/***", url)


def _rest_path(market: Market, spot_path: str, usdm_path: str) -> str:
    return spot_path if market is Market.SPOT else usdm_path


def _checked_symbol(symbol: str) -> str:
    upper = symbol.upper()
    if not is_binance_symbol(upper):
        raise ValueError(f"{symbol!r} is not a Binance symbol")
    return upper


def depth_snapshot_url(endpoints: BinanceEndpoints, market: Market, symbol: str, limit: int) -> str:
    """Return the REST order-book snapshot URL, refusing limits the venue would not honour."""
    if market is Market.SPOT:
        # Spot clamps limits above 5000 silently; refuse them so weight accounting stays right.
        if not 1 <= limit <= SPOT_DEPTH_LIMIT_MAX:
            raise ValueError(f"spot depth limit must be 1..{SPOT_DEPTH_LIMIT_MAX}, not {limit}")
    elif limit not in USDM_DEPTH_LIMITS:
        raise ValueError(f"USDⓈ-M depth limit must be one of {sorted(USDM_DEPTH_LIMITS)}")
    path = _rest_path(market, "/api/v3/depth", "/fapi/v1/depth")
    return f"{endpoints.rest_base}{path}?symbol={_checked_symbol(symbol)}&limit={limit}"


def depth_snapshot_weight(market: Market, limit: int) -> int:
    """Return the request weight Binance charges for a depth snapshot of `limit` levels."""
    if market is Market.SPOT:
        for upper, weight in ((100, 5), (500, 25), (1000, 50)):
            if limit <= upper:
                return weight
        return 250
    for upper, weight in ((50, 2), (100, 5), (500, 10)):
        if limit <= upper:
            return weight
    return 20


def exchange_info_url(
    endpoints: BinanceEndpoints, market: Market, symbols: Iterable[str] | None = None
) -> str:
    """Return the exchangeInfo URL, narrowed to `symbols` on spot (futures serve all symbols)."""
    path = _rest_path(market, "/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo")
    url = f"{endpoints.rest_base}{path}"
    if symbols is not None and market is Market.SPOT:
        names = [_checked_symbol(s) for s in symbols]
        if names:
            listed = "[" + ",".join(f'"{name}"' for name in names) + "]"
            url += "?symbols=" + quote(listed, safe="")
    return url


def server_time_url(endpoints: BinanceEndpoints, market: Market) -> str:
    """Return the server-time URL of a market."""
    return f"{endpoints.rest_base}{_rest_path(market, '/api/v3/time', '/fapi/v1/time')}"
