"""Logging: JSON lines in a rotating file, bound context, secrets scrubbed by key and by value."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
import structlog

from engine.config import LoggingConfig
from engine.logging import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging():  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    structlog.reset_defaults()


def _configure(tmp_path: Path, secret_values: tuple[str, ...] = (), **overrides: object) -> io.StringIO:
    console = io.StringIO()
    cfg = LoggingConfig(**{"console": "json", "file": "t.jsonl", **overrides})  # type: ignore[arg-type]
    configure_logging(cfg, tmp_path, secret_values=secret_values, console=console)
    return console


def _file_events(tmp_path: Path) -> list[dict]:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]


def test_json_file_lines_carry_bound_context(tmp_path: Path) -> None:
    _configure(tmp_path)
    log = structlog.get_logger("engine.test").bind(component="feed", symbol="BTCUSDT")
    log.info("book_synced", last_update_id=42)
    (event,) = _file_events(tmp_path)
    assert event["event"] == "book_synced"
    assert event["symbol"] == "BTCUSDT" and event["component"] == "feed"
    assert event["last_update_id"] == 42
    assert event["level"] == "info" and event["logger"] == "engine.test"
    assert event["timestamp"].endswith("Z")


def test_secrets_never_reach_file_or_console(tmp_path: Path) -> None:
    secret = "Zq9SECRETvalue1234567890"
    console = _configure(tmp_path, secret_values=(secret,))
    log = structlog.get_logger("engine.test")
    log.warning("oops", api_key="plain-key-value", detail=f"request failed for key {secret}")
    log.error("url", url="wss://fstream.binance.com/private/ws?listenKey=abcdefLISTENKEY123&events=x")
    try:
        raise RuntimeError(f"signature mismatch with {secret}")
    except RuntimeError:
        log.exception("failed")
    text = (tmp_path / "t.jsonl").read_text() + console.getvalue()
    assert secret not in text
    assert "plain-key-value" not in text
    assert "abcdefLISTENKEY123" not in text
    assert text.count("***") >= 4


def test_level_filters_and_stdlib_records_are_structured(tmp_path: Path) -> None:
    _configure(tmp_path, level="WARNING")
    structlog.get_logger("x").info("hidden")
    logging.getLogger("aiohttp.client").warning("plain stdlib %s", "message")
    events = _file_events(tmp_path)
    assert [e["event"] for e in events] == ["plain stdlib message"]


def test_file_rotates(tmp_path: Path) -> None:
    _configure(tmp_path, max_bytes=2048, backups=2)
    log = structlog.get_logger("x")
    for i in range(200):
        log.info("filler", i=i, pad="x" * 50)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["t.jsonl", "t.jsonl.1", "t.jsonl.2"]
