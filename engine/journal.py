"""SQLite (WAL) journal: signals, order intents, order events, fills, funding, positions, equity.

Durability rules. An intent is committed *before* the venue is called (`record_intent` commits at
once, with everything batched so far), so a crash between journaling and sending leaves a PENDING
intent that `unknown_intents()` returns at start-up for reconciliation. Every other write joins an
open transaction that is committed by `flush()` (call it once per event-loop turn), by the next
intent, or after `max_batch` writes: one commit per turn instead of one per row. With WAL and
synchronous=NORMAL a commit survives a process crash; an OS crash may lose the last commits, never
corrupt the file. Fills are unique per (symbol, trade_id): a duplicate is ignored.

Decimals are stored as TEXT (exact); curve values and signal scores as REAL.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from engine.model import Side
from engine.orders import (
    FundingPaid,
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderRole,
    OrderStatus,
    OrderType,
    TimeInForce,
)

SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE signals (
            id INTEGER PRIMARY KEY, symbol TEXT NOT NULL, ts_ms INTEGER NOT NULL, score REAL,
            threshold REAL, direction TEXT, bundle_id TEXT, feature_set_hash TEXT,
            contributions TEXT)""",
        "CREATE INDEX signals_symbol_ts ON signals (symbol, ts_ms)",
        """CREATE TABLE intents (
            client_order_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, intent TEXT NOT NULL,
            status TEXT NOT NULL, filled_qty TEXT NOT NULL DEFAULT '0', venue_order_id TEXT,
            reason TEXT NOT NULL DEFAULT '', created_ts_ms INTEGER NOT NULL,
            updated_ts_ms INTEGER NOT NULL)""",
        "CREATE INDEX intents_status ON intents (status)",
        """CREATE TABLE order_events (
            id INTEGER PRIMARY KEY, client_order_id TEXT NOT NULL, symbol TEXT NOT NULL,
            kind TEXT NOT NULL, status TEXT NOT NULL, ts_ms INTEGER NOT NULL, detail TEXT)""",
        "CREATE INDEX order_events_cid ON order_events (client_order_id)",
        """CREATE TABLE fills (
            symbol TEXT NOT NULL, trade_id INTEGER NOT NULL, client_order_id TEXT NOT NULL,
            side TEXT NOT NULL, price TEXT NOT NULL, qty TEXT NOT NULL, fee TEXT NOT NULL,
            fee_asset TEXT NOT NULL, liquidity TEXT NOT NULL, ts_ms INTEGER NOT NULL,
            order_complete INTEGER NOT NULL, PRIMARY KEY (symbol, trade_id))""",
        """CREATE TABLE funding (
            symbol TEXT NOT NULL, ts_ms INTEGER NOT NULL, amount TEXT NOT NULL, rate TEXT NOT NULL,
            asset TEXT NOT NULL, PRIMARY KEY (symbol, ts_ms))""",
        """CREATE TABLE positions (
            ts_ms INTEGER NOT NULL, symbol TEXT NOT NULL, qty TEXT NOT NULL, avg_price TEXT NOT NULL,
            realized_pnl TEXT NOT NULL, fees TEXT NOT NULL, funding TEXT NOT NULL,
            PRIMARY KEY (ts_ms, symbol))""",
        """CREATE TABLE equity (
            ts_ms INTEGER PRIMARY KEY, equity REAL NOT NULL, gross_exposure REAL NOT NULL)""",
        """CREATE TABLE marks (
            ts_ms INTEGER NOT NULL, symbol TEXT NOT NULL, price REAL NOT NULL,
            PRIMARY KEY (ts_ms, symbol))""",
    ),
}

_STATUS_OF = {
    OrderAccepted: OrderStatus.NEW,
    OrderCanceled: OrderStatus.CANCELED,
    OrderExpired: OrderStatus.EXPIRED,
    OrderRejected: OrderStatus.REJECTED,
}


class JournalError(Exception):
    """The journal cannot be used as it is (newer schema, duplicate intent id)."""


@dataclass(frozen=True, slots=True)
class IntentRecord:
    intent: OrderIntent
    status: OrderStatus
    filled_qty: Decimal
    venue_order_id: str | None
    reason: str
    created_ts_ms: int
    updated_ts_ms: int


@dataclass(frozen=True, slots=True)
class SignalRecord:
    symbol: str
    ts_ms: int
    score: float
    threshold: float
    direction: str
    bundle_id: str
    feature_set_hash: str
    contributions: dict[str, float]


