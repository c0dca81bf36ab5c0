"""The trading state, fed by the trading loop: stale data, error storms, drawdown and daily loss
reach ACTIVE / REDUCING / HALTED through the loop; a halt cancels entries and flattens; "today"
follows the UTC day of exchange time; client order ids resume from the journal after a restart.

The loop runs with the real risk gate, simulated venue and portfolio on hand-made books and
trades (spot, tick 0.01, step 0.001, 10 bps fees); the strategy is a fake that returns whatever
the test queued. Every expected amount is worked out by hand in the comments.
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

from test_trading_oco import backtest_config, scripted

from engine.backtest import run_backtest
from engine.fold import CANDLE_COLUMNS, ROW_COLUMNS
from engine.journal import Journal
from engine.model import Market, instrument_from_exchange_info
from engine.orders import OrderIntent, OrderRole
from engine.ring import ColumnRing
from engine.trading import TradingLoop
from exchange.book import OrderBook
from exchange.simulated import SimulatedVenue, SimulatedVenueConfig
from portfolio.portfolio import Portfolio
from risk.config import RiskConfig
from risk.filters import parse_exchange_filters
from risk.gate import RiskGate
from risk.ids import parse_client_order_id
from risk.state import DAY_MS, TradingState, Trigger
from strategy.signals import (
    EnterRequest,
    ExitReason,
    ExitRequest,
    PositionSide,
    ScoreUpdated,
    StrategyContext,
)

DAY0 = 19_900 * DAY_MS  # 2024-06-27 00:00 UTC
T0 = DAY0 + 23 * 3_600_000  # 23:00 UTC


def entry_info(symbol: str) -> dict:
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": symbol.removesuffix("USDT"),
        "quoteAsset": "USDT",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000",
             "tickSize": "0.01"},
            {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "9000", "stepSize": "0.001"},
            {"filterType": "NOTIONAL", "minNotional": "5", "applyMinToMarket": True,
             "maxNotional": "9000000", "applyMaxToMarket": False},
        ],
    }  # fmt: skip


class Feed:
    """Fake market data of one symbol: what the trading loop reads (book, rings, validity)."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.book = OrderBook(symbol, "0.01")  # type: ignore[arg-type]
        self.rows = ColumnRing(ROW_COLUMNS, 16)
        self.candles = ColumnRing(CANDLE_COLUMNS, 16)
        self.book_valid = True
        self.last_depth_event_ms: int | None = None


class Scripted:
    """Strategy fake: returns the requests the test queued, on the next event it sees."""

    name = "scripted"

    def __init__(self) -> None:
        self.queue: list = []

    def on_event(self, event: object, ctx: StrategyContext) -> list:
        out, self.queue = self.queue, []
        return out


class Harness:
    def __init__(self, symbols: tuple[str, ...] = ("BTCUSDT",), validator=None, **risk) -> None:  # type: ignore[no-untyped-def]
        entries = [entry_info(s) for s in symbols]
        instruments = {e["symbol"]: instrument_from_exchange_info(e, Market.SPOT) for e in entries}
        filters = {e["symbol"]: parse_exchange_filters(e, Market.SPOT) for e in entries}
        balances = {"USDT": D(10_000)}
        self.venue = SimulatedVenue(
            instruments.values(), balances, SimulatedVenueConfig(market=Market.SPOT), validator
        )
        self.feeds = {s: Feed(s) for s in symbols}
        self.strategy = Scripted()
        self.loop = TradingLoop(
            strategy=self.strategy,  # type: ignore[arg-type]
            gate=RiskGate(RiskConfig(**risk), filters),
            venue=self.venue,
            portfolio=Portfolio(instruments.values(), balances),
            instruments=instruments,
            market_data=self.feeds,  # type: ignore[arg-type]
        )

    def market(self, ts: int, price: str, symbol: str = "BTCUSDT") -> None:
        """A fresh valid book (bid = price, ask = price + 0.01, deep), then a trade at price."""
        feed = self.feeds[symbol]
        bid = float(D(price))
        feed.book.load_snapshot([(bid, 1000.0)], [(round(bid + 0.01, 2), 1000.0)])
        feed.last_depth_event_ms = ts
        self.loop.on_book(feed)  # type: ignore[arg-type]
        self.trade(ts, price, symbol)

    def trade(self, ts: int, price: str, symbol: str = "BTCUSDT") -> None:
        from engine.events import TradePrinted

        self.loop.on_trade(TradePrinted(symbol, ts, ts, 0, ts, float(D(price)), 0.01, True))

    def ask(self, ts: int, *requests: object) -> None:
        """Hand requests to the strategy fake and wake it with a score (decision at ts + 1 s)."""
        self.strategy.queue.extend(requests)
        self.loop.on_score(ScoreUpdated("BTCUSDT", 0.9, 0.5, (), ts))

    def enter(self, ts: int, price: str, stop: str, symbol: str = "BTCUSDT") -> None:
        request = EnterRequest(
            symbol=symbol, side=PositionSide.LONG, strength=1.0, reference_price=D(price),
            equity_fraction=1.0, stop_distance=D(stop), take_profits=(), trailing_stop_pct=None,
            reason="test", confidence=0.9, threshold=0.5, contributions=(), ts_ms=ts,
        )  # fmt: skip
        self.ask(ts, request)

    def states(self) -> list[tuple[str, str, str, int]]:
        return [
            (t.from_state.value, t.to_state.value, t.trigger.value, t.ts_ms)
            for t in self.loop.stats.transitions
        ]

    def position(self, symbol: str = "BTCUSDT") -> D:
        pos = self.loop.portfolio.positions.get(symbol)
        return pos.qty if pos else D(0)


