"""Order-book and trade-flow features: band imbalance, depth ratios, spread, microprice, flow.

Definitions (docs/features.md has the table), per row, with B_b / A_b the bid / ask depth
within b basis points of mid and bid / ask the best quotes:

* `book_imbalance_{b}bp`        = (B_b - A_b) / (B_b + A_b)
* `book_depth_ratio_{b1}_{b2}bp` = (B_b1 + A_b1) / (B_b2 + A_b2), consecutive bands b1 < b2
* `book_spread_bp`               = (ask - bid) / mid * 1e4, mid = (bid + ask) / 2
* `book_microprice_offset_bp`    = (microprice - mid) / mid * 1e4 with
  microprice = (ask * B_m + bid * A_m) / (B_m + A_m), m = `microprice_band_bp` (default 30):
  the classic size-weighted microprice, using the depth near the touch as the "size" because
  the rows carry band depths rather than the best-level quantities.
* `flow_taker_buy_share[_w]`     = sum(buy_volume) / sum(volume) over the last w rows
* `flow_trade_intensity[_w]`     = sum(trades) / (w * seconds per row): trades per second

A zero or NaN denominator gives NaN (an invalid book has NaN depths). Streaming evaluates the
same expressions on Python floats (IEEE +-*/ round identically) and the window sums with the
same numpy reduction as batch, so both executions agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from strategy.features.schema import SECONDS_PER_ROW, depth_bands

BOOK_FEATURES = (
    "imbalance",
    "depth_ratio",
    "spread_bp",
    "microprice_offset_bp",
    "taker_buy_share",
    "trade_intensity",
)
_NAN = math.nan


class BookConfigError(ValueError):
    """The book generator asks for something the frame frequency does not carry."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def _window_sums(values: np.ndarray, window: int) -> np.ndarray:
    """Sum each row of a (rows, window) view: the one reduction both executions use."""
    return sliding_window_view(values, window).sum(axis=1)


