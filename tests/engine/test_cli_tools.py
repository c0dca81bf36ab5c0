"""CLI tools on real data: replay, features, parity, sim (as a separate process on 127.0.0.1)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd

from engine.fold import CANDLE_COLUMNS, ROW_COLUMNS


def tickloop(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def test_replay_writes_rows_and_candles_with_the_documented_columns(tapes: dict[str, Path], tmp_path: Path) -> None:
    proc = tickloop("replay", str(tapes["spot_ethusdt"]), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = pd.read_parquet(tmp_path / "out" / "rows.parquet")
    candles = pd.read_parquet(tmp_path / "out" / "candles.parquet")
    assert list(rows.columns) == ["symbol", *ROW_COLUMNS]
    assert list(candles.columns) == ["symbol", *CANDLE_COLUMNS]
    assert rows["ts"].diff().dropna().eq(1000).all(), "one row per second, no holes"
    assert set(rows["symbol"]) == {"ETHUSDT"}


def test_features_then_parity_commands(tapes: dict[str, Path], tmp_path: Path) -> None:
    assert tickloop("replay", str(tapes["spot_btcusdt"]), "--out", str(tmp_path / "r"), cwd=tmp_path).returncode == 0
    rows = pd.read_parquet(tmp_path / "r" / "rows.parquet").drop(columns=["symbol"])
    rows.to_parquet(tmp_path / "rows.parquet")
    proc = tickloop("features", str(tmp_path / "rows.parquet"), "--out", str(tmp_path / "f.parquet"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    features = pd.read_parquet(tmp_path / "f.parquet")
    assert len(features) == len(rows) and features.columns[0] == "ts"
    assert features.shape[1] > 20
    proc = tickloop("parity", str(tapes["spot_btcusdt"]), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PARITY OK" in proc.stdout


def test_sim_command_serves_binance_paths_on_loopback(tapes: dict[str, Path], tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "sim", "--tape", str(tapes["spot_btcusdt"]),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/api/v3/time", timeout=2) as resp:
                    server_time = json.load(resp)["serverTime"]
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("sim did not start: " + proc.stderr.read1().decode())  # type: ignore[union-attr]
        assert server_time > 1_700_000_000_000
        with urllib.request.urlopen(f"{base}/api/v3/depth?symbol=BTCUSDT&limit=5", timeout=5) as resp:
            depth = json.load(resp)
        assert len(depth["bids"]) == 5 and depth["lastUpdateId"] > 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_report_command_prints_and_writes_html(tmp_path: Path) -> None:
    from decimal import Decimal

    from engine.journal import Journal
    from engine.model import Side
    from engine.orders import Liquidity, OrderFilled, OrderIntent, OrderRole, OrderType

    journal = Journal.open(tmp_path / "journal.db")
    entry = OrderIntent("e-1", "BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01"))
    exit_ = OrderIntent("x-1", "BTCUSDT", Side.SELL, OrderType.MARKET, Decimal("0.01"), role=OrderRole.EXIT)
    journal.record_intent(entry, 1_000)
    journal.record_order_event(OrderFilled("BTCUSDT", "e-1", 1, Side.BUY, Decimal("60000"), Decimal("0.01"),
                                           Decimal("0.6"), "USDT", Liquidity.TAKER, 1_000, True))
    journal.record_intent(exit_, 61_000)
    journal.record_order_event(OrderFilled("BTCUSDT", "x-1", 2, Side.SELL, Decimal("61000"), Decimal("0.01"),
                                           Decimal("0.61"), "USDT", Liquidity.TAKER, 61_000, True))
    for i, equity in enumerate(("10000", "10000", "10008.79")):
        journal.record_equity(i * 60_000, Decimal(equity))
    journal.flush()
    journal.close()
    proc = tickloop("report", str(tmp_path / "journal.db"), "--html", str(tmp_path / "r.html"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "BTCUSDT" in proc.stdout
    html = (tmp_path / "r.html").read_text()
    assert "<svg" in html and "BTCUSDT" in html


def test_download_from_the_simulator_serving_real_klines(tapes: dict[str, Path], shared_data: Path,
                                                         tmp_path: Path) -> None:
    from engine.model import Market
    from exchange.history import read_kline_csv, read_stored_klines

    archive = shared_data / "klines" / "usdm-1m" / "FILUSDT-1m-2023-08.csv.gz"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sim = subprocess.Popen([sys.executable, "-m", "engine.cli", "sim", "--tape", str(tapes["usdm_btcusdt"]),
                            "--port", str(port), "--klines", str(archive), "--klines-market", "usdm"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/fapi/v1/time", timeout=2).close()
                break
            except OSError:
                time.sleep(0.1)
        (tmp_path / "config.yaml").write_text("logging: {console: off, file: null}\n")
        proc = tickloop("download", "FILUSDT", "--market", "usdm", "--start", "2023-08-01", "--end", "2023-08-04",
                        "--base-url", f"http://127.0.0.1:{port}", "--out", str(tmp_path / "klines"), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        sim.terminate()
        sim.wait(timeout=20)
    stored = read_stored_klines(tmp_path / "klines", Market.USDM, "FILUSDT", "1m")
    archive_bars = read_kline_csv(archive)
    start, end = 1690848000000, 1691107200000  # 2023-08-01 .. 2023-08-04 UTC
    expected = archive_bars[(archive_bars["open_time"] >= start) & (archive_bars["open_time"] < end)]
    assert len(stored) >= len(expected) == 3 * 1440
    merged = stored.merge(expected, on="open_time", suffixes=("", "_archive"))
    assert len(merged) == len(expected)
    for col in ("open", "high", "low", "close", "volume"):
        assert (merged[col] == merged[f"{col}_archive"]).all(), col
