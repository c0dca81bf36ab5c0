"""Structural check of a LightGBM text model, before LightGBM itself parses it.

LightGBM trusts its text format. It finds tree i at the byte offset that the header's
`tree_sizes` declares, scans each tree line for '=' with no bound, and indexes arrays by the
child numbers it reads. It also splits each parameter line without checking its shape. So a
model that is cut short or garbled behind a valid checksum makes it read past its buffer. The
process then segfaults or aborts; it does not raise. (LightGBM 4.7, measured: a cut at most
offsets of a model kills the process, including cuts inside the parameters section.)

`check_model_text` runs in pure Python before LightGBM sees the text. It checks everything those
parsers and the single-row predictor rely on:

* header: the `tree` line, known keys once each, `version=v4`, a binary objective with one
  output (num_class = num_tree_per_iteration = 1: the fast scorer's output buffer holds one
  value), and feature names and infos for every feature;
* trees: each one exactly `tree_sizes[i]` bytes long and starting `Tree=i`, with every key
  LightGBM 4 writes, once each. Arrays have the lengths that num_leaves implies. The children
  form one binary tree: from the root, every node is reached exactly once, so there is no
  out-of-range index and no cycle. Split features lie within the model's features. Splits are
  numerical only, because tickloop trains neither categorical nor linear trees;
* tail: `end of trees`, the feature importances, the `[name: value]` parameter lines up to
  `end of parameters`, and the `pandas_categorical:` JSON line written by the Python package.
  Each must be complete.

A cut anywhere therefore fails a check. The one exception is a cut that ends exactly where an
optional section ends: it leaves a complete model, which is accepted. This check covers the
format LightGBM 4 writes; it does not parse every text LightGBM would accept.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

SUPPORTED_VERSION = b"v4"
_MAX_FEATURES = 1 << 20
_MAX_LEAVES = 131072  # LightGBM's own upper bound for num_leaves

_INT = rb"-?\d{1,10}"
_FLOAT = rb"-?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|inf|nan)"
_INTS = re.compile(rb"(?:%s(?: %s)*)?" % (_INT, _INT))
_FLOATS = re.compile(rb"(?:%s(?: %s)*)?" % (_FLOAT, _FLOAT))
_OBJECTIVE = re.compile(rb"binary sigmoid:(%s)" % _FLOAT)
_TAIL = re.compile(
    rb"end of trees\n"
    rb"\nfeature_importances:\n(?:[^\n=]+=\d{1,19}\n)*"
    rb"(?:\nparameters:\n(?:\[[a-z0-9_]+: [^\n]*\]\n)*\nend of parameters\n)?"
    rb"(?:\npandas_categorical:([^\n]*)\n)?"
)

_HEADER_REQUIRED = (
    b"version", b"num_class", b"num_tree_per_iteration", b"label_index", b"max_feature_idx",
    b"objective", b"feature_names", b"feature_infos", b"tree_sizes",
)  # fmt: skip
_HEADER_OPTIONAL = (b"average_output", b"monotone_constraints")

_LEAVES, _INTERNAL = "leaves", "internal"  # an array has num_leaves or num_leaves - 1 values
_TREE_ARRAYS: dict[bytes, tuple[re.Pattern[bytes], str]] = {
    b"split_feature": (_INTS, _INTERNAL),
    b"split_gain": (_FLOATS, _INTERNAL),
    b"threshold": (_FLOATS, _INTERNAL),
    b"decision_type": (_INTS, _INTERNAL),
    b"left_child": (_INTS, _INTERNAL),
    b"right_child": (_INTS, _INTERNAL),
    b"leaf_value": (_FLOATS, _LEAVES),
    b"leaf_weight": (_FLOATS, _LEAVES),
    b"leaf_count": (_INTS, _LEAVES),
    b"internal_value": (_FLOATS, _INTERNAL),
    b"internal_weight": (_FLOATS, _INTERNAL),
    b"internal_count": (_INTS, _INTERNAL),
}
_TREE_SCALARS = (b"num_leaves", b"num_cat", b"is_linear", b"shrinkage")
_TREE_KEYS = frozenset(_TREE_ARRAYS) | frozenset(_TREE_SCALARS)
_CATEGORICAL_BIT = 1
_MISSING_NAN = 2  # missing type lives in bits 2-3: 0 none, 1 zero, 2 NaN


class ModelTextError(ValueError):
    """The model text is not a complete LightGBM 4 binary model; the message says where."""


@dataclass(frozen=True, slots=True)
class ModelTextSummary:
    """What the check learned about a well-formed model."""

    num_features: int
    num_trees: int


def check_model_text(blob: bytes) -> ModelTextSummary:
    """Raise ModelTextError unless blob is a complete, well-formed LightGBM 4 binary model."""
    if b"\r" in blob or b"\0" in blob:
        raise ModelTextError("carriage return or NUL byte in the model text")
    try:
        blob.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelTextError("model text is not UTF-8") from None
    header_end = blob.find(b"\n\n")
    if header_end < 0:
        raise ModelTextError("header is not terminated (model text truncated)")
    n_features, tree_sizes = _check_header(blob[:header_end].split(b"\n"))
    pos = header_end + 2
    for index, size in enumerate(tree_sizes):
        block = blob[pos : pos + size]
        if len(block) != size:
            raise ModelTextError(f"tree {index} is cut short (model text truncated)")
        _check_tree(index, block, n_features)
        pos += size
    tail = _TAIL.fullmatch(blob, pos)
    if tail is None:
        raise ModelTextError(
            "no complete 'end of trees' / feature importances / parameters section after the "
            "trees (model text truncated or garbled)"
        )
    if tail.group(1) is not None:
        try:
            categorical = json.loads(tail.group(1))
        except ValueError:
            raise ModelTextError("pandas_categorical line is not JSON") from None
        if categorical is not None and not isinstance(categorical, list):
            raise ModelTextError("pandas_categorical is neither null nor a list")
    return ModelTextSummary(n_features, len(tree_sizes))


def _check_header(lines: list[bytes]) -> tuple[int, list[int]]:
    """Return (number of features, tree sizes in bytes) from the header lines."""
    if not lines or lines[0] != b"tree":
        raise ModelTextError("model text does not start with a 'tree' line")
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        key, _, value = line.partition(b"=")
        if key not in _HEADER_REQUIRED + _HEADER_OPTIONAL:
            raise ModelTextError(f"unexpected header line {_show(line)}")
        if key in fields:
            raise ModelTextError(f"header key {_show(key)} appears twice")
        fields[key] = value
    missing = [k.decode() for k in _HEADER_REQUIRED if k not in fields]
    if missing:
        raise ModelTextError(f"header lacks {', '.join(missing)} (model text truncated?)")
    if fields[b"version"] != SUPPORTED_VERSION:
        raise ModelTextError(f"model format version {_show(fields[b'version'])} is not v4")
    for key in (b"num_class", b"num_tree_per_iteration"):
        if fields[key] != b"1":
            raise ModelTextError(f"{key.decode()} is {_show(fields[key])}: not a binary model")
    objective = _OBJECTIVE.fullmatch(fields[b"objective"])
    if objective is None or not 0 < float(objective.group(1)) < math.inf:
        raise ModelTextError(f"objective {_show(fields[b'objective'])} is not binary")
    _int(fields[b"label_index"], "label_index", 0, _MAX_FEATURES)
    n_features = _int(fields[b"max_feature_idx"], "max_feature_idx", 0, _MAX_FEATURES - 1) + 1
    for key in (b"feature_names", b"feature_infos"):
        if len(fields[key].split(b" ")) != n_features:
            raise ModelTextError(f"{key.decode()} does not list {n_features} features")
    if b"monotone_constraints" in fields:
        constraints = fields[b"monotone_constraints"].split(b" ")
        if len(constraints) != n_features or any(c not in (b"-1", b"0", b"1") for c in constraints):
            raise ModelTextError("monotone_constraints is not one of -1/0/1 per feature")
    if not _INTS.fullmatch(fields[b"tree_sizes"]) or not fields[b"tree_sizes"]:
        raise ModelTextError("tree_sizes is not a list of byte counts")
    sizes = [_int(s, "tree_sizes", 1, 1 << 40) for s in fields[b"tree_sizes"].split(b" ")]
    return n_features, sizes


def _check_tree(index: int, block: bytes, n_features: int) -> None:
    """Check one `Tree=i` block (its exact bytes, as tree_sizes delimits them)."""
    where = f"tree {index}"
    head = b"Tree=%d\n" % index
    if not block.startswith(head) or not block.endswith(b"\n\n\n"):
        raise ModelTextError(f"{where} is not a complete 'Tree={index}' block")
    fields: dict[bytes, bytes] = {}
    for line in block[len(head) : -3].split(b"\n"):
        key, sep, value = line.partition(b"=")
        if not sep or key not in _TREE_KEYS:
            raise ModelTextError(f"{where}: unexpected line {_show(line)}")
        if key in fields:
            raise ModelTextError(f"{where}: {key.decode()} appears twice")
        fields[key] = value
    missing = [k.decode() for k in (*_TREE_SCALARS, *_TREE_ARRAYS) if k not in fields]
    if missing:
        raise ModelTextError(f"{where} lacks {', '.join(missing)}")
    n_leaves = _int(fields[b"num_leaves"], f"{where} num_leaves", 1, _MAX_LEAVES)
    if fields[b"num_cat"] != b"0" or fields[b"is_linear"] != b"0":
        raise ModelTextError(f"{where} has categorical or linear splits (not supported)")
    if not _FLOATS.fullmatch(fields[b"shrinkage"]) or not _finite(fields[b"shrinkage"]):
        raise ModelTextError(f"{where}: shrinkage is not a finite number")
    arrays: dict[bytes, list[bytes]] = {}
    for key, (pattern, length) in _TREE_ARRAYS.items():
        if not pattern.fullmatch(fields[key]):
            raise ModelTextError(f"{where}: {key.decode()} is not a list of numbers")
        arrays[key] = fields[key].split(b" ") if fields[key] else []
        expected = n_leaves if length == _LEAVES else n_leaves - 1
        # A one-leaf tree is only its leaf value: LightGBM reads nothing else of it.
        if (n_leaves > 1 or key == b"leaf_value") and len(arrays[key]) != expected:
            raise ModelTextError(
                f"{where}: {key.decode()} has {len(arrays[key])} values, not {expected}"
            )
    if not all(_finite(v) for v in arrays[b"leaf_value"]):
        raise ModelTextError(f"{where}: a leaf value is not finite")
    if n_leaves > 1:
        _check_splits(where, arrays, n_leaves, n_features)


def _check_splits(
    where: str, arrays: dict[bytes, list[bytes]], n_leaves: int, n_features: int
) -> None:
    """Require one binary tree over numerical splits of the model's features."""
    for feature in arrays[b"split_feature"]:
        if not 0 <= int(feature) < n_features:
            raise ModelTextError(f"{where}: split on feature {int(feature)} of {n_features}")
    for decision in map(int, arrays[b"decision_type"]):
        if not 0 <= decision < 16 or decision & _CATEGORICAL_BIT or (decision >> 2) > _MISSING_NAN:
            raise ModelTextError(f"{where}: decision type {decision} is not a numerical split")
    left = [int(c) for c in arrays[b"left_child"]]
    right = [int(c) for c in arrays[b"right_child"]]
    seen_nodes, seen_leaves, stack = {0}, set(), [0]
    while stack:
        node = stack.pop()
        for child in (left[node], right[node]):
            if child >= 0:  # an internal node
                if child >= n_leaves - 1 or child in seen_nodes:
                    raise ModelTextError(f"{where}: node {node} has a bad child {child}")
                seen_nodes.add(child)
                stack.append(child)
            else:  # leaf ~child
                if ~child >= n_leaves or ~child in seen_leaves:
                    raise ModelTextError(f"{where}: node {node} has a bad leaf {~child}")
                seen_leaves.add(~child)
    if len(seen_nodes) != n_leaves - 1 or len(seen_leaves) != n_leaves:
        raise ModelTextError(f"{where}: nodes unreachable from the root")


def _int(text: bytes, what: str, low: int, high: int) -> int:
    if re.fullmatch(_INT, text) is None or not low <= int(text) <= high:
        raise ModelTextError(f"{what} {_show(text)} is not an integer in [{low}, {high}]")
    return int(text)


def _finite(text: bytes) -> bool:
    return math.isfinite(float(text))


def _show(text: bytes) -> str:
    """Quote a piece of the model for a message, shortened."""
    shown = text.decode("utf-8", errors="replace")
    return repr(shown if len(shown) <= 40 else shown[:40] + "...")
