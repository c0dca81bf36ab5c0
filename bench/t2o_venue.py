"""The venue bench/tick_to_order.py sends to: a stamping HTTP/1.1 server in its own process.

It stamps `time.perf_counter_ns()` (CLOCK_MONOTONIC, system-wide on Linux) on the first
`data_received` of each request, before any parsing, checks the HMAC signature and answers a
valid FULL body: the MARKET order EXPIRED, so no position opens and every later signal may enter
again. `GET /bench/arrivals` returns the stamps.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson

from engine.clock import LiveClock

ORDER_PATH = "/api/v3/order"
BASELINE_PREFIX = "base-"
_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


class _Desk(asyncio.Protocol):
    """One keep-alive connection: stamp each request's first bytes, then parse and answer it."""

    def __init__(self, book: dict[str, Any]) -> None:
        self.book, self.buffer, self.first_ns = book, bytearray(), 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now_ns = time.perf_counter_ns()  # the arrival stamp, before anything else
        if not self.buffer:
            self.first_ns = now_ns
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = _CONTENT_LENGTH.search(self.buffer, 0, end + 2)
            total = end + 4 + (int(length.group(1)) if length else 0)
            if len(self.buffer) < total:
                return
            head, body = bytes(self.buffer[:end]), bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            self.transport.write(self._answer(head, body, self.first_ns))
            self.first_ns = now_ns  # a further request in the same chunk arrived with it

    def _answer(self, head: bytes, body: bytes, arrived_ns: int) -> bytes:
        method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
        path, _, query = target.decode().partition("?")
        book = self.book
        if method == b"POST" and path == ORDER_PATH:
            signed, _, signature = body.rpartition(b"&signature=")
            expected = hmac.new(book["secret"], query.encode() + signed, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected.encode(), signature):
                book["bad_signatures"] += 1
                return _http(400, b'{"code":-1022,"msg":"Signature for this request is not valid."}')  # fmt: skip
            p = dict(parse_qsl(signed.decode()))
            book["arrivals"].setdefault(p["newClientOrderId"], []).append(arrived_ns)
            book["order_id"] += 1
            now_ms = LiveClock().now_ms()
            return _http(200, orjson.dumps({
                "symbol": p["symbol"], "orderId": book["order_id"], "orderListId": -1,
                "clientOrderId": p["newClientOrderId"], "transactTime": now_ms, "price": "0",
                "origQty": p["quantity"], "executedQty": "0", "origQuoteOrderQty": "0",
                "cummulativeQuoteQty": "0", "status": "EXPIRED", "timeInForce": "GTC",
                "type": p["type"], "side": p["side"], "workingTime": now_ms, "fills": [],
                "selfTradePreventionMode": "EXPIRE_MAKER",
            }))  # fmt: skip
        if path == "/api/v3/time":
            return _http(200, orjson.dumps({"serverTime": LiveClock().now_ms()}))
        if path == "/api/v3/openOrders":  # BinanceVenue's periodic reconcile: all ended here
            return _http(200, b"[]")
        if path == "/bench/arrivals":
            return _http(200, orjson.dumps({k: v for k, v in book.items() if k != "secret"}))
        book["other_requests"] += 1
        return _http(404, b'{"code":-1,"msg":"not served here"}')


def _http(status: int, body: bytes) -> bytes:
    return (b"HTTP/1.1 %d X\r\nContent-Type: application/json;charset=UTF-8\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body))  # fmt: skip


def serve_venue(port_out: Any, secret: str) -> None:
    """Process target: serve the stamping venue on 127.0.0.1 until terminated."""

    async def serve() -> None:
        book = {"secret": secret.encode(), "arrivals": {}, "order_id": 0, "bad_signatures": 0,
                "other_requests": 0}  # fmt: skip
        server = await asyncio.get_running_loop().create_server(lambda: _Desk(book), "127.0.0.1", 0)
        port_out.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(serve())
