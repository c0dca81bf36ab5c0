"""What must hold after any number of crashes: the simulator's desk against the engine's journal.

1. none duplicated: at most one order (or algo order) per client id on the simulator;
2. none lost: every journaled intent is on the simulator with the journal's status and filled
   quantity, or journaled REJECTED and absent there; none is left PENDING/UNKNOWN; every
   simulator order with our prefix is journaled;
3. every position on the simulator is covered by a working protective stop there, or the last
   engine run said so (`protection_problem`, REDUCING);
4. the journal's fills are the simulator's fills of our orders (trade id, quantity, price).

The expected values are read from the simulator's own records, never from the engine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.journal import Journal
from engine.model import Market
from exchange.sim.server import SimServer
from exchange.sim.trading.orders import AlgoRecord, OrderRecord

INVARIANTS = ("duplicated", "lost", "unprotected", "fills", "over_protected", "oversold")
SPOT_STOP_TYPES = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT"})
USDM_STOP_TYPES = frozenset({"STOP_MARKET", "STOP"})


@dataclass
class Verdict:
    """Violations (empty when every invariant holds) and what was compared."""

    violations: list[tuple[str, str]] = field(default_factory=list)  # (invariant, what)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def fail(self, invariant: str, text: str) -> None:
        assert invariant in INVARIANTS, invariant
        self.violations.append((invariant, text))

    def of(self, invariant: str) -> list[str]:
        """Return the violations of one invariant (see INVARIANTS)."""
        return [text for kind, text in self.violations if kind == invariant]


def _order_row(o: OrderRecord) -> str:
    return (f"sim order {o.order_id} {o.client_order_id} {o.side} {o.type} {o.status} "
            f"qty={o.orig_qty} exec={o.executed_qty} stop={o.stop_price} list={o.order_list_id} "
            f"fills={[(f.trade_id, str(f.qty), str(f.price)) for f in o.fills]}")  # fmt: skip


def _algo_row(a: AlgoRecord) -> str:
    return (f"sim algo {a.algo_id} {a.client_algo_id} {a.side} {a.order_type} {a.status} "
            f"qty={a.quantity} trigger={a.trigger_price} close={a.close_position} "
            f"order={a.actual_order_id}")  # fmt: skip


def check_invariants(
    sim: SimServer,
    market: Market,
    journal_path: Path,
    last_run_log: list[dict[str, Any]],
    prefix: str = "tl",
) -> Verdict:
    """Compare the simulator's desk with the journal; return every violation found."""
    assert sim.trading is not None
    desk = sim.trading.spot if market is Market.SPOT else sim.trading.futures
    mine = f"{prefix}-"
    orders = [o for o in desk.orders.values() if o.client_order_id.startswith(mine)]
    algos = [a for a in desk.algos.values() if a.client_algo_id.startswith(mine)]
    journal = Journal.open(journal_path)
    try:
        intents = {r.intent.client_order_id: r for r in journal.intents()}
        fills = journal.fills()
        events = {cid: journal.order_events(cid) for cid in intents}
    finally:
        journal.close()
    verdict = Verdict(counts={"sim_orders": len(orders), "sim_algos": len(algos),
                              "intents": len(intents), "fills": len(fills)})  # fmt: skip

    # 1. none duplicated. A triggered algo's order carries the algo's client id: one each.
    for kind, ids, rows in (
        ("order", Counter(o.client_order_id for o in orders if o.algo_id is None), orders),
        ("algo", Counter(a.client_algo_id for a in algos), algos),
    ):
        for cid, n in ids.items():
            if n > 1:
                same = [r for r in rows if getattr(r, "client_order_id", getattr(r, "client_algo_id", ""))
                        == cid]  # fmt: skip
                detail = "; ".join(_order_row(r) if isinstance(r, OrderRecord) else _algo_row(r)
                                   for r in same)  # fmt: skip
                verdict.fail("duplicated", f"duplicated {kind} {cid} x{n}: {detail}")

    # 2. none lost
    by_cid: dict[str, OrderRecord] = {}
    for o in orders:  # the order a client id stands for: the plain order, or a fired algo's
        by_cid.setdefault(o.client_order_id, o)
    algo_by_cid = {a.client_algo_id: a for a in algos}
    for cid, record in intents.items():
        status = record.status.value
        where = (
            f"journal {cid} {record.intent.type.value} {status} filled={record.filled_qty} "
            f"reason={record.reason!r} events={events[cid]}"
        )
        order, algo = by_cid.get(cid), algo_by_cid.get(cid)
        if status in ("PENDING", "UNKNOWN"):
            seen = _order_row(order) if order else _algo_row(algo) if algo else "absent on the sim"
            verdict.fail("lost", f"left {status} after the final reconciliation: {where}; {seen}")
            continue
        if status == "REJECTED":
            if order is not None or algo is not None:
                seen = _order_row(order) if order else _algo_row(algo)  # type: ignore[arg-type]
                verdict.fail("lost", f"journaled REJECTED but placed: {where}; {seen}")
            continue
        if order is None and algo is None:
            verdict.fail("lost", f"journaled {status} but not on the sim: {where}")
            continue
        sim_status, sim_filled = _sim_state(order, algo)
        if sim_status != status or sim_filled != record.filled_qty:
            seen = _order_row(order) if order else _algo_row(algo)  # type: ignore[arg-type]
            verdict.fail("lost", f"status differs: {where}; {seen}")
    for cid in sorted({*by_cid, *algo_by_cid} - set(intents)):
        seen = _order_row(by_cid[cid]) if cid in by_cid else _algo_row(algo_by_cid[cid])
        verdict.fail("lost", f"on the sim but not journaled: {seen}")

    # 4. fills equal, by trade id
    sim_fills = {(o.client_order_id, f.trade_id, f.qty, f.price) for o in orders for f in o.fills}
    journal_fills = {(f.client_order_id, f.trade_id, f.quantity, f.price) for f in fills}
    for row in sorted(sim_fills - journal_fills, key=lambda r: r[1]):
        verdict.fail("fills", f"fill on the sim missing from the journal: {row}")
    for row in sorted(journal_fills - sim_fills, key=lambda r: r[1]):
        verdict.fail("fills", f"journal fill the sim does not have: {row}")
    verdict.counts["sim_fills"] = len(sim_fills)

    # 3. every position protected
    _check_protection(verdict, market, orders, algos, last_run_log)
    return verdict


