"""Modes testnet and live: keys, the Binance venue and its start-up, then protection of what we hold.

Start-up is reconciliation (API reference §11.2), in this order, before the strategy sees an
event: server time; the key's permissions (live refuses a key that may withdraw); USDⓈ-M one-way
mode, leverage and margin type; the user stream, live; every order the journal left working
queried and folded (missed fills once, by trade id); open orders matched to the journal; the
account read last. The portfolio is the venue's balances plus our positions rebuilt from the
journal's fills; it is then compared with the venue's positions (a mismatch is logged and
alerted). Finally every position is judged: protected by our working stops (the plan is rebuilt
and followed), or given a fresh stop — and while any stays unprotected the engine is REDUCING.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal

import aiohttp
import structlog

from engine.clock import Clock
from engine.config import Config, Secrets
from engine.journal import Journal
from engine.model import Market
from engine.notices import MismatchNotice
from engine.trading import TradingLoop
from exchange.binance.auth import BinanceKeys
from exchange.binance.order_manager import OrderManager, OrderManagerConfig
from exchange.binance.rest import BinanceRest
from exchange.binance.startup import (
    StartupRefused,
    StartupReport,
    WithdrawalsEnabled,
    configure_futures,
    patiently,
    read_account,
    reconcile_orders,
    refuse_withdrawal_keys,
)
from exchange.binance.urls import BinanceEndpoints
from exchange.binance.userstream import FuturesUserStream, SpotUserStream, UserStreamItem
from exchange.binance.venue import BinanceVenue, BinanceVenueConfig
from exchange.binance.wire import OrderWire
from exchange.errors import Rejected
from risk.adopt import fresh_stop_distance, judge_position
from risk.gate import GateUpdate
from risk.state import ProtectionObserved

log = structlog.get_logger("engine.live")

BINANCE_MODES = frozenset({"testnet", "live"})
SPOT_WS_API = "wss://ws-api.binance.com:443/ws-api/v3"
SPOT_TESTNET_WS_API = "wss://ws-api.testnet.binance.vision/ws-api/v3"


class KeysMissing(ValueError):
    """Modes testnet and live need API keys in the environment; the message says which."""


def binance_keys(secrets: Secrets) -> BinanceKeys:
    """Return the signing keys from the environment: Ed25519 when a private key is given, else HMAC."""
    if secrets.binance_api_key is None:
        raise KeysMissing("BINANCE_API_KEY is not set (environment or .env)")
    if secrets.binance_private_key_pem is not None:
        pem = secrets.binance_private_key_pem.get_secret_value().encode("ascii")
        return BinanceKeys.ed25519(secrets.binance_api_key, pem)
    if secrets.binance_api_secret is None:
        raise KeysMissing("set BINANCE_API_SECRET (HMAC) or BINANCE_PRIVATE_KEY_FILE (Ed25519)")
    return BinanceKeys.hmac(secrets.binance_api_key, secrets.binance_api_secret)


def spot_ws_api_url(config: Config) -> str:
    """Return the spot WebSocket API URL: configured, Binance's own host, or `<ws>/ws-api/v3`."""
    spot = config.endpoints.spot
    if spot.ws_api:
        return spot.ws_api
    if "stream.binance.com" in spot.ws:
        return SPOT_WS_API
    if "testnet.binance.vision" in spot.ws:
        return SPOT_TESTNET_WS_API
    return f"{spot.ws}/ws-api/v3"


@dataclass
class BinanceSession:
    """The Binance side of a trading App: REST, order manager, venue and user stream."""

    rest: BinanceRest
    spot_rest: BinanceRest  # apiRestrictions lives on the spot host for every key
    manager: OrderManager
    venue: BinanceVenue
    stream: FuturesUserStream | SpotUserStream


