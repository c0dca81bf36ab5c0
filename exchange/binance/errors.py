"""The one place Binance REST answers become typed errors (DESIGN §4.7, API reference §5).

`classify` takes what came back (HTTP status, Binance code, message; or no response at all) and
whether the request placed an order, and returns the error the caller must act on. The order
flag matters because 5xx and transport failures leave an order's fate unknown (§5.3: reconcile,
never blind-resend) while a read can simply be repeated.
"""

from __future__ import annotations

import re

from engine.model import Market
from exchange.errors import (
    AuthFailed,
    ExchangeError,
    Fatal,
    Rejected,
    RejectReason,
    Retryable,
    SentRequest,
    UnknownOutcome,
)

_BANNED_UNTIL_RE = re.compile(r"banned until (\d{10,})")
_FILTER_RE = re.compile(r"Filter failure: ([A-Z_]+)")

AUTH_CODES = frozenset({-1002, -1022, -2008, -2014, -2015})
# Execution status unknown: backend timeout, unexpected response, internal error, disconnected.
UNKNOWN_CODES = frozenset({-1000, -1001, -1006, -1007})

# USDⓈ-M filter codes carry no "Filter failure" text; name the filter they enforce.
FUTURES_FILTER_CODES: dict[int, str] = {
    -4003: "LOT_SIZE",  # quantity <= 0
    -4004: "LOT_SIZE",  # quantity < minQty
    -4005: "LOT_SIZE",  # quantity > maxQty
    -4013: "PRICE_FILTER",  # price < minPrice
    -4014: "PRICE_FILTER",  # price not a multiple of tickSize
    -4016: "PERCENT_PRICE",  # price above the mark-price band
    -4024: "PERCENT_PRICE",  # price below the mark-price band
    -4131: "PERCENT_PRICE",  # market order: counterparty best price outside the band
    -4164: "MIN_NOTIONAL",  # notional < MIN_NOTIONAL.notional (unless reduceOnly)
}

# -2010 NEW_ORDER_REJECTED carries its reason only in the message (spot and futures).
_MESSAGE_REASONS: tuple[tuple[str, RejectReason], ...] = (
    ("duplicate order", RejectReason.DUPLICATE),
    ("insufficient balance", RejectReason.INSUFFICIENT_BALANCE),
    ("immediately match and take", RejectReason.WOULD_TAKE),
    ("would trigger immediately", RejectReason.WOULD_TRIGGER),
    ("market is closed", RejectReason.MARKET_CLOSED),
    ("action is disabled", RejectReason.ACTION_DISABLED),
)

_COMMON_CODES: dict[int, RejectReason] = {
    -1111: RejectReason.PRECISION,
    -1121: RejectReason.BAD_SYMBOL,
    -1125: RejectReason.INVALID_LISTEN_KEY,
    -2011: RejectReason.ORDER_NOT_OPEN,
    -2013: RejectReason.NO_SUCH_ORDER,
}
_FUTURES_CODES: dict[int, RejectReason] = {
    -2018: RejectReason.INSUFFICIENT_BALANCE,
    -2019: RejectReason.INSUFFICIENT_MARGIN,
    -2021: RejectReason.WOULD_TRIGGER,
    -2022: RejectReason.REDUCE_ONLY,
    -2024: RejectReason.INSUFFICIENT_POSITION,
    -2026: RejectReason.UNSUPPORTED_ORDER_TYPE,  # REDUCE_ONLY_ORDER_TYPE_NOT_SUPPORTED
    -4015: RejectReason.BAD_PARAMS,  # client order id longer than 36 characters
    -4046: RejectReason.NO_CHANGE_NEEDED,  # margin type already set
    -4059: RejectReason.NO_CHANGE_NEEDED,  # position side already set
    -4061: RejectReason.POSITION_MODE,
    -4116: RejectReason.DUPLICATE,  # DUPLICATED_CLIENT_ORDER_ID: the first attempt landed
    -4118: RejectReason.REDUCE_ONLY,
    -4120: RejectReason.UNSUPPORTED_ORDER_TYPE,  # conditional types go to /fapi/v1/algoOrder
    -4400: RejectReason.TRADING_RESTRICTED,
    -4401: RejectReason.TRADING_RESTRICTED,
    -5021: RejectReason.NOT_FILLED,  # FOK could not fill
    -5022: RejectReason.WOULD_TAKE,  # GTX (post-only) would take
}
_SPOT_CODES: dict[int, RejectReason] = {
    -2026: RejectReason.ORDER_ARCHIVED,
}