def desk_dump(sim: SimServer, market: Market) -> str:
    """Return every order and algo order of the market's desk, one per line."""
    assert sim.trading is not None
    desk = sim.trading.spot if market is Market.SPOT else sim.trading.futures
    rows = [_order_row(o) + f" algo_id={o.algo_id}" for o in desk.orders.values()]
    rows += [_algo_row(a) for a in desk.algos.values()]
    return "\n".join(rows) + "\n"


def _sim_state(order: OrderRecord | None, algo: AlgoRecord | None) -> tuple[str, Decimal]:
    if order is not None:
        status = "EXPIRED" if order.status == "EXPIRED_IN_MATCH" else order.status
        return status, order.executed_qty
    assert algo is not None
    status = {"TRIGGERING": "NEW", "FINISHED": "FILLED", "TRIGGERED": "NEW"}.get(
        algo.status, algo.status
    )
    return status, Decimal(0)


def _check_protection(
    verdict: Verdict,
    market: Market,
    orders: list[OrderRecord],
    algos: list[AlgoRecord],
    last_run_log: list[dict[str, Any]],
) -> None:
    if market is Market.SPOT:
        _check_never_oversold(verdict, orders)
    positions: dict[str, Decimal] = {o.symbol: Decimal(0) for o in orders}
    for o in orders:
        for f in o.fills:
            signed = f.qty if o.side == "BUY" else -f.qty
            positions[o.symbol] = positions.get(o.symbol, Decimal(0)) + signed
    excused = _excused(last_run_log)
    for symbol, qty in sorted(positions.items()):
        verdict.counts[f"position_{symbol}"] = int(qty * 10**8)
        _check_not_over_protected(verdict, market, symbol, qty, orders, algos)
        if qty == 0:
            continue
        if market is Market.SPOT and qty < 0:
            continue  # _check_never_oversold reports it
        closing = "SELL" if qty > 0 else "BUY"
        if market is Market.SPOT:
            covered = sum((o.orig_qty - o.executed_qty for o in orders
                           if o.symbol == symbol and o.is_open and o.side == closing
                           and o.type in SPOT_STOP_TYPES), Decimal(0))  # fmt: skip
            whole = False
        else:
            stops = [a for a in algos if a.symbol == symbol and a.is_open and a.side == closing
                     and a.order_type in USDM_STOP_TYPES]  # fmt: skip
            whole = any(a.close_position for a in stops)
            covered = sum((a.quantity for a in stops), Decimal(0))
        if whole or covered >= abs(qty):
            verdict.notes.append(
                f"{symbol}: position {qty} protected ({covered}{' closePosition' if whole else ''})"
            )
            continue
        if excused:
            verdict.notes.append(f"{symbol}: position {qty}, stops cover {covered}; the engine said: "
                                 + "; ".join(excused))  # fmt: skip
            continue
        working = "; ".join(_order_row(o) for o in orders if o.symbol == symbol and o.is_open)
        working += "; ".join(_algo_row(a) for a in algos if a.symbol == symbol and a.is_open)
        verdict.fail("unprotected", f"{symbol}: position {qty} unprotected (stops cover {covered}); working: "
                     f"{working or 'nothing'}")  # fmt: skip


