"""BinanceRest against a small Binance-like server on 127.0.0.1 that checks signatures as Binance.

The server recomputes the signature over the raw query string + raw body it received (minus
`signature`), checks `timestamp` against its own clock and `recvWindow`, and answers from a
script when a test needs a 429, 418, 503 or a hang. Client and server share one ReplayClock,
so the server's time is the client's plus a chosen skew and budget waits take no real time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote

import aiohttp
import orjson
import pytest
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import SecretStr

from engine.clock import ReplayClock
from engine.model import Market
from exchange.binance.auth import BinanceKeys
from exchange.binance.rest import BinanceRest
from exchange.binance.urls import BinanceEndpoints
from exchange.errors import AuthFailed, Rejected, RejectReason, Retryable, UnknownOutcome
from exchange.ratelimit import REQUEST_WEIGHT, RateLimit, RateLimiter

API_KEY = "test-api-key-123"
SECRET = "test-secret-456"
MINUTE_START_MS = 28_333_334 * 60_000
MS = 1_000_000
BAN_UNTIL_MS = MINUTE_START_MS + 180_000


@dataclass
class Received:
    method: str
    path: str
    params: dict[str, str]
    at_ms: int  # server clock at receipt
    api_key: str | None


@dataclass
class FakeBinance:
    clock: ReplayClock
    skew_ms: int = 0
    public_key: Ed25519PublicKey | None = None  # None: HMAC with SECRET
    time_calls: int = 0
    received: list[Received] = field(default_factory=list)
    # path -> list of (status, body, headers) served instead of the normal answer, in order
    script: dict[str, list[tuple[int, Any, dict[str, str]]]] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    used_weight_header: str | None = None

    def server_ms(self) -> int:
        return self.clock.now_ns() // MS + self.skew_ms

    def calls(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def time(self, request: web.Request) -> web.Response:
        self.time_calls += 1
        return _json({"serverTime": self.server_ms()})

    async def endpoint(self, request: web.Request) -> web.Response:
        raw_query = request.raw_path.partition("?")[2]
        raw_body = (await request.read()).decode()
        params = dict(parse_qsl(raw_query)) | dict(parse_qsl(raw_body))
        self.received.append(
            Received(
                request.method,
                request.path,
                params,
                self.server_ms(),
                request.headers.get("X-MBX-APIKEY"),
            )
        )
        if request.path in self.hang:
            await self.release.wait()
        scripted = self.script.get(request.path)
        if scripted:
            status, body, headers = scripted.pop(0)
            return _json(body, status, headers)
        signed = "signature" in params
        if signed:
            error = self._check_signed(request, raw_query, raw_body, params)
            if error is not None:
                return _json({"code": error[1], "msg": error[2]}, error[0])
        headers = {}
        if self.used_weight_header is not None:
            headers["X-MBX-USED-WEIGHT-1M"] = self.used_weight_header
        return _json({"params": params, "raw_query": raw_query, "raw_body": raw_body}, 200, headers)

    def _check_signed(
        self, request: web.Request, raw_query: str, raw_body: str, params: dict[str, str]
    ) -> tuple[int, int, str] | None:
        if request.headers.get("X-MBX-APIKEY") != API_KEY:
            return 401, -2015, "Invalid API-key, IP, or permissions for action."
        # Binance: the signed text is the query string followed by the body, signature removed.
        signature = ""
        kept = []
        for text in (raw_query, raw_body):
            parts = []
            for part in text.split("&") if text else []:
                if part.startswith("signature="):
                    signature = part.removeprefix("signature=")
                else:
                    parts.append(part)
            kept.append("&".join(parts))
        payload = (kept[0] + kept[1]).encode()
        if not _valid_signature(self.public_key, payload, signature):
            return 400, -1022, "Signature for this request is not valid."
        timestamp = int(params["timestamp"])
        recv_window = int(params.get("recvWindow", "5000"))
        now = self.server_ms()
        if not (timestamp < now + 1000 and now - timestamp <= recv_window):
            return 400, -1021, "Timestamp for this request is outside of the recvWindow."
        return None


def _valid_signature(public_key: Ed25519PublicKey | None, payload: bytes, signature: str) -> bool:
    if public_key is None:
        expected = hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature.lower())
    try:
        public_key.verify(base64.b64decode(unquote(signature)), payload)
    except (InvalidSignature, ValueError):
        return False
    return True


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


@dataclass
class Rig:
    server: FakeBinance
    base: str
    clock: ReplayClock
    http: aiohttp.ClientSession

    def client(self, market: Market = Market.SPOT, **kwargs: Any) -> BinanceRest:
        kwargs.setdefault("keys", BinanceKeys.hmac(API_KEY, SECRET))
        kwargs.setdefault("limiter", RateLimiter(self.clock))
        keys = kwargs.pop("keys")
        return BinanceRest(
            market, BinanceEndpoints(self.base, "ws://unused"), self.clock, self.http, keys,
            **kwargs,
        )  # fmt: skip


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = ReplayClock((MINUTE_START_MS + 1_000) * MS)
    server = FakeBinance(clock)
    app = web.Application()
    for prefix in ("/api/v3", "/fapi/v1"):
        app.router.add_get(f"{prefix}/time", server.time)
    app.router.add_route("*", "/{tail:.*}", server.endpoint)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as http:
        yield Rig(server, f"http://127.0.0.1:{port}", clock, http)
    server.release.set()
    await runner.cleanup()


async def test_signed_get_is_accepted_by_a_binance_style_check(rig: Rig) -> None:
    rest = rig.client()
    body = await rest.get(
        "/api/v3/order",
        {"symbol": "BTCUSDT", "origClientOrderId": "a/b+c d"},
        signed=True,
        weight=4,
    )
    assert body["params"]["origClientOrderId"] == "a/b+c d"
    assert body["raw_query"].startswith("symbol=BTCUSDT&origClientOrderId=a%2Fb%2Bc%20d&")
    assert body["params"]["recvWindow"] == "5000"
    assert body["raw_body"] == ""
    (call,) = rig.server.calls("/api/v3/order")
    assert call.api_key == API_KEY
    assert int(call.params["timestamp"]) == rig.server.server_ms()


async def test_signed_post_sends_form_body_with_plain_decimals(rig: Rig) -> None:
    rest = rig.client(Market.USDM)
    params = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": Decimal("1E-3"),
        "price": Decimal("65000.10"),
        "newClientOrderId": "tl-1",
    }
    body = await rest.post("/fapi/v1/order", params, signed=True, weight=0, order=True)
    assert body["raw_query"] == ""
    assert body["raw_body"].startswith(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=65000.1"
        "&newClientOrderId=tl-1&recvWindow=5000&timestamp="
    )


async def test_public_get_sends_no_key_and_no_signature(rig: Rig) -> None:
    rest = rig.client()
    body = await rest.get("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 5}, weight=2)
    assert body["params"] == {"symbol": "BTCUSDT", "limit": "5"}
    assert rig.server.calls("/api/v3/depth")[0].api_key is None
    assert rig.server.time_calls == 0


async def test_keyed_request_sends_the_key_without_signing(rig: Rig) -> None:
    rest = rig.client(Market.USDM)
    body = await rest.post("/fapi/v1/listenKey", keyed=True)
    assert body["params"] == {}
    assert rig.server.calls("/fapi/v1/listenKey")[0].api_key == API_KEY


async def test_ed25519_signature_verified_by_the_server(rig: Rig) -> None:
    private = Ed25519PrivateKey.generate()
    rig.server.public_key = private.public_key()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    rest = rig.client(keys=BinanceKeys.ed25519(API_KEY, SecretStr(pem.decode())))
    body = await rest.get("/api/v3/account", {"omitZeroBalances": True}, signed=True, weight=20)
    assert body["params"]["omitZeroBalances"] == "true"
    signature = body["raw_query"].rpartition("signature=")[2]
    assert "+" not in signature and "/" not in signature and "=" not in signature


async def test_wrong_secret_and_wrong_key_are_auth_failures(rig: Rig) -> None:
    bad_secret = rig.client(keys=BinanceKeys.hmac(API_KEY, "not-the-secret"))
    with pytest.raises(AuthFailed) as caught:
        await bad_secret.get("/api/v3/account", signed=True)
    assert caught.value.code == -1022
    bad_key = rig.client(keys=BinanceKeys.hmac("other-key", SECRET))
    with pytest.raises(AuthFailed) as caught:
        await bad_key.get("/api/v3/account", signed=True)
    assert caught.value.code == -2015 and caught.value.status == 401
    no_keys = rig.client(keys=None)
    with pytest.raises(AuthFailed):
        await no_keys.get("/api/v3/account", signed=True)
    assert len(rig.server.calls("/api/v3/account")) == 2  # the keyless one never left


async def test_offset_is_measured_before_the_first_signed_request(rig: Rig) -> None:
    rig.server.skew_ms = 7_000  # beyond recvWindow: unsynced requests would be refused
    rest = rig.client()
    await rest.get("/api/v3/account", signed=True)
    assert rest.offset_ms == 7_000
    assert rig.server.time_calls == 1


async def test_offset_is_refreshed_periodically(rig: Rig) -> None:
    rest = rig.client(time_refresh_s=60)
    await rest.get("/api/v3/account", signed=True)
    await rest.get("/api/v3/account", signed=True)
    assert rig.server.time_calls == 1
    rig.clock.advance_to(rig.clock.now_ns() + 61_000 * MS)
    rig.server.skew_ms = -3_000
    await rest.get("/api/v3/account", signed=True)
    assert rig.server.time_calls == 2 and rest.offset_ms == -3_000


async def test_1021_resyncs_and_retries_a_read_once(rig: Rig) -> None:
    rest = rig.client()
    await rest.sync_time()
    rig.server.skew_ms = 20_000  # the server's clock jumps after our measurement
    body = await rest.get("/api/v3/openOrders", {"symbol": "BTCUSDT"}, signed=True, weight=6)
    assert body["params"]["symbol"] == "BTCUSDT"
    assert rig.server.time_calls == 2 and rest.offset_ms == 20_000
    assert len(rig.server.calls("/api/v3/openOrders")) == 2


async def test_1021_on_an_order_resyncs_but_does_not_resend(rig: Rig) -> None:
    rest = rig.client()
    await rest.sync_time()
    rig.server.skew_ms = -20_000
    with pytest.raises(Retryable) as caught:
        await rest.post("/api/v3/order", {"symbol": "BTCUSDT"}, signed=True, order=True)
    assert caught.value.resync_clock and caught.value.code == -1021
    assert len(rig.server.calls("/api/v3/order")) == 1
    assert rig.server.time_calls == 2 and rest.offset_ms == -20_000


async def test_exchange_info_seeds_the_budgets(rig: Rig) -> None:
    limits = [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
    ]
    rig.server.script["/fapi/v1/exchangeInfo"] = [
        (200, {"rateLimits": limits, "symbols": []}, {"X-MBX-USED-WEIGHT-1M": "7"})
    ]
    rest = rig.client(Market.USDM)
    body = await rest.exchange_info()
    assert body["symbols"] == []
    assert [(x.kind, x.header_suffix, x.limit) for x in rest.limiter.limits] == [
        ("REQUEST_WEIGHT", "1m", 2400),
        ("ORDERS", "10s", 300),
    ]
    assert rest.limiter.used(REQUEST_WEIGHT, "1m") == 0  # budgets came after this response


async def test_concurrent_signed_requests_share_one_time_sync(rig: Rig) -> None:
    rest = rig.client()
    await asyncio.gather(*(rest.get("/api/v3/account", signed=True) for _ in range(5)))
    assert rig.server.time_calls == 1


async def test_used_weight_header_makes_the_next_request_wait(rig: Rig) -> None:
    limiter = RateLimiter(rig.clock, [RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 1200)], max_wait_s=90)
    rest = rig.client(limiter=limiter)
    rig.server.used_weight_header = "1195"
    await rest.get("/api/v3/depth", {"symbol": "BTCUSDT"}, weight=1)
    assert limiter.used(REQUEST_WEIGHT, "1m") == 1195
    rig.server.used_weight_header = "20"
    await rest.get("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 1000}, weight=20)
    first, second = rig.server.calls("/api/v3/depth")
    assert first.at_ms == MINUTE_START_MS + 1_000
    assert second.at_ms == MINUTE_START_MS + 60_000  # held until the window rolled
    assert limiter.used(REQUEST_WEIGHT, "1m") == 20


async def test_429_retry_after_is_honoured(rig: Rig) -> None:
    rest = rig.client()
    rig.server.script["/api/v3/depth"] = [
        (429, {"code": -1003, "msg": "Too much request weight used."}, {"Retry-After": "4"})
    ]
    with pytest.raises(Retryable) as caught:
        await rest.get("/api/v3/depth", {"symbol": "BTCUSDT"})
    assert caught.value.retry_after_s == 4.0 and caught.value.status == 429
    await rest.get("/api/v3/depth", {"symbol": "BTCUSDT"})
    first, second = rig.server.calls("/api/v3/depth")
    assert second.at_ms - first.at_ms == 4_000


async def test_418_halts_rest_until_the_ban_ends(rig: Rig) -> None:
    rest = rig.client()
    message = (
        f"Way too much request weight used; IP banned until {BAN_UNTIL_MS}. "
        "Please use WebSocket Streams for live updates to avoid bans."
    )
    rig.server.script["/api/v3/depth"] = [
        (418, {"code": -1003, "msg": message}, {"Retry-After": "179"})
    ]
    with pytest.raises(Retryable) as caught:
        await rest.get("/api/v3/depth", {"symbol": "BTCUSDT"})
    assert caught.value.banned_until_ms == BAN_UNTIL_MS
    with pytest.raises(Retryable) as caught:
        await rest.get("/api/v3/exchangeInfo", weight=20)
    assert caught.value.banned_until_ms == BAN_UNTIL_MS
    assert rest.limiter.banned_until_ms == BAN_UNTIL_MS
    assert len(rig.server.received) == 1  # the second request never left
    rig.clock.advance_to(BAN_UNTIL_MS * MS)
    await rest.get("/api/v3/exchangeInfo", weight=20)
    assert len(rig.server.received) == 2


UNKNOWN_503 = {"code": -1000, "msg": "Unknown error, please check your request or try again later."}


async def test_503_on_an_order_is_unknown_outcome_and_the_order_did_arrive(rig: Rig) -> None:
    rest = rig.client(Market.USDM)
    rig.server.script["/fapi/v1/order"] = [(503, UNKNOWN_503, {})]
    params = {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": Decimal("0.002")}
    with pytest.raises(UnknownOutcome) as caught:
        await rest.post(
            "/fapi/v1/order", params | {"newClientOrderId": "tl-42"}, signed=True, order=True
        )
    sent = caught.value.sent
    assert sent is not None and sent.client_order_id == "tl-42" and sent.path == "/fapi/v1/order"
    assert sent.params["quantity"] == "0.002" and "signature" not in sent.params
    (arrived,) = rig.server.calls("/fapi/v1/order")
    assert arrived.params["newClientOrderId"] == "tl-42"  # it may well have executed


async def test_503_on_a_read_is_retryable(rig: Rig) -> None:
    rest = rig.client(Market.USDM)
    rig.server.script["/fapi/v1/openOrders"] = [(503, UNKNOWN_503, {})]
    with pytest.raises(Retryable):
        await rest.get("/fapi/v1/openOrders", signed=True)


async def test_html_error_page_becomes_a_typed_error(rig: Rig) -> None:
    rest = rig.client()
    rig.server.script["/api/v3/depth"] = [(404, "<html>nope</html>", {})]
    with pytest.raises(Exception) as caught:
        await rest.get("/api/v3/depth")
    assert type(caught.value).__name__ == "Fatal" and "nope" in str(caught.value)


async def test_filter_failure_is_rejected_with_the_filter_name(rig: Rig) -> None:
    rest = rig.client()
    rig.server.script["/api/v3/order"] = [
        (400, {"code": -1013, "msg": "Filter failure: LOT_SIZE"}, {})
    ]
    with pytest.raises(Rejected) as caught:
        await rest.post("/api/v3/order", {"symbol": "BTCUSDT"}, signed=True, order=True)
    assert caught.value.reason is RejectReason.FILTER and caught.value.filter_name == "LOT_SIZE"


async def test_timeout_on_an_order_is_unknown_outcome_on_a_read_retryable(rig: Rig) -> None:
    rest = rig.client(timeout_s=0.2)
    rig.server.hang = {"/api/v3/order", "/api/v3/account"}
    with pytest.raises(UnknownOutcome) as caught:
        await rest.post(
            "/api/v3/order", {"symbol": "BTCUSDT", "newClientOrderId": "x9"}, signed=True,
            order=True,
        )  # fmt: skip
    assert caught.value.client_order_id == "x9" and caught.value.status is None
    assert len(rig.server.calls("/api/v3/order")) == 1
    with pytest.raises(Retryable):
        await rest.get("/api/v3/account", signed=True)


async def test_connection_refused_is_retryable_even_for_orders(rig: Rig) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    rest = BinanceRest(
        Market.SPOT,
        BinanceEndpoints(f"http://127.0.0.1:{closed_port}", "ws://unused"),
        rig.clock,
        rig.http,
        BinanceKeys.hmac(API_KEY, SECRET),
    )
    with pytest.raises(Retryable):
        await rest.post("/api/v3/order", {"symbol": "BTCUSDT"}, order=True)
