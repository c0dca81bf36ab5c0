"""REST side of the simulator: time, exchangeInfo, depth (spot and USDⓈ-M) and /_sim control.

Errors have Binance's shape (``{"code":-1121,"msg":"Invalid symbol."}`` with HTTP 400). Every
market-data response carries ``X-MBX-USED-WEIGHT-1M`` (and ``X-MBX-USED-WEIGHT``), counted per
market per minute of the injected clock; over the budget the answer is 429 with Retry-After.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from engine.model import Market
from exchange.sim.exchange_info import (
    WEIGHT_LIMIT_1M,
    futures_depth_weight,
    spot_depth_weight,
)
from exchange.sim.faults import FaultError

if TYPE_CHECKING:
    from exchange.sim.server import SimServer

FUTURES_DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
SPOT_DEPTH_MAX = 5000
_PREFIX = {Market.SPOT: "/api/v3", Market.USDM: "/fapi/v1"}


class BinanceError(Exception):
    """A request the simulated exchange rejects, with Binance's status, code and message."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg
        self.headers = headers or {}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None):
    """Return a JSON response without going through the stdlib encoder."""
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def _symbol_param(request: web.Request) -> str:
    symbol = request.query.get("symbol", "")
    if not symbol:
        raise BinanceError(
            400,
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        )
    return symbol.upper()


