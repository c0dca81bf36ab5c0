"""Signing: Binance's documented vectors, percent-encoding of what is signed and sent, Ed25519."""

from __future__ import annotations

import base64
import hashlib
import hmac
from decimal import Decimal
from urllib.parse import unquote

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from exchange.binance.auth import (
    BinanceKeys,
    Ed25519Signer,
    HmacSigner,
    encode_params,
    format_param,
    sign_request,
    ws_api_payload,
)

# API reference §3.2 (SPOT-REST, UM general info, SPOT-WSAPI).
SPOT_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
SPOT_PAYLOAD = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    "&recvWindow=5000&timestamp=1499827319559"
)
SPOT_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
FUTURES_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
FUTURES_PAYLOAD = (
    "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC"
    "&recvWindow=5000&timestamp=1591702613943"
)
FUTURES_SIGNATURE = "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
WS_API_SIGNATURE = "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"


def _pairs(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split("&"))


def test_spot_hmac_vector_from_params() -> None:
    params = {
        "symbol": "LTCBTC",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": Decimal(1),
        "price": Decimal("0.1"),
        "recvWindow": 5000,
        "timestamp": 1499827319559,
    }
    query = encode_params(params)
    assert query == SPOT_PAYLOAD
    signed = sign_request(query, "", HmacSigner(SecretStr(SPOT_SECRET)))
    assert signed.signed_text == SPOT_PAYLOAD
    assert signed.query == f"{SPOT_PAYLOAD}&signature={SPOT_SIGNATURE}"
    assert signed.body == ""


def test_futures_hmac_vector_in_body() -> None:
    signed = sign_request("", FUTURES_PAYLOAD, HmacSigner(FUTURES_SECRET))
    assert signed.body == f"{FUTURES_PAYLOAD}&signature={FUTURES_SIGNATURE}"
    assert signed.query == ""


def test_mixed_query_and_body_signs_their_concatenation() -> None:
    # Futures example 3: "...timeInForce=GTC" + "quantity=1..." is signed with no separator.
    query, body = (
        FUTURES_PAYLOAD.split("&quantity=")[0],
        "quantity=" + FUTURES_PAYLOAD.split("&quantity=")[1],
    )
    signed = sign_request(query, body, HmacSigner(FUTURES_SECRET))
    expected = hmac.new(
        FUTURES_SECRET.encode(), (query + body).encode(), hashlib.sha256
    ).hexdigest()
    assert signed.signed_text == query + body
    assert "&" not in signed.signed_text[len(query) - 3 : len(query) + 3]  # "GTCqua"
    assert signed.body.endswith(f"&signature={expected}")
    assert signed.query == query


def test_ws_api_sorted_vector() -> None:
    params = {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01000000",
        "price": "52000.00",
        "recvWindow": 100,
        "timestamp": 1645423376532,
        "apiKey": "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
        "signature": "ignored",
    }
    payload = ws_api_payload(params)
    assert payload.startswith("apiKey=vmPUZE6m") and "signature" not in payload
    assert HmacSigner(SPOT_SECRET).sign(payload.encode()) == WS_API_SIGNATURE


def test_non_ascii_is_percent_encoded_before_signing() -> None:
    # Since 2026-01-15 the signature covers the percent-encoded bytes, which are also what is sent.
    params = {"symbol": "１２３４５６", "side": "BUY", "newClientOrderId": "a b/c+d"}
    query = encode_params(params)
    assert query == (
        "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96"
        "&side=BUY&newClientOrderId=a%20b%2Fc%2Bd"
    )
    assert {k: unquote(v) for k, v in _pairs(query).items()} == params
    signed = sign_request(query, "", HmacSigner(SPOT_SECRET))
    expected = hmac.new(SPOT_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    assert signed.query == f"{query}&signature={expected}"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1E+2"), "100"),
        (Decimal("0.00001000"), "0.00001"),
        (Decimal("1E-8"), "0.00000001"),
        (Decimal("65000.10"), "65000.1"),
        (Decimal("0.000"), "0"),
        (Decimal("-0"), "0"),
        (True, "true"),
        (False, "false"),
        (5000, "5000"),
        (["BTCUSDT", "ETHUSDT"], '["BTCUSDT","ETHUSDT"]'),
    ],
)
def test_format_param(value: object, text: str) -> None:
    assert format_param(value) == text  # type: ignore[arg-type]


def test_float_params_are_refused() -> None:
    with pytest.raises(TypeError):
        format_param(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        format_param(Decimal("NaN"))


def test_ed25519_signature_verifies_with_public_key_and_is_url_encoded() -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    keys = BinanceKeys.ed25519("my-api-key", SecretStr(pem.decode()))
    query = encode_params({"symbol": "BTCUSDT", "timestamp": 1700000000000})
    signed = sign_request(query, "", keys.signer)
    sent_signature = _pairs(signed.query)["signature"]
    raw = unquote(sent_signature)
    assert len(raw) == 88 and not any(ch in sent_signature for ch in "+/=")
    decoded = base64.b64decode(raw)
    private.public_key().verify(decoded, query.encode())  # raises if wrong
    with pytest.raises(InvalidSignature):
        private.public_key().verify(decoded, (query + "0").encode())


def test_ed25519_refuses_other_key_types() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(TypeError, match="Ed25519"):
        Ed25519Signer(pem)


def test_secrets_never_in_repr() -> None:
    keys = BinanceKeys.hmac("APIKEY-visible?", SPOT_SECRET)
    for text in (repr(keys), str(keys), repr(keys.signer)):
        assert SPOT_SECRET not in text and "APIKEY-visible?" not in text
    assert keys.api_key.get_secret_value() == "APIKEY-visible?"


@given(st.text())
def test_percent_encoding_shortcut_matches_quote(text: str) -> None:
    from urllib.parse import quote

    from exchange.binance.auth import _percent_encoded

    assert _percent_encoded(text) == quote(text, safe="")
