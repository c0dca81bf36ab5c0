"""Parameter checks shared by the spot and USDⓈ-M order endpoints (Binance's codes and texts)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from exchange.sim.rest import BinanceError
from exchange.sim.trading.api import Request

_DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
SPOT_CLIENT_ID_RE = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")
FUTURES_CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")


def decimal_param(req: Request, name: str, required: bool = False) -> Decimal | None:
    """Return a decimal parameter, None when absent (or -1102 when required), -1100 if malformed."""
    text = req.require(name) if required else req.get(name)
    if text is None:
        return None
    if not _DECIMAL_RE.match(text):
        raise BinanceError(
            400,
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is "
            "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        )
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None


def not_required(req: Request, *names: str) -> None:
    """Raise -1106 when a parameter the order type does not take was sent."""
    for name in names:
        if req.get(name) is not None:
            raise BinanceError(400, -1106, f"Parameter '{name}' sent when not required.")


def enum_param(req: Request, name: str, allowed: tuple[str, ...], code: int, msg: str) -> str:
    """Return a mandatory enum parameter, or raise code/msg when it is not one of allowed."""
    value = req.require(name).upper()
    if value not in allowed:
        raise BinanceError(400, code, msg)
    return value


def bool_param(req: Request, name: str) -> bool:
    """Return a "true"/"false" parameter (absent: False)."""
    value = req.get(name)
    if value is None:
        return False
    if value.lower() not in ("true", "false"):
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.")
    return value.lower() == "true"


def client_id_param(req: Request, name: str, pattern: re.Pattern[str]) -> str | None:
    """Return a client order id parameter, -1100 when it does not match Binance's pattern."""
    value = req.get(name)
    if value is not None and not pattern.match(value):
        if len(value) > 36 and pattern is FUTURES_CLIENT_ID_RE:
            raise BinanceError(400, -4015, "Client order id is not valid.")
        raise BinanceError(
            400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
            f"'{pattern.pattern}'."
        )  # fmt: skip
    return value


def symbol_param(req: Request, known: dict) -> str:
    """Return the symbol parameter, -1121 when the market does not list it."""
    symbol = req.require("symbol").upper()
    if symbol not in known:
        raise BinanceError(400, -1121, "Invalid symbol.")
    return symbol
