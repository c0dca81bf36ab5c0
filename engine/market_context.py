"""Inputs of the strategies' market-context filters, gathered as the engine runs.

Funding comes from markPrice events, the other market's price (for the spot-futures spread) from a
poller, the own market's last trade from the trading loop, sentiment from a fetcher's cache. A
symbol gets a spread only when both prices are known; its age is that of the older price.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from engine.events import MarkPriceUpdated
from engine.model import Market
from strategy.signals.context import FundingSnapshot, MarketContext, Sentiment


class ContextInputs:
    """Latest funding, both markets' prices and the sentiment source, per symbol."""

    def __init__(self, market_of: Callable[[str], Market | None]) -> None:
        self._market_of = market_of
        self.funding: dict[str, FundingSnapshot] = {}
        self.other_market_price: dict[str, tuple[float, int]] = {}  # symbol -> (price, exchange ms)
        self.last_trade: dict[str, tuple[Decimal, int]] = {}  # symbol -> (price, exchange ms)
        self.sentiment_source: Callable[[], Sentiment] | None = None

    def on_trade(self, symbol: str, price: Decimal, ts_ms: int) -> None:
        self.last_trade[symbol] = (price, ts_ms)

    def on_mark_price(self, mark: MarkPriceUpdated) -> None:
        self.funding[mark.symbol] = FundingSnapshot.from_mark_price(mark)

    def on_other_market_price(self, symbol: str, price: float, exchange_time_ms: int) -> None:
        """Record the other market's price, stamped with the latest exchange time known."""
        latest = max(exchange_time_ms, max((ts for _, ts in self.last_trade.values()), default=0))
        self.other_market_price[symbol] = (price, latest)

    def market(self) -> dict[str, MarketContext]:
        """Per symbol: funding, and both markets' prices with the exchange time of the older one."""
        out: dict[str, MarketContext] = {}
        for symbol in set(self.funding) | set(self.other_market_price):
            own = self.last_trade.get(symbol)
            other = self.other_market_price.get(symbol)
            spot_price = futures_price = prices_ts = None
            if own is not None and other is not None:
                mine = float(own[0])
                futures = self._market_of(symbol) is Market.USDM
                spot_price, futures_price = (other[0], mine) if futures else (mine, other[0])
                prices_ts = min(own[1], other[1])
            out[symbol] = MarketContext(self.funding.get(symbol), spot_price, futures_price, prices_ts)
        return out

    def sentiment(self) -> Sentiment:
        return self.sentiment_source() if self.sentiment_source is not None else Sentiment()
