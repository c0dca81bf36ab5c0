"""Configuration: frozen pydantic models for config.yaml, and secrets from the environment.

`load_config()` reports every problem as one line naming its YAML path
(`market.symbols[2]: 'BTC-USD' is not a Binance symbol`) and raises ConfigError; the CLI
prints those lines and exits 2 before any socket opens. Secrets never come from config.yaml.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from engine.model import Market, is_binance_symbol
from engine.dashboard.config import DashboardConfig
from engine.notify.config import TelegramConfig
from engine.shutdown import ShutdownConfig
from risk.config import RiskConfig
from strategy.features.spec import FeaturesConfig
from strategy.labels import LabelsConfig
from strategy.models.config import ModelsConfig
from strategy.signals.config import StrategyConfig

USDM_SNAPSHOT_LIMIT = 1000  # /fapi/v1/depth allows 5..1000; spot goes to 5000
SECRET_KEY_RE = re.compile(r"(api_?key|secret|token|password|private_?key|passphrase)", re.I)


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MarketConfig(_Frozen):
    type: Market = Market.SPOT
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols_are_a_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("must be a list of symbols, e.g. [BTCUSDT, ETHUSDT]")
        return value

    @field_validator("symbols")
    @classmethod
    def _symbols_nonempty_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one symbol")
        duplicates = sorted({s for s in value if value.count(s) > 1})
        if duplicates:
            raise ValueError(f"duplicate symbols: {', '.join(duplicates)}")
        return value


class EndpointConfig(_Frozen):
    """Base URLs of one venue; point them at the loopback simulator for tests and demos."""

    rest: str
    ws: str
    routed: bool = False  # USDⓈ-M 2026 routing: /public, /market, /private
    # spot WebSocket API (user data since listenKeys were removed); null: `<ws>/ws-api/v3`, or
    # Binance's own ws-api host when `ws` is Binance's stream host
    ws_api: str | None = None

    @field_validator("rest", "ws", "ws_api")
    @classmethod
    def _url_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^(https?|wss?)://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s):// or ws(s):// URL")
        return value.rstrip("/")


class ExecutionConfig(_Frozen):
    """Orders on Binance (modes testnet and live)."""

    recv_window_ms: Annotated[int, Field(ge=1, le=60_000)] = 5000
    margin_type: Literal["ISOLATED", "CROSSED"] = "ISOLATED"  # USDⓈ-M, set per symbol at start
    # USDⓈ-M dead-man switch: the exchange cancels a symbol's open orders when the engine stops
    # re-arming it for this long; armed only while the symbol holds no position; 0 turns it off
    countdown_cancel_s: Annotated[float, Field(ge=0, le=3600)] = 120.0
    # after an unknown outcome, wait this long for the user stream before querying the order
    user_stream_wait_s: Annotated[float, Field(ge=0, le=30)] = 2.0
    startup_stream_timeout_s: Annotated[float, Field(gt=0, le=300)] = 30.0
    # a position found unprotected at start-up gets a stop this far (percent) from the last price
    adopt_stop_pct: Annotated[float, Field(gt=0, le=50)] = 2.0
    max_entry_age_s: Annotated[float, Field(gt=0)] | None = 300.0  # stale entry orders cancelled
    reconcile_interval_s: Annotated[float, Field(ge=0)] = 60.0  # openOrders vs ours; 0: off
    # warm keep-alive connections new orders are written to from the signal's own call (no
    # task switch before the wire); 0: every order goes through the aiohttp session
    order_connections: Annotated[int, Field(ge=0, le=8)] = 4


class EndpointsConfig(_Frozen):
    spot: EndpointConfig = EndpointConfig(
        rest="https://api.binance.com", ws="wss://stream.binance.com:9443"
    )
    usdm: EndpointConfig = EndpointConfig(
        rest="https://fapi.binance.com", ws="wss://fstream.binance.com", routed=True
    )

    def for_market(self, market: Market) -> EndpointConfig:
        return self.spot if market is Market.SPOT else self.usdm


class StreamsConfig(_Frozen):
    depth_speed_ms: Literal[100, 250, 500, 1000] = 100
    # auto: spot `@trade`, USDⓈ-M `@aggTrade` (the stream the 2026 /market route documents)
    trades: Literal["auto", "trade", "aggTrade"] = "auto"

    def trade_stream(self, market: Market) -> str:
        if self.trades != "auto":
            return self.trades
        return "trade" if market is Market.SPOT else "aggTrade"
    mark_price: bool = False
    queue_size: Annotated[int, Field(ge=100)] = 100_000
    # seconds of silence before a stream counts as stalled; null disables (quiet coins)
    stall_timeout_s: dict[str, float | None] = {"depth": 15.0, "trade": None, "aggTrade": None, "markPrice": 10.0}
    # no frame and no server ping for this long: reconnect (null: 90 s spot, 200 s USDⓈ-M,
    # whose server pings only every 180 s)
    connection_timeout_s: Annotated[float, Field(gt=0)] | None = None
    rotate_after_h: Annotated[float, Field(gt=0, le=24)] = 23.0
    backoff_initial_s: Annotated[float, Field(gt=0)] = 0.5
    backoff_max_s: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("stall_timeout_s")
    @classmethod
    def _positive_timeouts(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        for kind, seconds in value.items():
            if seconds is not None and seconds <= 0:
                raise ValueError(f"{kind}: must be > 0 or null")
        return value


class BookConfig(_Frozen):
    snapshot_limit: Annotated[int, Field(ge=5, le=5000)] = 1000
    min_resync_interval_s: Annotated[float, Field(ge=0)] = 1.0


class FoldConfig(_Frozen):
    grace_ms: Annotated[int, Field(ge=0, le=60_000)] = 2500
    rows_capacity: Annotated[int, Field(ge=60)] = 4 * 3600
    candles_capacity: Annotated[int, Field(ge=10)] = 7 * 1440


class PathsConfig(_Frozen):
    data_dir: Path = Path("data")
    log_dir: Path = Path("logs")
    journal: Path | None = None  # SQLite journal of paper/live trading; null: <data_dir>/journal.sqlite

    def journal_path(self) -> Path:
        return self.journal if self.journal is not None else self.data_dir / "journal.sqlite"


class LoggingConfig(_Frozen):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    console: Literal["auto", "pretty", "json", "off"] = "auto"
    file: str | None = "tickloop.jsonl"  # inside paths.log_dir; null disables the file
    max_bytes: Annotated[int, Field(ge=1024)] = 50 * 1024 * 1024
    backups: Annotated[int, Field(ge=0)] = 5
    heartbeat_s: Annotated[float, Field(gt=0)] = 60.0

    @field_validator("console", mode="before")
    @classmethod
    def _yaml_off_is_false(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as False (and `on` as True): take the user's meaning
        if value is False:
            return "off"
        if value is True:
            return "auto"
        return value


class Config(_Frozen):
    mode: Literal["paper", "testnet", "live", "backtest"] = "paper"
    market: MarketConfig = MarketConfig()
    streams: StreamsConfig = StreamsConfig()
    book: BookConfig = BookConfig()
    fold: FoldConfig = FoldConfig()
    endpoints: EndpointsConfig = EndpointsConfig()
    paths: PathsConfig = PathsConfig()
    logging: LoggingConfig = LoggingConfig()
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    shutdown: ShutdownConfig = Field(default_factory=ShutdownConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)


class Secrets(_Frozen):
    """Credentials, read only from the environment (or .env): never from config.yaml."""

    binance_api_key: SecretStr | None = None
    binance_api_secret: SecretStr | None = None
    telegram_token: SecretStr | None = None
    # Ed25519 keys: the PEM private key whose public half is registered with the API key
    # (BINANCE_PRIVATE_KEY, or a file named by BINANCE_PRIVATE_KEY_FILE); it replaces the secret
    binance_private_key_pem: SecretStr | None = None


def _key_step(path: str, key: Any) -> str:
    """Append a mapping key to a YAML path; quote a key a dotted path could not show as is."""
    text = str(key)
    if text and text.isprintable() and not any(c in text for c in ".[]") and ": " not in text:
        return f"{path}.{text}" if path else text
    return f"{path}[{text!r}]"  # "market['\n']": one line per problem, whatever the key


def _format_location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out = f"{out}[{part}]" if isinstance(part, int) else _key_step(out, part)
    return out or "(top level)"


def _format_error(err: Mapping[str, Any]) -> str:
    # "[key]" is pydantic's marker for a mapping key that failed (stall_timeout_s: {7: 15})
    loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before", "[key]"))
    path = _format_location(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind.startswith("literal_error") or kind == "enum":
        msg = f"{err.get('input')!r} is not allowed; {msg[:1].lower()}{msg[1:]}"
    if "[key]" in err["loc"]:
        msg = f"the key {err.get('input')!r}: {msg}"
    return f"{path}: {msg}"


def _secret_keys(node: Any, path: str = "", seen: set[int] | None = None) -> list[str]:
    # A YAML alias is the same object as its anchor: check it once (a "billion laughs" file
    # would otherwise take exponential time, and an alias inside its own anchor forever).
    seen = set() if seen is None else seen
    if isinstance(node, (dict, list)):
        if id(node) in seen:
            return []
        seen.add(id(node))
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            sub = _key_step(path, key)
            if isinstance(key, str) and SECRET_KEY_RE.search(key):  # whatever its value's shape
                found.append(sub)
            found += _secret_keys(value, sub, seen)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _secret_keys(value, f"{path}[{i}]", seen)
    return found


def _symbol_problems(raw: Any) -> list[str]:
    market = raw.get("market") if isinstance(raw, dict) else None
    symbols = market.get("symbols") if isinstance(market, dict) else None
    if not isinstance(symbols, list):
        return []
    return [
        f"market.symbols[{i}]: {s!r} is not a Binance symbol (upper-case letters and digits, e.g. BTCUSDT)"
        for i, s in enumerate(symbols)
        if not (isinstance(s, str) and is_binance_symbol(s))
    ]


def parse_config(raw: Any) -> Config:
    """Validate a decoded YAML document; raise ConfigError with one line per problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): must be a mapping of sections (mode, market, ...)"])
    problems = [
        f"{p}: secrets are not allowed in config files; set it in the environment or .env "
        "(BINANCE_API_KEY, BINANCE_API_SECRET or BINANCE_PRIVATE_KEY_FILE, TELEGRAM_TOKEN)"
        for p in _secret_keys(raw)
    ]
    problems += _symbol_problems(raw)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        bad_symbol_paths = {p.split(":")[0] for p in problems}
        for err in exc.errors():
            line = _format_error(err)
            if line.split(":")[0] not in bad_symbol_paths:
                problems.append(line)
        config = None
    if config is not None:
        problems += _cross_section_problems(config)
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config


