"""Mode testnet end to end against the loopback simulator with trading on, and the live-mode guards.

Every expectation is read from the simulator's own records (orders, fills, account) or written by
hand; the engine's journal and portfolio are what is checked against them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import Counter
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from binance_harness import journal_rows, run_engine, sim_orders, sim_testnet_config, use_sim_keys
from test_livemodels import train_tiny_bundle
from test_trading_parity import trading_overrides

from engine.app import App
from engine.cli import main as cli_main
from engine.commands import run_live
from engine.notices import Notice
from engine.orders import OrderStatus
from exchange.sim.server import SimServer
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET
from exchange.sim.trading.keys import ApiKey
from risk.state import TradingState

pytestmark = pytest.mark.flaky(reruns=2)  # real sockets on a loaded 2-core machine

SYMBOL = "BTCUSDT"
_SIM_STATUS = {"NEW": OrderStatus.NEW, "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
               "FILLED": OrderStatus.FILLED, "CANCELED": OrderStatus.CANCELED,
               "EXPIRED": OrderStatus.EXPIRED, "REJECTED": OrderStatus.REJECTED}  # fmt: skip


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory, tapes: dict[str, Path]) -> Path:
    out = tmp_path_factory.mktemp("models")
    train_tiny_bundle(tapes["spot_btcusdt"], out, threshold=0.2)  # enters often on its own tape
    return out


def holding_overrides(models_dir: Path) -> dict:
    """The tape's strategy with exits far away: the first position stays open (and protected)."""
    overrides = trading_overrides(models_dir)
    strategy = dict(overrides["strategy"])
    strategy["exits"] = {"max_hold_s": 3600, "stop_loss_pct": 3.0, "take_profits": [{"pct": 3.0}]}
    return {**overrides, "strategy": strategy}


def _protected(app: App) -> bool:
    """An open position whose protective orders the simulator has accepted."""
    loop = app.trading
    assert loop is not None
    plan = loop.gate.plans.get(SYMBOL)
    if plan is None or not loop.portfolio.open_positions():
        return False
    working = [o.client_order_id for o in plan.working_orders()]
    return bool(working) and all(loop.venue.manager.status(c) is OrderStatus.NEW for c in working)  # type: ignore[union-attr]


async def _position_then_pause(sim: SimServer, config, journal: Path) -> App:  # type: ignore[no-untyped-def]
    async def pause(app: App) -> None:
        sim.pause()

    return await run_engine(sim, config, journal, until=_protected, after_start=pause)


