"""Start-up on a real Binance account: check the key, set the futures account up, reconcile orders.

Order of the steps follows the API reference checklist (§11.2): server time, key permissions,
USDⓈ-M one-way mode / leverage / margin type, then — once the user stream is live — every order
the journal left working is queried by client id (fills missed while the engine was down are
folded once, by trade id), every open order and algo order on the venue is matched to the
journal, and the account (balances, positions) is read last so that it already contains what the
reconciliation found. Nothing here decides about protection: `engine.live_start` does, with the
risk gate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import structlog

from engine.clock import Clock
from engine.journal import Journal
from engine.model import Market
from engine.orders import OrderFilled, OrderStatus
from exchange.base import Balance, VenuePosition
from exchange.binance.order_manager import OrderManager
from exchange.binance.orders import order_request
from exchange.binance.rest import BinanceRest
from exchange.errors import ExchangeError, Fatal, Rejected, Retryable, UnknownOutcome

log = structlog.get_logger("tickloop.binance.startup")
T = TypeVar("T")

API_RESTRICTIONS_PATH = "/sapi/v1/account/apiRestrictions"
MARGIN_TYPE_ALREADY_SET = -4046
LEVERAGE_UNCHANGED_WITH_POSITION = -4161


class StartupRefused(Fatal):
    """The account cannot be traded safely as configured; the message says what to change."""


class WithdrawalsEnabled(StartupRefused):
    """The API key may withdraw funds: never trade with it."""


@dataclass(slots=True)
class StartupReport:
    """What start-up reconciliation found: counts for the log and mismatches for an alert."""

    recovered_unknown: int = 0
    refreshed: list[str] = field(default_factory=list)  # journal orders queried by client id
    adopted: list[str] = field(default_factory=list)  # venue orders of ours the journal lacked
    foreign: list[str] = field(default_factory=list)  # venue orders we did not place
    mismatches: list[str] = field(default_factory=list)


async def refuse_withdrawal_keys(spot_rest: BinanceRest) -> None:
    """Raise StartupRefused when the key may withdraw (live trading never needs that).

    apiRestrictions lives on the spot host for every key, futures keys included.
    """
    body = await spot_rest.get(API_RESTRICTIONS_PATH, signed=True, weight=1)
    if not isinstance(body, dict) or "enableWithdrawals" not in body:
        raise StartupRefused("the key's permissions could not be read (apiRestrictions)")
    if body["enableWithdrawals"]:
        raise WithdrawalsEnabled(
            "the API key allows withdrawals: edit it on Binance and untick 'Enable Withdrawals' "
            "(and restrict it to this server's IP) before trading live"
        )


async def configure_futures(
    rest: BinanceRest, symbols: Iterable[str], leverage: int, margin_type: str
) -> None:
    """Put the USDⓈ-M account in one-way mode and set each symbol's leverage and margin type."""
    dual = await rest.get("/fapi/v1/positionSide/dual", signed=True, weight=30)
    if isinstance(dual, dict) and dual.get("dualSidePosition") in (True, "true"):
        try:
            await rest.post("/fapi/v1/positionSide/dual", {"dualSidePosition": "false"},
                            signed=True, weight=1)  # fmt: skip
        except Rejected as exc:
            raise StartupRefused(
                f"the account is in hedge mode and cannot switch to one-way ({exc.message}): "
                "close its positions and orders, or switch position mode on Binance"
            ) from exc
        log.info("position_mode_set", mode="one-way")
    for symbol in symbols:
        try:
            await rest.post("/fapi/v1/leverage", {"symbol": symbol, "leverage": leverage},
                            signed=True, weight=1)  # fmt: skip
        except Rejected as exc:
            if exc.code != LEVERAGE_UNCHANGED_WITH_POSITION:
                raise
            log.warning("leverage_kept", symbol=symbol, reason=exc.message)
        try:
            await rest.post("/fapi/v1/marginType", {"symbol": symbol, "marginType": margin_type},
                            signed=True, weight=1)  # fmt: skip
        except Rejected as exc:
            if exc.code != MARGIN_TYPE_ALREADY_SET:
                raise
    log.info("futures_configured", leverage=leverage, margin_type=margin_type)


async def read_account(
    rest: BinanceRest,
) -> tuple[dict[str, Balance], dict[str, VenuePosition]]:
    """Read balances and (USDⓈ-M) non-zero one-way positions by REST."""
    if rest.market is Market.SPOT:
        body = await rest.get("/api/v3/account", {"omitZeroBalances": "true"}, signed=True,
                              weight=20)  # fmt: skip
        balances = {
            str(b["asset"]): Balance(str(b["asset"]), Decimal(str(b["free"])), Decimal(str(b["locked"])))
            for b in body.get("balances", ())
        }
        return balances, {}
    body = await rest.get("/fapi/v3/account", signed=True, weight=5)
    balances = {
        str(a["asset"]): Balance(str(a["asset"]), Decimal(str(a["walletBalance"])), Decimal(0))
        for a in body.get("assets", ())
        if Decimal(str(a.get("walletBalance", "0"))) != 0
    }
    rows = await rest.get("/fapi/v3/positionRisk", signed=True, weight=5)
    positions = {}
    for row in rows or ():
        qty = Decimal(str(row.get("positionAmt", "0")))
        if qty != 0 and row.get("positionSide", "BOTH") == "BOTH":
            symbol = str(row["symbol"])
            positions[symbol] = VenuePosition(symbol, qty, Decimal(str(row.get("entryPrice", "0"))))
    return balances, positions


