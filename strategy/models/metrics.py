"""Classifier metrics (ROC AUC, precision at chosen recalls) and the precision/recall plot.

The plot is a small hand-written SVG: it needs no plotting library, opens in any browser and in
MLflow's artifact viewer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score


def precision_recall(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the precision/recall curve (precision, recall), recall descending."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    return precision, recall


def precision_at_recall(precision: np.ndarray, recall: np.ndarray, target: float) -> float:
    """Best precision among the operating points whose recall is at least `target`."""
    reachable = recall >= target
    return float(precision[reachable].max()) if reachable.any() else 0.0


def classification_metrics(
    labels: np.ndarray, scores: np.ndarray, recalls: Sequence[float], prefix: str = ""
) -> dict[str, float]:
    """ROC AUC, average precision, base rate and precision at each recall, keyed with `prefix`."""
    out: dict[str, float] = {
        f"{prefix}rows": float(len(labels)),
        f"{prefix}base_rate": float(np.mean(labels)) if len(labels) else float("nan"),
    }
    if len(np.unique(labels)) < 2:
        out[f"{prefix}roc_auc"] = float("nan")
        out[f"{prefix}average_precision"] = float("nan")
        for target in recalls:
            out[f"{prefix}precision_at_recall_{target:g}"] = float("nan")
        return out
    out[f"{prefix}roc_auc"] = float(roc_auc_score(labels, scores))
    out[f"{prefix}average_precision"] = float(average_precision_score(labels, scores))
    precision, recall = precision_recall(labels, scores)
    for target in recalls:
        out[f"{prefix}precision_at_recall_{target:g}"] = precision_at_recall(
            precision, recall, target
        )
    return out


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def write_pr_svg(
    path: Path,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    base_rate: float | None = None,
) -> Path:
    """Write precision (y) against recall (x) for each named curve as an SVG file."""
    width, height, margin = 640, 440, 56
    plot_w, plot_h = width - 2 * margin, height - 2 * margin

    def xy(recall: float, precision: float) -> str:
        return f"{margin + recall * plot_w:.1f},{margin + (1 - precision) * plot_h:.1f}"

    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif" font-size="12">'
        ),
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="14">{escape(title)}</text>',
        (
            f'<rect x="{margin}" y="{margin}" width="{plot_w}" height="{plot_h}" fill="none" '
            'stroke="#333"/>'
        ),
    ]
    for tick in np.linspace(0, 1, 6):
        x, y = margin + tick * plot_w, margin + (1 - tick) * plot_h
        parts.append(
            f'<line x1="{x:.1f}" y1="{margin}" x2="{x:.1f}" y2="{margin + plot_h}" stroke="#eee"/>'
        )
        parts.append(
            f'<line x1="{margin}" y1="{y:.1f}" x2="{margin + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{margin + plot_h + 16}" text-anchor="middle">{tick:.1f}</text>'
        )
        parts.append(f'<text x="{margin - 8}" y="{y + 4:.1f}" text-anchor="end">{tick:.1f}</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">recall</text>')
    parts.append(
        f'<text x="16" y="{height / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {height / 2})">precision</text>'
    )
    if base_rate is not None and np.isfinite(base_rate):
        parts.append(
            f'<polyline points="{xy(0, base_rate)} {xy(1, base_rate)}" fill="none" '
            'stroke="#999" stroke-dasharray="4 4"/>'
        )
    for i, (name, (precision, recall)) in enumerate(curves.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        step = max(len(recall) // 2000, 1)  # a few thousand points are plenty for a plot
        points = " ".join(xy(r, p) for r, p in zip(recall[::step], precision[::step], strict=True))
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
        )
        ly = margin + 16 + 16 * i
        parts.append(
            f'<text x="{margin + plot_w - 8}" y="{ly}" text-anchor="end" '
            f'fill="{colour}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
