"""Binance request encoding and signing (HMAC-SHA256, Ed25519) over the exact bytes sent.

Since 2026-01-15 spot signs the *percent-encoded* ``k=v&k=v`` payload (API reference §3.2); a
client that signs one encoding and sends another gets -1022. So the payload is encoded once,
here, and the same string is both signed and sent. The signed payload is the query string
followed by the body with no separator. WS API requests instead sign their params sorted by name
and not percent-encoded (`ws_api_payload`).

Secrets are pydantic `SecretStr` (the config's type) and never appear in a repr.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import SecretStr

ParamValue = str | int | Decimal | bool | Iterable[str]


def format_param(value: ParamValue) -> str:
    """Render one parameter value as Binance expects it: decimals plain, booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot send non-finite decimal {value}")
        # normalize() drops trailing zeros; "f" never uses an exponent (1E+2 -> "100").
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "0") else text
    if isinstance(value, float):
        # Money sent to an exchange is exact (DESIGN §4.8): a float here is a bug upstream.
        raise TypeError(f"float parameter {value!r}: pass a Decimal or a str")
    if isinstance(value, (str, int)):
        return str(value)
    # `symbols=["BTCUSDT","ETHUSDT"]`: a compact JSON array of strings.
    return json.dumps([str(v) for v in value], separators=(",", ":"))


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch  # what quote(safe="") leaves as it is


def _percent_encoded(text: str) -> str:
    # most values (symbols, sides, decimals, ids) need no encoding: skip quote()'s slower path
    return text if _UNRESERVED(text) else quote(text, safe="")


def encode_params(params: Mapping[str, ParamValue]) -> str:
    """Percent-encode params as `k=v&k=v` in the given order (RFC 3986 unreserved kept)."""
    return "&".join(
        f"{_percent_encoded(key)}={_percent_encoded(format_param(value))}"
        for key, value in params.items()
    )


def ws_api_payload(params: Mapping[str, ParamValue]) -> str:
    """Return the WS API signing payload: params except `signature`, sorted, not percent-encoded."""
    return "&".join(
        f"{key}={format_param(params[key])}" for key in sorted(params) if key != "signature"
    )


class Signer(Protocol):
    """Signs payload bytes; the result is ready to be percent-encoded into a request."""

    def sign(self, payload: bytes) -> str: ...


class HmacSigner:
    """HMAC-SHA256 with the API secret; lower-case hex digest."""

    __slots__ = ("_secret",)

    def __init__(self, secret: SecretStr | str) -> None:
        text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if not text:
            raise ValueError("HMAC secret is empty")
        self._secret = SecretStr(text)

    def sign(self, payload: bytes) -> str:
        """Return the hex HMAC-SHA256 of payload."""
        key = self._secret.get_secret_value().encode()
        return hmac.digest(key, payload, hashlib.sha256).hex()  # one C call, same digest

    def __repr__(self) -> str:
        return "HmacSigner(secret=**********)"


class Ed25519Signer:
    """Ed25519 with a PKCS#8 private key; base64 signature (case-sensitive, 88 chars)."""

    __slots__ = ("_key",)

    def __init__(self, private_key_pem: SecretStr | bytes, password: SecretStr | None = None):
        pem = (
            private_key_pem.get_secret_value().encode()
            if isinstance(private_key_pem, SecretStr)
            else private_key_pem
        )
        secret = password.get_secret_value().encode() if password is not None else None
        key = load_pem_private_key(pem, password=secret)
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError(f"expected an Ed25519 private key, got {type(key).__name__}")
        self._key = key

    def sign(self, payload: bytes) -> str:
        """Return the base64 Ed25519 signature of payload."""
        return base64.b64encode(self._key.sign(payload)).decode("ascii")

    def __repr__(self) -> str:
        return "Ed25519Signer(private_key=**********)"


@dataclass(frozen=True, slots=True)
class BinanceKeys:
    """An API key and the signer of its secret; the repr never shows either."""

    api_key: SecretStr
    signer: Signer

    @classmethod
    def hmac(cls, api_key: SecretStr | str, secret: SecretStr | str) -> BinanceKeys:
        """Build HMAC keys (the classic key pair from Binance's API management page)."""
        return cls(_secret(api_key), HmacSigner(secret))

    @classmethod
    def ed25519(cls, api_key: SecretStr | str, private_key_pem: SecretStr | bytes) -> BinanceKeys:
        """Build Ed25519 keys (API key registered with our public key)."""
        return cls(_secret(api_key), Ed25519Signer(private_key_pem))

    def __repr__(self) -> str:
        return f"BinanceKeys(api_key=**********, signer={type(self.signer).__name__})"


def _secret(value: SecretStr | str) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(value)


@dataclass(frozen=True, slots=True)
class SignedPayload:
    """The exact query and body to send, signature included, and the string that was signed."""

    query: str
    body: str
    signed_text: str


def sign_request(query: str, body: str, signer: Signer) -> SignedPayload:
    """Sign query+body (no separator) and append the signature to whichever part is last."""
    signed_text = query + body
    signature = quote(signer.sign(signed_text.encode("utf-8")), safe="")
    if body:
        return SignedPayload(query, f"{body}&signature={signature}", signed_text)
    sep = "&" if query else ""
    return SignedPayload(f"{query}{sep}signature={signature}", body, signed_text)
