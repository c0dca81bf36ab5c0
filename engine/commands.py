"""What the long-running CLI commands do: run (live watch), record, collect, demo and sim.

Each sets up logging from the config, checks that the exchange is reachable, learns the
instruments' tick sizes from exchangeInfo, and runs an App until its duration, a signal, or
Ctrl-C. `demo` starts the loopback simulator and points the same App at it: a config change,
not a code path.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys
from decimal import Decimal
from pathlib import Path

import aiohttp
import structlog

from engine.app import App, endpoints_of
from exchange.binance.startup import StartupRefused
from exchange.errors import AuthFailed
from engine.config import Config, ConfigError, EndpointConfig, Secrets, load_secrets
from engine.logging import configure_logging
from engine.modes import trades
from engine.model import instrument_from_exchange_info

EXIT_OK, EXIT_FAILURE, EXIT_UNREACHABLE = 0, 1, 3


def setup_logging(config: Config) -> None:
    secrets = load_secrets()
    values = [s.get_secret_value() for s in (secrets.binance_api_key, secrets.binance_api_secret,
                                              secrets.telegram_token) if s is not None]
    values += pem_secret_parts(secrets)
    dashboard_token = os.environ.get(config.dashboard.auth_env)
    if dashboard_token:
        values.append(dashboard_token)
    configure_logging(config.logging, config.paths.log_dir, secret_values=values)


def pem_secret_parts(secrets: Secrets) -> list[str]:
    """Return the Ed25519 PEM and each of its key lines: any of them in a text is a leak."""
    if secrets.binance_private_key_pem is None:
        return []
    pem = secrets.binance_private_key_pem.get_secret_value()
    return [pem.strip(), *(line.strip() for line in pem.splitlines() if line.strip() and not line.startswith("-----"))]


class ExchangeUnreachable(Exception):
    """The exchange's REST API did not answer: no network, DNS, firewall, or an outage."""


async def fetch_tick_sizes(config: Config) -> dict[str, object]:
    """Check the exchange answers and return each configured symbol's tick size from exchangeInfo."""
    from exchange.binance.urls import exchange_info_url, server_time_url

    endpoints = endpoints_of(config)
    market = config.market.type
    timeout = aiohttp.ClientTimeout(total=8)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.get(server_time_url(endpoints, market)) as resp:
                await resp.read()
            async with http.get(exchange_info_url(endpoints, market, config.market.symbols)) as resp:
                info = await resp.json(content_type=None) if resp.status == 200 else {}
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise ExchangeUnreachable(f"{endpoints.rest_base} ({type(exc).__name__}: {exc or 'timeout'})") from None
    wanted = set(config.market.symbols)
    ticks: dict[str, object] = {}
    for entry in info.get("symbols", []) if isinstance(info, dict) else []:
        if entry.get("symbol") in wanted:
            try:
                ticks[entry["symbol"]] = instrument_from_exchange_info(entry, market).tick_size
            except (KeyError, ArithmeticError, TypeError):
                continue  # the book infers the tick from its first snapshot instead
    return ticks


class SurfaceError(Exception):
    """An operator surface (dashboard, Telegram) is misconfigured: refuse to start."""


def attach_surfaces(app: App, config: Config) -> None:
    """Attach the dashboard (and other operator surfaces) configured for this App."""
    if config.telegram.enabled:
        from engine.notify.telegram import attach_telegram

        try:
            attach_telegram(app, config.telegram, load_secrets())
        except ConfigError as exc:
            raise SurfaceError("telegram: " + "; ".join(exc.problems)) from None
    if config.dashboard.enabled:
        from engine.dashboard import DashboardAuthError, attach_dashboard

        try:
            attach_dashboard(app, config.dashboard)  # logs its URL once listening
        except DashboardAuthError as exc:
            raise SurfaceError(f"dashboard: {exc}") from None


def _install_signal_handlers(app: App) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, app.stop)
        except (NotImplementedError, RuntimeError):
            pass


def binance_refusal(config: Config, *, confirmed_live: bool) -> str | None:
    """Return why the mode cannot start (keys, the --live flag), before any socket opens."""
    from engine.live_start import KeysMissing, binance_keys
    from engine.modes import on_binance

    if config.mode == "live" and not confirmed_live:
        return "mode live trades real money: add --live to confirm (or use mode testnet)"
    if confirmed_live and config.mode != "live":
        return f"--live given but config mode is {config.mode}: set mode: live in config.yaml"
    if not on_binance(config):
        return None
    try:
        binance_keys(load_secrets())
    except (KeysMissing, ConfigError, ValueError) as exc:
        detail = "; ".join(exc.problems) if isinstance(exc, ConfigError) else str(exc)
        return f"mode {config.mode} needs API keys: {detail}"
    return None


