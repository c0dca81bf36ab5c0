"""Wire format of Binance orders: OrderIntent -> request params, response bodies -> VenueOrder.

Pure functions, no I/O. Spot orders go to /api/v3/order (OCO lists to /api/v3/orderList/oco);
USDⓈ-M LIMIT/MARKET go to /fapi/v1/order and conditional orders (STOP_MARKET, TAKE_PROFIT_MARKET,
TRAILING_STOP_MARKET) to /fapi/v1/algoOrder, which has answered -4120 on /fapi/v1/order since
2025-12 (API reference §3.5). Every number is sent as a plain decimal string ("0.001", never
"1E-3"), because Binance rejects exponents and the signature covers the exact text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar

from engine.model import Market, Side
from engine.orders import (
    Liquidity,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderStatus,
    OrderType,
    SubmitOrderList,
    TimeInForce,
)
from exchange.errors import Rejected, RejectReason

SPOT_ORDER = "/api/v3/order"
SPOT_OCO = "/api/v3/orderList/oco"
SPOT_TRADES = "/api/v3/myTrades"
USDM_ORDER = "/fapi/v1/order"
USDM_ALGO = "/fapi/v1/algoOrder"
USDM_TRADES = "/fapi/v1/userTrades"

_SPOT_TYPES = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP_MARKET: "STOP_LOSS",
    OrderType.STOP_LIMIT: "STOP_LOSS_LIMIT",
    OrderType.TAKE_PROFIT_MARKET: "TAKE_PROFIT",
    OrderType.TAKE_PROFIT_LIMIT: "TAKE_PROFIT_LIMIT",
}
_ALGO_TYPES = (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET, OrderType.TRAILING_STOP_MARKET)
_STATUS = {s.value: s for s in OrderStatus}
_ALGO_STATUS = {
    "NEW": OrderStatus.NEW,
    "CANCELED": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
}  # TRIGGERING/TRIGGERED/FINISHED: the algo became an order; follow actualOrderId
_SPOT_WEIGHTS = {SPOT_ORDER: 4, SPOT_TRADES: 20}
_USDM_WEIGHTS = {USDM_ORDER: 1, USDM_ALGO: 1, USDM_TRADES: 5}


def plain(value: Decimal) -> str:
    """Write a Decimal as Binance accepts it: fixed-point, no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return "0" if text == "-0" else text


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One signed request: method, path, params as sent (strings), and the query weight."""

    market: Market
    method: str
    path: str
    params: dict[str, str]
    weight: int = 1

    @property
    def is_algo(self) -> bool:
        return self.path == USDM_ALGO


def order_request(
    market: Market, intent: OrderIntent, *, close_position: bool = False
) -> OrderRequest:
    """Return the placement request of intent on market (spot order, futures order or algo)."""
    if market is Market.SPOT:
        return OrderRequest(market, "POST", SPOT_ORDER, spot_order_params(intent))
    if intent.type in _ALGO_TYPES:
        return OrderRequest(market, "POST", USDM_ALGO, algo_order_params(intent, close_position))
    return OrderRequest(market, "POST", USDM_ORDER, futures_order_params(intent))


def spot_order_params(intent: OrderIntent) -> dict[str, str]:
    """Return POST /api/v3/order params; GTX (post-only) LIMIT becomes LIMIT_MAKER."""
    if intent.type is OrderType.TRAILING_STOP_MARKET:
        raise ValueError("spot trailing stops (trailingDelta) are not supported")
    wire_type = _SPOT_TYPES[intent.type]
    post_only = intent.type is OrderType.LIMIT and intent.time_in_force is TimeInForce.GTX
    params = {
        "symbol": intent.symbol,
        "side": intent.side.value,
        "type": "LIMIT_MAKER" if post_only else wire_type,
        "quantity": plain(intent.quantity),
        "newClientOrderId": intent.client_order_id,
        "newOrderRespType": "FULL",  # fills with trade ids in the answer
    }
    if intent.price is not None and intent.type in (
        OrderType.LIMIT,
        OrderType.STOP_LIMIT,
        OrderType.TAKE_PROFIT_LIMIT,
    ):
        params["price"] = plain(intent.price)
        if not post_only:
            if intent.time_in_force is TimeInForce.GTX:
                raise ValueError(f"spot {wire_type} cannot be post-only")
            params["timeInForce"] = intent.time_in_force.value
    if intent.stop_price is not None and intent.type not in (OrderType.MARKET, OrderType.LIMIT):
        params["stopPrice"] = plain(intent.stop_price)
    return params


def futures_order_params(intent: OrderIntent) -> dict[str, str]:
    """Return POST /fapi/v1/order params for a USDⓈ-M LIMIT or MARKET order."""
    if intent.type not in (OrderType.LIMIT, OrderType.MARKET):
        raise ValueError(f"{intent.type} goes to the algo endpoint, not /fapi/v1/order")
    params = {
        "symbol": intent.symbol,
        "side": intent.side.value,
        "type": intent.type.value,
        "quantity": plain(intent.quantity),
        "newClientOrderId": intent.client_order_id,
        "newOrderRespType": "RESULT",  # final status and executedQty of the immediate match
    }
    if intent.type is OrderType.LIMIT:
        assert intent.price is not None
        params["price"] = plain(intent.price)
        params["timeInForce"] = intent.time_in_force.value
    if intent.reduce_only:
        params["reduceOnly"] = "true"
    return params


def algo_order_params(intent: OrderIntent, close_position: bool = False) -> dict[str, str]:
    """Return POST /fapi/v1/algoOrder params of a conditional order (clientAlgoId = our id)."""
    if intent.type not in _ALGO_TYPES:
        raise ValueError(f"{intent.type} is not a conditional (algo) order type")
    params = {
        "algoType": "CONDITIONAL",
        "symbol": intent.symbol,
        "side": intent.side.value,
        "type": intent.type.value,
        "clientAlgoId": intent.client_order_id,
        "workingType": "CONTRACT_PRICE",
    }
    if close_position:
        params["closePosition"] = "true"  # quantity and reduceOnly must not be sent with it
    else:
        params["quantity"] = plain(intent.quantity)
        if intent.reduce_only:
            params["reduceOnly"] = "true"
    if intent.type is OrderType.TRAILING_STOP_MARKET:
        if intent.callback_rate_pct is None:
            raise ValueError("TRAILING_STOP_MARKET needs callback_rate_pct")
        params["callbackRate"] = plain(intent.callback_rate_pct)
        if intent.stop_price is not None:
            params["activatePrice"] = plain(intent.stop_price)
    else:
        assert intent.stop_price is not None
        params["triggerPrice"] = plain(intent.stop_price)
    return params


def oco_request(command: SubmitOrderList) -> OrderRequest:
    """Return POST /api/v3/orderList/oco params: the leg with the higher price rests above."""
    first, second = command.orders
    above, below = sorted(command.orders, key=_leg_level, reverse=True)
    if _leg_level(first) == _leg_level(second):
        raise ValueError("OCO legs need different price levels")
    params = {
        "symbol": first.symbol,
        "side": first.side.value,
        "quantity": plain(first.quantity),
        "listClientOrderId": command.list_client_order_id,
        "newOrderRespType": "RESULT",
    }
    for prefix, leg in (("above", above), ("below", below)):
        wire_type = _SPOT_TYPES[leg.type]
        if leg.type is OrderType.LIMIT:
            wire_type = "LIMIT_MAKER"  # the only plain limit an OCO accepts
        params[f"{prefix}Type"] = wire_type
        params[f"{prefix}ClientOrderId"] = leg.client_order_id
        if leg.price is not None and leg.type is not OrderType.MARKET:
            params[f"{prefix}Price"] = plain(leg.price)
        if leg.stop_price is not None and leg.type not in (OrderType.MARKET, OrderType.LIMIT):
            params[f"{prefix}StopPrice"] = plain(leg.stop_price)
        if wire_type in ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"):
            params[f"{prefix}TimeInForce"] = leg.time_in_force.value
    return OrderRequest(Market.SPOT, "POST", SPOT_OCO, params)


def _leg_level(leg: OrderIntent) -> Decimal:
    level = leg.stop_price if leg.stop_price is not None else leg.price
    if level is None:
        raise ValueError(f"OCO leg {leg.client_order_id} has no price")
    return level


def query_request(market: Market, symbol: str, client_order_id: str, algo: bool) -> OrderRequest:
    """Return the GET that finds an order (or algo order) by our client order id."""
    if algo:
        return OrderRequest(market, "GET", USDM_ALGO, {"clientAlgoId": client_order_id}, 1)
    path = SPOT_ORDER if market is Market.SPOT else USDM_ORDER
    weight = (_SPOT_WEIGHTS if market is Market.SPOT else _USDM_WEIGHTS)[path]
    return OrderRequest(
        market, "GET", path, {"symbol": symbol, "origClientOrderId": client_order_id}, weight
    )


def order_by_id_request(market: Market, symbol: str, order_id: str) -> OrderRequest:
    """Return the GET of one order by the venue's order id (a triggered algo's order)."""
    path = SPOT_ORDER if market is Market.SPOT else USDM_ORDER
    weight = (_SPOT_WEIGHTS if market is Market.SPOT else _USDM_WEIGHTS)[path]
    return OrderRequest(market, "GET", path, {"symbol": symbol, "orderId": order_id}, weight)


def cancel_request(market: Market, symbol: str, client_order_id: str, algo: bool) -> OrderRequest:
    """Return the DELETE of an order (or algo order) by our client order id."""
    if algo:
        return OrderRequest(market, "DELETE", USDM_ALGO, {"clientAlgoId": client_order_id})
    path = SPOT_ORDER if market is Market.SPOT else USDM_ORDER
    return OrderRequest(
        market, "DELETE", path, {"symbol": symbol, "origClientOrderId": client_order_id}
    )


def trades_request(market: Market, symbol: str, order_id: str) -> OrderRequest:
    """Return the GET of one order's trades (myTrades / userTrades by orderId)."""
    path = SPOT_TRADES if market is Market.SPOT else USDM_TRADES
    weight = (_SPOT_WEIGHTS if market is Market.SPOT else _USDM_WEIGHTS)[path]
    return OrderRequest(market, "GET", path, {"symbol": symbol, "orderId": order_id}, weight)


