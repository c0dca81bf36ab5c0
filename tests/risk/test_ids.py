"""Client order ids: deterministic, <= 36 chars, valid on both venues, parseable back."""

from __future__ import annotations

import re

import pytest

from engine.orders import OrderRole
from risk.ids import client_order_id, parse_client_order_id

BINANCE_SPOT_ID = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")
BINANCE_FUTURES_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")


def test_readable_ids() -> None:
    assert client_order_id("tl", "BTCUSDT", 42, OrderRole.ENTRY) == "tl-BTCUSDT-42-en"
    assert client_order_id("tl", "BTCUSDT", 42, OrderRole.STOP_LOSS, level=1) == "tl-BTCUSDT-42-sl1"
    assert client_order_id("tl", "BTCUSDT", 42, OrderRole.STOP_LOSS, 2, 3) == "tl-BTCUSDT-42-sl2r3"
    assert client_order_id("tl", "BTCUSDT", 42, OrderRole.TAKE_PROFIT, 1) == "tl-BTCUSDT-42-tp1"


def test_long_ids_are_shortened_deterministically() -> None:
    long_one = client_order_id(
        "abcdef", "1000SHIBUSDT_230929X", 1234567890, OrderRole.TRAILING_STOP, 3, 12
    )
    again = client_order_id(
        "abcdef", "1000SHIBUSDT_230929X", 1234567890, OrderRole.TRAILING_STOP, 3, 12
    )
    other = client_order_id(
        "abcdef", "1000SHIBUSDT_230929Y", 1234567890, OrderRole.TRAILING_STOP, 3, 12
    )
    assert long_one == again != other
    assert len(long_one) <= 36 and "SHIB" not in long_one


@pytest.mark.parametrize("role", list(OrderRole))
def test_every_role_gives_an_id_binance_accepts_and_that_parses_back(role: OrderRole) -> None:
    for symbol in ("BTCUSDT", "BTCUSDT_210924", "1000SHIBUSDT_230929XY"):
        text = client_order_id("tl", symbol, 987654321, role, 2, 5)
        assert BINANCE_SPOT_ID.match(text) and BINANCE_FUTURES_ID.match(text)
        parsed = parse_client_order_id(text)
        assert parsed is not None and (parsed.seq, parsed.role, parsed.level, parsed.revision) == (
            987654321,
            role,
            2,
            5,
        )


def test_foreign_ids_do_not_parse() -> None:
    assert parse_client_order_id("web_8b3f0c2d1a") is None
    assert parse_client_order_id("autoclose-123") is None


def test_invalid_parts_raise() -> None:
    with pytest.raises(ValueError):
        client_order_id("t l", "BTCUSDT", 1, OrderRole.ENTRY)
    with pytest.raises(ValueError):
        client_order_id("tl", "BTCUSDT", -1, OrderRole.ENTRY)
