"""Generate the column reference of docs/features.md from the registry itself.

    python -m strategy.features.reference docs/features.md

rewrites the part of the file between the BEGIN/END markers, so the documented columns are
always the ones the code produces. The "history" of a TA-Lib column is measured: the function
is run on a fixed synthetic random walk from its first row and from row 500, and the column is
`window` if both agree (to 1e-9 relative) as soon as the later start has its look-back,
`recursive` if they agree only after more rows (the figure: rows to settle, indicative), and
`cumulative` if they never do (the level depends on the first row seen).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import talib

from strategy.features import ta
from strategy.features.plan import compile_feature_set
from strategy.features.spec import (
    BookGenerator,
    FeatureSetSpec,
    StatsGenerator,
    TalibGenerator,
    default_feature_sets,
)

BEGIN = "<!-- BEGIN GENERATED COLUMN REFERENCE (python -m strategy.features.reference) -->"
END = "<!-- END GENERATED COLUMN REFERENCE -->"
_LATE_START = 500
_ROWS = 3000


def _random_walk() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, size=_ROWS)))
    open_ = np.r_[close[0], close[:-1]]
    return {
        "open": open_,
        "high": np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.001, _ROWS))),
        "low": np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.001, _ROWS))),
        "close": close,
        "volume": rng.lognormal(3, 1, _ROWS),
    }


def history_kind(info: ta.TalibInfo, lookback: int, data: dict[str, np.ndarray]) -> str:
    """Classify how much history a TA-Lib function's value depends on (see module doc)."""
    args = [data[column] for column in info.default_columns]
    full = getattr(talib, info.name)(*args)
    late = getattr(talib, info.name)(*(a[_LATE_START:] for a in args))
    settle = 0
    for whole, later in zip(
        full if isinstance(full, tuple) else (full,),
        late if isinstance(late, tuple) else (late,),
        strict=True,
    ):
        reference = np.asarray(whole, dtype=np.float64)[_LATE_START:]
        restarted = np.asarray(later, dtype=np.float64)
        magnitude = np.abs(reference[np.isfinite(reference) & (reference != 0)])
        floor = float(np.median(magnitude)) if magnitude.size else 1.0
        with np.errstate(invalid="ignore"):
            scale = np.maximum(np.maximum(np.abs(reference), np.abs(restarted)), floor)
            error = np.abs(reference - restarted) / scale
        same = (reference == restarted) | (np.isnan(reference) & np.isnan(restarted))
        bad = np.flatnonzero(~same & ~(error <= 1e-9))
        settle = max(settle, int(bad[-1]) + 1 if bad.size else 0)
    if settle <= lookback + 1:
        return "window"
    if settle >= _ROWS - _LATE_START:
        return "cumulative"
    return f"recursive (~{int(np.ceil(settle / 10.0) * 10)})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _set_table(spec: FeatureSetSpec) -> list[str]:
    rows: list[list[str]] = []
    position = 0
    for generator in spec.generators:
        part = compile_feature_set(
            FeatureSetSpec(frequency=spec.frequency, generators=(generator,))
        )
        width = len(part.columns)
        if isinstance(generator, TalibGenerator) and generator.preset == "all":
            rows.append(
                [
                    f"{position}-{position + width - 1}",
                    f"the {width} columns of the `all` preset, in the order of its table below",
                    "per column",
                ]
            )
        else:
            rows += [
                [str(position + i), f"`{column}`", str(lookback)]
                for i, (column, lookback) in enumerate(
                    zip(part.columns, part.lookbacks, strict=True)
                )
            ]
        position += width
    return _table(["#", "column", "look-back (rows)"], rows)


def render_reference() -> str:
    """Render the generated column reference (markdown, between the markers)."""
    out = [BEGIN, ""]
    for spec in default_feature_sets():
        plan = compile_feature_set(spec)
        title = f"### Default `{spec.label}` set: vector order ({len(plan.columns)} columns, "
        out += [title + f"warm-up {plan.warmup_rows} rows)", ""]
        out += _set_table(spec)
        out.append("")
    data = _random_walk()
    rows = []
    for name in ta.all_preset_functions():
        info = ta.talib_info(name)
        lookback = ta.lookback(info, {})
        kind = history_kind(info, lookback, data)
        columns = ta.column_names(info, {}, info.default_columns)
        for column, output in zip(columns, info.outputs, strict=True):
            rows.append(
                [
                    f"`{column}`",
                    name,
                    output,
                    info.group,
                    ", ".join(info.default_columns),
                    str(lookback),
                    kind,
                ]
            )
    out += [
        f"### `talib` preset `all`: {len(rows)} columns",
        "",
        "Default parameters; look-back at TA-Lib's default unstable periods (0).",
        "",
    ]
    out += _table(["column", "function", "output", "group", "inputs", "look-back", "history"], rows)
    out += ["", "### `book` columns by frequency", ""]
    for frequency in ("second", "minute"):
        spec = FeatureSetSpec(frequency=frequency, generators=(BookGenerator(),))
        names = ", ".join(f"`{c}`" for c in compile_feature_set(spec).columns)
        out.append(f"* {frequency}: {names}")
    out += ["", "### `stats` columns (default statistics, one column and window shown)", ""]
    spec = FeatureSetSpec(frequency="minute", generators=(StatsGenerator(windows=(60,)),))
    out.append(", ".join(f"`{c}`" for c in compile_feature_set(spec).columns))
    out += ["", END]
    return "\n".join(out)


def update_file(path: Path) -> None:
    """Replace the generated section of a markdown file (append it if the markers are absent)."""
    text = path.read_text() if path.exists() else ""
    generated = render_reference()
    if BEGIN in text and END in text:
        before = text[: text.index(BEGIN)]
        after = text[text.index(END) + len(END) :]
        text = before + generated + after
    else:
        text = text.rstrip() + "\n\n" + generated + "\n"
    path.write_text(text)


if __name__ == "__main__":
    update_file(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/features.md"))
