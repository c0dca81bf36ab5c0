"""The `models:` config section: training, walk-forward, tracking and sweep settings.

Frozen pydantic models with `extra="forbid"`, to embed as `models: ModelsConfig` in the
application config (the `labels:` section is strategy.labels.LabelsConfig).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

Fraction = Annotated[float, Field(gt=0, lt=1)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LightGBMParams(_Spec):
    """LightGBM binary-classifier parameters (the ones a sweep usually touches)."""

    num_boost_round: PositiveInt = 200
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.05
    num_leaves: Annotated[int, Field(ge=2, le=4096)] = 31
    max_depth: int = -1
    min_data_in_leaf: PositiveInt = 100
    feature_fraction: Annotated[float, Field(gt=0, le=1)] = 0.8
    bagging_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    bagging_freq: Annotated[int, Field(ge=0)] = 0
    lambda_l2: Annotated[float, Field(ge=0)] = 0.0
    num_threads: PositiveInt = 2
    seed: int = 0

    def booster_params(self) -> dict[str, Any]:
        """Return the parameters for lightgbm.train (rounds excluded)."""
        params = self.model_dump(exclude={"num_boost_round"})
        params.update(objective="binary", verbose=-1, deterministic=True, force_col_wise=True)
        return params


class WalkForwardConfig(_Spec):
    """Re-train every `retrain_days` and score only the days that follow, as live would."""

    retrain_days: Annotated[float, Field(gt=0)] = 7.0
    train_days: Annotated[float, Field(gt=0)] | None = None  # None: every day before (expanding)
    min_train_days: Annotated[float, Field(gt=0)] = 7.0


class TrainConfig(_Spec):
    """How one model is trained, validated and given its threshold."""

    lightgbm: LightGBMParams = LightGBMParams()
    baseline: bool = True  # also fit a logistic regression and log its metrics
    validation_fraction: Fraction = 0.25
    purge_rows: Annotated[int, Field(ge=0)] | None = None  # None: the label's horizon
    fee_pct: Annotated[float, Field(ge=0, lt=5)] = 0.05  # per side (taker), in percent
    recalls: tuple[Fraction, ...] = (0.05, 0.1, 0.2, 0.5)
    min_trades: PositiveInt = 5  # a threshold needs this many validation trades to count
    threshold_candidates: Annotated[int, Field(ge=10, le=2000)] = 200
    walk_forward: WalkForwardConfig = WalkForwardConfig()


class SweepSpace(_Spec):
    """One searched parameter: a float/int range, or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    @field_validator("choices")
    @classmethod
    def _some_choices(cls, value: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        if value is not None and not value:
            raise ValueError("give at least one choice")
        return value

    @model_validator(mode="after")
    def _range_or_choices(self) -> SweepSpace:
        ranged = self.low is not None and self.high is not None
        if ranged == (self.choices is not None):
            raise ValueError("give either `low` and `high`, or `choices`")
        if ranged and self.low > self.high:  # type: ignore[operator]
            raise ValueError("`low` must not exceed `high`")
        return self


class SweepConfig(_Spec):
    """An Optuna search over feature windows, label parameters and LightGBM parameters.

    `space` keys are dotted paths into the trial's definitions: `label.threshold_pct`,
    `lightgbm.num_leaves`, `features.generators.1.windows` (list index by number).
    """

    trials: PositiveInt = 20
    storage: str | None = None  # None: sqlite:///<models.dir>/optuna.db; postgresql://... to share
    study: str = "tickloop"
    objective: str = "val_profit_pct"
    direction: Literal["maximize", "minimize"] = "maximize"
    seed: int | None = 0
    space: dict[str, SweepSpace] = Field(
        default_factory=lambda: {
            "label.threshold_pct": SweepSpace(low=0.5, high=2.0),
            "lightgbm.num_leaves": SweepSpace(low=8, high=64, integer=True, log=True),
            "lightgbm.learning_rate": SweepSpace(low=0.02, high=0.2, log=True),
        }
    )


class ModelsConfig(_Spec):
    """The `models:` section: where bundles live, how runs are tracked, how models train."""

    dir: Path = Path("models")  # live bundles: <dir>/<SYMBOL>/<label>/
    tracking_uri: str | None = None  # None: sqlite:///<dir>/mlflow.db
    experiment: str = "tickloop"
    train: TrainConfig = TrainConfig()
    sweep: SweepConfig = SweepConfig()

    def resolved_tracking_uri(self) -> str:
        """Return the MLflow tracking URI: the configured one, else a SQLite file in `dir`."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.dir / 'mlflow.db').resolve()}"
