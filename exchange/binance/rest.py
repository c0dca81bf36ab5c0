"""Signed Binance REST client: server-time offset, rate budgets, typed errors, timeouts.

Every call goes through one path: budget (RateLimiter) -> encode and sign the exact bytes
sent -> one aiohttp request under a timeout -> parsed JSON, or an error typed by what the
caller must do (`exchange.binance.errors.classify`). GET and DELETE carry their params in the
query string, POST and PUT in a form body; either way the signature covers what is sent.

Orders have a second way out, `send_order_now`: the same budget, signing and error typing, but
written synchronously to a warm connection of the `OrderWire` (exchange/binance/wire.py) when
one is idle and nothing must be awaited first; otherwise the caller takes the path above.

Time: signed requests carry `timestamp = now + offset`, where offset = serverTime minus the
midpoint of the /time round trip (API reference §3.3). The offset is refreshed every
`time_refresh_s` and after any -1021; a read refused for its timestamp is re-signed and sent
once more, an order is not (the caller decides, with the Retryable in hand).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Coroutine, Mapping
from typing import Any

import aiohttp
import orjson
import structlog
from yarl import URL

from engine.clock import Clock
from engine.model import Market
from exchange.binance.auth import (
    BinanceKeys,
    ParamValue,
    encode_params,
    format_param,
    sign_request,
)
from exchange.binance.errors import classify
from exchange.binance.urls import BinanceEndpoints
from exchange.binance.wire import OrderWire, WireAnswer, WireError
from exchange.errors import AuthFailed, ExchangeError, Fatal, Retryable, SentRequest
from exchange.ratelimit import Permit, RateLimiter, rate_limits_from_exchange_info

log = structlog.get_logger("tickloop.binance.rest")

TIME_PATH = {Market.SPOT: "/api/v3/time", Market.USDM: "/fapi/v1/time"}
EXCHANGE_INFO_PATH = {Market.SPOT: "/api/v3/exchangeInfo", Market.USDM: "/fapi/v1/exchangeInfo"}
EXCHANGE_INFO_WEIGHT = {Market.SPOT: 20, Market.USDM: 1}
_BODY_METHODS = frozenset({"POST", "PUT"})
_ERROR_TEXT_CHARS = 500


class BinanceRest:
    """One venue's REST API (spot or USDⓈ-M) over a shared aiohttp session."""

    def __init__(
        self,
        market: Market,
        endpoints: BinanceEndpoints,
        clock: Clock,
        http: aiohttp.ClientSession,
        keys: BinanceKeys | None,
        recv_window_ms: int = 5000,
        limiter: RateLimiter | None = None,
        *,
        timeout_s: float = 10.0,
        time_refresh_s: float = 300.0,
        wire: OrderWire | None = None,
    ) -> None:
        if not 0 < recv_window_ms <= 60_000:
            raise ValueError("recv_window_ms must be in (0, 60000]")
        self.market = market
        self.limiter = limiter if limiter is not None else RateLimiter(clock)
        self._base = endpoints.rest_base
        self._clock = clock
        self._http = http
        self._keys = keys
        self._recv_window_ms = recv_window_ms
        self._timeout_s = timeout_s
        self._time_refresh_ns = int(time_refresh_s * 1e9)
        self._offset_ms = 0
        self._synced_at_ns: int | None = None  # monotonic time of the last offset measurement
        self._request_seq = 0
        self._wire = wire  # warm connections orders are written to synchronously, if any
        self._sync_lock = asyncio.Lock()  # one /time round trip even when many requests need it

    @property
    def clock(self) -> Clock:
        """Return the clock this client stamps and waits on."""
        return self._clock

    @property
    def wire(self) -> OrderWire | None:
        """Return the warm order connections, if this client has them."""
        return self._wire

    @property
    def offset_ms(self) -> int:
        """Return serverTime minus local time, as last measured."""
        return self._offset_ms

    def timestamp_ms(self) -> int:
        """Return the current time on the server's clock, for `timestamp`."""
        return self._clock.now_ns() // 1_000_000 + self._offset_ms

    async def sync_time(self) -> int:
        """Measure the server-time offset from one /time round trip; return it in ms."""
        sent_ns = self._clock.now_ns()
        body = await self._send("GET", TIME_PATH[self.market], {}, signed=False, weight=1)
        received_ns = self._clock.now_ns()
        try:
            server_ms = int(body["serverTime"])
        except (KeyError, TypeError, ValueError) as exc:
            raise Retryable(f"unexpected /time body: {body!r:.200}") from exc
        midpoint_ms = (sent_ns + received_ns) // 2 // 1_000_000
        self._offset_ms = server_ms - midpoint_ms
        self._synced_at_ns = self._clock.monotonic_ns()
        return self._offset_ms

    async def exchange_info(self) -> Any:
        """Fetch exchangeInfo and seed the rate budgets from its `rateLimits`; return the body."""
        body = await self.get(
            EXCHANGE_INFO_PATH[self.market], weight=EXCHANGE_INFO_WEIGHT[self.market]
        )
        if isinstance(body, dict):
            try:
                limits = rate_limits_from_exchange_info(body)
            except (TypeError, ValueError) as exc:  # budgets from it would refuse every request
                raise Fatal(f"exchangeInfo: {exc}", status=200) from None
            self.limiter.configure(limits)
        return body

    async def get(
        self,
        path: str,
        params: Mapping[str, ParamValue] | None = None,
        *,
        signed: bool = False,
        weight: int = 1,
        keyed: bool = False,
    ) -> Any:
        """GET path; return the parsed JSON or raise a typed exchange error."""
        return await self.request("GET", path, params, signed=signed, weight=weight, keyed=keyed)

    async def post(
        self,
        path: str,
        params: Mapping[str, ParamValue] | None = None,
        *,
        signed: bool = False,
        weight: int = 1,
        order: bool = False,
        keyed: bool = False,
    ) -> Any:
        """POST path (order=True for an order placement); return JSON or raise typed errors."""
        return await self.request(
            "POST", path, params, signed=signed, weight=weight, order=order, keyed=keyed
        )

    async def put(
        self,
        path: str,
        params: Mapping[str, ParamValue] | None = None,
        *,
        signed: bool = False,
        weight: int = 1,
        keyed: bool = False,
    ) -> Any:
        """PUT path; return the parsed JSON or raise a typed exchange error."""
        return await self.request("PUT", path, params, signed=signed, weight=weight, keyed=keyed)

    async def delete(
        self,
        path: str,
        params: Mapping[str, ParamValue] | None = None,
        *,
        signed: bool = False,
        weight: int = 1,
        keyed: bool = False,
    ) -> Any:
        """DELETE path; return the parsed JSON or raise a typed exchange error."""
        return await self.request("DELETE", path, params, signed=signed, weight=weight, keyed=keyed)

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, ParamValue] | None = None,
        *,
        signed: bool = False,
        weight: int = 1,
        order: bool = False,
        keyed: bool = False,
    ) -> Any:
        """Send one request; after a -1021 resync the offset, and resend once unless an order."""
        if signed and self._time_is_stale():
            async with self._sync_lock:
                if self._time_is_stale():
                    await self.sync_time()
        try:
            return await self._send(
                method, path, params or {}, signed=signed, weight=weight, order=order, keyed=keyed
            )
        except Retryable as exc:
            if not exc.resync_clock:
                raise
            await self.sync_time()
            if order:
                raise  # not executed; the caller re-decides with a fresh timestamp
            log.info("rest_timestamp_resynced", path=path, offset_ms=self._offset_ms)
        return await self._send(
            method, path, params or {}, signed=signed, weight=weight, order=order, keyed=keyed
        )

    def _time_is_stale(self) -> bool:
        if self._synced_at_ns is None:
            return True
        return self._clock.monotonic_ns() - self._synced_at_ns >= self._time_refresh_ns

    def send_order_now(
        self, method: str, path: str, params: Mapping[str, ParamValue], *, weight: int
    ) -> Coroutine[Any, Any, Any] | None:
        """Put a signed order request on the wire before returning, if nothing must wait first.

        Returns the coroutine that awaits and parses its answer (what `request(..., order=True)`
        returns or raises), or None, with nothing sent or charged, when the order must take the
        awaited path: no idle warm connection, time offset due for a refresh, budget to wait for,
        a ban, or no keys.
        """
        wire = self._wire
        if wire is None or self._keys is None or self._time_is_stale():
            return None
        permit = self.limiter.try_acquire(weight, 1)
        if permit is None:
            return None
        payload: dict[str, ParamValue] = {**params, "recvWindow": self._recv_window_ms,
                                          "timestamp": self.timestamp_ms()}  # fmt: skip
        query, body, headers = self._signed(method, payload, signed=True, keyed=True)
        answer = wire.try_send(method, path + (f"?{query}" if query else ""), headers, body.encode())
        if answer is None:
            self.limiter.refund(permit)
            return None
        return self._await_order(wire, answer, permit, self._record(method, path, payload))

    async def _await_order(
        self, wire: OrderWire, answer: asyncio.Future[WireAnswer], permit: Permit, sent: SentRequest
    ) -> Any:
        headers: Mapping[str, str] | None = None
        try:
            try:
                async with asyncio.timeout(self._timeout_s):
                    reply = await asyncio.shield(answer)
            except TimeoutError as exc:
                wire.abandon(answer)
                raise self._classify(None, None, _describe(exc), True, None, sent) from exc
            except WireError as exc:
                raise self._classify(None, None, _describe(exc), True, None, sent) from exc
            headers = reply.headers
        finally:
            self.limiter.settle(permit, headers)
        try:
            return self._parse(reply.status, reply.body, reply.headers, True, sent)
        except Retryable as exc:
            if exc.resync_clock:
                await self.sync_time()  # not executed; the caller re-decides with a fresh timestamp
            raise

    def _signed(
        self, method: str, payload: dict[str, ParamValue], *, signed: bool, keyed: bool
    ) -> tuple[str, str, dict[str, str]]:
        """Return (query, body, headers) for a request: the signature covers what is sent."""
        encoded = encode_params(payload)
        query, body = ("", encoded) if method in _BODY_METHODS else (encoded, "")
        headers: dict[str, str] = {}
        if signed or keyed:
            assert self._keys is not None
            headers["X-MBX-APIKEY"] = self._keys.api_key.get_secret_value()
        if signed:
            assert self._keys is not None
            signed_payload = sign_request(query, body, self._keys.signer)
            query, body = signed_payload.query, signed_payload.body
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return query, body, headers

    def _record(self, method: str, path: str, payload: dict[str, ParamValue]) -> SentRequest:
        """Return what an error about this request tells its caller it was (params, no secrets)."""
        self._request_seq += 1
        return SentRequest(
            str(self._request_seq), method, path, {k: format_param(v) for k, v in payload.items()}
        )

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, ParamValue],
        *,
        signed: bool,
        weight: int,
        order: bool = False,
        keyed: bool = False,
    ) -> Any:
        if (signed or keyed) and self._keys is None:
            raise AuthFailed(f"{method} {path} needs API keys and none are configured")
        payload: dict[str, ParamValue] = dict(params)
        if signed:
            payload["recvWindow"] = self._recv_window_ms
        permit = await self.limiter.acquire(weight, 1 if order else 0)
        response_headers: Mapping[str, str] | None = None
        try:
            if signed:
                # Stamp after any wait for budget, so the request is fresh when it leaves.
                payload["timestamp"] = self.timestamp_ms()
            query, body, headers = self._signed(method, payload, signed=signed, keyed=keyed)
            sent = self._record(method, path, payload)
            # encoded=True: send our percent-encoding byte for byte, the one that was signed.
            url = URL(self._base + path + (f"?{query}" if query else ""), encoded=True)
            try:
                async with asyncio.timeout(self._timeout_s):
                    # never follow a redirect: it would carry the API key and a signed order
                    # to whatever host Location names, and read that host's answer as ours
                    async with self._http.request(
                        method,
                        url,
                        data=body.encode() if body else None,
                        headers=headers,
                        allow_redirects=False,
                    ) as response:
                        response_headers = response.headers
                        status = response.status
                        raw = await response.read()
            except aiohttp.ClientConnectorError as exc:
                raise self._classify(
                    None, None, _describe(exc), order, None, sent, reached_server=False
                ) from exc
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise self._classify(None, None, _describe(exc), order, None, sent) from exc
        finally:
            self.limiter.settle(permit, response_headers)
        return self._parse(status, raw, response_headers, order, sent)

    def _parse(
        self,
        status: int,
        raw: bytes,
        headers: Mapping[str, str],
        order: bool,
        sent: SentRequest,
    ) -> Any:
        if 200 <= status < 300:
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                text = raw[:_ERROR_TEXT_CHARS].decode("utf-8", "replace")
                raise self._classify(status, None, f"unreadable body: {text}", order, None, sent)
        code, message = _error_fields(raw)
        retry_after_s = _retry_after_s(headers)
        error = self._classify(status, code, message, order, retry_after_s, sent)
        if isinstance(error, Retryable):
            if status == 418 or error.banned_until_ms is not None:
                self.limiter.ban(error.banned_until_ms, retry_after_s)
                log.error("rest_banned", until_ms=error.banned_until_ms, path=sent.path)
            elif status == 429:
                self.limiter.block(retry_after_s, orders_only=error.orders_only)
                log.warning("rest_rate_limited", retry_after_s=retry_after_s, code=code)
        raise error

    def _classify(
        self,
        status: int | None,
        code: int | None,
        message: str,
        order: bool,
        retry_after_s: float | None,
        sent: SentRequest,
        *,
        reached_server: bool = True,
    ) -> ExchangeError:
        return classify(
            status,
            code,
            self._scrub(message),
            market=self.market,
            order_placement=order,
            retry_after_s=retry_after_s,
            sent=sent,
            reached_server=reached_server,
        )


    def _scrub(self, text: str) -> str:
        """Remove the API key and any signature from a text that may echo the request.

        Binance's own messages never do, but a proxy's error page or a transport error's URL can;
        error texts travel into logs, notices and the journal's reject reasons.
        """
        text = _SIGNATURE_RE.sub(r"\1***", text)
        if self._keys is not None:
            key = self._keys.api_key.get_secret_value()
            if key:
                text = text.replace(key, redact_key(key))
        return text


_SIGNATURE_RE = re.compile(r"(signature[\"']?\s*[=:]\s*[\"']?)[^&\s\"',;}]+", re.IGNORECASE)


def redact_key(key: str) -> str:
    """Return an API key as logs may show it: its first four characters only."""
    return f"{key[:4]}***"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _error_fields(raw: bytes) -> tuple[int | None, str]:
    """Return Binance's (code, msg) from an error body, or (None, the text) when not JSON."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and "code" in body:
        try:
            code = int(body["code"])
        except (TypeError, ValueError):
            code = None
        return code, str(body.get("msg", ""))
    return None, raw[:_ERROR_TEXT_CHARS].decode("utf-8", "replace")


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    text = headers.get("Retry-After")
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return None  # an HTTP-date: Binance sends seconds; fall back to the default block
    # "inf" or "1e400" would overflow the block's deadline; "nan" compares false everywhere
    return max(0.0, seconds) if math.isfinite(seconds) else None
