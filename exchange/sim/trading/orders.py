"""Binance's view of orders on the simulated exchange: order and algo records, their REST bodies and
user-data events (executionReport, ORDER_TRADE_UPDATE, ALGO_UPDATE), with Binance's field names.

Spot writes every number with 8 decimals; USDⓈ-M writes plain decimals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.model import Market

ZERO = Decimal(0)


def fmt(value: Decimal | None, market: Market) -> str:
    """Write a number as the market's wire writes it."""
    value = ZERO if value is None else value
    if market is Market.SPOT:
        return f"{value:.8f}"
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


@dataclass(slots=True)
class Fill:
    """One trade of an order, as /myTrades and the FULL response report it."""

    trade_id: int
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    maker: bool
    ts_ms: int
    realized_pnl: Decimal = ZERO


@dataclass(slots=True)
class OrderRecord:
    """One order as the exchange reports it (spot order, USDⓈ-M order, or a triggered algo's order)."""

    market: Market
    symbol: str
    order_id: int
    client_order_id: str
    side: str
    type: str  # the wire type: LIMIT, MARKET, STOP_LOSS, LIMIT_MAKER, ...
    time_in_force: str
    orig_qty: Decimal
    price: Decimal
    stop_price: Decimal
    time_ms: int
    orig_type: str = ""
    reduce_only: bool = False
    close_position: bool = False
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    update_time_ms: int = 0
    fills: list[Fill] = field(default_factory=list)
    algo_id: int | None = None  # the algo order this order came from
    expiry_reason: str = ""
    order_list_id: int = -1  # spot OCO list

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO

    def spot_body(self, response_type: str = "RESULT", fills: list[Fill] | None = None) -> dict:
        """Return the spot order response (ACK / RESULT / FULL) or the GET /api/v3/order body."""
        m = self.market
        body: dict[str, Any] = {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": self.order_list_id,
            "clientOrderId": self.client_order_id,
            "transactTime": self.time_ms,
        }
        if response_type == "ACK":
            return body
        body.update(
            {
                "price": fmt(self.price, m),
                "origQty": fmt(self.orig_qty, m),
                "executedQty": fmt(self.executed_qty, m),
                "origQuoteOrderQty": fmt(ZERO, m),
                "cummulativeQuoteQty": fmt(self.cum_quote, m),
                "status": self.status,
                "timeInForce": self.time_in_force,
                "type": self.type,
                "side": self.side,
                "workingTime": self.time_ms
                if self.type in ("LIMIT", "LIMIT_MAKER", "MARKET")
                else -1,
                "selfTradePreventionMode": "EXPIRE_MAKER",
            }
        )
        if self.stop_price:
            body["stopPrice"] = fmt(self.stop_price, m)
        if response_type == "FULL":
            body["fills"] = [
                {
                    "price": fmt(f.price, m),
                    "qty": fmt(f.qty, m),
                    "commission": fmt(f.commission, m),
                    "commissionAsset": f.commission_asset,
                    "tradeId": f.trade_id,
                }
                for f in (self.fills if fills is None else fills)
            ]
        return body

    def spot_query_body(self) -> dict:
        """Return GET /api/v3/order and /openOrders entries."""
        body = self.spot_body("RESULT")
        del body["transactTime"]
        body.update(
            {
                "stopPrice": fmt(self.stop_price, self.market),
                "icebergQty": fmt(ZERO, self.market),
                "time": self.time_ms,
                "updateTime": self.update_time_ms or self.time_ms,
                "isWorking": self.type in ("LIMIT", "LIMIT_MAKER", "MARKET")
                or self.status != "NEW",
            }
        )
        return body

    def futures_body(self) -> dict:
        """Return the USDⓈ-M order body (POST/DELETE/GET /fapi/v1/order, openOrders)."""
        m = self.market
        return {
            "orderId": self.order_id,
            "symbol": self.symbol,
            "status": self.status,
            "clientOrderId": self.client_order_id,
            "price": fmt(self.price, m),
            "avgPrice": fmt(self.avg_price, m),
            "origQty": fmt(self.orig_qty, m),
            "executedQty": fmt(self.executed_qty, m),
            "cumQty": fmt(self.executed_qty, m),
            "cumQuote": fmt(self.cum_quote, m),
            "timeInForce": self.time_in_force,
            "type": self.type,
            "reduceOnly": self.reduce_only,
            "closePosition": self.close_position,
            "side": self.side,
            "positionSide": "BOTH",
            "stopPrice": fmt(self.stop_price, m),
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": self.orig_type or self.type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "time": self.time_ms,
            "updateTime": self.update_time_ms or self.time_ms,
        }

    def execution_report(self, exec_type: str, ts_ms: int, fill: Fill | None) -> dict:
        """Return the spot executionReport event for one change of this order."""
        m = self.market
        return {
            "e": "executionReport", "E": ts_ms, "s": self.symbol, "c": self.client_order_id,
            "S": self.side, "o": self.type, "f": self.time_in_force,
            "q": fmt(self.orig_qty, m), "p": fmt(self.price, m), "P": fmt(self.stop_price, m),
            "F": fmt(ZERO, m), "g": self.order_list_id, "C": "", "x": exec_type, "X": self.status, "r": "NONE",
            "i": self.order_id, "l": fmt(fill.qty if fill else ZERO, m),
            "z": fmt(self.executed_qty, m), "L": fmt(fill.price if fill else ZERO, m),
            "n": fmt(fill.commission, m) if fill else "0",
            "N": fill.commission_asset if fill else None, "T": ts_ms,
            "t": fill.trade_id if fill else -1, "I": 0, "w": self.is_open and self.type != "MARKET",
            "m": fill.maker if fill else False, "M": False, "O": self.time_ms,
            "Z": fmt(self.cum_quote, m),
            "Y": fmt(fill.price * fill.qty if fill else ZERO, m),
            "Q": fmt(ZERO, m), "W": self.time_ms, "V": "EXPIRE_MAKER",
        }  # fmt: skip

    def order_trade_update(self, exec_type: str, ts_ms: int, fill: Fill | None) -> dict:
        """Return the USDⓈ-M ORDER_TRADE_UPDATE event for one change of this order."""
        m = self.market
        order = {
            "s": self.symbol, "c": self.client_order_id, "S": self.side, "o": self.type,
            "f": self.time_in_force, "q": fmt(self.orig_qty, m), "p": fmt(self.price, m),
            "ap": fmt(self.avg_price, m), "sp": fmt(self.stop_price, m), "x": exec_type,
            "X": self.status, "i": self.order_id, "l": fmt(fill.qty if fill else ZERO, m),
            "z": fmt(self.executed_qty, m), "L": fmt(fill.price if fill else ZERO, m),
            "T": ts_ms, "t": fill.trade_id if fill else 0, "b": "0", "a": "0",
            "m": fill.maker if fill else False, "R": self.reduce_only, "wt": "CONTRACT_PRICE",
            "ot": self.orig_type or self.type, "ps": "BOTH", "cp": self.close_position,
            "rp": fmt(fill.realized_pnl if fill else ZERO, m), "pP": False, "si": 0, "ss": 0,
            "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0, "er": "0",
        }  # fmt: skip
        if fill is not None:
            order["N"], order["n"] = fill.commission_asset, fmt(fill.commission, m)
        return {"e": "ORDER_TRADE_UPDATE", "E": ts_ms, "T": ts_ms, "o": order}


