"""Binance user-data stream clients: USDⓈ-M listenKey on `/private`, spot WebSocket API subscription.

Both put typed user events (exchange.binance.user_events) and two markers into the caller's
queue: `UserStreamGap` as soon as events may have been lost (disconnect, expired listenKey,
terminated subscription, full queue), and `UserStreamLive` once events flow again (also on the
first connection). Binance never replays user events, so on `UserStreamLive` the caller
reconciles by REST (open orders, positions, balances); this module never queries them itself.

Why not WsSession: its URL is fixed per session, while a futures reconnect may need a new
listenKey in the URL and a spot reconnect needs a signed request before events flow; the
reconnect loop here is small and owns both steps. The listenKey is a bearer secret: it is only
ever logged through `redact_url`, and API keys and signatures never.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog

from engine.clock import Clock
from exchange.binance.auth import BinanceKeys, ws_api_payload
from exchange.binance.errors import AUTH_CODES
from exchange.binance.rest import BinanceRest
from exchange.binance.urls import BinanceEndpoints, redact_url, usdm_private_stream_spec
from exchange.binance.user_events import (
    ListenKeyExpired,
    MalformedUserEvent,
    StreamTerminated,
    UserEvent,
    parse_user_frame,
)
from exchange.errors import AuthFailed, ExchangeError, Rejected, Retryable, UnknownOutcome

log = structlog.get_logger("tickloop.binance.userstream")

LISTEN_KEY_PATH = "/fapi/v1/listenKey"
INVALID_LISTEN_KEY = -1125
TIMESTAMP_OUTSIDE_WINDOW = -1021
USDM_PRIVATE_EVENTS = ("ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE", "ALGO_UPDATE")


@dataclass(frozen=True, slots=True)
class UserStreamGap:
    """User events may have been lost from now on (reason says why); wait for UserStreamLive."""

    reason: str
    ts_recv_ns: int


@dataclass(frozen=True, slots=True)
class UserStreamLive:
    """Events flow again (or for the first time): reconcile open orders and positions by REST."""

    after: str  # "start" on the first connection, else the reason of the gap it ends
    ts_recv_ns: int


UserStreamItem = UserEvent | UserStreamGap | UserStreamLive


@dataclass(slots=True)
class UserStreamStats:
    connects: int = 0
    gaps: int = 0
    malformed: int = 0
    ignored: int = 0  # well-formed events of types we do not use
    dropped: int = 0  # events lost to a full queue
    listen_keys_created: int = 0
    keepalives: int = 0


class _StreamDown(Exception):
    """Opening the stream failed for a reason worth a retry."""


class _UserStream:
    """Reconnect loop shared by both venues: open, pump frames, report gaps, back off."""

    def __init__(
        self,
        queue: asyncio.Queue[UserStreamItem],
        clock: Clock,
        http: aiohttp.ClientSession,
        *,
        heartbeat_s: float,
        backoff_initial_s: float,
        backoff_max_s: float,
        rng: random.Random | None,
        name: str,
    ) -> None:
        self.stats = UserStreamStats()
        self._queue = queue
        self._clock = clock
        self._http = http
        self._heartbeat_s = heartbeat_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._rng = rng or random.Random()
        self._log = log.bind(stream=name)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._closing = False
        self._gap_owed: str | None = None

    @property
    def connected(self) -> bool:
        """Return True while events flow on a live connection."""
        return self._ws is not None and not self._ws.closed

    async def run(self) -> None:
        """Stay subscribed until close(); raises AuthFailed when the keys are refused."""
        after = "start"
        failures = 0
        while not self._closing:
            try:
                ws = await self._open()
            except (_StreamDown, Retryable, Rejected, UnknownOutcome, aiohttp.ClientError,
                    TimeoutError) as exc:  # fmt: skip
                if self._closing:
                    break
                failures += 1
                delay_s = self._rng.uniform(0, min(self._backoff_max_s,
                                                   self._backoff_initial_s * 2 ** failures))  # fmt: skip
                self._log.warning("user_stream_open_failed", error=_describe(exc), retry_s=delay_s)
                await self._clock.sleep(delay_s)
                continue
            failures = 0
            self._ws = ws
            self.stats.connects += 1
            self._log.info("user_stream_live", after=after)
            self._deliver(UserStreamLive(after, self._clock.monotonic_ns()))
            try:
                reason = await self._pump(ws)
            finally:
                self._ws = None
                await self._after_pump()
                await ws.close()
            if self._closing:
                break
            after = reason
            self.stats.gaps += 1
            self._log.warning("user_stream_gap", reason=reason)
            self._deliver(UserStreamGap(reason, self._clock.monotonic_ns()))

    async def close(self) -> None:
        """Stop the loop and close the connection."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()

    async def _connect(self, url: str) -> aiohttp.ClientWebSocketResponse:
        return await self._http.ws_connect(url, heartbeat=self._heartbeat_s, autoping=True)

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        raise NotImplementedError

    async def _after_pump(self) -> None:
        """Stop per-connection helpers (the futures keep-alive)."""

    def _on_event(self, event: UserEvent) -> str | None:
        """Deliver one event; return a reason to end the connection, or None."""
        raise NotImplementedError

    async def _pump(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                if msg.type is aiohttp.WSMsgType.ERROR:
                    return "connection_error"
                continue
            try:
                event = parse_user_frame(msg.data)
            except MalformedUserEvent as exc:
                self.stats.malformed += 1
                self._log.warning("user_event_malformed", error=str(exc)[:200])
                continue
            if event is None:
                self.stats.ignored += 1
                continue
            end = self._on_event(event)
            if end is not None:
                return end
        return "disconnected"

    def _deliver(self, item: UserStreamItem) -> None:
        if self._gap_owed is not None:
            try:
                self._queue.put_nowait(UserStreamGap(self._gap_owed, self._clock.monotonic_ns()))
                self._gap_owed = None
            except asyncio.QueueFull:
                self.stats.dropped += 1
                return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            self._gap_owed = "queue_full"
            self._log.error("user_event_dropped_queue_full")


class FuturesUserStream(_UserStream):
    """USDⓈ-M user data: a listenKey kept alive by PUT, on the `/private` route."""

    def __init__(
        self,
        rest: BinanceRest,
        endpoints: BinanceEndpoints,
        queue: asyncio.Queue[UserStreamItem],
        clock: Clock,
        http: aiohttp.ClientSession,
        *,
        events: Iterable[str] = USDM_PRIVATE_EVENTS,
        keepalive_s: float = 1800.0,
        heartbeat_s: float = 60.0,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(queue, clock, http, heartbeat_s=heartbeat_s,
                         backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s,
                         rng=rng, name="usdm-user")  # fmt: skip
        self._rest = rest
        self._endpoints = endpoints
        self._events = tuple(events)
        self._keepalive_s = keepalive_s
        self._listen_key: str | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._key_invalid = False

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        if self._listen_key is None:
            body = await self._rest.post(LISTEN_KEY_PATH, keyed=True)
            try:
                self._listen_key = str(body["listenKey"])
            except (KeyError, TypeError) as exc:
                raise _StreamDown("listenKey missing from the response") from exc
            self.stats.listen_keys_created += 1
        url = usdm_private_stream_spec(self._endpoints, self._listen_key, self._events).url
        self._log.info("user_stream_connecting", url=redact_url(url))
        try:
            ws = await self._connect(url)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 400:  # -1125 at the handshake: the key is gone, take a new one now
                self._listen_key = None
            raise _StreamDown(f"handshake refused with HTTP {exc.status}") from exc
        self._key_invalid = False
        self._keepalive_task = asyncio.create_task(self._keepalive(ws), name="usdm-listenkey")
        return ws

    def _on_event(self, event: UserEvent) -> str | None:
        if isinstance(event, ListenKeyExpired):
            self._listen_key = None  # Binance sends nothing more on this key, socket open or not
            return "listen_key_expired"
        self._deliver(event)
        return None

    async def _pump(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        reason = await super()._pump(ws)
        return "listen_key_invalid" if self._key_invalid else reason

    async def _keepalive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            await self._clock.sleep(self._keepalive_s)
            try:
                await self._rest.put(LISTEN_KEY_PATH, keyed=True)
                self.stats.keepalives += 1
            except Rejected as exc:
                if exc.code != INVALID_LISTEN_KEY:
                    self._log.warning("listen_key_keepalive_failed", error=_describe(exc))
                    continue
                self._log.warning("listen_key_keepalive_refused", code=exc.code)
                self._listen_key = None
                self._key_invalid = True
                await ws.close()
                return
            except ExchangeError as exc:
                self._log.warning("listen_key_keepalive_failed", error=_describe(exc))

    async def _after_pump(self) -> None:
        task, self._keepalive_task = self._keepalive_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self, *, delete_key: bool = True) -> None:
        """Stop; delete the listenKey (best effort) unless delete_key is False."""
        await super().close()
        if delete_key and self._listen_key is not None:
            self._listen_key = None
            try:
                await self._rest.delete(LISTEN_KEY_PATH, keyed=True)
            except ExchangeError as exc:
                self._log.info("listen_key_delete_failed", error=_describe(exc))


class SpotUserStream(_UserStream):
    """Spot user data: `userDataStream.subscribe.signature` on the WebSocket API.

    A subscription refused for its timestamp (-1021) resyncs the server-time offset through
    `sync_time` and is re-signed and sent once more, as BinanceRest does for a read; without that
    every reconnect would be refused again with the same stale offset. `sync_time` defaults to
    the sync_time of the BinanceRest whose `timestamp_ms` is passed.
    """

    def __init__(
        self,
        ws_api_url: str,
        keys: BinanceKeys,
        timestamp_ms: Callable[[], int],
        queue: asyncio.Queue[UserStreamItem],
        clock: Clock,
        http: aiohttp.ClientSession,
        *,
        recv_window_ms: int | None = None,
        subscribe_timeout_s: float = 10.0,
        heartbeat_s: float = 30.0,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 30.0,
        rng: random.Random | None = None,
        sync_time: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        super().__init__(queue, clock, http, heartbeat_s=heartbeat_s,
                         backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s,
                         rng=rng, name="spot-user")  # fmt: skip
        self._url = ws_api_url
        self._keys = keys
        self._timestamp_ms = timestamp_ms
        if sync_time is None and isinstance(getattr(timestamp_ms, "__self__", None), BinanceRest):
            sync_time = timestamp_ms.__self__.sync_time  # type: ignore[attr-defined]
        self._sync_time = sync_time
        self._recv_window_ms = recv_window_ms
        self._subscribe_timeout_s = subscribe_timeout_s
        self._request_ids = itertools.count(1)
        self.subscription_id: int | None = None

    def subscribe_request(self) -> dict[str, Any]:
        """Return a signed `userDataStream.subscribe.signature` request (params sorted, signed)."""
        params: dict[str, Any] = {
            "apiKey": self._keys.api_key.get_secret_value(),
            "timestamp": self._timestamp_ms(),
        }
        if self._recv_window_ms is not None:
            params["recvWindow"] = self._recv_window_ms
        params["signature"] = self._keys.signer.sign(ws_api_payload(params).encode("utf-8"))
        request_id = f"uds-{next(self._request_ids)}"
        return {"id": request_id, "method": "userDataStream.subscribe.signature", "params": params}

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        self._log.info("user_stream_connecting", url=redact_url(self._url))
        ws = await self._connect(self._url)
        try:
            try:
                self.subscription_id = await self._subscribe(ws)
            except Retryable as exc:
                if not exc.resync_clock or self._sync_time is None:
                    raise
                await self._sync_time()
                self._log.info("user_stream_timestamp_resynced", code=exc.code)
                self.subscription_id = await self._subscribe(ws)  # re-signed, fresh timestamp
        except BaseException:
            await ws.close()
            raise
        return ws

    async def _subscribe(self, ws: aiohttp.ClientWebSocketResponse) -> int:
        request = self.subscribe_request()
        await ws.send_str(orjson.dumps(request).decode())
        async with asyncio.timeout(self._subscribe_timeout_s):
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    reply = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(reply, dict) or reply.get("id") != request["id"]:
                    continue
                return _subscription_result(reply)
        raise _StreamDown("connection closed before the subscription was answered")

    def _on_event(self, event: UserEvent) -> str | None:
        if isinstance(event, StreamTerminated):
            return "stream_terminated"
        self._deliver(event)
        return None


def _subscription_result(reply: dict[str, Any]) -> int:
    """Return the subscription id of a WS API reply, or raise the error it carries."""
    error = reply.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        message = str(error.get("msg", ""))
        if code in AUTH_CODES:
            raise AuthFailed(f"user data subscription refused: {message}", code=code,
                             status=reply.get("status"))  # fmt: skip
        raise Retryable(
            f"user data subscription failed: {code} {message}",
            code=code,
            status=reply.get("status"),
            resync_clock=code == TIMESTAMP_OUTSIDE_WINDOW,  # re-sign only after a resync
        )
    result = reply.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("subscriptionId"), int):
        raise _StreamDown(f"unexpected subscription reply: {str(reply)[:200]}")
    return int(result["subscriptionId"])


def _describe(exc: BaseException) -> str:
    # aiohttp errors quote the URL, which carries the listenKey: redact before logging.
    text = redact_url(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