# -- responses -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VenueFill:
    trade_id: int
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    liquidity: Liquidity
    ts_ms: int


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """What the venue says about one order; fills only when the body carried them."""

    symbol: str
    client_order_id: str
    venue_order_id: str
    status: OrderStatus
    side: Side
    orig_qty: Decimal
    executed_qty: Decimal
    ts_ms: int
    fills: tuple[VenueFill, ...] = field(default=())
    actual_order_id: str | None = None  # algo orders: the order the trigger created


class MalformedOrderBody(ValueError):
    """An order answer that is not what Binance documents (not an object, a field missing or
    not finite): the request's outcome is unknown to us, never a crash."""


def _amount(value: Any) -> Decimal:
    amount = Decimal(str(value))
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return amount


P = ParamSpec("P")
R = TypeVar("R")


def _guarded(parse: Callable[P, R]) -> Callable[P, R]:
    """Turn any failure to read a body into MalformedOrderBody (one type for callers)."""

    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return parse(*args, **kwargs)
        except MalformedOrderBody:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
            raise MalformedOrderBody(f"{parse.__name__.lstrip('_')}: {type(exc).__name__}: {exc}") from exc

    guarded.__name__ = parse.__name__.lstrip("_")
    guarded.__doc__ = parse.__doc__
    return guarded


