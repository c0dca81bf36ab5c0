"""Damaged model bundles: refused with a BundleError naming why, never loaded, never another error.

A real LightGBM bundle (a small model trained here on random data, written by `write_bundle` for
a real feature plan) is damaged the ways disks, copies and hands damage files: bytes of model.txt
or manifest.json flipped, inserted, deleted, truncated; files deleted, replaced by directories;
the manifest edited as JSON without its checksum. Each goes through the engine's loader
(`strategy.models.load_live_model`: checksums, format, feature set, then the fast scorer), and
the expected outcome is derived here from what was damaged:

    manifest.json absent               -> "missing manifest.json"
    manifest.json not UTF-8 JSON       -> "unreadable manifest.json"
    not an object, or format != 1      -> "unsupported bundle format"
    its content changed                -> "checksum mismatch: manifest.json"
    model.txt absent / bytes changed   -> "missing file: model.txt" / "checksum mismatch: model.txt"
    nothing that matters changed       -> loads, and scores exactly as the original

A bundle edited *and* re-stamped with fresh checksums (the checksum is not a signature) must
still be refused, or be fully usable. That covers a manifest of any shape (issue #8: it used to
load, then raise KeyError/TypeError later), and a model.txt cut at every offset or garbled (it
used to make LightGBM segfault or abort the process). The model cases run in one child process
each, so that a crash fails the test instead of killing pytest.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fuzz_support import DEEP, count, fuzz_settings, profile_name
from hypothesis import given
from hypothesis import strategies as st

from strategy.features import compile_feature_set
from strategy.features.plan import FeaturePlan
from strategy.models import BundleError, load_live_model, write_bundle
from strategy.models.bundle import MANIFEST_FILE, MODEL_FILE, _manifest_checksum
from strategy.models.profit import NO_TRADE_THRESHOLD
from tests.support.tiny_models import stats_feature_set, train_tiny_model

SUITE = "bundles"
SPEC = stats_feature_set("fuzz")


@pytest.fixture(scope="module")
def plan() -> FeaturePlan:
    return compile_feature_set(SPEC)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, plan: FeaturePlan) -> Path:
    """A real bundle: LightGBM trained on random rows with the plan's columns."""
    model_text = train_tiny_model(len(plan.columns), seed=8, rows=400, leaves=4, rounds=8)
    path = tmp_path_factory.mktemp("bundles") / "pristine"
    write_bundle(
        path, model_text, symbol="BTCUSDT", plan=plan,
        label={"name": "up", "kind": "fuzz", "side": 1, "horizon_rows": 30}, threshold=0.6,
        training={"rows": 400}, metrics={"val_roc_auc": 0.61},
    )  # fmt: skip
    return path


VECTOR_SEED = 11


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-bundles")


def _fresh_copy(pristine: Path, workdir: Path) -> Path:
    """Copy the pristine bundle to workdir/up (replacing the previous example's copy)."""
    bundle = workdir / "up"
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(pristine, bundle)
    return bundle


def _scores(model: Any, n_features: int) -> list[float]:
    vectors = np.random.default_rng(VECTOR_SEED).normal(size=(5, n_features))
    return [model.confidence(np.ascontiguousarray(v)) for v in vectors]


# -- damage ---------------------------------------------------------------------------------

_BYTE = st.one_of(st.integers(0, 255), st.sampled_from(list(b' \t\n"{}[],:.0123456789e-\\')))


def _byte_damage(data: st.DataObject, blob: bytes) -> bytes:
    buf = bytearray(blob)
    action = data.draw(st.sampled_from(["flip", "flip", "truncate", "append", "delete", "empty"]))
    if action == "empty":
        return b""
    if action == "truncate":
        return bytes(buf[: data.draw(st.integers(0, max(0, len(buf) - 1)), label="cut")])
    if action == "append":
        return bytes(buf) + data.draw(st.binary(min_size=1, max_size=20), label="tail")
    for _ in range(data.draw(st.integers(1, 5), label="edits")):
        if not buf:
            break
        pos = data.draw(st.integers(0, len(buf) - 1), label="pos")
        if action == "delete":
            del buf[pos]
        else:
            buf[pos] = data.draw(_BYTE, label="byte")
    return bytes(buf)


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8,
)  # fmt: skip


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in items:
        out.append((*prefix, key))
        out += _paths(value, (*prefix, key))
    return out


