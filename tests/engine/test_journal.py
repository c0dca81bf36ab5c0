"""Journal on real SQLite files in tmp_path: WAL, schema versions, intents before send, fill dedup."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from decimal import Decimal as D

import pytest

from engine.journal import SCHEMA_VERSION, Journal, JournalError
from engine.model import Side
from engine.orders import (
    FundingPaid,
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderRole,
    OrderStatus,
    OrderType,
    TimeInForce,
)

STOP = OrderIntent(
    "sl-1",
    "BTCUSDT",
    Side.SELL,
    OrderType.STOP_LIMIT,
    D("0.010"),
    role=OrderRole.STOP_LOSS,
    price=D("59000.00"),
    stop_price=D("59100.00"),
    time_in_force=TimeInForce.GTC,
    reduce_only=True,
    parent_id="entry-1",
)
ENTRY = OrderIntent(
    "entry-1", "BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.010"), price=D("60000.10")
)


def fill(trade_id: int, qty: str, complete: bool, ts: int = 2000) -> OrderFilled:
    return OrderFilled(
        "BTCUSDT",
        "entry-1",
        trade_id,
        Side.BUY,
        D("60000.10"),
        D(qty),
        D("0.0006"),
        "USDT",
        Liquidity.MAKER,
        ts,
        complete,
    )


def test_wal_mode_and_schema_version(tmp_path):
    path = tmp_path / "j.sqlite"
    j = Journal.open(path)
    assert j.journal_mode == "wal" and j.schema_version == SCHEMA_VERSION == 1
    j.close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "schema_version",
        "signals",
        "intents",
        "order_events",
        "fills",
        "funding",
        "positions",
        "equity",
        "marks",
    } <= tables
    raw.execute("UPDATE schema_version SET version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(JournalError, match="newer"):
        Journal.open(path)


def test_reopening_does_not_migrate_twice(tmp_path):
    path = tmp_path / "j.sqlite"
    j = Journal.open(path)
    j.record_intent(ENTRY, 1000)
    j.close()
    j = Journal.open(path)
    assert j.schema_version == 1 and [r.intent for r in j.intents()] == [ENTRY]
    j.close()


def test_intent_is_durable_before_the_venue_call(tmp_path):
    """A crash right after record_intent (no flush, no close) leaves a PENDING intent."""
    path = tmp_path / "j.sqlite"
    j = Journal.open(path)
    j.record_signal(
        symbol="BTCUSDT",
        ts_ms=999,
        score=0.8,
        threshold=0.6,
        direction="BUY",
        bundle_id="b1",
        feature_set_hash="f1",
        contributions={"rsi_14": 0.2},
    )
    j.record_intent(STOP, 1000)
    # another process sees it at once: committed, not buffered (the first connection is never closed)
    other = Journal.open(path)
    [unknown] = other.unknown_intents()
    assert unknown.intent == STOP and unknown.status is OrderStatus.PENDING
    assert unknown.created_ts_ms == 1000
    assert other.signals()[0].contributions == {"rsi_14": 0.2}
    with pytest.raises(JournalError):
        j.record_intent(STOP, 1001)
    other.close()


def test_an_intent_with_no_batch_open_is_durable_too(tmp_path):
    """record_intent outside a batch (the usual case: the signal is journaled after the send)."""
    path = tmp_path / "j.sqlite"
    j = Journal.open(path)
    j.record_intent(STOP, 1000)
    other = Journal.open(path)
    [unknown] = other.unknown_intents()
    assert unknown.intent == STOP and unknown.status is OrderStatus.PENDING
    with pytest.raises(JournalError):
        j.record_intent(STOP, 1001)
    j.record_signal(symbol="BTCUSDT", ts_ms=1001, score=0.8, threshold=0.6, direction="BUY",
                    bundle_id="b1", feature_set_hash="f1")  # fmt: skip
    assert other.signals() == []  # batched: not committed until the next flush
    j.flush()
    assert len(other.signals()) == 1
    other.close()


def test_order_events_move_intent_status_and_fills_are_deduplicated(tmp_path):
    j = Journal.open(tmp_path / "j.sqlite")
    j.record_intent(ENTRY, 1000)
    j.record_intent(STOP, 1000)
    assert j.record_order_event(OrderAccepted("BTCUSDT", "entry-1", "77", 1001))
    assert j.record_order_event(fill(5, "0.004", False))
    assert not j.record_order_event(fill(5, "0.004", False))  # same trade id: ignored
    assert j.record_order_event(fill(6, "0.006", True, ts=2001))
    j.record_order_event(OrderRejected("BTCUSDT", "sl-1", "WOULD_TRIGGER_IMMEDIATELY", "...", 1002))
    j.flush()
    entry = j.intent("entry-1")
    assert entry is not None
    assert (entry.status, entry.filled_qty, entry.venue_order_id) == (
        OrderStatus.FILLED,
        D("0.010"),
        "77",
    )
    assert j.intent("sl-1").status is OrderStatus.REJECTED
    assert j.unknown_intents() == [] and j.open_intents() == []
    assert [f.trade_id for f in j.fills()] == [5, 6]
    assert j.fills()[0] == fill(5, "0.004", False)
    assert j.order_events("entry-1") == [
        ("OrderAccepted", "NEW", 1001),
        ("OrderFilled", "PARTIALLY_FILLED", 2000),
        ("OrderFilled", "FILLED", 2001),
    ]
    j.close()


def test_unknown_outcome_and_late_accept(tmp_path):
    j = Journal.open(tmp_path / "j.sqlite")
    j.record_intent(ENTRY, 1000)
    j.mark_unknown("entry-1", 1005, "timeout")
    assert [(r.status, r.reason) for r in j.unknown_intents()] == [(OrderStatus.UNKNOWN, "timeout")]
    j.record_order_event(fill(1, "0.010", True))
    j.record_order_event(OrderAccepted("BTCUSDT", "entry-1", "9", 1001))  # arrives after the fill
    assert j.intent("entry-1").status is OrderStatus.FILLED
    j.record_order_event(OrderCanceled("BTCUSDT", "nobody", 3000))  # never journaled: kept as event
    assert j.order_events("nobody") == [("OrderCanceled", "CANCELED", 3000)]
    j.close()


def test_funding_positions_equity_and_marks_round_trip(tmp_path):
    path = tmp_path / "j.sqlite"
    j = Journal.open(path, max_batch=3)
    paid = FundingPaid("BTCUSDT", D("-0.0404"), D("0.0002"), "USDT", 28_800_000)
    assert j.record_order_event(paid) and not j.record_order_event(paid)
    j.record_position(
        5,
        "BTCUSDT",
        qty=D("-0.5"),
        avg_price=D("100.1"),
        realized_pnl=D(3),
        fees=D("0.1"),
        funding=D("-0.0404"),
    )
    for ts, eq in ((0, 1000.0), (60_000, 1010.5)):
        j.record_equity(ts, eq, 50.0, {"BTCUSDT": D("100.2"), "ETHUSDT": 3.5})
    j.close()
    j = Journal.open(path)
    assert j.funding() == [paid]
    [pos] = j.positions("BTCUSDT")
    assert (pos.ts_ms, pos.qty, pos.avg_price, pos.funding) == (
        5,
        D("-0.5"),
        D("100.1"),
        D("-0.0404"),
    )
    assert [(e.ts_ms, e.equity, e.gross_exposure) for e in j.equity()] == [
        (0, 1000.0, 50.0),
        (60_000, 1010.5, 50.0),
    ]
    assert j.marks("BTCUSDT") == [(0, 100.2), (60_000, 100.2)]
    assert j.symbols() == ["BTCUSDT", "ETHUSDT"]
    j.close()


def test_process_killed_after_record_intent_leaves_a_pending_intent(tmp_path):
    """A real crash (os._exit, nothing closed) between journaling and sending; batched writes that
    were never flushed are lost, the intent is not."""
    path = tmp_path / "j.sqlite"
    script = f"""
