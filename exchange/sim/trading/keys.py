"""API keys of the simulated exchange and the checks of a SIGNED request (binance-api.md §3.2-3.3).

The signature is checked over the exact bytes received: the raw (still percent-encoded) query
string concatenated with the raw body, each without its ``signature=`` pair, as Binance defines
the payload. A client that signs one encoding and sends another therefore gets -1022, as on
Binance since 2026-01-15.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from exchange.sim.rest import BinanceError

# A fixture key pair for tests and the offline demo (not a Binance key; 64 characters each).
TEST_API_KEY = "simTestApiKey".ljust(64, "K")
TEST_API_SECRET = "simTestApiSecret".ljust(64, "S")

SPOT_MAX_RECV_WINDOW_MS = 60_000
DEFAULT_RECV_WINDOW_MS = 5_000
FUTURE_TOLERANCE_MS = 1_000  # a timestamp may be at most this far ahead of server time


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One API key: its secret and what it may do (GET /sapi/v1/account/apiRestrictions)."""

    key: str
    secret: str
    enable_reading: bool = True
    enable_spot_trading: bool = True
    enable_futures: bool = True
    enable_withdrawals: bool = False
    enable_margin: bool = False
    enable_internal_transfer: bool = False
    ip_restrict: bool = False
    create_time_ms: int = 1_700_000_000_000


@dataclass
class ApiKeyRegistry:
    """The keys the simulated exchange accepts, by key string."""

    keys: dict[str, ApiKey] = field(default_factory=dict)

    @classmethod
    def with_test_key(cls) -> ApiKeyRegistry:
        """Return a registry holding the fixture key pair (TEST_API_KEY / TEST_API_SECRET)."""
        registry = cls()
        registry.add(ApiKey(TEST_API_KEY, TEST_API_SECRET))
        return registry

    def add(self, api_key: ApiKey) -> None:
        """Accept api_key from now on (replacing a key with the same string)."""
        self.keys[api_key.key] = api_key

    def lookup(self, header_value: str | None) -> ApiKey:
        """Return the key named by an X-MBX-APIKEY header, or raise -2014 / -2015."""
        if not header_value:
            raise BinanceError(401, -2014, "API-key format invalid.")
        api_key = self.keys.get(header_value)
        if api_key is None:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        return api_key


def _without_signature(raw: str) -> tuple[str, str | None]:
    """Split a raw k=v&k=v string into (payload without signature pairs, signature)."""
    kept: list[str] = []
    signature = None
    for part in raw.split("&") if raw else []:
        if part.startswith("signature="):
            signature = part[len("signature=") :]
        else:
            kept.append(part)
    return "&".join(kept), signature


def parse_params(raw_query: str, raw_body: str) -> dict[str, str]:
    """Decode query and body parameters; the query string wins when both carry one."""
    params = dict(parse_qsl(raw_body, keep_blank_values=True))
    params.update(parse_qsl(raw_query, keep_blank_values=True))
    return params


def hmac_hex(secret: str, payload: bytes) -> str:
    """Return the lower-case hex HMAC-SHA256 of payload under secret."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def check_signature(api_key: ApiKey, raw_query: str, raw_body: str) -> None:
    """Raise -1102 without a signature, -1022 when it is not HMAC(secret, query + body)."""
    query_payload, query_sig = _without_signature(raw_query)
    body_payload, body_sig = _without_signature(raw_body)
    signature = query_sig if query_sig is not None else body_sig
    if not signature:
        raise BinanceError(
            400,
            -1102,
            "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
        )
    expected = hmac_hex(api_key.secret, (query_payload + body_payload).encode())
    if not hmac.compare_digest(expected, signature.lower()):
        raise BinanceError(400, -1022, "Signature for this request is not valid.")


def check_timestamp(params: dict[str, str], server_time_ms: int, spot: bool) -> None:
    """Raise -1021 unless timestamp is within recvWindow before and 1 s after server time."""
    text = params.get("timestamp", "")
    if not text.isdigit():
        raise BinanceError(
            400,
            -1102,
            "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
        )
    timestamp_ms = int(text)
    if timestamp_ms > 10**14:  # spot accepts microseconds
        timestamp_ms //= 1000
    try:
        window_ms = float(params.get("recvWindow", DEFAULT_RECV_WINDOW_MS))
    except ValueError:
        raise BinanceError(
            400, -1100, "Illegal characters found in parameter 'recvWindow'."
        ) from None
    if spot and window_ms > SPOT_MAX_RECV_WINDOW_MS:
        raise BinanceError(400, -1131, "recvWindow must be less than 60000")
    if timestamp_ms >= server_time_ms + FUTURE_TOLERANCE_MS:
        raise BinanceError(
            400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
        )
    if server_time_ms - timestamp_ms > window_ms:
        raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
