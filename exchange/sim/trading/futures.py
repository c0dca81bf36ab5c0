"""USDⓈ-M trading endpoints: order (LIMIT/MARKET), algo orders (conditional), account, positions,
leverage, margin type, position mode, dead-man switch, userTrades.

Since 2025-12-09 conditional types on /fapi/v1/order answer -4120; they live on
/fapi/v1/algoOrder (STOP_MARKET, TAKE_PROFIT_MARKET, TRAILING_STOP_MARKET; the limit variants
STOP/TAKE_PROFIT are not simulated and answer -1116). The account is one-way, cross margin, one
leverage for the whole account (the matching core's model); workingType MARK_PRICE triggers on
the last trade like CONTRACT_PRICE (the recorded tapes carry no mark price).
"""

from __future__ import annotations

import itertools
from decimal import Decimal

from aiohttp import web

from engine.model import Market, Side
from engine.orders import OrderIntent, OrderType, TimeInForce
from exchange.sim.rest import BinanceError
from exchange.sim.trading.api import Permission, Request, SignedApi
from exchange.sim.trading.desk import Desk
from exchange.sim.trading.orders import ZERO, AlgoRecord, OrderRecord, fmt
from exchange.sim.trading.params import (
    FUTURES_CLIENT_ID_RE,
    bool_param,
    client_id_param,
    decimal_param,
    enum_param,
    not_required,
    symbol_param,
)

_ALGO_TYPES = {
    "STOP_MARKET": OrderType.STOP_MARKET,
    "TAKE_PROFIT_MARKET": OrderType.TAKE_PROFIT_MARKET,
    "TRAILING_STOP_MARKET": OrderType.TRAILING_STOP_MARKET,
}
_CONDITIONAL = ("STOP", "TAKE_PROFIT", *_ALGO_TYPES)
_M = Market.USDM


