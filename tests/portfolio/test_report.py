"""Report from a real journal file: text tables and a self-contained HTML page."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from decimal import Decimal as D

from engine.journal import Journal
from engine.model import Side
from engine.orders import FundingPaid, Liquidity, OrderFilled
from portfolio.report import build_report, render_html, run_report

DAY = 86_400_000


def fill(trade_id, side, qty, price, fee, ts) -> OrderFilled:
    return OrderFilled(
        "BTCUSDT",
        f"c{trade_id}",
        trade_id,
        Side(side),
        D(price),
        D(qty),
        D(fee),
        "USDT",
        Liquidity.TAKER,
        ts,
        True,
    )


def make_journal(path):
    j = Journal.open(path)
    for e in (
        fill(1, "BUY", "1", "100", "0.1", 10),
        FundingPaid("BTCUSDT", D("-0.2"), D("0.0001"), "USDT", 20),
        fill(2, "SELL", "1", "110", "0.11", DAY),  # long round trip: 10 - 0.21 - 0.2 = 9.59
        fill(3, "SELL", "2", "110", "0.22", DAY + 5),
        fill(4, "BUY", "2", "115", "0.23", 2 * DAY),  # short round trip: -10 - 0.45 = -10.45
    ):
        j.record_order_event(e)
    for i, (eq, exposure) in enumerate(((1000, 100), (1009.59, 220), (999.14, 0))):
        j.record_equity(i * DAY, eq, exposure, {"BTCUSDT": (100, 110, 115)[i]})
    j.close()


def test_text_report_lists_metrics_and_round_trips(tmp_path):
    path = tmp_path / "j.sqlite"
    make_journal(path)
    text = run_report(path)
    assert "total return                 -0.09%" in text  # 999.14 / 1000 - 1
    assert "max drawdown                 -1.04%" in text  # 999.14 / 1009.59 - 1
    assert "round trips                  2" in text
    assert "win rate                     50.00%" in text
    assert "profit factor                0.92" in text  # 9.59 / 10.45
    assert "2 round trips, 4 fills" in text
    assert re.search(r"BTCUSDT\s+long .* \+9\.5900 ", text)
    assert re.search(r"BTCUSDT\s+short .* -10\.4500 ", text)


def test_html_report_is_self_contained_with_equity_drawdown_and_fills(tmp_path):
    path = tmp_path / "j.sqlite"
    make_journal(path)
    out = tmp_path / "report.html"
    run_report(path, out)
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page and "http" not in page  # nothing fetched from anywhere
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL)
    assert len(svgs) == 3  # equity, drawdown, BTCUSDT price
    for svg in svgs:
        ET.fromstring(svg)  # well-formed
    price_svg = ET.fromstring(svgs[2])
    circles = price_svg.findall("circle")
    assert [c.get("fill") for c in circles] == ["#2ca02c", "#d62728", "#d62728", "#2ca02c"]
    assert "CAGR" in page and "Sortino" in page


def test_empty_journal_reports_without_failing(tmp_path):
    j = Journal.open(tmp_path / "j.sqlite")
    report = build_report(j)
    j.close()
    assert report.metrics is None and report.trades == []
    assert "no data" in render_html(report)
