"""The signed-endpoint wrapper shared by the spot and USDⓈ-M trading routes.

Order of checks, as Binance applies them: injected HTTP faults (429/418/5xx), request weight,
API key (-2014/-2015), permission (-2015), signature over the received bytes (-1022), timestamp
against the replay's server time (-1021). Placement endpoints then consult the placement faults
*after* the order was executed (unknown outcome, held response, duplicate answer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from engine.model import Market
from exchange.sim.rest import BinanceError, json_response
from exchange.sim.trading.faults import TradingFaults
from exchange.sim.trading.keys import (
    ApiKey,
    ApiKeyRegistry,
    check_signature,
    check_timestamp,
    parse_params,
)

if TYPE_CHECKING:
    from exchange.sim.server import SimServer


class Permission:
    READ = "read"
    SPOT_TRADE = "spot"
    FUTURES = "futures"


@dataclass(frozen=True, slots=True)
class Request:
    """A verified request: decoded parameters and the key that signed it."""

    params: dict[str, str]
    api_key: ApiKey
    market: Market

    def get(self, name: str) -> str | None:
        value = self.params.get(name)
        return value if value not in (None, "") else None

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise BinanceError(
                400,
                -1102,
                f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
            )
        return value


Handler = Callable[[Request], Awaitable[Any]]

_UNKNOWN_MSG = {
    Market.SPOT: (-1007, ("Timeout waiting for response from backend server. Send status "
                          "unknown; execution status unknown.")),
    Market.USDM: (-1000, "Unknown error, please check your request or try again later."),
}  # fmt: skip
_DUPLICATE = {
    Market.SPOT: (-2010, "Duplicate order sent."),
    Market.USDM: (-4116, "ClientOrderId is duplicated."),
}


class SignedApi:
    """Mounts signed handlers on an aiohttp app with Binance's checks and headers."""

    def __init__(self, sim: SimServer, keys: ApiKeyRegistry, faults: TradingFaults) -> None:
        self.sim = sim
        self.keys = keys
        self.faults = faults
        self._order_counts: dict[tuple[Market, str], tuple[int, int]] = {}

    def add(
        self,
        app: web.Application,
        method: str,
        path: str,
        market: Market,
        weight: int,
        handler: Handler,
        permission: str = Permission.READ,
        placement: bool = False,
        signed: bool = True,
    ) -> None:
        """Route method+path to handler behind the signed-request checks."""

        async def endpoint(request: web.Request) -> web.StreamResponse:
            headers: dict[str, str] = {}
            try:
                status = self.sim.faults.take_http_error()
                if status is not None:
                    raise _injected(status, self.sim.server_time_ms())
                used = self._charge(market, weight)
                headers = {"X-MBX-USED-WEIGHT-1M": str(used), "X-MBX-USED-WEIGHT": str(used)}
                verified = await self._verify(request, market, permission, signed)
                body = await handler(verified)
                if placement:
                    headers.update(self._count_order(market))
                    fault = self.faults.take_placement_fault()
                    if fault is not None:
                        return await self._placement_fault(market, fault, body, headers)
                return json_response(body, headers=headers)
            except BinanceError as exc:
                return json_response(
                    {"code": exc.code, "msg": exc.msg}, exc.status, {**headers, **exc.headers}
                )

        app.router.add_route(method, path, endpoint)

    async def _verify(
        self, request: web.Request, market: Market, permission: str, signed: bool
    ) -> Request:
        api_key = self.keys.lookup(request.headers.get("X-MBX-APIKEY"))
        allowed = {
            Permission.READ: api_key.enable_reading,
            Permission.SPOT_TRADE: api_key.enable_spot_trading,
            Permission.FUTURES: api_key.enable_futures,
        }[permission]
        if market is Market.USDM and not api_key.enable_futures:
            allowed = False
        if not allowed:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        raw_query = request.rel_url.raw_query_string
        raw_body = (
            (await request.read()).decode("utf-8", "replace") if request.can_read_body else ""
        )
        params = parse_params(raw_query, raw_body)
        if signed:
            check_signature(api_key, raw_query, raw_body)
            if self.faults.take_timestamp_error():
                raise BinanceError(
                    400, -1021, "Timestamp for this request is outside of the recvWindow."
                )
            check_timestamp(params, self.sim.server_time_ms(), market is Market.SPOT)
        return Request(params, api_key, market)

    def _charge(self, market: Market, cost: int) -> int:
        rest = getattr(self.sim, "rest", None)
        if rest is None:
            return cost
        return int(rest.charge(market, cost))

    def _count_order(self, market: Market) -> dict[str, str]:
        now_s = self.sim.clock.now_ns() // 1_000_000_000
        windows = {"10S": 10, "1D": 86_400} if market is Market.SPOT else {"10S": 10, "1M": 60}
        headers = {}
        for name, seconds in windows.items():
            window = now_s // seconds
            last, count = self._order_counts.get((market, name), (window, 0))
            count = (count if last == window else 0) + 1
            self._order_counts[(market, name)] = (window, count)
            headers[f"X-MBX-ORDER-COUNT-{name}"] = str(count)
        return headers

    async def _placement_fault(
        self, market: Market, fault: tuple[str, float], body: Any, headers: dict[str, str]
    ) -> web.Response:
        kind, value = fault
        if kind == "unknown":
            code, msg = _UNKNOWN_MSG[market]
            return json_response({"code": code, "msg": msg}, int(value), headers)
        if kind == "duplicate":
            code, msg = _DUPLICATE[market]
            return json_response({"code": code, "msg": msg}, 400, headers)
        await self.sim.clock.sleep(value)  # the client gave up long ago; answer anyway
        return json_response(body, headers=headers)


def _injected(status: int, server_time_ms: int) -> BinanceError:
    if status == 429:
        return BinanceError(
            429,
            -1003,
            "Too many requests; current limit is exceeded.",
            {"Retry-After": "1"},
        )
    if status == 418:
        return BinanceError(
            418,
            -1003,
            f"Way too much request weight used; IP banned until {server_time_ms + 120_000}.",
            {"Retry-After": "120"},
        )
    return BinanceError(
        status, -1001, "Internal error; unable to process your request. Please try again."
    )