def _edit_manifest(data: st.DataObject, manifest: dict) -> Any:
    """Delete a key or replace any nested value (including the whole document)."""
    edited: Any = copy.deepcopy(manifest)
    if data.draw(st.integers(0, 14), label="replace all?") == 0:
        return data.draw(_JSON, label="manifest")
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = _paths(edited)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent = edited
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and data.draw(st.booleans(), label="delete?"):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(_JSON, label="value")
    return edited


def _expected(bundle: Path, original_manifest: dict, original_model: bytes) -> str | None:
    """The refusal reason the damage must produce, derived from the files (None: loads)."""
    manifest_path = bundle / MANIFEST_FILE
    if not manifest_path.is_file():
        return "missing manifest.json"
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "unreadable manifest.json"
    if not isinstance(manifest, dict) or manifest.get("format") != 1:
        return "unsupported bundle format"
    if manifest != original_manifest:
        return "checksum mismatch: manifest.json"
    model_path = bundle / MODEL_FILE
    if not model_path.is_file():
        return "missing file: model.txt"
    if model_path.read_bytes() != original_model:
        return "checksum mismatch: model.txt"
    return None


@fuzz_settings(ci_examples=120, deep_examples=5000)
@given(data=st.data())
def test_a_damaged_bundle_is_refused_with_its_reason(
    workdir: Path, pristine: Path, plan: FeaturePlan, data: st.DataObject
) -> None:
    count(SUITE)
    original_manifest = json.loads((pristine / MANIFEST_FILE).read_text(encoding="utf-8"))
    original_model = (pristine / MODEL_FILE).read_bytes()
    bundle = _fresh_copy(pristine, workdir)
    for _ in range(data.draw(st.integers(1, 2), label="damages")):
        target = bundle / data.draw(st.sampled_from([MODEL_FILE, MANIFEST_FILE]), label="file")
        damage = data.draw(
            st.sampled_from(["bytes", "bytes", "edit", "delete", "directory", "extra file"])
        )
        if damage == "extra file":
            (bundle / data.draw(st.sampled_from(["notes.txt", "model.txt.bak"]))).write_bytes(b"x")
        elif not target.is_file():
            continue
        elif damage == "bytes":
            target.write_bytes(_byte_damage(data, target.read_bytes()))
        elif damage == "edit" and target.name == MANIFEST_FILE:
            try:
                manifest = json.loads(target.read_text(encoding="utf-8"))
            except ValueError:
                continue
            target.write_text(json.dumps(_edit_manifest(data, manifest)), encoding="utf-8")
        elif damage == "delete":
            target.unlink()
        elif damage == "directory":
            target.unlink()
            target.mkdir()
    reason = _expected(bundle, original_manifest, original_model)
    try:
        model = load_live_model(bundle, plan)
    except BundleError as exc:
        assert reason is not None, f"refused an intact bundle: {exc}"
        assert str(exc).startswith(reason), (str(exc), reason)
    else:
        assert reason is None, f"loaded a damaged bundle (expected {reason!r})"
        assert model.bundle.manifest == original_manifest
        pristine_model = load_live_model(pristine, plan)
        assert _scores(model, len(plan.columns)) == _scores(pristine_model, len(plan.columns))


# -- re-stamped manifests: the checksum is not a signature --------------------------------------


def _restamp(bundle: Path, manifest: Any) -> None:
    if isinstance(manifest, dict):
        manifest["manifest_sha256"] = _manifest_checksum(manifest)
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")


