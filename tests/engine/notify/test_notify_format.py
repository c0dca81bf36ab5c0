"""Alert texts of every notice kind (written out by hand), the signal icon rule, the config."""

from __future__ import annotations

from decimal import Decimal

import pytest
from notify_support import CHAT
from pydantic import ValidationError

from engine.clock import ReplayClock
from engine.notices import (
    DailySummaryNotice,
    ErrorNotice,
    MismatchNotice,
    SignalNotice,
    StateNotice,
    TradeNotice,
)
from engine.notify import TelegramConfig, TelegramNotifier
from engine.notify.format import (
    MAX_MESSAGE_CHARS,
    coin_glyph,
    fit_message,
    format_notice,
    format_price,
    format_signal,
    signal_level,
    split_symbol,
)
from engine.notify.queue import Priority

T_0005 = 1_767_225_605_000  # 2026-01-01 00:00:05 UTC
T_1345 = 1_767_275_100_000  # 2026-01-01 13:45:00 UTC


# -- trade alerts ----------------------------------------------------------------------------


def test_entry_alert_says_why() -> None:
    notice = TradeNotice(
        symbol="BTCUSDT",
        ts_ms=T_0005,
        kind="entry",
        side="BUY",
        price=Decimal("60518.20"),
        quantity=Decimal("0.00150"),
        reason="model score above threshold",
        score=0.31,
        threshold=0.25,
        bundle_id="BTCUSDT-high-20251230",
        contributions=(("rsi_14", 0.12), ("obv_slope", -0.05), ("spread_bp", 0.0234)),
        stop_price=Decimal("59800.00"),
        target_price=Decimal("61900.00"),
    )
    assert format_notice(notice) == (
        "🟢 ENTRY BTCUSDT BUY 0.0015 @ 60,518.2 (00:00:05 UTC)\n"
        "reason: model score above threshold\n"
        "score +0.31 · threshold 0.25 · model BTCUSDT-high-20251230\n"
        "top: rsi_14 +0.120, obv_slope -0.050, spread_bp +0.023\n"
        "stop 59,800 · target 61,900"
    )


def test_take_profit_alert_with_pnl() -> None:
    notice = TradeNotice(
        symbol="ETHUSDT",
        ts_ms=T_1345,
        kind="take_profit",
        side="SELL",
        price=Decimal("3120.50"),
        quantity=Decimal("0.5000"),
        realized_pnl=Decimal("41.2345"),
        stop_price=Decimal(3050),
    )
    assert format_notice(notice) == (
        "🎯 TAKE-PROFIT ETHUSDT SELL 0.5 @ 3,120.5 (13:45:00 UTC)\n"
        "PnL +41.23 USDT\n"
        "reason: take-profit\n"
        "stop 3,050"
    )


def test_stop_loss_alert_with_loss() -> None:
    notice = TradeNotice(
        symbol="SOLUSDT",
        ts_ms=T_1345,
        kind="stop_loss",
        side="SELL",
        price=Decimal("142.37"),
        quantity=Decimal("3.2"),
        reason="stop-loss hit at 142.40",
        score=-0.12,
        threshold=0.25,
        bundle_id="SOL-b1",
        realized_pnl=Decimal("-12.5"),
        stop_price=Decimal("142.40"),
    )
    assert format_notice(notice) == (
        "🛑 STOP-LOSS SOLUSDT SELL 3.2 @ 142.37 (13:45:00 UTC)\n"
        "PnL -12.50 USDT\n"
        "reason: stop-loss hit at 142.40\n"
        "score -0.12 · threshold 0.25 · model SOL-b1\n"
        "stop 142.4"
    )


