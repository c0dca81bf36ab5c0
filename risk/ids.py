"""Deterministic client order ids: `<prefix>-<symbol>-<seq>-<role><level>[r<revision>]`.

One entry's protective orders share its sequence number, so every id says which position it
belongs to and why it exists (`tl-BTCUSDT-42-en`, `tl-BTCUSDT-42-sl1`, `tl-BTCUSDT-42-sl1r1` after
the stop moved). Binance allows 36 characters (`^[.A-Z:/a-z0-9_-]{1,36}$` on futures,
`^[a-zA-Z0-9-_]{1,36}$` on spot); a symbol too long to fit is replaced by its CRC-32 in hex, which
keeps the id deterministic.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from engine.orders import OrderRole

MAX_LEN = 36
ROLE_CODES: dict[OrderRole, str] = {
    OrderRole.ENTRY: "en",
    OrderRole.EXIT: "ex",
    OrderRole.STOP_LOSS: "sl",
    OrderRole.TAKE_PROFIT: "tp",
    OrderRole.TRAILING_STOP: "ts",
    OrderRole.DCA: "dc",
    OrderRole.FLATTEN: "fl",
}
_ROLES_BY_CODE = {code: role for role, code in ROLE_CODES.items()}
_VALID = re.compile(r"^[a-zA-Z0-9_-]{1,36}$")  # the stricter spot alphabet, valid on both
_PARSE = re.compile(r"^([A-Za-z0-9]+)-([A-Z0-9_]+|[0-9a-f]{8})-(\d+)-([a-z]{2})(\d*)(?:r(\d+))?$")


@dataclass(frozen=True, slots=True)
class ParsedId:
    prefix: str
    symbol_part: str  # the symbol, or its CRC-32 hex when the symbol did not fit
    seq: int
    role: OrderRole
    level: int
    revision: int


def client_order_id(
    prefix: str, symbol: str, seq: int, role: OrderRole, level: int = 0, revision: int = 0
) -> str:
    """Return the client order id of one order; the same arguments always give the same id."""
    if seq < 0 or level < 0 or revision < 0:
        raise ValueError("seq, level and revision must be >= 0")
    code = ROLE_CODES[role] + (str(level) if level else "") + (f"r{revision}" if revision else "")
    text = f"{prefix}-{symbol}-{seq}-{code}"
    if len(text) > MAX_LEN:
        text = f"{prefix}-{zlib.crc32(symbol.encode()):08x}-{seq}-{code}"
    if not _VALID.match(text):
        raise ValueError(
            f"cannot build a valid client order id from {prefix!r}, {symbol!r}, {seq}: {text!r}"
        )
    return text


def parse_client_order_id(text: str) -> ParsedId | None:
    """Return the parts of an id built by client_order_id, or None for a foreign id."""
    match = _PARSE.match(text)
    if match is None or match.group(4) not in _ROLES_BY_CODE:
        return None
    prefix, symbol_part, seq, code, level, revision = match.groups()
    return ParsedId(
        prefix, symbol_part, int(seq), _ROLES_BY_CODE[code], int(level or 0), int(revision or 0)
    )
