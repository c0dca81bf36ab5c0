"""Model bundles: a directory with the LightGBM model file and a manifest that describes it.

    <bundle>/model.txt      LightGBM text model
    <bundle>/manifest.json  ordered feature names, feature-set hash and definition, warm-up,
                            label definition, threshold, training range, metrics, library
                            versions, sha256 of every file, and the manifest's own checksum

`read_bundle` verifies everything it can before anything scores: the files' checksums, the
manifest's checksum, and (given the engine's feature plan) that the bundle was trained on the
same feature set — same hash, same ordered columns. Each refusal is a BundleError naming the
reason, e.g. `checksum mismatch: model.txt`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strategy.features import FeaturePlan

FORMAT_VERSION = 1
MODEL_FILE = "model.txt"
MANIFEST_FILE = "manifest.json"
_LIBRARIES = ("lightgbm", "numpy", "pandas", "scikit-learn", "ta-lib", "tickloop")


class BundleError(Exception):
    """A bundle cannot be used; the message names the reason (checksum, hash, format...)."""


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.manifest["feature_names"])

    @property
    def feature_set_hash(self) -> str:
        return str(self.manifest["feature_set"]["hash"])

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"])

    @property
    def symbol(self) -> str:
        return str(self.manifest["symbol"])

    @property
    def label_name(self) -> str:
        return str(self.manifest["label"]["name"])

    @property
    def side(self) -> int:
        return int(self.manifest["label"]["side"])

    @property
    def warmup_rows(self) -> int:
        return int(self.manifest["feature_set"]["warmup_rows"])


def library_versions() -> dict[str, str]:
    """Return the versions of the libraries a bundle's scores depend on."""
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest_checksum(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def write_bundle(
    path: Path,
    model_text: str,
    *,
    symbol: str,
    plan: FeaturePlan,
    label: dict[str, Any],
    threshold: float,
    training: dict[str, Any],
    metrics: dict[str, float],
    extra: dict[str, Any] | None = None,
) -> Bundle:
    """Write a bundle directory atomically (a temporary sibling renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        (staging / MODEL_FILE).write_text(model_text, encoding="utf-8")
        metadata = plan.metadata()
        manifest: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "symbol": symbol,
            "feature_names": list(plan.columns),
            "feature_set": {
                "name": metadata["name"],
                "frequency": metadata["frequency"],
                "hash": plan.hash,
                "warmup_rows": plan.warmup_rows,
                "definition": metadata["definition"],
                "versions": metadata["versions"],
            },
            "label": label,
            "threshold": float(threshold),
            "training": training,
            "metrics": {k: float(v) for k, v in metrics.items()},
            "libraries": library_versions(),
            "files": {MODEL_FILE: sha256_file(staging / MODEL_FILE)},
            **(extra or {}),
        }
        manifest["manifest_sha256"] = _manifest_checksum(manifest)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Bundle(path, manifest)


def read_bundle(path: Path, plan: FeaturePlan | None = None) -> Bundle:
    """Read and verify a bundle; with `plan`, also require the same feature set (hash, columns)."""
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(f"missing {MANIFEST_FILE} in {path}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"unreadable {MANIFEST_FILE}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise BundleError(f"unsupported bundle format {found!r} (expected {FORMAT_VERSION})")
    if manifest.get("manifest_sha256") != _manifest_checksum(manifest):
        raise BundleError(f"checksum mismatch: {MANIFEST_FILE}")
    for name, expected in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"missing file: {name}")
        if sha256_file(file) != expected:
            raise BundleError(f"checksum mismatch: {name}")
    if MODEL_FILE not in manifest.get("files", {}):
        raise BundleError(f"manifest lists no {MODEL_FILE}")
    bundle = Bundle(path, manifest)
    if plan is not None:
        check_feature_set(bundle, plan)
    return bundle


def check_feature_set(bundle: Bundle, plan: FeaturePlan) -> None:
    """Raise BundleError unless the bundle was trained on exactly this feature set."""
    if bundle.feature_set_hash != plan.hash:
        raise BundleError(
            f"feature-set hash mismatch: bundle {bundle.feature_set_hash[:12]} was trained on "
            f"other features than the configured set {plan.spec.label!r} ({plan.hash[:12]})"
        )
    if bundle.feature_names != plan.columns:
        raise BundleError("feature names differ from the configured feature set's columns")
