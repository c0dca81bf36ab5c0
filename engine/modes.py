"""The only place that branches on mode: which clock, which market data, which execution venue.

| mode     | clock       | market data                  | venue                        |
|----------|-------------|------------------------------|------------------------------|
| paper    | LiveClock   | Binance streams (MarketFeed) | SimulatedVenue (local fills) |
| backtest | ReplayClock | a recorded tape (iter_replay)| SimulatedVenue               |
| testnet  | LiveClock   | Binance streams (MarketFeed) | BinanceVenue (testnet keys)  |
| live     | LiveClock   | Binance streams (MarketFeed) | BinanceVenue (`--live` only) |

Everything downstream — pipeline, features, models, strategy, risk gate, portfolio, journal — is
the same objects in both; `build_trading` assembles them from exchangeInfo entries (fetched from
the venue in paper mode, reconstructed from the tape in a backtest, as the loopback simulator
serves them). Testnet and live start through `engine.live_start` (keys, reconciliation,
protection) and hand `build_trading` their BinanceVenue and the portfolio rebuilt from the venue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from engine.clock import Clock, LiveClock, ReplayClock
from engine.config import Config
from engine.events import MarkPriceUpdated, TradePrinted
from engine.journal import Journal
from engine.livefeatures import LiveFeatures
from engine.livemodels import LiveModels
from engine.marketdata import MarketDataPipeline
from engine.model import Instrument, Market, instrument_from_exchange_info
from engine.trading import TradingLoop
from engine.orders import OrderFilled
from exchange.binance.venue import BinanceVenue
from exchange.simulated import SimulatedVenue
from exchange.simulated_orders import SimulatedVenueConfig
from portfolio.portfolio import Portfolio
from risk.filters import parse_exchange_filters
from risk.gate import RiskGate
from risk.ids import parse_client_order_id
from strategy.signals import FeatureVector, build_strategy

TRADING_MODES = frozenset({"paper", "backtest", "testnet", "live"})
BINANCE_MODES = frozenset({"testnet", "live"})
PAPER_QUOTE_BALANCE = Decimal(10_000)  # starting paper/backtest balance of the quote asset


def trades(config: Config) -> bool:
    """True when the mode places orders (simulated or on Binance)."""
    return config.mode in TRADING_MODES


def on_binance(config: Config) -> bool:
    """True when orders go to Binance (testnet or live) rather than the simulated venue."""
    return config.mode in BINANCE_MODES


def clock_for(config: Config) -> Clock:
    """Return the clock of the mode: wall clock live, data-driven in a backtest."""
    return ReplayClock() if config.mode == "backtest" else LiveClock()


async def fetch_exchange_info(config: Config, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
    """Fetch the configured symbols' exchangeInfo entries from the venue's REST API."""
    from engine.app import endpoints_of  # the composition root's own endpoint choice
    from exchange.binance.urls import exchange_info_url

    url = exchange_info_url(endpoints_of(config), config.market.type, config.market.symbols)
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        body = await resp.json(content_type=None)
    wanted = set(config.market.symbols)
    return [e for e in body.get("symbols", []) if e.get("symbol") in wanted]


def exchange_info_from_tape(tapes: Iterable[Path], symbols: Iterable[str], market: Market) -> list[dict[str, Any]]:
    """Return the exchangeInfo entries the loopback simulator would serve for these tapes."""
    from exchange.sim.exchange_info import ExchangeInfoCatalog
    from exchange.sim.timeline import load_timeline

    catalog = ExchangeInfoCatalog(load_timeline(list(tapes)))
    entries = [catalog.entry(market, s) for s in symbols]
    return [e for e in entries if e is not None]


class TradingSink:
    """The frame sink of a trading App: the pipeline first, then the venue sees the event."""

    def __init__(self, pipeline: MarketDataPipeline, loop: TradingLoop) -> None:
        self.pipeline = pipeline
        self.loop = loop

    def on_frame(self, payload: bytes, ts_recv_ns: int) -> None:
        # only what the pipeline accepted: a frame it refused (an implausible time) moves no clock
        event = self.pipeline.on_frame(payload, ts_recv_ns)
        if type(event) is TradePrinted:
            self.loop.on_trade(event)  # type: ignore[arg-type]
        elif type(event) is MarkPriceUpdated:
            self.loop.on_mark_price(event)  # type: ignore[arg-type]
        self.loop.flush()

    def on_snapshot(self, symbol: str, payload: bytes, ts_recv_ns: int) -> None:
        self.pipeline.on_snapshot(symbol, payload, ts_recv_ns)
        self.loop.flush()

    def wants_loop(self) -> bool:
        """True once after the venue queued a command its own task must send (Binance)."""
        take = getattr(self.loop.venue, "take_queued_signal", None)
        return bool(take and take())

    def on_connection_lost(self, symbols: Iterable[str], reason: str) -> None:
        self.pipeline.on_connection_lost(symbols, reason)


def next_sequence(journal: Journal | None, prefix: str) -> int:
    """Return the first client-order-id sequence number the journal has not used (1 if none).

    A restart resumes after every id journaled under this prefix, so no id is ever repeated.
    """
    if journal is None:
        return 1
    used = (parse_client_order_id(r.intent.client_order_id) for r in journal.intents())
    return 1 + max((p.seq for p in used if p is not None and p.prefix == prefix), default=0)


def next_trade_id(journal: Journal | None) -> int:
    """Return a simulated-venue trade id above every fill the journal holds (1 if none)."""
    if journal is None:
        return 1
    return 1 + max((f.trade_id for f in journal.fills()), default=0)


def build_trading(
    config: Config,
    entries: Iterable[Mapping[str, Any]],
    pipeline: MarketDataPipeline,
    features: LiveFeatures,
    models: LiveModels | None,
    journal: Journal | None,
    balances: Mapping[str, Decimal] | None = None,
    venue: BinanceVenue | None = None,
    restore_fills: Iterable[OrderFilled] = (),
) -> TradingLoop:
    """Assemble strategy, risk gate, venue and portfolio over the shared pipeline.

    Without a venue the simulated one is built; with one (Binance), `balances` are the venue's
    and `restore_fills` the journal's fills that rebuild our positions.
    """
    market = config.market.type
    entries = [dict(e) for e in entries]
    instruments: dict[str, Instrument] = {
        e["symbol"]: instrument_from_exchange_info(dict(e), market) for e in entries
    }
    filters = {e["symbol"]: parse_exchange_filters(e, market) for e in entries}
    missing = sorted(set(config.market.symbols) - set(instruments))
    if missing:
        raise ValueError(f"no exchangeInfo for {', '.join(missing)}: cannot trade them")
    if balances is None:
        quote = (
            "USDT" if market is Market.USDM
            else next(iter(instruments.values())).quote_asset or "USDT"
        )
        balances = {quote: PAPER_QUOTE_BALANCE}
    if venue is None:
        venue = SimulatedVenue(
            instruments.values(), balances,
            SimulatedVenueConfig(market=market, leverage=int(config.risk.leverage)),
            next_trade_id=next_trade_id(journal),  # a restarted paper session never reuses a trade id
        )
    portfolio = Portfolio(instruments.values(), balances)
    portfolio.restore_positions(restore_fills)
    strategy = build_strategy(config.strategy, market, model_available=bool(models and models.available))

    def vectors(symbol: str) -> dict[str, FeatureVector]:
        out = {}
        for label, plan in features.plans.items():
            vector = features.latest(symbol, label)
            if vector is not None:
                out[label] = FeatureVector(plan.columns, vector, 0)
        return out

    def model_warm(symbol: str) -> bool:
        if models is None or symbol not in models.set_label:
            return True
        return features.symbols[symbol].by_label[models.set_label[symbol]].warm

    return TradingLoop(
        strategy=strategy,
        gate=RiskGate(
            config.risk, filters, next_seq=next_sequence(journal, config.risk.client_id_prefix)
        ),
        venue=venue,
        portfolio=portfolio,
        instruments=instruments,
        market_data=pipeline.symbols,
        journal=journal,
        feature_vectors=vectors,
        model_warm=model_warm,
        blocked=dict(models.refused) if models else {},
        bundle_id=models.bundle_id if models else None,
        feature_set_hash=models.feature_set_hash if models else None,
    )
