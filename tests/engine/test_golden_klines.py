"""Golden backtest: the vote strategy on the first week of August 2023 of FILUSDT USDⓈ-M
one-minute klines (10,080 candles), through the real trading loop, risk gate and simulated
venue (engine/backtest_klines.py documents the candle fill model). Every fill and the final PnL
are pinned.

How the pinned trades were reviewed (and are re-checked below, independently of the engine):
- every fee is price x quantity x 5 bp (the USDⓈ-M taker rate), rounded half-up to 1e-8;
- every entry and strategy exit fills on a minute boundary at the close of the candle that just
  closed (the decision candle), read straight from the CSV;
- every entry's quantity is the 20 % position cap: floor((10,000 + net PnL of the earlier round
  trips) x 0.2 / price) to the 0.1 step, the risk budget (1 % of equity over a 0.4 % stop,
  halved at worst) being larger every time;
- every stop and target filled at exactly its trigger price, inside its candle's range and at
  the leg of the OHLC path that crosses it: stops at entry -/+ 0.4 % of the entry price and
  targets at +/- 1R, rounded toward the market on the 0.001 tick (BUY down, SELL up); a stop
  moved after the first target (`r1`) sits at break-even plus fees, entry x 0.999 / 1.001 for a
  short (x 1.001 / 0.999 for a long), rounded the same way;
- the final PnL is the sum over round trips of (exit - entry) x quantity x direction minus all
  fees, computed here from the fills; the account ends flat with equity 10,000 + that PnL.
By hand, trade 5 (`tl-FILUSDT-5`): short 471.9 at 4.235 (fee 471.9 x 4.235 x 0.0005 =
0.99924825); stop 4.235 x 1.004 = 4.25194 -> 4.251; the 2023-08-02 16:32 candle's high reached
it on its second leg, both levels bought back at 4.251: (4.235 - 4.251) x 471.9 = -7.5504,
minus fees 2.00227170 = -9.55267170.
"""

from __future__ import annotations

import gzip
import json
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP
from decimal import Decimal as D
from pathlib import Path

import pandas as pd

from engine.backtest_klines import read_klines, run_kline_backtest
from engine.config import parse_config
from engine.journal import Journal

