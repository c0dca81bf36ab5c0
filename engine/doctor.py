"""`tickloop doctor`: check a set-up before it runs, one line per check with a fix hint.

Local checks first (config, env file, mode, endpoints, keys, paths, model bundles), then the
network (REST reachability, clock skew, symbols, each websocket connection, key permissions,
key acceptance). The exit code is 1 when any check FAILs, else 0. Secret values never appear in
the output: details name variables, never their values, and every line is scrubbed of the
secrets' values before it is printed.

Signed requests follow Binance's rule (reference §3.2): percent-encode the parameters once,
sign exactly those bytes with HMAC-SHA256, send exactly those bytes plus `&signature=`.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import json
import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit

import aiohttp
from yarl import URL

from engine.clock import Clock, LiveClock
from engine.config import Config, ConfigError, Secrets, load_config, load_secrets
from engine.model import Market
from exchange.binance.urls import (
    BinanceEndpoints,
    combined_stream_urls,
    exchange_info_url,
    market_streams,
    redact_url,
    server_time_url,
)

RECV_WINDOW_MS = 5000
SKEW_WARN_MS = 500
SKEW_FAIL_MS = 5000
API_RESTRICTIONS_PATH = "/sapi/v1/account/apiRestrictions"
ACCOUNT_REQUEST: dict[Market, tuple[str, dict[str, str | int]]] = {
    Market.SPOT: ("/api/v3/account", {"omitZeroBalances": "true"}),
    Market.USDM: ("/fapi/v3/account", {}),
}
# codes Binance answers for a key it does not accept (reference §5.2)
AUTH_CODES = {-2014: "API-key format invalid", -2015: "invalid API-key, IP, or permissions",
              -1022: "signature not valid", -2008: "invalid API-key ID"}
KEYS_HINT = ("put BINANCE_API_KEY=... and BINANCE_API_SECRET=... in the env file "
             "(/etc/tickloop/env, chmod 600) or export them")
CLOCK_HINT = "enable time sync: `sudo timedatectl set-ntp true` (or install chrony)"

PRODUCTION_HOSTS = frozenset({
    "api.binance.com", "api-gcp.binance.com", "api1.binance.com", "api2.binance.com",
    "api3.binance.com", "api4.binance.com", "data-api.binance.vision", "stream.binance.com",
    "data-stream.binance.vision", "fapi.binance.com", "fstream.binance.com",
})
TESTNET_HOSTS = frozenset({
    "testnet.binance.vision", "stream.testnet.binance.vision", "demo-fapi.binance.com",
    "testnet.binancefuture.com", "fstream.binancefuture.com", "stream.binancefuture.com",
    "demo-api.binance.com", "demo-stream.binance.com",
})


class Status(enum.StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one check: its name, status, what was found, and how to fix it."""

    name: str
    status: Status
    detail: str
    hint: str = ""

    def line(self) -> str:
        """Render as one output line."""
        text = f"{self.status.value:<5} {self.name:<12} {self.detail}"
        return f"{text}  -> fix: {self.hint}" if self.hint and self.status is not Status.OK else text


def signed_query(params: Mapping[str, str | int], secret: str) -> str:
    """Return `params` percent-encoded once and signed (HMAC-SHA256 hex) over those exact bytes."""
    query = urlencode([(k, str(v)) for k, v in params.items()])
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={signature}"


@dataclass
class _Context:
    config: Config
    secrets: Secrets
    clock: Clock
    http: aiohttp.ClientSession
    timeout_s: float
    offset_ms: int = 0  # server time minus local time, once measured
    rest_ok: bool = False
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, status: Status, detail: str, hint: str = "") -> None:
        self.checks.append(Check(name, status, detail, hint))

    @property
    def endpoints(self) -> BinanceEndpoints:
        ep = self.config.endpoints.for_market(self.config.market.type)
        return BinanceEndpoints(ep.rest, ep.ws, ep.routed)

    @property
    def has_keys(self) -> bool:
        return self.secrets.binance_api_key is not None and self.secrets.binance_api_secret is not None


# ---------------------------------------------------------------------------- local checks

