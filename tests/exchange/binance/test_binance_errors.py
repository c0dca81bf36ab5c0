"""Binance error mapping, table-driven over the documented statuses, codes and messages (§5)."""

from __future__ import annotations

import pytest

from engine.model import Market
from exchange.binance.errors import banned_until_ms, classify
from exchange.errors import (
    AuthFailed,
    Fatal,
    Rejected,
    RejectReason,
    Retryable,
    SentRequest,
    UnknownOutcome,
)

S, F = Market.SPOT, Market.USDM
BAN_MSG = (
    "Way too much request weight used; IP banned until 1659146400000. "
    "Please use WebSocket Streams for live updates to avoid bans."
)
UNKNOWN_503 = "Unknown error, please check your request or try again later."
THROTTLED_1008 = (
    "Request throttled by system-level protection. Reduce-only/close-position orders are "
    "exempt. Please try again."
)
TIMEOUT_1007 = (
    "Timeout waiting for response from backend server. Send status unknown; "
    "execution status unknown."
)

# (market, status, code, message, order_placement, expected type, reason, filter name)
REJECTIONS = [
    (S, 400, -2010, "Duplicate order sent.", True, RejectReason.DUPLICATE, None),
    (F, 400, -4116, "ClientOrderId is duplicated.", True, RejectReason.DUPLICATE, None),
    (S, 400, -1013, "Filter failure: LOT_SIZE", True, RejectReason.FILTER, "LOT_SIZE"),
    (S, 400, -1013, "Filter failure: PRICE_FILTER", True, RejectReason.FILTER, "PRICE_FILTER"),
    (S, 400, -1013, "Filter failure: NOTIONAL", True, RejectReason.FILTER, "NOTIONAL"),
    (S, 400, -1013, "Filter failure: MIN_NOTIONAL", True, RejectReason.FILTER, "MIN_NOTIONAL"),
    (S, 400, -2010, "Filter failure: MAX_NUM_ORDERS", True, RejectReason.FILTER, "MAX_NUM_ORDERS"),
    (
        S,
        400,
        -1013,
        "Filter failure: MARKET_LOT_SIZE",
        True,
        RejectReason.FILTER,
        "MARKET_LOT_SIZE",
    ),
    (F, 400, -4003, "Quantity less than or equal to zero.", True, RejectReason.FILTER, "LOT_SIZE"),
    (F, 400, -4004, "Quantity less than min quantity.", True, RejectReason.FILTER, "LOT_SIZE"),
    (F, 400, -4005, "Quantity greater than max quantity.", True, RejectReason.FILTER, "LOT_SIZE"),
    (F, 400, -4013, "Price less than min price.", True, RejectReason.FILTER, "PRICE_FILTER"),
    (
        F,
        400,
        -4014,
        "Price not increased by tick size.",
        True,
        RejectReason.FILTER,
        "PRICE_FILTER",
    ),
    (
        F,
        400,
        -4016,
        "Limit price can't be higher than 70000.",
        True,
        RejectReason.FILTER,
        "PERCENT_PRICE",
    ),
    (
        F,
        400,
        -4024,
        "Limit price can't be lower than 60000.",
        True,
        RejectReason.FILTER,
        "PERCENT_PRICE",
    ),
    (
        F,
        400,
        -4164,
        "Order's notional must be no smaller than 5.0 (unless you choose reduce only)",
        True,
        RejectReason.FILTER,
        "MIN_NOTIONAL",
    ),
    (
        S,
        400,
        -2010,
        "Account has insufficient balance for requested action.",
        True,
        RejectReason.INSUFFICIENT_BALANCE,
        None,
    ),
    (
        S,
        400,
        -2010,
        "Order would immediately match and take.",
        True,
        RejectReason.WOULD_TAKE,
        None,
    ),
    (S, 400, -2010, "Order would trigger immediately.", True, RejectReason.WOULD_TRIGGER, None),
    (S, 400, -2010, "Market is closed.", True, RejectReason.MARKET_CLOSED, None),
    (
        S,
        400,
        -2010,
        "This action is disabled on this account.",
        True,
        RejectReason.ACTION_DISABLED,
        None,
    ),
    (S, 400, -2010, "Something new.", True, RejectReason.OTHER, None),
    (S, 400, -1111, "Precision is over the maximum defined for this asset.", True,
     RejectReason.PRECISION, None),
    (S, 400, -1121, "Invalid symbol.", False, RejectReason.BAD_SYMBOL, None),
    (S, 400, -1102, "Mandatory parameter 'price' was not sent.", True, RejectReason.BAD_PARAMS,
     None),
    (S, 400, -2011, "Unknown order sent.", False, RejectReason.ORDER_NOT_OPEN, None),
    (S, 400, -2013, "Order does not exist.", False, RejectReason.NO_SUCH_ORDER, None),
    (S, 400, -2026, "Order was canceled or expired with no executed qty over 90 days ago.",
     False, RejectReason.ORDER_ARCHIVED, None),
    (F, 400, -2026, "ReduceOnly Order type is not supported.", True,
     RejectReason.UNSUPPORTED_ORDER_TYPE, None),
    (F, 400, -2019, "Margin is insufficient.", True, RejectReason.INSUFFICIENT_MARGIN, None),
    (F, 400, -2021, "Order would immediately trigger.", True, RejectReason.WOULD_TRIGGER, None),
    (F, 400, -2022, "ReduceOnly Order is rejected.", True, RejectReason.REDUCE_ONLY, None),
    (F, 400, -4120, "Order type not supported for this endpoint.", True, RejectReason.UNSUPPORTED_ORDER_TYPE, None),
    (F, 400, -4046, "No need to change margin type.", False, RejectReason.NO_CHANGE_NEEDED, None),
    (F, 400, -4059, "No need to change position side.", False, RejectReason.NO_CHANGE_NEEDED,
     None),
    (F, 400, -4061, "Order's position side does not match user's setting.", True,
     RejectReason.POSITION_MODE, None),
    (F, 400, -5021, "The FOK order has been rejected.", True, RejectReason.NOT_FILLED, None),
    (F, 400, -5022, "The Post Only order will be rejected.", True, RejectReason.WOULD_TAKE, None),
    (F, 400, -1125, "This listenKey does not exist.", False, RejectReason.INVALID_LISTEN_KEY,
     None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("market", "status", "code", "message", "order", "reason", "filter_name"), REJECTIONS
)
def test_rejections(market, status, code, message, order, reason, filter_name) -> None:
    error = classify(status, code, message, market=market, order_placement=order)
    assert type(error) is Rejected
    assert error.reason is reason
    assert error.filter_name == filter_name
    assert (error.code, error.status, error.message) == (code, status, message)


# (market, status, code, message, order_placement, retry_after_s)
RETRYABLE = [
    (S, 429, -1003, "Too much request weight used; current limit is 6000.", False, 7.0),
    (S, 429, -1003, "Too much request weight used.", True, 7.0),
    (F, 429, -1015, "Too many new orders; current limit is 1200 orders per 1 MINUTE.", True, 3.0),
    (F, 503, None, "Service Unavailable.", True, None),
    (F, 500, None, "Internal error; unable to process your request. Please try again.", True,
     None),
    (F, 503, -1008, THROTTLED_1008, True, None),
    (S, 503, None, UNKNOWN_503, False, None),  # reads: just repeat
    (S, 500, -1007, TIMEOUT_1007, False, None),
    (S, 400, -1000, "An unknown error occurred while processing the request.", False, None),
    (S, 403, None, "<html>403 Forbidden</html>", True, None),
]  # fmt: skip


@pytest.mark.parametrize(("market", "status", "code", "message", "order", "after"), RETRYABLE)
def test_retryable(market, status, code, message, order, after) -> None:
    error = classify(
        status, code, message, market=market, order_placement=order, retry_after_s=after
    )
    assert type(error) is Retryable
    assert error.retry_after_s == after
    assert not error.resync_clock and error.banned_until_ms is None


def test_order_rate_limit_blocks_orders_only() -> None:
    weight = classify(429, -1003, "Too much request weight", market=S, order_placement=True)
    orders = classify(429, -1015, "Too many new orders", market=F, order_placement=True)
    assert isinstance(weight, Retryable) and isinstance(orders, Retryable)
    assert not weight.orders_only and orders.orders_only


def test_418_carries_the_ban_end() -> None:
    error = classify(418, -1003, BAN_MSG, market=S, order_placement=True, retry_after_s=120)
    assert type(error) is Retryable
    assert error.banned_until_ms == 1659146400000
    assert error.retry_after_s == 120
    assert banned_until_ms("nothing here") is None


@pytest.mark.parametrize(("code", "market"), [(-1021, S), (-1021, F), (-5028, F)])
@pytest.mark.parametrize("order", [True, False])
def test_timestamp_errors_ask_for_clock_resync(code, market, order) -> None:
    msg = "Timestamp for this request is outside of the recvWindow."
    error = classify(400, code, msg, market=market, order_placement=order)
    assert type(error) is Retryable and error.resync_clock


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, -1022, "Signature for this request is not valid."),
        (400, -2014, "API-key format invalid."),
        (401, -2015, "Invalid API-key, IP, or permissions for action."),
        (401, None, ""),
        (400, -1002, "You are not authorized to execute this request."),
    ],
)
def test_auth_failures(status, code, message) -> None:
    for market in (S, F):
        error = classify(status, code, message, market=market, order_placement=True)
        assert type(error) is AuthFailed


