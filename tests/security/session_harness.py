"""A full offline session of the real `tickloop` CLI with random secrets, for the artifact scan.

One `RunSpec` = one way of running the engine (paper demo; paper collect + record against the
test's simulator; later testnet against the simulator with trading). `run_session` does, for
one spec, in a scratch directory:

* starts a fake Telegram Bot API (tests/engine/notify/telegram_fake.py) with scripted faults
  that echo the request path (hence the token) back into error texts, and a loopback Binance
  simulator with trading that accepts the random API key;
* writes config files (JSON log at DEBUG, console JSON, journal, dashboard on port 0 with a
  token, Telegram at the fake, a tiny promoted model so paper trading places orders);
* runs the spec's engine commands as subprocesses with BINANCE_API_KEY, BINANCE_API_SECRET,
  BINANCE_PRIVATE_KEY (Ed25519 PEM), TELEGRAM_TOKEN and TICKLOOP_DASHBOARD_TOKEN set to fresh
  random values; while they run, asks each dashboard with and without its token, and sends
  Telegram commands from an allowed and from an unknown chat;
* runs `tickloop doctor` (mode testnet, at the simulator: signs with the key and secret) and
  `tickloop report --html` on every journal;
* returns everything needed to grep: the scratch directory, the captured stdout/stderr, the
  texts that left through Telegram and the dashboard, and evidence the secrets were used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets as random
import signal
import string
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import yaml
from aiohttp import web
from telegram_fake import FakeTelegram, Fault

from exchange.sim.server import SimServer
from exchange.sim.trading.keys import ApiKey

CHAT = 424242
STRANGER = 999001
SYMBOL = "BTCUSDT"
SECRET_ENV = ("BINANCE_API_KEY", "BINANCE_API_SECRET", "BINANCE_PRIVATE_KEY", "BINANCE_PRIVATE_KEY_FILE",
              "TELEGRAM_TOKEN", "TICKLOOP_DASHBOARD_TOKEN")  # fmt: skip
FAST_SET = {  # a per-second feature set that warms in 20 rows, so the model trades in a short run
    "name": "fast",
    "frequency": "second",
    "generators": [{"kind": "stats", "columns": ["close"], "transform": "log_return",
                    "windows": [5, 20], "stats": ["mean", "std", "slope"]}],
}  # fmt: skip
LINE_LIMIT = 1 << 24  # a DEBUG log line may be long
# safety limit on any one process (not a timing assertion)
LIMIT_S = float(os.environ.get("TICKLOOP_TEST_LIMIT_S", "120"))


def _alnum(n: int) -> str:
    return "".join(random.choice(string.ascii_letters + string.digits) for _ in range(n))


def _ed25519_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


@dataclass(frozen=True)
class SessionSecrets:
    """Fresh random credentials for one session (never a real key)."""

    api_key: str = field(default_factory=lambda: "tlk" + _alnum(61))
    api_secret: str = field(default_factory=lambda: "tls" + _alnum(61))
    telegram_token: str = field(
        default_factory=lambda: f"{random.randbelow(9 * 10**9) + 10**9}:AA{_alnum(33)}"
    )
    dashboard_token: str = field(default_factory=lambda: "tld" + _alnum(29))
    private_key_pem: str = field(default_factory=_ed25519_pem)

    def env(self) -> dict[str, str]:
        """Return {environment variable: value} of every secret (the scan names them so too)."""
        return {
            "BINANCE_API_KEY": self.api_key,
            "BINANCE_API_SECRET": self.api_secret,
            "BINANCE_PRIVATE_KEY": self.private_key_pem,
            "TELEGRAM_TOKEN": self.telegram_token,
            "TICKLOOP_DASHBOARD_TOKEN": self.dashboard_token,
        }


@dataclass(frozen=True)
class Where:
    """What a spec's command builder may use: the scratch dir, the simulator, the tape."""

    root: Path
    sim_http: str
    sim_ws: str
    tape: Path


@dataclass(frozen=True)
class EngineCommand:
    """One engine process of a spec: its name, config overrides and CLI arguments."""

    name: str
    args: Callable[[Where, Path], list[str]]  # (where, its config file) -> argv after `tickloop`
    config: Callable[[Where], dict[str, Any]] = lambda where: {}
    at_sim: bool = False  # the engine's endpoints point at the test's simulator