CONFIG = {
    "logging": {"console": "off", "file": None},
    "mode": "backtest",
    "market": {"type": "usdm", "symbols": ["FILUSDT"]},
    "strategy": {
        "kind": "vote",
        "vote": {"window_candles": 150},
        "exits": {"stop_loss_pct": 0.4, "max_hold_s": 3600},
    },
}  # every other setting at its default: risk 1 %, cap 20 %, ladder 1R/2R x 50 %, 10,000 USDT
WEEK = 7 * 1440
GOLDEN_FILLS = [  # (ts_ms, client order id, side, price, quantity, fee)
    (1690921860000, "tl-FILUSDT-1-en", "BUY", "4.227", "473.1", "0.99989685"),
    (1690925460000, "tl-FILUSDT-2-ex", "SELL", "4.235", "473.1", "1.00178925"),
    (1690956060000, "tl-FILUSDT-3-en", "BUY", "4.258", "469.7", "0.99999130"),
    (1690959480000, "tl-FILUSDT-4-ex", "SELL", "4.245", "469.7", "0.99693825"),
    (1690990500000, "tl-FILUSDT-5-en", "SELL", "4.235", "471.9", "0.99924825"),
    (1690993960000, "tl-FILUSDT-5-sl1", "BUY", "4.251", "235.9", "0.50140545"),
    (1690993960000, "tl-FILUSDT-5-sl2", "BUY", "4.251", "236.0", "0.50161800"),
    (1690999320000, "tl-FILUSDT-6-en", "SELL", "4.265", "468.1", "0.99822325"),
    (1690999900000, "tl-FILUSDT-6-sl1", "BUY", "4.282", "234.0", "0.50099400"),
    (1690999900000, "tl-FILUSDT-6-sl2", "BUY", "4.282", "234.1", "0.50120810"),
    (1691009100000, "tl-FILUSDT-7-en", "BUY", "4.271", "467.0", "0.99727850"),
    (1691010060000, "tl-FILUSDT-8-ex", "SELL", "4.271", "467.0", "0.99727850"),
    (1691016360000, "tl-FILUSDT-9-en", "SELL", "4.278", "466.2", "0.99720180"),
    (1691018440000, "tl-FILUSDT-9-tp1", "BUY", "4.260", "233.1", "0.49650300"),
    (1691019960000, "tl-FILUSDT-10-ex", "BUY", "4.260", "233.1", "0.49650300"),
    (1691057280000, "tl-FILUSDT-11-en", "SELL", "4.240", "470.6", "0.99767200"),
    (1691060520000, "tl-FILUSDT-12-ex", "BUY", "4.231", "470.6", "0.99555430"),
    (1691151900000, "tl-FILUSDT-13-en", "SELL", "4.115", "485.0", "0.99788750"),
    (1691152240000, "tl-FILUSDT-13-sl1", "BUY", "4.131", "242.5", "0.50088375"),
    (1691152240000, "tl-FILUSDT-13-sl2", "BUY", "4.131", "242.5", "0.50088375"),
    (1691253540000, "tl-FILUSDT-14-en", "SELL", "4.093", "487.2", "0.99705480"),
    (1691254680000, "tl-FILUSDT-14-tp1", "BUY", "4.076", "243.6", "0.49645680"),
    (1691254960000, "tl-FILUSDT-14-sl2r1", "BUY", "4.084", "243.6", "0.49743120"),
    (1691259360000, "tl-FILUSDT-15-en", "SELL", "4.108", "485.6", "0.99742240"),
    (1691261680000, "tl-FILUSDT-15-sl1", "BUY", "4.124", "242.8", "0.50065360"),
    (1691261680000, "tl-FILUSDT-15-sl2", "BUY", "4.124", "242.8", "0.50065360"),
    (1691307840000, "tl-FILUSDT-16-en", "SELL", "4.138", "481.6", "0.99643040"),
    (1691307960000, "tl-FILUSDT-17-ex", "BUY", "4.141", "481.6", "0.99715280"),
    (1691366640000, "tl-FILUSDT-18-en", "SELL", "4.169", "477.9", "0.99618255"),
    (1691368540000, "tl-FILUSDT-18-tp1", "BUY", "4.152", "238.9", "0.49595640"),
    (1691369020000, "tl-FILUSDT-18-sl2r1", "BUY", "4.160", "239.0", "0.49712000"),
    (1691387940000, "tl-FILUSDT-19-en", "BUY", "4.180", "476.8", "0.99651200"),
    (1691388120000, "tl-FILUSDT-20-ex", "SELL", "4.178", "476.8", "0.99603520"),
]
FINAL_PNL = D("-36.52852055")  # 13 round trips: 5 winners, net of 25.94402055 fees
TICK, STEP = D("0.001"), D("0.1")


def snap(price: D, side: str) -> D:
    """Round a price to the tick toward the market for its side (BUY down, SELL up)."""
    rounding = ROUND_FLOOR if side == "BUY" else ROUND_CEILING
    return (price / TICK).to_integral_value(rounding) * TICK


