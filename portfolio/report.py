"""Run report from a journal: metrics table and round trips as text, and a self-contained HTML page
(equity and drawdown curves, prices with fills marked, metrics, trades) drawn as inline SVG.

No plotting dependency: the HTML is one file that opens anywhere. `tickloop report` calls
`run_report(journal_path, html_path)`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine.journal import Journal
from engine.model import Side
from engine.orders import FundingPaid, OrderFilled
from portfolio.metrics import Metrics, compute_metrics
from portfolio.portfolio import EquityPoint
from portfolio.position import ClosedTrade, fold_positions

_W, _H, _PAD = 900, 220, 44


@dataclass(frozen=True, slots=True)
class Report:
    metrics: Metrics | None  # None without equity samples
    trades: list[ClosedTrade]
    equity: list[EquityPoint]
    fills: list[OrderFilled]
    prices: dict[str, list[tuple[int, float]]]  # journaled marks per symbol


def build_report(journal: Journal) -> Report:
    """Read a journal and compute everything the report shows."""
    fills = journal.fills()
    funding = journal.funding()
    events: list[OrderFilled | FundingPaid] = sorted(
        [*fills, *funding], key=lambda e: (e.ts_event_ms, isinstance(e, OrderFilled))
    )
    _, trades = fold_positions(events)
    equity = [EquityPoint(r.ts_ms, r.equity, r.gross_exposure) for r in journal.equity()]
    metrics = compute_metrics(equity, trades) if equity else None
    prices = {s: journal.marks(s) for s in journal.symbols()}
    return Report(metrics, trades, equity, fills, prices)


def _time(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _pct(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "n/a"
    return f"{x * 100:+.2f}%" if signed else f"{x * 100:.2f}%"


def _num(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    return "inf" if math.isinf(x) else f"{x:.{digits}f}"


def metric_rows(m: Metrics) -> list[tuple[str, str]]:
    """Return (label, formatted value) for every metric, in display order."""
    days = (m.end_ms - m.start_ms) / 86_400_000
    return [
        ("period", f"{_time(m.start_ms)} .. {_time(m.end_ms)} UTC ({days:.2f} d)"),
        ("equity", f"{m.start_equity:.2f} -> {m.end_equity:.2f}"),
        ("total return", _pct(m.total_return)),
        ("APR", _pct(m.apr)),
        ("CAGR", _pct(m.cagr)),
        ("Sharpe", _num(m.sharpe)),
        ("Sortino", _num(m.sortino)),
        ("Calmar", _num(m.calmar)),
        ("max drawdown", _pct(-m.max_drawdown)),
        ("max drawdown duration", f"{m.max_drawdown_duration_ms / 3_600_000:.2f} h"),
        ("exposure (time in market)", _pct(m.exposure, signed=False)),
        ("avg gross exposure / equity", _pct(m.avg_gross_exposure, signed=False)),
        ("round trips", str(m.trades)),
        ("win rate", _pct(m.win_rate, signed=False)),
        ("profit factor", _num(m.profit_factor)),
        ("expectancy / trade", _num(m.expectancy, 4)),
        ("avg win / avg loss", f"{_num(m.avg_win, 4)} / {_num(m.avg_loss, 4)}"),
    ]


def _trade_row(t: ClosedTrade) -> list[str]:
    side = "long" if t.direction is Side.BUY else "short"
    return [
        t.symbol,
        side,
        _time(t.opened_ms),
        _time(t.closed_ms),
        f"{t.quantity:f}",
        f"{float(t.entry_price):.8g}",
        f"{float(t.exit_price):.8g}",
        f"{float(t.pnl):+.4f}",
        f"{t.return_pct:+.3f}%",
        f"{float(t.fees):.4f}",
        f"{float(t.funding):+.4f}",
    ]


_TRADE_HEAD = [
    "symbol",
    "side",
    "opened",
    "closed",
    "qty",
    "entry",
    "exit",
    "pnl",
    "return",
    "fees",
    "funding",
]


def format_report(report: Report) -> str:
    """Return the metrics table and the round trips as plain text."""
    lines: list[str] = []
    if report.metrics is None:
        lines.append("no equity samples in the journal: metrics unavailable")
    else:
        rows = metric_rows(report.metrics)
        width = max(len(k) for k, _ in rows)
        lines += [f"{k:<{width}}  {v}" for k, v in rows]
    lines.append("")
    lines.append(f"{len(report.trades)} round trips, {len(report.fills)} fills")
    if report.trades:
        table = [_TRADE_HEAD] + [_trade_row(t) for t in report.trades]
        widths = [max(len(r[i]) for r in table) for i in range(len(_TRADE_HEAD))]
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- SVG charts


def _svg_chart(
    title: str,
    series: Sequence[tuple[int, float]],
    markers: Sequence[tuple[int, float, str, str]] = (),
    fill_below: bool = False,
) -> str:
    """Return an inline SVG line chart; markers are (ts, value, colour, tooltip)."""
    points = list(series) + [(m[0], m[1]) for m in markers]
    if not points:
        return f"<h3>{html.escape(title)}</h3><p>no data</p>"
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1

    def xy(ts: int, v: float) -> tuple[float, float]:
        x = _PAD + (ts - x0) / (x1 - x0) * (_W - 2 * _PAD)
        y = _H - _PAD / 2 - (v - y0) / (y1 - y0) * (_H - _PAD)
        return x, y

    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(t, v) for t, v in series))
    parts = [
        f'<svg width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img">',
        f'<rect width="{_W}" height="{_H}" fill="#fff" stroke="#ddd"/>',
    ]
    if series and fill_below:
        base = xy(x0, min(0.0, y1))[1]
        first, last = xy(*series[0]), xy(*series[-1])
        parts.append(
            f'<polygon points="{first[0]:.1f},{base:.1f} {path} {last[0]:.1f},{base:.1f}" '
            'fill="#f4c7c3" stroke="none"/>'
        )
    if series:
        parts.append(f'<polyline points="{path}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    for ts, v, colour, tip in markers:
        x, y = xy(ts, v)
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">'
            f"<title>{html.escape(tip)}</title></circle>"
        )
    label = 'font-size="11" fill="#555" font-family="monospace"'
    parts.append(f'<text x="4" y="{_PAD / 2 + 4:.0f}" {label}>{y1:.6g}</text>')
    parts.append(f'<text x="4" y="{_H - _PAD / 2:.0f}" {label}>{y0:.6g}</text>')
    parts.append(f'<text x="{_PAD}" y="{_H - 4}" {label}>{_time(x0)}</text>')
    parts.append(f'<text x="{_W - _PAD}" y="{_H - 4}" text-anchor="end" {label}>{_time(x1)}</text>')
    parts.append("</svg>")
    return f"<h3>{html.escape(title)}</h3>" + "".join(parts)


def _drawdown_series(equity: Sequence[EquityPoint]) -> list[tuple[int, float]]:
    peak = -math.inf
    out = []
    for p in equity:
        peak = max(peak, p.equity)
        out.append((p.ts_ms, (p.equity / peak - 1) * 100 if peak > 0 else 0.0))
    return out


def render_html(report: Report, title: str = "tickloop report") -> str:
    """Return the whole report as one self-contained HTML page."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    if report.metrics is not None:
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in metric_rows(report.metrics)
        )
        body.append(f"<table class='metrics'>{rows}</table>")
    body.append(_svg_chart("equity", [(p.ts_ms, p.equity) for p in report.equity]))
    body.append(_svg_chart("drawdown (%)", _drawdown_series(report.equity), fill_below=True))
    symbols = sorted(set(report.prices) | {f.symbol for f in report.fills})
    for symbol in symbols:
        markers = [
            (
                f.ts_event_ms,
                float(f.price),
                "#2ca02c" if f.side is Side.BUY else "#d62728",
                f"{f.side.value} {f.quantity:f} @ {f.price:f} ({f.client_order_id})",
            )
            for f in report.fills
            if f.symbol == symbol
        ]
        body.append(
            _svg_chart(
                f"{symbol} price, fills (green buy, red sell)",
                report.prices.get(symbol, []),
                markers,
            )
        )
    head = "".join(f"<th>{h}</th>" for h in _TRADE_HEAD)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _trade_row(t)) + "</tr>"
        for t in report.trades
    )
    body.append(
        f"<h3>round trips ({len(report.trades)})</h3><table class='trades'><tr>{head}</tr>{rows}</table>"
    )
    style = (
        "body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;"
        "margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;"
        "font-family:monospace}th{background:#f6f6f6}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )


def run_report(journal_path: str | Path, html_path: str | Path | None = None) -> str:
    """Build the report of a journal file, write the HTML page if asked; return the text."""
    journal = Journal.open(journal_path)
    try:
        report = build_report(journal)
    finally:
        journal.close()
    if html_path is not None:
        Path(html_path).write_text(render_html(report), encoding="utf-8")
    return format_report(report)