async def reconcile_orders(
    manager: OrderManager,
    journal: Journal,
    rest: BinanceRest,
    symbols: Iterable[str],
    ts_ms: int,
) -> StartupReport:
    """Bring the manager level with the venue for every order the journal or the venue knows."""
    report = StartupReport()
    market = rest.market
    report.recovered_unknown = len(journal.unknown_intents())
    await manager.recover(ts_ms)
    fills = _fills_by_order(journal.fills())
    for record in journal.open_intents():
        intent = record.intent
        cid = intent.client_order_id
        if manager.tracked(cid) is not None:
            continue  # recover() just settled it
        known = fills.get(cid, [])
        manager.remember(
            intent, algo=order_request(market, intent).is_algo, status=record.status,
            filled=sum((f.quantity for f in known), Decimal(0)),
            trade_ids={f.trade_id for f in known}, venue_order_id=None,
        )  # fmt: skip
        try:
            await patiently(f"query {cid}", lambda cid=cid: manager.refresh(cid), rest.clock)
        except Rejected as exc:  # -2013: it never rested (or aged out of the venue's memory)
            report.mismatches.append(f"{cid}: journal says {record.status.value}, venue: {exc.message}")
            continue
        report.refreshed.append(cid)
    for symbol in symbols:
        listed = await patiently(f"open orders of {symbol}", lambda symbol=symbol: venue_open_orders(rest, symbol), rest.clock)
        for body in listed:
            cid = str(body.get("clientOrderId") or body.get("clientAlgoId") or "")
            if manager.tracked(cid) is not None:
                continue
            record = journal.intent(cid)
            if record is None:
                report.foreign.append(f"{symbol} {cid}")
                continue
            manager.remember(record.intent, algo="algoId" in body, status=OrderStatus.UNKNOWN,
                             filled=Decimal(0), trade_ids=set(), venue_order_id=None)  # fmt: skip
            await patiently(f"query {cid}", lambda cid=cid: manager.refresh(cid), rest.clock)
            report.adopted.append(cid)
            report.mismatches.append(f"{cid}: open on the venue, journal says {record.status.value}")
    for entry in report.foreign:
        report.mismatches.append(f"{entry}: open on the venue, not placed by this engine")
    log.info("startup_reconciled", recovered_unknown=report.recovered_unknown,
             refreshed=len(report.refreshed), adopted=len(report.adopted),
             foreign=len(report.foreign), mismatches=len(report.mismatches))  # fmt: skip
    return report


async def patiently(
    what: str, step: Callable[[], Awaitable[T]], clock: Clock, give_up_s: float = 120.0
) -> T:
    """Run one start-up step again after a transient failure (429/5xx/-1021/timeout).

    Start-up must not die of a busy exchange; it gives up (StartupRefused) only after
    give_up_s of failures, honouring Retry-After.
    """
    deadline_ns = clock.monotonic_ns() + int(give_up_s * 1e9)
    delay_s = 0.5
    while True:
        try:
            return await step()
        except (Retryable, UnknownOutcome) as exc:
            if clock.monotonic_ns() >= deadline_ns:
                raise StartupRefused(f"{what}: the exchange kept failing ({exc.message})") from exc
            wait_s = exc.retry_after_s if isinstance(exc, Retryable) and exc.retry_after_s else delay_s
            log.warning("startup_step_retry", step=what, error=repr(exc), retry_in_s=wait_s)
            await clock.sleep(min(wait_s, 60.0))
            delay_s = min(delay_s * 2, 10.0)


async def venue_open_orders(rest: BinanceRest, symbol: str) -> list[Mapping[str, Any]]:
    """Return the venue's open orders of symbol (USDⓈ-M: plain and algo orders)."""
    if rest.market is Market.SPOT:
        return list(await rest.get("/api/v3/openOrders", {"symbol": symbol}, signed=True, weight=6))
    orders = list(await rest.get("/fapi/v1/openOrders", {"symbol": symbol}, signed=True, weight=1))
    algos = await rest.get("/fapi/v1/openAlgoOrders", {"symbol": symbol}, signed=True, weight=1)
    return orders + list(algos or ())


def _fills_by_order(fills: Iterable[OrderFilled]) -> dict[str, list[OrderFilled]]:
    out: dict[str, list[OrderFilled]] = {}
    for fill in fills:
        out.setdefault(fill.client_order_id, []).append(fill)
    return out


__all__ = [
    "ExchangeError",
    "StartupRefused",
    "StartupReport",
    "WithdrawalsEnabled",
    "configure_futures",
    "read_account",
    "reconcile_orders",
    "refuse_withdrawal_keys",
]
