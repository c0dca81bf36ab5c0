"""`tickloop run` refuses to serve the dashboard beyond loopback without a token.

tests/engine/dashboard/test_dashboard_server.py covers the rule (resolve_token for 0.0.0.0, ::,
LAN addresses and host names; a short token) and the running server (401/403 on the page, the
API and the websocket without the right token; the token never logged). Here the real command
with a config binding a non-loopback address: exit 2 with the reason and the variable to set,
before the dashboard or the market feed starts, the token never printed. The addresses are from
TEST-NET-1 (RFC 5737), never this machine's: even a broken check could bind nothing here.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import yaml
from session_harness import Process, engine_env, run_cli

from exchange.sim.server import SimServer

SHORT_TOKEN = "tldShort0123"  # 12 characters: below the 16 required


async def _run(tmp_path: Path, tape: Path, host: str, token: str | None) -> tuple[Process, int]:
    env = engine_env(None)
    if token is not None:
        env["TICKLOOP_DASHBOARD_TOKEN"] = token
    async with SimServer([tape], speed=1.0) as sim:
        config = {
            "market": {"symbols": ["BTCUSDT"]},
            "endpoints": {"spot": {"rest": sim.base_http, "ws": sim.base_ws}},
            "paths": {"data_dir": "data", "log_dir": "logs"},
            "logging": {"console": "json"},
            "dashboard": {"host": host, "port": 0},
        }
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        proc = await run_cli(["run", "-c", str(path), "--duration", "30"], tmp_path, env,
                             Process("run"))  # fmt: skip
        async with (
            aiohttp.ClientSession() as http,
            http.get(sim.base_http + "/_sim/status") as resp,
        ):
            connections = (await resp.json())["connections_total"]
    return proc, connections


@pytest.mark.parametrize("host", ["192.0.2.10", "dashboard.example.org"])
async def test_non_loopback_host_without_token_is_refused_before_anything_starts(
    tmp_path: Path, tapes: dict[str, Path], host: str
) -> None:
    proc, connections = await _run(tmp_path, tapes["spot_btcusdt"], host, token=None)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        f"tickloop: dashboard: dashboard.host: {host} is reachable from other machines; set "
        "$TICKLOOP_DASHBOARD_TOKEN to an access token (>= 16 characters) or bind 127.0.0.1"
    )
    assert "dashboard_listening" not in proc.stderr and "dashboard_bind_failed" not in proc.stderr
    assert connections == 0  # the market feed never connected: nothing ran unprotected


async def test_a_short_token_is_refused_and_never_printed(
    tmp_path: Path, tapes: dict[str, Path]
) -> None:
    proc, connections = await _run(tmp_path, tapes["spot_btcusdt"], "192.0.2.10", SHORT_TOKEN)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "tickloop: dashboard: dashboard: the token in $TICKLOOP_DASHBOARD_TOKEN is shorter than 16 characters"
    )
    assert SHORT_TOKEN not in proc.stdout + proc.stderr
    assert connections == 0
