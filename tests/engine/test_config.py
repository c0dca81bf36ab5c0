"""Configuration: defaults, one line per problem with its YAML path, secrets only from the environment."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import ConfigError, load_config, load_secrets, parse_config
from engine.model import Market

REPO = Path(__file__).resolve().parents[2]


def problems_of(raw: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.problems


def test_defaults_are_paper_spot() -> None:
    config = parse_config({})
    assert config.mode == "paper"
    assert config.market.type is Market.SPOT
    assert config.market.symbols == ("BTCUSDT", "ETHUSDT")


def test_shipped_config_yaml_is_valid() -> None:
    config = load_config(REPO / "config.yaml")
    assert config.mode == "paper"


def test_bad_symbol_names_its_index() -> None:
    problems = problems_of({"market": {"symbols": ["BTCUSDT", "ETHUSDT", "BTC-USD"]}})
    assert problems == [
        "market.symbols[2]: 'BTC-USD' is not a Binance symbol (upper-case letters and digits, e.g. BTCUSDT)"
    ]


def test_every_problem_is_reported_once_on_its_own_line() -> None:
    problems = problems_of(
        {
            "mode": "yolo",
            "market": {"type": "perp", "symbols": ["btcusdt"]},
            "streams": {"depth_speed_ms": 7, "colour": "red"},
            "fold": {"grace_ms": -1},
        }
    )
    paths = [line.split(":")[0] for line in problems]
    assert sorted(paths) == sorted(
        ["mode", "market.type", "market.symbols[0]", "streams.depth_speed_ms", "streams.colour", "fold.grace_ms"]
    )
    assert "streams.colour: unknown key" in problems
    assert any(line.startswith("fold.grace_ms: ") and "greater than or equal to 0" in line for line in problems)


def test_secrets_in_config_are_rejected_with_pointer_to_environment() -> None:
    problems = problems_of({"exchange": {"api_key": "abc"}, "telegram_token": "123:abc"})
    assert any(line.startswith("exchange.api_key: secrets are not allowed") and "BINANCE_API_KEY" in line for line in problems)
    assert any(line.startswith("telegram_token: secrets are not allowed") for line in problems)


def test_duplicate_and_empty_symbol_lists() -> None:
    assert problems_of({"market": {"symbols": []}}) == ["market.symbols: must name at least one symbol"]
    assert problems_of({"market": {"symbols": ["BTCUSDT", "BTCUSDT"]}}) == ["market.symbols: duplicate symbols: BTCUSDT"]
    assert problems_of({"market": {"symbols": "BTCUSDT"}})[0].startswith("market.symbols: must be a list")


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("market:\n  symbols: [BTCUSDT\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "invalid YAML at line" in info.value.problems[0]


def test_config_is_frozen() -> None:
    config = parse_config({})
    with pytest.raises(Exception):
        config.mode = "live"  # type: ignore[misc]


def test_secrets_come_from_environment_then_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("BINANCE_API_KEY=from-dotenv\nBINANCE_API_SECRET=s3cret-dotenv\n")
    secrets = load_secrets({"BINANCE_API_KEY": "from-env"}, dotenv)
    assert secrets.binance_api_key is not None and secrets.binance_api_key.get_secret_value() == "from-env"
    assert secrets.binance_api_secret is not None and secrets.binance_api_secret.get_secret_value() == "s3cret-dotenv"
    assert "from-env" not in repr(secrets)


def test_cli_exits_2_with_one_line_per_problem_before_any_socket(tmp_path: Path) -> None:
    # a listening socket the bad config points at: the engine must not connect to it
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "market:\n  symbols: [BTCUSDT, ETHUSDT, BTC-USD]\n"
        f"endpoints:\n  spot: {{rest: 'http://127.0.0.1:{port}', ws: 'ws://127.0.0.1:{port}'}}\n"
        "streams: {depth_speed_ms: 3}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "market.symbols[2]: 'BTC-USD' is not a Binance symbol (upper-case letters and digits, e.g. BTCUSDT)",
        "streams.depth_speed_ms: 3 is not allowed; input should be 100, 250, 500 or 1000",
    ]
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected
    listener.close()


def test_feature_set_errors_name_their_yaml_path() -> None:
    problems = problems_of(
        {"features": {"sets": [{"frequency": "second", "generators": [{"kind": "talib", "name": "RSX"}]}]}}
    )
    assert problems == ["features.sets[0].generators[0].name: 'RSX' is not a TA-Lib function (did you mean RSI?)"]


def test_yaml_bare_off_means_off(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("logging: {console: off}\n")
    assert load_config(cfg).logging.console == "off"


def test_a_spot_snapshot_depth_on_usdm_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"market": {"type": "usdm"}, "book": {"snapshot_limit": 5000}})
    assert info.value.problems == [
        "book.snapshot_limit: 5000 is above 1000, the deepest USDⓈ-M depth snapshot (market.type is usdm)"
    ]
    assert parse_config({"market": {"type": "spot"}, "book": {"snapshot_limit": 5000}}).book.snapshot_limit == 5000
