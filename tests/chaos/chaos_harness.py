"""Kill-and-restart chaos around the real engine process, against a simulator that outlives it.

The loopback simulator (trading on) runs in the test's own event loop on 127.0.0.1; the engine is
`tickloop run -c cfg.yaml` in mode testnet, a subprocess pointed at it, killed with SIGKILL and
started again on the same journal. Trading faults and rate-limit faults are injected on a seeded
schedule; some kills are aimed at the window between an intent being journaled and its answer
(a held or lost placement answer widens it), others land at random. At the end the simulator's
desk and the journal are compared (`check_invariants`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from engine.config import parse_config
from engine.replay import replay_tape
from exchange.sim.server import SimServer
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET
from strategy.features import FeatureSetSpec, compile_feature_set, compute_batch
from strategy.models import LightGBMParams, write_bundle
from strategy.models.train import fit_lightgbm

TICKLOOP = Path(sys.executable).with_name("tickloop")
WORKING_STATUSES = ("PENDING", "UNKNOWN")

# Short windows: a restarted engine is warm after a few seconds and trades again at once.
QUICK_SET = FeatureSetSpec.model_validate({
    "name": "quick", "frequency": "second",
    "generators": [{"kind": "stats", "columns": ["close"], "transform": "log_return",
                    "windows": [3, 5], "stats": ["mean", "std"]}],
})  # fmt: skip
HORIZON_S = 10
# Enter often, hold briefly, keep stops close: many placements, protective orders and exits.
CHAOS_STRATEGY: dict[str, Any] = {
    "kind": "model",
    "entry": {"cooldown_s": 5},
    "exits": {"max_hold_s": 8, "stop_loss_pct": 0.06, "take_profits": [{"pct": 0.06}]},
}


def train_chaos_bundle(
    tape: Path, models_dir: Path, symbol: str, enter_share: float = 0.8
) -> float:
    """Train a tiny real LightGBM model on the tape's rows and promote it; return its threshold.

    The threshold is the score quantile that lets `enter_share` of the rows through, so the
    engine trades often (what it trades on does not matter here, only that it places orders).
    """
    rows = replay_tape(tape, parse_config({}).fold).rows
    rows = rows[rows["symbol"] == symbol].reset_index(drop=True)
    plan = compile_feature_set(QUICK_SET)
    features = compute_batch(rows, plan).to_numpy(dtype=np.float64)
    close = rows["close"].to_numpy(dtype=np.float64)
    usable = np.arange(plan.warmup_rows - 1, len(rows) - HORIZON_S)
    labels = (np.roll(close, -HORIZON_S)[usable] > close[usable]).astype(np.float64)
    params = LightGBMParams(num_boost_round=10, num_leaves=6, min_data_in_leaf=10, num_threads=1)
    booster = fit_lightgbm(features[usable], labels, plan.columns, params)
    threshold = float(np.quantile(booster.predict(features[usable]), 1.0 - enter_share))
    write_bundle(
        models_dir / symbol / "up", booster.model_to_string(), symbol=symbol, plan=plan,
        label={"name": "up", "kind": "test", "side": 1, "horizon_rows": HORIZON_S},
        threshold=threshold, training={"rows": len(usable)}, metrics={},
    )  # fmt: skip
    return threshold


def engine_config(
    workdir: Path,
    models_dir: Path,
    sim: SimServer,
    market: str,
    symbols: list[str],
    strategy: dict[str, Any] = CHAOS_STRATEGY,
) -> dict[str, Any]:
    """Return the engine's config: testnet mode on the simulator, journal and log in workdir."""
    endpoint = {"rest": sim.base_http, "ws": sim.base_ws}
    endpoints = {"spot": endpoint} if market == "spot" else {
        "spot": endpoint, "usdm": {**endpoint, "routed": True}}  # fmt: skip
    return {
        "mode": "testnet",
        "market": {"type": market, "symbols": symbols},
        "endpoints": endpoints,
        "paths": {
            "data_dir": str(workdir / "data"),
            "log_dir": str(workdir),
            "journal": str(workdir / "journal.sqlite"),
        },
        "logging": {"console": "off", "level": "INFO", "file": "engine.jsonl"},
        "book": {
            "snapshot_limit": 5000 if market == "spot" else 1000,
            "min_resync_interval_s": 0.05,
        },
        "features": {"sets": [QUICK_SET.model_dump(mode="json")]},
        "models": {"dir": str(models_dir)},
        "strategy": strategy,
        # a short recvWindow keeps "absent after recvWindow + margin" short at every restart
        "execution": {"recv_window_ms": 1000, "user_stream_wait_s": 1.0},
    }


class EngineProcess:
    """`tickloop run -c config` as a child process: start, SIGKILL, SIGTERM."""

    def __init__(self, config_path: Path, workdir: Path) -> None:
        self.config_path = config_path
        self.workdir = workdir
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.exit_codes: list[int] = []

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        """Start the engine (the same command every time)."""
        assert not self.alive
        env = {**os.environ, "BINANCE_API_KEY": TEST_API_KEY, "BINANCE_API_SECRET": TEST_API_SECRET}
        self.starts += 1
        with self._stderr_path().open("wb") as stderr:
            self.proc = await asyncio.create_subprocess_exec(
                str(TICKLOOP), "run", "-c", str(self.config_path),
                cwd=self.workdir, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip

    def _stderr_path(self) -> Path:
        return self.workdir / f"stderr-{self.starts}.txt"

    def last_error(self) -> str:
        """Return the last exception line the latest run wrote to stderr (or its last line)."""
        path = self._stderr_path()
        lines = [ln.strip(" |") for ln in path.read_text().splitlines()] if path.exists() else []
        errors = [ln for ln in lines if ln.split(":", 1)[0].rsplit(".", 1)[-1][:1].isupper()
                  and ":" in ln and not ln.startswith(("File ", "Traceback"))]  # fmt: skip
        return (errors or lines or ["no stderr"])[-1][:300]

    async def wait(self) -> int:
        """Reap an engine that exited by itself; return its exit code."""
        assert self.proc is not None
        return await self.proc.wait()

    async def kill(self) -> None:
        """SIGKILL the engine (no shutdown step runs) and reap it."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.exit_codes.append(await self.proc.wait())

    async def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM the engine and wait for its orderly exit; return the exit code."""
        assert self.proc is not None
        if not self.alive:  # it exited by itself: the caller reports the code
            code = await self.proc.wait()
            self.exit_codes.append(code)
            return code
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"the engine ignored SIGTERM for {timeout_s} s") from None
        self.exit_codes.append(code)
        return code