@fuzz_settings(ci_examples=60, deep_examples=2000, shrink=False)
@given(data=st.data())
def test_a_restamped_manifest_is_refused_or_fully_usable(
    workdir: Path, pristine: Path, plan: FeaturePlan, data: st.DataObject
) -> None:
    count(SUITE)
    bundle = _fresh_copy(pristine, workdir)
    manifest = json.loads((bundle / MANIFEST_FILE).read_text(encoding="utf-8"))
    edited = _edit_manifest(data, manifest)
    if isinstance(edited, dict) and MODEL_FILE not in str(edited.get("files")):
        edited.setdefault("files", manifest["files"])  # keep model.txt listed: checksums hold
    _restamp(bundle, edited)
    try:
        model = load_live_model(bundle, plan)
    except BundleError:
        return
    # loaded: everything the engine reads from a bundle must be usable
    assert np.isfinite(model.threshold) and 0 <= model.threshold <= NO_TRADE_THRESHOLD
    assert model.side in (1, -1)
    assert isinstance(model.bundle.label_name, str) and model.bundle.symbol
    assert model.bundle.warmup_rows >= 0
    scores = _scores(model, len(plan.columns))
    assert all(0 <= s <= 1 for s in scores)


_CHILD = """
import sys
from pathlib import Path
from strategy.features import FeatureSetSpec, compile_feature_set
from strategy.models import BundleError, load_live_model
spec = FeatureSetSpec.model_validate_json(sys.argv[2])
try:
    load_live_model(Path(sys.argv[1]), compile_feature_set(spec))
except BundleError as exc:
    print("refused:", exc)
"""