@dataclass(frozen=True, slots=True)
class PositionRecord:
    ts_ms: int
    symbol: str
    qty: Decimal
    avg_price: Decimal
    realized_pnl: Decimal
    fees: Decimal
    funding: Decimal


@dataclass(frozen=True, slots=True)
class EquityRecord:
    ts_ms: int
    equity: float
    gross_exposure: float


def intent_to_json(intent: OrderIntent) -> str:
    """Return an intent as JSON (Decimals as strings, enums as their values)."""
    # orjson (enums by value, compact): it is written before every order leaves; json.loads
    # reads both this and the spaced text journals written before it
    return orjson.dumps(
        {k: (str(v) if isinstance(v, Decimal) else v) for k, v in _fields(intent).items()},
        option=orjson.OPT_SORT_KEYS,
    ).decode()


def intent_from_json(text: str) -> OrderIntent:
    """Rebuild an OrderIntent from intent_to_json's text."""
    d: dict[str, Any] = json.loads(text)
    for key in ("quantity", "price", "stop_price", "callback_rate_pct"):
        if d.get(key) is not None:
            d[key] = Decimal(d[key])
    d["side"] = Side(d["side"])
    d["type"] = OrderType(d["type"])
    d["role"] = OrderRole(d["role"])
    d["time_in_force"] = TimeInForce(d["time_in_force"])
    return OrderIntent(**d)


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


