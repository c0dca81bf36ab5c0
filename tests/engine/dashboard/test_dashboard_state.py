"""The dashboard snapshot against the engine it watches: an App fed real tapes, no browser.

Expected values come from the engine's own stores (rows rings, model scores, strategy
decisions, portfolio), or are derived here by a plain loop over the rows ring (the last price
move, the history dots): the dashboard must show what the engine holds, nothing invented.
"""

from __future__ import annotations

import itertools
import json
import math
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from dashboard_harness import build_fed_app, model_overrides

from engine.app import App
from engine.dashboard import DashboardConfig, DashboardState
from engine.notices import (
    DailySummaryNotice,
    ErrorNotice,
    MismatchNotice,
    SignalNotice,
    StateNotice,
    TradeNotice,
)
from strategy.signals import ScoreUpdated

SIGNALS = (
    "bb_squeeze",
    "vwap_pullback",
    "vwap_reversion",
    "breakout_retest",
    "atr_momentum",
    "rsi_reversion",
    "swing_failure",
    "ema_pinch",
    "cvd",
    "fair_value_gap",
    "poc",
    "book_imbalance",
)


def attached(config: DashboardConfig | None = None) -> tuple[list[DashboardState], object]:
    holder: list[DashboardState] = []

    def setup(app: App) -> None:
        state = DashboardState(app, config or DashboardConfig())
        state.attach()
        holder.append(state)

    return holder, setup


def reference_track(app: App, symbol: str) -> tuple[list[tuple[int, float]], str | None]:
    """(ts, close) of every row with a price, and the direction of the last close change."""
    rows = app.pipeline.symbols[symbol].rows
    points = [
        (int(t), float(c))
        for t, c in zip(rows.window("ts"), rows.window("close"), strict=True)
        if not math.isnan(c)
    ]
    move = None
    for (_, before), (_, after) in itertools.pairwise(points):
        if after != before:
            move = "up" if after > before else "down"
    return points, move


def running_moves(points: list[tuple[int, float]]) -> list[tuple[str | None, int | None]]:
    """After each priced row: the direction and time of the last close change so far."""
    moves: list[tuple[str | None, int | None]] = []
    move, move_ts, before = None, None, None
    for ts, close in points:
        if before is not None and close != before:
            move, move_ts = ("up" if close > before else "down"), ts
        before = close
        moves.append((move, move_ts))
    return moves


def test_snapshot_shows_every_coin_as_the_engine_holds_it(tapes: dict[str, Path]) -> None:
    holder, setup = attached()
    seen_moves: dict[str, list[tuple[int, str | None, int | None]]] = {"BTCUSDT": [], "ETHUSDT": []}

    def setup_and_watch(app: App) -> None:
        setup(app)

        def watch(md, n_rows: int) -> None:  # type: ignore[no-untyped-def]
            if not math.isnan(md.rows.last("close")):
                track = holder[0].coins[md.symbol]
                seen_moves[md.symbol].append(
                    (int(md.rows.last("ts")), track.last_move, track.last_move_ts_ms)
                )

        app.add_row_hook(watch)  # after the dashboard's hook: sees its state row by row

    app = build_fed_app([tapes["spot_btcusdt"], tapes["spot_ethusdt"]], setup=setup_and_watch)
    state = holder[0]
    snap = state.snapshot()
    again = state.snapshot()
    assert again["seq"] == snap["seq"] + 1
    assert json.loads(orjson.dumps(snap)) == snap  # plain JSON: no NaN, no Decimal, no numpy
    assert [c["symbol"] for c in snap["coins"]] == ["BTCUSDT", "ETHUSDT"]
    assert snap["mode"] == "paper" and snap["market"] == "spot" and snap["strategy"] == "vote"
    newest = []
    for coin in snap["coins"]:
        md = app.pipeline.symbols[coin["symbol"]]
        rows = md.rows
        assert len(rows) > 300 and md.book_valid
        assert coin["price"] == rows.last("close") and coin["bid"] == rows.last("bid")
        assert coin["ask"] == rows.last("ask") and coin["row_ts_ms"] == rows.last("ts")
        assert coin["exchange_ts_ms"] == max(rows.last("ts"), md.last_depth_event_ms)
        newest.append(coin["exchange_ts_ms"])
        points, move = reference_track(app, coin["symbol"])
        assert coin["last_move"] == move and move is not None
        by_ts = dict(zip((t for t, _ in points), running_moves(points), strict=True))
        seen = seen_moves[coin["symbol"]]
        assert len(seen) > 300 and all(by_ts[ts] == (m, m_ts) for ts, m, m_ts in seen)
        assert coin["last_move_ts_ms"] == running_moves(points)[-1][1]
        assert coin["history"] == [[t, c, None] for t, c in points]
        # no model and the vote strategy still warming up: no number, the reason
        assert coin["confidence"] is None and coin["threshold"] is None and coin["source"] is None
        needed = app.config.strategy.vote.warmup_candles
        assert (
            coin["status"]
            == f"vote strategy warming up: {len(md.candles)}/{needed} one-minute candles"
        )
    assert snap["ts_ms"] == max(newest)
    trading = snap["trading"]
    assert app.trading is not None
    assert (
        trading["state"] == "ACTIVE"
        and trading["positions"] == []
        and trading["recent_trades"] == []
    )
    assert trading["equity"] == round(float(app.trading.portfolio.equity()), 2)
    assert trading["equity_curve"] == [[p.ts_ms, p.equity] for p in app.trading.curve.points]
    assert len(trading["equity_curve"]) >= 5  # one sample a minute over the ~6-minute tapes