class RestApi:
    """Route handlers bound to one simulator."""

    def __init__(self, sim: SimServer) -> None:
        self._sim = sim
        self._weight: dict[Market, tuple[int, int]] = {}  # market -> (minute, used weight)

    def register(self, app: web.Application) -> None:
        """Add every REST route of both markets and the /_sim control routes to app."""
        for market, prefix in _PREFIX.items():
            app.router.add_get(f"{prefix}/ping", self._wrap(market, 1, self._ping))
            app.router.add_get(f"{prefix}/time", self._wrap(market, 1, self._time))
            info_weight = 20 if market is Market.SPOT else 1
            app.router.add_get(
                f"{prefix}/exchangeInfo", self._wrap(market, info_weight, self._info)
            )
            app.router.add_get(f"{prefix}/depth", self._wrap(market, None, self._depth))
        app.router.add_get("/_sim/status", self._status)
        app.router.add_post("/_sim/fault", self._fault)

    def _wrap(self, market: Market, weight: int | None, handler: Any) -> Any:
        async def endpoint(request: web.Request) -> web.Response:
            headers: dict[str, str] = {}
            try:
                status = self._sim.faults.take_http_error()
                if status is not None:
                    raise _injected_error(status, self._sim.server_time_ms())
                cost = weight if weight is not None else self._depth_weight(market, request)
                used = self._charge(market, cost)
                headers = {"X-MBX-USED-WEIGHT-1M": str(used), "X-MBX-USED-WEIGHT": str(used)}
                return json_response(handler(market, request), headers=headers)
            except BinanceError as exc:
                body = {"code": exc.code, "msg": exc.msg}
                return json_response(body, exc.status, {**headers, **exc.headers})

        return endpoint

    def charge(self, market: Market, cost: int) -> int:
        """Count cost against the market's weight budget; return the weight used (429 if over)."""
        return self._charge(market, cost)

    def _charge(self, market: Market, cost: int) -> int:
        now_ns = self._sim.clock.now_ns()
        minute = now_ns // 60_000_000_000
        last_minute, used = self._weight.get(market, (minute, 0))
        used = (used if last_minute == minute else 0) + cost
        self._weight[market] = (minute, used)
        limit = WEIGHT_LIMIT_1M[market]
        if used > limit:
            retry_s = max(1, 60 - (now_ns // 1_000_000_000) % 60)
            raise BinanceError(
                429,
                -1003,
                f"Too much request weight used; current limit is {limit} request weight per "
                "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                {"Retry-After": str(retry_s), "X-MBX-USED-WEIGHT-1M": str(used)},
            )
        return used

    def _depth_weight(self, market: Market, request: web.Request) -> int:
        limit = self._depth_limit(market, request)
        return spot_depth_weight(limit) if market is Market.SPOT else futures_depth_weight(limit)

    @staticmethod
    def _depth_limit(market: Market, request: web.Request) -> int:
        text = request.query.get("limit")
        if text is None:
            return 100 if market is Market.SPOT else 500
        if not text.isdigit():
            raise BinanceError(
                400,
                -1100,
                "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.",
            )
        limit = int(text)
        if market is Market.SPOT:
            if limit < 1:
                raise BinanceError(400, -1100, "Illegal characters found in parameter 'limit'.")
            return min(limit, SPOT_DEPTH_MAX)
        if limit not in FUTURES_DEPTH_LIMITS:
            raise BinanceError(400, -1130, "Data sent for paramter 'limit' is not valid.")
        return limit

    def _ping(self, market: Market, request: web.Request) -> dict:
        return {}

    def _time(self, market: Market, request: web.Request) -> dict:
        return {"serverTime": self._sim.server_time_ms()}

    def _info(self, market: Market, request: web.Request) -> dict:
        catalog = self._sim.exchange_info
        listed = set(catalog.symbols(market))
        wanted: list[str] | None = None
        if "symbol" in request.query:
            wanted = [_symbol_param(request)]
        elif "symbols" in request.query:
            try:
                parsed = orjson.loads(request.query["symbols"])
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, list) or not all(isinstance(s, str) for s in parsed):
                raise BinanceError(400, -1100, "Illegal characters found in parameter 'symbols'.")
            wanted = [s.upper() for s in parsed]
        if wanted is not None and not set(wanted) <= listed:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return catalog.body(market, self._sim.server_time_ms(), wanted)

    def _depth(self, market: Market, request: web.Request) -> dict:
        symbol = _symbol_param(request)
        limit = self._depth_limit(market, request)
        book = self._sim.book_of(symbol, market)
        if book is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        last_id, bids, asks = book.depth(limit)
        if last_id is None:
            raise BinanceError(400, -1121, "Invalid symbol.")  # no depth data on the tape at all
        if market is Market.SPOT:
            return {"lastUpdateId": last_id, "bids": bids, "asks": asks}
        now_ms = self._sim.server_time_ms()
        snap = book.pending_snapshot
        trans_ms = book.last_trans_ms if book.synced else (snap.ts_trans_ms if snap else None)
        return {
            "lastUpdateId": last_id,
            "E": now_ms,
            "T": trans_ms if trans_ms is not None else now_ms,
            "bids": bids,
            "asks": asks,
        }

    async def _status(self, request: web.Request) -> web.Response:
        return json_response(self._sim.status())

    async def _fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            return json_response({"error": "body must be a JSON object"}, 400)
        if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
            return json_response({"error": 'body must be {"kind": ..., params...}'}, 400)
        params = {k: v for k, v in body.items() if k != "kind"}
        trading = getattr(self._sim, "trading", None)
        try:
            if trading is not None and body["kind"] in trading.faults.kinds:
                trading.faults.apply(body["kind"], **params)
                return json_response({"ok": True, "injected": dict(trading.faults.injected)})
            self._sim.faults.apply(body["kind"], **params)
        except FaultError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"ok": True, "injected": dict(self._sim.faults.injected)})


def _injected_error(status: int, server_time_ms: int) -> BinanceError:
    if status == 429:
        return BinanceError(
            429, -1003, "Too many requests; current limit is exceeded.", {"Retry-After": "1"}
        )
    if status == 418:
        until = server_time_ms + 120_000
        return BinanceError(
            418, -1003, f"Way too much request weight used; IP banned until {until}.",
            {"Retry-After": "120"},
        )  # fmt: skip
    return BinanceError(
        status, -1001, "Internal error; unable to process your request. Please try again."
    )
