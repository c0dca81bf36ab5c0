"""MLflow tracking: every training run logged with its parameters, metrics and artifacts.

Runs go to a local SQLite store by default (`sqlite:///<models.dir>/mlflow.db`, artifacts in
`<models.dir>/mlartifacts/`), or to a tracking server given its URI. Only `MlflowClient` is
used, never mlflow's process-wide active-run state, so two trackers can live in one process.

Each run carries: parameters (LightGBM, label, training options), metrics, tags (symbol, label,
feature-set hash, data range, kind), the precision/recall plot and the bundle directory under
the artifact path `bundle/`, which `tickloop promote RUN` installs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

BUNDLE_ARTIFACT = "bundle"
_MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter value


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One tracked run, as `tickloop models` lists it."""

    run_id: str
    name: str
    symbol: str
    label: str
    kind: str
    status: str
    start_ms: int
    metrics: dict[str, float]
    tags: dict[str, str]


class Tracker:
    """Log runs to one MLflow experiment."""

    def __init__(self, tracking_uri: str, experiment: str = "tickloop") -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=_artifact_location(tracking_uri, experiment)
            )
        else:
            self.experiment_id = found.experiment_id

    def start(self, name: str, tags: Mapping[str, str], parent_run_id: str | None = None) -> str:
        """Open a run and return its id."""
        all_tags = dict(tags)
        if parent_run_id is not None:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def log(
        self,
        run_id: str,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Log parameters (flattened), finite metrics and tags in one batch."""
        flat = flatten(params or {})
        self.client.log_batch(
            run_id,
            metrics=[
                Metric(k, float(v), 0, 0)
                for k, v in (metrics or {}).items()
                if v is not None and math.isfinite(float(v))
            ],
            params=[Param(k, v[:_MAX_PARAM_CHARS]) for k, v in flat.items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        """Upload a file or a directory's content under `artifact_path`."""
        if Path(path).is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def finish(self, run_id: str, failed: bool = False) -> None:
        """Close a run."""
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    def runs(
        self,
        metric: str = "val_profit_pct",
        symbol: str | None = None,
        label: str | None = None,
        kind: str | None = None,
        ascending: bool = False,
        limit: int = 50,
    ) -> list[RunSummary]:
        """Return runs sorted by a metric (runs without it last), optionally filtered."""
        filters = []
        for key, value in (("symbol", symbol), ("label", label), ("kind", kind)):
            if value is not None:
                filters.append(f"tags.{key} = '{value}'")
        order = "ASC" if ascending else "DESC"
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=" and ".join(filters),
            order_by=[f"metrics.`{metric}` {order}", "attributes.start_time DESC"],
            max_results=limit,
        )
        return [
            RunSummary(
                run_id=run.info.run_id,
                name=run.info.run_name or "",
                symbol=run.data.tags.get("symbol", ""),
                label=run.data.tags.get("label", ""),
                kind=run.data.tags.get("kind", ""),
                status=run.info.status,
                start_ms=int(run.info.start_time or 0),
                metrics=dict(run.data.metrics),
                tags=dict(run.data.tags),
            )
            for run in runs
        ]

    def download_bundle(self, run_id: str, destination: Path) -> Path:
        """Download a run's bundle artifact into `destination`; return the bundle directory."""
        destination.mkdir(parents=True, exist_ok=True)
        local = self.client.download_artifacts(run_id, BUNDLE_ARTIFACT, str(destination))
        return Path(local)

    def run_tags(self, run_id: str) -> dict[str, str]:
        """Return a run's tags."""
        return dict(self.client.get_run(run_id).data.tags)


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested parameters to dotted keys with string values (lists as JSON)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value, default=str)
        else:
            out[name] = str(value)
    return out


def _artifact_location(tracking_uri: str, experiment: str) -> str | None:
    # With a local SQLite store, artifacts go next to the database instead of the working dir.
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite":
        return None
    db_path = Path(tracking_uri[len("sqlite:///") :])
    return (db_path.parent / "mlartifacts" / experiment).resolve().as_uri()
