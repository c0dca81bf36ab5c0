"""The commands a user runs: run (unreachable network), demo, record -> replay, collect, heartbeat."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import structlog

from engine.config import LoggingConfig
from engine.logging import configure_logging
from engine.replay import replay_tape
from engine.tape import read_tape
from live_harness import live_run

TRADE_COLS = ["open", "high", "low", "close", "vwap", "volume", "quote_volume", "trades", "buy_volume", "sell_volume"]


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more: connections are refused
    return port


def test_run_without_network_says_so_in_one_line_and_points_to_demo(tmp_path: Path) -> None:
    port = _closed_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"endpoints:\n  spot: {{rest: 'http://127.0.0.1:{port}', ws: 'ws://127.0.0.1:{port}'}}\n"
        "logging: {console: off}\n"
    )
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", "-c", str(cfg)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cannot reach Binance" in lines[0] and "tickloop demo" in lines[0]


def test_demo_runs_offline_on_the_synthetic_tape(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("logging: {console: off}\n")
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "demo", "--speed", "200"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = [line for line in proc.stdout.splitlines() if line.startswith("SYNTHUSDT:")]
    assert summary, proc.stdout
    rows = int(summary[0].split()[1])
    assert rows >= 250, summary  # the synthetic tape spans 300 s
    assert "book valid=True" in summary[0] and "gaps=0" in summary[0]
    assert (tmp_path / "data" / "synthetic" / "SYNTHETIC_demo_tape.gz").is_file()


async def test_recorded_session_replays_to_the_same_rows(tapes: dict[str, Path], tmp_path: Path) -> None:
    tape_out = tmp_path / "recorded.gz"
    run = await live_run(tapes["spot_btcusdt"], app_kwargs={"record_to": tape_out})
    frames = list(read_tape(tape_out))
    assert sum(f.is_snapshot for f in frames) >= 1
    assert sum(not f.is_snapshot for f in frames) == run.app.pipeline.stats.frames
    offline = replay_tape(tape_out, run.app.config.fold).rows
    live = run.rows
    assert live is not None
    # the recording holds the very frames and snapshot the live engine used: everything matches
    pd.testing.assert_frame_equal(offline.drop(columns=["stale_ms"]), live.drop(columns=["stale_ms"]),
                                  check_dtype=False)


async def test_collect_writes_one_parquet_per_symbol_per_day(tapes: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "rows"
    run = await live_run(tapes["spot_btcusdt"], app_kwargs={"collect_to": out})
    # the tape crosses midnight UTC (2024-08-08 23:54 -> 2024-08-09 00:00)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet"))
    assert files == ["BTCUSDT/2024-08-08.candles.parquet", "BTCUSDT/2024-08-08.rows.parquet",
                     "BTCUSDT/2024-08-09.rows.parquet"]
    collected = pd.concat([pd.read_parquet(out / f) for f in files if ".rows." in f], ignore_index=True)
    live = run.rows
    assert live is not None
    # rows still open when the App stopped are not collected; every collected row equals the live one
    expected = live.iloc[: len(collected)].drop(columns=["symbol"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(collected, expected, check_dtype=False)
    assert len(collected) >= len(live) - 3


async def test_heartbeat_line_reports_streams_and_books(tapes: dict[str, Path], tmp_path: Path) -> None:
    configure_logging(LoggingConfig(console="off", file="hb.jsonl"), tmp_path)
    try:
        await live_run(tapes["spot_btcusdt"], speed=60, overrides={"logging": {"heartbeat_s": 0.5}})
    finally:
        for handler in logging.getLogger().handlers:
            handler.flush()
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        structlog.reset_defaults()
    events = [json.loads(line) for line in (tmp_path / "hb.jsonl").read_text().splitlines()]
    beats = [e for e in events if e["event"] == "heartbeat"]
    assert len(beats) >= 3
    beat = beats[-1]
    # the last beat may fall after the tape ended (no frames in its interval)
    assert any(b["msgs_per_s"] > 0 for b in beats)
    conn = next(iter(beat["connections"].values()))
    for key in ("frames", "reconnects", "stalls", "overflows"):
        assert key in conn
    assert beat["symbols"]["BTCUSDT"]["book_valid"] is True
    # a recorded tape replayed at 60x: nothing dated implausibly, nothing refused
    assert (beat["malformed_times"], beat["malformed_snapshots"]) == (0, 0)
    assert {"gaps", "snapshot_requests", "rows"} <= set(beat["symbols"]["BTCUSDT"])