class Journal:
    """One SQLite file per engine; open with Journal.open(path)."""

    def __init__(self, conn: sqlite3.Connection, max_batch: int = 1000) -> None:
        self._conn = conn
        self._max_batch = max_batch
        self._pending = 0  # writes in the open transaction

    @classmethod
    def open(cls, path: str | Path, max_batch: int = 1000) -> Journal:
        """Open (creating and migrating as needed) the journal at path, in WAL mode."""
        conn = sqlite3.connect(str(path), isolation_level=None)  # transactions are explicit
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        # no automatic checkpoint on the commit path (it can cost milliseconds right when an
        # intent must be durable before its order is sent): checkpoint() runs at quiet moments
        conn.execute("PRAGMA wal_autocheckpoint=0")
        journal = cls(conn, max_batch)
        journal._migrate()
        return journal

    # ------------------------------------------------------------------ schema

    @property
    def schema_version(self) -> int:
        row = self._conn.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0])

    @property
    def journal_mode(self) -> str:
        return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])

    def _migrate(self) -> None:
        conn = self._conn
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            current = 0
        else:
            current = int(row[0])
        if current > SCHEMA_VERSION:
            raise JournalError(
                f"journal schema {current} is newer than this code ({SCHEMA_VERSION})"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute("UPDATE schema_version SET version = ?", (version,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ writes

    def _write(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")
        cursor = self._conn.execute(sql, params)
        self._pending += 1
        if self._pending >= self._max_batch:
            self.flush()
        return cursor

    def flush(self) -> None:
        """Commit the writes batched so far."""
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")
        self._pending = 0

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file without blocking (call when idle)."""
        self.flush()
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def record_intent(self, intent: OrderIntent, ts_ms: int) -> None:
        """Journal intent as PENDING and commit now: call before the venue is called."""
        # With no batch open the INSERT runs in autocommit: committed by the one statement,
        # two fewer round trips into SQLite before the order can leave.
        write = self._conn.execute if not self._conn.in_transaction else self._write
        try:
            write(
                "INSERT INTO intents (client_order_id, symbol, intent, status, created_ts_ms,"
                " updated_ts_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    intent.client_order_id,
                    intent.symbol,
                    intent_to_json(intent),
                    OrderStatus.PENDING.value,
                    ts_ms,
                    ts_ms,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise JournalError(f"intent {intent.client_order_id!r} is already journaled") from exc
        self.flush()

    def mark_unknown(self, client_order_id: str, ts_ms: int, reason: str = "") -> None:
        """Record that sending an intent ended with an unknown outcome (reconcile, never resend)."""
        self._write(
            "UPDATE intents SET status = ?, reason = ?, updated_ts_ms = ? WHERE client_order_id = ?",
            (OrderStatus.UNKNOWN.value, reason, ts_ms, client_order_id),
        )
        self.flush()

    def record_order_event(self, event: OrderEvent) -> bool:
        """Journal one order event; return False for a fill already journaled (ignored)."""
        if isinstance(event, FundingPaid):
            cursor = self._write(
                "INSERT OR IGNORE INTO funding VALUES (?, ?, ?, ?, ?)",
                (event.symbol, event.ts_event_ms, str(event.amount), str(event.rate), event.asset),
            )
            return cursor.rowcount == 1
        if isinstance(event, OrderFilled):
            cursor = self._write(
                "INSERT OR IGNORE INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.symbol,
                    event.trade_id,
                    event.client_order_id,
                    event.side.value,
                    str(event.price),
                    str(event.quantity),
                    str(event.fee),
                    event.fee_asset,
                    event.liquidity.value,
                    event.ts_event_ms,
                    int(event.order_complete),
                ),
            )
            if cursor.rowcount != 1:
                return False
            self._update_intent_fill(event)
            status = OrderStatus.FILLED if event.order_complete else OrderStatus.PARTIALLY_FILLED
            detail: dict[str, Any] = {
                "trade_id": event.trade_id,
                "price": str(event.price),
                "qty": str(event.quantity),
            }
        else:
            status = _STATUS_OF[type(event)]
            detail = {
                k: v
                for k, v in _fields(event).items()
                if k not in ("symbol", "client_order_id", "ts_event_ms")
            }
            venue_id = event.venue_order_id if isinstance(event, OrderAccepted) else None
            reason = getattr(event, "reason", "")
            self._write(
                "UPDATE intents SET status = CASE WHEN status IN ('PENDING','UNKNOWN','NEW')"
                " OR ? != 'NEW' THEN ? ELSE status END, venue_order_id = COALESCE(?, venue_order_id),"
                " reason = ?, updated_ts_ms = ? WHERE client_order_id = ?",
                (
                    status.value,
                    status.value,
                    venue_id,
                    reason,
                    event.ts_event_ms,
                    event.client_order_id,
                ),
            )
        self._write(
            "INSERT INTO order_events (client_order_id, symbol, kind, status, ts_ms, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                event.client_order_id,
                event.symbol,
                type(event).__name__,
                status.value,
                event.ts_event_ms,
                json.dumps(detail, sort_keys=True),
            ),
        )
        return True

    def _update_intent_fill(self, fill: OrderFilled) -> None:
        row = self._conn.execute(
            "SELECT filled_qty FROM intents WHERE client_order_id = ?", (fill.client_order_id,)
        ).fetchone()
        if row is None:
            return  # a fill of an order we never journaled: kept in fills, found by reconciliation
        status = OrderStatus.FILLED if fill.order_complete else OrderStatus.PARTIALLY_FILLED
        self._write(
            "UPDATE intents SET filled_qty = ?, status = ?, updated_ts_ms = ? WHERE client_order_id = ?",
            (
                str(Decimal(row[0]) + fill.quantity),
                status.value,
                fill.ts_event_ms,
                fill.client_order_id,
            ),
        )

    def record_signal(
        self,
        *,
        symbol: str,
        ts_ms: int,
        score: float,
        threshold: float,
        direction: str,
        bundle_id: str,
        feature_set_hash: str,
        contributions: Mapping[str, float] | None = None,
    ) -> None:
        """Journal one model signal with the bundle and feature set that produced it."""
        self._write(
            "INSERT INTO signals (symbol, ts_ms, score, threshold, direction, bundle_id,"
            " feature_set_hash, contributions) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                symbol,
                ts_ms,
                float(score),
                float(threshold),
                direction,
                bundle_id,
                feature_set_hash,
                json.dumps(dict(contributions or {}), sort_keys=True),
            ),
        )

    def record_position(
        self,
        ts_ms: int,
        symbol: str,
        *,
        qty: Decimal,
        avg_price: Decimal,
        realized_pnl: Decimal,
        fees: Decimal,
        funding: Decimal,
    ) -> None:
        """Journal a position snapshot (one per symbol and time; a later write replaces it)."""
        self._write(
            "INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (ts_ms, symbol, str(qty), str(avg_price), str(realized_pnl), str(fees), str(funding)),
        )

    def record_equity(
        self,
        ts_ms: int,
        equity: float,
        gross_exposure: float = 0.0,
        marks: Mapping[str, Decimal | float] | None = None,
    ) -> None:
        """Journal one equity sample and the marks it was valued at."""
        self._write(
            "INSERT OR REPLACE INTO equity VALUES (?, ?, ?)",
            (ts_ms, float(equity), float(gross_exposure)),
        )
        for symbol, price in sorted((marks or {}).items()):
            self._write(
                "INSERT OR REPLACE INTO marks VALUES (?, ?, ?)", (ts_ms, symbol, float(price))
            )

    # ------------------------------------------------------------------ reads

    def _intents(self, where: str = "", params: tuple[Any, ...] = ()) -> list[IntentRecord]:
        rows = self._conn.execute(
            "SELECT intent, status, filled_qty, venue_order_id, reason, created_ts_ms, updated_ts_ms"
            f" FROM intents {where} ORDER BY created_ts_ms, rowid",
            params,
        ).fetchall()
        return [
            IntentRecord(
                intent_from_json(r[0]), OrderStatus(r[1]), Decimal(r[2]), r[3], r[4], r[5], r[6]
            )
            for r in rows
        ]

    def intents(self) -> list[IntentRecord]:
        return self._intents()

    def intent(self, client_order_id: str) -> IntentRecord | None:
        found = self._intents("WHERE client_order_id = ?", (client_order_id,))
        return found[0] if found else None

    def unknown_intents(self) -> list[IntentRecord]:
        """Return intents whose outcome the venue never confirmed (PENDING or UNKNOWN)."""
        return self._intents(
            "WHERE status IN (?, ?)", (OrderStatus.PENDING.value, OrderStatus.UNKNOWN.value)
        )

    def open_intents(self) -> list[IntentRecord]:
        """Return intents that may still be open on the venue."""
        return [r for r in self._intents() if r.status.is_open]

    def order_events(self, client_order_id: str | None = None) -> list[tuple[str, str, int]]:
        """Return (kind, status, ts_ms) of order events, in journal order."""
        where, params = (
            ("WHERE client_order_id = ?", (client_order_id,)) if client_order_id else ("", ())
        )
        sql = f"SELECT kind, status, ts_ms FROM order_events {where} ORDER BY id"
        return [(r[0], r[1], r[2]) for r in self._conn.execute(sql, params)]

    def fills(self, symbol: str | None = None) -> list[OrderFilled]:
        """Return journaled fills in exchange-time order."""
        where, params = ("WHERE symbol = ?", (symbol,)) if symbol else ("", ())
        rows = self._conn.execute(f"SELECT * FROM fills {where} ORDER BY ts_ms, rowid", params)
        return [
            OrderFilled(
                r[0],
                r[2],
                r[1],
                Side(r[3]),
                Decimal(r[4]),
                Decimal(r[5]),
                Decimal(r[6]),
                r[7],
                Liquidity(r[8]),
                r[9],
                bool(r[10]),
            )
            for r in rows
        ]

    def funding(self, symbol: str | None = None) -> list[FundingPaid]:
        where, params = ("WHERE symbol = ?", (symbol,)) if symbol else ("", ())
        rows = self._conn.execute(f"SELECT * FROM funding {where} ORDER BY ts_ms", params)
        return [FundingPaid(r[0], Decimal(r[2]), Decimal(r[3]), r[4], r[1]) for r in rows]

    def signals(self, symbol: str | None = None) -> list[SignalRecord]:
        where, params = ("WHERE symbol = ?", (symbol,)) if symbol else ("", ())
        rows = self._conn.execute(
            "SELECT symbol, ts_ms, score, threshold, direction, bundle_id, feature_set_hash, contributions"
            f" FROM signals {where} ORDER BY ts_ms, id",
            params,
        )
        return [
            SignalRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows
        ]

    def positions(self, symbol: str | None = None) -> list[PositionRecord]:
        """Return position snapshots in time order."""
        where, params = ("WHERE symbol = ?", (symbol,)) if symbol else ("", ())
        rows = self._conn.execute(f"SELECT * FROM positions {where} ORDER BY ts_ms, symbol", params)
        return [PositionRecord(r[0], r[1], *(Decimal(x) for x in r[2:])) for r in rows]

    def equity(self) -> list[EquityRecord]:
        return [EquityRecord(*r) for r in self._conn.execute("SELECT * FROM equity ORDER BY ts_ms")]

    def marks(self, symbol: str) -> list[tuple[int, float]]:
        rows = self._conn.execute(
            "SELECT ts_ms, price FROM marks WHERE symbol = ? ORDER BY ts_ms", (symbol,)
        )
        return [(r[0], r[1]) for r in rows]

    def symbols(self) -> list[str]:
        """Return every symbol with fills or marks."""
        rows = self._conn.execute(
            "SELECT symbol FROM fills UNION SELECT symbol FROM marks ORDER BY 1"
        )
        return [r[0] for r in rows]

    def close(self) -> None:
        """Commit what is batched and close the file."""
        self.flush()
        self._conn.close()