def _check_never_oversold(verdict: Verdict, orders: list[OrderRecord]) -> None:
    """On spot the engine's coins, bought by its own orders, never go below zero, fill by fill."""
    by_symbol: dict[str, list[tuple[int, int, Decimal, OrderRecord]]] = {}
    for o in orders:
        for f in o.fills:
            signed = f.qty if o.side == "BUY" else -f.qty
            by_symbol.setdefault(o.symbol, []).append((f.ts_ms, f.trade_id, signed, o))
    for symbol, fills in sorted(by_symbol.items()):
        held = Decimal(0)
        for ts_ms, trade_id, signed, order in sorted(fills, key=lambda r: (r[0], r[1])):
            held += signed
            if held < 0:
                verdict.fail(
                    "oversold",
                    f"{symbol}: holding {held} after trade {trade_id} at {ts_ms} of "
                    f"{order.client_order_id} (sold more than the engine bought); orders: "
                    + "; ".join(_order_row(o) for o in orders if o.symbol == symbol),
                )
                break


def _check_not_over_protected(
    verdict: Verdict,
    market: Market,
    symbol: str,
    qty: Decimal,
    orders: list[OrderRecord],
    algos: list[AlgoRecord],
) -> None:
    """A stop for more than the position sells what is not ours (spot) or opens the other side."""
    if market is Market.SPOT:
        stops: list[OrderRecord | AlgoRecord] = [
            o for o in orders if o.symbol == symbol and o.is_open and o.type in SPOT_STOP_TYPES
        ]
        working = sum((o.orig_qty - o.executed_qty for o in stops if isinstance(o, OrderRecord)
                       and o.side == "SELL"), Decimal(0))  # fmt: skip
        bought = max(qty, Decimal(0))
    else:
        stops = [a for a in algos if a.symbol == symbol and a.is_open and not a.close_position
                 and not a.reduce_only and a.order_type in USDM_STOP_TYPES]  # fmt: skip
        working = sum((a.quantity for a in stops if isinstance(a, AlgoRecord)), Decimal(0))
        bought = Decimal(0)  # reduce-only and closePosition stops cannot open a position
        closing = [a for a in algos if a.symbol == symbol and a.is_open and a.reduce_only
                   and a.order_type in USDM_STOP_TYPES]  # fmt: skip
        if sum((a.quantity for a in closing), Decimal(0)) > abs(qty):
            # harmless until a new position opens: then it closes that one at this level
            verdict.notes.append(f"{symbol}: reduce-only stops for more than the position {qty}: "
                                 + "; ".join(_algo_row(a) for a in closing))  # fmt: skip
    if working > bought:
        rows = "; ".join(
            _order_row(o) if isinstance(o, OrderRecord) else _algo_row(o) for o in stops
        )
        verdict.fail("over_protected", f"{symbol}: stops working for {working} but the position is {qty} "
                     f"(a trigger would sell what the engine does not hold): {rows}")  # fmt: skip


def _excused(log: list[dict[str, Any]]) -> list[str]:
    """Return what the last run logged about missing protection (problems, REDUCING)."""
    said = []
    for e in log:
        if e.get("event") == "protection_problem":
            said.append(f"protection_problem {e.get('problem')}")
        elif e.get("event") == "trading_state" and e.get("trigger") == "UNPROTECTED":
            said.append(f"trading_state {e.get('to_state')} UNPROTECTED {e.get('detail', '')}")
    return said