def build_session(
    config: Config, clock: Clock, http: aiohttp.ClientSession, journal: Journal, keys: BinanceKeys
) -> BinanceSession:
    """Assemble the Binance venue for the configured market (nothing is sent yet)."""
    market = config.market.type
    execution = config.execution
    ep = config.endpoints.for_market(market)
    endpoints = BinanceEndpoints(ep.rest, ep.ws, ep.routed)
    wire = OrderWire(ep.rest, clock, size=execution.order_connections) if execution.order_connections else None
    rest = BinanceRest(market, endpoints, clock, http, keys, execution.recv_window_ms, wire=wire)
    # apiRestrictions is on Binance's spot host for every key; testnets have no /sapi at all, so
    # a testnet asks its own host (a loopback simulator answers, a real testnet 404s: a warning)
    spot = config.endpoints.spot if config.mode == "live" else ep
    spot_rest = rest if market is Market.SPOT else BinanceRest(
        Market.SPOT, BinanceEndpoints(spot.rest, spot.ws), clock, http, keys, execution.recv_window_ms
    )
    queue: asyncio.Queue[UserStreamItem] = asyncio.Queue(maxsize=100_000)
    venue_holder: list[BinanceVenue] = []
    manager = OrderManager(
        rest, journal, clock, lambda event: venue_holder[0].emit(event),
        OrderManagerConfig(
            recv_window_ms=execution.recv_window_ms,
            stream_wait_s=execution.user_stream_wait_s,
            max_entry_age_s=execution.max_entry_age_s,
        ),
    )
    venue = BinanceVenue(
        market, config.market.symbols, rest, manager, clock, queue,
        BinanceVenueConfig(countdown_ms=int(execution.countdown_cancel_s * 1000),
                           reconcile_interval_s=execution.reconcile_interval_s),
    )
    venue_holder.append(venue)
    stream: FuturesUserStream | SpotUserStream
    if market is Market.USDM:
        stream = FuturesUserStream(rest, endpoints, queue, clock, http)
    else:
        stream = SpotUserStream(spot_ws_api_url(config), keys, rest.timestamp_ms, queue, clock, http,
                                recv_window_ms=execution.recv_window_ms, sync_time=rest.sync_time)  # fmt: skip
    return BinanceSession(rest, spot_rest, manager, venue, stream)


async def start_session(
    session: BinanceSession, config: Config, journal: Journal, clock: Clock
) -> StartupReport:
    """Check the key, set the account up, wait for the user stream, reconcile (venue tasks running)."""
    rest = session.rest
    await patiently("server time", rest.sync_time, clock)
    try:
        await patiently("key permissions", lambda: refuse_withdrawal_keys(session.spot_rest), clock, 30.0)
    except WithdrawalsEnabled:
        raise
    except (Rejected, StartupRefused) as exc:
        if config.mode == "live":
            raise StartupRefused(f"the key's permissions could not be read: {exc}") from exc
        log.warning("permissions_unchecked", reason=str(exc))  # testnets have no /sapi
    if config.market.type is Market.USDM:
        await patiently("futures account set-up", lambda: configure_futures(
            rest, config.market.symbols, int(config.risk.leverage), config.execution.margin_type), clock)
    deadline_ns = clock.monotonic_ns() + int(config.execution.startup_stream_timeout_s * 1e9)
    while not session.venue.stream_live:
        if clock.monotonic_ns() >= deadline_ns:
            raise StartupRefused("the user data stream did not come up: orders could not be followed")
        await clock.sleep(0.02)
    report = await reconcile_orders(session.manager, journal, rest, config.market.symbols,
                                    rest.timestamp_ms())  # fmt: skip
    balances, positions = await patiently("account", lambda: read_account(rest), clock)
    session.venue.set_account(balances, positions)
    return report


