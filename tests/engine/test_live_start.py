"""Keys and URLs of modes testnet/live (engine/live_start.py), from the environment only."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.config import ConfigError, load_secrets, parse_config
from engine.live_start import KeysMissing, binance_keys, spot_ws_api_url


def _pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def test_ed25519_key_file_from_the_environment_signs_verifiably(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    key_file = tmp_path / "binance-ed25519.pem"
    key_file.write_text(_pem(private), encoding="ascii")
    secrets = load_secrets({"BINANCE_API_KEY": "edkey", "BINANCE_PRIVATE_KEY_FILE": str(key_file)}, None)
    keys = binance_keys(secrets)
    payload = b"symbol=BTCUSDT&side=BUY&timestamp=1"
    signature = base64.b64decode(keys.signer.sign(payload))
    private.public_key().verify(signature, payload)  # raises InvalidSignature if wrong
    assert "BEGIN" not in repr(secrets) and "BEGIN" not in repr(keys)  # never printable


def test_ed25519_key_text_wins_over_a_secret_and_hmac_is_the_fallback() -> None:
    private = Ed25519PrivateKey.generate()
    both = load_secrets({"BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s", "BINANCE_PRIVATE_KEY": _pem(private)}, None)
    assert type(binance_keys(both).signer).__name__ == "Ed25519Signer"
    hmac_only = load_secrets({"BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s"}, None)
    # HMAC-SHA256 of b"a=1" under "s", computed by hand with hashlib
    import hashlib
    import hmac

    assert binance_keys(hmac_only).signer.sign(b"a=1") == hmac.new(b"s", b"a=1", hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("env", "message"),
    [({}, "BINANCE_API_KEY is not set"), ({"BINANCE_API_KEY": "k"}, "set BINANCE_API_SECRET")],
)
def test_missing_keys_say_which(env: dict[str, str], message: str) -> None:
    with pytest.raises(KeysMissing, match=message):
        binance_keys(load_secrets(env, None))


def test_unreadable_key_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_secrets({"BINANCE_API_KEY": "k", "BINANCE_PRIVATE_KEY_FILE": str(tmp_path / "absent.pem")}, None)
    assert info.value.problems[0].startswith("BINANCE_PRIVATE_KEY_FILE: cannot read")


@pytest.mark.parametrize(
    ("spot", "url"),
    [
        ({}, "wss://ws-api.binance.com:443/ws-api/v3"),
        ({"rest": "https://testnet.binance.vision", "ws": "wss://stream.testnet.binance.vision"},
         "wss://ws-api.testnet.binance.vision/ws-api/v3"),
        ({"rest": "http://127.0.0.1:8765", "ws": "ws://127.0.0.1:8765"}, "ws://127.0.0.1:8765/ws-api/v3"),
        ({"rest": "http://127.0.0.1:1", "ws": "ws://127.0.0.1:1", "ws_api": "ws://127.0.0.1:2/x"}, "ws://127.0.0.1:2/x"),
    ],
)
def test_spot_user_stream_url(spot: dict[str, str], url: str) -> None:
    config = parse_config({"endpoints": {"spot": spot}} if spot else {})
    assert spot_ws_api_url(config) == url


def test_the_ed25519_key_is_redacted_by_value_in_log_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import structlog

    from engine.commands import setup_logging

    pem = _pem(Ed25519PrivateKey.generate())
    key_line = next(line for line in pem.splitlines() if not line.startswith("-----"))
    monkeypatch.setenv("BINANCE_PRIVATE_KEY", pem)
    monkeypatch.chdir(tmp_path)
    config = parse_config({"logging": {"console": "off", "file": "engine.jsonl"}, "paths": {"log_dir": str(tmp_path)}})
    try:
        setup_logging(config)
        structlog.get_logger("test").error("boom", detail=f"signer failed on {key_line}")
    finally:
        structlog.reset_defaults()
    text = (tmp_path / "engine.jsonl").read_text(encoding="utf-8")
    assert "boom" in text and "***" in text
    assert key_line not in text


def test_an_exposed_dashboard_is_refused_before_the_exchange_is_contacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main as cli_main

    monkeypatch.delenv("TICKLOOP_DASHBOARD_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "config.yaml"
    # port 9 on loopback: nothing listens, so contacting the exchange first would exit 3
    config.write_text(
        "endpoints: {spot: {rest: 'http://127.0.0.1:9', ws: 'ws://127.0.0.1:9'}}\n"
        "dashboard: {enabled: true, host: 0.0.0.0}\nlogging: {console: 'off', file: null}\n",
        encoding="utf-8",
    )
    assert cli_main(["run", "-c", str(config)]) == 2
    assert "dashboard" in capsys.readouterr().err


async def test_a_start_up_step_is_retried_after_transient_failures_then_refused() -> None:
    from engine.clock import LiveClock
    from exchange.binance.startup import StartupRefused, patiently
    from exchange.errors import Retryable, UnknownOutcome

    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Retryable("429 busy", status=429, retry_after_s=0.01)
        if len(calls) == 2:
            raise UnknownOutcome("timeout", sent=None)
        return "ok"

    assert await patiently("server time", flaky, LiveClock(), give_up_s=5) == "ok"
    assert len(calls) == 3

    async def always_busy() -> str:
        raise Retryable("503", status=503, retry_after_s=0.01)

    with pytest.raises(StartupRefused, match="server time: the exchange kept failing"):
        await patiently("server time", always_busy, LiveClock(), give_up_s=0.05)
