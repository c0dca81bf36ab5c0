"""`tickloop doctor` on good and bad set-ups: the loopback simulator, a closed port, and a local
fake Binance REST/websocket server that checks signatures the way Binance does (HMAC-SHA256 over
the exact query bytes received, timestamp within recvWindow of its own clock).

Secrets used here are random per test and are asserted absent from every line of output.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import os
import secrets
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

import lightgbm as lgb
import numpy as np
import pytest
from aiohttp import WSMsgType, web

from engine.clock import LiveClock, ReplayClock
from engine.config import parse_config
from engine.doctor import Check, Status, doctor_command, run_doctor, signed_query
from engine.tape import infer_market, tape_symbols
from exchange.sim.server import SimServer
from strategy.features import compile_feature_set
from strategy.models import write_bundle

# ---------------------------------------------------------------------------- helpers


class FakeBinance:
    """Binance's REST time/exchangeInfo/signed endpoints and a combined-stream websocket, on loopback."""

    def __init__(self, key: str, secret: str, *, offset_ms: int = 0,
                 restrictions: dict[str, Any] | None = None, symbols: tuple[str, ...] = ("BTCUSDT",)) -> None:
        self.key, self.secret, self.offset_ms = key, secret, offset_ms
        self.restrictions = restrictions  # None: the endpoint does not exist (testnets)
        self.symbols = symbols
        self.signed_ok = 0
        self.ws_connections = 0
        self._clock = LiveClock()
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_get("/api/v3/exchangeInfo", self._info)
        app.router.add_get("/api/v3/account", self._account)
        app.router.add_get("/sapi/v1/account/apiRestrictions", self._restrictions)
        app.router.add_get("/stream", self._ws)
        self.app = app

    def server_ms(self) -> int:
        return self._clock.now_ns() // 1_000_000 + self.offset_ms

    async def __aenter__(self) -> Self:
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.server_ms()})

    async def _info(self, request: web.Request) -> web.Response:
        wanted = request.query.get("symbols", "").strip('[]').replace('"', "").split(",")
        if any(s not in self.symbols for s in wanted if s):
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        return web.json_response({"symbols": [{"symbol": s, "status": "TRADING"} for s in self.symbols]})

    def _check_signed(self, request: web.Request) -> web.Response | None:
        if request.headers.get("X-MBX-APIKEY") != self.key:
            return web.json_response({"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
                                     status=401)
        raw_query = request.raw_path.partition("?")[2]  # the bytes as sent, not re-encoded
        payload, _, signature = raw_query.rpartition("&signature=")
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.lower(), expected):
            return web.json_response({"code": -1022, "msg": "Signature for this request is not valid."}, status=400)
        timestamp, window = int(request.query["timestamp"]), int(request.query.get("recvWindow", 5000))
        now = self.server_ms()
        if not (timestamp < now + 1000 and now - timestamp <= window):
            return web.json_response({"code": -1021, "msg": "Timestamp outside of the recvWindow."}, status=400)
        self.signed_ok += 1
        return None

    async def _account(self, request: web.Request) -> web.Response:
        return self._check_signed(request) or web.json_response({"canTrade": True, "balances": []})

    async def _restrictions(self, request: web.Request) -> web.Response:
        if self.restrictions is None:
            return web.Response(status=404, text="<html>Not Found</html>")
        return self._check_signed(request) or web.json_response(self.restrictions)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws_connections += 1
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
        return ws


SAFE = {"enableWithdrawals": False, "enableSpotAndMarginTrading": True, "enableFutures": False,
        "enableReading": True, "ipRestrict": True}


def write_config(tmp_path: Path, rest: str, ws: str, *, mode: str = "paper", market: str = "spot",
                 symbols: tuple[str, ...] = ("BTCUSDT",), extra: str = "") -> Path:
    routed = ", routed: true" if market == "usdm" else ""
    path = tmp_path / "config.yaml"
    path.write_text(
        f"mode: {mode}\n"
        f"market: {{type: {market}, symbols: [{', '.join(symbols)}]}}\n"
        f"endpoints:\n  {market}: {{rest: '{rest}', ws: '{ws}'{routed}}}\n"
        f"paths: {{data_dir: '{tmp_path / 'data'}', log_dir: '{tmp_path / 'logs'}'}}\n"
        f"models: {{dir: '{tmp_path / 'models'}'}}\n"
        "logging: {console: off}\n" + extra
    )
    return path