def _check_env_file(env_file: Path | None, explicit: bool) -> list[Check]:
    if env_file is None or (not explicit and not env_file.is_file()):
        return []
    if not env_file.is_file():
        return [Check("env-file", Status.FAIL, f"{env_file} does not exist or cannot be read",
                      "create it with BINANCE_API_KEY=... and BINANCE_API_SECRET=... lines")]
    try:
        env_file.read_bytes()
    except OSError as exc:
        return [Check("env-file", Status.FAIL, f"{env_file} cannot be read ({exc.strerror})",
                      f"run as the service user, owner of the file: sudo chown tickloop {env_file}")]
    mode = stat.S_IMODE(env_file.stat().st_mode)
    if mode & 0o077:
        return [Check("env-file", Status.WARN, f"{env_file} is readable by others (mode {mode:04o})",
                      f"chmod 600 {env_file}")]
    return [Check("env-file", Status.OK, f"{env_file} (mode {mode:04o})")]


def _check_libraries() -> Check:
    # LightGBM's wheel links the system's OpenMP runtime, which minimal images lack
    try:
        import lightgbm  # noqa: F401
        import talib  # noqa: F401
    except (ImportError, OSError) as exc:
        return Check("libraries", Status.FAIL, f"{type(exc).__name__}: {exc}",
                     "sudo apt install libgomp1 (LightGBM needs OpenMP), then reinstall: pip install -e .")
    return Check("libraries", Status.OK, "lightgbm and TA-Lib load")


def _check_book_core() -> Check:
    from exchange.book import BOOK_IMPLEMENTATION

    if BOOK_IMPLEMENTATION == "compiled":
        return Check("book", Status.OK, "compiled order-book core (exchange._book_core)")
    return Check("book", Status.WARN, "pure-Python order book: ingest is about 2x slower",
                 "install a C compiler and Python headers (sudo apt install build-essential python3-dev), "
                 "then reinstall: pip install -e .")


def _check_mode(ctx: _Context) -> None:
    mode = ctx.config.mode
    if mode == "testnet":
        ctx.add("mode", Status.OK, "testnet: orders go to the configured Binance testnet")
    elif mode == "live":
        ctx.add("mode", Status.WARN, "live: REAL orders with real money (the unit must run `tickloop run --live`)",
                "run a clean day on mode: testnet first")
    else:
        ctx.add("mode", Status.OK, f"{mode}: live market data, simulated venue" if mode == "paper" else mode)


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _check_endpoints(ctx: _Context) -> None:
    ep = ctx.config.endpoints.for_market(ctx.config.market.type)
    hosts = {_host(ep.rest), _host(ep.ws)}
    mode = ctx.config.mode
    testnet, production = hosts & TESTNET_HOSTS, hosts & PRODUCTION_HOSTS
    where = f"{ep.rest} + {ep.ws}"
    if mode == "live" and testnet:
        ctx.add("endpoints", Status.FAIL, f"mode live points at the testnet ({where})",
                "remove the endpoints section (production is the default) or use mode: testnet")
    elif mode == "testnet" and production:
        ctx.add("endpoints", Status.FAIL, f"mode testnet points at production ({where})",
                "set endpoints.spot to {rest: https://testnet.binance.vision, ws: wss://stream.testnet.binance.vision}"
                " (see docs/vps.md)")
    elif mode == "paper" and testnet:
        ctx.add("endpoints", Status.WARN, f"paper mode on testnet data ({where}): thin, unrealistic books",
                "remove the endpoints section to paper-trade on production market data")
    else:
        kind = "testnet" if testnet else "production" if production else "custom"
        ctx.add("endpoints", Status.OK, f"{kind}: {where}")


