"""Drivers of the two execution venues for the contract tests, over one paused loopback simulator.

Both drivers stand on a `SimServer` replaying the same tape, paused right after the same diff, so
the book and the last trade are the same for both. `SimulatedDriver` hands that book (read with
`sim.book_levels`) and that trade to a `SimulatedVenue` built from the exchangeInfo the simulator
serves; `BinanceDriver` assembles the Binance venue as `engine.live_start` does (build_session,
venue and user-stream tasks, start_session, set_listener) against the simulator with trading on.

Each driver exposes the same async surface: `place`, `place_list` and `cancel` return the events
the action produced once the venue has settled; `open_orders`, `order_list_of`, `balances` and
`positions` read the venue's synchronous facade. "Settled" for the Binance venue means it has
caught up with the exchange: every order it was sent shows, in the events it emitted, the status
and executed quantity of the simulator's own record, and its balances/positions equal the
simulator's account. That is a barrier only; the tests take expected values elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from engine.clock import LiveClock
from engine.config import parse_config
from engine.events import TradePrinted
from engine.journal import Journal
from engine.live_start import BinanceSession, build_session, start_session
from engine.model import Market, instrument_from_exchange_info
from engine.orders import (
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
)
from exchange.base import Balance, OpenOrder, VenuePosition
from exchange.binance.auth import BinanceKeys
from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET
from exchange.sim.trading.desk import Desk
from exchange.simulated import SimulatedVenue, SimulatedVenueConfig
from exchange.simulated_account import FuturesAccount

SYMBOL = "BTCUSDT"
PAUSE_AFTER_DIFFS = 30
SETTLE_TIMEOUT_S = 10.0  # hang guard only: a venue that never catches up fails the test
# What the simulator's accounts start with (exchange/sim/trading/simulator.py defaults).
START_BALANCES = {
    Market.SPOT: {"USDT": Decimal(1_000_000), "BTC": Decimal(10), "ETH": Decimal(100)},
    Market.USDM: {"USDT": Decimal(1_000_000)},
}
Levels = list[tuple[Decimal, Decimal]]


@dataclass(frozen=True)
class TapeState:
    """What the market looked like where the replay paused (read from the simulator, once)."""

    market: Market
    entry: dict[str, Any]  # exchangeInfo symbols[] entry served by the simulator
    bids: Levels
    asks: Levels
    last_trade: TradePrinted | None
    now_ms: int

    def best(self) -> tuple[Decimal, Decimal]:
        return self.bids[0][0], self.asks[0][0]


class FrozenBook:
    """A BookView over fixed levels (best first), as floats like the wire's."""

    def __init__(self, bids: Levels, asks: Levels) -> None:
        self._sides = {
            "bid": [(float(p), float(q)) for p, q in bids],
            "ask": [(float(p), float(q)) for p, q in asks],
        }

    def levels(self, side: str, n: int | None = None) -> list[tuple[float, float]]:
        levels = self._sides[side]
        return list(levels if n is None else levels[:n])

    def best_bid(self) -> float:
        return self._sides["bid"][0][0] if self._sides["bid"] else math.nan

    def best_ask(self) -> float:
        return self._sides["ask"][0][0] if self._sides["ask"] else math.nan


@contextlib.asynccontextmanager
async def paused_sim(timeline: Timeline, trading: bool) -> AsyncIterator[SimServer]:
    """Serve timeline on 127.0.0.1, replayed flat out and paused after PAUSE_AFTER_DIFFS diffs."""
    async with SimServer(timeline, speed=0, autostart=False, trading=trading) as sim:
        count = 0
        reached = asyncio.Event()

        def on_diff(symbol: str, final_update_id: int) -> None:
            nonlocal count
            count += 1
            if count == PAUSE_AFTER_DIFFS:
                sim.pause()
                reached.set()

        sim.on_depth_sent(on_diff)
        sim.start()
        await asyncio.wait_for(reached.wait(), SETTLE_TIMEOUT_S)
        yield sim


async def read_tape_state(sim: SimServer, market: Market, http: aiohttp.ClientSession) -> TapeState:
    """Read exchangeInfo over REST and the book, last trade and time at the pause."""
    path = "/api/v3/exchangeInfo" if market is Market.SPOT else "/fapi/v1/exchangeInfo"
    async with http.get(f"{sim.base_http}{path}") as response:
        body = orjson.loads(await response.read())
    entry = next(e for e in body["symbols"] if e["symbol"] == SYMBOL)
    bids, asks = sim.book_levels(SYMBOL, market)
    return TapeState(market, entry, bids, asks, _last_trade(sim, market), sim.server_time_ms())


