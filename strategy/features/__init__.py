"""Feature engine: one definition per feature set, executed in batch and streaming.

Public API (see docs/features.md):

* config models (spec.py): FeaturesConfig (embed as `features`), FeatureSetSpec,
  TalibGenerator, BookGenerator, StatsGenerator, CustomGenerator
* compile_feature_set(spec) -> FeaturePlan (columns, look-backs, warmup_rows, hash, metadata())
* compute_batch(frame, feature_set) -> DataFrame
* StreamingFeatures(feature_set): update(row) -> ndarray | None, columns, warm, warmup_rows
* check_parity(frame, feature_set, rtol=1e-9) -> ParityReport
* run_features_command(...), run_parity_command(...): the `tickloop features` / `parity` bodies
* feature_function(lookback=..., columns=...): declare a custom generator's contract
"""

from strategy.features.batch import MissingColumnsError, compute_batch
from strategy.features.commands import FeaturesWritten, read_features_metadata, run_features_command
from strategy.features.custom import feature_function
from strategy.features.parity import (
    ColumnMismatch,
    ParityReport,
    check_parity,
    run_parity_command,
    select_feature_set,
)
from strategy.features.plan import (
    FeaturePlan,
    compile_feature_set,
    feature_set_hash,
    library_versions,
)
from strategy.features.schema import MINUTE_COLUMNS, SECOND_COLUMNS, infer_frequency
from strategy.features.spec import (
    BookGenerator,
    CustomGenerator,
    FeaturesConfig,
    FeatureSetSpec,
    StatsGenerator,
    TalibGenerator,
    default_feature_sets,
)
from strategy.features.streaming import StreamingFeatures

__all__ = [
    "MINUTE_COLUMNS",
    "SECOND_COLUMNS",
    "BookGenerator",
    "ColumnMismatch",
    "CustomGenerator",
    "FeaturePlan",
    "FeatureSetSpec",
    "FeaturesConfig",
    "FeaturesWritten",
    "MissingColumnsError",
    "ParityReport",
    "StatsGenerator",
    "StreamingFeatures",
    "TalibGenerator",
    "check_parity",
    "compile_feature_set",
    "compute_batch",
    "default_feature_sets",
    "feature_function",
    "feature_set_hash",
    "infer_frequency",
    "library_versions",
    "read_features_metadata",
    "run_features_command",
    "run_parity_command",
    "select_feature_set",
]