@dataclass(frozen=True, slots=True)
class BookFeature:
    """Compiled book generator: which features, which bands, which flow window."""

    features: tuple[str, ...]
    bands_bp: tuple[int, ...]
    microprice_band_bp: int
    flow_window: int
    seconds_per_row: int
    columns: tuple[str, ...]
    inputs: tuple[str, ...]

    @property
    def lookback(self) -> int:
        has_flow = "taker_buy_share" in self.features or "trade_intensity" in self.features
        return self.flow_window - 1 if has_flow else 0

    @property
    def history(self) -> int:
        return self.flow_window if self.lookback else 0

    @property
    def column_lookbacks(self) -> tuple[int, ...]:
        return tuple(self.flow_window - 1 if c.startswith("flow_") else 0 for c in self.columns)

    def batch(self, data: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Compute every column over whole input arrays."""
        out: list[np.ndarray] = []
        for name in self.features:
            if name == "imbalance":
                for bp in self.bands_bp:
                    b, a = data[f"bid_depth_{bp}bp"], data[f"ask_depth_{bp}bp"]
                    out.append(_ratio(b - a, b + a))
            elif name == "depth_ratio":
                for near, far in pairwise(self.bands_bp):
                    total_near = data[f"bid_depth_{near}bp"] + data[f"ask_depth_{near}bp"]
                    total_far = data[f"bid_depth_{far}bp"] + data[f"ask_depth_{far}bp"]
                    out.append(_ratio(total_near, total_far))
            elif name == "spread_bp":
                bid, ask = data["bid"], data["ask"]
                mid = (bid + ask) / 2.0
                out.append(_ratio((ask - bid) * 1e4, mid))
            elif name == "microprice_offset_bp":
                out.append(self._microprice_batch(data))
            else:
                out.append(self._flow_batch(name, data))
        return out

    def _microprice_batch(self, data: Mapping[str, np.ndarray]) -> np.ndarray:
        bid, ask = data["bid"], data["ask"]
        b = data[f"bid_depth_{self.microprice_band_bp}bp"]
        a = data[f"ask_depth_{self.microprice_band_bp}bp"]
        mid = (bid + ask) / 2.0
        micro = _ratio(ask * b + bid * a, b + a)
        return _ratio((micro - mid) * 1e4, mid)

    def _flow_batch(self, name: str, data: Mapping[str, np.ndarray]) -> np.ndarray:
        w = self.flow_window
        n = data["volume"].size
        result = np.full(n, np.nan)
        if n < w:
            return result
        if name == "taker_buy_share":
            result[w - 1 :] = _ratio(
                _window_sums(data["buy_volume"], w), _window_sums(data["volume"], w)
            )
        else:
            result[w - 1 :] = _window_sums(data["trades"], w) / float(w * self.seconds_per_row)
        return result

    def streamer(self) -> BookStreamer:
        return BookStreamer(self)


class BookStreamer:
    """Evaluate the book features for the newest row."""

    __slots__ = ("_feature", "_index")

    def __init__(self, feature: BookFeature) -> None:
        self._feature = feature
        self._index = {column: i for i, column in enumerate(feature.inputs)}

    def update(self, args: tuple[float, ...], history: object) -> tuple[float, ...]:
        """Take the row's inputs (in `inputs` order) and the input history; return the row."""
        f, ix = self._feature, self._index
        out: list[float] = []
        for name in f.features:
            if name == "imbalance":
                for bp in f.bands_bp:
                    b, a = args[ix[f"bid_depth_{bp}bp"]], args[ix[f"ask_depth_{bp}bp"]]
                    den = b + a
                    out.append((b - a) / den if den > 0 else _NAN)
            elif name == "depth_ratio":
                for near, far in pairwise(f.bands_bp):
                    total_near = args[ix[f"bid_depth_{near}bp"]] + args[ix[f"ask_depth_{near}bp"]]
                    total_far = args[ix[f"bid_depth_{far}bp"]] + args[ix[f"ask_depth_{far}bp"]]
                    out.append(total_near / total_far if total_far > 0 else _NAN)
            elif name == "spread_bp":
                bid, ask = args[ix["bid"]], args[ix["ask"]]
                mid = (bid + ask) / 2.0
                out.append((ask - bid) * 1e4 / mid if mid > 0 else _NAN)
            elif name == "microprice_offset_bp":
                bid, ask = args[ix["bid"]], args[ix["ask"]]
                b = args[ix[f"bid_depth_{f.microprice_band_bp}bp"]]
                a = args[ix[f"ask_depth_{f.microprice_band_bp}bp"]]
                mid = (bid + ask) / 2.0
                den = b + a
                micro = (ask * b + bid * a) / den if den > 0 else _NAN
                out.append((micro - mid) * 1e4 / mid if mid > 0 else _NAN)
            else:
                out.append(self._flow(name, args, history))
        return tuple(out)

    def _flow(self, name: str, args: tuple[float, ...], history: object) -> float:
        f, ix = self._feature, self._index
        w = f.flow_window
        if w == 1:
            if name == "taker_buy_share":
                volume = args[ix["volume"]]
                return args[ix["buy_volume"]] / volume if volume > 0 else _NAN
            return args[ix["trades"]] / float(f.seconds_per_row)
        if history.count < w:  # type: ignore[attr-defined]
            return _NAN
        # A contiguous 1-D reduction of w values sums in the same (pairwise) order as one row
        # of the batch's (rows, w) view.
        window, add = history.window, np.add.reduce  # type: ignore[attr-defined]
        if name == "taker_buy_share":
            volume = float(add(window("volume", w)))
            return float(add(window("buy_volume", w))) / volume if volume > 0 else _NAN
        return float(add(window("trades", w))) / float(w * f.seconds_per_row)


def build_book_feature(
    frequency: str,
    features: tuple[str, ...] | None,
    bands_bp: tuple[int, ...] | None,
    microprice_band_bp: int,
    flow_window: int,
) -> BookFeature:
    """Resolve a book generator's defaults for a frequency; BookConfigError if it cannot run."""
    available = depth_bands(frequency)
    quotes = frequency == "second"  # only per-second rows carry best bid / ask
    if bands_bp is None:
        bands = available
    else:
        missing = [bp for bp in bands_bp if bp not in available]
        if missing:
            raise BookConfigError(
                "bands_bp",
                f"no {missing} bp depth columns at this frequency (bands: {list(available)})",
            )
        bands = tuple(sorted(set(bands_bp)))
    explicit = features is not None
    wanted = tuple(dict.fromkeys(features)) if features is not None else BOOK_FEATURES
    chosen: list[str] = []
    for name in wanted:
        reason = None
        if name in ("imbalance",) and not bands:
            reason = "needs at least one depth band"
        elif name == "depth_ratio" and len(bands) < 2:
            reason = "needs at least two depth bands"
        elif name in ("spread_bp", "microprice_offset_bp") and not quotes:
            reason = "needs best bid/ask columns, which only per-second rows carry"
        elif name == "microprice_offset_bp" and microprice_band_bp not in available:
            reason = f"microprice_band_bp {microprice_band_bp} is not a depth band here"
        if reason is None:
            chosen.append(name)
        elif explicit:
            raise BookConfigError("features", f"{name!r} {reason}")
    columns: list[str] = []
    inputs: list[str] = []
    suffix = f"_{flow_window}" if flow_window > 1 else ""
    for name in chosen:
        if name == "imbalance":
            columns += [f"book_imbalance_{bp}bp" for bp in bands]
            inputs += [f"{side}_depth_{bp}bp" for bp in bands for side in ("bid", "ask")]
        elif name == "depth_ratio":
            columns += [f"book_depth_ratio_{a}_{b}bp" for a, b in pairwise(bands)]
            inputs += [f"{side}_depth_{bp}bp" for bp in bands for side in ("bid", "ask")]
        elif name == "spread_bp":
            columns.append("book_spread_bp")
            inputs += ["bid", "ask"]
        elif name == "microprice_offset_bp":
            columns.append("book_microprice_offset_bp")
            inputs += [
                "bid",
                "ask",
                f"bid_depth_{microprice_band_bp}bp",
                f"ask_depth_{microprice_band_bp}bp",
            ]
        elif name == "taker_buy_share":
            columns.append(f"flow_taker_buy_share{suffix}")
            inputs += ["buy_volume", "volume"]
        else:
            columns.append(f"flow_trade_intensity{suffix}")
            inputs.append("trades")
    if not columns:
        raise BookConfigError("features", "no book feature can run at this frequency")
    return BookFeature(
        features=tuple(chosen),
        bands_bp=bands,
        microprice_band_bp=microprice_band_bp,
        flow_window=flow_window,
        seconds_per_row=SECONDS_PER_ROW[frequency],
        columns=tuple(columns),
        inputs=tuple(dict.fromkeys(inputs)),
    )