def test_exit_and_flatten_alerts() -> None:
    exit_notice = TradeNotice(
        symbol="ETHBTC",
        ts_ms=T_0005,
        kind="exit",
        side="SELL",
        price=Decimal("0.05321"),
        quantity=Decimal(2),
        reason="score fell below exit threshold",
        score=0.02,
        threshold=0.1,
        realized_pnl=Decimal("0.0004"),
    )
    assert format_notice(exit_notice) == (
        "⚪ EXIT ETHBTC SELL 2 @ 0.05321 (00:00:05 UTC)\n"
        "PnL +0.0004 BTC\n"
        "reason: score fell below exit threshold\n"
        "score +0.02 · threshold 0.10"
    )
    flat = TradeNotice(
        symbol="BTCUSDT",
        ts_ms=T_0005,
        kind="flatten",
        side="BUY",
        price=Decimal(61000),
        quantity=Decimal("0.010"),
        reason="halted: flatten",
        realized_pnl=Decimal(-3),
    )
    assert format_notice(flat) == (
        "⏹ FLATTEN BTCUSDT BUY 0.01 @ 61,000 (00:00:05 UTC)\nPnL -3.00 USDT\nreason: halted: flatten"
    )


# -- other alerts ----------------------------------------------------------------------------


def test_state_alerts() -> None:
    reducing = StateNotice(T_0005, "ACTIVE", "REDUCING", "drawdown 5.20 % from peak 10000 to 9480")
    assert format_notice(reducing) == (
        "⚠️ Trading REDUCING (was ACTIVE) (00:00:05 UTC)\n"
        "reason: drawdown 5.20 % from peak 10000 to 9480"
    )
    halted = StateNotice(T_1345, "REDUCING", "HALTED", "3 errors within 60 s")
    assert format_notice(halted) == (
        "⛔ Trading HALTED (was REDUCING) (13:45:00 UTC)\nreason: 3 errors within 60 s"
    )
    active = StateNotice(T_1345, "HALTED", "ACTIVE", "manual resume: Telegram")
    assert format_notice(active) == (
        "✅ Trading ACTIVE (was HALTED) (13:45:00 UTC)\nreason: manual resume: Telegram"
    )


def test_errors_only_when_a_person_is_needed() -> None:
    needs = ErrorNotice(T_0005, "venue", "API key rejected (-2015)", needs_person=True)
    assert (
        format_notice(needs)
        == "🚨 venue: API key rejected (-2015) (00:00:05 UTC)\nA person must act."
    )
    assert format_notice(ErrorNotice(T_0005, "feed", "reconnected", needs_person=False)) is None


def test_mismatch_and_daily_summary() -> None:
    mismatch = MismatchNotice(T_0005, "BTCUSDT", "venue holds 0.002 BTC, journal 0.0015")
    assert format_notice(mismatch) == (
        "❗ Reconciliation mismatch BTCUSDT (00:00:05 UTC)\nvenue holds 0.002 BTC, journal 0.0015"
    )
    daily = DailySummaryNotice(
        "2026-01-01",
        T_0005,
        equity=Decimal("10234.5678"),
        pnl=Decimal("234.5678"),
        pnl_pct=2.3456,
        trades=5,
        wins=3,
    )
    assert format_notice(daily) == (
        "📅 Daily summary 2026-01-01\nequity 10,234.57 · PnL +234.57 (+2.35 %)\ntrades 5 · wins 3 (60 %)"
    )
    quiet = DailySummaryNotice("2026-01-02", T_0005, Decimal(10000), Decimal("-1.005"), -0.01, 0, 0)
    assert format_notice(quiet) == (
        "📅 Daily summary 2026-01-02\nequity 10,000.00 · PnL -1.00 (-0.01 %)\ntrades 0"
    )


# -- signals ---------------------------------------------------------------------------------


def test_reference_example() -> None:
    notice = SignalNotice("BTCUSDT", T_0005, score=-0.26, threshold=0.55, price=60518.37)
    level = signal_level(notice.score, 0.15, 0.05, 10)
    assert level == -3
    assert format_signal(notice, level) == "₿ 60,518 📉📉📉 Score: -0.26"


