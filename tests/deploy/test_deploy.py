"""The deployment files: the systemd unit (verified by systemd-analyze where available), the
Dockerfile (parsed: docker cannot run here), and the example VPS config (valid, testnet).

They are checked against the code they drive: the CLI accepts the unit's command line, the stop
timeouts exceed the engine's shutdown deadline, the image copies every package pyproject.toml
installs, and the writable paths cover the config's data, log and model directories.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from engine.cli import build_parser
from engine.config import load_config
from engine.shutdown import ShutdownConfig

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def unit_entries(text: str) -> dict[str, list[str]]:
    """Parse a systemd unit into {Section.Key: [values]} (comments and blank lines skipped)."""
    entries: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return entries


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)


# ---------------------------------------------------------------------------- systemd


def test_unit_runs_the_engine_as_a_dedicated_user_and_stops_it_with_sigterm() -> None:
    unit = unit_entries((DEPLOY / "tickloop.service").read_text())
    svc = {k.removeprefix("Service."): v[-1] for k, v in unit.items() if k.startswith("Service.")}
    argv = shlex.split(svc["ExecStart"])
    assert argv[0] == "/opt/tickloop/.venv/bin/tickloop"
    args = build_parser().parse_args(argv[1:])  # the CLI accepts exactly this command line
    assert (args.command, args.config) == ("run", "/etc/tickloop/config.yaml")
    assert svc["User"] == "tickloop" and svc["User"] != "root"
    assert svc["EnvironmentFile"] == "/etc/tickloop/env"
    assert svc["Restart"] == "on-failure" and svc["RestartPreventExitStatus"] == "2"  # bad config: no loop
    assert svc["KillSignal"] == "SIGTERM"
    assert seconds(svc["TimeoutStopSec"]) > ShutdownConfig().timeout_s
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict"
    assert svc["WorkingDirectory"] == "/var/lib/tickloop"


def test_unit_lets_the_engine_write_where_the_example_config_points() -> None:
    unit = unit_entries((DEPLOY / "tickloop.service").read_text())
    writable = [Path(p) for p in unit["Service.ReadWritePaths"][-1].split()]
    config = load_config(DEPLOY / "config.yaml")
    for path in (config.paths.data_dir, config.paths.log_dir, config.models.dir):
        assert any(path == w or w in path.parents for w in writable), path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_no_problem(tmp_path: Path) -> None:
    # the unit names the VPS's venv; point it at this one so verify can check the executable
    text = (DEPLOY / "tickloop.service").read_text()
    local = str(Path(sys.executable).parent / "tickloop")
    (tmp_path / "tickloop.service").write_text(text.replace("/opt/tickloop/.venv/bin/tickloop", local))
    proc = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "tickloop.service")],
                          check=False, capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and bad values but prints them: any output is a problem
    problems = [l for l in (proc.stdout + proc.stderr).splitlines() if "tickloop.service" in l]
    assert proc.returncode == 0 and problems == [], proc.stdout + proc.stderr


# ---------------------------------------------------------------------------- docker


def test_dockerfile_builds_a_non_root_image_that_stops_on_sigterm() -> None:
    steps = dockerfile_instructions((DEPLOY / "Dockerfile").read_text())
    kinds = [k for k, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert ("STOPSIGNAL", "SIGTERM") in steps
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["tickloop"]
    cmd = json.loads(dict(steps)["CMD"])
    assert build_parser().parse_args(cmd).command == "run"
    users = [arg for k, arg in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    install = next(i for i, (k, arg) in enumerate(steps) if k == "RUN" and "pip install ." in arg)
    assert kinds.index("USER") > install  # installed as root, run as the service user
    assert any(k == "RUN" and "libgomp1" in arg for k, arg in steps)  # LightGBM needs OpenMP


def test_dockerfile_copies_every_package_pyproject_installs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in includes}
    steps = dockerfile_instructions((DEPLOY / "Dockerfile").read_text())
    copied = {arg.split()[0] for k, arg in steps if k == "COPY"}
    assert packages <= copied, packages - copied
    assert {"pyproject.toml"} <= {a for k, arg in steps if k == "COPY" for a in arg.split()[:-1]}
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert not packages & set(ignored)


def test_dockerfile_keeps_data_and_logs_on_a_volume() -> None:
    steps = dockerfile_instructions((DEPLOY / "Dockerfile").read_text())
    workdir = Path([arg for k, arg in steps if k == "WORKDIR"][-1])
    volumes = [Path(v) for k, arg in steps if k == "VOLUME" for v in json.loads(arg)]
    # the config the image copies in, and the VPS example users mount over it
    for config in (load_config(ROOT / "config.yaml"), load_config(DEPLOY / "config.yaml")):
        for path in (config.paths.data_dir, config.paths.log_dir, config.models.dir):
            resolved = path if path.is_absolute() else workdir / path
            assert any(v == resolved or v in resolved.parents for v in volumes), resolved


# ---------------------------------------------------------------------------- the example config


def test_example_vps_config_is_valid_and_starts_on_testnet() -> None:
    config = load_config(DEPLOY / "config.yaml")
    assert config.mode == "testnet"
    endpoint = config.endpoints.for_market(config.market.type)
    assert "testnet" in endpoint.rest and "testnet" in endpoint.ws
    env = (DEPLOY / "env.example").read_text()
    assert re.search(r"^BINANCE_API_KEY=$", env, re.MULTILINE) and re.search(r"^BINANCE_API_SECRET=$", env, re.MULTILINE)
