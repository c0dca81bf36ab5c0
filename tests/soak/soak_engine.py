"""The engine under soak: its configuration, and the child process the kill phase SIGKILLs.

The configuration is the project's own, with mode testnet pointed at the loopback simulator, the
soak's tiny model and strategy, and four limits moved because a sped-up clock shrinks them in wall
time: at speed K, a 15 s depth-stall watchdog is 15/K s of wall time (a scheduler hiccup on a
loaded machine), and a 5 s recvWindow is 5/K s of request latency. They are raised to a few
hundred wall milliseconds or more, so the engine reacts to the injected faults rather than to this machine's load.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from engine.model import Market
from exchange.sim.server import SimServer
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET
from tests.soak.scaled_clock import ScaledClock
from tests.soak.soak_models import SOAK_SET, SOAK_STRATEGY

REPO = Path(__file__).resolve().parents[2]


def engine_raw_config(
    sim: SimServer,
    market: Market,
    symbols: list[str],
    models_dir: Path,
    workdir: Path,
    speed: float,
    log_level: str = "WARNING",
    cooldown_s: int | None = None,
) -> dict[str, Any]:
    """Return the engine's configuration (YAML-shaped): testnet on the simulator, journal in workdir."""
    endpoint = {"rest": sim.base_http, "ws": sim.base_ws}
    endpoints = {"spot": endpoint} if market is Market.SPOT else {
        "spot": endpoint, "usdm": {**endpoint, "routed": True}}  # fmt: skip
    wall_s = max(1.0, speed)  # one wall second of market time
    return {
        "mode": "testnet",
        "market": {"type": market.value, "symbols": symbols},
        "endpoints": endpoints,
        "paths": {
            "data_dir": str(workdir / "data"),
            "log_dir": str(workdir),
            "journal": str(workdir / "journal.sqlite"),
        },
        "logging": {"console": "off", "level": log_level, "file": "engine.jsonl"},
        "book": {
            "snapshot_limit": 5000 if market is Market.SPOT else 1000,
            "min_resync_interval_s": 0.05,
        },
        "streams": {
            "mark_price": market is Market.USDM,
            "stall_timeout_s": {
                "depth": max(15.0, wall_s),
                "trade": None,
                "aggTrade": None,
                "markPrice": max(10.0, wall_s),
            },
            "connection_timeout_s": max(90.0 if market is Market.SPOT else 200.0, 3 * wall_s),
        },
        "features": {"sets": [SOAK_SET.model_dump(mode="json")]},
        "models": {"dir": str(models_dir)},
        "strategy": SOAK_STRATEGY
        if cooldown_s is None
        else {**SOAK_STRATEGY, "entry": {**SOAK_STRATEGY["entry"], "cooldown_s": cooldown_s}},
        # 300 wall ms of request latency; not Binance's 60 s maximum, which outlasts the order
        # manager's 60 s give-up and leaves a restarted engine's first unknown intent unresolved
        "execution": {"recv_window_ms": int(min(60_000, max(5_000, 300 * speed)))},
        "dashboard": {"enabled": False},  # its fixed port would clash between runs
        "risk": {"stale_data_s": max(30.0, 2 * wall_s)},
    }


def engine_env(clock: ScaledClock) -> dict[str, str]:
    """Return the child's environment: the simulator's test keys and the shared clock."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINANCE_")}
    env.update({"BINANCE_API_KEY": TEST_API_KEY, "BINANCE_API_SECRET": TEST_API_SECRET,
                "TICKLOOP_SOAK_CLOCK": clock.spec(),
                "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])})  # fmt: skip
    return env


class EngineProcess:
    """The engine as a child process (`python -m tests.soak.engine_child -c cfg.yaml`)."""

    def __init__(self, config: dict[str, Any], workdir: Path, clock: ScaledClock) -> None:
        self.workdir = workdir
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.env = engine_env(clock)
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.alive and self.proc is not None else None

    async def start(self) -> None:
        """Start the engine on the same config and journal every time."""
        assert not self.alive
        self.starts += 1
        with open(self.workdir / f"stderr-{self.starts}.txt", "wb") as stderr:  # noqa: ASYNC230
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.soak.engine_child", "-c", str(self.config_path),
                cwd=REPO, env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip

    async def kill(self) -> int:
        """SIGKILL the engine (no shutdown step runs); return its exit code."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.kills += 1
        return await self.proc.wait()

    async def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM the engine and wait for its orderly exit (SIGKILL after timeout_s)."""
        if not self.alive:
            return self.proc.returncode if self.proc and self.proc.returncode is not None else 0
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            return await self.kill()