def test_no_valid_data_for_stale_data_s_reduces_and_fresh_data_clears_it() -> None:
    h = Harness()
    h.market(T0, "100")
    for second in range(1, 31):  # trades go on, but no valid book: the last data is T0
        h.trade(T0 + second * 1000, "100")
    assert h.loop.trading_state is TradingState.ACTIVE  # 30 s is not more than stale_data_s
    h.trade(T0 + 31_000, "100")
    assert h.states() == [("ACTIVE", "REDUCING", "STALE_DATA", T0 + 31_000)]
    h.enter(T0 + 31_500, "100", "5")
    assert h.loop.stats.denials == {"TRADING_REDUCING": 1} and h.position() == 0
    h.market(T0 + 32_000, "100")  # a valid book again
    assert h.states()[-1] == ("REDUCING", "ACTIVE", "CLEARED", T0 + 32_000)


def test_quiet_feed_goes_stale_on_ticks_alone() -> None:
    h = Harness()
    h.market(T0, "100")
    h.loop.tick(T0 + 30_000)
    assert h.loop.trading_state is TradingState.ACTIVE
    h.loop.tick(T0 + 30_001)  # the same second: no new feed of the state
    h.loop.tick(T0 + 31_000)
    assert h.states() == [("ACTIVE", "REDUCING", "STALE_DATA", T0 + 31_000)]


def test_an_error_storm_of_venue_rejects_halts_and_cancels_working_entries() -> None:
    def refuse_eth(intent: OrderIntent, reference: object) -> tuple[str, str] | None:
        if intent.symbol == "ETHUSDT":  # the venue refuses every ETH order (say, a frozen asset)
            return "INSUFFICIENT_BALANCE", "Account has insufficient balance for requested action."
        return None

    h = Harness(("BTCUSDT", "ETHUSDT"), validator=refuse_eth, entry_order_type="LIMIT")
    h.market(T0, "100")
    h.market(T0, "60", "ETHUSDT")
    h.enter(T0, "99", "5")  # a BUY LIMIT at 99.00 under the 100.01 ask: it rests
    (resting,) = h.venue.open_orders()
    assert resting.intent is not None and resting.intent.role is OrderRole.ENTRY
    for n in range(1, 10):  # nine rejects within a minute: still trading
        h.market(T0 + n * 1000, "60", "ETHUSDT")
        h.enter(T0 + n * 1000, "60", "3", "ETHUSDT")
    assert h.loop.stats.rejected == 9 and h.loop.trading_state is TradingState.ACTIVE
    h.enter(T0 + 10_000, "60", "3", "ETHUSDT")  # the tenth (error_storm_count 10)
    assert h.states() == [("ACTIVE", "HALTED", "ERROR_STORM", T0 + 11_000)]
    assert h.venue.open_orders() == []  # the working BTC entry was cancelled
    h.enter(T0 + 12_000, "100", "5")
    assert h.loop.stats.denials.get("TRADING_HALTED") == 1


