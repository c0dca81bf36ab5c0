"""Per-coin scores: each model's buy confidence in [0, 1], rise and fall combined into [-1, +1].

A *rise* model (label side +1: `up`, `highlow2 up`, `topbot2 bot`) gives the confidence that the
price will rise as its label says; a *fall* model (side -1) that it will fall. The combined score
is `rise - fall`: +1 is a sure rise, -1 a sure fall, 0 no opinion or a draw. Signal
notifications use it; trading decisions compare each confidence with its model's threshold.

`LiveModel` is what the engine holds per coin and label: a verified bundle (whose feature set
must be the configured one, and whose symbol the coin's) and a fast scorer built from the text
the verification read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
from lightgbm.basic import LightGBMError

from strategy.features import FeaturePlan
from strategy.models.bundle import MODEL_FILE, Bundle, BundleError, read_bundle
from strategy.models.scorer import Explanation, FastScorer, ScorerError


def combine_scores(rise: float | None, fall: float | None) -> float:
    """Combine a rise and a fall confidence (either may be missing) into [-1, +1]."""
    up = 0.0 if rise is None or not np.isfinite(rise) else min(max(rise, 0.0), 1.0)
    down = 0.0 if fall is None or not np.isfinite(fall) else min(max(fall, 0.0), 1.0)
    return up - down


@dataclass
class LiveModel:
    """One coin's model for one label, ready to score streaming feature vectors."""

    bundle: Bundle
    scorer: FastScorer

    @property
    def threshold(self) -> float:
        return self.bundle.threshold

    @property
    def side(self) -> int:
        return self.bundle.side

    def confidence(self, vector: np.ndarray) -> float:
        """Return the buy confidence in [0, 1] for one feature vector."""
        return self.scorer.score(vector)

    def signal(self, vector: np.ndarray) -> bool:
        """True when the confidence reaches the model's threshold."""
        return self.scorer.score(vector) >= self.bundle.threshold

    def explain(self, vector: np.ndarray, top: int = 5) -> Explanation:
        """Return the score with its top feature contributions."""
        return self.scorer.explain(vector, top)


def load_live_model(bundle_dir: Path, plan: FeaturePlan, symbol: str | None = None) -> LiveModel:
    """Load and verify a bundle against the feature plan (and coin); BundleError says why not."""
    bundle = read_bundle(bundle_dir, plan)
    if symbol is not None:
        check_bundle_symbol(bundle, symbol)
    return live_model_from(bundle)


def check_bundle_symbol(bundle: Bundle, symbol: str) -> None:
    """Raise BundleError unless the bundle learned the coin whose directory holds it."""
    # The directory says which coin a bundle scores; the manifest says which it learned.
    if bundle.symbol != symbol.upper():
        raise BundleError(
            f"symbol mismatch: the bundle was trained for {bundle.symbol}, "
            f"installed for {symbol.upper()}"
        )


def live_model_from(bundle: Bundle) -> LiveModel:
    """Build the scorer from the bundle's verified model text (model.txt is not read again)."""
    try:
        booster = lgb.Booster(model_str=bundle.model_text)
        scorer = FastScorer(booster, bundle.feature_names)
    except (LightGBMError, ScorerError, ValueError) as exc:
        # read_bundle checked the structure; what LightGBM still refuses is refused here.
        raise BundleError(f"unloadable {MODEL_FILE}: {exc}") from None
    return LiveModel(bundle, scorer)


def live_bundle_dir(models_dir: Path, symbol: str, label: str) -> Path:
    """Return where a coin's live bundle for a label lives."""
    return Path(models_dir) / symbol.upper() / label


def load_coin_models(models_dir: Path, symbol: str, plan: FeaturePlan) -> list[LiveModel]:
    """Load every live bundle installed for a coin (each verified against the plan)."""
    root = Path(models_dir) / symbol.upper()
    if not root.is_dir():
        return []
    models = []
    for bundle_dir in sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    ):
        models.append(load_live_model(bundle_dir, plan, symbol))
    return models


@dataclass(frozen=True, slots=True)
class CoinScore:
    """One coin's scores for one feature vector."""

    confidences: dict[str, float]  # label -> confidence in [0, 1]
    score: float  # combined, in [-1, +1]


def score_coin(models: Iterable[LiveModel], vector: np.ndarray) -> CoinScore:
    """Score a vector with every model of a coin and combine rise against fall."""
    confidences: dict[str, float] = {}
    rise: list[float] = []
    fall: list[float] = []
    for model in models:
        value = model.confidence(vector)
        confidences[model.bundle.label_name] = value
        (rise if model.side > 0 else fall).append(value)
    if not confidences:
        raise BundleError("no model to score with")
    return CoinScore(
        confidences,
        combine_scores(max(rise) if rise else None, max(fall) if fall else None),
    )