class FuturesRoutes:
    """The USDⓈ-M trading routes of one simulator, over its futures desk."""

    def __init__(self, desk: Desk, api: SignedApi) -> None:
        self.desk = desk
        self.api = api
        self._ids = itertools.count(1)
        self.dual_side = False
        self.margin_types: dict[str, str] = {}
        self.leverages: dict[str, int] = {}
        self.countdowns: dict[str, int] = {}  # symbol -> deadline (monotonic ns)

    def register(self, app: web.Application) -> None:
        add, t = self.api.add, Permission.FUTURES
        add(app, "POST", "/fapi/v1/order", _M, 0, self.new_order, t, placement=True)
        add(app, "DELETE", "/fapi/v1/order", _M, 1, self.cancel_order, t)
        add(app, "GET", "/fapi/v1/order", _M, 1, self.query_order, t)
        add(app, "GET", "/fapi/v1/openOrders", _M, 1, self.open_orders, t)
        add(app, "DELETE", "/fapi/v1/allOpenOrders", _M, 1, self.cancel_all, t)
        add(app, "POST", "/fapi/v1/algoOrder", _M, 0, self.new_algo, t, placement=True)
        add(app, "DELETE", "/fapi/v1/algoOrder", _M, 1, self.cancel_algo, t)
        add(app, "GET", "/fapi/v1/algoOrder", _M, 1, self.query_algo, t)
        add(app, "GET", "/fapi/v1/openAlgoOrders", _M, 1, self.open_algos, t)
        add(app, "GET", "/fapi/v3/account", _M, 5, self.account, t)
        for version in ("v2", "v3"):
            add(app, "GET", f"/fapi/{version}/positionRisk", _M, 5, self.position_risk, t)
        add(app, "POST", "/fapi/v1/leverage", _M, 1, self.leverage, t)
        add(app, "POST", "/fapi/v1/marginType", _M, 1, self.margin_type, t)
        add(app, "POST", "/fapi/v1/positionSide/dual", _M, 1, self.set_dual, t)
        add(app, "GET", "/fapi/v1/positionSide/dual", _M, 30, self.get_dual, t)
        add(app, "POST", "/fapi/v1/countdownCancelAll", _M, 10, self.countdown, t)
        add(app, "GET", "/fapi/v1/userTrades", _M, 5, self.user_trades, t)

    # ---- orders -----------------------------------------------------------------------------

    def _position_side(self, req: Request) -> None:
        side = (req.get("positionSide") or "BOTH").upper()
        if self.dual_side or side != "BOTH":
            raise BinanceError(400, -4061, "Order's position side does not match user's setting.")

    async def new_order(self, req: Request) -> dict:
        desk = self.desk
        symbol = symbol_param(req, desk.instruments)
        side = enum_param(req, "side", ("BUY", "SELL"), -1117, "Invalid side.")
        wire_type = req.require("type").upper()
        if wire_type in _CONDITIONAL:
            raise BinanceError(
                400, -4120, "Order type not supported for this endpoint. Please use the Algo "
                "Order API endpoints instead."
            )  # fmt: skip
        if wire_type not in ("LIMIT", "MARKET"):
            raise BinanceError(400, -1116, "Invalid orderType.")
        self._position_side(req)
        quantity = decimal_param(req, "quantity", required=True)
        assert quantity is not None
        if quantity <= 0:
            raise BinanceError(400, -4003, "Quantity less than or equal to zero.")
        reduce_only = bool_param(req, "reduceOnly")
        price: Decimal | None = None
        tif = "GTC"
        if wire_type == "LIMIT":
            tif = enum_param(req, "timeInForce", ("GTC", "IOC", "FOK", "GTX"), -1115,
                             "Invalid timeInForce.")  # fmt: skip
            price = decimal_param(req, "price", required=True)
        else:
            not_required(req, "price")
        resp_type = (req.get("newOrderRespType") or "ACK").upper()
        client_id = client_id_param(req, "newClientOrderId", FUTURES_CLIENT_ID_RE)
        client_id = client_id or f"sim-f-{next(self._ids):016d}"
        record = OrderRecord(
            _M, symbol, desk.new_id(), client_id, side, wire_type, tif, quantity,
            price or ZERO, ZERO, desk.now_ms(), reduce_only=reduce_only,
        )  # fmt: skip
        intent = OrderIntent(
            client_id, symbol, Side(side), OrderType(wire_type), quantity, price=price,
            time_in_force=TimeInForce(tif), reduce_only=reduce_only,
        )  # fmt: skip
        desk.place(record, intent)
        body = record.futures_body()
        if resp_type == "ACK":  # the acknowledgement is written before matching
            zero = fmt(ZERO, _M)
            body.update(status="NEW", executedQty=zero, cumQty=zero, cumQuote=zero, avgPrice=zero)
        return body

    def _find(self, req: Request, unknown_code: int, msg: str) -> OrderRecord:
        symbol = symbol_param(req, self.desk.instruments)
        order_id, client_id = req.get("orderId"), req.get("origClientOrderId")
        if order_id is None and client_id is None:
            raise BinanceError(400, -1102, "Either orderId or origClientOrderId must be sent.")
        try:
            return self.desk.find_order(symbol, order_id, client_id)
        except BinanceError:
            raise BinanceError(400, unknown_code, msg) from None

    async def cancel_order(self, req: Request) -> dict:
        record = self._find(req, -2011, "Unknown order sent.")
        if not record.is_open:
            raise BinanceError(400, -2011, "Unknown order sent.")
        self.desk.cancel(record)
        return record.futures_body()

    async def query_order(self, req: Request) -> dict:
        return self._find(req, -2013, "Order does not exist.").futures_body()

    async def open_orders(self, req: Request) -> list[dict]:
        symbol = symbol_param(req, self.desk.instruments) if req.get("symbol") else None
        return [o.futures_body() for o in self.desk.open_orders(symbol)]

    async def cancel_all(self, req: Request) -> dict:
        self.cancel_symbol(symbol_param(req, self.desk.instruments))
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def cancel_symbol(self, symbol: str) -> int:
        """Cancel every open order and algo order of symbol; return how many."""
        records: list[OrderRecord | AlgoRecord] = [
            *self.desk.open_orders(symbol),
            *self.desk.open_algos(symbol),
        ]
        for record in records:
            self.desk.cancel(record)
        return len(records)

    # ---- algo orders ------------------------------------------------------------------------

    async def new_algo(self, req: Request) -> dict:
        desk = self.desk
        if (req.require("algoType")).upper() != "CONDITIONAL":
            raise BinanceError(400, -1116, "Invalid algoType.")
        symbol = symbol_param(req, desk.instruments)
        side = enum_param(req, "side", ("BUY", "SELL"), -1117, "Invalid side.")
        wire_type = req.require("type").upper()
        if wire_type not in _ALGO_TYPES:
            raise BinanceError(400, -1116, "Invalid orderType.")
        self._position_side(req)
        close_position = bool_param(req, "closePosition")
        reduce_only = bool_param(req, "reduceOnly")
        inst = desk.instruments[symbol]
        if close_position:
            not_required(req, "quantity", "reduceOnly")
            max_qty = inst.max_qty if inst.max_qty > 0 else Decimal(1_000_000)
            venue_qty, quantity, reduce_only = max_qty - max_qty % inst.step_size, ZERO, True
        else:
            sent = decimal_param(req, "quantity", required=True)
            assert sent is not None
            if sent <= 0:
                raise BinanceError(400, -4003, "Quantity less than or equal to zero.")
            venue_qty = quantity = sent
        trailing = wire_type == "TRAILING_STOP_MARKET"
        trigger = decimal_param(req, "triggerPrice", required=not trailing)
        callback = decimal_param(req, "callbackRate", required=trailing)
        activate = decimal_param(req, "activatePrice") if trailing else None
        working_type = (req.get("workingType") or "CONTRACT_PRICE").upper()
        client_id = client_id_param(req, "clientAlgoId", FUTURES_CLIENT_ID_RE)
        client_id = client_id or f"sim-a-{next(self._ids):016d}"
        if any(a.client_algo_id == client_id for a in desk.open_algos()):
            raise BinanceError(400, -4116, "ClientOrderId is duplicated.")
        now = desk.now_ms()
        record = AlgoRecord(
            symbol, desk.new_id(), client_id, wire_type, side, quantity, trigger or ZERO,
            activate or ZERO, callback or ZERO, reduce_only, close_position, working_type,
            (req.get("timeInForce") or "GTC").upper(), now,
        )  # fmt: skip
        intent = OrderIntent(
            f"algo-{record.algo_id}", symbol, Side(side), _ALGO_TYPES[wire_type], venue_qty,
            stop_price=activate if trailing else trigger, callback_rate_pct=callback,
            reduce_only=reduce_only,
        )  # fmt: skip
        desk.place(record, intent)
        return record.body()

    def _find_algo(self, req: Request) -> AlgoRecord:
        algo_id, client_id = req.get("algoId"), req.get("clientAlgoId")
        if algo_id is None and client_id is None:
            raise BinanceError(400, -1102, "Either algoId or clientAlgoId must be sent.")
        matches = [
            a
            for a in self.desk.algos.values()
            if (algo_id is None or str(a.algo_id) == algo_id)
            and (client_id is None or a.client_algo_id == client_id)
        ]
        if not matches:
            raise BinanceError(400, -2013, "Order does not exist.")
        return max(matches, key=lambda a: a.algo_id)

    async def cancel_algo(self, req: Request) -> dict:
        algo = self._find_algo(req)
        if not algo.is_open:
            raise BinanceError(400, -2011, "Unknown order sent.")
        self.desk.cancel(algo)
        return {"algoId": algo.algo_id, "clientAlgoId": algo.client_algo_id, "code": "200",
                "msg": "success"}  # fmt: skip

    async def query_algo(self, req: Request) -> dict:
        return self._find_algo(req).body()

    async def open_algos(self, req: Request) -> list[dict]:
        symbol = symbol_param(req, self.desk.instruments) if req.get("symbol") else None
        return [a.body() for a in self.desk.open_algos(symbol)]

    # ---- account ----------------------------------------------------------------------------

    def _positions(self, symbol: str | None) -> list[dict]:
        desk = self.desk
        marks = desk.venue.marks()
        rows = []
        for sym, pos in desk.venue.positions().items():
            if symbol not in (None, sym):
                continue
            mark = marks.get(sym, pos.entry_price)
            notional = pos.qty * mark
            leverage = self.leverages.get(sym, int(desk.venue.config.leverage))
            rows.append(
                {"symbol": sym, "positionSide": "BOTH", "positionAmt": fmt(pos.qty, _M),
                 "entryPrice": fmt(pos.entry_price, _M), "breakEvenPrice": fmt(pos.entry_price, _M),
                 "markPrice": fmt(mark, _M), "unRealizedProfit": fmt((mark - pos.entry_price) * pos.qty, _M),
                 "liquidationPrice": "0", "isolatedMargin": "0", "notional": fmt(notional, _M),
                 "marginAsset": "USDT", "isolatedWallet": "0",
                 "initialMargin": fmt(abs(notional) / leverage, _M), "maintMargin": "0",
                 "positionInitialMargin": fmt(abs(notional) / leverage, _M),
                 "openOrderInitialMargin": "0", "adl": 0, "bidNotional": "0", "askNotional": "0",
                 "updateTime": desk.now_ms()}
            )  # fmt: skip
        return rows

    async def position_risk(self, req: Request) -> list[dict]:
        symbol = symbol_param(req, self.desk.instruments) if req.get("symbol") else None
        return self._positions(symbol)

    async def account(self, req: Request) -> dict:
        desk = self.desk
        account = desk.venue.account
        wallet = getattr(account, "wallet", ZERO)
        marks = desk.venue.marks()
        available = account.available(marks) if hasattr(account, "available") else wallet
        positions = self._positions(None)
        upnl = sum((Decimal(p["unRealizedProfit"]) for p in positions), ZERO)
        margin = sum((Decimal(p["initialMargin"]) for p in positions), ZERO)
        balance = desk.venue.balances().get("USDT")
        order_margin = (balance.locked if balance else ZERO) - margin
        asset = {
            "asset": "USDT", "walletBalance": fmt(wallet, _M), "unrealizedProfit": fmt(upnl, _M),
            "marginBalance": fmt(wallet + upnl, _M), "maintMargin": "0",
            "initialMargin": fmt(margin + order_margin, _M),
            "positionInitialMargin": fmt(margin, _M),
            "openOrderInitialMargin": fmt(order_margin, _M), "crossWalletBalance": fmt(wallet, _M),
            "crossUnPnl": fmt(upnl, _M), "availableBalance": fmt(available, _M),
            "maxWithdrawAmount": fmt(available, _M), "updateTime": desk.now_ms(),
        }  # fmt: skip
        return {
            "totalInitialMargin": asset["initialMargin"], "totalMaintMargin": "0",
            "totalWalletBalance": asset["walletBalance"],
            "totalUnrealizedProfit": asset["unrealizedProfit"],
            "totalMarginBalance": asset["marginBalance"],
            "totalPositionInitialMargin": asset["positionInitialMargin"],
            "totalOpenOrderInitialMargin": asset["openOrderInitialMargin"],
            "totalCrossWalletBalance": asset["crossWalletBalance"],
            "totalCrossUnPnl": asset["crossUnPnl"], "availableBalance": asset["availableBalance"],
            "maxWithdrawAmount": asset["maxWithdrawAmount"], "assets": [asset],
            "positions": [
                {k: p[k] for k in ("symbol", "positionSide", "positionAmt", "unRealizedProfit",
                                   "isolatedMargin", "notional", "isolatedWallet",
                                   "initialMargin", "maintMargin", "updateTime")}
                for p in positions
            ],
        }  # fmt: skip

    async def leverage(self, req: Request) -> dict:
        symbol = symbol_param(req, self.desk.instruments)
        text = req.require("leverage")
        if not text.isdigit() or not 1 <= int(text) <= 125:
            raise BinanceError(400, -4028, f"Leverage {text} is not valid")
        self.leverages[symbol] = int(text)
        account = self.desk.venue.account
        if hasattr(account, "leverage"):
            account.leverage = Decimal(int(text))  # the core has one leverage per account
        return {"leverage": int(text), "maxNotionalValue": "1000000", "symbol": symbol}

    async def margin_type(self, req: Request) -> dict:
        symbol = symbol_param(req, self.desk.instruments)
        wanted = enum_param(
            req, "marginType", ("ISOLATED", "CROSSED"), -1116, "Invalid marginType."
        )
        if self.margin_types.get(symbol, "CROSSED") == wanted:
            raise BinanceError(400, -4046, "No need to change margin type.")
        if self.desk.open_orders(symbol):
            raise BinanceError(
                400, -4047, "Margin type cannot be changed if there exists open orders."
            )
        if symbol in self.desk.venue.positions():
            raise BinanceError(
                400, -4048, "Margin type cannot be changed if there exists position."
            )
        self.margin_types[symbol] = wanted
        return {"code": 200, "msg": "success"}

    async def set_dual(self, req: Request) -> dict:
        wanted = bool_param(req, "dualSidePosition")
        if wanted == self.dual_side:
            raise BinanceError(400, -4059, "No need to change position side.")
        if self.desk.open_orders() or self.desk.open_algos():
            raise BinanceError(
                400, -4067, "Position side cannot be changed if there exists open orders."
            )
        if self.desk.venue.positions():
            raise BinanceError(
                400, -4068, "Position side cannot be changed if there exists position."
            )
        self.dual_side = wanted
        return {"code": 200, "msg": "success"}

    async def get_dual(self, req: Request) -> dict:
        return {"dualSidePosition": self.dual_side}

    async def countdown(self, req: Request) -> dict:
        symbol = symbol_param(req, self.desk.instruments)
        text = req.require("countdownTime")
        if not text.isdigit():
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'countdownTime'.")
        if int(text) == 0:
            self.countdowns.pop(symbol, None)
        else:
            self.countdowns[symbol] = self.api.sim.clock.monotonic_ns() + int(text) * 1_000_000
        return {"symbol": symbol, "countdownTime": text}

    def fire_countdowns(self) -> None:
        """Cancel every order of symbols whose dead-man switch ran out."""
        now = self.api.sim.clock.monotonic_ns()
        for symbol, deadline in list(self.countdowns.items()):
            if now >= deadline:
                del self.countdowns[symbol]
                self.cancel_symbol(symbol)

    async def user_trades(self, req: Request) -> list[dict]:
        symbol = symbol_param(req, self.desk.instruments)
        order_id = req.get("orderId")
        rows = []
        for record in self.desk.orders.values():
            if record.symbol != symbol or (order_id is not None and str(record.order_id) != order_id):
                continue
            for f in record.fills:
                rows.append(
                    {"buyer": record.side == "BUY", "commission": fmt(f.commission, _M),
                     "commissionAsset": f.commission_asset, "id": f.trade_id,
                     "maker": f.maker, "orderId": record.order_id, "price": fmt(f.price, _M),
                     "qty": fmt(f.qty, _M), "quoteQty": fmt(f.price * f.qty, _M),
                     "realizedPnl": fmt(f.realized_pnl, _M), "side": record.side,
                     "positionSide": "BOTH", "symbol": symbol, "time": f.ts_ms}
                )  # fmt: skip
        rows.sort(key=lambda r: int(str(r["id"])))
        return rows[: int(req.get("limit") or 500)]
