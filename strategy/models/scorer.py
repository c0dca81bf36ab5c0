"""Fast single-row scoring through LightGBM's own C API, and score explanations.

`Booster.predict` costs ~35 µs for one row, most of it Python-side checks. LightGBM's C API has
a single-row fast path (`LGBM_BoosterPredictForMatSingleRowFastInit` once, then
`LGBM_BoosterPredictForMatSingleRowFast` per row) that gives the same numbers in about half the
time; it is reached through ctypes on the library lightgbm already loaded (no extra dependency).
`explain` uses the same path with LightGBM's contribution output (SHAP values per feature plus
the expected value), which sums to the raw score.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB  # the already-loaded lib_lightgbm shared library

_PREDICT_NORMAL = 0
_PREDICT_CONTRIB = 3
_DTYPE_FLOAT64 = 1

_LIB.LGBM_BoosterPredictForMatSingleRowFastInit.argtypes = [
    ctypes.c_void_p,  # BoosterHandle
    ctypes.c_int,  # predict_type
    ctypes.c_int,  # start_iteration
    ctypes.c_int,  # num_iteration (-1: all)
    ctypes.c_int,  # data_type
    ctypes.c_int32,  # ncol
    ctypes.c_char_p,  # parameters
    ctypes.POINTER(ctypes.c_void_p),  # out FastConfigHandle
]
_LIB.LGBM_BoosterPredictForMatSingleRowFast.argtypes = [
    ctypes.c_void_p,  # FastConfigHandle
    ctypes.c_void_p,  # const void* data
    ctypes.POINTER(ctypes.c_int64),  # out_len
    ctypes.c_void_p,  # double* out_result
]
_LIB.LGBM_FastConfigFree.argtypes = [ctypes.c_void_p]


class ScorerError(RuntimeError):
    """LightGBM's C API refused a call; the message is LightGBM's."""


def _check(code: int) -> None:
    if code != 0:
        raise ScorerError(_LIB.LGBM_GetLastError().decode())


@dataclass(frozen=True, slots=True)
class Contribution:
    """One feature's additive share of a score (raw, log-odds units)."""

    feature: str
    value: float  # the feature's value in the scored row
    contribution: float


@dataclass(frozen=True, slots=True)
class Explanation:
    """A score broken into the expected value and per-feature contributions (largest first)."""

    score: float
    raw_score: float
    expected_raw: float
    top: tuple[Contribution, ...]


class _FastConfig:
    def __init__(self, booster: lgb.Booster, predict_type: int, n_features: int) -> None:
        self.handle = ctypes.c_void_p()
        _check(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                predict_type,
                0,
                -1,
                _DTYPE_FLOAT64,
                n_features,
                b"num_threads=1",
                ctypes.byref(self.handle),
            )
        )

    def free(self) -> None:
        if self.handle:
            _LIB.LGBM_FastConfigFree(self.handle)
            self.handle = ctypes.c_void_p()


class FastScorer:
    """Score single feature vectors (float64, in the model's feature order) via the C API."""

    def __init__(self, booster: lgb.Booster | Path | str, feature_names: tuple[str, ...]) -> None:
        if not isinstance(booster, lgb.Booster):
            booster = lgb.Booster(model_file=str(booster))
        self.booster = booster  # keeps the handle alive as long as the fast configs
        self.feature_names = tuple(feature_names)
        self.n_features = len(self.feature_names)
        if booster.num_feature() != self.n_features:
            raise ScorerError(
                f"model expects {booster.num_feature()} features, {self.n_features} names given"
            )
        self._fast = _FastConfig(booster, _PREDICT_NORMAL, self.n_features)
        self._contrib: _FastConfig | None = None
        self._out = np.zeros(1, dtype=np.float64)
        self._out_ptr = self._out.ctypes.data
        self._out_len = ctypes.c_int64()
        self._out_len_ref = ctypes.byref(self._out_len)
        self._predict = _LIB.LGBM_BoosterPredictForMatSingleRowFast
        self._buffer = np.zeros(self.n_features, dtype=np.float64)

    def score(self, vector: np.ndarray) -> float:
        """Return the model's probability for one row (same value as Booster.predict)."""
        if vector.dtype != np.float64 or not vector.flags.c_contiguous:
            self._buffer[:] = vector
            vector = self._buffer
        if vector.shape[0] != self.n_features:
            raise ScorerError(f"vector has {vector.shape[0]} values, model has {self.n_features}")
        code = self._predict(
            self._fast.handle, vector.ctypes.data, self._out_len_ref, self._out_ptr
        )
        if code != 0:
            _check(code)
        return float(self._out[0])

    def score_many(self, rows: np.ndarray) -> np.ndarray:
        """Score each row of a 2-D array through the single-row path."""
        return np.array([self.score(np.ascontiguousarray(row)) for row in rows])

    def explain(self, vector: np.ndarray, top: int = 5) -> Explanation:
        """Return the score with its largest feature contributions (LightGBM pred_contrib)."""
        if self._contrib is None:
            self._contrib = _FastConfig(self.booster, _PREDICT_CONTRIB, self.n_features)
        row = np.ascontiguousarray(vector, dtype=np.float64)
        out = np.zeros(self.n_features + 1, dtype=np.float64)
        length = ctypes.c_int64()
        _check(
            _LIB.LGBM_BoosterPredictForMatSingleRowFast(
                self._contrib.handle, row.ctypes.data, ctypes.byref(length), out.ctypes.data
            )
        )
        contributions, expected = out[:-1], float(out[-1])
        order = np.argsort(-np.abs(contributions), kind="stable")[:top]
        raw = float(contributions.sum() + expected)
        return Explanation(
            score=self.score(row),
            raw_score=raw,
            expected_raw=expected,
            top=tuple(
                Contribution(self.feature_names[i], float(row[i]), float(contributions[i]))
                for i in order
            ),
        )

    def close(self) -> None:
        """Free the C-side prediction configurations."""
        self._fast.free()
        if self._contrib is not None:
            self._contrib.free()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown may have unloaded ctypes
            pass