def by_name(checks: list[Check]) -> dict[str, list[Check]]:
    out: dict[str, list[Check]] = {}
    for check in checks:
        out.setdefault(check.name, []).append(check)
    return out


def statuses(checks: list[Check], name: str) -> list[Status]:
    return [c.status for c in checks if c.name == name]


@pytest.fixture
def keys() -> tuple[str, str]:
    return secrets.token_hex(32), secrets.token_hex(32)


@pytest.fixture
async def fake(keys: tuple[str, str]) -> AsyncIterator[FakeBinance]:
    async with FakeBinance(*keys, restrictions=dict(SAFE)) as server:
        yield server


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def env_of(keys: tuple[str, str]) -> dict[str, str]:
    return {"BINANCE_API_KEY": keys[0], "BINANCE_API_SECRET": keys[1]}


def assert_no_secret(text: str, keys: tuple[str, str]) -> None:
    for value in keys:
        assert value not in text
        assert value[:16] not in text and value[-16:] not in text


# ---------------------------------------------------------------------------- signing


def test_signature_matches_binance_documented_vectors() -> None:
    # reference/binance-api.md §3.2, spot REST and USDⓈ-M examples
    spot = signed_query(
        {"symbol": "LTCBTC", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": 1,
         "price": "0.1", "recvWindow": 5000, "timestamp": 1499827319559},
        "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j",
    )
    assert spot.endswith("&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71")
    futures = signed_query(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": 1, "price": 9000,
         "timeInForce": "GTC", "recvWindow": 5000, "timestamp": 1591702613943},
        "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9",
    )
    assert futures.endswith("&signature=3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9")


