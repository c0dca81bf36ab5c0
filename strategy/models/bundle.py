"""Model bundles: a directory with the LightGBM model file and a manifest that describes it.

    <bundle>/model.txt      LightGBM text model
    <bundle>/manifest.json  ordered feature names, feature-set hash and definition, warm-up,
                            label definition, threshold, training range, metrics, library
                            versions, sha256 of every file, and the manifest's own checksum

`read_bundle` verifies everything it can before anything scores: the manifest's checksum, the
manifest's shape, the files' checksums, and the model text's structure. Given the engine's
feature plan, it also checks that the bundle was trained on the same feature set: same hash,
same ordered columns. Each refusal is a BundleError naming the reason, e.g.
`checksum mismatch: model.txt`. The model file is read once: the returned Bundle carries the
verified text, and scorers load that text rather than the file.

The checksums are not a signature: anyone who edits a bundle can stamp new ones. So the shape
checks do not rely on them. Every field the engine reads must have its type and range
(`malformed manifest.json: ...`). The model text must be a complete LightGBM model
(`malformed model.txt: ...`, see model_text.py): LightGBM kills the process on a cut-short one
instead of raising.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from strategy.features import FeaturePlan
from strategy.models.model_text import ModelTextError, check_model_text
from strategy.models.profit import NO_TRADE_THRESHOLD

FORMAT_VERSION = 1
MODEL_FILE = "model.txt"
MANIFEST_FILE = "manifest.json"
_LIBRARIES = ("lightgbm", "numpy", "pandas", "scikit-learn", "ta-lib", "tickloop")


class BundleError(Exception):
    """A bundle cannot be used; the message names the reason (checksum, hash, format...)."""


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk, with the model text exactly as it was verified."""

    path: Path
    manifest: dict[str, Any]
    # The checked model text: loading from it, not from model.txt again, means a file swapped
    # on disk after the checks never reaches LightGBM.
    model_text: str = field(repr=False)

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
    return Bundle(path, manifest, model_text)


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
    check_manifest_shape(manifest)
    model_text = ""
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"missing file: {name}")
        blob = file.read_bytes()  # one read: the bytes checked are the bytes hashed
        if hashlib.sha256(blob).hexdigest() != expected:
            raise BundleError(f"checksum mismatch: {name}")
        if name == MODEL_FILE:
            _check_model(blob, len(manifest["feature_names"]))
            model_text = blob.decode("utf-8")  # check_model_text accepted it as UTF-8
    bundle = Bundle(path, manifest, model_text)
    if plan is not None:
        check_feature_set(bundle, plan)
    return bundle


def _check_model(blob: bytes, n_feature_names: int) -> None:
    try:
        summary = check_model_text(blob)
    except ModelTextError as exc:
        raise BundleError(f"malformed {MODEL_FILE}: {exc}") from None
    if summary.num_features != n_feature_names:
        raise BundleError(
            f"malformed {MODEL_FILE}: the model has {summary.num_features} features, "
            f"the manifest names {n_feature_names}"
        )


# -- manifest shape: every field the engine reads, typed and in range --------------------------

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_SYMBOL = re.compile(r"[A-Z0-9]{2,20}")  # Binance's shape (engine.model.SYMBOL_RE)


def _malformed(field: str, problem: str, value: Any) -> BundleError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:60] + "..."
    return BundleError(f"malformed {MANIFEST_FILE}: {field} {problem}, got {shown}")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_path_name(value: Any) -> bool:
    """A non-empty single path component (symbols and labels name directories on promote)."""
    return (
        isinstance(value, str)
        and value.strip() == value != ""
        and value not in (".", "..")
        and not any(c in value for c in "/\\\0")
        and value.isprintable()
    )


def _section(manifest: dict[str, Any], key: str) -> dict[str, Any]:
    value = manifest.get(key)
    if not isinstance(value, dict):
        raise _malformed(key, "must be an object", value)
    return value


def check_manifest_shape(manifest: dict[str, Any]) -> None:
    """Raise BundleError unless every field the engine reads has its type and range."""
    if not _is_int(manifest["format"]):
        raise BundleError(
            f"unsupported bundle format {manifest['format']!r} (expected {FORMAT_VERSION})"
        )
    symbol = manifest.get("symbol")
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
        raise _malformed("symbol", "must be a Binance symbol (A-Z, 0-9)", symbol)
    names = manifest.get("feature_names")
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        raise _malformed("feature_names", "must be a list of distinct non-empty strings", names)
    feature_set = _section(manifest, "feature_set")
    if not isinstance(feature_set.get("name"), str) or not feature_set["name"]:
        raise _malformed("feature_set.name", "must be a non-empty string", feature_set.get("name"))
    if not isinstance(feature_set.get("hash"), str) or not _SHA256_HEX.fullmatch(
        feature_set["hash"]
    ):
        raise _malformed("feature_set.hash", "must be a hex sha256", feature_set.get("hash"))
    warmup = feature_set.get("warmup_rows")
    if not _is_int(warmup) or warmup < 0:
        raise _malformed("feature_set.warmup_rows", "must be an integer >= 0", warmup)
    label = _section(manifest, "label")
    if not _is_path_name(label.get("name")):
        raise _malformed(
            "label.name", "must be a non-empty name without path separators", label.get("name")
        )
    if not _is_int(label.get("side")) or label["side"] not in (1, -1):
        raise _malformed("label.side", "must be 1 (rise) or -1 (fall)", label.get("side"))
    threshold = manifest.get("threshold")
    # a model that should never trade carries NO_TRADE_THRESHOLD, just above 1
    if not _is_number(threshold) or not 0 <= threshold <= NO_TRADE_THRESHOLD:
        raise _malformed(
            "threshold", "must be a number in [0, 1] (or the no-trade 1 + 1e-9)", threshold
        )
    _section(manifest, "training")
    metrics = _section(manifest, "metrics")
    if not all(_is_number(v) for v in metrics.values()):
        raise _malformed("metrics", "must map names to numbers", metrics)
    libraries = _section(manifest, "libraries")
    if not all(isinstance(v, str) for v in libraries.values()):
        raise _malformed("libraries", "must map names to version strings", libraries)
    if "mlflow_run_id" in manifest and not isinstance(manifest["mlflow_run_id"], str):
        raise _malformed("mlflow_run_id", "must be a string", manifest["mlflow_run_id"])
    files = _section(manifest, "files")
    if MODEL_FILE not in files:
        raise BundleError(f"manifest lists no {MODEL_FILE}")
    for name, digest in files.items():
        if (
            not _is_path_name(name)
            or not isinstance(digest, str)
            or not _SHA256_HEX.fullmatch(digest)
        ):
            raise _malformed(
                f"files[{name!r}]", "must name a file in the bundle by hex sha256", digest
            )


def check_feature_set(bundle: Bundle, plan: FeaturePlan) -> None:
    """Raise BundleError unless the bundle was trained on exactly this feature set."""
    if bundle.feature_set_hash != plan.hash:
        raise BundleError(
            f"feature-set hash mismatch: bundle {bundle.feature_set_hash[:12]} was trained on "
            f"other features than the configured set {plan.spec.label!r} ({plan.hash[:12]})"
        )
    if bundle.feature_names != plan.columns:
        raise BundleError("feature names differ from the configured feature set's columns")
