"""Poll the other Binance market's prices for the spot-futures spread filter.

One engine runs one market. The spread (basis) filter compares spot and USDⓈ-M prices of the same
symbol, so the engine polls the other market's public ticker (`/api/v3/ticker/price` or
`/fapi/v1/ticker/price`, weight 2-4 for all symbols at once) every few seconds. Any failure leaves
the last price in place to age out; the filter treats a stale price as neutral.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import aiohttp
import structlog

from engine.clock import Clock
from engine.model import Market

TICKER_PATH = {Market.SPOT: "/api/v3/ticker/price", Market.USDM: "/fapi/v1/ticker/price"}


def parse_prices(body: object, symbols: set[str]) -> dict[str, float]:
    """Return {symbol: price} for the wanted symbols of a ticker/price answer (list or one object)."""
    items = body if isinstance(body, list) else [body]
    prices: dict[str, float] = {}
    for item in items:
        if not isinstance(item, dict) or item.get("symbol") not in symbols:
            continue
        try:
            price = float(item["price"])
        except (KeyError, TypeError, ValueError):
            continue
        if price > 0:
            prices[item["symbol"]] = price
    return prices


class OtherMarketPrices:
    """Fetch the other market's last prices of our symbols every `interval_s`."""

    def __init__(
        self,
        other_market: Market,
        rest_base: str,
        symbols: Iterable[str],
        clock: Clock,
        *,
        interval_s: float = 5.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = rest_base.rstrip("/") + TICKER_PATH[other_market]
        self.symbols = set(symbols)
        self.clock = clock
        self.interval_s = interval_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.failures = 0
        self._log = structlog.get_logger("engine.othermarket").bind(market=other_market.value)
        self._warned = False

    async def fetch_once(self, http: aiohttp.ClientSession) -> dict[str, float]:
        """One poll; {} (and one warning until it recovers) when the market cannot be read."""
        try:
            async with http.get(self.url, timeout=self.timeout) as resp:
                body = await resp.json(content_type=None) if resp.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            body, reason = None, f"{type(exc).__name__}: {exc}"
        else:
            reason = "no prices in the answer"
        prices = parse_prices(body, self.symbols) if body is not None else {}
        if not prices:
            self.failures += 1
            if not self._warned:
                self._warned = True
                self._log.warning("other_market_unreachable", url=self.url, reason=reason,
                                  note="the spot-futures spread filter stays neutral meanwhile")
        elif self._warned:
            self._warned = False
            self._log.info("other_market_recovered", url=self.url)
        return prices

    async def run(self, update: Callable[[str, float], None]) -> None:
        """Poll until cancelled, handing every price to update(symbol, price)."""
        async with aiohttp.ClientSession() as http:
            while True:
                for symbol, price in (await self.fetch_once(http)).items():
                    update(symbol, price)
                await self.clock.sleep(self.interval_s)
