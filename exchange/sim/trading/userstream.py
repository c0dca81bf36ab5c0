"""User-data streams of the simulated exchange (binance-api.md §6).

USDⓈ-M: ``POST/PUT/DELETE /fapi/v1/listenKey`` (API key header, not signed); websockets
``/private/ws?listenKey=K[&events=A/B]``, ``/private/ws/K`` (raw events) and
``/private/stream?listenKey=K[&events=..]`` (``{"stream":K,"data":event}``). A key lives
`validity_s` after its last POST/PUT; when it expires (or on the ``listen_key_expire`` fault) its
connections get ``listenKeyExpired`` and nothing more, while the socket stays open, as on Binance.

Spot (listenKeys removed in 2026): the WebSocket API at ``/ws-api/v3``: ``ping``, ``time``,
``userDataStream.subscribe.signature`` (params signed sorted by name), ``userDataStream.unsubscribe``
and ``session.subscriptions``; events arrive as ``{"subscriptionId":N,"event":{...}}``.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

from engine.model import Market
from exchange.sim.rest import BinanceError
from exchange.sim.trading.api import Permission, Request, SignedApi
from exchange.sim.trading.keys import ApiKeyRegistry, check_timestamp, hmac_hex

if TYPE_CHECKING:
    from exchange.sim.server import SimServer
    from exchange.sim.trading.desk import Desk

LISTEN_KEY_VALIDITY_S = 3600.0


@dataclass(slots=True)
class _ListenKey:
    key: str
    api_key: str
    expires_ns: int
    expired: bool = False


@dataclass(eq=False)
class UserConnection:
    """One user-data websocket: its queue, the keys or subscriptions it listens with."""

    ws: web.WebSocketResponse
    transport: Any
    combined: bool = False
    listen_keys: dict[str, set[str] | None] = field(default_factory=dict)  # key -> event filter
    subscriptions: set[int] = field(default_factory=set)  # spot WS API
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    def send(self, payload: bytes) -> None:
        self.queue.put_nowait(payload)

    async def write_loop(self) -> None:
        while (payload := await self.queue.get()) is not None:
            if self.ws.closed:
                return
            await self.ws.send_str(payload.decode())


class UserStreams:
    """Listen keys, private websockets and the spot WS API of one simulator."""

    def __init__(
        self,
        sim: SimServer,
        api: SignedApi,
        keys: ApiKeyRegistry,
        spot: Desk | None,
        futures: Desk | None,
        validity_s: float = LISTEN_KEY_VALIDITY_S,
    ) -> None:
        self.sim, self.api, self.keys = sim, api, keys
        self.validity_ns = int(validity_s * 1e9)
        self.listen_keys: dict[str, _ListenKey] = {}
        self.conns: set[UserConnection] = set()
        self._next_subscription = 0
        if futures is not None:
            futures.listeners.append(self._futures_event)
        if spot is not None:
            spot.listeners.append(self._spot_event)

    def register(self, app: web.Application) -> None:
        for method, handler in (("POST", self.create), ("PUT", self.keepalive),
                                ("DELETE", self.close_key)):  # fmt: skip
            self.api.add(app, method, "/fapi/v1/listenKey", Market.USDM, 1, handler,
                         Permission.FUTURES, signed=False)  # fmt: skip
        app.router.add_get("/private/ws", self._private_handler)
        app.router.add_get("/private/ws/{listenKey}", self._private_handler)
        app.router.add_get("/private/stream", self._private_handler)
        app.router.add_get("/ws-api/v3", self._ws_api_handler)

    # ---- listen keys ------------------------------------------------------------------------

    async def create(self, req: Request) -> dict:
        now = self.sim.clock.monotonic_ns()
        for lk in self.listen_keys.values():  # Binance returns the active key, extended
            if lk.api_key == req.api_key.key and not lk.expired:
                lk.expires_ns = now + self.validity_ns
                return {"listenKey": lk.key}
        key = secrets.token_hex(32)
        self.listen_keys[key] = _ListenKey(key, req.api_key.key, now + self.validity_ns)
        return {"listenKey": key}

    def _active(self, req: Request) -> _ListenKey:
        for lk in self.listen_keys.values():
            if lk.api_key == req.api_key.key and not lk.expired:
                return lk
        raise BinanceError(400, -1125, "This listenKey does not exist.")

    async def keepalive(self, req: Request) -> dict:
        lk = self._active(req)
        lk.expires_ns = self.sim.clock.monotonic_ns() + self.validity_ns
        return {"listenKey": lk.key}

    async def close_key(self, req: Request) -> dict:
        lk = self._active(req)
        lk.expired = True
        return {}

    def expire(self, listen_key: str | None = None) -> int:
        """Expire one key (every live key when None) now; notify its connections."""
        expired = 0
        for lk in list(self.listen_keys.values()):
            if lk.expired or listen_key not in (None, lk.key):
                continue
            lk.expired = True
            expired += 1
            notice = {"e": "listenKeyExpired", "E": self.sim.server_time_ms(), "listenKey": lk.key}
            for conn in list(self.conns):
                if lk.key in conn.listen_keys:
                    conn.send(self._frame(conn, lk.key, notice))
                    del conn.listen_keys[lk.key]
        return expired

    def expire_due(self) -> None:
        """Expire keys not kept alive in time (called by the trading simulator's watchdog)."""
        now = self.sim.clock.monotonic_ns()
        for lk in list(self.listen_keys.values()):
            if not lk.expired and now >= lk.expires_ns:
                self.expire(lk.key)

    def drop_all(self) -> int:
        """Drop every user-data websocket without a close frame."""
        conns = list(self.conns)
        for conn in conns:
            if conn.transport is not None:
                conn.transport.abort()
        return len(conns)

    async def close_all(self) -> None:
        for conn in list(self.conns):
            await conn.ws.close(code=1001, message=b"server closing")

    # ---- event fan-out ----------------------------------------------------------------------

    @staticmethod
    def _frame(conn: UserConnection, key: str, event: dict) -> bytes:
        if conn.combined:
            return orjson.dumps({"stream": key, "data": event})
        return orjson.dumps(event)

    def _futures_event(self, event: dict) -> None:
        for conn in self.conns:
            for key, events in conn.listen_keys.items():
                if events is None or event["e"] in events:
                    conn.send(self._frame(conn, key, event))

    def _spot_event(self, event: dict) -> None:
        for conn in self.conns:
            for sub_id in sorted(conn.subscriptions):
                conn.send(orjson.dumps({"subscriptionId": sub_id, "event": event}))

    # ---- websocket handlers -----------------------------------------------------------------

    async def _serve(
        self, request: web.Request, conn_setup: Any, answers: bool
    ) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None)
        await ws.prepare(request)
        conn = UserConnection(ws, request.transport)
        writer = asyncio.create_task(conn.write_loop(), name="sim-user-writer")
        self.conns.add(conn)
        try:
            await conn_setup(conn)
            async for msg in ws:
                if msg.type is WSMsgType.TEXT and answers:
                    reply = self._ws_api_request(conn, msg.data)
                    if reply is not None:
                        conn.send(reply)
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            self.conns.discard(conn)
            conn.queue.put_nowait(None)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        return ws

    async def _private_handler(self, request: web.Request) -> web.StreamResponse:
        keys = request.query.getall("listenKey", [])
        if "listenKey" in request.match_info:
            keys = [request.match_info["listenKey"]]
        filters = request.query.getall("events", [])
        live = [k for k in keys if k in self.listen_keys and not self.listen_keys[k].expired]
        if not live:
            return web.json_response(
                {"code": -1125, "msg": "This listenKey does not exist."}, status=400
            )

        async def setup(conn: UserConnection) -> None:
            conn.combined = request.path.endswith("/stream")
            for index, key in enumerate(keys):
                if key not in live:
                    continue
                wanted = filters[index] if index < len(filters) else None
                conn.listen_keys[key] = set(wanted.split("/")) if wanted else None

        return await self._serve(request, setup, answers=False)

    async def _ws_api_handler(self, request: web.Request) -> web.StreamResponse:
        async def setup(conn: UserConnection) -> None:
            conn.listen_keys.clear()

        return await self._serve(request, setup, answers=True)

    def _ws_api_request(self, conn: UserConnection, text: str) -> bytes | None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            return _ws_error(None, 400, -1100, "Malformed request.")
        if not isinstance(message, dict):
            return _ws_error(None, 400, -1100, "Malformed request.")
        request_id = message.get("id")
        method = message.get("method")
        params = message.get("params") or {}
        if method == "ping":
            return _ws_result(request_id, {})
        if method == "time":
            return _ws_result(request_id, {"serverTime": self.sim.server_time_ms()})
        if method == "userDataStream.subscribe.signature":
            try:
                self._check_ws_signature(params)
            except BinanceError as exc:
                return _ws_error(request_id, exc.status, exc.code, exc.msg)
            sub_id = self._next_subscription
            self._next_subscription += 1
            conn.subscriptions.add(sub_id)
            return _ws_result(request_id, {"subscriptionId": sub_id})
        if method == "userDataStream.unsubscribe":
            wanted = params.get("subscriptionId")
            gone = set(conn.subscriptions) if wanted is None else {int(wanted)}
            conn.subscriptions -= gone
            return _ws_result(request_id, {})
        if method == "session.subscriptions":
            return _ws_result(
                request_id, [{"subscriptionId": s} for s in sorted(conn.subscriptions)]
            )
        return _ws_error(request_id, 400, -1100, f"Unknown method {method!r}.")

    def _check_ws_signature(self, params: dict) -> None:
        api_key = self.keys.lookup(params.get("apiKey"))
        signature = str(params.get("signature", ""))
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
        if not signature or hmac_hex(api_key.secret, payload.encode()) != signature.lower():
            raise BinanceError(400, -1022, "Signature for this request is not valid.")
        check_timestamp({k: str(v) for k, v in params.items()}, self.sim.server_time_ms(), True)


def _ws_result(request_id: Any, result: Any) -> bytes:
    return orjson.dumps({"id": request_id, "status": 200, "result": result, "rateLimits": []})


def _ws_error(request_id: Any, status: int, code: int, msg: str) -> bytes:
    return orjson.dumps({"id": request_id, "status": status, "error": {"code": code, "msg": msg}})
