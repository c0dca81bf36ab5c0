"""Orders written straight onto warm connections (exchange/binance/wire.py via BinanceRest).

The server is a plain blocking socket on 127.0.0.1 read from the test itself: when
`send_order_now` returns, the whole signed request must already be readable there, before the
test yields to the event loop once. Answers are written by hand (sized, chunked, `Connection:
close`, none at all), so every HTTP case the lane must survive is exact.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.clock import LiveClock
from engine.model import Market
from exchange.binance.auth import BinanceKeys
from exchange.binance.rest import BinanceRest
from exchange.binance.urls import BinanceEndpoints
from exchange.binance.wire import OrderWire
from exchange.errors import Retryable, UnknownOutcome
from exchange.ratelimit import ORDERS, REQUEST_WEIGHT, RateLimit, RateLimiter

API_KEY = "wire-test-key"
SECRET = "wire-test-secret"
ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
         "newClientOrderId": "tl-BTCUSDT-1-en"}  # fmt: skip


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


def read_request(conn: socket.socket) -> Request:
    """Read one HTTP/1.1 request (sized body) from a blocking socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed before a whole request: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, version = request_line.split(" ")
    assert version == "HTTP/1.1"
    headers = {name.lower(): value.strip() for name, _, value in (ln.partition(":") for ln in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        body += conn.recv(65536)
    return Request(method, target, headers, body)


def answer(conn: socket.socket, status: int, body: object, headers: dict[str, str] | None = None,
           *, chunked: bool = False) -> None:  # fmt: skip
    raw = json.dumps(body).encode()
    head = [f"HTTP/1.1 {status} X", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if chunked:
        half = len(raw) // 2
        payload = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in (raw[:half], raw[half:]))
        conn.sendall(("\r\n".join([*head, "Transfer-Encoding: chunked"]) + "\r\n\r\n").encode()
                     + payload + b"0\r\n\r\n")  # fmt: skip
    else:
        conn.sendall(("\r\n".join([*head, f"Content-Length: {len(raw)}"]) + "\r\n\r\n").encode() + raw)


def signature_ok(body: bytes) -> bool:
    text = body.decode()
    payload, _, signature = text.rpartition("&signature=")
    expected = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


@dataclass
class Rig:
    listener: socket.socket
    rest: BinanceRest
    wire: OrderWire
    limiter: RateLimiter
    time_conn: socket.socket  # aiohttp's pooled connection, kept alive after the first /time

    def accept(self) -> socket.socket:
        conn, _ = self.listener.accept()
        conn.settimeout(5)
        return conn

    async def connected(self) -> socket.socket:
        """Wait for the wire's warm connection; return the server's side of it."""
        await self.until_ready()
        return self.accept()

    def place(self, order: dict[str, str] = ORDER) -> Coroutine[Any, Any, Any]:
        """Send an order that must go out on the wire at once; return what awaits its answer."""
        pending = self.rest.send_order_now("POST", "/api/v3/order", order, weight=1)
        assert pending is not None, "the order did not go out on the wire"
        return pending

    async def until_ready(self, count: int = 1) -> None:
        for _ in range(500):
            if self.wire.ready >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the wire never opened a connection")


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    clock = LiveClock()
    limiter = RateLimiter(clock, [RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 6000),
                                  RateLimit(ORDERS, "SECOND", 10, 50)])  # fmt: skip
    wire = OrderWire(base, clock, size=1, idle_s=60)
    async with aiohttp.ClientSession() as http:
        rest = BinanceRest(Market.SPOT, BinanceEndpoints(base, "ws://unused"), clock, http,
                           BinanceKeys.hmac(API_KEY, SECRET), limiter=limiter, timeout_s=2.0,
                           wire=wire)  # fmt: skip
        # the clock offset first (over aiohttp, its own connection), then the warm connection
        syncing = asyncio.create_task(rest.sync_time())
        conn = await asyncio.to_thread(listener.accept)
        time_conn = conn[0]
        time_conn.settimeout(5)
        request = await asyncio.to_thread(read_request, time_conn)
        assert request.target == "/api/v3/time"
        answer(time_conn, 200, {"serverTime": clock.now_ns() // 1_000_000})
        await syncing
        runner = asyncio.create_task(wire.run(check_s=0.01))
        yield Rig(listener, rest, wire, limiter, time_conn)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        time_conn.close()
    listener.close()


async def test_an_order_is_on_the_wire_when_send_order_now_returns(rig: Rig) -> None:
    server = await rig.connected()
    pending = rig.place()
    # no await since the call: the bytes are already in the server's socket
    request = read_request(server)
    assert (request.method, request.target) == ("POST", "/api/v3/order")
    assert request.headers["x-mbx-apikey"] == API_KEY
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["host"] == rig.listener.getsockname()[0] + f":{rig.listener.getsockname()[1]}"
    params = dict(parse_qsl(request.body.decode()))
    assert {k: params[k] for k in ORDER} == ORDER
    assert params["recvWindow"] == "5000" and int(params["timestamp"]) > 1_700_000_000_000
    assert signature_ok(request.body)
    answer(server, 200, {"clientOrderId": ORDER["newClientOrderId"], "status": "FILLED"},
           {"X-MBX-ORDER-COUNT-10S": "7"})  # fmt: skip
    assert await pending == {"clientOrderId": ORDER["newClientOrderId"], "status": "FILLED"}
    assert rig.limiter.used(ORDERS, "10s") == 7  # the server's count adopted
    server.close()


async def test_the_next_order_reuses_the_connection_and_a_chunked_answer_is_whole(rig: Rig) -> None:
    server = await rig.connected()
    for n in range(3):
        order = {**ORDER, "newClientOrderId": f"tl-BTCUSDT-{n}-en"}
        pending = rig.place(order)
        request = read_request(server)  # the same accepted socket every time: kept alive
        assert dict(parse_qsl(request.body.decode()))["newClientOrderId"] == f"tl-BTCUSDT-{n}-en"
        answer(server, 200, {"n": n, "pad": "x" * 300}, chunked=n % 2 == 1)
        assert (await pending)["n"] == n
    assert rig.wire.sent == 3
    server.close()


async def test_while_the_only_connection_is_busy_nothing_is_sent_or_charged(rig: Rig) -> None:
    server = await rig.connected()
    first = rig.place()
    charged = rig.limiter.used(ORDERS, "10s"), rig.limiter.used(REQUEST_WEIGHT, "1m")
    assert rig.rest.send_order_now("POST", "/api/v3/order", ORDER, weight=1) is None
    assert (rig.limiter.used(ORDERS, "10s"), rig.limiter.used(REQUEST_WEIGHT, "1m")) == charged
    read_request(server)
    answer(server, 200, {"ok": 1})
    assert await first == {"ok": 1}
    server.close()


async def test_a_connection_dropped_under_an_order_is_an_unknown_outcome(rig: Rig) -> None:
    server = await rig.connected()
    pending = rig.place()
    read_request(server)
    server.close()  # executed or not: nobody can say from here
    with pytest.raises(UnknownOutcome):
        await pending
    await rig.until_ready()  # a fresh connection replaces it
    rig.accept().close()


async def test_no_answer_in_time_is_unknown_and_that_connection_is_closed(rig: Rig) -> None:
    server = await rig.connected()
    pending = rig.place()
    read_request(server)
    with pytest.raises(UnknownOutcome):
        await pending  # timeout_s=2: a late answer could never be matched to it
    assert await asyncio.to_thread(server.recv, 100) == b""  # we closed it
    server.close()


async def test_connection_close_in_the_answer_is_honoured(rig: Rig) -> None:
    server = await rig.connected()
    pending = rig.place()
    read_request(server)
    answer(server, 200, {"ok": 1}, {"Connection": "close"})
    assert await pending == {"ok": 1}
    assert await asyncio.to_thread(server.recv, 100) == b""
    server.close()
    await rig.until_ready()
    second = rig.accept()  # the next order goes on a new connection
    pending = rig.place()
    read_request(second)
    answer(second, 200, {"ok": 2})
    assert await pending == {"ok": 2}
    second.close()


async def test_a_429_blocks_orders_until_retry_after(rig: Rig) -> None:
    server = await rig.connected()
    pending = rig.place()
    read_request(server)
    answer(server, 429, {"code": -1015, "msg": "Too many new orders."}, {"Retry-After": "30"})
    with pytest.raises(Retryable) as caught:
        await pending
    assert caught.value.retry_after_s == 30
    assert rig.limiter.try_acquire(1, 1) is None  # held back: the awaited path waits or refuses
    assert rig.rest.send_order_now("POST", "/api/v3/order", ORDER, weight=1) is None
    server.close()


async def test_a_refused_timestamp_resyncs_the_clock_and_is_not_resent(rig: Rig) -> None:
    server = await rig.connected()
    pending = rig.place()
    read_request(server)
    answer(server, 400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
    task = asyncio.create_task(pending)
    time_conn = rig.time_conn
    request = await asyncio.to_thread(read_request, time_conn)
    assert request.target == "/api/v3/time"
    answer(time_conn, 200, {"serverTime": LiveClock().now_ns() // 1_000_000 + 4_000})
    with pytest.raises(Retryable) as caught:
        await task
    assert caught.value.resync_clock
    assert 3_000 < rig.rest.offset_ms < 5_000
    server.settimeout(0.2)
    with pytest.raises(TimeoutError):
        server.recv(100)  # never re-sent on its own: the order manager decides
    server.close()


async def test_without_a_measured_clock_offset_the_order_takes_the_awaited_path() -> None:
    clock = LiveClock()
    wire = OrderWire("http://127.0.0.1:9", clock)
    async with aiohttp.ClientSession() as http:
        rest = BinanceRest(Market.SPOT, BinanceEndpoints("http://127.0.0.1:9", "ws://unused"), clock,
                           http, BinanceKeys.hmac(API_KEY, SECRET), wire=wire)  # fmt: skip
        assert rest.send_order_now("POST", "/api/v3/order", ORDER, weight=1) is None
        assert wire.sent == 0


def test_a_base_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        OrderWire("ws://127.0.0.1:1", LiveClock())


class _Capture(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += data

    def is_closing(self) -> bool:
        return False


@pytest.mark.parametrize("body", [b"", b"symbol=BTCUSDT&side=BUY&signature=ab12"])
async def test_the_request_written_is_byte_for_byte_what_h11_frames(body: bytes) -> None:
    from exchange.binance.wire import _Connection

    connection = _Connection(asyncio.get_running_loop(), LiveClock())
    transport = _Capture()
    connection.connection_made(transport)
    headers = {"X-MBX-APIKEY": API_KEY, "Content-Type": "application/x-www-form-urlencoded"}
    connection.send("POST", "/api/v3/order?x=1", "api.binance.com", headers, body)
    reference = h11.Connection(our_role=h11.CLIENT)
    fields = [("Host", "api.binance.com"), *headers.items(), ("Content-Length", str(len(body)))]
    expected = reference.send(h11.Request(method="POST", target="/api/v3/order?x=1", headers=fields))
    expected += reference.send(h11.Data(data=body)) if body else b""
    expected += reference.send(h11.EndOfMessage())
    assert transport.written == expected


async def test_a_header_value_with_a_line_break_is_never_written(rig: Rig) -> None:
    server = await rig.connected()
    assert rig.wire.try_send("POST", "/api/v3/order", {"X-MBX-APIKEY": "a\r\nX-Evil: 1"}, b"") is None
    assert rig.wire.ready == 1 and rig.wire.sent == 0
    server.settimeout(0.2)
    with pytest.raises(TimeoutError):
        server.recv(100)
    server.close()


async def test_connect_failures_back_off_and_a_later_server_is_found() -> None:
    from engine.clock import ReplayClock

    placeholder = socket.create_server(("127.0.0.1", 0))
    port = placeholder.getsockname()[1]
    placeholder.close()  # nothing listens there now: every connect is refused
    clock = ReplayClock(1_700_000_000_000 * 1_000_000)
    wire = OrderWire(f"http://127.0.0.1:{port}", clock, size=1)
    runner = asyncio.create_task(wire.run(check_s=0.01))
    for _ in range(200):
        await asyncio.sleep(0)
        if wire.connect_failures >= 4:
            break
    # on the replay clock each failure slept 1, 2, 4, ... s of virtual time
    assert wire.connect_failures >= 4 and clock.monotonic_ns() >= (1 + 2 + 4) * 1_000_000_000
    listener = socket.create_server(("127.0.0.1", port))
    try:
        for _ in range(2000):
            await asyncio.sleep(0.001)
            if wire.ready:
                break
        assert wire.ready == 1 and wire.connect_failures == 0
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        listener.close()


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=40),
       st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7F), max_size=40))
def test_whatever_passes_the_checks_before_the_write_h11_accepts_after_it(value: str, target: str) -> None:
    from exchange.binance.wire import _TARGET_SAFE, _VALUE_SAFE

    target = "/" + target
    if not (_VALUE_SAFE(value) and _TARGET_SAFE(target)):
        return  # refused before anything is written
    connection = h11.Connection(our_role=h11.CLIENT)
    fields = [("Host", "h"), ("X-MBX-APIKEY", value), ("Content-Length", "0")]
    connection.send(h11.Request(method="POST", target=target, headers=fields))
    connection.send(h11.EndOfMessage())


async def test_a_header_value_with_a_trailing_blank_is_never_written(rig: Rig) -> None:
    server = await rig.connected()
    assert rig.wire.try_send("POST", "/api/v3/order", {"X-MBX-APIKEY": "key "}, b"") is None
    assert rig.wire.try_send("POST", "/api/v3/order x", {"X-MBX-APIKEY": "key"}, b"") is None
    assert rig.wire.ready == 1 and rig.wire.sent == 0
    server.close()