def test_golden_vote_backtest_on_a_week_of_filusdt(shared_data: Path, tmp_path: Path) -> None:
    klines = shared_data / "klines" / "usdm-1m" / "FILUSDT-1m-2023-08.csv.gz"
    info = json.loads(
        (shared_data / "binance-rest" / "usdm_exchangeInfo_20210721.json").read_text()
    )
    entry = next(e for e in info["symbols"] if e["symbol"] == "FILUSDT")
    loop = run_kline_backtest(
        read_klines([klines]).iloc[:WEEK], parse_config(CONFIG), entry, tmp_path / "golden.sqlite"
    )
    journal = Journal.open(tmp_path / "golden.sqlite")
    try:
        fills = journal.fills()
        intents = {r.intent.client_order_id: r.intent for r in journal.intents()}
    finally:
        journal.close()
    got = [
        (f.ts_event_ms, f.client_order_id, f.side.value, str(f.price), str(f.quantity), str(f.fee))
        for f in fills
    ]
    assert got == GOLDEN_FILLS
    portfolio = loop.portfolio
    assert portfolio.open_positions() == {} and len(portfolio.closed_trades) == 13
    assert portfolio.realized_pnl() - portfolio.fees() == FINAL_PNL
    assert loop.venue.balances()["USDT"].free == 10_000 + FINAL_PNL

    # -- the review, re-done from the CSV and the pinned fills alone ------------------------
    with gzip.open(klines, "rt") as text:
        raw = pd.read_csv(text, dtype={"open": str, "high": str, "low": str, "close": str})
    bars = raw.set_index("open_time")
    net, position, entry_price, trips = D(0), D(0), D(0), []
    for ts, coid, side, price_text, qty_text, fee_text in GOLDEN_FILLS:
        price, qty, fee = D(price_text), D(qty_text), D(fee_text)
        assert fee == (price * qty * D("0.0005")).quantize(D("1e-8"), rounding=ROUND_HALF_UP)
        code = coid.rsplit("-", 1)[1]
        candle = bars.loc[ts - ts % 60_000]
        if code in ("en", "ex"):  # at the close of the candle that just closed
            assert ts % 60_000 == 0 and price == D(bars.loc[ts - 60_000, "close"])
        else:
            assert D(candle["low"]) <= price <= D(candle["high"])
            assert price == intents[coid].stop_price  # a stop or target fills at its trigger
        if code == "en":
            equity = 10_000 + sum(trips, D(0))  # flat before every entry
            assert qty == (equity * D("0.2") / price // STEP) * STEP  # the 20 % cap, stepped down
            entry_price, direction = price, 1 if side == "BUY" else -1
            distance = D(repr(float(price) * 0.4 / 100.0))  # the strategy's stop_loss_pct
            exit_side = "SELL" if direction == 1 else "BUY"
            levels = {
                "sl": snap(price - direction * distance, exit_side),
                "tp1": snap(price + direction * distance, exit_side),
                "tp2": snap(price + 2 * direction * distance, exit_side),
            }
            fee_factor = (D("1.001") / D("0.999")) if direction == 1 else (D("0.999") / D("1.001"))
            levels["be"] = snap(price * fee_factor, exit_side)
        elif code.startswith("sl"):
            assert price == (levels["be"] if code.endswith("r1") else levels["sl"]), coid
        elif code.startswith("tp"):
            assert price == levels[code], coid
        position += qty if side == "BUY" else -qty
        if code != "en":  # a closing fill realises (exit - entry) x quantity x direction
            net += (price - entry_price) * qty * direction
        net -= fee
        if position == 0:
            trips.append(net)
            net = D(0)
    assert len(trips) == 13 and sum(1 for t in trips if t > 0) == 5
    assert sum(trips, D(0)) == FINAL_PNL


def test_the_kline_backtest_command_writes_result_and_report(
    shared_data: Path, tmp_path: Path
) -> None:
    from engine.backtest_klines import kline_backtest_command

    with gzip.open(shared_data / "klines" / "usdm-1m" / "FILUSDT-1m-2023-08.csv.gz", "rt") as f:
        head = [next(f) for _ in range(1 + 2 * 1440)]  # the header and two days
    two_days = tmp_path / "FILUSDT-1m-two-days.csv"
    two_days.write_text("".join(head))
    out = tmp_path / "out"
    line = kline_backtest_command(
        [two_days],
        parse_config(CONFIG),
        shared_data / "binance-rest" / "usdm_exchangeInfo_20210721.json",
        None,
        out,
    )
    result = json.loads((out / "result.json").read_text())
    # the first two days of the week above: the same fills up to then (every trip closed)
    end = 1_690_848_000_000 + 2 * 86_400_000  # 2023-08-03 00:00 UTC
    early = [f for f in GOLDEN_FILLS if f[0] < end]
    entries = sum(1 for f in early if f[1].endswith("-en"))
    assert (result["frames"], result["fills"], result["closed_trades"]) == (
        2880,
        len(early),
        entries,
    )
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    assert line.startswith("kline backtest of FILUSDT: 2880 candles")