SENT = SentRequest("7", "POST", "/fapi/v1/order", {"symbol": "BTCUSDT", "newClientOrderId": "x1"})

# (status, code, message): on an order placement the outcome is unknown; on a read, retry.
UNKNOWN = [
    (503, None, UNKNOWN_503),
    (503, -1001, "Internal error; Request occur unknown error."),
    (500, -1007, TIMEOUT_1007),
    (408, None, "Request timeout"),
    (502, None, "<html>Bad Gateway</html>"),
    (504, None, ""),
    (400, -1006, "An unexpected response was received from the message bus."),
    (400, -1000, "An unknown error occurred while processing the request."),
    (200, None, "truncated body"),
]


@pytest.mark.parametrize(("status", "code", "message"), UNKNOWN)
def test_backend_failures_on_orders_are_unknown_outcome(status, code, message) -> None:
    for market in (S, F):
        error = classify(status, code, message, market=market, order_placement=True, sent=SENT)
        assert type(error) is UnknownOutcome
        assert error.sent is SENT and error.client_order_id == "x1" and error.request_id == "7"
        read = classify(status, code, message, market=market, order_placement=False)
        assert type(read) is Retryable


def test_transport_failures() -> None:
    lost = classify(None, None, "timeout", market=F, order_placement=True, sent=SENT)
    assert type(lost) is UnknownOutcome and lost.sent is SENT and lost.status is None
    read = classify(None, None, "timeout", market=F, order_placement=False)
    assert type(read) is Retryable
    # Never connected: nothing can have been executed, even for an order.
    refused = classify(None, None, "refused", market=F, order_placement=True, reached_server=False)
    assert type(refused) is Retryable


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, -9999, "Brand new error."),
        (404, None, "<html>Not Found</html>"),
        (409, -2021, "Order cancel-replace partially failed."),
        (400, -4047, "Margin type cannot be changed if there exists open orders."),
    ],
)
def test_everything_else_is_fatal_with_the_text(status, code, message) -> None:
    error = classify(status, code, message, market=S, order_placement=True)
    assert type(error) is Fatal
    assert error.message == message and error.code == code and error.status == status


def test_futures_filter_codes_mean_nothing_on_spot() -> None:
    assert type(classify(400, -4164, "x", market=S, order_placement=True)) is Fatal


def test_reprs_name_the_type_and_fields() -> None:
    error = classify(400, -1013, "Filter failure: LOT_SIZE", market=S, order_placement=True)
    assert repr(error) == (
        "Rejected(reason=FILTER, filter_name='LOT_SIZE', status=400, code=-1013, "
        "message='Filter failure: LOT_SIZE')"
    )