async def test_testnet_spot_journal_and_portfolio_agree_with_the_simulator(
    tapes: dict[str, Path], models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sim_keys(monkeypatch, tmp_path)
    tape = tapes["spot_btcusdt"]
    async with SimServer([tape], speed=100, trading=True) as sim:
        config = sim_testnet_config(sim, tape, trading_overrides(models_dir))
        app = await run_engine(sim, config, tmp_path / "journal.sqlite")
        orders = sim_orders(sim)
        sim_balances = sim.trading.spot.venue.balances()  # type: ignore[union-attr]
    intents, fills = journal_rows(tmp_path / "journal.sqlite")
    assert len(intents) >= 3 and fills, "the tiny model enters several times on this tape"
    placed = Counter(o.client_order_id for o in orders)
    assert set(placed) == {r.intent.client_order_id for r in intents}  # none lost, none foreign
    assert max(placed.values()) == 1  # none duplicated
    by_id = {o.client_order_id: o for o in orders}
    for record in intents:  # every outcome journaled as the exchange reports it
        assert record.status is _SIM_STATUS[by_id[record.intent.client_order_id].status]
        assert record.filled_qty == by_id[record.intent.client_order_id].executed_qty
    sim_fills = sorted((o.client_order_id, f.trade_id, f.price, f.qty, f.commission)
                       for o in orders for f in o.fills)  # fmt: skip
    ours = sorted((f.client_order_id, f.trade_id, f.price, f.quantity, f.fee) for f in fills)
    assert ours == sim_fills
    # the account's 10 BTC are valued from the first second (prices read before the feed starts)
    assert app.trading.portfolio.start_equity > Decimal(1_500_000)  # type: ignore[union-attr]
    ledger = app.trading.portfolio.ledger  # type: ignore[union-attr]
    for asset in ("USDT", "BTC"):  # the engine's books equal the exchange's account
        assert ledger.get(asset) == sim_balances[asset].total, asset


async def test_restart_adopts_the_protection_still_working(
    tapes: dict[str, Path], models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sim_keys(monkeypatch, tmp_path)
    tape = tapes["spot_btcusdt"]
    journal = tmp_path / "journal.sqlite"
    async with SimServer([tape], speed=100, trading=True) as sim:
        config = sim_testnet_config(sim, tape, holding_overrides(models_dir))
        await _position_then_pause(sim, config, journal)
        before = {o.client_order_id: o.status for o in sim_orders(sim)}
        working = {c for c, s in before.items() if s == "NEW"}
        assert working, "the first run left protective orders working"

        second = await run_engine(sim, config, journal, until=lambda app: True)
        after = {o.client_order_id: o.status for o in sim_orders(sim)}
    assert after == before  # nothing placed, nothing cancelled: the plan was adopted
    loop = second.trading
    assert loop is not None
    plan = loop.gate.plans[SYMBOL]
    assert set(plan.legs) == working
    assert loop.trading_state is TradingState.ACTIVE
    intents, _ = journal_rows(journal)
    assert not [r for r in intents if r.status in (OrderStatus.PENDING, OrderStatus.UNKNOWN)]


async def _cancel_on_sim(sim: SimServer, client_order_ids: list[str]) -> None:
    """Cancel orders by hand, as a person on the website would (signed here, independently)."""
    async with aiohttp.ClientSession() as http:
        for cid in client_order_ids:
            query = urlencode({"symbol": SYMBOL, "origClientOrderId": cid, "timestamp": sim.server_time_ms()})
            signature = hmac.new(TEST_API_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
            url = f"{sim.base_http}/api/v3/order?{query}&signature={signature}"
            async with http.delete(url, headers={"X-MBX-APIKEY": TEST_API_KEY}) as resp:
                assert resp.status == 200, await resp.text()


async def test_restart_protects_a_position_left_without_stops(
    tapes: dict[str, Path], models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sim_keys(monkeypatch, tmp_path)
    tape = tapes["spot_btcusdt"]
    journal = tmp_path / "journal.sqlite"
    async with SimServer([tape], speed=100, trading=True) as sim:
        config = sim_testnet_config(sim, tape, holding_overrides(models_dir))
        await _position_then_pause(sim, config, journal)
        _, fills = journal_rows(journal)
        held = sum((f.quantity if f.side.value == "BUY" else -f.quantity for f in fills), Decimal(0))
        assert held > 0, [(f.client_order_id, f.side, f.quantity) for f in fills]
        # someone cancels every protective order by hand while the engine is down (one leg per OCO)
        stops = [o.client_order_id for o in sim_orders(sim) if o.status == "NEW" and "-sl" in o.client_order_id]
        await _cancel_on_sim(sim, stops)
        assert not [o for o in sim_orders(sim) if o.status == "NEW"]

        notices: list[Notice] = []
        second = await run_engine(sim, config, journal, until=lambda app: app.binance.venue.idle,
                                  on_app=lambda app: app.notice_listeners.append(notices.append))  # fmt: skip
        await asyncio.sleep(0)
        fresh = [o for o in sim_orders(sim) if o.status == "NEW"]
    stop_qty = sum((o.orig_qty for o in fresh if o.type in ("STOP_LOSS", "STOP_LOSS_LIMIT")), Decimal(0))
    assert stop_qty == held  # the whole position is protected again, by new orders of ours
    assert all(o.side == "SELL" for o in fresh)
    assert second.trading is not None and second.trading.trading_state is TradingState.ACTIVE


async def test_restart_with_a_partly_protected_position_goes_reducing_and_alerts(
    tapes: dict[str, Path], models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sim_keys(monkeypatch, tmp_path)
    tape = tapes["spot_btcusdt"]
    journal = tmp_path / "journal.sqlite"
    async with SimServer([tape], speed=100, trading=True) as sim:
        config = sim_testnet_config(sim, tape, holding_overrides(models_dir))
        await _position_then_pause(sim, config, journal)
        stops = sorted(o.client_order_id for o in sim_orders(sim) if o.status == "NEW" and "-sl" in o.client_order_id)
        assert len(stops) >= 2, "two take-profit levels: two OCO brackets"
        await _cancel_on_sim(sim, stops[:1])
        still_working = {o.client_order_id for o in sim_orders(sim) if o.status == "NEW"}
        notices: list[Notice] = []
        second = await run_engine(sim, config, journal, until=lambda app: True,
                                  on_app=lambda app: app.notice_listeners.append(notices.append))  # fmt: skip
    assert second.trading is not None
    assert second.trading.trading_state is TradingState.REDUCING
    # the stops that remain are followed all the same: an exit will cancel them
    assert set(second.trading.gate.plans[SYMBOL].legs) == still_working
    texts = [getattr(n, "detail", "") or getattr(n, "message", "") for n in notices]
    assert any("protective stop" in str(t) for t in texts), notices


def _write_config(tmp_path: Path, mode: str, rest: str = "http://127.0.0.1:9", ws: str = "ws://127.0.0.1:9") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"mode: {mode}\nmarket: {{type: spot, symbols: [BTCUSDT]}}\n"
        f"endpoints: {{spot: {{rest: '{rest}', ws: '{ws}'}}}}\n"
        "logging: {console: 'off', file: null}\n"
        f"paths: {{data_dir: '{tmp_path}/data', log_dir: '{tmp_path}/logs'}}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("mode", "flags", "env", "message"),
    [
        ("live", [], {"BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s"}, "add --live to confirm"),
        ("paper", ["--live"], {}, "--live given but config mode is paper"),
        ("live", ["--live"], {}, "BINANCE_API_KEY is not set"),
        ("testnet", [], {"BINANCE_API_KEY": "k"}, "set BINANCE_API_SECRET"),
    ],
)
def test_live_and_testnet_refuse_to_start_without_flag_or_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    mode: str, flags: list[str], env: dict[str, str], message: str,
) -> None:
    for name in ("BINANCE_API_KEY", "BINANCE_API_SECRET", "BINANCE_PRIVATE_KEY", "BINANCE_PRIVATE_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    config = _write_config(tmp_path, mode)
    assert cli_main(["run", "-c", str(config), *flags]) == 2  # before any socket: port 9 is never tried
    assert message in capsys.readouterr().err


async def test_live_refuses_a_key_that_may_withdraw(
    tapes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_sim_keys(monkeypatch, tmp_path)
    tape = tapes["spot_btcusdt"]
    async with SimServer([tape], speed=100, trading=True) as sim:
        assert sim.trading is not None
        sim.trading.keys.add(ApiKey(TEST_API_KEY, TEST_API_SECRET, enable_withdrawals=True))
        config = sim_testnet_config(sim, tape, {}).model_copy(update={"mode": "live"})
        config = config.model_copy(update={"paths": config.paths.model_copy(update={"data_dir": tmp_path})})
        code = await run_live(config, duration_s=5)
        placed = sim_orders(sim)
    assert code == 1
    assert "withdrawals" in capsys.readouterr().err
    assert placed == []


@pytest.fixture(scope="module")
def usdm_models_dir(tmp_path_factory: pytest.TempPathFactory, tapes: dict[str, Path]) -> Path:
    out = tmp_path_factory.mktemp("usdm-models")
    train_tiny_bundle(tapes["usdm_btcusdt"], out, threshold=0.2)
    return out


async def test_testnet_usdm_stops_on_the_algo_endpoint_and_journal_agrees(
    tapes: dict[str, Path], usdm_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sim_keys(monkeypatch, tmp_path)
    tape = tapes["usdm_btcusdt"]
    async with SimServer([tape], speed=100, trading=True) as sim:
        # exits 3 % away: the stops rest on the exchange (tight ones may be crossed before they rest)
        config = sim_testnet_config(sim, tape, holding_overrides(usdm_models_dir))
        await run_engine(sim, config, tmp_path / "journal.sqlite")
        assert sim.trading is not None
        orders = sim_orders(sim, spot=False)
        algos = list(sim.trading.futures.algos.values())
    intents, fills = journal_rows(tmp_path / "journal.sqlite")
    assert intents and fills
    stops = [r.intent.client_order_id for r in intents if "-sl" in r.intent.client_order_id]
    assert stops and {a.client_algo_id for a in algos} >= set(stops)  # conditional: the algo path
    assert max(Counter(a.client_algo_id for a in algos).values()) == 1
    placed = Counter(o.client_order_id for o in orders if o.algo_id is None)
    assert max(placed.values()) == 1
    assert {r.intent.client_order_id for r in intents} == set(placed) | {a.client_algo_id for a in algos}
    sim_fills = sorted((o.client_order_id, f.trade_id, f.price, f.qty) for o in orders for f in o.fills)
    assert sorted((f.client_order_id, f.trade_id, f.price, f.quantity) for f in fills) == sim_fills