@dataclass(frozen=True)
class RunSpec:
    """One way of running the engine; add a configuration with one more RunSpec."""

    id: str
    mode: str
    commands: tuple[EngineCommand, ...]
    sim_speed: float = 40.0  # for commands at the test's simulator
    engine_signs_requests: bool = False  # True once the engine itself uses the Binance keys
    # variables left unset for this spec: BINANCE_PRIVATE_KEY makes the engine sign with Ed25519,
    # which the simulator (HMAC keys only) refuses
    omit_env: tuple[str, ...] = ()


@dataclass
class Process:
    name: str
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    dashboard_url: str | None = None
    dashboard_statuses: dict[str, int] = field(default_factory=dict)
    dashboard_bodies: list[str] = field(default_factory=list)


@dataclass
class Session:
    root: Path
    spec: RunSpec
    secrets: SessionSecrets
    processes: list[Process]
    doctor: Process
    reports: list[Process]
    telegram_requests: list[Any]
    telegram_texts: list[str]  # every text that left for Telegram
    engine_key_use: KeyUse  # what the engines' simulator saw of the API key
    doctor_key_use: KeyUse  # what the doctor's simulator saw of it


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def base_config(name: str, mode: str, telegram_api: str, models_dir: Path) -> dict[str, Any]:
    """Everything that writes an artifact switched on."""
    return {
        "mode": mode,
        "market": {"type": "spot", "symbols": [SYMBOL]},
        "paths": {"data_dir": f"{name}/data", "log_dir": f"{name}/logs"},
        "logging": {"level": "DEBUG", "console": "json", "file": "tickloop.jsonl"},
        "dashboard": {"enabled": True, "host": "127.0.0.1", "port": 0, "push_interval_s": 0.5},
        "telegram": {"enabled": True, "chat_ids": [CHAT], "api_base": telegram_api,
                     "poll_timeout_s": 1, "request_timeout_s": 5, "signal_threshold": None,
                     "signal_repeat_s": 0, "retry": {"max_attempts": 4, "backoff_initial_s": 0.2,
                                                     "backoff_max_s": 1}},
        "features": {"sets": [FAST_SET]},
        "models": {"dir": str(models_dir)},
        "strategy": {"kind": "model", "entry": {"cooldown_s": 2},
                     "exits": {"max_hold_s": 6, "stop_loss_pct": 0.05, "take_profits": [{"pct": 0.05}]}},
        "book": {"snapshot_limit": 5000},
    }  # fmt: skip


def train_tiny_bundle(tape: Path, models_dir: Path, threshold: float = 0.2) -> None:
    """Promote a small real model of the tape's BTCUSDT rows (threshold low: it trades)."""
    from engine.config import parse_config
    from engine.replay import replay_tape
    from strategy.features import compile_feature_set, compute_batch
    from strategy.features.spec import FeatureSetSpec
    from strategy.models import LightGBMParams, write_bundle
    from strategy.models.train import fit_lightgbm

    rows = replay_tape(tape, parse_config({}).fold).rows
    rows = rows[rows["symbol"] == SYMBOL].reset_index(drop=True)
    plan = compile_feature_set(FeatureSetSpec.model_validate(FAST_SET))
    features = compute_batch(rows, plan).to_numpy(dtype=np.float64)
    close = rows["close"].to_numpy(dtype=np.float64)
    future = np.roll(close, -30)
    usable = np.arange(plan.warmup_rows - 1, len(rows) - 30)
    labels = (future[usable] > close[usable]).astype(np.float64)
    params = LightGBMParams(num_boost_round=15, num_leaves=8, min_data_in_leaf=10, num_threads=1)
    booster = fit_lightgbm(features[usable], labels, plan.columns, params)
    write_bundle(
        models_dir / SYMBOL / "up", booster.model_to_string(), symbol=SYMBOL, plan=plan,
        label={"name": "up", "kind": "test", "side": 1, "horizon_rows": 30},
        threshold=threshold, training={"rows": len(usable)}, metrics={},
    )  # fmt: skip