# (score, expected signed level) with threshold 0.15, step 0.05, at most 10 icons, by hand:
# level = floor((|score| - 0.15) / 0.05) + 1 from 0.15 on, 0 below
ICON_TABLE = [
    (0.0, 0),
    (0.1499, 0),
    (-0.1499, 0),
    (0.15, 1),
    (-0.15, -1),
    (0.1999, 1),
    (0.2, 2),
    (0.25, 3),
    (-0.26, -3),
    (0.3, 4),
    (0.35, 5),
    (-0.45, -7),
    (0.6, 10),
    (0.64, 10),
    (1.0, 10),
    (-1.0, -10),
]


@pytest.mark.parametrize(("score", "expected"), ICON_TABLE)
def test_signal_icon_rule(score: float, expected: int) -> None:
    assert signal_level(score, 0.15, 0.05, 10) == expected


def _reference_level(score: float, threshold: float, step: float, cap: int) -> int:
    """Integer arithmetic in 1/10000ths: an independent statement of the rule."""
    mag, t, s = round(abs(score) * 10_000), round(threshold * 10_000), round(step * 10_000)
    if mag < t:
        return 0
    level = min((mag - t) // s + 1, cap)
    return level if score > 0 else -level


def test_signal_icon_rule_matches_reference_on_a_grid() -> None:
    for threshold, step in ((0.15, 0.05), (0.1, 0.1), (0.05, 0.01), (0.3, 0.07)):
        for i in range(-1000, 1001):
            score = i / 1000
            assert signal_level(score, threshold, step, 20) == _reference_level(
                score, threshold, step, 20
            ), (score, threshold, step)


def test_signal_lines_for_other_coins() -> None:
    eth = SignalNotice("ETHUSDT", T_0005, score=0.31, threshold=0.5, price=3012.456)
    assert format_signal(eth, 4) == "Ξ 3,012 📈📈📈📈 Score: +0.31"
    sol = SignalNotice("SOLUSDT", T_0005, score=0.2, threshold=0.5, price=142.374)
    assert format_signal(sol, 2) == "SOL 142.37 📈📈 Score: +0.20"
    doge = SignalNotice("DOGEUSDT", T_0005, score=-0.15, threshold=0.5, price=0.123456)
    assert format_signal(doge, -1) == "DOGE 0.1235 📉 Score: -0.15"


def test_prices_and_symbols() -> None:
    assert format_price(60518.37) == "60,518"
    assert format_price(1234567.8) == "1,234,568"
    assert format_price(999.994) == "999.99"
    assert format_price(0.00001234) == "0.00001234"
    assert format_price(0) == "0"
    assert split_symbol("BTCUSDT") == ("BTC", "USDT")
    assert split_symbol("ETHBTC") == ("ETH", "BTC")
    assert split_symbol("BTCFDUSD") == ("BTC", "FDUSD")
    assert split_symbol("1000PEPEUSDT") == ("1000PEPE", "USDT")
    assert split_symbol("XYZ") == ("XYZ", "")
    assert coin_glyph("BTCUSDC") == "₿"
    assert coin_glyph("ETHBTC") == "Ξ"
    assert coin_glyph("BNBUSDT") == "BNB"


def test_fit_message_cuts_at_the_limit() -> None:
    assert fit_message("short") == "short"
    cut = fit_message("x" * 5000)
    assert len(cut) == MAX_MESSAGE_CHARS and cut.endswith("\n…")


def test_signal_throttle_in_the_listener() -> None:
    config = TelegramConfig(enabled=True, chat_ids=(CHAT,), signal_repeat_s=300)
    notifier = TelegramNotifier(config, lambda: None, clock=ReplayClock())  # type: ignore[arg-type,return-value]

    def say(score: float, ts_s: int) -> None:
        notifier(SignalNotice("BTCUSDT", ts_s * 1000, score, 0.5, 60000.0))

    say(0.26, 0)  # level 3: news
    say(0.27, 10)  # still 3, within 300 s: quiet
    say(0.31, 20)  # level 4: news
    say(0.33, 319)  # 4 again, 299 s later: quiet
    say(0.33, 320)  # 4 again, 300 s later: repeated
    say(0.05, 321)  # below threshold: quiet, and forgets the level
    say(0.31, 322)  # crossing again is news
    say(-0.31, 323)  # the other side is another level
    texts = [m.text for m in notifier.queue.pending()]
    assert texts == [
        "₿ 60,000 📈📈📈 Score: +0.26",
        "₿ 60,000 📈📈📈📈 Score: +0.31",
        "₿ 60,000 📈📈📈📈 Score: +0.33",
        "₿ 60,000 📈📈📈📈 Score: +0.31",
        "₿ 60,000 📉📉📉📉 Score: -0.31",
    ]
    assert {m.priority for m in notifier.queue.pending()} == {Priority.LOW}


def test_icon_threshold_can_be_each_notices_own() -> None:
    """signal_threshold: null measures a confidence against its model's threshold."""
    confidence = SignalNotice("BTCUSDT", 0, 0.62, 0.55, 60000.0)
    fall = SignalNotice("ETHUSDT", 0, -0.71, 0.6, 3000.0)
    own = TelegramConfig(enabled=True, chat_ids=(CHAT,), signal_threshold=None)
    fixed = TelegramConfig(enabled=True, chat_ids=(CHAT,))
    texts = {}
    for name, config in (("own", own), ("fixed", fixed)):
        notifier = TelegramNotifier(config, lambda: None, clock=ReplayClock())  # type: ignore[arg-type,return-value]
        notifier(confidence)
        notifier(fall)
        texts[name] = [m.text for m in notifier.queue.pending()]
    # own: floor(0.07 / 0.05) + 1 = 2 and floor(0.11 / 0.05) + 1 = 3; fixed 0.15: capped at 10
    assert texts["own"] == ["₿ 60,000 📈📈 Score: +0.62", "Ξ 3,000 📉📉📉 Score: -0.71"]
    assert texts["fixed"] == [
        "₿ 60,000 " + "📈" * 10 + " Score: +0.62",
        "Ξ 3,000 " + "📉" * 10 + " Score: -0.71",
    ]


def test_signals_can_be_switched_off() -> None:
    config = TelegramConfig(enabled=True, chat_ids=(CHAT,), signals=False)
    notifier = TelegramNotifier(config, lambda: None, clock=ReplayClock())  # type: ignore[arg-type,return-value]
    notifier(SignalNotice("BTCUSDT", 0, 0.9, 0.5, 60000.0))
    assert len(notifier.queue) == 0


def test_alerts_go_to_every_allowed_chat_at_high_priority() -> None:
    config = TelegramConfig(enabled=True, chat_ids=(1, 2, 3))
    notifier = TelegramNotifier(config, lambda: None, clock=ReplayClock())  # type: ignore[arg-type,return-value]
    notifier(MismatchNotice(T_0005, "BTCUSDT", "x"))
    notifier(ErrorNotice(T_0005, "feed", "reconnected"))  # not for people
    assert [(m.chat_id, m.priority) for m in notifier.queue.pending()] == [
        (1, Priority.HIGH),
        (2, Priority.HIGH),
        (3, Priority.HIGH),
    ]


# -- config ----------------------------------------------------------------------------------


def test_config_validation() -> None:
    assert TelegramConfig().enabled is False
    with pytest.raises(ValidationError, match="at least one chat"):
        TelegramConfig(enabled=True)
    with pytest.raises(ValidationError, match="duplicate chat ids: 5"):
        TelegramConfig(chat_ids=(5, 5))
    with pytest.raises(ValidationError, match="list of chat ids"):
        TelegramConfig(chat_ids=5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="http"):
        TelegramConfig(api_base="ftp://x")
    with pytest.raises(ValidationError, match="Extra inputs"):
        TelegramConfig(token="123:abc")  # type: ignore[call-arg]
    assert TelegramConfig(api_base="http://127.0.0.1:8081/").api_base == "http://127.0.0.1:8081"
    cfg = TelegramConfig()
    assert [cfg.retry.backoff_s(n) for n in (1, 2, 3, 7, 8)] == [1.0, 2.0, 4.0, 60.0, 60.0]
