"""The soak's invariants, read from the simulator's desk (the exchange's truth) and the engine's journal.

Checked every minute of market time:

* no order duplicated: a client id placed on the exchange at most once (plain orders and algo
  orders); a trade journaled at most once; no journaled fill the exchange never made; no exit
  sent again under a new id (exits working for more than the position they close);
* no order lost: every order on the exchange was journaled before it was sent; once settled,
  every journaled order has the exchange's status and filled quantity, and every exchange fill is
  in the journal;
* every open position has a protective stop working on the exchange (spot: SELL stop orders
  covering the base asset bought; USDⓈ-M: an opposite STOP algo order covering the position);
* the portfolio equals the exchange's account: spot balances and USDⓈ-M positions recomputed here
  from the journal's fills (a separate, simple fold), and the engine's own ledger when in reach.

An engine catches up after faults (user-stream loss, a held answer, a 418 ban), so a mismatch is a
violation only once it has lasted `grace_market_s` of market time AND `grace_wall_s` of wall time
(some engine limits are wall-clock: the REST timeout). `final_check` allows no grace.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from engine.journal import IntentRecord
from engine.model import Market
from engine.orders import OrderFilled, OrderRole, OrderStatus
from exchange.sim.server import SimServer
from exchange.sim.trading.desk import Desk

ZERO = Decimal(0)
_STATUS = {s.value: s for s in OrderStatus}
_STOP_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT")  # spot wire types of a protective stop
_ALGO_STOPS = ("STOP_MARKET", "STOP")
_WORKING = (OrderStatus.PENDING, OrderStatus.UNKNOWN, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)

JournalRows = tuple[list[IntentRecord], list[OrderFilled]]
Finding = tuple[str, str, str, bool]  # kind, key, detail, strict (no grace)


@dataclass(frozen=True)
class Violation:
    kind: str  # duplicated | lost | unprotected | account | book
    key: str
    detail: str
    server_ms: int


@dataclass
class Checker:
    """Per-minute invariant checks of one market on one simulator; collects violations."""

    sim: SimServer
    market: Market
    symbols: tuple[str, ...]
    prefix: str = "tl-"
    grace_market_s: float = 300.0
    grace_wall_s: float = 20.0
    violations: list[Violation] = field(default_factory=list)
    checks: int = 0
    _initial: dict[str, Decimal] = field(default_factory=dict)
    _pending: dict[tuple[str, str], tuple[float, int, str]] = field(default_factory=dict)
    _reported: set[tuple[str, str]] = field(default_factory=set)
    # every mismatch ever seen, healed within the grace or not: (kind, key) -> first server ms
    symptoms: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        desk = self.desk
        self._initial = {a: b.total for a, b in desk.venue.balances().items()}
        self._base = {s: desk.instruments[s].base_asset for s in self.symbols}
        self._quote = {s: desk.instruments[s].quote_asset for s in self.symbols}

    @property
    def desk(self) -> Desk:
        assert self.sim.trading is not None
        return self.sim.trading.spot if self.market is Market.SPOT else self.sim.trading.futures

    # -- the check ---------------------------------------------------------------------------------
    def findings(
        self, rows: JournalRows, engine: dict[str, Decimal] | None = None
    ) -> list[Finding]:
        """Return every mismatch now, recording nothing: (kind, key, detail, strict)."""
        intents, fills = rows
        return [*self._duplicates(fills), *self._stacked_exits(intents), *self._lost(intents, fills),
                *self._protection(), *self._account(fills, engine)]  # fmt: skip

    def check(
        self, rows: JournalRows, engine: dict[str, Decimal] | None = None, *, final: bool = False
    ) -> list[Violation]:
        """Run every check once; return the violations found now (also kept in `violations`)."""
        self.checks += 1
        return self._settle(self.findings(rows, engine), final)

    def record_now(self, kind: str, key: str, detail: str) -> None:
        """Record a violation found elsewhere (a book comparison), strict."""
        self._settle([(kind, key, detail, True)], False, forget=False)

    def _settle(self, found: list[Finding], final: bool, forget: bool = True) -> list[Violation]:
        now_wall, now_ms = time.monotonic(), self.sim.server_time_ms()
        new: list[Violation] = []
        current = set()
        for kind, key, detail, strict in found:
            ident = (kind, key)
            current.add(ident)
            self.symptoms.setdefault(ident, now_ms)
            first_wall, first_ms, _ = self._pending.setdefault(ident, (now_wall, now_ms, detail))
            due = (now_wall - first_wall >= self.grace_wall_s
                   and now_ms - first_ms >= self.grace_market_s * 1000)  # fmt: skip
            if (strict or final or due) and ident not in self._reported:
                self._reported.add(ident)
                violation = Violation(kind, key, detail, now_ms)
                self.violations.append(violation)
                new.append(violation)
        if forget:
            for ident in [i for i in self._pending if i not in current]:
                del self._pending[ident]  # healed within the grace
        return new

    # -- duplicated ---------------------------------------------------------------------------------
    def _placements(self) -> Counter[str]:
        desk = self.desk
        placed = Counter(o.client_order_id for o in desk.orders.values() if o.algo_id is None)
        placed.update(a.client_algo_id for a in desk.algos.values())
        return placed

    def _duplicates(self, fills: list[OrderFilled]) -> list[Finding]:
        out = []
        for cid, n in self._placements().items():
            if n > 1:
                out.append(("duplicated", cid, f"placed {n} times on the exchange", True))
        journaled = Counter((f.client_order_id, f.trade_id) for f in fills)
        for (cid, trade_id), n in journaled.items():
            if n > 1:
                out.append(("duplicated", f"{cid}#{trade_id}", f"fill journaled {n} times", True))
        exchange = self._exchange_fills()
        for f in fills:
            if (f.client_order_id, f.trade_id) not in exchange:
                out.append(("duplicated", f"{f.client_order_id}#{f.trade_id}",
                            "journaled fill the exchange never made", True))  # fmt: skip
        return out

    def _stacked_exits(self, intents: list[IntentRecord]) -> list[Finding]:
        """The same exit sent again under a new id: exits working beyond the position they close."""
        positions = self.exchange_positions()
        out = []
        for symbol in self.symbols:
            held = positions.get(symbol, ZERO)
            closing = "SELL" if held > 0 else "BUY"
            working = sum((r.intent.quantity - r.filled_qty for r in intents
                           if r.intent.symbol == symbol and r.intent.role is OrderRole.EXIT
                           and r.status in _WORKING and r.intent.side.value == closing), ZERO)  # fmt: skip
            if working > abs(held) + self.desk.instruments[symbol].step_size:
                out.append(("duplicated", f"{symbol} exits",
                            f"exits working for {working}, position {held}", False))  # fmt: skip
        return out

    def _exchange_fills(self) -> dict[tuple[str, int], Decimal]:
        return {(o.client_order_id, f.trade_id): f.qty
                for o in self.desk.orders.values() for f in o.fills}  # fmt: skip

    # -- lost ---------------------------------------------------------------------------------------
    def _exchange_status(self) -> dict[str, tuple[OrderStatus, Decimal]]:
        """Return client id -> (status, filled) as the exchange reports our orders."""
        desk = self.desk
        out: dict[str, tuple[OrderStatus, Decimal]] = {}
        for algo in desk.algos.values():
            if algo.actual_order_id is None:
                status = {"NEW": OrderStatus.NEW, "TRIGGERING": OrderStatus.NEW}.get(
                    algo.status, _STATUS.get(algo.status, OrderStatus.EXPIRED)
                )
                out[algo.client_algo_id] = (status, ZERO)
        for order in desk.orders.values():  # a triggered algo's order reports under its algo id
            out[order.client_order_id] = (_STATUS[order.status], order.executed_qty)
        return out

    def _lost(self, intents: list[IntentRecord], fills: list[OrderFilled]) -> list[Finding]:
        out = []
        ours = {r.intent.client_order_id: r for r in intents}
        for cid in self._placements():
            if cid.startswith(self.prefix) and cid not in ours:
                out.append(
                    (
                        "lost",
                        cid,
                        "on the exchange, never journaled (intent not written first)",
                        True,
                    )
                )
        exchange = self._exchange_status()
        for cid, record in ours.items():
            seen = exchange.get(cid)
            if seen is None:
                if record.status is not OrderStatus.REJECTED:
                    out.append(
                        (
                            "lost",
                            cid,
                            f"journal says {record.status.value}, the exchange has no such order",
                            False,
                        )
                    )
                continue
            status, filled = seen
            if record.status is not status or record.filled_qty != filled:
                out.append(("lost", cid, (f"journal {record.status.value} {record.filled_qty}, "
                                         f"exchange {status.value} {filled}"), False))  # fmt: skip
        journaled = {(f.client_order_id, f.trade_id) for f in fills}
        for key in self._exchange_fills():
            if key[0].startswith(self.prefix) and key not in journaled:
                out.append(
                    ("lost", f"{key[0]}#{key[1]}", "exchange fill missing from the journal", False)
                )
        return out

    # -- protected ----------------------------------------------------------------------------------
    def exchange_positions(self) -> dict[str, Decimal]:
        """Return the exchange's open position per symbol (spot: base bought since the start)."""
        desk = self.desk
        if self.market is Market.USDM:
            return {s: p.qty for s, p in desk.venue.positions().items() if p.qty != 0}
        balances = desk.venue.balances()
        out = {}
        for symbol in self.symbols:
            base = self._base[symbol]
            held = (balances[base].total if base in balances else ZERO) - self._initial.get(
                base, ZERO
            )
            if held != 0:
                out[symbol] = held
        return out

    def _stop_cover(self, symbol: str, qty: Decimal) -> Decimal:
        desk = self.desk
        closing = "SELL" if qty > 0 else "BUY"
        if self.market is Market.SPOT:
            return sum((o.orig_qty - o.executed_qty for o in desk.open_orders(symbol)
                        if o.type in _STOP_TYPES and o.side == closing), ZERO)  # fmt: skip
        cover = ZERO
        for algo in desk.open_algos(symbol):
            if algo.order_type in _ALGO_STOPS and algo.side == closing:
                cover += abs(qty) if algo.close_position else algo.quantity
        return cover

    def _protection(self) -> list[Finding]:
        out = []
        for symbol, qty in self.exchange_positions().items():
            step = self.desk.instruments[symbol].step_size
            if abs(qty) < step:
                continue  # dust below one lot cannot be sold, nor protected
            if self.market is Market.SPOT and qty < 0:
                out.append(
                    (
                        "unprotected",
                        symbol,
                        f"spot position {qty}: sold base it never bought",
                        False,
                    )
                )
                continue
            cover = self._stop_cover(symbol, qty)
            if cover < abs(qty):
                out.append(("unprotected", symbol, f"position {qty}, stops cover {cover}", False))
        return out

    # -- account ------------------------------------------------------------------------------------
    def journal_account(self, fills: list[OrderFilled]) -> dict[str, Decimal]:
        """Fold the journal's fills into what the account must hold (independent of the engine)."""
        if self.market is Market.USDM:
            positions: dict[str, Decimal] = {}
            for f in fills:
                signed = f.quantity if f.side.value == "BUY" else -f.quantity
                positions[f"position:{f.symbol}"] = (
                    positions.get(f"position:{f.symbol}", ZERO) + signed
                )
            return positions
        balances = {
            a: v
            for a, v in self._initial.items()
            if a in set(self._base.values()) | set(self._quote.values())
        }
        for f in fills:
            base, quote = self._base[f.symbol], self._quote[f.symbol]
            sign = 1 if f.side.value == "BUY" else -1
            balances[base] = balances.get(base, ZERO) + sign * f.quantity
            balances[quote] = balances.get(quote, ZERO) - sign * f.price * f.quantity
            balances[f.fee_asset] = balances.get(f.fee_asset, ZERO) - f.fee
        return balances

    def exchange_account(self) -> dict[str, Decimal]:
        if self.market is Market.USDM:
            account = {f"position:{s}": q for s, q in self.exchange_positions().items()}
            account["wallet:USDT"] = self.desk.venue.account.wallet  # type: ignore[attr-defined]
            return account
        balances = self.desk.venue.balances()
        assets = set(self._base.values()) | set(self._quote.values())
        return {a: balances[a].total if a in balances else ZERO for a in assets}

    def _account(
        self, fills: list[OrderFilled], engine: dict[str, Decimal] | None
    ) -> list[Finding]:
        out = []
        exchange = self.exchange_account()
        for source, held in (("journal", self.journal_account(fills)), ("engine", engine)):
            if held is None:
                continue
            # the wallet (realized PnL, fees, funding) is compared with the engine's ledger only
            for key in sorted(set(held) | {k for k in exchange if not k.startswith("wallet:")}):
                ours, theirs = held.get(key, ZERO), exchange.get(key, ZERO)
                if ours != theirs:
                    out.append(
                        ("account", f"{source}:{key}", f"{source} {ours}, exchange {theirs}", False)
                    )
        return out

    def summary(self) -> dict[str, int]:
        return dict(Counter(v.kind for v in self.violations))