def engine_env(session_secrets: SessionSecrets | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("TICKLOOP_BENCH_RESULTS", None)
    if session_secrets is not None:
        env.update(session_secrets.env())
    return env


async def _read_lines(
    stream: asyncio.StreamReader, sink: list[str], on_line: Callable[[str], None]
) -> None:
    while line := await stream.readline():
        text = line.decode("utf-8", "replace")
        sink.append(text)
        on_line(text)


async def run_cli(argv: list[str], cwd: Path, env: dict[str, str], proc: Process,
                  on_stderr_line: Callable[[str], None] = lambda line: None,
                  on_start: Callable[[asyncio.subprocess.Process], None] = lambda child: None,
                  ) -> Process:  # fmt: skip
    """Run `python -m engine.cli argv` to its end; fill proc with its exit code and output."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.cli", *argv, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=LINE_LIMIT,
    )  # fmt: skip
    on_start(child)
    out: list[str] = []
    err: list[str] = []
    assert child.stdout is not None and child.stderr is not None
    try:
        async with asyncio.timeout(LIMIT_S):
            await asyncio.gather(_read_lines(child.stdout, out, lambda _: None),
                                 _read_lines(child.stderr, err, on_stderr_line))  # fmt: skip
            proc.returncode = await child.wait()
    except TimeoutError:
        err.append(f"\n[test harness: killed after {LIMIT_S:.0f} s]\n")
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        proc.stdout, proc.stderr = "".join(out), "".join(err)
    return proc


async def _ask_dashboard(proc: Process, token: str) -> None:
    """Ask the dashboard without, with a wrong, and with the right token; keep what it served."""
    url = proc.dashboard_url
    assert url is not None
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as resp:
                proc.dashboard_statuses["page, no token"] = resp.status
            async with http.get(url + "api/snapshot", params={"token": "x" + token[1:]}) as resp:
                proc.dashboard_statuses["snapshot, wrong token"] = resp.status
            async with http.get(url, params={"token": token}) as resp:
                proc.dashboard_statuses["page, token"] = resp.status
                proc.dashboard_bodies.append(await resp.text())
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(url + "api/snapshot", headers=headers) as resp:
                proc.dashboard_statuses["snapshot, bearer token"] = resp.status
                proc.dashboard_bodies.append(await resp.text())
    except aiohttp.ClientError as exc:  # the engine stopped meanwhile: the assertions say so
        proc.dashboard_statuses[f"error {type(exc).__name__}"] = 0


@dataclass
class Engine:
    """One engine process while it runs: its output so far and what the conductor waits for."""

    command: EngineCommand
    proc: Process
    child: asyncio.subprocess.Process | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)  # its market websocket is up
    probed: asyncio.Event = field(default_factory=asyncio.Event)  # the dashboard was asked


async def _run_engine(engine: Engine, spec: RunSpec, where: Where, env: dict[str, str],
                      telegram_api: str, models_dir: Path, dashboard_token: str) -> Process:  # fmt: skip
    command, proc = engine.command, engine.proc
    config = base_config(command.name, spec.mode, telegram_api, models_dir)
    if command.at_sim:
        config["endpoints"] = {"spot": {"rest": where.sim_http, "ws": where.sim_ws}}
    config = _merge(config, command.config(where))
    config_path = where.root / f"{command.name}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    probes: list[asyncio.Task[None]] = []

    async def probe() -> None:
        await _ask_dashboard(proc, dashboard_token)
        engine.probed.set()

    def watch(line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        if event.get("event") == "dashboard_listening" and not probes:
            proc.dashboard_url = event["url"]
            probes.append(asyncio.create_task(probe()))
        elif event.get("event") == "ws.connected":
            engine.connected.set()

    def started(child: asyncio.subprocess.Process) -> None:
        engine.child = child

    try:
        await run_cli(command.args(where, config_path), where.root, env, proc, watch, started)
    finally:
        engine.probed.set()  # an engine that ended is not waited for
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
    return proc


async def _talk_to_telegram(fake: FakeTelegram, pollers: int) -> None:
    """Once every engine polls: a command from an unknown chat, then /status from the allowed one."""
    await fake.wait_for(
        lambda: sum(1 for r in fake.requests if r.method == "getUpdates" and r.fields.get("offset") == "-1"
                    and r.status == 200) >= pollers, limit_s=LIMIT_S)  # fmt: skip
    fake.push_message(STRANGER, "/balance")
    fake.push_message(CHAT, "/status")
    await fake.wait_for(
        lambda: any(t.startswith("mode ") for t in fake.sent(CHAT)), limit_s=LIMIT_S
    )


async def _conduct(engines: list[Engine], sim: SimServer, fake: FakeTelegram) -> None:
    """Start the replay once every engine at the simulator is connected, talk to Telegram, wait
    for the replay and the dashboard probes, then stop those engines with SIGTERM (a demo stops
    by itself at the end of its tape)."""
    at_sim = [e for e in engines if e.command.at_sim]
    try:
        async with asyncio.timeout(LIMIT_S):
            if at_sim:
                await asyncio.gather(*(e.connected.wait() for e in at_sim))
                sim.start()
            with contextlib.suppress(AssertionError):  # not answered: the test says so
                await _talk_to_telegram(fake, len(engines))
            if at_sim:
                await sim.wait_finished()
                await asyncio.sleep(1.0)  # the last frames reach the engines
            await asyncio.gather(*(e.probed.wait() for e in engines))
    finally:
        for engine in at_sim:
            if engine.child is not None and engine.child.returncode is None:
                engine.child.send_signal(signal.SIGTERM)


@dataclass
class KeyUse:
    """What a simulator saw of the API key: signed requests it answered 200, and the others."""

    accepted_signed: list[str] = field(default_factory=list)  # "GET /path"
    refused: list[str] = field(default_factory=list)


def key_use_recorder(api_key: str, seen: KeyUse) -> Any:
    """An aiohttp middleware for the simulator recording the requests made with api_key."""

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        # a POST/PUT/DELETE may carry its signature in the form body (read once, cached by aiohttp)
        body = await request.text() if request.can_read_body else ""
        response = await handler(request)
        if request.headers.get("X-MBX-APIKEY") == api_key:
            what = f"{request.method} {request.path}"
            signed = "signature=" in request.rel_url.raw_query_string or "signature=" in body
            (seen.accepted_signed if signed and response.status == 200 else seen.refused).append(
                what
            )
        return response

    return record


def _trading_sim(tape: Path, speed: float, session_secrets: SessionSecrets, seen: KeyUse,
                 **options: Any) -> SimServer:  # fmt: skip
    sim = SimServer([tape], speed=speed, trading=True, **options)
    assert sim.trading is not None
    sim.trading.keys.add(ApiKey(session_secrets.api_key, session_secrets.api_secret))
    sim.app.middlewares.append(key_use_recorder(session_secrets.api_key, seen))
    return sim


async def run_session(spec: RunSpec, root: Path, tape: Path, models_dir: Path) -> Session:
    """Run one spec end to end in root; return what the scan needs."""
    session_secrets = SessionSecrets()
    env = engine_env(session_secrets)
    for name in spec.omit_env:
        env.pop(name, None)
    token = session_secrets.telegram_token
    engine_keys, doctor_keys = KeyUse(), KeyUse()
    # the engines' simulator replays once they are all connected; the doctor has its own
    sim = _trading_sim(tape, spec.sim_speed, session_secrets, engine_keys, autostart=False)
    doctor_sim = _trading_sim(tape, 1.0, session_secrets, doctor_keys)
    async with FakeTelegram(token) as fake, sim, doctor_sim:
        # error texts that carry the request path, hence the token, back to the engine
        fake.fail("sendMessage", Fault(500, "internal error", echo_path=True))
        fake.fail("getUpdates", Fault(502, "bad gateway", echo_path=True))
        fake.fail(
            "getUpdates", Fault(500, body=f"<html>proxy: POST /bot{token}/getUpdates failed</html>")
        )
        where = Where(root, sim.base_http, sim.base_ws, tape)
        engines = [Engine(c, Process(c.name)) for c in spec.commands]
        runs = [asyncio.create_task(_run_engine(e, spec, where, env, fake.base_url, models_dir,
                                                session_secrets.dashboard_token)) for e in engines]  # fmt: skip
        doctor = asyncio.create_task(
            _doctor(Where(root, doctor_sim.base_http, doctor_sim.base_ws, tape), env)
        )
        conductor = asyncio.create_task(_conduct(engines, sim, fake))
        processes = list(await asyncio.gather(*runs))
        with contextlib.suppress(TimeoutError):
            await conductor
        doctor_proc = await doctor
        journals = sorted(root.rglob("*.sqlite"))
        reports = list(await asyncio.gather(*(_report(journal, root, env) for journal in journals)))
        texts = [v for r in fake.requests for v in r.fields.values()]
        return Session(root, spec, session_secrets, processes, doctor_proc, reports,
                       list(fake.requests), texts, engine_keys, doctor_keys)  # fmt: skip


async def _doctor(where: Where, env: dict[str, str]) -> Process:
    """`tickloop doctor` in mode testnet at the simulator: it signs requests with the keys."""
    config = {
        "mode": "testnet",
        "market": {"type": "spot", "symbols": [SYMBOL]},
        "endpoints": {"spot": {"rest": where.sim_http, "ws": where.sim_ws}},
        "paths": {"data_dir": "doctor/data", "log_dir": "doctor/logs"},
    }
    path = where.root / "doctor.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return await run_cli(
        ["doctor", "-c", str(path), "--timeout", "10"], where.root, env, Process("doctor")
    )


async def _report(journal: Path, root: Path, env: dict[str, str]) -> Process:
    html = journal.with_suffix(".report.html")
    return await run_cli(["report", str(journal), "--html", str(html)], root, env,
                         Process(f"report {journal.relative_to(root)}"))  # fmt: skip