def _last_trade(sim: SimServer, market: Market) -> TradePrinted | None:
    frames = sim.timeline.frames[: sim.replay.position + 1]
    stream = f"{SYMBOL.lower()}@trade"
    for frame in reversed(frames):
        if frame.market is market and frame.stream == stream:
            t = orjson.loads(frame.data)
            return TradePrinted(SYMBOL, int(t["E"]), int(t["T"]), frame.ts_recv_ns, int(t["t"]),
                                float(t["p"]), float(t["q"]), bool(t["m"]))  # fmt: skip
    return None


class SimulatedDriver:
    """The paper/backtest venue: synchronous, fed the simulator's book and last trade."""

    name = "simulated"

    def __init__(self, state: TapeState) -> None:
        self.market = state.market
        instrument = instrument_from_exchange_info(state.entry, state.market)
        self.venue = SimulatedVenue(
            [instrument], START_BALANCES[state.market], SimulatedVenueConfig(market=state.market)
        )
        self.now_ms = state.now_ms
        self.events: list[OrderEvent] = []
        if state.last_trade is not None:
            self._take(self.venue.on_trade(state.last_trade))
        self._take(self.venue.on_book(SYMBOL, FrozenBook(state.bids, state.asks), self.now_ms))

    def _take(self, events: list[OrderEvent]) -> list[OrderEvent]:
        self.events.extend(events)
        return events

    async def place(self, intent: OrderIntent) -> list[OrderEvent]:
        return self._take(self.venue.submit(intent, self.now_ms))

    async def place_list(self, list_id: str, legs: Sequence[OrderIntent]) -> list[OrderEvent]:
        return self._take(self.venue.submit_list(list_id, legs, self.now_ms))

    async def cancel(self, symbol: str, client_order_id: str) -> list[OrderEvent]:
        return self._take(self.venue.cancel(symbol, client_order_id, self.now_ms))

    def open_orders(self) -> list[OpenOrder]:
        return self.venue.open_orders(SYMBOL)

    def open_order_count(self) -> int:
        return self.venue.open_order_count(SYMBOL)

    def order_list_of(self, client_order_id: str) -> tuple[str, str] | None:
        return self.venue.order_list_of(SYMBOL, client_order_id)

    def balances(self) -> dict[str, Balance]:
        return self.venue.balances()

    def positions(self) -> dict[str, VenuePosition]:
        return self.venue.positions()


def _config(sim: SimServer, market: Market) -> Any:
    endpoint = {"rest": sim.base_http, "ws": sim.base_ws}
    return parse_config({
        "mode": "testnet",
        "market": {"type": market.value, "symbols": [SYMBOL]},
        "endpoints": {"spot": endpoint, "usdm": {**endpoint, "routed": True}},
    })  # fmt: skip


