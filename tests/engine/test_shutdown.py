"""Graceful shutdown: ordered, timed steps; orders kept or cancelled per config; files closed.

The end-to-end test runs the real `tickloop record` in a subprocess against the loopback
simulator and sends it SIGTERM, as systemd and docker do. The in-process tests run an App over
the simulator with resting orders on the simulated venue and a journal.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from engine.app import App
from engine.clock import LiveClock
from engine.commands import fetch_tick_sizes, point_at
from engine.config import parse_config
from engine.journal import Journal
from engine.model import Side
from engine.modes import fetch_exchange_info
from engine.orders import OrderIntent, OrderRole, OrderStatus, OrderType
from engine.shutdown import ShutdownConfig, ShutdownSequence, orders_to_cancel, shutdown_config_of
from engine.tape import infer_market, read_tape, tape_symbols
from exchange.base import OpenOrder
from exchange.sim.server import SimServer

HANG_GUARD_S = 120  # only so a broken shutdown fails the test instead of hanging it


# ---------------------------------------------------------------------------- the sequence

async def test_a_hanging_step_is_abandoned_and_the_next_steps_still_run() -> None:
    seq = ShutdownSequence(timeout_s=0.3, clock=LiveClock())
    ran: list[str] = []

    async def hang() -> None:
        await asyncio.Event().wait()

    def boom() -> None:
        raise RuntimeError("disk full")

    first = await seq.step("intake", hang, budget_s=0.1)
    second = await seq.step("orders", boom)
    third = await seq.step("journal", lambda: ran.append("journal"))
    assert (first.outcome, second.outcome, third.outcome) == ("timeout", "error", "ok")
    assert "disk full" in second.detail
    assert ran == ["journal"]
    summary = seq.summary()
    assert summary["shutdown_ok"] is False
    assert summary["steps"] == {"intake": "timeout", "orders": "error", "journal": "ok"}


async def test_each_step_runs_once_even_if_the_sequence_is_entered_again() -> None:
    seq = ShutdownSequence(timeout_s=5, clock=LiveClock())
    calls: list[str] = []
    await seq.step("journal", lambda: calls.append("journal"))
    again = await seq.step("journal", lambda: calls.append("journal"))
    assert calls == ["journal"]
    assert again.outcome == "ok"


async def test_a_spent_deadline_still_lets_a_finished_awaitable_complete() -> None:
    seq = ShutdownSequence(timeout_s=0.01, clock=LiveClock())
    await asyncio.sleep(0.05)  # the whole budget is gone before the step starts
    seq.start()

    async def already_done() -> str:
        return "done"

    outcome = await seq.step("flush", already_done)
    assert outcome.outcome == "ok"


def test_shutdown_config_defaults_keep_orders_and_reject_unknown_keys() -> None:
    assert shutdown_config_of(parse_config({})) == ShutdownConfig(orders_on_exit="keep", timeout_s=10.0)
    assert shutdown_config_of(type("C", (), {"shutdown": {"orders_on_exit": "cancel_all"}})()).orders_on_exit == "cancel_all"
    with pytest.raises(ValueError):
        ShutdownConfig.model_validate({"orders_on_exit": "cancel", "timeout_s": 5})
    with pytest.raises(ValueError):
        ShutdownConfig.model_validate({"timeout_s": 0})
    with pytest.raises(ValueError):
        ShutdownConfig.model_validate({"grace_s": 3})


def _open(cid: str, role: OrderRole | None) -> OpenOrder:
    intent = None if role is None else OrderIntent(cid, "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.01"),
                                                   role=role, price=Decimal(30000))
    return OpenOrder("BTCUSDT", cid, "1", Side.BUY, Decimal("0.01"), Decimal(0), OrderStatus.NEW, intent)


def test_cancel_entries_keeps_protective_and_exit_orders() -> None:
    orders = [_open(role.value, role) for role in OrderRole] + [_open("unknown", None)]
    # by hand: what may open or add to a position goes; what protects or closes one stays
    assert {o.client_order_id for o in orders_to_cancel(orders, "cancel_entries")} == {"entry", "dca", "unknown"}
    assert orders_to_cancel(orders, "keep") == []
    assert len(orders_to_cancel(orders, "cancel_all")) == len(orders)


# ---------------------------------------------------------------------------- an App over the simulator

def _intents(tape_price: Decimal) -> list[OrderIntent]:
    far_below = (tape_price * Decimal("0.5")).quantize(Decimal("0.1"))
    return [
        OrderIntent("sd-entry", "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.01"),
                    role=OrderRole.ENTRY, price=far_below),
        OrderIntent("sd-stop", "BTCUSDT", Side.SELL, OrderType.STOP_MARKET, Decimal("0.01"),
                    role=OrderRole.STOP_LOSS, stop_price=far_below),
    ]


async def _run_app_with_orders(tape: Path, shutdown: ShutdownConfig, **app_kwargs) -> tuple[App, list]:
    market, symbols = infer_market(tape), tape_symbols(tape)
    raw = {"logging": {"console": "off", "file": None, "heartbeat_s": 0.5},
           "book": {"snapshot_limit": 1000, "min_resync_interval_s": 0.05}}
    async with SimServer([tape], speed=20) as sim:
        config = point_at(parse_config(raw), sim.base_http, sim.base_ws, market, symbols)
        async with aiohttp.ClientSession() as http:
            entries = await fetch_exchange_info(config, http)
        app = App(config, tick_sizes=await fetch_tick_sizes(config), exchange_info=entries, **app_kwargs)
        app.shutdown_config = shutdown  # TODO: through config.shutdown once the lead embeds it
        assert app.trading is not None
        journal = app.journal
        assert journal is not None
        for intent in _intents(Decimal(60000)):
            journal.record_intent(intent, 0)
            for event in app.trading.venue.submit(intent, 0):
                journal.record_order_event(event)

        async def stop_when_orders_rest() -> None:
            while app.trading.venue.open_order_count() < 2:  # type: ignore[union-attr]
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            app.stop()

        with capture_logs() as logs:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(stop_when_orders_rest())
                await asyncio.wait_for(app.run(), HANG_GUARD_S)
    return app, logs


def _statuses(path: Path) -> dict[str, str]:
    journal = Journal.open(path)
    try:
        return {r.intent.client_order_id: r.status.value for r in journal.intents()}
    finally:
        journal.close()


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("keep", {"sd-entry": "NEW", "sd-stop": "NEW"}),
        ("cancel_entries", {"sd-entry": "CANCELED", "sd-stop": "NEW"}),
        ("cancel_all", {"sd-entry": "CANCELED", "sd-stop": "CANCELED"}),
    ],
)
async def test_open_orders_are_kept_or_cancelled_per_config_and_journaled(
    tapes: dict[str, Path], tmp_path: Path, policy: str, expected: dict[str, str]
) -> None:
    path = tmp_path / "journal.sqlite"
    _, logs = await _run_app_with_orders(
        tapes["usdm_btcusdt"], ShutdownConfig(orders_on_exit=policy), journal_path=path  # type: ignore[arg-type]
    )
    # the App opened the journal, so it closed it: a closed WAL database leaves no -wal file behind
    assert not Path(f"{path}-wal").exists()
    assert _statuses(path) == expected
    events = [e["event"] for e in logs]
    on_exit = next(e for e in logs if e["event"] == "orders_on_exit")
    cancelled = sum(1 for s in expected.values() if s == "CANCELED")
    assert (on_exit["cancelled"], on_exit["kept"]) == (cancelled, 2 - cancelled)
    steps = [e["step"] for e in logs if e["event"] == "shutdown_step"]
    assert steps == ["intake", "orders", "journal", "services"]
    final = [e for e in logs if e["event"] == "stopped"]
    assert len(final) == 1 and final[0]["shutdown_ok"] is True
    assert events.index("stopping") < events.index("orders_on_exit") < events.index("stopped")


async def test_a_journal_passed_in_is_flushed_but_stays_open_for_its_owner(
    tapes: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal.open(path)
    await _run_app_with_orders(tapes["usdm_btcusdt"], ShutdownConfig(orders_on_exit="cancel_entries"),
                               journal=journal)
    # committed: a second connection sees the cancellation while the owner's is still open
    with sqlite3.connect(path) as other:
        rows = dict(other.execute("SELECT client_order_id, status FROM intents"))
    assert rows == {"sd-entry": "CANCELED", "sd-stop": "NEW"}
    journal.record_equity(1, 1.0)  # still usable by its owner
    journal.close()


async def test_a_service_that_ignores_cancellation_cannot_hold_back_the_final_line(
    tapes: dict[str, Path], tmp_path: Path
) -> None:
    tape = tapes["spot_btcusdt"]
    order: list[str] = []
    raw = {"logging": {"console": "off", "file": None}, "book": {"min_resync_interval_s": 0.05}}
    async with SimServer([tape], speed=20) as sim:
        config = point_at(parse_config(raw), sim.base_http, sim.base_ws, infer_market(tape), tape_symbols(tape))
        app = App(config, tick_sizes=await fetch_tick_sizes(config))
        app.shutdown_config = ShutdownConfig(timeout_s=1.0)

        async def stubborn() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                await asyncio.sleep(3.0)  # longer than the whole shutdown deadline
                order.append("service finished")
                raise

        app.add_service("stubborn", stubborn)

        def final_line(_logger, _name, event_dict):  # type: ignore[no-untyped-def]
            if event_dict.get("event") == "stopped":
                order.append("stopped")
            return event_dict

        with capture_logs(processors=[final_line]) as logs:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_stop_after(app, 1.0))
                await asyncio.wait_for(app.run(), HANG_GUARD_S)
    steps = {e["step"]: e["outcome"] for e in logs if e["event"] == "shutdown_step"}
    assert steps["services"] == "timeout"
    assert steps["intake"] == steps["journal"] == "ok"
    assert order == ["stopped", "service finished"]
    final = next(e for e in logs if e["event"] == "stopped")
    assert final["shutdown_ok"] is False and final["steps"]["services"] == "timeout"


async def _stop_after(app: App, seconds: float) -> None:
    await asyncio.sleep(seconds)
    app.stop()


# ---------------------------------------------------------------------------- SIGTERM, for real

async def test_sigterm_stops_tickloop_record_cleanly(tapes: dict[str, Path], tmp_path: Path) -> None:
    tape = tapes["spot_btcusdt"]
    async with SimServer([tape], speed=5, loop=True) as sim:
        (tmp_path / "config.yaml").write_text(
            "market: {type: spot, symbols: [BTCUSDT]}\n"
            f"endpoints:\n  spot: {{rest: '{sim.base_http}', ws: '{sim.base_ws}'}}\n"
            "logging: {console: off, heartbeat_s: 0.5}\n"
            "book: {min_resync_interval_s: 0.05}\n"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli", "record", "-c", "config.yaml", "--out", "tape.gz",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        log_file = tmp_path / "logs" / "tickloop.jsonl"
        try:
            await asyncio.wait_for(_frames_flowing(log_file, proc), HANG_GUARD_S)
            proc.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(proc.communicate(), HANG_GUARD_S)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, stderr.decode()[-3000:]
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert "stopping" in names and next(e for e in events if e["event"] == "stopping")["reason"] == "stop"
    final = [e for e in events if e["event"] == "stopped"]
    assert len(final) == 1
    assert final[0]["shutdown_ok"] is True
    assert list(final[0]["steps"]) == ["intake", "orders", "journal", "recorder", "services"]
    # the tape is a complete gzip stream (a truncated one raises EOFError) holding what was counted
    with gzip.open(tmp_path / "tape.gz", "rb") as fh:
        raw_lines = fh.read().splitlines()
    frames = list(read_tape(tmp_path / "tape.gz"))
    snapshots = sum(1 for f in frames if f.snapshot_symbol is not None)
    assert len(raw_lines) == len(frames)
    assert final[0]["recorded"] == {"frames": len(frames) - snapshots, "snapshots": snapshots}
    assert len(frames) - snapshots > 0 and snapshots >= 1


async def _frames_flowing(log_file: Path, proc: asyncio.subprocess.Process) -> None:
    while True:
        if proc.returncode is not None:
            raise AssertionError(f"tickloop exited early with {proc.returncode}")
        if log_file.is_file():
            for line in log_file.read_text().splitlines():
                event = json.loads(line)
                if event["event"] == "heartbeat" and event["frames"] > 0:
                    return
        await asyncio.sleep(0.2)