def test_drawdown_reduces_then_the_emergency_halt_flattens_the_position() -> None:
    h = Harness(
        risk_pct=D(100), max_position_pct=D(90), flatten_on_halt=True, daily_loss_limit_pct=D(50)
    )
    h.market(T0, "100")
    h.enter(T0, "100", "50")
    # size min(10000 x 100 % / 50, 10000 x 90 % / 100) = 90 units, bought at the 100.01 ask;
    # two OCO lists of 45 (stop 50.01, targets 150.01 and 200.01) lock the 90 once each half
    assert h.position() == 90 and len(h.venue.open_orders()) == 4
    assert h.venue.balances()["BTC"].locked == 90
    # cash 10000 - 9000.90 - 9.0009 fee = 990.0991; the peak is the 10000 seen before entering
    h.market(T0 + 2000, "88")
    h.trade(T0 + 3000, "88")  # equity 990.0991 + 90 x 88 = 8910.0991: down 10.90 %
    assert h.states() == [("ACTIVE", "REDUCING", "DRAWDOWN", T0 + 3000)]
    h.market(T0 + 4000, "77")
    h.trade(T0 + 5000, "77")  # 990.0991 + 90 x 77 = 7920.0991: down 20.80 %
    assert h.states()[-1] == ("REDUCING", "HALTED", "EMERGENCY_DRAWDOWN", T0 + 5000)
    assert h.position() == 0 and h.venue.open_orders() == []
    assert h.venue.unknown_cancels == 0  # one cancel per OCO list, none for its other leg
    flatten = [o for o in h.loop.portfolio.closed_trades]
    assert [(t.quantity, t.exit_price) for t in flatten] == [(D(90), D(77))]
    # sold 90 at the 77.00 bid: cash 990.0991 + 6930 - 6.93 fee
    assert h.venue.balances()["USDT"].free == D("7913.1691")


def test_daily_loss_reduces_until_the_next_utc_day_and_today_starts_over() -> None:
    start = DAY0 + DAY_MS - 60_000  # 23:59:00
    h = Harness(risk_pct=D(100), max_position_pct=D(90))
    h.market(start, "100")
    h.enter(start, "100", "50")  # 90 units at 100.01, fee 9.0009
    h.market(start + 2000, "95")
    h.ask(start + 2000, ExitRequest("BTCUSDT", ExitReason.MAX_HOLD, start + 3000))
    assert h.position() == 0
    # realised (95.00 - 100.01) x 90 = -450.90, fees 9.0009 + 8.55: -468.4509 today
    assert h.loop.realized_pnl_today == D("-468.4509")
    h.trade(start + 4000, "95")  # equity 9531.5491: 4.68 % under the day's 10000
    assert h.states() == [("ACTIVE", "REDUCING", "DAILY_LOSS", start + 4000)]
    h.enter(start + 5000, "95", "10")
    assert h.loop.stats.denials == {"TRADING_REDUCING": 1}
    h.market(DAY0 + DAY_MS + 1000, "95")  # 00:00:01 of the next UTC day
    assert h.states()[-1] == ("REDUCING", "ACTIVE", "CLEARED", DAY0 + DAY_MS + 1000)
    assert h.loop.realized_pnl_today == 0
    assert h.loop.account_view().day_start_equity == D("9531.5491")
    h.enter(DAY0 + DAY_MS + 1000, "95", "10")
    assert h.position() > 0


