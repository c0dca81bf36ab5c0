"""Paper trading over the loopback simulator and a backtest of the same tape decide, order and
fill identically (DESIGN.md §2: a backtest that differs from paper trading is a bug).

The model strategy trades with a tiny real bundle trained on the tape (test_livemodels), its
threshold set low enough to enter several times in six minutes; both runs journal to SQLite and
the journals' intents and fills are compared field by field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from live_harness import live_run
from test_livemodels import SYMBOL, feature_overrides, train_tiny_bundle

from engine.backtest import run_backtest
from engine.config import parse_config
from engine.journal import Journal


def trading_overrides(models_dir: Path) -> dict:
    return {
        **feature_overrides(models_dir),
        "mode": "paper",
        "strategy": {
            "kind": "model",
            "entry": {"cooldown_s": 20},
            "exits": {"max_hold_s": 45, "stop_loss_pct": 0.05,
                      "take_profits": [{"pct": 0.05}]},
        },
    }


@pytest.fixture(scope="module")
def trading_models(tmp_path_factory: pytest.TempPathFactory, tapes: dict[str, Path]) -> Path:
    models_dir = tmp_path_factory.mktemp("models")
    # threshold 0.2: under the median score of this tiny model on its own tape, so it enters often
    train_tiny_bundle(tapes["spot_btcusdt"], models_dir, threshold=0.2)
    return models_dir


def journal_rows(path: Path) -> tuple[list, list]:
    journal = Journal.open(path)
    try:
        intents = [(r.intent, r.status, r.filled_qty, r.reason, r.created_ts_ms) for r in journal.intents()]
        fills = journal.fills()
    finally:
        journal.close()
    return intents, fills


async def test_paper_and_backtest_make_identical_orders_and_fills(
    tapes: dict[str, Path], trading_models: Path, tmp_path: Path
) -> None:
    tape = tapes["spot_btcusdt"]
    overrides = trading_overrides(trading_models)
    paper_journal = Journal.open(tmp_path / "paper.sqlite")
    run = await live_run(tape, overrides=overrides, app_kwargs={"journal": paper_journal})
    assert run.app.trading is not None
    run.app.trading.flush()
    paper_journal.close()

    raw = {**overrides, "logging": {"console": "off", "file": None}}
    app, result = run_backtest(tape, parse_config(raw), tmp_path / "backtest.sqlite")

    paper_intents, paper_fills = journal_rows(tmp_path / "paper.sqlite")
    back_intents, back_fills = journal_rows(tmp_path / "backtest.sqlite")
    assert len(back_fills) > 0 and len(back_intents) >= 2, app.trading.stats  # type: ignore[union-attr]
    assert {i[0].role.value for i in back_intents} >= {"entry"}
    assert paper_intents == back_intents
    assert paper_fills == back_fills
    assert result.fills == len(back_fills)
    # every entry signal is journaled with the bundle that scored it and its feature-set hash
    from strategy.features import compile_feature_set
    from test_livemodels import FAST_SET

    journal = Journal.open(tmp_path / "backtest.sqlite")
    signals = journal.signals()
    journal.close()
    assert signals and all(sig.bundle_id == "up" for sig in signals)
    assert {sig.feature_set_hash for sig in signals} == {compile_feature_set(FAST_SET).hash}
    assert all(sig.contributions for sig in signals)
    # every fill is at a price the tape printed near that time: bounded by the session's range
    rows = run.rows
    assert rows is not None
    low, high = np.nanmin(rows["low"]), np.nanmax(rows["high"])
    for fill in back_fills:
        assert fill.symbol == SYMBOL
        assert low - 50 <= float(fill.price) <= high + 50


async def test_usdm_tape_paper_and_backtest_see_the_same_market(tapes: dict[str, Path], tmp_path: Path) -> None:
    """The USDⓈ-M tape records @depth@0ms and @trade; live subscribes @depth@100ms and @aggTrade.

    The backtest must feed what the simulator serves, so the rows folded by both are identical.
    """
    from engine.replay import RingCollector
    from engine.fold import ROW_COLUMNS

    tape = tapes["usdm_btcusdt"]
    raw = {"mode": "paper", "logging": {"console": "off", "file": None}}
    paper = await live_run(tape, overrides={"mode": "paper"})
    collector = RingCollector()
    app, _ = run_backtest(tape, parse_config({**raw, "market": {"type": "usdm", "symbols": [SYMBOL]}}),
                          tmp_path / "b.sqlite", on_app=lambda a: a.add_row_hook(collector))
    backtest_rows = collector.rows_frame(ROW_COLUMNS)
    assert paper.rows is not None and len(backtest_rows) > 300
    assert app.pipeline.decoder.counters["aggTrade"] > 10_000  # synthesised from the recorded trades
    n = min(len(backtest_rows), len(paper.rows))
    trade_cols = ["ts", "open", "high", "low", "close", "volume", "quote_volume", "trades", "buy_volume"]
    assert paper.rows[trade_cols].iloc[:n].reset_index(drop=True).equals(
        backtest_rows[trade_cols].iloc[:n].reset_index(drop=True))