def banned_until_ms(message: str) -> int | None:
    """Return the ban end (epoch ms) from "IP banned until 1659146400000", if the text has one."""
    match = _BANNED_UNTIL_RE.search(message)
    return int(match.group(1)) if match else None


def classify(
    status: int | None,
    code: int | None,
    message: str,
    *,
    market: Market,
    order_placement: bool,
    retry_after_s: float | None = None,
    sent: SentRequest | None = None,
    reached_server: bool = True,
) -> ExchangeError:
    """Map one failed Binance REST exchange to the error type the caller must act on.

    `status` None means no HTTP response (timeout, reset); `reached_server` False means the
    connection was never made, so nothing can have been executed. A 2xx status here means the
    body could not be read, which leaves the outcome as unknown as a 5xx.
    """
    text = message or ""
    lowered = text.lower()

    def unknown_or_retry(why: str) -> ExchangeError:
        if order_placement:
            return UnknownOutcome(why, sent=sent, status=status, code=code)
        return Retryable(why, status=status, code=code)

    if status is None:
        if not reached_server:
            return Retryable(text or "connection failed", code=code)
        return unknown_or_retry(text or "no response")

    # Rate limits and bans come first: their codes (-1003) are shared with other statuses.
    if status == 418:
        return Retryable(
            text,
            retry_after_s=retry_after_s,
            status=status,
            code=code,
            banned_until_ms=banned_until_ms(text),
        )
    if status == 429 or code in (-1003, -1015):
        return Retryable(
            text,
            retry_after_s=retry_after_s,
            status=status,
            code=code,
            orders_only=code == -1015,
        )
    if code in (-1021, -5028):
        # Not executed; the timestamp was outside recvWindow: resync the offset, then re-sign.
        return Retryable(text, retry_after_s=0.0, status=status, code=code, resync_clock=True)
    if status == 401 or code in AUTH_CODES:
        return AuthFailed(text, status=status, code=code)
    if code == -1008:
        # Futures: "Request throttled by system-level protection" and spot SERVER_BUSY are
        # refused before execution.
        return Retryable(text, retry_after_s=retry_after_s, status=status, code=code)
    if code in UNKNOWN_CODES:
        return unknown_or_retry(text)
    if status >= 500 or status == 408 or 200 <= status < 300:
        # USDⓈ-M 503 "Service Unavailable." and "Internal error; ... try again." are certain
        # failures; everything else from the back end (notably 503 "Unknown error, please check
        # your request or try again later.") may have executed.
        if "service unavailable" in lowered or "internal error; unable to process" in lowered:
            return Retryable(text, retry_after_s=retry_after_s, status=status, code=code)
        return unknown_or_retry(text or f"HTTP {status}")
    if status == 403:
        # WAF block (rate or security rule); the body is often an HTML page, not JSON.
        return Retryable(
            "HTTP 403 (WAF): " + text[:200], retry_after_s=retry_after_s, status=status, code=code
        )
    rejected = _rejected(code, text, lowered, market, status)
    if rejected is not None:
        return rejected
    return Fatal(text or f"HTTP {status}", status=status, code=code)


def _rejected(
    code: int | None, text: str, lowered: str, market: Market, status: int
) -> Rejected | None:
    filter_match = _FILTER_RE.search(text)
    if filter_match is not None:
        return Rejected(
            RejectReason.FILTER, text, code=code, status=status, filter_name=filter_match.group(1)
        )
    if code is None:
        return None
    if market is Market.USDM and code in FUTURES_FILTER_CODES:
        return Rejected(
            RejectReason.FILTER,
            text,
            code=code,
            status=status,
            filter_name=FUTURES_FILTER_CODES[code],
        )
    if code == -2010 or code == -1013:
        for needle, reason in _MESSAGE_REASONS:
            if needle in lowered:
                return Rejected(reason, text, code=code, status=status)
        return Rejected(RejectReason.OTHER, text, code=code, status=status)
    venue_codes = _FUTURES_CODES if market is Market.USDM else _SPOT_CODES
    known = venue_codes.get(code) or _COMMON_CODES.get(code)
    if known is not None:
        return Rejected(known, text, code=code, status=status)
    if -1199 <= code <= -1100:
        return Rejected(RejectReason.BAD_PARAMS, text, code=code, status=status)
    return None
