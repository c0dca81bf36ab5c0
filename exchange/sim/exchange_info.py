"""exchangeInfo bodies for the simulator: real entries when recorded, synthesized otherwise.

Real entries come from ``../shared/data/binance-rest/*.json`` (read at runtime, never copied).
A symbol missing there gets a realistic entry whose PRICE_FILTER tickSize and LOT_SIZE stepSize
are inferred from the tape: the tick is the coarsest grid every recorded price sits on (their
GCD); the step is the coarsest power of ten nearly every quantity sits on (see infer_step).

Only the symbols the simulator serves are listed: an engine asking for anything else gets -1121,
as it would for a delisted symbol.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from functools import cached_property
from pathlib import Path

import orjson

from engine.model import Market
from exchange.sim.timeline import Timeline

DEFAULT_REST_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "binance-rest"

# Weight budgets the simulator enforces and advertises (2024+ values; the 2021 files say 1200).
WEIGHT_LIMIT_1M = {Market.SPOT: 6000, Market.USDM: 2400}

_QUOTES = (
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "BIDR", "IDRT", "DAI", "BTC", "ETH", "BNB",
    "EUR", "TRY", "BRL", "AUD", "GBP", "RUB", "UAH", "NGN", "ZAR", "PLN", "RON", "ARS", "JPY",
    "MXN", "USD",
)  # fmt: skip
_SAMPLE_DIFFS = 400  # diffs per symbol scanned for grid inference (plus the snapshots)


def spot_depth_weight(limit: int) -> int:
    """Return the request weight of GET /api/v3/depth for a (clamped) limit."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def futures_depth_weight(limit: int) -> int:
    """Return the request weight of GET /fapi/v1/depth for a valid limit."""
    return {5: 2, 10: 2, 20: 2, 50: 2, 100: 5, 500: 10, 1000: 20}[limit]


def infer_increment(values: Iterable[str]) -> Decimal | None:
    """Return the coarsest grid all non-zero values lie on (their GCD), None without values."""
    scaled: list[tuple[int, int]] = []
    for text in values:
        whole, _, frac = text.partition(".")
        number = int(whole + frac)
        if number:
            scaled.append((number, len(frac)))
    if not scaled:
        return None
    decimals = max(d for _, d in scaled)
    g = 0
    for number, d in scaled:
        g = math.gcd(g, number * 10 ** (decimals - d))
    return (Decimal(g) / (Decimal(10) ** decimals)).normalize()


def infer_step(values: Iterable[str], coverage: float = 0.995) -> Decimal | None:
    """Return the coarsest power-of-ten grid at least `coverage` of the non-zero values lie on.

    Book quantities are sums of orders and nearly all sit on LOT_SIZE's step, but a few dust
    levels do not (spot BTCUSDT 2024: 99.99 % on 0.00001, the rest on 0.000001), so a strict
    GCD would report a step finer than the exchange's.
    """
    decimals_needed: list[int] = []
    for text in values:
        whole, _, frac = text.partition(".")
        if int(whole + frac):
            decimals_needed.append(len(frac.rstrip("0")))
    if not decimals_needed:
        return None
    decimals_needed.sort()
    index = min(len(decimals_needed) - 1, math.ceil(coverage * len(decimals_needed)) - 1)
    return Decimal(1).scaleb(-decimals_needed[index])


def split_symbol(symbol: str) -> tuple[str, str]:
    """Split a symbol into (base, quote) by the longest known quote-asset suffix."""
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-4], symbol[-4:]


def _fmt(value: Decimal, market: Market) -> str:
    # spot writes every number with 8 decimals; futures writes the plain number
    return f"{value:.8f}" if market is Market.SPOT else format(value.normalize(), "f")


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -int(exponent))