async def current_prices(rest: BinanceRest, symbols: list[str] | tuple[str, ...]) -> dict[str, Decimal]:
    """Return each symbol's mid price from a small depth snapshot (before any market event).

    Start-up needs prices before the feed runs: a fresh stop is placed from the current price, and
    equity values the account's base assets from the first second.
    """
    path = "/api/v3/depth" if rest.market is Market.SPOT else "/fapi/v1/depth"
    prices = {}
    for symbol in symbols:
        body = await rest.get(path, {"symbol": symbol, "limit": 5}, weight=5)
        bids, asks = body.get("bids") or [], body.get("asks") or []
        if bids and asks:
            prices[symbol] = (Decimal(str(bids[0][0])) + Decimal(str(asks[0][0]))) / 2
    return prices


def protect_holdings(
    loop: TradingLoop, venue: BinanceVenue, report: StartupReport, stop_pct: float, ts_ms: int
) -> list[str]:
    """Compare positions with the venue, adopt or place protection; return unprotected symbols."""
    market = venue.market
    for text in report.mismatches:
        _mismatch(loop, ts_ms, text.split(" ", 1)[0], text)
    held = {s: p.qty for s, p in loop.portfolio.open_positions().items()}
    if market is Market.USDM:
        venue_held = {s: p.qty for s, p in venue.positions().items()}
        for symbol in sorted(set(held) | set(venue_held)):
            ours, theirs = held.get(symbol, Decimal(0)), venue_held.get(symbol, Decimal(0))
            if ours != theirs:
                _mismatch(loop, ts_ms, symbol, f"position: journal {ours}, venue {theirs}")
        held = venue_held  # the venue's position is what must be protected
    else:
        balances = venue.balances()
        for symbol, qty in list(held.items()):
            base = loop.instruments[symbol].base_asset
            have = balances[base].total if base in balances else Decimal(0)
            if qty > 0 and have < qty:
                _mismatch(loop, ts_ms, symbol, f"position {qty} {base}, venue balance {have}")
                held[symbol] = have
    working = [o.intent for o in venue.open_orders() if o.intent is not None]
    commands: list = []
    problems: list[str] = []
    unprotected: list[str] = []
    for symbol, qty in sorted(held.items()):
        if qty == 0:
            continue
        avg = _avg_price(loop, venue, symbol)
        verdict = judge_position(symbol, qty, avg, working, market)
        if verdict.plan is not None:  # followed even when partial: an exit must cancel these stops
            loop.gate.adopt_protection(verdict.plan)
            log.info("protection_adopted", symbol=symbol, quantity=str(verdict.quantity),
                     covered=str(verdict.covered), stop=str(verdict.plan.stop_price))  # fmt: skip
        if verdict.protected:
            continue
        price = loop.last_price.get(symbol) or venue.marks().get(symbol) or avg
        if not price or verdict.covered > 0:
            # partly covered (a stop we did not plan, or a partial fill): a person decides
            unprotected.append(symbol)
            continue
        update = loop.gate.protect_position(symbol, verdict.side, verdict.quantity, price,
                                            fresh_stop_distance(price, Decimal(str(stop_pct))), ts_ms)  # fmt: skip
        log.warning("protection_placed_at_start", symbol=symbol, quantity=str(verdict.quantity))
        commands += update.commands
        problems += update.problems
        if update.problems:
            unprotected.append(symbol)
    for symbol in unprotected:
        problems.append(f"{symbol}: position without a protective stop at start-up")
    loop.take_over(GateUpdate(tuple(commands), problems=tuple(problems)), ts_ms,
                   ProtectionObserved(ts_ms, tuple(unprotected)))  # fmt: skip
    return unprotected


def _avg_price(loop: TradingLoop, venue: BinanceVenue, symbol: str) -> Decimal:
    position = venue.positions().get(symbol)
    if position is not None and position.entry_price:
        return position.entry_price
    held = loop.portfolio.positions.get(symbol)
    return held.avg_price if held is not None else Decimal(0)


def _mismatch(loop: TradingLoop, ts_ms: int, symbol: str, detail: str) -> None:
    log.error("reconcile_mismatch", symbol=symbol, detail=detail)
    for listener in loop.notice_listeners:
        listener(MismatchNotice(ts_ms, symbol, detail))
