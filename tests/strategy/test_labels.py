"""Labels: values against plain reference loops and hand-worked series; no leak into features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from exchange.history import read_kline_csv
from strategy.features import FeatureSetSpec, compute_batch
from strategy.labels import (
    ForwardLabel,
    HighLow2Label,
    LabelsConfig,
    TopBot2Label,
    compute_labels,
    parse_label,
)
from strategy.models.dataset import build_dataset
from strategy.models.merge import klines_to_candles


@pytest.fixture(scope="module")
def fil_days(shared_data: Path) -> pd.DataFrame:
    klines = read_kline_csv(shared_data / "klines" / "usdm-1m" / "FILUSDT-1m-2023-08.csv.gz")
    return klines_to_candles(klines.iloc[: 3 * 1440])


def reference_forward(frame: pd.DataFrame, horizon: int, pct: float, up: bool) -> np.ndarray:
    close, high, low = (frame[c].to_numpy() for c in ("close", "high", "low"))
    out = np.full(len(frame), np.nan)
    for t in range(len(frame) - horizon):
        window = high[t + 1 : t + 1 + horizon] if up else low[t + 1 : t + 1 + horizon]
        if up:
            out[t] = float(window.max() >= close[t] * (1 + pct / 100))
        else:
            out[t] = float(window.min() <= close[t] * (1 - pct / 100))
    return out


def reference_highlow2(
    frame: pd.DataFrame, horizon: int, pct: float, tol: float, up: bool
) -> np.ndarray:
    close, high, low = (frame[c].to_numpy() for c in ("close", "high", "low"))
    out = np.full(len(frame), np.nan)
    for t in range(len(frame) - horizon):
        target = close[t] * (1 + pct / 100) if up else close[t] * (1 - pct / 100)
        stop = close[t] * (1 - pct * tol / 100) if up else close[t] * (1 + pct * tol / 100)
        result = 0.0
        for j in range(t + 1, t + 1 + horizon):
            adverse = low[j] <= stop if up else high[j] >= stop
            favourable = high[j] >= target if up else low[j] <= target
            if adverse:  # also when both happen in one bar: the stop is assumed first
                break
            if favourable:
                result = 1.0
                break
        out[t] = result
    return out


@pytest.mark.parametrize("direction", ["up", "down"])
def test_forward_label_matches_a_plain_loop_on_real_klines(
    fil_days: pd.DataFrame, direction: str
) -> None:
    label = ForwardLabel(direction=direction, horizon=30, threshold_pct=0.4)
    got = label.compute(fil_days)
    expected = reference_forward(fil_days, 30, 0.4, direction == "up")
    np.testing.assert_array_equal(got, expected)
    assert 0.05 < np.nanmean(got) < 0.95  # both classes occur: the comparison means something


@pytest.mark.parametrize("direction", ["up", "down"])
def test_highlow2_matches_a_plain_loop_on_real_klines(
    fil_days: pd.DataFrame, direction: str
) -> None:
    label = HighLow2Label(direction=direction, horizon=45, threshold_pct=0.5, tolerance=0.4)
    got = label.compute(fil_days)
    np.testing.assert_array_equal(
        got, reference_highlow2(fil_days, 45, 0.5, 0.4, direction == "up")
    )
    forward = ForwardLabel(direction=direction, horizon=45, threshold_pct=0.5).compute(fil_days)
    known = ~np.isnan(got)
    assert (got[known] <= forward[known]).all() and (got[known] < forward[known]).any()


def bars(close: list[float], high: list[float], low: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"close": close, "high": high, "low": low})


def test_highlow2_by_hand_including_a_bar_that_touches_both() -> None:
    frame = bars(
        close=[100, 100, 100, 100, 100],
        high=[100, 100.5, 101.2, 100, 100],
        low=[100, 99.8, 99.0, 100, 100],
    )
    # t=0: bar 1 dips 0.2 % (tolerance 0.5 % of a 1 % target is fine), bar 2 reaches +1.2 %
    # but also -1.0 % in the same bar -> counted as stopped first.
    got = HighLow2Label(horizon=2, threshold_pct=1.0, tolerance=0.5).compute(frame)
    np.testing.assert_array_equal(got, [0.0, 0.0, 0.0, np.nan, np.nan])
    loose = HighLow2Label(horizon=2, threshold_pct=1.0, tolerance=1.5).compute(frame)
    np.testing.assert_array_equal(loose, [1.0, 1.0, 0.0, np.nan, np.nan])


def test_forward_label_is_undecided_when_the_window_holds_a_missing_bar() -> None:
    frame = bars(close=[100, 100, 100, 100], high=[100, np.nan, 102, 100], low=[100] * 4)
    got = ForwardLabel(horizon=2, threshold_pct=1.0).compute(frame)
    np.testing.assert_array_equal(got, [np.nan, 1.0, np.nan, np.nan])
    got = ForwardLabel(horizon=1, threshold_pct=1.0).compute(frame)
    np.testing.assert_array_equal(got, [np.nan, 1.0, 0.0, np.nan])


def test_topbot2_tops_by_hand() -> None:
    close = [100, 105, 112, 120, 118, 110, 100, 104, 109, 115, 108, 95, 100]
    # Worked out by hand: top 120 (drops of 10 % on both sides: 105 -> 120 -> 100), band 5 %
    # (>= 114): bars 3-4; top 115 (100 -> 115 -> 95), band >= 109.25: bar 9. Bar 12 comes after
    # the last confirmation (bar 11) and is undecided.
    got = TopBot2Label(function="top", level_pct=10, tolerance=0.5).compute(
        pd.DataFrame({"close": close})
    )
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, np.nan])


def test_topbot2_bottoms_by_hand() -> None:
    close = [100, 95, 88, 80, 82, 90, 100, 96, 91, 85, 92, 105, 100]
    # Bottom 80 (95 -> 80 -> 90, both > 88), band <= 84: bars 3-4; bottom 85 (96 -> 85 -> 105,
    # both > 93.5), band <= 89.25: bar 9.
    got = TopBot2Label(function="bot", level_pct=10, tolerance=0.5).compute(
        pd.DataFrame({"close": close})
    )
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, np.nan])


def test_topbot2_a_swing_smaller_than_the_level_is_no_top() -> None:
    close = [100, 104, 100, 104, 100, 104, 100]
    got = TopBot2Label(function="top", level_pct=5, tolerance=0.5).compute(
        pd.DataFrame({"close": close})
    )
    assert np.isnan(got).all()  # nothing confirmed: nothing decided


def test_labels_config_defaults_names_and_errors() -> None:
    config = LabelsConfig()
    assert [g.label for g in config.generators] == ["up_1pct_60", "down_1pct_60"]
    config = LabelsConfig.model_validate(
        {
            "generators": [
                {"kind": "highlow2", "direction": "down", "threshold_pct": 2, "horizon": 30},
                {"kind": "topbot2", "function": "top", "name": "tops"},
            ]
        }
    )
    assert config.get("hl2_down_2pct_30_tol0.5").side == -1
    assert config.get("tops").side == -1
    with pytest.raises(ValidationError, match="not a label kind"):
        LabelsConfig.model_validate({"generators": [{"kind": "zigzag"}]})
    with pytest.raises(ValidationError, match="unique"):
        LabelsConfig.model_validate({"generators": [{"direction": "up"}, {"direction": "up"}]})
    with pytest.raises(ValidationError, match="horizon"):
        parse_label({"kind": "forward", "horizon": 0})
    with pytest.raises(ValidationError, match="extra"):
        parse_label({"kind": "forward", "horizn": 5})
    frame = compute_labels(
        pd.DataFrame({"close": [1.0, 2.0], "high": [1.0, 2.0], "low": [1.0, 2.0]}),
        [ForwardLabel(horizon=1)],
    )
    assert list(frame.columns) == ["up_1pct_1"]


SMALL_SET = FeatureSetSpec.model_validate(
    {
        "frequency": "minute",
        "generators": [
            {"kind": "talib", "name": "RSI", "windows": [14]},
            {"kind": "talib", "name": "MACD"},
            {"kind": "book", "features": ["taker_buy_share", "trade_intensity"], "flow_window": 10},
            {
                "kind": "stats",
                "columns": ["close", "volume"],
                "windows": [20],
                "stats": ["std", "slope"],
            },
        ],
    }
)


def shuffled_future(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    future = frame.iloc[n:].sample(frac=1.0, random_state=rng).reset_index(drop=True)
    future["ts"] = frame["ts"].iloc[n:].to_numpy()  # keep the clock running; shuffle the market
    return pd.concat([frame.iloc[:n], future], ignore_index=True)


@pytest.mark.parametrize(("n", "seed"), [(200, 1), (1500, 2), (3000, 3)])
def test_shuffling_future_rows_never_changes_a_feature_value(
    fil_days: pd.DataFrame, n: int, seed: int
) -> None:
    original = compute_batch(fil_days, SMALL_SET).to_numpy()
    shuffled = compute_batch(shuffled_future(fil_days, n, seed), SMALL_SET).to_numpy()
    assert np.array_equal(original[:n], shuffled[:n], equal_nan=True)
    assert not np.array_equal(original[n:], shuffled[n:], equal_nan=True)  # the shuffle bites


def test_shuffling_future_rows_changes_labels_but_never_the_training_features(
    fil_days: pd.DataFrame,
) -> None:
    label = ForwardLabel(horizon=30, threshold_pct=0.3)
    n = 2000
    before = build_dataset(fil_days, SMALL_SET, label)
    after = build_dataset(shuffled_future(fil_days, n, 7), SMALL_SET, label)
    rows = n - (before.plan.warmup_rows - 1)  # dataset rows that come from bars before n
    assert np.array_equal(before.features[:rows], after.features[:rows], equal_nan=True)
    # Labels are made of the future, so the same shuffle changes some of the earlier labels:
    # proof that the features above would have changed had any label leaked into them.
    assert not np.array_equal(before.labels[:rows], after.labels[:rows], equal_nan=True)
    assert not set(before.feature_names) & {label.label, "label"}