def test_a_restamped_truncated_model_does_not_kill_the_process(
    tmp_path: Path, pristine: Path
) -> None:
    count(SUITE)
    bundle = tmp_path / "up"
    shutil.copytree(pristine, bundle)
    model = (bundle / MODEL_FILE).read_text(encoding="utf-8")
    start = model.index("Tree=1")
    (bundle / MODEL_FILE).write_text(model[: start + (model.index("Tree=2") - start) // 2])
    manifest = json.loads((bundle / MANIFEST_FILE).read_text(encoding="utf-8"))
    from strategy.models.bundle import sha256_file

    manifest["files"][MODEL_FILE] = sha256_file(bundle / MODEL_FILE)
    _restamp(bundle, manifest)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(bundle), SPEC.model_dump_json()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert child.returncode == 0, (child.returncode, child.stderr[-500:])
    assert child.stdout.startswith("refused:"), child.stdout


_CHILD_PRELUDE = """
import hashlib, json, random, sys
from pathlib import Path
import numpy as np
from strategy.features import FeatureSetSpec, compile_feature_set
from strategy.models import BundleError, load_live_model
from strategy.models.bundle import MANIFEST_FILE, MODEL_FILE, _manifest_checksum
bundle, model = Path(sys.argv[1]), Path(sys.argv[2]).read_bytes()
plan = compile_feature_set(FeatureSetSpec.model_validate_json(sys.argv[3]))
manifest = json.loads((bundle / MANIFEST_FILE).read_text(encoding="utf-8"))
def overwrite(path, data):
    # in place: truncating to zero first makes ext4 flush on close (~2 ms a file)
    with path.open("r+b") as fh:
        fh.write(data)
        fh.truncate()
def install_restamped(data):
    overwrite(bundle / MODEL_FILE, data)
    manifest["files"][MODEL_FILE] = hashlib.sha256(data).hexdigest()
    manifest["manifest_sha256"] = _manifest_checksum(manifest)
    overwrite(bundle / MANIFEST_FILE, json.dumps(manifest).encode())
"""


def _last_tried(stderr: str) -> str:
    """The last case number a child printed before it died (and LightGBM's last words)."""
    numbers = [line for line in stderr.splitlines() if line.isdigit()]
    return f"{numbers[-1] if numbers else None}; stderr ends {stderr[-300:]!r}"


_CUTS_CHILD = (
    _CHILD_PRELUDE
    + """
vectors = np.random.default_rng(int(sys.argv[4])).normal(size=(5, len(plan.columns)))
refused, loaded = {}, {}
for cut in range(len(model) + 1):
    install_restamped(model[:cut])
    print(cut, file=sys.stderr, flush=True)  # the last line names the cut that killed us
    try:
        live = load_live_model(bundle, plan)
    except BundleError as exc:
        refused[cut] = str(exc)
    else:
        loaded[cut] = [live.confidence(np.ascontiguousarray(v)) for v in vectors]
print(json.dumps({"refused": refused, "loaded": loaded}))
"""
)


def test_a_restamped_model_cut_at_any_offset_is_refused_or_complete(
    tmp_path: Path, pristine: Path, plan: FeaturePlan
) -> None:
    """Every prefix of model.txt, re-stamped: refused as malformed, or a complete model.

    One child process tries every offset, so a crash fails this test (naming the offset)
    instead of killing pytest. A prefix may load only if it holds every tree (it ends after
    `end of trees`, at the end of an optional section), and then it scores exactly as the
    whole model.
    """
    count(SUITE)
    bundle = tmp_path / "up"
    shutil.copytree(pristine, bundle)
    model = (pristine / MODEL_FILE).read_bytes()
    child = subprocess.run(
        [sys.executable, "-c", _CUTS_CHILD, str(bundle), str(pristine / MODEL_FILE),
         SPEC.model_dump_json(), str(VECTOR_SEED)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert child.returncode == 0, (child.returncode, "at cut", _last_tried(child.stderr))
    outcome = json.loads(child.stdout.splitlines()[-1])
    refused = {int(k): v for k, v in outcome["refused"].items()}
    loaded = {int(k): v for k, v in outcome["loaded"].items()}
    assert sorted(refused.keys() | loaded.keys()) == list(range(len(model) + 1))
    trees_end = model.index(b"end of trees\n") + len(b"end of trees\n")
    assert all(cut in refused for cut in range(trees_end)), "loaded a model missing trees"
    for cut, reason in refused.items():
        assert reason.startswith("malformed model.txt: "), (cut, reason)
    assert len(model) in loaded, refused.get(len(model))
    whole = _scores(load_live_model(pristine, plan), len(plan.columns))
    for cut, scores in loaded.items():
        assert scores == whole, (cut, model[cut - 30 : cut])


_GARBLE_CHILD = (
    _CHILD_PRELUDE
    + """
examples, rng = int(sys.argv[4]), random.Random(int(sys.argv[5]))
vectors = np.random.default_rng(0).normal(size=(4, len(plan.columns)))
vectors[0, :] = np.nan
trees_end = model.index(b"end of trees")
outcome = {"refused": 0, "loaded": 0}
for example in range(examples):
    damaged = bytearray(model)
    for _ in range(rng.choice([1, 1, 2, 3])):
        # mostly the header and trees, where LightGBM trusts sizes, lengths and indices
        pos = rng.randrange(trees_end if rng.random() < 0.8 else len(damaged))
        byte = rng.choice(b"0123456789--- .=\\ne")
        if rng.random() < 0.8:
            damaged[pos] = byte
        elif rng.random() < 0.5:
            del damaged[pos]
        else:
            damaged.insert(pos, byte)
    install_restamped(bytes(damaged))
    print(example, file=sys.stderr, flush=True)  # the last line names the example that killed us
    try:
        live = load_live_model(bundle, plan)
    except BundleError:
        outcome["refused"] += 1
        continue
    outcome["loaded"] += 1
    for vector in vectors:
        live.confidence(vector)
        live.explain(vector)
print(json.dumps(outcome))
"""
)


def test_a_restamped_garbled_model_is_refused_or_scores(
    tmp_path: Path, pristine: Path, plan: FeaturePlan
) -> None:
    """Bytes of model.txt replaced, deleted or inserted, re-stamped: refused, or it scores.

    In one child process (a crash fails the test, naming the example). Same-length edits of
    digits keep tree_sizes right, so many reach LightGBM: child indices, split features,
    array lengths, decision types. Those must be caught before it indexes with them; a
    leaf value or threshold edited into another number is still a model and scores.
    """
    count(SUITE)
    bundle = tmp_path / "up"
    shutil.copytree(pristine, bundle)
    examples = 2000 if profile_name() == DEEP else 200
    child = subprocess.run(
        [sys.executable, "-c", _GARBLE_CHILD, str(bundle), str(pristine / MODEL_FILE),
         SPEC.model_dump_json(), str(examples), "8"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert child.returncode == 0, (child.returncode, "at example", _last_tried(child.stderr))
    outcome = json.loads(child.stdout.splitlines()[-1])
    assert outcome["refused"] + outcome["loaded"] == examples
    assert outcome["refused"] > 0 and outcome["loaded"] > 0, outcome  # both paths exercised
