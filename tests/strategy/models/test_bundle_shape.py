"""A bundle re-stamped with valid checksums but a wrong manifest shape, or a broken model text.

The checksums are not a signature, so these tests edit a real bundle and re-stamp it. Each one
checks that read_bundle refuses it with a BundleError that names the field or the model's
defect. The model-text tests also run `check_model_text` directly on the text that LightGBM
writes, edited the way damage or a hand edit would. When a tree edit changes a length, the
tree_sizes header is recomputed, as an editor would, so the check has to catch the defect
itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from engine.livemodels import LiveModels
from strategy.features import compile_feature_set
from strategy.features.plan import FeaturePlan
from strategy.models import BundleError, load_live_model, read_bundle, write_bundle
from strategy.models.bundle import MANIFEST_FILE, MODEL_FILE, _manifest_checksum, sha256_file
from strategy.models.model_text import ModelTextError, check_model_text
from strategy.models.profit import NO_TRADE_THRESHOLD
from tests.support.tiny_models import stats_feature_set, train_tiny_model

SPEC = stats_feature_set("shape")
DELETE = object()


def _train(
    n_features: int, *, leaves: int = 6, rounds: int = 6, seed: int = 3, **extra: Any
) -> str:
    # missing values too: NaN-aware decision types in the trees
    return train_tiny_model(n_features, seed=seed, rows=600, leaves=leaves, rounds=rounds,
                            nan_share=0.05, **extra)  # fmt: skip


@pytest.fixture(scope="module")
def plan() -> FeaturePlan:
    return compile_feature_set(SPEC)


@pytest.fixture(scope="module")
def model_text(plan: FeaturePlan) -> str:
    return _train(len(plan.columns))


def _write(path: Path, model_text: str, plan: FeaturePlan) -> Path:
    write_bundle(
        path, model_text, symbol="BTCUSDT", plan=plan,
        label={"name": "up", "kind": "forward", "side": 1, "horizon_rows": 30}, threshold=0.6,
        training={"rows": 600}, metrics={"val_roc_auc": 0.61}, extra={"mlflow_run_id": "abc"},
    )  # fmt: skip
    return path


@pytest.fixture
def bundle(tmp_path: Path, model_text: str, plan: FeaturePlan) -> Path:
    return _write(tmp_path / "BTCUSDT" / "up", model_text, plan)


def _restamp(bundle: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit the manifest, stamp the model's current sha256 and a fresh manifest checksum."""
    manifest = json.loads((bundle / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["files"][MODEL_FILE] = sha256_file(bundle / MODEL_FILE)
    edit(manifest)
    manifest["manifest_sha256"] = _manifest_checksum(manifest)
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(manifest: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = manifest
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value

    return edit


# -- the manifest's shape ------------------------------------------------------------------------

SHA = "0" * 64
BAD_FIELDS = [
    ("symbol", 5), ("symbol", ""), ("symbol", "../ETHUSDT"), ("symbol", "btcusdt"),
    ("symbol", DELETE),
    ("feature_names", "close_mean_5"), ("feature_names", []), ("feature_names", ["a", 1]),
    ("feature_names", ["a", "a"]), ("feature_names", DELETE),
    ("feature_set", []), ("feature_set.name", None), ("feature_set.name", ""),
    ("feature_set.hash", 7), ("feature_set.hash", "abc"), ("feature_set.warmup_rows", -1),
    ("feature_set.warmup_rows", 2.5), ("feature_set.warmup_rows", True),
    ("feature_set.warmup_rows", "20"), ("feature_set.warmup_rows", DELETE),
    ("label", "up"), ("label.name", ""), ("label.name", "../../x"), ("label.name", ["up"]),
    ("label.name", " up"), ("label.name", ".."), ("label.name", DELETE),
    ("label.side", 0), ("label.side", 2), ("label.side", True), ("label.side", "1"),
    ("label.side", 1.0), ("label.side", DELETE),
    ("threshold", "0.6"), ("threshold", 1.5), ("threshold", -0.1), ("threshold", float("nan")),
    ("threshold", NO_TRADE_THRESHOLD + 1e-9),
    ("threshold", float("inf")), ("threshold", None), ("threshold", True), ("threshold", DELETE),
    ("training", None), ("metrics", {"val_roc_auc": "high"}), ("metrics", [0.6]),
    ("libraries", {"lightgbm": 4}), ("mlflow_run_id", 12),
    ("files", [MODEL_FILE]), ("files", {MODEL_FILE: "abc"}), ("files", DELETE),
    ("files", {MODEL_FILE: SHA, "../manifest.json": SHA}),
]  # fmt: skip


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS, ids=lambda v: repr(v)[:30])
def test_a_restamped_field_of_the_wrong_shape_is_named(
    bundle: Path, field: str, value: Any
) -> None:
    _restamp(bundle, _set(field, value))
    top = field.split(".")[0]
    # the field named is the one edited, or (for a whole section) the section itself
    with pytest.raises(
        BundleError, match=rf"^malformed manifest\.json: ({re.escape(field)}|{top})"
    ):
        read_bundle(bundle)


def test_a_manifest_without_the_model_file_or_with_a_non_integer_format_is_refused(
    bundle: Path,
) -> None:
    _restamp(bundle, _set("files", {}))
    with pytest.raises(BundleError, match=r"^manifest lists no model\.txt$"):
        read_bundle(bundle)
    _restamp(bundle, _set("format", True))  # equal to 1 in Python, not the integer 1
    with pytest.raises(BundleError, match=r"^unsupported bundle format True"):
        read_bundle(bundle)


GOOD_FIELDS = [
    ("threshold", 0), ("threshold", 1), ("threshold", 0.0), ("threshold", NO_TRADE_THRESHOLD),
    ("label.side", -1), ("label.name", "highlow2 up"), ("feature_set.warmup_rows", 0),
    ("metrics", {"val_roc_auc": float("nan")}), ("notes", {"anything": [1, None]}),
    ("training", {}), ("symbol", "1000PEPEUSDT"),
]  # fmt: skip


@pytest.mark.parametrize(("field", "value"), GOOD_FIELDS, ids=lambda v: repr(v)[:30])
def test_a_restamped_field_within_its_range_loads_and_reads_back(
    bundle: Path, plan: FeaturePlan, field: str, value: Any
) -> None:
    _restamp(bundle, _set(field, value))
    live = load_live_model(bundle, plan)
    read = {"threshold": live.threshold, "label.side": live.side,
            "label.name": live.bundle.label_name, "feature_set.warmup_rows": live.bundle.warmup_rows,
            "symbol": live.bundle.symbol}  # fmt: skip
    if field in read:
        assert read[field] == value
    assert isinstance(live.threshold, float) and 0 <= live.threshold <= NO_TRADE_THRESHOLD
    assert 0 <= live.confidence(np.zeros(len(plan.columns))) <= 1


def test_the_engine_refuses_the_coin_of_a_malformed_bundle_and_keeps_the_others(
    tmp_path: Path, model_text: str, plan: FeaturePlan
) -> None:
    models = tmp_path / "models"
    good = _write(models / "BTCUSDT" / "up", model_text, plan)
    bad = _write(models / "ETHUSDT" / "up", model_text, plan)
    _restamp(bad, _set("label.side", "rise"))
    live = LiveModels(models, ["BTCUSDT", "ETHUSDT"], {"shape": plan})
    assert list(live.models) == ["BTCUSDT"] and live.models["BTCUSDT"][0].bundle.path == good
    assert live.refused["ETHUSDT"].startswith("up: malformed manifest.json: label.side")


# -- the model text ------------------------------------------------------------------------------


def _split(text: str) -> tuple[str, list[str], str]:
    """Split a model into header (through tree_sizes), tree blocks, and tail."""
    first = text.index("Tree=0\n")
    end = text.index("end of trees\n")
    blocks = re.split(r"(?=^Tree=\d+\n)", text[first:end], flags=re.MULTILINE)
    return text[:first], [b for b in blocks if b], text[end:]


def _join(header: str, blocks: list[str], tail: str) -> str:
    """Reassemble with tree_sizes recomputed from the blocks (what an editor would do)."""
    sizes = " ".join(str(len(b.encode())) for b in blocks)
    return re.sub(r"(?m)^tree_sizes=.*$", f"tree_sizes={sizes}", header) + "".join(blocks) + tail


def _edit_tree(text: str, key: str, change: Callable[[list[str]], list[str]]) -> str:
    """Change one array line of tree 0 (its values as strings) and fix tree_sizes."""
    header, blocks, tail = _split(text)
    line = re.search(rf"(?m)^{key}=(.*)$", blocks[0])
    assert line is not None
    values = change(line.group(1).split(" "))
    blocks[0] = blocks[0].replace(line.group(0), f"{key}=" + " ".join(values), 1)
    return _join(header, blocks, tail)


def _with(index: int, value: str) -> Callable[[list[str]], list[str]]:
    return lambda values: [value if i == index else v for i, v in enumerate(values)]


def _line_edit(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        header, blocks, tail = _split(text)
        if old in header:
            return _join(header.replace(old, new, 1), blocks, tail)
        if old in blocks[0]:
            blocks[0] = blocks[0].replace(old, new, 1)
            return _join(header, blocks, tail)
        assert old in tail
        return header + "".join(blocks) + tail.replace(old, new, 1)

    return edit


N_FEATURES = 6  # the SPEC's columns: close log-return mean/std/slope over 5 and 20
BROKEN_MODELS: list[tuple[str, Callable[[str], str], str]] = [
    ("internal child out of range", lambda t: _edit_tree(t, "left_child", _with(0, "9")), "bad child"),
    ("child pointing at itself", lambda t: _edit_tree(t, "left_child", _with(1, "1")), "bad child"),
    ("leaf out of range", lambda t: _edit_tree(t, "right_child", _with(0, "-99")), "bad leaf"),
    ("leaf used twice", lambda t: _edit_tree(t, "right_child", lambda v: [v[0], *(["-1"] * (len(v) - 1))]), "bad"),
    ("split on a missing feature", lambda t: _edit_tree(t, "split_feature", _with(0, str(N_FEATURES))), "split on feature"),
    ("negative split feature", lambda t: _edit_tree(t, "split_feature", _with(0, "-1")), "split on feature"),
    ("categorical decision", lambda t: _edit_tree(t, "decision_type", _with(0, "1")), "numerical split"),
    ("unknown missing type", lambda t: _edit_tree(t, "decision_type", _with(0, "12")), "numerical split"),
    ("a leaf value short", lambda t: _edit_tree(t, "leaf_value", lambda v: v[:-1]), "leaf_value has"),
    ("a threshold too many", lambda t: _edit_tree(t, "threshold", lambda v: [*v, "0.5"]), "threshold has"),
    ("NaN leaf", lambda t: _edit_tree(t, "leaf_value", _with(0, "nan")), "not finite"),
    ("garbage number", lambda t: _edit_tree(t, "leaf_count", _with(0, "1x")), "not a list of numbers"),
    ("a key dropped", _line_edit("num_cat=0\n", ""), "lacks num_cat"),
    ("a key twice", _line_edit("is_linear=0\n", "is_linear=0\nis_linear=0\n"), "appears twice"),
    ("categorical tree", _line_edit("num_cat=0\n", "num_cat=1\n"), "categorical or linear"),
    ("linear tree", _line_edit("is_linear=0\n", "is_linear=1\n"), "categorical or linear"),
    ("line without =", _line_edit("is_linear=0\n", "is_linear\n"), "unexpected line"),
    ("blank line inside a tree", _line_edit("is_linear=0\n", "\nis_linear=0\n"), "unexpected line"),
    ("two classes", _line_edit("num_class=1\n", "num_class=2\n"), "not a binary model"),
    ("no trees per iteration", _line_edit("num_tree_per_iteration=1\n", "num_tree_per_iteration=0\n"), "not a binary model"),
    ("regression objective", _line_edit("objective=binary sigmoid:1\n", "objective=regression\n"), "is not binary"),
    ("zero sigmoid", _line_edit("objective=binary sigmoid:1\n", "objective=binary sigmoid:0\n"), "is not binary"),
    ("a feature more", _line_edit(f"max_feature_idx={N_FEATURES - 1}\n", f"max_feature_idx={N_FEATURES}\n"), "does not list"),
    ("other format version", _line_edit("version=v4\n", "version=v3\n"), "is not v4"),
    ("unknown header key", _line_edit("label_index=0\n", "label_index=0\nboost=1\n"), "unexpected header line"),
    ("header key dropped", _line_edit("label_index=0\n", ""), "lacks label_index"),
    ("parameter line without colon", _line_edit("[boosting: gbdt]", "[boosting gbdt]"), "no complete"),
    ("end of trees missing", _line_edit("end of trees\n", "end of tree\n"), "no complete"),
    ("pandas line not JSON", _line_edit("pandas_categorical:null", "pandas_categorical:[["), "not JSON"),
    ("pandas line a number", _line_edit("pandas_categorical:null", "pandas_categorical:5"), "neither null"),
    ("CRLF line ends", lambda t: t.replace("\n", "\r\n"), "carriage return"),
    ("first line", lambda t: "x" + t, "does not start"),
    ("tree sizes off by one", lambda t: t.replace("tree_sizes=", "tree_sizes=1", 1), "tree 0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "reason"), [b[1:] for b in BROKEN_MODELS], ids=[b[0] for b in BROKEN_MODELS]
)
def test_a_broken_model_text_is_refused_with_its_defect(
    model_text: str, edit: Callable[[str], str], reason: str
) -> None:
    broken = edit(model_text)
    assert broken != model_text
    with pytest.raises(ModelTextError, match=re.escape(reason)):
        check_model_text(broken.encode())


def test_the_edits_alone_keep_a_valid_model(model_text: str) -> None:
    """The test's own re-assembly (tree_sizes recomputed) yields exactly the original."""
    assert _join(*_split(model_text)) == model_text
    assert check_model_text(model_text.encode()).num_trees == len(_split(model_text)[1])


def test_every_prefix_is_refused_unless_it_ends_a_complete_model(model_text: str) -> None:
    blob = model_text.encode()
    # Complete prefixes, from the layout LightGBM writes: every tree, then the feature
    # importances (each line ends a complete model), the parameters and the pandas line.
    importances = blob.index(b"feature_importances:\n") + len(b"feature_importances:\n")
    complete = {importances, len(blob)}
    for line in blob[importances : blob.index(b"\nparameters:\n")].splitlines(keepends=True):
        importances += len(line)
        complete.add(importances)
    complete.add(blob.index(b"end of parameters\n") + len(b"end of parameters\n"))
    accepted = set()
    for cut in range(len(blob) + 1):
        try:
            check_model_text(blob[:cut])
        except ModelTextError:
            continue
        accepted.add(cut)
    assert accepted == complete


@pytest.mark.parametrize(
    "params",
    [{"leaves": 2, "rounds": 1}, {"leaves": 31, "rounds": 40}, {"leaves": 4, "rounds": 3, "min_data_in_leaf": 1000}],
    ids=["stump", "31 leaves", "one-leaf trees"],
)  # fmt: skip
def test_lightgbm_models_of_other_shapes_pass_and_load(
    tmp_path: Path, plan: FeaturePlan, params: dict[str, Any]
) -> None:
    text = _train(len(plan.columns), **params)
    booster = lgb.Booster(model_str=text)
    summary = check_model_text(text.encode())
    assert (summary.num_features, summary.num_trees) == (booster.num_feature(), booster.num_trees())
    live = load_live_model(_write(tmp_path / "b", text, plan), plan)
    row = np.random.default_rng(1).normal(size=(1, len(plan.columns)))
    assert live.confidence(row[0]) == booster.predict(row)[0]


def test_a_model_with_other_features_than_the_manifest_is_refused(
    tmp_path: Path, plan: FeaturePlan
) -> None:
    path = _write(tmp_path / "b", _train(len(plan.columns) - 1), plan)
    with pytest.raises(BundleError, match=r"^malformed model\.txt: the model has 5 features"):
        read_bundle(path)


def test_what_lightgbm_still_refuses_is_a_bundle_error(bundle: Path, plan: FeaturePlan) -> None:
    """A parameter value the structure check lets through but LightGBM's loader cannot read."""
    model = bundle / MODEL_FILE
    model.write_text(model.read_text().replace("[metric: binary_logloss]", '[metric: a"b]'))
    _restamp(bundle, lambda manifest: None)
    read_bundle(bundle, plan)  # the structure is fine
    with pytest.raises(BundleError, match=r"^unloadable model\.txt: "):
        load_live_model(bundle, plan)
