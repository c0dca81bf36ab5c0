"""Shared test material for tests/risk: hand-written exchangeInfo entries in today's spellings."""

from __future__ import annotations

from engine.model import Market
from risk.filters import ExchangeFilters, parse_exchange_filters

# A 2024-style spot symbol: NOTIONAL instead of MIN_NOTIONAL, side bands, trailing delta, amends.
NEW_SPOT = {
    "symbol": "BNBUSDT",
    "status": "TRADING",
    "orderTypes": ["LIMIT", "MARKET", "STOP_LOSS"],
    "filters": [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": "0.01000000",
            "maxPrice": "100000.00000000",
            "tickSize": "0.01000000",
        },
        {
            "filterType": "LOT_SIZE",
            "minQty": "0.00100000",
            "maxQty": "9000.00000000",
            "stepSize": "0.00100000",
        },
        {"filterType": "ICEBERG_PARTS", "limit": 10},
        {
            "filterType": "MARKET_LOT_SIZE",
            "minQty": "0.00000000",
            "maxQty": "1000.00000000",
            "stepSize": "0.00000000",
        },
        {
            "filterType": "TRAILING_DELTA",
            "minTrailingAboveDelta": 10,
            "maxTrailingAboveDelta": 2000,
            "minTrailingBelowDelta": 10,
            "maxTrailingBelowDelta": 2000,
        },
        {
            "filterType": "PERCENT_PRICE_BY_SIDE",
            "bidMultiplierUp": "5",
            "bidMultiplierDown": "0.2",
            "askMultiplierUp": "5",
            "askMultiplierDown": "0.2",
            "avgPriceMins": 5,
        },
        {
            "filterType": "NOTIONAL",
            "minNotional": "5.00000000",
            "applyMinToMarket": False,
            "maxNotional": "9000000.00000000",
            "applyMaxToMarket": False,
            "avgPriceMins": 5,
        },
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        {"filterType": "MAX_NUM_ICEBERG_ORDERS", "maxNumIcebergOrders": 5},
        {"filterType": "MAX_POSITION", "maxPosition": "10.00000000"},
        {"filterType": "MAX_NUM_ORDER_AMENDS", "maxNumOrderAmends": 10},
        {"filterType": "MAX_NUM_ORDER_LISTS", "maxNumOrderLists": 20},
        {"filterType": "SOMETHING_NEW", "x": 1},
    ],
}
# A 2025-style USDⓈ-M symbol (BTCUSDT), as exchangeInfo sends it.
NEW_USDM = {
    "symbol": "BTCUSDT",
    "status": "TRADING",
    "filters": [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": "261.10",
            "maxPrice": "809484",
            "tickSize": "0.10",
        },
        {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
        {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120", "stepSize": "0.001"},
        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
        {"filterType": "MIN_NOTIONAL", "notional": "100"},
        {
            "filterType": "PERCENT_PRICE",
            "multiplierUp": "1.0500",
            "multiplierDown": "0.9500",
            "multiplierDecimal": "4",
        },
    ],
}


def spot() -> ExchangeFilters:
    """BNBUSDT spot: tick 0.01, step 0.001, NOTIONAL 5 (not applied to MARKET), max 9M."""
    return parse_exchange_filters(NEW_SPOT, Market.SPOT)


def usdm() -> ExchangeFilters:
    """BTCUSDT USDⓈ-M: tick 0.1 from 261.10, step 0.001, MIN_NOTIONAL 100, band 0.95..1.05."""
    return parse_exchange_filters(NEW_USDM, Market.USDM)
