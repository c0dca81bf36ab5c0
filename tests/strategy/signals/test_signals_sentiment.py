"""The sentiment fetcher against a local server: values, TTL cache, and every way to fail.

A failing source (down, slow, garbage, HTTP error) degrades to neutral (None) and is logged
once, whatever the number of attempts; its recovery is logged once too.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from engine.clock import ReplayClock
from strategy.signals.config import SentimentFilterConfig
from strategy.signals.context import Sentiment
from strategy.signals.sentiment import SentimentFeed, parse_btc_dominance, parse_fear_greed

S = 1_000_000_000  # ns


@dataclass
class LogRecorder:
    """Collects (level, event, fields) the way a structlog logger is called."""

    records: list[tuple[str, str, dict]] = field(default_factory=list)

    def warning(self, event: str, **kw: object) -> None:
        self.records.append(("warning", event, kw))

    def info(self, event: str, **kw: object) -> None:
        self.records.append(("info", event, kw))

    def events(self, level: str) -> list[str]:
        return [e for lvl, e, _ in self.records if lvl == level]


@dataclass
class Server:
    """A local stand-in for both sentiment sources; `mode` decides how it answers."""

    base: str = ""
    mode: str = "ok"
    hits: dict[str, int] = field(default_factory=lambda: {"fng": 0, "global": 0})
    greed: str = "54"
    dominance: float = 57.25

    async def fng(self, request: web.Request) -> web.StreamResponse:
        self.hits["fng"] += 1
        return await self._answer({"data": [{"value": self.greed, "value_classification": "x"}]})

    async def global_(self, request: web.Request) -> web.StreamResponse:
        self.hits["global"] += 1
        return await self._answer({"data": {"market_cap_percentage": {"btc": self.dominance}}})

    async def _answer(self, payload: dict) -> web.StreamResponse:
        if self.mode == "slow":
            await asyncio.sleep(5)
        if self.mode == "garbage":
            return web.Response(text="<html>rate limited</html>", content_type="text/html")
        if self.mode == "error":
            return web.Response(status=503, text="{}")
        return web.json_response(payload)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    app = web.Application()
    app.router.add_get("/fng/", state.fng)
    app.router.add_get("/api/v3/global", state.global_)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.base = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


def config(base: str, **kw: object) -> SentimentFilterConfig:
    return SentimentFilterConfig(enabled=True, fear_greed_url=f"{base}/fng/?limit=1",
                                 dominance_url=f"{base}/api/v3/global", **kw)  # type: ignore[arg-type]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_values_are_parsed_and_cached_for_the_ttl(server: Server) -> None:
    clock = ReplayClock(1_000 * S)
    log = LogRecorder()
    async with SentimentFeed(config(server.base, ttl_s=3600), clock, log=log) as feed:
        first = await feed.get()
        assert first == Sentiment(54.0, 57.25, 1_000_000)
        clock.advance_to(1_000 * S + 3599 * S)
        server.greed = "70"
        assert (await feed.get()).fear_greed == 54.0  # cached
        assert server.hits == {"fng": 1, "global": 1}
        clock.advance_to(1_000 * S + 3600 * S)
        assert (await feed.get()).fear_greed == 70.0
        assert server.hits == {"fng": 2, "global": 2}
    assert log.records == []


async def test_a_server_that_is_down_is_neutral_and_logged_once() -> None:
    clock = ReplayClock(0)
    log = LogRecorder()
    base = f"http://127.0.0.1:{closed_port()}"
    async with SentimentFeed(config(base, retry_s=60), clock, log=log) as feed:
        for attempt in range(4):
            clock.advance_to(attempt * 61 * S)
            assert await feed.get() == Sentiment()
    assert log.events("warning") == ["sentiment_source_unavailable"] * 2  # once per source
    assert {kw["source"] for _, _, kw in log.records} == {"fear_greed", "btc_dominance"}


@pytest.mark.parametrize("mode", ["slow", "garbage", "error"])
async def test_slow_garbage_or_error_answers_are_neutral_and_logged_once(
    server: Server, mode: str
) -> None:
    server.mode = mode
    clock = ReplayClock(0)
    log = LogRecorder()
    cfg = config(server.base, timeout_s=0.2, retry_s=60)
    async with SentimentFeed(cfg, clock, log=log) as feed:
        for attempt in range(3):
            clock.advance_to(attempt * 61 * S)
            assert await feed.get() == Sentiment()
        assert server.hits == {"fng": 3, "global": 3}  # retried after retry_s, every time
    assert log.events("warning") == ["sentiment_source_unavailable"] * 2


async def test_failures_wait_retry_s_before_trying_again(server: Server) -> None:
    server.mode = "error"
    clock = ReplayClock(0)
    async with SentimentFeed(config(server.base, retry_s=300), clock, log=LogRecorder()) as feed:
        await feed.get()
        clock.advance_to(299 * S)
        await feed.get()
        assert server.hits == {"fng": 1, "global": 1}
        clock.advance_to(300 * S)
        await feed.get()
        assert server.hits == {"fng": 2, "global": 2}


async def test_last_good_value_survives_failures_until_it_is_stale(server: Server) -> None:
    clock = ReplayClock(0)
    log = LogRecorder()
    cfg = config(server.base, ttl_s=60, retry_s=60, max_stale_s=600)
    async with SentimentFeed(cfg, clock, log=log) as feed:
        assert (await feed.get()).fear_greed == 54.0
        server.mode = "error"
        clock.advance_to(600 * S)
        assert (await feed.get()).fear_greed == 54.0  # exactly max_stale_s old: still used
        clock.advance_to(661 * S)
        assert (await feed.get()) == Sentiment(None, None, 0)
        server.mode = "ok"
        server.greed = "12"
        clock.advance_to(722 * S)
        assert (await feed.get()).fear_greed == 12.0
    assert log.events("warning") == ["sentiment_source_unavailable"] * 2
    assert log.events("info") == ["sentiment_source_recovered"] * 2


def test_parsers_reject_what_is_not_their_source() -> None:
    assert parse_fear_greed(b'{"data": [{"value": "25"}]}') == 25.0
    assert parse_btc_dominance(b'{"data": {"market_cap_percentage": {"btc": 52.5}}}') == 52.5
    for body in (b"", b"[]", b'{"data": []}', b'{"data": [{"value": "abc"}]}',
                 b'{"data": [{"value": "150"}]}', b"\xff\xfe"):
        with pytest.raises(ValueError):
            parse_fear_greed(body)
    for body in (b'{"data": {}}', b'{"data": {"market_cap_percentage": {"btc": 0}}}'):
        with pytest.raises(ValueError):
            parse_btc_dominance(body)
