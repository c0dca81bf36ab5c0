"""Promoted model bundles scoring the live feature vectors: one `ScoreUpdated` per vector.

At start every bundle under `models.dir/SYMBOL/<label>/` is verified against the configured
feature set it names (checksums, feature-set hash, columns) and against its directory's coin
(the manifest's symbol must be SYMBOL: a bundle copied into another coin's directory would score
that coin with a model trained on another market). A bundle that fails is refused in
one log line naming the reason, and its coin is not traded at all: scoring that coin with the
remaining bundles would give a different decision than the one the user promoted.

`LiveModels` is a LiveFeatures listener: each vector of the bundles' feature set is scored with
the fast C-API scorer (rise and fall models combined by strategy.models.score_coin) and handed to
the listeners as the strategy's `ScoreUpdated`, with the rise model's top contributions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import structlog

from strategy.features.plan import FeaturePlan
from strategy.models import BundleError, LiveModel, load_live_model
from strategy.models.bundle import MANIFEST_FILE
from strategy.models.score import score_coin
from strategy.signals.events import ScoreUpdated

ScoreListener = Callable[[ScoreUpdated], None]
TOP_CONTRIBUTIONS = 5


def _bundle_set_name(bundle_dir: Path) -> str | None:
    """Read which feature set a bundle names (before verification, to pick the plan)."""
    try:
        manifest = json.loads((bundle_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
        return str(manifest["feature_set"]["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class LiveModels:
    """Every promoted, verified bundle per coin; scores feature vectors as they stream."""

    def __init__(
        self,
        models_dir: Path,
        symbols: Iterable[str],
        plans: Mapping[str, FeaturePlan],
        *,
        top_contributions: int = TOP_CONTRIBUTIONS,
    ) -> None:
        self.log = structlog.get_logger("engine.models")
        self.models: dict[str, list[LiveModel]] = {}
        self.set_label: dict[str, str] = {}  # per symbol: the feature set its bundles score
        self.refused: dict[str, str] = {}  # per symbol: why it is not traded
        self.listeners: list[ScoreListener] = []
        self.latest: dict[str, ScoreUpdated] = {}
        self.top = top_contributions
        for symbol in symbols:
            self._load(Path(models_dir), symbol, plans)

    def _load(self, models_dir: Path, symbol: str, plans: Mapping[str, FeaturePlan]) -> None:
        root = models_dir / symbol.upper()
        if not root.is_dir():
            return
        loaded: list[LiveModel] = []
        for bundle_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            name = _bundle_set_name(bundle_dir)
            plan = plans.get(name or "")
            try:
                if plan is None:
                    raise BundleError(
                        f"trained on feature set {name!r}, which is not configured "
                        f"(configured: {', '.join(sorted(plans))})"
                    )
                loaded.append(load_live_model(bundle_dir, plan, symbol))
            except BundleError as exc:
                self.refused[symbol] = f"{bundle_dir.name}: {exc}"
                self.log.error("model_refused", symbol=symbol, bundle=str(bundle_dir), reason=str(exc))
                return
        labels = {m.bundle.manifest["feature_set"]["name"] for m in loaded}
        if len(labels) > 1:
            self.refused[symbol] = f"bundles use different feature sets: {sorted(labels)}"
            self.log.error("model_refused", symbol=symbol, reason=self.refused[symbol])
            return
        if loaded:
            self.models[symbol] = loaded
            self.set_label[symbol] = labels.pop()
            self.log.info(
                "models_loaded", symbol=symbol, feature_set=self.set_label[symbol],
                bundles=[m.bundle.path.name for m in loaded],
                thresholds={m.bundle.label_name: m.threshold for m in loaded},
            )

    def reload(self, models_dir: Path, symbols: Iterable[str], plans: Mapping[str, FeaturePlan]) -> None:
        """Load the promoted bundles again and swap them in; listeners stay attached.

        Bundles are verified exactly as at start; a coin whose new bundle is refused loses its
        models (it is not traded) rather than keeping a model the operator replaced.
        """
        fresh = LiveModels(models_dir, symbols, plans, top_contributions=self.top)
        self.models, self.set_label, self.refused = fresh.models, fresh.set_label, fresh.refused
        self.latest = {s: v for s, v in self.latest.items() if s in self.models}

    @property
    def available(self) -> bool:
        """True when at least one coin has verified models."""
        return bool(self.models)

    def score(self, symbol: str, ts_ms: int, vector: np.ndarray) -> ScoreUpdated:
        """Score one vector of a coin: confidences, combined score, top contributions."""
        models = self.models[symbol]
        coin = score_coin(models, vector)
        rise = [m for m in models if m.side > 0]
        fall = [m for m in models if m.side < 0]
        # The strongest model on each side speaks for it, as score_coin combines them.
        best_rise = max(rise, key=lambda m: coin.confidences[m.bundle.label_name], default=None)
        best_fall = max(fall, key=lambda m: coin.confidences[m.bundle.label_name], default=None)
        explained = best_rise or best_fall
        assert explained is not None
        top = explained.explain(vector, self.top).top
        return ScoreUpdated(
            symbol=symbol,
            confidence=coin.confidences[best_rise.bundle.label_name] if best_rise else 0.0,
            threshold=best_rise.threshold if best_rise else 1.0,
            contributions=tuple((c.feature, c.contribution) for c in top),
            ts_ms=ts_ms,
            fall_confidence=coin.confidences[best_fall.bundle.label_name] if best_fall else None,
            fall_threshold=best_fall.threshold if best_fall else None,
            score=coin.score,
        )

    def __call__(self, symbol: str, label: str, ts_ms: int, vector: np.ndarray) -> None:
        """LiveFeatures listener: score vectors of the bundles' feature set, tell the listeners."""
        if self.set_label.get(symbol) != label:
            return
        update = self.score(symbol, ts_ms, vector)
        self.latest[symbol] = update
        for listener in self.listeners:
            listener(update)

    def bundle_id(self, symbol: str) -> str:
        """Name the bundles scoring a coin (for the signal journal)."""
        return ",".join(m.bundle.path.name for m in self.models.get(symbol, []))

    def feature_set_hash(self, symbol: str) -> str:
        models = self.models.get(symbol)
        return models[0].bundle.feature_set_hash if models else ""