def _check_keys(ctx: _Context) -> None:
    s = ctx.secrets
    missing = [name for name, value in (("BINANCE_API_KEY", s.binance_api_key),
                                        ("BINANCE_API_SECRET", s.binance_api_secret)) if value is None]
    needed = ctx.config.mode in ("testnet", "live")
    if not needed:
        used = "API keys set, not used" if len(missing) < 2 else "no API keys needed"
        ctx.add("keys", Status.OK, f"{ctx.config.mode} mode: {used}")
    elif missing:
        ctx.add("keys", Status.FAIL, f"{ctx.config.mode} mode needs {' and '.join(missing)}, not set", KEYS_HINT)
    else:
        values = [v.get_secret_value() for v in (s.binance_api_key, s.binance_api_secret) if v is not None]
        if any(v != v.strip() for v in values):
            ctx.add("keys", Status.FAIL, "a key has leading or trailing spaces",
                    "remove the spaces (and quotes) around the values in the env file")
        else:
            ctx.add("keys", Status.OK, "BINANCE_API_KEY and BINANCE_API_SECRET are set")


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _writable_dir(name: str, path: Path) -> Check:
    resolved = path.resolve()
    if resolved.exists():
        if not resolved.is_dir():
            return Check(name, Status.FAIL, f"{resolved} exists and is not a directory",
                         "point the setting at a directory")
        try:
            with tempfile.NamedTemporaryFile(dir=resolved, prefix=".doctor-"):
                pass
        except OSError as exc:
            return Check(name, Status.FAIL, f"{resolved} is not writable ({exc.strerror})",
                         f"sudo chown -R tickloop:tickloop {resolved}")
        return Check(name, Status.OK, f"{resolved} is writable")
    parent = _nearest_existing(resolved.parent)
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return Check(name, Status.OK, f"{resolved} will be created (in {parent})")
    why = "is not a directory" if not parent.is_dir() else "is not writable"
    return Check(name, Status.FAIL, f"{resolved} cannot be created: {parent} {why}",
                 f"sudo install -d -o tickloop -g tickloop {resolved}")


def _check_paths(ctx: _Context) -> None:
    cfg = ctx.config
    ctx.checks.append(_writable_dir("data_dir", cfg.paths.data_dir))
    if cfg.logging.file:
        ctx.checks.append(_writable_dir("log_dir", cfg.paths.log_dir))
    journal = getattr(cfg.paths, "journal", None)  # TODO(lead): paths.journal once run mode journals
    if journal is not None:
        ctx.checks.append(_writable_dir("journal", Path(journal).parent))


