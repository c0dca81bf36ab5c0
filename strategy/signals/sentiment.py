"""External sentiment inputs (Fear & Greed, BTC dominance) over HTTP, cached, never blocking trade.

`SentimentFeed.get()` returns a `Sentiment` for the strategy context. Each source is fetched at
most once per `ttl_s` after a success and once per `retry_s` after a failure (times from the
injected Clock). A failure (unreachable, timeout, HTTP error, unparseable body) keeps the last
good value while it is younger than `max_stale_s`, then degrades to None, which every filter
treats as neutral. The first failure of a source is logged once as a warning and its recovery
once as info; failures in between are silent.

Sources (URLs from config, so tests point them at a local server):
* Fear & Greed (alternative.me): `{"data": [{"value": "54", ...}]}` -> 54.0, in [0, 100];
* BTC dominance (CoinGecko /global): `{"data": {"market_cap_percentage": {"btc": 57.1}}}`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import aiohttp
import structlog

from engine.clock import Clock
from strategy.signals.config import SentimentFilterConfig
from strategy.signals.context import Sentiment


class SentimentParseError(ValueError):
    """The source answered, but not with what we expect from it."""


def parse_fear_greed(body: bytes) -> float:
    """Return the Fear & Greed index (0..100) from an alternative.me /fng/ response body."""
    try:
        value = float(json.loads(body)["data"][0]["value"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise SentimentParseError(f"not a Fear & Greed response: {exc!r}") from exc
    if not 0.0 <= value <= 100.0:
        raise SentimentParseError(f"Fear & Greed value out of range: {value}")
    return value


def parse_btc_dominance(body: bytes) -> float:
    """Return BTC's share of total market cap (percent) from a CoinGecko /global response body."""
    try:
        value = float(json.loads(body)["data"]["market_cap_percentage"]["btc"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise SentimentParseError(f"not a /global response: {exc!r}") from exc
    if not 0.0 < value <= 100.0:
        raise SentimentParseError(f"BTC dominance out of range: {value}")
    return value


@dataclass
class _Source:
    name: str
    url: str
    parse: Callable[[bytes], float]
    value: float | None = None
    fetched_ns: int | None = None  # monotonic time of the last good value
    next_try_ns: int = 0
    failing: bool = False


class SentimentFeed:
    """Fetch and cache the sentiment inputs; every failure degrades to neutral."""

    def __init__(
        self,
        config: SentimentFilterConfig,
        clock: Clock,
        session: aiohttp.ClientSession | None = None,
        log: Any = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._session = session
        self._own_session = session is None
        self._log = log if log is not None else structlog.get_logger("strategy.sentiment")
        self._sources = (
            _Source("fear_greed", config.fear_greed_url, parse_fear_greed),
            _Source("btc_dominance", config.dominance_url, parse_btc_dominance),
        )
        self._latest_ms: int | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this feed opened it."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self) -> Sentiment:
        """Return the current sentiment, refetching each source whose cache entry expired."""
        await asyncio.gather(*(self._refresh(s) for s in self._sources if self._due(s)))
        return self.cached()

    def cached(self) -> Sentiment:
        """Return what the cache holds now, without any network access."""
        now_ns = self._clock.monotonic_ns()
        fear_greed, dominance = (self._fresh_value(s, now_ns) for s in self._sources)
        return Sentiment(fear_greed, dominance, self._latest_ms)

    def _due(self, source: _Source) -> bool:
        return self._clock.monotonic_ns() >= source.next_try_ns

    def _fresh_value(self, source: _Source, now_ns: int) -> float | None:
        if source.value is None or source.fetched_ns is None:
            return None
        if now_ns - source.fetched_ns > self._config.max_stale_s * 1_000_000_000:
            return None
        return source.value

    async def _refresh(self, source: _Source) -> None:
        start_ns = self._clock.monotonic_ns()
        try:
            value = source.parse(await self._fetch(source.url))
        except (aiohttp.ClientError, TimeoutError, OSError, SentimentParseError) as exc:
            source.next_try_ns = start_ns + self._config.retry_s * 1_000_000_000
            if not source.failing:
                source.failing = True
                self._log.warning("sentiment_source_unavailable", source=source.name,
                                  url=source.url, error=repr(exc),
                                  effect="neutral until it answers")
            return
        source.value = value
        source.fetched_ns = start_ns
        source.next_try_ns = start_ns + self._config.ttl_s * 1_000_000_000
        self._latest_ms = self._clock.now_ns() // 1_000_000
        if source.failing:
            source.failing = False
            self._log.info("sentiment_source_recovered", source=source.name, value=value)

    async def _fetch(self, url: str) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_s)
        async with self._session.get(url, timeout=timeout) as response:
            if response.status != 200:
                raise SentimentParseError(f"HTTP {response.status}")
            return await response.read()