def test_signature_covers_the_percent_encoded_bytes_that_are_sent() -> None:
    query = signed_query({"symbols": '["BTCUSDT"]', "timestamp": 1}, "s3cret")
    payload, _, signature = query.rpartition("&signature=")
    assert payload == "symbols=%5B%22BTCUSDT%22%5D&timestamp=1"
    assert signature == hmac.new(b"s3cret", payload.encode(), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------- good set-ups


@pytest.mark.parametrize("tape_key", ["spot_btcusdt", "usdm_btcusdt"])
async def test_good_paper_set_up_against_the_simulator_is_all_ok(
    tapes: dict[str, Path], tmp_path: Path, tape_key: str
) -> None:
    tape = tapes[tape_key]
    market, symbols = infer_market(tape).value, tuple(tape_symbols(tape))
    # autostart off: the simulator's clock stays at the tape's first frame, the doctor's clock with it
    async with SimServer([tape], autostart=False) as sim:
        config = write_config(tmp_path, sim.base_http, sim.base_ws, market=market, symbols=symbols)
        clock = ReplayClock(sim.server_time_ms() * 1_000_000)
        checks = await run_doctor(config, env={}, env_file=None, clock=clock)
    lines = "\n".join(c.line() for c in checks)
    assert all(c.status is Status.OK for c in checks), lines
    names = by_name(checks)
    assert {"config", "libraries", "mode", "endpoints", "keys", "data_dir", "log_dir", "models", "rest", "clock",
            "symbols", "websocket"} <= set(names)
    # one websocket line per connection the App would open: USDⓈ-M needs /public and /market
    assert len(names["websocket"]) == (2 if market == "usdm" else 1)
    assert "permissions" not in names  # paper mode uses no keys


async def test_good_live_set_up_with_safe_keys_is_ok_and_signs_correctly(
    fake: FakeBinance, keys: tuple[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, fake.http, fake.ws, mode="live")
    checks = await run_doctor(config, env=env_of(keys), env_file=None)
    lines = "\n".join(c.line() for c in checks)
    assert statuses(checks, "mode") == [Status.WARN]  # live: real money, a reminder of --live
    assert [c for c in checks if c.status is not Status.OK and c.name != "mode"] == [], lines
    assert statuses(checks, "permissions") == [Status.OK]
    assert statuses(checks, "account") == [Status.OK]
    assert fake.signed_ok == 2 and fake.ws_connections == 1
    assert_no_secret(lines, keys)


# ---------------------------------------------------------------------------- bad set-ups


def test_closed_port_fails_reachability_with_a_hint(tmp_path: Path) -> None:
    port = closed_port()
    config = write_config(tmp_path, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}")
    out = io.StringIO()
    code = doctor_command(config, env_file=tmp_path / "absent.env", timeout_s=2, out=out)
    text = out.getvalue()
    assert code == 1
    lines = {line.split()[1]: line for line in text.splitlines() if not line.startswith("doctor:")}
    assert lines["rest"].startswith("FAIL") and "-> fix:" in lines["rest"] and "firewall" in lines["rest"]
    assert lines["websocket"].startswith("FAIL") and "-> fix:" in lines["websocket"]
    assert lines["clock"].startswith("WARN") and "not checked" in lines["clock"]
    assert lines["env-file"].startswith("FAIL")  # named explicitly, and absent
    assert text.splitlines()[-1].startswith("doctor: ") and " FAIL" in text.splitlines()[-1]


async def test_key_that_allows_withdrawals_fails_in_live_mode(
    fake: FakeBinance, keys: tuple[str, str], tmp_path: Path
) -> None:
    fake.restrictions = {**SAFE, "enableWithdrawals": True, "ipRestrict": False}
    config = write_config(tmp_path, fake.http, fake.ws, mode="live")
    checks = await run_doctor(config, env=env_of(keys), env_file=None)
    permissions = [c for c in checks if c.name == "permissions"]
    assert [c.status for c in permissions] == [Status.FAIL, Status.WARN]
    assert "withdraw" in permissions[0].detail and "Enable Withdrawals" in permissions[0].hint
    assert "IP" in permissions[1].detail
    assert_no_secret("\n".join(c.line() for c in checks), keys)


async def test_withdrawal_key_on_testnet_and_a_missing_endpoint_only_warn(
    fake: FakeBinance, keys: tuple[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, fake.http, fake.ws, mode="testnet")
    fake.restrictions = {**SAFE, "enableWithdrawals": True}
    withdrawals = await run_doctor(config, env=env_of(keys), env_file=None)
    assert statuses(withdrawals, "permissions") == [Status.WARN]
    fake.restrictions = None  # the USDⓈ-M and spot testnets have no /sapi
    absent = await run_doctor(config, env=env_of(keys), env_file=None)
    assert statuses(absent, "permissions") == [Status.WARN]
    assert "not checked" in next(c.detail for c in absent if c.name == "permissions")
    assert statuses(absent, "account") == [Status.OK]  # the keys themselves work


async def test_wrong_secret_is_reported_as_rejected_keys(
    fake: FakeBinance, keys: tuple[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, fake.http, fake.ws, mode="live")
    wrong = (keys[0], secrets.token_hex(32))
    checks = await run_doctor(config, env=env_of(wrong), env_file=None)
    assert statuses(checks, "permissions") == [Status.FAIL]
    account = next(c for c in checks if c.name == "account")
    assert account.status is Status.FAIL and "-1022" in account.detail
    assert fake.signed_ok == 0
    assert_no_secret("\n".join(c.line() for c in checks), wrong)


@pytest.mark.parametrize(("offset_ms", "expected"), [(3_000, Status.WARN), (-3_000, Status.WARN),
                                                      (8_000, Status.FAIL)])
async def test_server_clock_off_is_reported(
    keys: tuple[str, str], tmp_path: Path, offset_ms: int, expected: Status
) -> None:
    async with FakeBinance(*keys, offset_ms=offset_ms, restrictions=dict(SAFE)) as fake:
        config = write_config(tmp_path, fake.http, fake.ws, mode="live")
        checks = await run_doctor(config, env=env_of(keys), env_file=None)
    clock = next(c for c in checks if c.name == "clock")
    assert clock.status is expected and "timedatectl" in clock.hint
    measured = int(clock.detail.split()[1])  # "offset +3001 ms ..."
    assert abs(measured - offset_ms) < 500
    # signed requests carry the measured offset, so the keys check is not spoiled by the clock
    assert statuses(checks, "account") == [Status.OK]


async def test_missing_keys_fail_in_live_mode_and_are_not_needed_in_paper(
    fake: FakeBinance, keys: tuple[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, fake.http, fake.ws, mode="live")
    checks = await run_doctor(config, env={"BINANCE_API_KEY": keys[0]}, env_file=None)
    key_check = next(c for c in checks if c.name == "keys")
    assert key_check.status is Status.FAIL and "BINANCE_API_SECRET" in key_check.detail
    assert "BINANCE_API_KEY" not in key_check.detail.split("needs")[1]
    assert "permissions" not in by_name(checks) and fake.signed_ok == 0
    assert_no_secret("\n".join(c.line() for c in checks), keys)
    paper = write_config(tmp_path, fake.http, fake.ws, mode="paper")
    assert statuses(await run_doctor(paper, env={}, env_file=None), "keys") == [Status.OK]


async def test_testnet_mode_on_production_endpoints_fails(tmp_path: Path, keys: tuple[str, str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"mode: testnet\npaths: {{data_dir: '{tmp_path}', log_dir: '{tmp_path}'}}\n"
                      f"models: {{dir: '{tmp_path / 'models'}'}}\n")
    # offline: the check is on the configured hosts, and tests never reach the internet
    checks = await run_doctor(config, env=env_of(keys), env_file=None, network=False)
    endpoints = next(c for c in checks if c.name == "endpoints")
    assert endpoints.status is Status.FAIL and "testnet.binance.vision" in endpoints.hint
    assert "rest" not in by_name(checks)


def _tiny_booster(columns: tuple[str, ...]) -> str:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, len(columns)))
    y = (x[:, 0] > 0).astype(float)
    data = lgb.Dataset(x, label=y, feature_name=[f"f{i}" for i in range(len(columns))])
    booster = lgb.train({"objective": "binary", "num_leaves": 4, "verbose": -1, "num_threads": 1}, data, 3)
    return booster.model_to_string()


async def test_corrupted_bundle_fails_with_the_reason(fake: FakeBinance, tmp_path: Path) -> None:
    config = write_config(tmp_path, fake.http, fake.ws)
    plan = compile_feature_set(next(s for s in parse_config({}).features.sets if s.label == "minute"))
    model = _tiny_booster(plan.columns)
    for name in ("up", "down"):
        write_bundle(tmp_path / "models" / "BTCUSDT" / name, model, symbol="BTCUSDT", plan=plan,
                     label={"name": name, "kind": "forward", "side": 1 if name == "up" else -1},
                     threshold=0.6, training={}, metrics={})
    good = await run_doctor(config, env={}, env_file=None)
    assert statuses(good, "models") == [Status.OK]
    assert "BTCUSDT/down" in next(c.detail for c in good if c.name == "models")

    model_file = tmp_path / "models" / "BTCUSDT" / "up" / "model.txt"
    model_file.write_text(model_file.read_text().replace("num_leaves=", "num_leaves=9", 1))
    bad = await run_doctor(config, env={}, env_file=None)
    models = [c for c in bad if c.name == "models"]
    assert [c.status for c in models] == [Status.FAIL]
    assert "BTCUSDT/up" in models[0].detail and "checksum mismatch: model.txt" in models[0].detail
    assert "tickloop promote" in models[0].hint


async def test_bundle_of_an_unconfigured_feature_set_fails(fake: FakeBinance, tmp_path: Path) -> None:
    from strategy.features import FeatureSetSpec

    other = compile_feature_set(FeatureSetSpec.model_validate({
        "name": "other", "frequency": "second",
        "generators": [{"kind": "stats", "columns": ["close"], "transform": "log_return", "windows": [5],
                        "stats": ["mean"]}],
    }))
    write_bundle(tmp_path / "models" / "BTCUSDT" / "up", _tiny_booster(other.columns), symbol="BTCUSDT",
                 plan=other, label={"name": "up", "side": 1}, threshold=0.5, training={}, metrics={})
    config = write_config(tmp_path, fake.http, fake.ws)
    models = [c for c in await run_doctor(config, env={}, env_file=None) if c.name == "models"]
    assert [c.status for c in models] == [Status.FAIL]
    assert "'other'" in models[0].detail and "not configured" in models[0].detail


async def test_a_bundle_of_another_coin_fails(fake: FakeBinance, tmp_path: Path) -> None:
    plan = compile_feature_set(next(s for s in parse_config({}).features.sets if s.label == "minute"))
    write_bundle(tmp_path / "models" / "BTCUSDT" / "up", _tiny_booster(plan.columns), symbol="ETHUSDT",
                 plan=plan, label={"name": "up", "side": 1}, threshold=0.5, training={}, metrics={})
    config = write_config(tmp_path, fake.http, fake.ws)
    models = [c for c in await run_doctor(config, env={}, env_file=None) if c.name == "models"]
    assert [c.status for c in models] == [Status.FAIL]
    assert "trained for ETHUSDT, installed for BTCUSDT" in models[0].detail


async def test_invalid_config_lists_each_problem_and_stops(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("mode: paper\nmarket: {symbols: [BTC-USD]}\nstreams: {depth_speed_ms: 3}\n")
    checks = await run_doctor(config, env={}, env_file=None)
    assert [c.name for c in checks] == ["config", "config"]
    assert all(c.status is Status.FAIL for c in checks)
    details = " | ".join(c.detail for c in checks)
    assert "market.symbols[0]" in details and "streams.depth_speed_ms" in details


async def test_unwritable_data_dir_fails_and_a_lax_env_file_warns(
    fake: FakeBinance, keys: tuple[str, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    config = write_config(tmp_path, fake.http, fake.ws)
    # a data_dir under a regular file cannot be created, even by root (tests may run as root)
    text = config.read_text().replace(f"data_dir: '{tmp_path / 'data'}'", f"data_dir: '{blocker / 'data'}'")
    config.write_text(text)
    env_file = tmp_path / "env"
    env_file.write_text(f"BINANCE_API_KEY={keys[0]}\nBINANCE_API_SECRET={keys[1]}\n")
    os.chmod(env_file, 0o644)
    checks = await run_doctor(config, env={}, env_file=env_file, env_file_explicit=True)
    data_dir = next(c for c in checks if c.name == "data_dir")
    assert data_dir.status is Status.FAIL and "not a directory" in data_dir.detail
    env_check = next(c for c in checks if c.name == "env-file")
    assert env_check.status is Status.WARN and f"chmod 600 {env_file}" in env_check.hint
    os.chmod(env_file, 0o600)
    checks = await run_doctor(config, env={}, env_file=env_file, env_file_explicit=True)
    assert statuses(checks, "env-file") == [Status.OK]
    assert_no_secret("\n".join(c.line() for c in checks), keys)


# ---------------------------------------------------------------------------- the command


async def _tickloop_doctor(cwd: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.cli", "doctor", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("BINANCE_")},
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode() + stderr.decode()


@pytest.mark.parametrize(("withdrawals", "exit_code"), [(False, 0), (True, 1)])
async def test_tickloop_doctor_exit_code_and_no_secret_in_output(
    fake: FakeBinance, keys: tuple[str, str], tmp_path: Path, withdrawals: bool, exit_code: int
) -> None:
    fake.restrictions = {**SAFE, "enableWithdrawals": withdrawals}
    config = write_config(tmp_path, fake.http, fake.ws, mode="live")
    env_file = tmp_path / "env"
    env_file.write_text(f"BINANCE_API_KEY={keys[0]}\nBINANCE_API_SECRET={keys[1]}\n")
    os.chmod(env_file, 0o600)
    code, output = await _tickloop_doctor(tmp_path, "-c", str(config), "--env-file", str(env_file))
    assert code == exit_code, output
    assert_no_secret(output, keys)
    permission = next(line for line in output.splitlines() if line.split()[1:2] == ["permissions"])
    assert permission.startswith("FAIL" if withdrawals else "OK")
    assert fake.signed_ok == 2
