"""Exchange errors typed by what the caller must do next (DESIGN §4.7).

Every adapter maps its wire errors to exactly these five classes in one function, so callers
branch on the class, never on an exchange code:

* ``Retryable``      nothing happened; try again after ``retry_after_s`` (None: your own backoff).
* ``Rejected``       the exchange refused this request as sent; do not resend it unchanged.
* ``AuthFailed``     keys, permissions or signature are wrong; stop trading and alert.
* ``UnknownOutcome`` the request may or may not have taken effect; reconcile, never blind-resend.
* ``Fatal``          anything the adapter does not understand; stop and show the text.

No I/O here: these are values with an exception's ability to be raised.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class ExchangeError(Exception):
    """Base of every typed exchange error; `message` is the exchange's own text when it had one."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status  # HTTP status, None when no response arrived
        self.code = code  # exchange error code, None when the body carried none

    def _fields(self) -> str:
        return f"status={self.status}, code={self.code}, message={self.message!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._fields()})"


class Retryable(ExchangeError):
    """Nothing was executed; the same request may be sent again after `retry_after_s`."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        status: int | None = None,
        code: int | None = None,
        resync_clock: bool = False,
        banned_until_ms: int | None = None,
        orders_only: bool = False,
    ):
        super().__init__(message, status=status, code=code)
        self.retry_after_s = retry_after_s
        # The request was refused for its timestamp: refresh the server-time offset first.
        self.resync_clock = resync_clock
        # HTTP 418: the IP is banned from REST (not websockets) until this epoch ms.
        self.banned_until_ms = banned_until_ms
        # -1015: only the order-rate budget is exhausted; reads may continue.
        self.orders_only = orders_only

    def _fields(self) -> str:
        extra = f", retry_after_s={self.retry_after_s}"
        if self.resync_clock:
            extra += ", resync_clock=True"
        if self.banned_until_ms is not None:
            extra += f", banned_until_ms={self.banned_until_ms}"
        if self.orders_only:
            extra += ", orders_only=True"
        return super()._fields() + extra


class RejectReason(enum.StrEnum):
    """Why the exchange refused a request; decides how the caller reacts."""

    DUPLICATE = "DUPLICATE"  # the client order id is taken: the first attempt landed -> query it
    FILTER = "FILTER"  # an exchange filter failed; `filter_name` says which
    PRECISION = "PRECISION"  # more decimals than the symbol allows (-1111)
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    INSUFFICIENT_POSITION = "INSUFFICIENT_POSITION"
    WOULD_TAKE = "WOULD_TAKE"  # post-only (LIMIT_MAKER / GTX) would have crossed
    WOULD_TRIGGER = "WOULD_TRIGGER"  # stop/take-profit trigger already on the wrong side
    NOT_FILLED = "NOT_FILLED"  # FOK could not fill: an expected outcome, not a fault
    REDUCE_ONLY = "REDUCE_ONLY"  # reduce-only conflicts with position or open orders
    TRADING_RESTRICTED = "TRADING_RESTRICTED"  # only reduce-only allowed / account restricted
    MARKET_CLOSED = "MARKET_CLOSED"
    ACTION_DISABLED = "ACTION_DISABLED"
    UNSUPPORTED_ORDER_TYPE = "UNSUPPORTED_ORDER_TYPE"  # e.g. futures -4120: use the algo endpoint
    ORDER_NOT_OPEN = "ORDER_NOT_OPEN"  # cancel of an order that is filled, cancelled or unknown
    NO_SUCH_ORDER = "NO_SUCH_ORDER"  # query found nothing (may not be visible yet)
    ORDER_ARCHIVED = "ORDER_ARCHIVED"
    NO_CHANGE_NEEDED = "NO_CHANGE_NEEDED"  # setting already has that value: treat as success
    POSITION_MODE = "POSITION_MODE"  # positionSide does not match the account's mode
    BAD_SYMBOL = "BAD_SYMBOL"
    BAD_PARAMS = "BAD_PARAMS"  # a bug in what we sent: fix the code, do not retry
    INVALID_LISTEN_KEY = "INVALID_LISTEN_KEY"  # create a new listenKey
    OTHER = "OTHER"


class Rejected(ExchangeError):
    """The exchange refused this request; resending it unchanged fails the same way."""

    def __init__(
        self,
        reason: RejectReason,
        message: str,
        *,
        code: int | None = None,
        status: int | None = None,
        filter_name: str | None = None,
    ):
        super().__init__(message, status=status, code=code)
        self.reason = reason
        self.filter_name = filter_name  # Binance filter type for FILTER, e.g. "LOT_SIZE"

    def _fields(self) -> str:
        name = f", filter_name={self.filter_name!r}" if self.filter_name else ""
        return f"reason={self.reason.value}{name}, " + super()._fields()


class AuthFailed(ExchangeError):
    """Keys, signature, IP whitelist or permissions are wrong; stop trading and alert."""


@dataclass(frozen=True, slots=True)
class SentRequest:
    """What went out on the wire, minus the signature: enough to reconcile an unknown outcome."""

    request_id: str
    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def client_order_id(self) -> str | None:
        """Return the client order id the request carried (new or original), if any."""
        for key in ("newClientOrderId", "origClientOrderId", "clientAlgoId"):
            if key in self.params:
                return self.params[key]
        return None


class UnknownOutcome(ExchangeError):
    """The request may have been executed; reconcile by client order id before any resend."""

    def __init__(
        self,
        message: str,
        *,
        sent: SentRequest | None,
        status: int | None = None,
        code: int | None = None,
    ):
        super().__init__(message, status=status, code=code)
        self.sent = sent

    @property
    def request_id(self) -> str | None:
        return self.sent.request_id if self.sent else None

    @property
    def client_order_id(self) -> str | None:
        return self.sent.client_order_id if self.sent else None

    def _fields(self) -> str:
        return f"sent={self.sent!r}, " + super()._fields()


class Fatal(ExchangeError):
    """An answer the adapter does not understand; stop and surface the exchange's text."""