def test_a_manual_halt_cancels_entries_but_keeps_protection_until_resumed() -> None:
    h = Harness(("BTCUSDT", "ETHUSDT"), entry_order_type="LIMIT")
    h.market(T0, "100")
    h.market(T0, "60", "ETHUSDT")
    h.enter(T0, "100.01", "5")  # a LIMIT at the ask: fills, then its OCO lists rest
    h.enter(T0, "50", "3", "ETHUSDT")  # rests under the market
    assert h.position() > 0
    before = {o.client_order_id for o in h.venue.open_orders()}
    h.loop.halt("operator", T0 + 2000)
    after = {o.client_order_id for o in h.venue.open_orders()}
    assert before - after == {"tl-ETHUSDT-2-en"}  # only the entry went
    assert {parse_client_order_id(c).role for c in after} == {  # type: ignore[union-attr]
        OrderRole.STOP_LOSS,
        OrderRole.TAKE_PROFIT,
    }
    assert h.states() == [("ACTIVE", "HALTED", "MANUAL_HALT", T0 + 2000)]
    h.loop.resume("operator", T0 + 3000)
    assert h.states()[-1] == ("HALTED", "ACTIVE", "MANUAL_RESUME", T0 + 3000)
    assert Trigger.MANUAL_RESUME.value in {t.trigger.value for t in h.loop.stats.transitions}


def test_a_restarted_session_never_repeats_a_client_order_id(
    tapes: dict[str, Path], tmp_path: Path
) -> None:
    journal_path = tmp_path / "restart.sqlite"
    config = backtest_config({"risk": {"cooldown_after_stop_s": 0}})
    tape = tapes["spot_btcusdt"]
    _, first = run_backtest(tape, config, journal_path, on_app=scripted)
    journal = Journal.open(journal_path)
    first_ids = [r.intent.client_order_id for r in journal.intents()]
    first_fills = len(journal.fills())
    journal.close()
    _, second = run_backtest(tape, config, journal_path, on_app=scripted)  # same journal
    journal = Journal.open(journal_path)
    try:
        ids = [r.intent.client_order_id for r in journal.intents()]
        fills = journal.fills()
    finally:
        journal.close()
    assert len(ids) == len(set(ids)) == 2 * len(first_ids)  # the same run again, new ids

    def seqs(coids: set[str]) -> list[int]:
        return sorted(parse_client_order_id(i).seq for i in coids)  # type: ignore[union-attr]

    resumed = seqs(set(ids) - set(first_ids))
    assert resumed[0] == seqs(set(first_ids))[-1] + 1
    # the venue's trade ids resume too: the second session's fills are all journaled
    assert len(fills) == 2 * first_fills and len({f.trade_id for f in fills}) == len(fills)
    assert second.fills == len(fills) and first.fills == first_fills
    assert all(f.client_order_id in ids for f in fills)


def test_operator_flatten_closes_the_position_at_market_and_cancels_its_protection() -> None:
    h = Harness(risk_pct=D(100), max_position_pct=D(90))
    h.market(T0, "100")
    h.enter(T0, "100", "50")  # 90 units bought at the 100.01 ask, protected by two OCO lists
    assert h.position() == 90 and len(h.venue.open_orders()) == 4
    h.market(T0 + 2000, "105")
    assert h.loop.flatten("operator", T0 + 2000) == ["BTCUSDT"]
    h.trade(T0 + 3000, "105")  # the venue processes the exit after its latency
    assert h.position() == 0
    assert h.venue.open_orders() == [] and h.venue.unknown_cancels == 0
    (closed,) = h.loop.portfolio.closed_trades
    assert (closed.quantity, closed.exit_price) == (D(90), D(105))  # sold at the 105.00 bid
    assert h.loop.trading_state is TradingState.ACTIVE  # flatten alone does not halt
    assert h.loop.flatten("operator", T0 + 4000) == []  # nothing left to close


def test_context_filters_see_funding_from_mark_prices_and_the_sentiment_cache() -> None:
    from engine.events import MarkPriceUpdated
    from strategy.signals.context import Sentiment

    h = Harness()
    h.market(T0, "100")
    assert h.loop.context(T0).market == {} and h.loop.context(T0).sentiment == Sentiment()
    h.loop.on_mark_price(MarkPriceUpdated("BTCUSDT", T0 + 1000, 0, 100.5, 100.4, 0.0003, T0 + 3_600_000))
    funding = h.loop.context(T0 + 1000).market["BTCUSDT"].funding
    assert funding is not None and (funding.rate, funding.mark_price) == (0.0003, 100.5)
    assert funding.next_funding_ms == T0 + 3_600_000
    h.loop.context_inputs.sentiment_source = lambda: Sentiment(fear_greed=85.0, btc_dominance_pct=55.0, ts_ms=T0)
    assert h.loop.context(T0 + 1000).sentiment.fear_greed == 85.0