def _bundle_set_name(bundle_dir: Path) -> str | None:
    try:
        manifest = json.loads((bundle_dir / "manifest.json").read_text(encoding="utf-8"))
        return str(manifest["feature_set"]["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_models(ctx: _Context) -> None:
    from strategy.features import compile_feature_set
    from strategy.models.bundle import BundleError, read_bundle
    from strategy.models.score import check_bundle_symbol

    cfg = ctx.config
    root = cfg.models.dir
    plans = {s.label: compile_feature_set(s) for s in cfg.features.sets}
    hint = "promote a verified run again (`tickloop promote RUN`) or remove the bundle directory"
    verified: list[str] = []
    for symbol in cfg.market.symbols:
        symbol_dir = root / symbol.upper()
        if not symbol_dir.is_dir():
            continue
        sets: set[str] = set()
        for bundle_dir in sorted(p for p in symbol_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            name = _bundle_set_name(bundle_dir)
            plan = plans.get(name or "")
            try:
                if plan is None:
                    raise BundleError(f"trained on feature set {name!r}, which is not configured "
                                      f"(configured: {', '.join(sorted(plans))})")
                check_bundle_symbol(read_bundle(bundle_dir, plan), symbol)
            except BundleError as exc:
                ctx.add("models", Status.FAIL, f"{symbol}/{bundle_dir.name}: {exc} - {symbol} will not trade", hint)
                sets.clear()
                break
            sets.add(plan.spec.label)
            verified.append(f"{symbol}/{bundle_dir.name}")
        if len(sets) > 1:
            ctx.add("models", Status.FAIL, f"{symbol}: bundles use different feature sets {sorted(sets)}", hint)
    if any(c.name == "models" for c in ctx.checks):
        return
    if verified:
        ctx.add("models", Status.OK, f"{len(verified)} bundle(s) verified: {', '.join(verified)}")
    elif cfg.strategy.kind == "model":
        ctx.add("models", Status.FAIL, f"strategy.kind is model but {root.resolve()} holds no bundle for "
                f"{', '.join(cfg.market.symbols)}", "train and promote a model, or set strategy.kind: auto")
    else:
        ctx.add("models", Status.OK, f"no promoted bundle under {root.resolve()} (the vote strategy trades)")


# ---------------------------------------------------------------------------- network checks

def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timed out"
    return redact_url(f"{type(exc).__name__}: {exc}")


async def _get_json(ctx: _Context, url: str | URL, headers: Mapping[str, str] | None = None) -> tuple[int, Any, int, int]:
    """GET url; return (status, decoded body or None, send ns, receive ns)."""
    sent_ns = ctx.clock.now_ns()
    async with ctx.http.get(url, headers=headers) as resp:
        raw = await resp.read()
        received_ns = ctx.clock.now_ns()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return resp.status, body, sent_ns, received_ns


async def _check_rest_and_clock(ctx: _Context) -> None:
    url = server_time_url(ctx.endpoints, ctx.config.market.type)
    unreachable = "check the network, DNS and firewall (outbound HTTPS), and the endpoints in the config"
    try:
        status, body, sent_ns, received_ns = await _get_json(ctx, url)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        ctx.add("rest", Status.FAIL, f"{url}: {_describe_error(exc)}", unreachable)
        ctx.add("clock", Status.WARN, "not checked: the REST API did not answer")
        return
    server_ms = body.get("serverTime") if isinstance(body, dict) else None
    if status != 200 or not isinstance(server_ms, int):
        ctx.add("rest", Status.FAIL, f"{url}: HTTP {status}, no serverTime", unreachable)
        ctx.add("clock", Status.WARN, "not checked: no server time")
        return
    rtt_ms = (received_ns - sent_ns) / 1e6
    ctx.rest_ok = True
    ctx.add("rest", Status.OK, f"{url} answered in {rtt_ms:.0f} ms")
    offset_ms = server_ms - (sent_ns + received_ns) / 2e6
    ctx.offset_ms = round(offset_ms)
    text = f"offset {offset_ms:+.0f} ms (±{rtt_ms / 2:.0f} ms) against the exchange"
    if abs(offset_ms) > SKEW_FAIL_MS:
        ctx.add("clock", Status.FAIL, f"{text}: signed requests would be rejected (-1021)", CLOCK_HINT)
    elif abs(offset_ms) > SKEW_WARN_MS:
        ctx.add("clock", Status.WARN, f"{text}: more than {SKEW_WARN_MS} ms", CLOCK_HINT)
    else:
        ctx.add("clock", Status.OK, text)


async def _check_symbols(ctx: _Context) -> None:
    cfg = ctx.config
    url = exchange_info_url(ctx.endpoints, cfg.market.type, cfg.market.symbols)
    try:
        status, body, _, _ = await _get_json(ctx, url)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        ctx.add("symbols", Status.FAIL, f"exchangeInfo: {_describe_error(exc)}", "check the network")
        return
    entries = body.get("symbols", []) if isinstance(body, dict) else []
    states = {e.get("symbol"): e.get("status") for e in entries if isinstance(e, dict)}
    missing = [s for s in cfg.market.symbols if s not in states]
    halted = [f"{s} ({states[s]})" for s in cfg.market.symbols if s in states and states[s] != "TRADING"]
    market = cfg.market.type.value
    if status != 200 or missing:
        said = f" (Binance: {body.get('msg')})" if isinstance(body, dict) and body.get("msg") else ""
        ctx.add("symbols", Status.FAIL, f"not listed on {market}: {', '.join(missing) or '?'}{said}",
                "fix market.symbols (upper-case Binance symbols) or market.type")
    elif halted:
        ctx.add("symbols", Status.WARN, f"not trading now: {', '.join(halted)}", "choose symbols with status TRADING")
    else:
        ctx.add("symbols", Status.OK, f"{', '.join(cfg.market.symbols)} listed on {market}, TRADING")


async def _check_websockets(ctx: _Context) -> None:
    cfg = ctx.config
    routes = market_streams(cfg.market.type, cfg.market.symbols, depth_speed_ms=cfg.streams.depth_speed_ms,
                            trades=cfg.streams.trade_stream(cfg.market.type),  # type: ignore[arg-type]
                            mark_price=cfg.streams.mark_price)
    for spec in combined_stream_urls(ctx.endpoints, routes):
        where = spec.url.split("?", 1)[0]
        try:
            async with asyncio.timeout(ctx.timeout_s):
                ws = await ctx.http.ws_connect(spec.url, autoping=True, heartbeat=None)
                await ws.close()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            ctx.add("websocket", Status.FAIL, f"{where}: {_describe_error(exc)}",
                    "check outbound access to the websocket host and port (9443 on spot) and endpoints.*.ws")
            continue
        ctx.add("websocket", Status.OK, f"{where} connected ({len(spec.streams)} streams)")


async def _signed_get(
    ctx: _Context, base: str, path: str, params: Mapping[str, str | int] | None = None
) -> tuple[int, Any]:
    assert ctx.secrets.binance_api_key is not None and ctx.secrets.binance_api_secret is not None
    params = {**(params or {}), "recvWindow": RECV_WINDOW_MS,
              "timestamp": ctx.clock.now_ns() // 1_000_000 + ctx.offset_ms}
    signed = signed_query(params, ctx.secrets.binance_api_secret.get_secret_value())
    headers = {"X-MBX-APIKEY": ctx.secrets.binance_api_key.get_secret_value()}
    # encoded=True: send exactly the bytes that were signed
    status, body, _, _ = await _get_json(ctx, URL(f"{base}{path}?{signed}", encoded=True), headers)
    return status, body


def _binance_error(body: Any) -> tuple[int | None, str]:
    if isinstance(body, dict) and isinstance(body.get("code"), int):
        return body["code"], str(body.get("msg", ""))
    return None, ""


async def _check_permissions(ctx: _Context) -> None:
    cfg = ctx.config
    live = cfg.mode == "live"
    # apiRestrictions is a SAPI endpoint of the spot host, also for futures keys; testnets lack it
    base = cfg.endpoints.spot.rest if live else ctx.endpoints.rest_base
    soft = Status.FAIL if live else Status.WARN
    try:
        status, body = await _signed_get(ctx, base, API_RESTRICTIONS_PATH)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        ctx.add("permissions", soft, f"{base}{API_RESTRICTIONS_PATH}: {_describe_error(exc)}", "check the network")
        return
    code, msg = _binance_error(body)
    if status == 404:
        ctx.add("permissions", Status.WARN if not live else Status.FAIL,
                f"{API_RESTRICTIONS_PATH} does not exist on {base}"
                + (" (testnets have no /sapi): permissions not checked" if not live else ""),
                "check on the Binance website that the key cannot withdraw")
        return
    if status != 200 or not isinstance(body, dict):
        why = AUTH_CODES.get(code or 0, msg) if code is not None else f"HTTP {status}"
        ctx.add("permissions", soft, f"key permissions not readable: {why} (code {code})",
                CLOCK_HINT if code == -1021 else "check the key, its secret and its IP whitelist on Binance")
        return
    if body.get("enableWithdrawals"):
        ctx.add("permissions", Status.FAIL if live else Status.WARN, "the key allows withdrawals",
                "edit the API key on Binance: untick 'Enable Withdrawals' (and restrict it to this VPS's IP)")
    else:
        ctx.add("permissions", Status.OK, "the key cannot withdraw")
    needed = "enableFutures" if cfg.market.type is Market.USDM else "enableSpotAndMarginTrading"
    if body.get(needed) is False:
        ctx.add("permissions", Status.WARN, f"{needed} is off: the key cannot trade {cfg.market.type.value}",
                f"edit the API key on Binance: enable {needed}")
    if body.get("ipRestrict") is False:
        ctx.add("permissions", Status.WARN, "the key is not restricted to an IP address",
                "edit the API key on Binance: restrict access to this VPS's IP")


async def _check_account(ctx: _Context) -> None:
    market = ctx.config.market.type
    base = ctx.endpoints.rest_base
    try:
        status, body = await _signed_get(ctx, base, *ACCOUNT_REQUEST[market])
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        ctx.add("account", Status.FAIL, f"{base}: {_describe_error(exc)}", "check the network")
        return
    code, msg = _binance_error(body)
    if status != 200:
        why = AUTH_CODES.get(code or 0, msg or f"HTTP {status}")
        ctx.add("account", Status.FAIL, f"{base} refused the keys: {why} (code {code})",
                CLOCK_HINT if code == -1021 else
                "testnet keys work only on the testnet and live keys only on production; check the IP whitelist")
        return
    if isinstance(body, dict) and body.get("canTrade") is False:
        ctx.add("account", Status.WARN, "keys accepted, but the account cannot trade", "check the account on Binance")
        return
    ctx.add("account", Status.OK, f"keys accepted by {base}")


# ---------------------------------------------------------------------------- entry points

async def run_doctor(
    config_path: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    env_file: Path | None = Path(".env"),
    env_file_explicit: bool = False,
    clock: Clock | None = None,
    timeout_s: float = 5.0,
    network: bool = True,
) -> list[Check]:
    """Run every check of a set-up (only the local ones without network); return them in order."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return [Check("config", Status.FAIL, problem, f"edit {config_path}" if config_path else "")
                for problem in exc.problems]
    checks = [Check("config", Status.OK if config_path else Status.WARN,
                    f"{config_path.resolve() if config_path else 'no config file: defaults'}: mode {config.mode}, "
                    f"{config.market.type.value} {' '.join(config.market.symbols)}",
                    "" if config_path else "pass -c /etc/tickloop/config.yaml")]
    checks += _check_env_file(env_file, env_file_explicit)
    checks.append(_check_libraries())
    checks.append(_check_book_core())
    secrets = _load_secrets(env, env_file)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        ctx = _Context(config, secrets, clock or LiveClock(), http, timeout_s, checks=checks)
        _check_mode(ctx)
        _check_endpoints(ctx)
        _check_keys(ctx)
        _check_paths(ctx)
        _check_models(ctx)
        if not network:
            return ctx.checks
        await _check_rest_and_clock(ctx)
        if ctx.rest_ok:
            await _check_symbols(ctx)
        await _check_websockets(ctx)
        if ctx.has_keys and config.mode in ("testnet", "live"):
            await _check_permissions(ctx)
            await _check_account(ctx)
    return ctx.checks


def _load_secrets(env: Mapping[str, str] | None, env_file: Path | None) -> Secrets:
    try:
        return load_secrets(env, dotenv_path=env_file)
    except OSError:  # an unreadable env file: reported by the env-file check
        return load_secrets(env, dotenv_path=None)


def scrub(text: str, secrets: Secrets) -> str:
    """Replace any secret value in text (defence in depth: no detail should contain one)."""
    from engine.commands import pem_secret_parts

    for value in (secrets.binance_api_key, secrets.binance_api_secret, secrets.telegram_token):
        if value is not None and len(value.get_secret_value()) >= 4:
            text = text.replace(value.get_secret_value(), "***")
    for part in pem_secret_parts(secrets):
        text = text.replace(part, "***")
    return text


def doctor_command(
    config_path: Path | None,
    *,
    env_file: Path | None = None,
    timeout_s: float = 5.0,
    network: bool = True,
    out: TextIO | None = None,
) -> int:
    """Print one line per check and a summary; return 1 if any check failed, else 0."""
    out = out or sys.stdout
    explicit = env_file is not None
    env_path = env_file if explicit else Path(".env")
    checks = asyncio.run(run_doctor(config_path, env_file=env_path, env_file_explicit=explicit,
                                    timeout_s=timeout_s, network=network))
    secrets = _load_secrets(None, env_path)
    for check in checks:
        print(scrub(check.line(), secrets), file=out)
    counts = {s: sum(c.status is s for c in checks) for s in Status}
    print(f"doctor: {counts[Status.FAIL]} FAIL, {counts[Status.WARN]} WARN, {counts[Status.OK]} OK", file=out)
    return 1 if counts[Status.FAIL] else 0
