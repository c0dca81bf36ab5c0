"""The Binance REST client against a server on 127.0.0.1 that answers anything at all.

`BinanceRest` (the engine's REST path: rate budgets, signing, time sync, typed errors) calls a
tiny aiohttp server scripted per example with random status codes, headers (Retry-After junk,
rate-limit counters in odd digits, content encodings it does not use), bodies (garbage, wrong
JSON types, Binance error bodies with odd codes, truncated on the wire) and dropped connections.
Every call ends in the parsed body or one of exchange/errors.py's typed errors, never another
exception; and the client stays usable: a following plain 200 answer is returned (or refused as
Retryable while a 429/418 block the server asked for lasts).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from fuzz_support import LoopRunner, count, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from engine.clock import ReplayClock
from engine.model import Market
from exchange.binance.auth import BinanceKeys
from exchange.binance.rest import TIME_PATH, BinanceRest
from exchange.binance.urls import BinanceEndpoints
from exchange.errors import ExchangeError, Retryable
from exchange.ratelimit import RateLimiter, rate_limits_from_exchange_info

SUITE = "rest"
T0_NS = 1_767_268_800 * 10**9
TIMEOUT_S = 0.5  # the client's per-request limit: a hanging answer costs this much


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"{}"
    mode: str = "normal"  # normal | reset (connection closed mid-body) | hang


@dataclass
class JunkBinance:
    """Answer each path from a script (the last answer repeats); record what was received."""

    script: dict[str, list[Answer]] = field(default_factory=dict)
    received: list[tuple[str, str, str | None]] = field(default_factory=list)
    served: list[tuple[str, Answer]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append((request.method, request.path, request.headers.get("X-MBX-APIKEY")))
        answers = self.script.get(request.path) or [Answer()]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        self.served.append((request.path, answer))
        if answer.mode == "hang":
            await asyncio.sleep(TIMEOUT_S * 4)
        if answer.mode == "reset":
            response = web.StreamResponse(status=answer.status, headers=answer.headers)
            response.content_length = len(answer.body) + 100
            await response.prepare(request)
            await response.write(answer.body[: len(answer.body) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        return web.Response(status=answer.status, headers=answer.headers, body=answer.body)


@pytest.fixture(scope="module")
def rig() -> Iterator[tuple[LoopRunner, JunkBinance, aiohttp.ClientSession]]:
    runner = LoopRunner()
    server = JunkBinance()
    runner.run(server.start())

    async def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    http = runner.run(session())
    yield runner, server, http
    runner.run(http.close())
    runner.run(server.stop())
    runner.close()


@pytest.fixture(scope="module")
def real_limits(shared_data: Path) -> dict[Market, tuple]:
    """The rate limits of the real exchangeInfo bodies (2021 captures)."""
    rest = shared_data / "binance-rest"
    spot = json.loads((rest / "spot_exchangeInfo_20211012.json").read_text())
    usdm = json.loads(next(rest.glob("*usdm*exchangeInfo*.json")).read_text())
    return {
        Market.SPOT: rate_limits_from_exchange_info(spot),
        Market.USDM: rate_limits_from_exchange_info(usdm),
    }


# ------------------------------------------------------------------------------- strategies

_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=20
)
_DIGITS = st.text(st.sampled_from("0123456789٣²①߃ ."), min_size=1, max_size=6)
_NUMBERISH = st.one_of(
    st.integers(-(10**6), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["inf", "-inf", "nan", "1e400", "-1e400", "1_000", " 5 ", "", "0x10", "Fri, 01 Jan 2027 00:00:00 GMT"]),
    _DIGITS,
    _TEXT,
)  # fmt: skip
_HEADER = st.sampled_from(
    ["Retry-After", "X-MBX-USED-WEIGHT-1M", "X-MBX-USED-WEIGHT-1m", "X-MBX-ORDER-COUNT-10S",
     "X-MBX-ORDER-COUNT-1D", "Content-Type", "Content-Encoding", "X-SAPI-USED-IP-WEIGHT-1M"]
)  # fmt: skip
_HEADER_VALUE = st.one_of(
    _NUMBERISH,
    st.sampled_from(["gzip", "br", "deflate", "identity", "application/json", "text/html"]),
)
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)),
    max_leaves=10,
)
_CODES = st.one_of(
    st.sampled_from(
        [-1000, -1001, -1003, -1006, -1007, -1008, -1013, -1015, -1021, -1022, -1111, -1121,
         -1125, -2010, -2011, -2013, -2014, -2015, -2019, -4003, -4120, -4164, -5022, -5028]
    ),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    _NUMBERISH,
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)  # fmt: skip
_MESSAGES = st.one_of(
    _TEXT,
    st.sampled_from(
        ["Timestamp for this request is outside of the recvWindow.", "Filter failure: LOT_SIZE",
         "Filter failure: ", "Duplicate order sent.", "IP banned until 1767268900000.",
         "IP banned until 99999999999999999999999.", "Service Unavailable.",
         "Internal error; unable to process your request. Please try again.",
         "Account has insufficient balance for requested action."]
    ),
    st.integers(),
    st.none(),
)  # fmt: skip


def _error_body(code: Any, msg: Any) -> bytes:
    body: dict[str, Any] = {"code": code}
    if msg is not None:
        body["msg"] = msg
    return json.dumps(body).encode()


_DEEP = b"[" * 1100 + b"]" * 1100  # deeper than JSON parsers nest
_BODY = st.one_of(
    st.builds(_error_body, _CODES, _MESSAGES),
    _JSON.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.sampled_from(
        [b"", b"{", b"<html><body>403 Forbidden</body></html>", b"1e400", _DEEP,
         b'{"serverTime":"soon"}', b'{"serverTime":1.5e300}', b'{"rateLimits":[{"interval":"MINUTE"}]}',
         b'{"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":0,"limit":5}]}',
         b'{"rateLimits":[{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":1,"limit":0}]}',
         b'{"rateLimits":7}', b'{"code":-1021,"msg":"Timestamp for this request was 1000ms ahead"}']
    ),
)  # fmt: skip
_STATUS = st.one_of(
    st.sampled_from([200, 200, 204, 301, 307, 400, 401, 403, 404, 408, 409, 418, 429, 500, 502, 503, 504]),
    st.integers(200, 599),
)  # fmt: skip
_ANSWER = st.builds(
    Answer,
    status=_STATUS,
    headers=st.dictionaries(_HEADER, _HEADER_VALUE, max_size=3),
    body=_BODY,
    mode=st.sampled_from(["normal"] * 12 + ["reset", "hang"]),
)


@dataclass(frozen=True)
class Call:
    market: Market
    what: str  # request | sync_time | exchange_info
    method: str
    signed: bool
    keyed: bool
    order: bool
    has_keys: bool


_CALL = st.builds(
    Call,
    market=st.sampled_from([Market.SPOT, Market.USDM]),
    what=st.sampled_from(["request"] * 6 + ["sync_time", "exchange_info"]),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    signed=st.booleans(),
    keyed=st.booleans(),
    order=st.booleans(),
    has_keys=st.sampled_from([True, True, True, False]),
)


# ------------------------------------------------------------------------------- the property


def _client(
    server: JunkBinance, http: aiohttp.ClientSession, call: Call, limits: dict[Market, tuple]
) -> BinanceRest:
    clock = ReplayClock(T0_NS)
    endpoints = BinanceEndpoints(f"http://127.0.0.1:{server.port}", "ws://127.0.0.1:1")
    keys = BinanceKeys.hmac("fuzz-api-key", "fuzz-secret") if call.has_keys else None
    return BinanceRest(
        call.market,
        endpoints,
        clock,
        http,
        keys,
        limiter=RateLimiter(clock, limits[call.market]),
        timeout_s=TIMEOUT_S,
    )


async def _make(rest: BinanceRest, call: Call, path: str) -> Any:
    if call.what == "sync_time":
        return await rest.sync_time()
    if call.what == "exchange_info":
        return await rest.exchange_info()
    order = call.order and call.method == "POST"
    return await rest.request(
        call.method, path, {"symbol": "BTCUSDT", "n": 1}, signed=call.signed, keyed=call.keyed,
        order=order,
    )  # fmt: skip


def _path(call: Call) -> str:
    if call.what == "sync_time":
        return TIME_PATH[call.market]
    if call.what == "exchange_info":
        return "/api/v3/exchangeInfo" if call.market is Market.SPOT else "/fapi/v1/exchangeInfo"
    return "/api/v3/order" if call.market is Market.SPOT else "/fapi/v1/order"


async def _outcome(rest: BinanceRest, call: Call, path: str) -> tuple[str, Any]:
    try:
        return "ok", await _make(rest, call, path)
    except ExchangeError as exc:
        assert isinstance(exc.message, str)
        retry_after = getattr(exc, "retry_after_s", None)
        assert retry_after is None or retry_after >= 0, exc
        return "error", exc
    # anything else propagates and fails the property


@fuzz_settings(ci_examples=120, deep_examples=4000)
@given(call=_CALL, answers=st.lists(_ANSWER, min_size=1, max_size=3), time_answer=_ANSWER)
def test_every_answer_ends_in_a_body_or_a_typed_error(
    rig: tuple[LoopRunner, JunkBinance, aiohttp.ClientSession],
    real_limits: dict[Market, tuple],
    call: Call,
    answers: list[Answer],
    time_answer: Answer,
) -> None:
    count(SUITE)
    runner, server, http = rig
    path = _path(call)
    time_path = TIME_PATH[call.market]
    server.script = {path: list(answers)}
    if path != time_path:
        server.script[time_path] = [time_answer]
    rest = _client(server, http, call, real_limits)
    server.served.clear()
    kind, value = runner.run(_outcome(rest, call, path))
    count(SUITE, "requests", len(server.received))
    server.received.clear()
    served = [answer for served_path, answer in server.served if served_path == path]
    if kind == "ok" and call.what == "request":
        # the body returned is the last answer's, and that was a readable 2xx
        assert 200 <= served[-1].status < 300 and served[-1].mode == "normal"
        assert value == orjson.loads(served[-1].body)
    if kind == "error" and call.what == "request" and len(served) == 1:
        answer = served[0]
        assert not (answer.mode == "normal" and answer.status in (418, 429)) or isinstance(
            value, Retryable
        ), value

    # the client is not left broken: a plain 200 is returned, or refused while a block lasts
    server.script = {path: [Answer(200, {}, b'{"serverTime": 1767268800000}')]}
    if path != time_path:
        server.script[time_path] = [Answer(200, {}, b'{"serverTime": 1767268800000}')]
    again = Call(call.market, "request", "GET", False, False, False, call.has_keys)
    kind, value = runner.run(_outcome(rest, again, path))
    server.received.clear()
    if kind == "error":
        assert isinstance(value, Retryable), value
    else:
        assert value == {"serverTime": 1767268800000}


def test_a_redirect_is_not_followed_with_the_api_key(
    rig: tuple[LoopRunner, JunkBinance, aiohttp.ClientSession],
    real_limits: dict[Market, tuple],
) -> None:
    """A 3xx must not carry X-MBX-APIKEY and a signed order to another host, nor read its answer."""
    runner, server, http = rig
    stolen = JunkBinance()
    runner.run(stolen.start())
    try:
        for status in (301, 302, 303, 307, 308):
            location = {"Location": f"http://127.0.0.1:{stolen.port}/elsewhere"}
            server.script = {"/api/v3/order": [Answer(status, location, b"")]}
            call = Call(Market.SPOT, "request", "POST", True, False, True, True)
            rest = _client(server, http, call, real_limits)
            rest._synced_at_ns = T0_NS  # time is synced: only the order goes out
            kind, value = runner.run(_outcome(rest, call, "/api/v3/order"))
            assert kind == "error" and value.status == status, (status, value)
        assert stolen.received == []
    finally:
        server.received.clear()
        runner.run(stolen.stop())


_BAD_EXCHANGE_INFO = [
    b'{"rateLimits":7}',
    b'{"rateLimits":[7]}',
    b'{"rateLimits":[{"interval":"MINUTE"}]}',
    b'{"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":"x","limit":5}]}',
    b'{"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":0,"limit":5}]}',
    b'{"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":0}]}',
    b'{"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":-1,"limit":5}]}',
]  # fmt: skip


@pytest.mark.parametrize("body", _BAD_EXCHANGE_INFO, ids=range(len(_BAD_EXCHANGE_INFO)))
def test_exchange_info_with_unusable_rate_limits_is_a_typed_error(
    rig: tuple[LoopRunner, JunkBinance, aiohttp.ClientSession],
    real_limits: dict[Market, tuple],
    body: bytes,
) -> None:
    """A 200 exchangeInfo whose rateLimits cannot seed the budgets ends typed, and breaks nothing."""
    count(SUITE)
    runner, server, http = rig
    call = Call(Market.SPOT, "exchange_info", "GET", False, False, False, True)
    server.script = {"/api/v3/exchangeInfo": [Answer(200, {}, body)]}
    rest = _client(server, http, call, real_limits)
    kind, _value = runner.run(_outcome(rest, call, "/api/v3/exchangeInfo"))
    server.script = {"/api/v3/order": [Answer(200, {}, b"{}")]}
    again = Call(Market.SPOT, "request", "GET", False, False, False, True)
    kind, value = runner.run(_outcome(rest, again, "/api/v3/order"))
    server.received.clear()
    assert kind == "ok" or isinstance(value, Retryable), value


@pytest.mark.parametrize("status", [418, 429])
@pytest.mark.parametrize("retry_after", ["inf", "1e400", "-inf", "nan", "1e20"])
def test_a_non_finite_retry_after_is_a_retryable_and_leaves_the_client_usable(
    rig: tuple[LoopRunner, JunkBinance, aiohttp.ClientSession],
    real_limits: dict[Market, tuple],
    status: int,
    retry_after: str,
) -> None:
    count(SUITE)
    runner, server, http = rig
    call = Call(Market.USDM, "request", "GET", False, False, False, True)
    body = b'{"code":-1003,"msg":"Too many requests"}'
    server.script = {"/fapi/v1/order": [Answer(status, {"Retry-After": retry_after}, body)]}
    rest = _client(server, http, call, real_limits)
    kind, value = runner.run(_outcome(rest, call, "/fapi/v1/order"))
    assert kind == "error" and isinstance(value, Retryable), value
    server.script = {"/fapi/v1/order": [Answer(200, {}, b"{}")]}
    kind, value = runner.run(_outcome(rest, call, "/fapi/v1/order"))
    server.received.clear()
    assert kind == "ok" or isinstance(value, Retryable), value


@pytest.mark.parametrize("used", ["²", "①", "٣", "߃", " 12 ", "-5", "1.5"])
def test_odd_digits_in_a_rate_limit_header_are_not_counted_nor_fatal(
    rig: tuple[LoopRunner, JunkBinance, aiohttp.ClientSession],
    real_limits: dict[Market, tuple],
    used: str,
) -> None:
    count(SUITE)
    runner, server, http = rig
    call = Call(Market.SPOT, "request", "GET", False, False, False, True)
    server.script = {"/api/v3/order": [Answer(200, {"X-MBX-USED-WEIGHT-1M": used}, b"[1]")]}
    rest = _client(server, http, call, real_limits)
    kind, value = runner.run(_outcome(rest, call, "/api/v3/order"))
    server.received.clear()
    assert (kind, value) == ("ok", [1])
    # only plain ASCII digits are the server's count; otherwise the local charge (1) stands
    expected = 12 if used.strip() == "12" else 1
    assert rest.limiter.used("REQUEST_WEIGHT", "1m") == expected