def test_history_and_alerts_are_bounded(tapes: dict[str, Path]) -> None:
    holder, setup = attached(DashboardConfig(history_points=10, alerts=3))
    app = build_fed_app([tapes["spot_btcusdt"]], setup=setup, limit=15_000)
    state = holder[0]
    first = state.snapshot()["coins"][0]["history"]
    assert len(first) == 10
    # feed the rest of the tape: more rows, the same number of dots (the newest ones)
    holder2, setup2 = attached(DashboardConfig(history_points=10, alerts=3))
    app = build_fed_app([tapes["spot_btcusdt"]], setup=setup2)
    state = holder2[0]
    coin = state.snapshot()["coins"][0]
    points, _ = reference_track(app, "BTCUSDT")
    assert len(points) > 300 and coin["rows"] == app.pipeline.symbols["BTCUSDT"].rows.total_appended
    assert coin["history"] == [[t, c, None] for t, c in points[-10:]]
    assert first != coin["history"]

    notices = [
        SignalNotice("BTCUSDT", 1, 0.8, 0.6, 61000.5),
        TradeNotice(
            "BTCUSDT",
            2,
            "entry",
            "BUY",
            Decimal("61000.50"),
            Decimal("0.00100"),
            reason="model",
            score=0.8,
            threshold=0.6,
        ),
        StateNotice(3, "ACTIVE", "HALTED", "drawdown 12% >= 10%"),
        ErrorNotice(4, "venue", "429 too many requests", needs_person=True),
        MismatchNotice(5, "ETHUSDT", "venue holds 0.5, journal 0.4"),
        DailySummaryNotice("2024-08-08", 6, Decimal("10010.5"), Decimal("10.5"), 0.105, 4, 3),
    ]
    for notice in notices:
        app.notify(notice)
    alerts = state.snapshot()["alerts"]
    assert [a["ts_ms"] for a in alerts] == [6, 5, 4]  # the newest three, newest first
    assert alerts[0] == {
        "kind": "summary",
        "ts_ms": 6,
        "symbol": "",
        "text": "2024-08-08: equity 10010.5, pnl +10.5 (+0.10%), 4 trades, 3 won",
    }
    assert alerts[1] == {
        "kind": "mismatch",
        "ts_ms": 5,
        "symbol": "ETHUSDT",
        "text": "venue holds 0.5, journal 0.4",
    }
    assert (
        alerts[2]["kind"] == "error"
        and alerts[2]["text"] == "venue: 429 too many requests (needs a person)"
    )
    for notice in notices[:3]:
        app.notify(notice)
    texts = [a["text"] for a in state.snapshot()["alerts"]]
    assert texts[0] == "trading ACTIVE -> HALTED: drawdown 12% >= 10%"
    assert texts[1] == "entry BUY 0.00100 @ 61000.50 (score 0.800 vs threshold 0.600): model"
    assert texts[2] == "signal at 61000.5 (score 0.800 vs threshold 0.600)"