import os
from decimal import Decimal
from engine.journal import Journal
from engine.model import Side
from engine.orders import OrderIntent, OrderType
j = Journal.open({str(path)!r})
j.record_intent(OrderIntent("crash-1", "BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.5")), 1000)
j.record_equity(1000, 123.0)  # batched, never flushed
os._exit(9)  # the venue call would have come here
"""
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 9, result.stderr
    j = Journal.open(path)
    assert [(r.intent.client_order_id, r.status) for r in j.unknown_intents()] == [
        ("crash-1", OrderStatus.PENDING)
    ]
    assert j.equity() == []
    j.close()


def test_the_write_ahead_log_is_folded_in_only_by_checkpoint(tmp_path):
    """No automatic checkpoint on the commit path; checkpoint() moves committed rows to the file."""
    path = tmp_path / "j.sqlite"
    j = Journal.open(path)
    j.checkpoint()  # the schema into the file
    j.record_intent(ENTRY, 1000)

    def rows_in_database_file() -> int:
        # immutable=1 reads the database file alone, ignoring the write-ahead log
        with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as conn:
            return conn.execute("SELECT COUNT(*) FROM intents").fetchone()[0]

    assert j._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert rows_in_database_file() == 0  # committed, but only in the log so far
    j.checkpoint()
    assert rows_in_database_file() == 1
    j.close()
