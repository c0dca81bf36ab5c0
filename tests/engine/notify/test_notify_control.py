"""AppControl over real Apps: answers without a trading loop, halts and resumes, honest refusals."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from notify_support import T0_NS, spot_exchange_info

from engine.app import App
from engine.clock import ReplayClock
from engine.config import parse_config
from engine.model import Side
from engine.notices import Notice
from engine.notify import AppControl
from engine.notify.control import OPERATOR_BLOCK
from engine.orders import Liquidity, OrderFilled
from risk.state import TradingState

QUIET = {"logging": {"console": "off", "file": None}}
NO_TRADING = (
    "Not available now: testnet on spot has no trading loop yet (it starts once start-up "
    "reconciliation is done)."
)


def paper(shared_data: Path) -> tuple[App, list[Notice]]:
    config = parse_config(QUIET)
    app = App(
        config,
        clock=ReplayClock(T0_NS),
        exchange_info=spot_exchange_info(shared_data, config.market.symbols),
    )
    heard: list[Notice] = []
    app.notice_listeners.append(heard.append)
    return app, heard


def test_market_data_only_mode_says_not_available() -> None:
    app = App(parse_config({"mode": "testnet", **QUIET}))
    control = AppControl(app)
    assert control.status() == (
        "mode testnet · spot\n"
        "no trading loop yet: market data only until start-up is done\n"
        "BTCUSDT: book not synced, no model\n"
        "ETHUSDT: book not synced, no model"
    )
    for answer in (
        control.positions,
        control.balance,
        control.profit,
        control.daily,
        control.performance,
        control.stop_entries,
        control.resume_entries,
        control.flatten,
        lambda: control.halt("x"),
    ):
        assert answer() == NO_TRADING
    assert control.reload() == "No promoted bundles. Configuration changes need a restart."


def test_halt_and_resume_go_through_the_trading_loop(shared_data: Path) -> None:
    app, _ = paper(shared_data)
    control = AppControl(app)
    trading = app.trading
    assert trading is not None
    assert control.halt("operator test") == (
        "Trading HALTED (MANUAL_HALT): new entries and adds are refused, working entry orders "
        "are cancelled, open positions keep their stops and targets. /start resumes."
    )
    assert trading.gate.trading_state is TradingState.HALTED
    assert control.halt("again") == "Already HALTED (MANUAL_HALT)."
    assert control.resume_entries() == "Entries resumed. Trading ACTIVE (was HALTED)."
    assert trading.gate.trading_state is TradingState.ACTIVE
    # the loop's own record (what it announces): before market data, at the App's clock
    assert [(t.from_state, t.to_state, t.detail, t.ts_ms) for t in trading.stats.transitions] == [
        (TradingState.ACTIVE, TradingState.HALTED, "manual halt: operator test", T0_NS // 10**6),
        (TradingState.HALTED, TradingState.ACTIVE, "manual resume: Telegram", T0_NS // 10**6),
    ]


def test_halt_says_when_it_flattens(shared_data: Path) -> None:
    config = parse_config({**QUIET, "risk": {"flatten_on_halt": True}})
    app = App(
        config,
        clock=ReplayClock(T0_NS),
        exchange_info=spot_exchange_info(shared_data, config.market.symbols),
    )
    assert AppControl(app).halt("x") == (
        "Trading HALTED (MANUAL_HALT): new entries and adds are refused, working entry orders "
        "are cancelled, open positions are being closed at market (risk.flatten_on_halt). "
        "/start resumes."
    )


def test_resume_lifts_only_the_operators_own_blocks(shared_data: Path) -> None:
    app, heard = paper(shared_data)
    trading = app.trading
    assert trading is not None
    trading.blocked["ETHUSDT"] = "model bundle refused: checksum"
    control = AppControl(app)
    assert control.stop_entries() == (
        "Entries stopped for BTCUSDT. Open positions keep their stops and targets. /start resumes."
    )
    assert control.stop_entries() == "Entries were already stopped."
    assert trading.blocked == {
        "ETHUSDT": "model bundle refused: checksum",
        "BTCUSDT": OPERATOR_BLOCK,
    }
    assert control.resume_entries() == (
        "Entries resumed. Trading ACTIVE (was ACTIVE). Not traded (refused): ETHUSDT."
    )
    assert trading.blocked == {"ETHUSDT": "model bundle refused: checksum"}
    assert heard == []  # ACTIVE all along: no state change to announce


def test_empty_book_answers(shared_data: Path) -> None:
    app, _ = paper(shared_data)
    control = AppControl(app)
    assert control.positions() == "No open positions."
    assert control.performance() == "No closed trades yet."
    assert control.flatten() == "No open positions: nothing to flatten."
    assert control.balance() == "USDT 10,000\nequity 10,000.00 USDT"
    assert control.profit() == (
        "closed trades 0\n"
        "closed PnL +0.00 USDT (net of fees and funding)\n"
        "fees 0.00 · funding +0.00\n"
        "unrealised +0.00\n"
        "equity 10,000.00 USDT (+0.00 % since start)"
    )


def test_unvalued_assets_and_short_positions(shared_data: Path) -> None:
    app, _ = paper(shared_data)
    portfolio = app.trading.portfolio  # type: ignore[union-attr]
    # an ETH fee on a BTC buy: ETH has no mark yet, so it cannot be valued
    portfolio.apply(
        OrderFilled(
            "BTCUSDT",
            "a",
            1,
            Side.BUY,
            Decimal(50000),
            Decimal("0.002"),
            Decimal("0.0001"),
            "ETH",
            Liquidity.TAKER,
            1,
            True,
        )
    )
    portfolio.apply(
        OrderFilled(
            "BTCUSDT",
            "b",
            2,
            Side.SELL,
            Decimal(50000),
            Decimal("0.005"),
            Decimal(0),
            "USDT",
            Liquidity.TAKER,
            2,
            True,
        )
    )
    control = AppControl(app)
    assert control.balance() == (
        "BTC -0.003\nETH -0.0001\nUSDT 10,150\nequity 10,000.00 USDT\n"
        "not valued (no price yet): ETH"
    )
    assert control.positions() == (
        "BTCUSDT SHORT 0.003 @ 50,000 · mark 50,000 · uPnL +0.00 · no protective orders"
    )