def _cross_section_problems(config: Config) -> list[str]:
    """Return problems only visible across sections (each valid on its own)."""
    problems = []
    if config.market.type is Market.USDM and config.book.snapshot_limit > USDM_SNAPSHOT_LIMIT:
        problems.append(
            f"book.snapshot_limit: {config.book.snapshot_limit} is above {USDM_SNAPSHOT_LIMIT}, "
            "the deepest USDⓈ-M depth snapshot (market.type is usdm)"
        )
    return problems


def load_config(path: str | Path | None) -> Config:
    """Read and validate config.yaml (defaults when path is None)."""
    if path is None:
        return parse_config({})
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read config file ({exc.strerror})"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{p}: invalid YAML at {where}: {problem}"]) from None
    except RecursionError:
        raise ConfigError([f"{p}: invalid YAML: nested too deeply"]) from None
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        # PyYAML raises these, not YAMLError, for an explicit tag it cannot read
        # (`!!int abc`, `!!bool x`, `!!timestamp x`, `!!int _`)
        raise ConfigError([f"{p}: invalid YAML: a tagged value cannot be read ({exc!r})"]) from None
    try:
        return parse_config(raw)
    except RecursionError:  # very deep nesting, or an alias inside its own anchor (&a [*a])
        raise ConfigError([f"{p}: YAML nested too deeply (or an alias inside its own anchor)"]) from None


def load_secrets(env: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env") -> Secrets:
    """Read credentials from the environment, falling back to a .env file for unset names."""
    values: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        from dotenv import dotenv_values

        values.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    values.update(env if env is not None else os.environ)
    pem = values.get("BINANCE_PRIVATE_KEY") or None
    if pem is None and values.get("BINANCE_PRIVATE_KEY_FILE"):
        key_file = Path(values["BINANCE_PRIVATE_KEY_FILE"])
        try:
            pem = key_file.read_text(encoding="ascii")
        except OSError as exc:
            raise ConfigError([f"BINANCE_PRIVATE_KEY_FILE: cannot read {key_file} ({exc.strerror})"]) from None
    return Secrets(
        binance_api_key=values.get("BINANCE_API_KEY") or None,
        binance_api_secret=values.get("BINANCE_API_SECRET") or None,
        telegram_token=values.get("TELEGRAM_TOKEN") or None,
        binance_private_key_pem=pem,
    )
