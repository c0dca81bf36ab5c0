"""A config file holding secrets is refused by the real CLI: exit 2, a pointer to the environment.

tests/engine/test_config.py checks the parser on a top-level and a nested key; here the command a
user runs (`tickloop run`, and `tickloop doctor`) reads a file with secrets at the top level,
nested in a section, inside list items and under a known section, and must name each YAML path
on its own line with the environment variables to use instead, exit 2 before any socket opens,
and never print a value.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

VALUES = {  # distinctive values: none may appear in anything the CLI prints
    "api_key": "cfgTopLevelKeyValue0001",
    "token": "123456:cfgNestedTelegramToken02",
    "api_secret": "cfgListItemSecretValue003",
    "private_key": "cfgDeepListPrivateKey0004",
    "auth_token": "cfgKnownSectionToken00005",
}
POINTER = ("secrets are not allowed in config files; set it in the environment or .env "
           "(BINANCE_API_KEY, BINANCE_API_SECRET or BINANCE_PRIVATE_KEY_FILE, TELEGRAM_TOKEN)")  # fmt: skip
EXPECTED_PATHS = [
    "api_key",
    "notify.telegram.token",
    "accounts[1].api_secret",
    "features.sets[0].generators[0].private_key",
    "dashboard.auth_token",
]


def config_text(port: int) -> str:
    v = VALUES
    return f"""\
api_key: {v["api_key"]}
notify:
  telegram:
    token: "{v["token"]}"
accounts:
  - name: main
  - name: backup
    api_secret: {v["api_secret"]}
features:
  sets:
    - name: fast
      frequency: second
      generators:
        - kind: stats
          private_key: {v["private_key"]}
dashboard:
  auth_token: {v["auth_token"]}
endpoints:
  spot: {{rest: "http://127.0.0.1:{port}", ws: "ws://127.0.0.1:{port}"}}
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINANCE_", "TELEGRAM_"))}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env=env, check=False)  # fmt: skip


@pytest.fixture
def listener() -> socket.socket:
    """A socket the config's endpoints point at: nothing may connect to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def test_run_refuses_secrets_at_every_position_with_a_pointer_and_no_value(
    tmp_path: Path, listener: socket.socket
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_text(listener.getsockname()[1]), encoding="utf-8")
    proc = cli("run", "-c", str(cfg), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    for path in EXPECTED_PATHS:
        assert f"{path}: {POINTER}" in lines, (path, lines)
    for value in VALUES.values():
        assert value not in proc.stdout + proc.stderr
    with pytest.raises(BlockingIOError):
        listener.accept()  # refused before any socket opened
    assert not (tmp_path / "logs").exists()  # and before logging started


def test_doctor_reports_the_same_lines_as_failures_without_values(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_text(9), encoding="utf-8")
    proc = cli("doctor", "-c", str(cfg), "--offline", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    for path in EXPECTED_PATHS:
        assert any(f"{path}: {POINTER}" in line for line in failed), (path, failed)
    for value in VALUES.values():
        assert value not in proc.stdout + proc.stderr


def test_list_or_mapping_valued_secrets_also_get_the_pointer(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("api_keys: [cfgListValuedKey0006, cfgListValuedKey0007]\n"
                   "binance:\n  secret:\n    value: cfgMappingValuedSecret8\n", encoding="utf-8")  # fmt: skip
    proc = cli("check-config", "-c", str(cfg), cwd=tmp_path)
    assert proc.returncode == 2
    assert "cfgListValuedKey" not in proc.stderr and "cfgMappingValued" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert f"api_keys: {POINTER}" in lines and f"binance.secret: {POINTER}" in lines, lines
