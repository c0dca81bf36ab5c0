"""Spot trading endpoints: order (new, cancel, query), OCO lists, open orders, account, myTrades.

Order types: LIMIT, LIMIT_MAKER, MARKET (by quantity), STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT,
TAKE_PROFIT_LIMIT (by stopPrice). Not simulated: quoteOrderQty, trailingDelta, icebergQty
(answered -1013/-1106 rather than silently ignored).
"""

from __future__ import annotations

import itertools

from aiohttp import web

from engine.model import Market, Side
from engine.orders import OrderIntent, OrderType, TimeInForce
from exchange.sim.rest import BinanceError
from exchange.sim.trading.api import Permission, Request, SignedApi
from exchange.sim.trading.desk import Desk
from exchange.sim.trading.orders import ZERO, Fill, OrderRecord, fmt
from exchange.sim.trading.params import (
    SPOT_CLIENT_ID_RE,
    client_id_param,
    decimal_param,
    enum_param,
    not_required,
    symbol_param,
)

_TYPES = {
    "LIMIT": OrderType.LIMIT,
    "LIMIT_MAKER": OrderType.LIMIT,
    "MARKET": OrderType.MARKET,
    "STOP_LOSS": OrderType.STOP_MARKET,
    "STOP_LOSS_LIMIT": OrderType.STOP_LIMIT,
    "TAKE_PROFIT": OrderType.TAKE_PROFIT_MARKET,
    "TAKE_PROFIT_LIMIT": OrderType.TAKE_PROFIT_LIMIT,
}
_NEEDS_TIF = ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
_NEEDS_PRICE = ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
_NEEDS_STOP = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
_ABOVE_TYPES = ("STOP_LOSS_LIMIT", "STOP_LOSS", "LIMIT_MAKER", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
_BELOW_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")


class SpotRoutes:
    """The spot trading routes of one simulator, over its spot desk."""

    def __init__(self, desk: Desk, api: SignedApi) -> None:
        self.desk = desk
        self.api = api
        self._client_ids = itertools.count(1)

    def register(self, app: web.Application) -> None:
        add, m, trade = self.api.add, Market.SPOT, Permission.SPOT_TRADE
        add(app, "POST", "/api/v3/order", m, 1, self.new_order, trade, placement=True)
        add(app, "DELETE", "/api/v3/order", m, 1, self.cancel_order, trade)
        add(app, "GET", "/api/v3/order", m, 4, self.query_order)
        add(app, "GET", "/api/v3/openOrders", m, 6, self.open_orders)
        add(app, "DELETE", "/api/v3/openOrders", m, 1, self.cancel_open_orders, trade)
        add(app, "GET", "/api/v3/account", m, 20, self.account)
        add(app, "GET", "/api/v3/myTrades", m, 20, self.my_trades)
        add(app, "POST", "/api/v3/orderList/oco", m, 1, self.new_oco, trade, placement=True)

    async def new_order(self, req: Request) -> dict:
        desk = self.desk
        symbol = symbol_param(req, desk.instruments)
        side = enum_param(req, "side", ("BUY", "SELL"), -1117, "Invalid side.")
        wire_type = enum_param(req, "type", tuple(_TYPES), -1116, "Invalid orderType.")
        not_required(req, "trailingDelta", "icebergQty")
        if req.get("quoteOrderQty") is not None:
            raise BinanceError(400, -1106, "Parameter 'quoteOrderQty' sent when not required.")
        quantity = decimal_param(req, "quantity", required=True)
        assert quantity is not None
        if quantity <= 0:
            raise BinanceError(400, -1013, "Invalid quantity.")
        tif = "GTC"
        if wire_type in _NEEDS_TIF:
            tif = enum_param(
                req, "timeInForce", ("GTC", "IOC", "FOK"), -1115, "Invalid timeInForce."
            )
        else:
            not_required(req, "timeInForce")
        price = decimal_param(req, "price", required=wire_type in _NEEDS_PRICE)
        if wire_type not in _NEEDS_PRICE:
            not_required(req, "price")
        stop = decimal_param(req, "stopPrice", required=wire_type in _NEEDS_STOP)
        if wire_type not in _NEEDS_STOP:
            not_required(req, "stopPrice")
        default_resp = "FULL" if wire_type in ("LIMIT", "MARKET") else "ACK"
        resp_type = (req.get("newOrderRespType") or default_resp).upper()
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise BinanceError(400, -1177, "Invalid newOrderRespType.")
        client_id = client_id_param(req, "newClientOrderId", SPOT_CLIENT_ID_RE)
        if client_id is None:
            client_id = f"sim-{next(self._client_ids):018d}"
        now = desk.now_ms()
        record = OrderRecord(
            Market.SPOT, symbol, desk.new_id(), client_id, side, wire_type, tif, quantity,
            price or ZERO, stop or ZERO, now,
        )  # fmt: skip
        intent = OrderIntent(
            client_id,
            symbol,
            Side(side),
            _TYPES[wire_type],
            quantity,
            price=price,
            stop_price=stop,
            time_in_force=TimeInForce.GTX if wire_type == "LIMIT_MAKER" else TimeInForce(tif),
        )
        fills = desk.place(record, intent)
        return record.spot_body(resp_type, fills)

    async def new_oco(self, req: Request) -> dict:
        """POST /api/v3/orderList/oco: two legs on one side, accepted or rejected together."""
        desk = self.desk
        symbol = symbol_param(req, desk.instruments)
        side = enum_param(req, "side", ("BUY", "SELL"), -1117, "Invalid side.")
        quantity = decimal_param(req, "quantity", required=True)
        assert quantity is not None
        list_client_id = client_id_param(req, "listClientOrderId", SPOT_CLIENT_ID_RE)
        list_id = desk.new_id()
        now = desk.now_ms()
        records: list[OrderRecord] = []
        legs: list[OrderIntent] = []
        for leg, types in (("above", _ABOVE_TYPES), ("below", _BELOW_TYPES)):
            wire_type = enum_param(req, f"{leg}Type", types, -1116, "Invalid orderType.")
            price = decimal_param(req, f"{leg}Price", required=wire_type in _NEEDS_PRICE)
            stop = decimal_param(req, f"{leg}StopPrice", required=wire_type in _NEEDS_STOP)
            tif = req.get(f"{leg}TimeInForce") or "GTC"
            client_id = client_id_param(req, f"{leg}ClientOrderId", SPOT_CLIENT_ID_RE)
            client_id = client_id or f"sim-{next(self._client_ids):018d}"
            record = OrderRecord(
                Market.SPOT, symbol, desk.new_id(), client_id, side, wire_type, tif, quantity,
                price or ZERO, stop or ZERO, now, order_list_id=list_id,
            )  # fmt: skip
            records.append(record)
            legs.append(
                OrderIntent(
                    client_id,
                    symbol,
                    Side(side),
                    _TYPES[wire_type],
                    quantity,
                    price=price,
                    stop_price=stop,
                    time_in_force=TimeInForce(tif),
                )
            )
        desk.place_list(list_id, records, legs)
        return {
            "orderListId": list_id, "contingencyType": "OCO", "listStatusType": "EXEC_STARTED",
            "listOrderStatus": "EXECUTING",
            "listClientOrderId": list_client_id or f"sim-list-{list_id}",
            "transactionTime": now, "symbol": symbol,
            "orders": [{"symbol": symbol, "orderId": r.order_id,
                        "clientOrderId": r.client_order_id} for r in records],
            "orderReports": [r.spot_body("RESULT") for r in records],
        }  # fmt: skip

    def _lookup(self, req: Request, unknown_code: int, unknown_msg: str) -> OrderRecord:
        symbol = symbol_param(req, self.desk.instruments)
        order_id, client_id = req.get("orderId"), req.get("origClientOrderId")
        if order_id is None and client_id is None:
            raise BinanceError(
                400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both "
                "were empty/null!"
            )  # fmt: skip
        try:
            return self.desk.find_order(symbol, order_id, client_id)
        except BinanceError:
            raise BinanceError(400, unknown_code, unknown_msg) from None

    async def cancel_order(self, req: Request) -> dict:
        record = self._lookup(req, -2011, "Unknown order sent.")
        if not record.is_open:
            raise BinanceError(400, -2011, "Unknown order sent.")
        self.desk.cancel(record)
        return self._cancel_body(record, req.get("newClientOrderId"))

    def _cancel_body(self, record: OrderRecord, cancel_id: str | None) -> dict:
        body = record.spot_body("RESULT")
        body["origClientOrderId"] = record.client_order_id
        body["clientOrderId"] = cancel_id or f"sim-cancel-{next(self._client_ids):011d}"
        body["transactTime"] = self.desk.now_ms()
        body.pop("workingTime", None)
        return body

    async def query_order(self, req: Request) -> dict:
        return self._lookup(req, -2013, "Order does not exist.").spot_query_body()

    async def open_orders(self, req: Request) -> list[dict]:
        symbol = symbol_param(req, self.desk.instruments) if req.get("symbol") else None
        return [o.spot_query_body() for o in self.desk.open_orders(symbol)]

    async def cancel_open_orders(self, req: Request) -> list[dict]:
        symbol = symbol_param(req, self.desk.instruments)
        records = self.desk.open_orders(symbol)
        if not records:
            raise BinanceError(400, -2011, "Unknown order sent.")
        for record in records:
            self.desk.cancel(record)
        return [self._cancel_body(r, None) for r in records]

    async def account(self, req: Request) -> dict:
        desk = self.desk
        fees = desk.venue.fees
        maker, taker = fees.maker_bps / 10_000, fees.taker_bps / 10_000
        balances = desk.venue.balances()
        omit_zero = (req.get("omitZeroBalances") or "").lower() == "true"
        return {
            "makerCommission": int(fees.maker_bps), "takerCommission": int(fees.taker_bps),
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": fmt(maker, Market.SPOT), "taker": fmt(taker, Market.SPOT),
                                "buyer": fmt(ZERO, Market.SPOT), "seller": fmt(ZERO, Market.SPOT)},
            "canTrade": req.api_key.enable_spot_trading,
            "canWithdraw": req.api_key.enable_withdrawals, "canDeposit": True,
            "brokered": False, "requireSelfTradePrevention": False, "preventSor": False,
            "updateTime": desk.now_ms(), "accountType": "SPOT",
            "balances": [
                {"asset": b.asset, "free": fmt(b.free, Market.SPOT),
                 "locked": fmt(b.locked, Market.SPOT)}
                for b in balances.values() if not (omit_zero and b.total == 0)
            ],
            "permissions": ["SPOT"], "uid": 1,
        }  # fmt: skip

    async def my_trades(self, req: Request) -> list[dict]:
        symbol = symbol_param(req, self.desk.instruments)
        order_id = req.get("orderId")
        limit = int(req.get("limit") or 500)
        rows = []
        for record in self.desk.orders.values():
            if record.symbol != symbol or (
                order_id is not None and str(record.order_id) != order_id
            ):
                continue
            for f in record.fills:
                rows.append((f.trade_id, _trade_row(record, f)))
        return [row for _, row in sorted(rows, key=lambda r: r[0])][:limit]


def _trade_row(record: OrderRecord, fill: Fill) -> dict:
    m = Market.SPOT
    return {
        "symbol": record.symbol, "id": fill.trade_id, "orderId": record.order_id,
        "orderListId": -1, "price": fmt(fill.price, m), "qty": fmt(fill.qty, m),
        "quoteQty": fmt(fill.price * fill.qty, m), "commission": fmt(fill.commission, m),
        "commissionAsset": fill.commission_asset, "time": fill.ts_ms,
        "isBuyer": record.side == "BUY", "isMaker": fill.maker, "isBestMatch": True,
    }  # fmt: skip