def test_model_confidence_uses_the_strategys_threshold(
    tapes: dict[str, Path], tiny_models: Path
) -> None:
    scores: dict[int, ScoreUpdated] = {}
    holder, setup = attached()

    def setup_all(app: App) -> None:
        app.models.listeners.append(lambda s: scores.__setitem__(s.ts_ms, s))
        setup(app)

    raw = {**model_overrides(tiny_models), "strategy": {"model": {"thresholds": {"BTCUSDT": 0.3}}}}
    app = build_fed_app([tapes["spot_btcusdt"], tapes["spot_ethusdt"]], raw, setup=setup_all)
    snap = holder[0].snapshot()
    btc, eth = snap["coins"]
    latest = app.models.latest["BTCUSDT"]
    assert latest.threshold == 0.5  # the bundle's own threshold ...
    assert btc["threshold"] == 0.3  # ... is overridden for this coin, as the strategy does
    assert btc["confidence"] == latest.confidence and btc["source"] == "model"
    assert btc["above"] == (latest.confidence >= 0.3) and btc["range"] == [0.0, 1.0]
    assert btc["confidence_ts_ms"] == latest.ts_ms and btc["status"] is None
    # every dot carries the confidence scored on its own second
    scored = [p for p in btc["history"] if p[2] is not None]
    assert len(scored) > 300 and len(scored) == len(scores)
    for ts, _price, confidence in scored:
        assert confidence == scores[ts].confidence
    assert eth["confidence"] is None and eth["status"].startswith("no model promoted for this coin")
    assert all(p[2] is None for p in eth["history"])


def test_vote_confidence_when_no_model(tapes: dict[str, Path]) -> None:
    weights = {name: 0.0 for name in SIGNALS} | {"book_imbalance": 1.0}
    raw = {
        "mode": "backtest",
        "strategy": {
            "kind": "vote",
            "vote": {
                "threshold": 0.2,
                "window_candles": 6,
                "weights": weights,
                "signals": {"book_imbalance": {"window": 1, "min_imbalance": 0.05}},
                "regime": {"adx_period": 2, "atr_period": 1, "atr_baseline": 2},
            },
        },
    }
    holder, setup = attached()
    app = build_fed_app(
        [tapes["usdm_btcusdt_2023a"], tapes["usdm_btcusdt_2023b"]], raw, setup=setup
    )
    coin = holder[0].snapshot()["coins"][0]
    assert app.trading is not None
    decision = app.trading.strategy.decisions["BTCUSDT"]  # type: ignore[attr-defined]
    assert decision.tally is not None
    assert coin["source"] == "vote" and coin["confidence"] == decision.tally.confidence
    assert coin["threshold"] == 0.2 and coin["range"] == [-1.0, 1.0]
    assert (
        coin["status"] == f"vote: {decision.action}" and coin["confidence_ts_ms"] == decision.ts_ms
    )
    assert any(p[2] is not None for p in coin["history"])


def test_without_model_or_trading_the_feature_status_is_shown(tapes: dict[str, Path]) -> None:
    holder, setup = attached()
    app = build_fed_app([tapes["spot_btcusdt"]], {"mode": "live"}, setup=setup, limit=3_000)
    snap = holder[0].snapshot()
    assert app.trading is None and snap["trading"] is None and snap["strategy"] is None
    coin = snap["coins"][0]
    status = app.features.status()["BTCUSDT"]
    assert status and coin["confidence"] is None
    expected = ", ".join(f"{label} {s}" for label, s in status.items())
    assert coin["status"] == f"no model promoted; not trading; features: {expected}"


def test_config_is_frozen_and_strict() -> None:
    config = DashboardConfig()
    assert (config.host, config.port, config.auth_env) == (
        "127.0.0.1",
        8787,
        "TICKLOOP_DASHBOARD_TOKEN",
    )
    with pytest.raises(ValueError):
        DashboardConfig(tokn="x")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        DashboardConfig(port=70_000)
    with pytest.raises(ValueError):
        DashboardConfig(auth_env="NOT A NAME")
    with pytest.raises(ValueError):
        config.port = 1  # type: ignore[misc]