class JournalProbe:
    """Read-only look at the engine's journal while the engine writes it (WAL allows both)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, where: str = "", params: tuple[Any, ...] = ()) -> list[tuple[str, str]]:
        if not self.path.exists():
            return []
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1.0)
        except sqlite3.OperationalError:
            return []
        try:
            return conn.execute(
                f"SELECT client_order_id, status FROM intents {where}", params
            ).fetchall()
        except sqlite3.OperationalError:  # the engine has not created the table yet
            return []
        finally:
            conn.close()

    def in_flight(self) -> list[str]:
        """Return client ids journaled but not yet acknowledged (PENDING or UNKNOWN)."""
        return [cid for cid, _ in self.rows("WHERE status IN (?, ?)", WORKING_STATUSES)]

    def count(self) -> int:
        return len(self.rows())


@dataclass
class LogLines:
    """The engine's JSON log lines, split by run (each start writes `starting` first)."""

    path: Path

    def events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                out.append(orjson.loads(line))
        return out

    def runs(self) -> list[list[dict[str, Any]]]:
        runs: list[list[dict[str, Any]]] = []
        for event in self.events():
            if event.get("event") == "starting" or not runs:
                runs.append([])
            runs[-1].append(event)
        return runs

    def named(self, name: str, run: int | None = None) -> list[dict[str, Any]]:
        events = self.events() if run is None else self.runs()[run]
        return [e for e in events if e.get("event") == name]


# ---- faults ------------------------------------------------------------------------------------

# (name, weight): every trading fault the simulator knows, and its REST faults (429/418/5xx)
TRADING_FAULTS: tuple[tuple[str, int], ...] = (
    ("timestamp_error", 2), ("order_unknown", 3), ("order_timeout", 2), ("duplicate_ack", 3),
    ("listen_key_expire", 1), ("user_stream_drop", 2), ("http_429", 2), ("http_503", 1),
    ("http_418", 0),
)  # fmt: skip


def inject(sim: SimServer, name: str, rng: random.Random) -> str:
    """Inject one named fault into the simulator; return a description for the log."""
    assert sim.trading is not None
    faults = sim.trading.faults
    if name == "timestamp_error":
        n = rng.randint(1, 2)
        faults.timestamp_error(n)
        return f"timestamp_error n={n}"
    if name == "order_unknown":
        faults.order_unknown(1, status=rng.choice((500, 502, 503)))
        return "order_unknown"
    if name == "order_timeout":
        seconds = round(rng.uniform(11.0, 14.0), 2)  # past the engine's 10 s REST timeout
        faults.order_timeout(seconds, 1)
        return f"order_timeout {seconds}s"
    if name == "duplicate_ack":
        faults.duplicate_ack(1)
        return "duplicate_ack"
    if name == "listen_key_expire":
        faults.listen_key_expire()
        return "listen_key_expire"
    if name == "user_stream_drop":
        faults.user_stream_drop()
        return "user_stream_drop"
    status = int(name.removeprefix("http_"))
    n = 1 if status == 418 else rng.randint(1, 3)
    sim.faults.http_error(status, n)
    return f"http_error {status} n={n}"


class ChaosLog:
    """What the chaos driver did, in order, with the time since the session began."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._t0 = asyncio.get_running_loop().time()

    def add(self, text: str) -> None:
        self.lines.append(f"t={asyncio.get_running_loop().time() - self._t0:7.2f} {text}")

    def __str__(self) -> str:
        return "\n".join(self.lines)


async def fault_storm(
    sim: SimServer,
    rng: random.Random,
    log: ChaosLog,
    stop: asyncio.Event,
    active: asyncio.Event,
    mean_gap_s: float,
    faults: tuple[tuple[str, int], ...] = TRADING_FAULTS,
) -> None:
    """Inject a random fault every ~mean_gap_s while active is set, until stop is set."""
    names = [n for n, w in faults for _ in range(w)]
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.expovariate(1 / mean_gap_s))
        await active.wait()
        if stop.is_set():
            return
        what = inject(sim, rng.choice(names), rng)
        log.add(f"fault {what}")


def clear_faults(sim: SimServer, *, placements: bool = True) -> None:
    """Drop pending (not yet consumed) faults: the REST ones, and those of placements."""
    assert sim.trading is not None
    faults = sim.trading.faults
    faults.timestamp_errors = 0
    sim.faults.http_errors.clear()
    if placements:
        faults.unknown_outcomes.clear()
        faults.timeouts.clear()
        faults.duplicate_acks = 0


async def wait_for(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.01) -> bool:
    """Poll predicate until true or timeout; return whether it became true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(poll_s)
    return True


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