async def run_live(
    config: Config,
    *,
    duration_s: float | None = None,
    record_to: Path | None = None,
    collect_to: Path | None = None,
) -> int:
    """Watch the configured coins on Binance; optionally record a tape or collect Parquet rows."""
    setup_logging(config)
    log = structlog.get_logger("engine.run")
    if config.dashboard.enabled:  # an unsafe dashboard is refused before any socket opens
        from engine.dashboard import DashboardAuthError, resolve_token

        try:
            resolve_token(config.dashboard)
        except DashboardAuthError as exc:
            print(f"tickloop: dashboard: {exc}", file=sys.stderr)
            return 2
    if config.telegram.enabled:  # aiogram takes seconds to import: not on the running loop
        await asyncio.to_thread(importlib.import_module, "aiogram")
    try:
        tick_sizes = await fetch_tick_sizes(config)
    except ExchangeUnreachable as exc:
        print(
            f"tickloop: cannot reach Binance at {exc} - no network here? "
            "Run `tickloop demo` to see the engine work fully offline on a recorded tape.",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    journal_path = config.paths.journal_path() if trades(config) else None
    if journal_path is not None:
        journal_path.parent.mkdir(parents=True, exist_ok=True)
    app = App(config, record_to=record_to, collect_to=collect_to, tick_sizes=tick_sizes, journal_path=journal_path)
    try:
        attach_surfaces(app, config)
    except SurfaceError as exc:
        print(f"tickloop: {exc}", file=sys.stderr)
        return 2
    _install_signal_handlers(app)
    log.info("starting", mode=config.mode, market=config.market.type.value, symbols=list(config.market.symbols),
             rest=endpoints_of(config).rest_base, record_to=str(record_to) if record_to else None,
             collect_to=str(collect_to) if collect_to else None)
    refused: list[BaseException] = []
    try:
        await app.run(duration_s)
    except* (StartupRefused, AuthFailed) as group:
        refused.extend(group.exceptions)
    if refused:  # the account cannot be traded as configured: say why in one line
        log.error("start_refused", reason=str(refused[0]))
        print(f"tickloop: refused to start {config.mode}: {refused[0]}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def point_at(config: Config, base_http: str, base_ws: str, market, symbols) -> Config:  # type: ignore[no-untyped-def]
    """Return config with the market's endpoints replaced by the simulator's (same code path)."""
    from engine.model import Market

    endpoint = EndpointConfig(rest=base_http, ws=base_ws, routed=market is Market.USDM)
    field = "spot" if market is Market.SPOT else "usdm"
    endpoints = config.endpoints.model_copy(update={field: endpoint})
    market_cfg = config.market.model_copy(update={"type": market, "symbols": tuple(symbols)})
    return config.model_copy(update={"endpoints": endpoints, "market": market_cfg})


async def run_demo(
    config: Config, *, tapes: list[Path] | None, speed: float, duration_s: float | None
) -> int:
    """Replay a tape through the loopback simulator into a real engine, fully offline."""
    from engine.synthetic import write_synthetic_tape
    from engine.tape import infer_market, tape_symbols
    from exchange.sim.server import SimServer

    setup_logging(config)
    log = structlog.get_logger("engine.demo")
    if not tapes:
        synthetic = config.paths.data_dir / "synthetic" / "SYNTHETIC_demo_tape.gz"
        if not synthetic.is_file():
            write_synthetic_tape(synthetic)
        log.warning("demo_on_synthetic_data", tape=str(synthetic),
                    note="SYNTHETIC market data generated by tickloop, not a Binance recording")
        tapes = [synthetic]
    markets = {infer_market(t) for t in tapes}
    if len(markets) != 1:
        print("tickloop demo: give tapes of one market (spot or usdm) at a time", file=sys.stderr)
        return 2
    market = markets.pop()
    symbols = list(dict.fromkeys(s for t in tapes for s in tape_symbols(t)))
    async with SimServer(tapes, speed=speed) as sim:
        demo_config = point_at(config, sim.base_http, sim.base_ws, market, symbols)
        tick_sizes = await fetch_tick_sizes(demo_config)
        journal_path = demo_config.paths.data_dir / "demo_journal.sqlite"
        journal_path.parent.mkdir(parents=True, exist_ok=True)
        app = App(demo_config, tick_sizes=tick_sizes, journal_path=journal_path if trades(demo_config) else None)
        try:
            attach_surfaces(app, demo_config)
        except SurfaceError as exc:
            print(f"tickloop: {exc}", file=sys.stderr)
            return 2
        _install_signal_handlers(app)
        log.info("demo_started", sim=sim.base_http, symbols=symbols, speed=speed,
                 tape_seconds=round(sim.tape_duration_s(), 1))

        async def stop_when_replayed() -> None:
            await sim.wait_finished()
            await asyncio.sleep(1.0)  # let the last frames reach the engine
            app.stop()

        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(stop_when_replayed())
            await app.run(duration_s)
            watcher.cancel()
    health = app.health()
    for symbol, figures in health["symbols"].items():
        print(f"{symbol}: {figures['rows']} rows, book valid={figures['book_valid']}, "
              f"gaps={figures['gaps']}, best bid/ask={figures['best_bid']}/{figures['best_ask']}")
    if app.trading is not None:
        from portfolio.portfolio import summary_line

        print("paper trading: " + summary_line(app.trading.portfolio.summary_fields(app.trading.curve)))
        print(f"journal: {journal_path} (tickloop report {journal_path})")
    return EXIT_OK


async def run_sim_command(
    tapes: list[Path], *, speed: float, port: int, loop: bool,
    klines: list[Path] | None = None, klines_market: str = "usdm", trading: bool = False,
) -> int:
    """Serve tapes (and optionally kline history) as a loopback Binance until interrupted."""
    from exchange.sim.klines import KlineServer
    from exchange.sim.server import run_sim

    kline_server = None
    if klines:
        kline_server = KlineServer()
        for path in klines:
            symbol = path.name.split("-", 1)[0].upper()  # Binance archive names: SYMBOL-1m-YYYY-MM.csv
            kline_server.add_file(klines_market, symbol, [path])
    try:
        await run_sim(tapes, speed=speed, port=port, loop=loop, klines=kline_server, trading=trading)
    except asyncio.CancelledError:
        pass
    return EXIT_OK