def _parse_order(market: Market, body: Mapping[str, Any], ts_ms: int = 0) -> VenueOrder:
    """Parse a spot or USDⓈ-M order body (placement answer, query, cancel) into a VenueOrder."""
    client_id = str(body.get("origClientOrderId") or body["clientOrderId"])
    ts = int(body.get("updateTime") or body.get("transactTime") or body.get("time") or ts_ms)
    fills = tuple(
        VenueFill(
            int(f["tradeId"]),
            _amount(f["price"]),
            _amount(f["qty"]),
            _amount(f["commission"]),
            str(f["commissionAsset"]),
            Liquidity.TAKER,  # fills in a placement answer matched on arrival
            ts,
        )
        for f in body.get("fills", ())
    )
    return VenueOrder(
        symbol=str(body["symbol"]),
        client_order_id=client_id,
        venue_order_id=str(body["orderId"]),
        status=_STATUS.get(str(body.get("status", "NEW")), OrderStatus.NEW),
        side=Side(str(body["side"])),
        orig_qty=_amount(body.get("origQty", "0")),
        executed_qty=_amount(body.get("executedQty", "0")),
        ts_ms=ts,
        fills=fills,
    )


def _parse_algo(body: Mapping[str, Any]) -> VenueOrder:
    """Parse a /fapi/v1/algoOrder body; a triggered algo reports NEW and its actualOrderId."""
    actual = str(body.get("actualOrderId") or "") or None
    status = _ALGO_STATUS.get(str(body.get("algoStatus")), OrderStatus.NEW)
    return VenueOrder(
        symbol=str(body["symbol"]),
        client_order_id=str(body["clientAlgoId"]),
        venue_order_id=str(body["algoId"]),
        status=status,
        side=Side(str(body["side"])),
        orig_qty=_amount(body.get("quantity", "0")),
        executed_qty=Decimal(0),
        ts_ms=int(body.get("updateTime") or body.get("createTime") or 0),
        actual_order_id=actual,
    )