def synthesize_entry(market: Market, symbol: str, tick: Decimal, step: Decimal) -> dict:
    """Build a realistic exchangeInfo symbols[] entry for a symbol with the given grids."""
    base, quote = split_symbol(symbol)
    price_filter = {
        "filterType": "PRICE_FILTER",
        "minPrice": _fmt(tick, market),
        "maxPrice": _fmt(Decimal(1_000_000), market),
        "tickSize": _fmt(tick, market),
    }
    lot = {
        "filterType": "LOT_SIZE",
        "minQty": _fmt(step, market),
        "maxQty": _fmt(Decimal(9000), market),
        "stepSize": _fmt(step, market),
    }
    if market is Market.SPOT:
        return {
            "symbol": symbol, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
            "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
            "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "filters": [
                price_filter, lot,
                {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
                 "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            ],
            "permissions": ["SPOT"],
        }  # fmt: skip
    return {
        "symbol": symbol, "pair": symbol, "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
        "baseAsset": base, "quoteAsset": quote, "marginAsset": quote,
        "pricePrecision": _decimals(tick), "quantityPrecision": _decimals(step),
        "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
        "filters": [
            price_filter, lot, {**lot, "filterType": "MARKET_LOT_SIZE"},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": "5"},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                       "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }  # fmt: skip


def _rate_limits(market: Market, recorded: list[dict] | None) -> list[dict]:
    limits = [dict(r) for r in recorded] if recorded else []
    weight = {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": WEIGHT_LIMIT_1M[market],
    }
    limits = [r for r in limits if r.get("rateLimitType") != "REQUEST_WEIGHT"]
    if not limits:
        limits = [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50}]
    return [weight, *limits]


class ExchangeInfoCatalog:
    """exchangeInfo for the simulator's symbols, by market."""

    def __init__(self, timeline: Timeline, rest_dir: Path | None = DEFAULT_REST_DIR) -> None:
        self._timeline = timeline
        self._rest_dir = rest_dir

    def _recorded(self, market: Market) -> dict | None:
        if self._rest_dir is None or not self._rest_dir.is_dir():
            return None
        for path in sorted(self._rest_dir.glob(f"{market.value}_exchangeInfo*.json")):
            return orjson.loads(path.read_bytes())
        return None

    @cached_property
    def _bodies(self) -> dict[Market, dict]:
        bodies: dict[Market, dict] = {}
        for market in Market:
            served = sorted(s for s, ms in self._timeline.markets.items() if market in ms)
            if not served:
                continue
            recorded = self._recorded(market)
            known = {e["symbol"]: e for e in recorded["symbols"]} if recorded else {}
            symbols = [known.get(s) or self._synthesize(market, s) for s in served]
            body = {k: v for k, v in (recorded or {}).items() if k not in ("symbols", "assets")}
            body.setdefault("timezone", "UTC")
            body.setdefault("exchangeFilters", [])
            if market is Market.USDM:
                body.setdefault("futuresType", "U_MARGINED")
            body["rateLimits"] = _rate_limits(market, body.get("rateLimits"))
            body["symbols"] = symbols
            bodies[market] = body
        return bodies

    def _synthesize(self, market: Market, symbol: str) -> dict:
        prices, qtys = self._samples(market, symbol)
        tick = infer_increment(prices) or Decimal("0.01")
        step = infer_step(qtys) or Decimal("0.001")
        return synthesize_entry(market, symbol, tick, step)

    def _samples(self, market: Market, symbol: str) -> tuple[list[str], list[str]]:
        prices: list[str] = []
        qtys: list[str] = []
        for snap in self._timeline.snapshots.get((market, symbol), []):
            for price, qty in (*snap.bids, *snap.asks):
                prices.append(price)
                qtys.append(qty)
        seen = 0
        for frame in self._timeline.frames:
            if frame.depth is None or frame.symbol != symbol or frame.market is not market:
                continue
            for price, qty in (*frame.depth.bids, *frame.depth.asks):
                prices.append(price)
                qtys.append(qty)
            seen += 1
            if seen >= _SAMPLE_DIFFS:
                break
        return prices, qtys

    def symbols(self, market: Market) -> list[str]:
        """Return the symbols listed for a market."""
        body = self._bodies.get(market)
        return [e["symbol"] for e in body["symbols"]] if body else []

    def entry(self, market: Market, symbol: str) -> dict | None:
        """Return one symbols[] entry, None if the symbol is not served on that market."""
        body = self._bodies.get(market)
        if body is None:
            return None
        return next((e for e in body["symbols"] if e["symbol"] == symbol), None)

    def body(self, market: Market, server_time_ms: int, symbols: list[str] | None) -> dict:
        """Return the exchangeInfo response body, restricted to `symbols` when given."""
        base = self._bodies.get(market) or {
            "timezone": "UTC",
            "rateLimits": _rate_limits(market, None),
            "exchangeFilters": [],
            "symbols": [],
        }
        entries = base["symbols"]
        if symbols is not None:
            wanted = set(symbols)
            entries = [e for e in entries if e["symbol"] in wanted]
        return {**base, "serverTime": server_time_ms, "symbols": entries}