class BinanceDriver:
    """The testnet/live venue over real sockets, assembled as engine.live_start assembles it."""

    name = "binance"

    def __init__(self, sim: SimServer, session: BinanceSession, tasks: list[asyncio.Task]) -> None:
        self.sim = sim
        self.session = session
        self.venue = session.venue
        self.market = session.venue.market
        assert sim.trading is not None
        self.desk: Desk = sim.trading.spot if self.market is Market.SPOT else sim.trading.futures
        self.events: list[OrderEvent] = []
        self.sent: list[str] = []  # client ids handed to the venue, in order
        self._tasks = tasks
        self.venue.set_listener(self.events.extend)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, sim: SimServer, market: Market, http: aiohttp.ClientSession, journal_path: Path
    ) -> AsyncIterator[BinanceDriver]:
        """Build, start (tasks, start-up reconciliation) and finally stop a Binance venue."""
        config = _config(sim, market)
        clock = LiveClock()
        journal = Journal.open(journal_path)
        keys = BinanceKeys.hmac(TEST_API_KEY, TEST_API_SECRET)
        session = build_session(config, clock, http, journal, keys)
        tasks = [asyncio.create_task(session.venue.run(), name="contract-venue"),
                 asyncio.create_task(session.stream.run(), name="contract-user-stream")]  # fmt: skip
        try:
            await asyncio.wait_for(start_session(session, config, journal, clock), SETTLE_TIMEOUT_S)
            driver = cls(sim, session, tasks)
            await driver.settle()
            yield driver
            driver.raise_if_crashed()
        finally:
            await session.stream.close()
            await session.venue.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            journal.close()

    def raise_if_crashed(self) -> None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError(f"{task.get_name()} died") from task.exception()

    async def _after(self, mark: int) -> list[OrderEvent]:
        await self.settle()
        return self.events[mark:]

    async def place(self, intent: OrderIntent) -> list[OrderEvent]:
        mark = len(self.events)
        self.sent.append(intent.client_order_id)
        self.venue.submit(intent, self.venue.now_ms)
        return await self._after(mark)

    async def place_list(self, list_id: str, legs: Sequence[OrderIntent]) -> list[OrderEvent]:
        mark = len(self.events)
        self.sent.extend(leg.client_order_id for leg in legs)
        self.venue.submit_list(list_id, legs, self.venue.now_ms)
        return await self._after(mark)

    async def cancel(self, symbol: str, client_order_id: str) -> list[OrderEvent]:
        mark = len(self.events)
        self.venue.cancel(symbol, client_order_id, self.venue.now_ms)
        return await self._after(mark)

    def open_orders(self) -> list[OpenOrder]:
        return self.venue.open_orders(SYMBOL)

    def open_order_count(self) -> int:
        return self.venue.open_order_count(SYMBOL)

    def order_list_of(self, client_order_id: str) -> tuple[str, str] | None:
        return self.venue.order_list_of(SYMBOL, client_order_id)

    def balances(self) -> dict[str, Balance]:
        return self.venue.balances()

    def positions(self) -> dict[str, VenuePosition]:
        return self.venue.positions()

    # -- the barrier ---------------------------------------------------------------------------
    async def settle(self) -> None:
        """Wait until every command was answered and the venue's view equals the exchange's."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_TIMEOUT_S
        assert await self.venue.drain(SETTLE_TIMEOUT_S), "commands still queued"
        while True:
            self.raise_if_crashed()
            lag = self.lag()
            if not lag and self.venue.idle:
                return
            if loop.time() > deadline:
                raise AssertionError(f"the Binance venue never caught up with the exchange: {lag}")
            await asyncio.sleep(0.01)

    def lag(self) -> list[str]:
        """Return where the venue's view differs from the simulator's records (empty: settled)."""
        lag = []
        for cid in dict.fromkeys(self.sent):
            want, got = self._exchange_state(cid), _event_state(self.events, cid)
            if want != got:
                lag.append(f"{cid}: exchange {want}, venue events {got}")
        if self.market is Market.SPOT:
            ours = {a: b for a, b in self.venue.balances().items() if b.total}
            theirs = {a: b for a, b in self.desk.venue.balances().items() if b.total}
            if _wire(ours) != _wire(theirs):
                lag.append(f"balances: exchange {_wire(theirs)}, venue {_wire(ours)}")
        else:
            ours_p = {s: (p.qty, p.entry_price) for s, p in self.venue.positions().items()}
            theirs_p = {s: (p.qty, p.entry_price) for s, p in self.desk.venue.positions().items()
                        if p.qty}  # fmt: skip
            if ours_p != theirs_p:
                lag.append(f"positions: exchange {theirs_p}, venue {ours_p}")
            account = self.desk.venue.account
            assert isinstance(account, FuturesAccount)
            wallet = account.wallet
            balance = self.venue.balances().get("USDT")
            if balance is None or balance.total != wallet:
                lag.append(f"wallet: exchange {wallet}, venue {balance}")
        return lag

    def _exchange_state(self, cid: str) -> tuple[str, Decimal]:
        records = [o for o in self.desk.orders.values() if o.client_order_id == cid]
        if records:
            record = max(records, key=lambda o: o.order_id)
            return record.status, record.executed_qty
        algos = [a for a in self.desk.algos.values() if a.client_algo_id == cid]
        if algos:
            return max(algos, key=lambda a: a.algo_id).status, Decimal(0)
        return "REJECTED", Decimal(0)  # the exchange keeps no record of a rejected order


def _wire(balances: dict[str, Balance]) -> dict[str, tuple[str, str]]:
    # spot user events and /account write 8 decimals
    return {a: (f"{b.free:.8f}", f"{b.locked:.8f}") for a, b in sorted(balances.items())}


def _event_state(events: list[OrderEvent], cid: str) -> tuple[str, Decimal] | None:
    """Fold one order's events into (status, executed quantity) as Binance names the status."""
    status: str | None = None
    filled = Decimal(0)
    for event in events:
        if getattr(event, "client_order_id", None) != cid:
            continue
        if isinstance(event, OrderRejected):
            status = "REJECTED"
        elif isinstance(event, OrderAccepted):
            status = status or "NEW"
        elif isinstance(event, OrderFilled):
            filled += event.quantity
            status = "FILLED" if event.order_complete else "PARTIALLY_FILLED"
        elif isinstance(event, OrderCanceled):
            status = "CANCELED"
        elif isinstance(event, OrderExpired):
            status = "EXPIRED"
    return None if status is None else (status, filled)