def _parse_oco(body: Mapping[str, Any]) -> list[VenueOrder]:
    """Parse the orderList/oco answer into one VenueOrder per leg."""
    return [_parse_order(Market.SPOT, report) for report in body.get("orderReports", ())]


def _parse_trades(market: Market, rows: Sequence[Mapping[str, Any]]) -> tuple[VenueFill, ...]:
    """Parse myTrades (spot) or userTrades (USDⓈ-M) rows into fills, in trade id order."""
    maker_key = "isMaker" if market is Market.SPOT else "maker"
    fills = [
        VenueFill(
            int(r["id"]),
            _amount(r["price"]),
            _amount(r["qty"]),
            _amount(r["commission"]),
            str(r["commissionAsset"]),
            Liquidity.MAKER if r.get(maker_key) else Liquidity.TAKER,
            int(r["time"]),
        )
        for r in rows
    ]
    return tuple(sorted(fills, key=lambda f: f.trade_id))


parse_order = _guarded(_parse_order)
parse_algo = _guarded(_parse_algo)
parse_oco = _guarded(_parse_oco)
parse_trades = _guarded(_parse_trades)


def fill_event(order: VenueOrder, fill: VenueFill, complete: bool) -> OrderFilled:
    """Return the engine's OrderFilled for one fill of order."""
    return OrderFilled(
        symbol=order.symbol,
        client_order_id=order.client_order_id,
        trade_id=fill.trade_id,
        side=order.side,
        price=fill.price,
        quantity=fill.quantity,
        fee=fill.fee,
        fee_asset=fill.fee_asset,
        liquidity=fill.liquidity,
        ts_event_ms=fill.ts_ms,
        order_complete=complete,
    )


def rejected_event(symbol: str, client_order_id: str, exc: Rejected, ts_ms: int) -> OrderRejected:
    """Return the engine's OrderRejected: the filter name when a filter failed, else the reason."""
    reason = exc.filter_name if exc.reason is RejectReason.FILTER and exc.filter_name else None
    return OrderRejected(
        symbol=symbol,
        client_order_id=client_order_id,
        reason=reason or exc.reason.value,
        message=f"{exc.code}: {exc.message}" if exc.code is not None else exc.message,
        ts_event_ms=ts_ms,
    )


def parse_execution_report(event: Mapping[str, Any]) -> VenueOrder:
    """Parse a spot executionReport (user stream) into a VenueOrder with at most one fill."""
    ts = int(event.get("T") or event.get("E") or 0)
    fills: tuple[VenueFill, ...] = ()
    if event.get("x") == "TRADE" and int(event.get("t", -1)) >= 0:
        fills = (
            VenueFill(
                int(event["t"]),
                Decimal(str(event["L"])),
                Decimal(str(event["l"])),
                Decimal(str(event.get("n") or "0")),
                str(event.get("N") or ""),
                Liquidity.MAKER if event.get("m") else Liquidity.TAKER,
                ts,
            ),
        )
    return VenueOrder(
        symbol=str(event["s"]),
        client_order_id=str(event.get("C") or event["c"]),  # C: the original id of a cancel
        venue_order_id=str(event["i"]),
        status=_STATUS.get(str(event["X"]), OrderStatus.NEW),
        side=Side(str(event["S"])),
        orig_qty=Decimal(str(event["q"])),
        executed_qty=Decimal(str(event["z"])),
        ts_ms=ts,
        fills=fills,
    )


def parse_order_trade_update(event: Mapping[str, Any]) -> VenueOrder:
    """Parse a USDⓈ-M ORDER_TRADE_UPDATE (user stream) into a VenueOrder with at most one fill."""
    order = event["o"]
    ts = int(order.get("T") or event.get("T") or event.get("E") or 0)
    fills: tuple[VenueFill, ...] = ()
    if order.get("x") == "TRADE":
        fills = (
            VenueFill(
                int(order["t"]),
                Decimal(str(order["L"])),
                Decimal(str(order["l"])),
                Decimal(str(order.get("n") or "0")),
                str(order.get("N") or ""),
                Liquidity.MAKER if order.get("m") else Liquidity.TAKER,
                ts,
            ),
        )
    status = str(order["X"])
    return VenueOrder(
        symbol=str(order["s"]),
        client_order_id=str(order["c"]),
        venue_order_id=str(order["i"]),
        status=OrderStatus.EXPIRED
        if status == "EXPIRED_IN_MATCH"
        else _STATUS.get(status, OrderStatus.NEW),
        side=Side(str(order["S"])),
        orig_qty=Decimal(str(order["q"])),
        executed_qty=Decimal(str(order["z"])),
        ts_ms=ts,
        fills=fills,
    )
