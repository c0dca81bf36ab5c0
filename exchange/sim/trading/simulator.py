"""The trading side of the loopback simulator: keys, desks, signed routes, user streams, faults.

``TradingSim(sim)`` mounts everything on the simulator's aiohttp app; it must be built before the
server opens (the router freezes on start). One account per market, shared by every key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from engine.model import Market
from exchange.sim.trading.api import Request, SignedApi
from exchange.sim.trading.desk import Desk
from exchange.sim.trading.faults import TradingFaults
from exchange.sim.trading.futures import FuturesRoutes
from exchange.sim.trading.keys import ApiKeyRegistry
from exchange.sim.trading.spot import SpotRoutes
from exchange.sim.trading.userstream import LISTEN_KEY_VALIDITY_S, UserStreams

if TYPE_CHECKING:
    from exchange.sim.server import SimServer

DEFAULT_SPOT_BALANCES = {"USDT": Decimal(1_000_000), "BTC": Decimal(10), "ETH": Decimal(100)}
DEFAULT_FUTURES_BALANCES = {"USDT": Decimal(1_000_000)}
_WATCHDOG_PERIOD_S = 0.05


class TradingSim:
    """Signed trading endpoints and user-data streams over a SimServer's replay."""

    def __init__(
        self,
        sim: SimServer,
        keys: ApiKeyRegistry | None = None,
        spot_balances: Mapping[str, Decimal] | None = None,
        futures_balances: Mapping[str, Decimal] | None = None,
        leverage: int = 1,
        listen_key_validity_s: float = LISTEN_KEY_VALIDITY_S,
    ) -> None:
        self.sim = sim
        self.keys = keys or ApiKeyRegistry.with_test_key()
        self.spot = Desk(sim, Market.SPOT, spot_balances or DEFAULT_SPOT_BALANCES)
        self.futures = Desk(
            sim, Market.USDM, futures_balances or DEFAULT_FUTURES_BALANCES, leverage
        )
        self.faults = TradingFaults(self._expire_keys, self._drop_streams)
        self.api = SignedApi(sim, self.keys, self.faults)
        self.spot_routes = SpotRoutes(self.spot, self.api)
        self.futures_routes = FuturesRoutes(self.futures, self.api)
        self.streams = UserStreams(
            sim, self.api, self.keys, self.spot, self.futures, listen_key_validity_s
        )
        self._watchdog: asyncio.Task[None] | None = None

    def register(self, app: web.Application) -> None:
        """Add every trading route and the user-stream websockets to app."""
        self.spot_routes.register(app)
        self.futures_routes.register(app)
        self.streams.register(app)
        for market, path in ((Market.SPOT, "/sapi/v1/account/apiRestrictions"),):
            self.api.add(app, "GET", path, market, 1, self._api_restrictions)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._shutdown)

    def _expire_keys(self, listen_key: str | None) -> int:
        return self.streams.expire(listen_key)

    def _drop_streams(self) -> int:
        return self.streams.drop_all()

    async def _api_restrictions(self, req: Request) -> dict[str, Any]:
        key = req.api_key
        return {
            "ipRestrict": key.ip_restrict, "createTime": key.create_time_ms,
            "enableReading": key.enable_reading,
            "enableSpotAndMarginTrading": key.enable_spot_trading,
            "enableWithdrawals": key.enable_withdrawals,
            "enableInternalTransfer": key.enable_internal_transfer,
            "enableMargin": key.enable_margin, "enableFutures": key.enable_futures,
            "permitsUniversalTransfer": key.enable_internal_transfer,
            "enableVanillaOptions": False, "enableFixApiTrade": False,
            "enableFixReadOnly": False, "enablePortfolioMarginTrading": False,
        }  # fmt: skip

    async def _start(self, app: web.Application) -> None:
        self._watchdog = asyncio.create_task(self._watch(), name="sim-trading-watchdog")

    async def _shutdown(self, app: web.Application) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        await self.streams.close_all()

    async def _watch(self) -> None:
        # listenKey validity and the dead-man switch run on the injected clock
        while True:
            await self.sim.clock.sleep(_WATCHDOG_PERIOD_S)
            self.streams.expire_due()
            self.futures_routes.fire_countdowns()