@dataclass(slots=True)
class AlgoRecord:
    """One USDⓈ-M conditional (algo) order: waits for its trigger, then becomes an order."""

    symbol: str
    algo_id: int
    client_algo_id: str
    order_type: str  # STOP_MARKET, TAKE_PROFIT_MARKET, TRAILING_STOP_MARKET
    side: str
    quantity: Decimal  # 0 with closePosition
    trigger_price: Decimal
    activate_price: Decimal
    callback_rate: Decimal
    reduce_only: bool
    close_position: bool
    working_type: str
    time_in_force: str
    create_time_ms: int
    status: str = "NEW"
    update_time_ms: int = 0
    trigger_time_ms: int = 0
    actual_order_id: int | None = None
    reject_reason: str = ""

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "TRIGGERING")

    def body(self) -> dict:
        """Return the algo order body (POST/DELETE/GET /fapi/v1/algoOrder, openAlgoOrders)."""
        m = Market.USDM
        return {
            "algoId": self.algo_id, "clientAlgoId": self.client_algo_id,
            "algoType": "CONDITIONAL", "orderType": self.order_type, "symbol": self.symbol,
            "side": self.side, "positionSide": "BOTH", "timeInForce": self.time_in_force,
            "quantity": fmt(self.quantity, m), "algoStatus": self.status,
            "actualOrderId": "" if self.actual_order_id is None else str(self.actual_order_id),
            "actualPrice": "0", "triggerPrice": fmt(self.trigger_price, m), "price": "0",
            "icebergQuantity": None, "tpTriggerPrice": "0", "tpPrice": "0",
            "slTriggerPrice": "0", "slPrice": "0", "tpOrderType": "", "selfTradePreventionMode":
            "EXPIRE_MAKER", "workingType": self.working_type, "priceMatch": "NONE",
            "closePosition": self.close_position, "priceProtect": False,
            "reduceOnly": self.reduce_only, "activatePrice": fmt(self.activate_price, m),
            "callbackRate": fmt(self.callback_rate, m), "createTime": self.create_time_ms,
            "updateTime": self.update_time_ms or self.create_time_ms,
            "triggerTime": self.trigger_time_ms, "goodTillDate": 0,
        }  # fmt: skip

    def algo_update(self, ts_ms: int) -> dict:
        """Return the ALGO_UPDATE event for the algo order's current status."""
        m = Market.USDM
        return {
            "e": "ALGO_UPDATE", "T": ts_ms, "E": ts_ms,
            "o": {
                "caid": self.client_algo_id, "aid": self.algo_id, "at": "CONDITIONAL",
                "o": self.order_type, "s": self.symbol, "S": self.side, "ps": "BOTH",
                "f": self.time_in_force, "q": fmt(self.quantity, m), "X": self.status,
                "ai": "" if self.actual_order_id is None else str(self.actual_order_id),
                "ap": "0", "aq": "0", "act": "0", "tp": fmt(self.trigger_price, m), "p": "0",
                "V": "EXPIRE_MAKER", "wt": self.working_type, "pm": "NONE",
                "cp": self.close_position, "pP": False, "R": self.reduce_only, "tt": 0,
                "gtd": 0, "rm": self.reject_reason,
            },
        }  # fmt: skip
