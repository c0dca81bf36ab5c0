"""Orders straight onto the wire: warm HTTP/1.1 connections written from the caller's stack.

An order placed through aiohttp leaves when its task next runs and has awaited its way through
the connector and a body-writer task; while the frame reader works through a burst of frames
that is milliseconds. `OrderWire.try_send` instead writes the whole request to an idle, already
open keep-alive connection synchronously (`transport.write` hands it to the kernel, or to the
TLS layer which encrypts and hands it on, before returning) and gives back a future for the
answer. When no connection is idle the caller takes the aiohttp path: the wire is a fast lane,
never the only one.

Each connection carries one request at a time (no pipelining: a lost connection then leaves one
request's outcome unknown, never several). Connections idle for `idle_s` are closed and replaced
so a request never races the server's own idle close; h11 keeps the HTTP/1.1 state honest
(chunked or sized bodies, `Connection: close`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import structlog
from multidict import CIMultiDict, CIMultiDictProxy

from engine.clock import Clock

log = structlog.get_logger("tickloop.binance.wire")

_MAX_CONNECT_BACKOFF_S = 60.0
_MAX_BODY_BYTES = 1 << 22  # an order answer is a few hundred bytes; a flood is not an answer
_TOKEN_SAFE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+").fullmatch  # RFC 9110 field names
# printable ASCII without leading or trailing blanks (as h11 insists): no CR/LF smuggled in
_VALUE_SAFE = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?").fullmatch
_TARGET_SAFE = re.compile(r"/[\x21-\x7e]*").fullmatch


class WireError(Exception):
    """The connection failed under a request written to it: whether it reached the server is unknown."""


@dataclass(frozen=True, slots=True)
class WireAnswer:
    """One HTTP answer: status, headers (case-insensitive, as aiohttp's) and the whole body."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
        self._loop = loop
        self._clock = clock
        self._h11 = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=64 * 1024)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[WireAnswer] | None = None
        self.closed = False
        self.idle_since_ns = clock.monotonic_ns()
        self._status = 0
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._body = bytearray()

    @property
    def idle(self) -> bool:
        return (
            not self.closed
            and self.transport is not None
            and self.waiter is None
            and self._h11.our_state is h11.IDLE
            and self._h11.their_state is h11.IDLE
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(
        self, method: str, target: str, host: str, headers: dict[str, str], body: bytes
    ) -> asyncio.Future[WireAnswer]:
        """Write one request, then bring h11's state up to it; return the answer's future."""
        assert self.transport is not None and self.waiter is None
        fields = [("Host", host), *headers.items(), ("Content-Length", str(len(body)))]
        if not _TOKEN_SAFE(method) or not _TARGET_SAFE(target):
            raise ValueError(f"request line {method!r} {target!r} cannot be sent as given")
        for name, value in fields:
            if not _TOKEN_SAFE(name) or not _VALUE_SAFE(value):
                raise ValueError(f"header {name!r} cannot be sent as given")
        waiter = self.waiter = self._loop.create_future()
        self._status, self._headers, self._body = 0, CIMultiDict(), bytearray()
        head = "".join(f"{name}: {value}\r\n" for name, value in fields)
        self.transport.write(f"{method} {target} HTTP/1.1\r\n{head}\r\n".encode("latin-1") + body)
        # The bytes above are what h11 would write for these events (checked by the tests);
        # h11 learns of them only now, after the wire, where its validation costs nothing.
        try:
            self._h11.send(h11.Request(method=method, target=target, headers=fields))
            if body:
                self._h11.send(h11.Data(data=body))
            self._h11.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:  # the checks above should make this unreachable
            self._fail(f"request h11 refuses after it was written: {exc}")  # outcome unknown
        return waiter

    def data_received(self, data: bytes) -> None:
        try:
            self._h11.receive_data(data)
            self._read_events()
        except h11.RemoteProtocolError as exc:
            self._fail(f"malformed HTTP answer: {exc}")

    def eof_received(self) -> bool | None:
        with contextlib.suppress(h11.RemoteProtocolError):
            self._h11.receive_data(b"")
            self._read_events()  # an answer delimited by the close is complete now
        self._fail("connection closed by the server")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection lost: {exc!r}" if exc else "connection lost")

    def _read_events(self) -> None:
        while self.waiter is not None:
            event = self._h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self._status = event.status_code
                for name, value in event.headers:
                    self._headers.add(name.decode("latin-1"), value.decode("latin-1"))
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > _MAX_BODY_BYTES:
                    self._fail("answer body too large")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._complete()
            elif isinstance(event, h11.ConnectionClosed):
                self._fail("connection closed mid-answer")
                return

    def _complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        answer = WireAnswer(self._status, CIMultiDictProxy(self._headers), bytes(self._body))
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            self.idle_since_ns = self._clock.monotonic_ns()
        else:  # Connection: close, or an answer before our request was whole: never reuse
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def _fail(self, message: str) -> None:
        waiter, self.waiter = self.waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(WireError(message))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class OrderWire:
    """A few warm connections to one REST host, each writable synchronously when idle."""

    def __init__(
        self,
        base_url: str,
        clock: Clock,
        *,
        size: int = 2,
        idle_s: float = 20.0,
        connect_timeout_s: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        self._tls = parts.scheme == "https"
        self._hostname = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        default_port = 443 if self._tls else 80
        self._host_header = parts.netloc if parts.port not in (None, default_port) else parts.hostname
        self._prefix = parts.path.rstrip("/")
        self._clock = clock
        self._size = size
        self._idle_ns = int(idle_s * 1e9)
        self._connect_timeout_s = connect_timeout_s
        self._ssl = (ssl_context or ssl.create_default_context()) if self._tls else None
        self._connections: list[_Connection] = []
        self._carrying: dict[asyncio.Future[WireAnswer], _Connection] = {}
        self.connect_failures = 0  # consecutive failed connects (the back-off grows with them)
        self.sent = 0
        self.unavailable = 0  # try_send calls that found no idle connection

    @property
    def ready(self) -> int:
        """Return how many connections are idle and open."""
        return sum(1 for c in self._connections if c.idle)

    def try_send(
        self, method: str, path_and_query: str, headers: dict[str, str], body: bytes
    ) -> asyncio.Future[WireAnswer] | None:
        """Write a request now on an idle connection; None (nothing written) when none is idle."""
        for connection in self._connections:
            if connection.idle:
                break
        else:
            self.unavailable += 1
            return None
        try:
            future = connection.send(method, self._prefix + path_and_query, self._host_header, headers, body)
        except ValueError as exc:  # nothing written: the awaited path refuses it with a typed error
            log.error("order_wire_unsendable", error=str(exc))
            return None
        self._carrying[future] = connection
        future.add_done_callback(self._carrying.pop)
        self.sent += 1
        return future

    def abandon(self, future: asyncio.Future[WireAnswer]) -> None:
        """Close the connection of a request given up on (timeout): its answer can't be matched."""
        connection = self._carrying.pop(future, None)
        if connection is not None:
            connection.close()
        if not future.done():
            future.cancel()

    async def run(self, check_s: float = 0.25) -> None:
        """Keep `size` connections open and fresh until cancelled."""
        try:
            while True:
                self._refresh()
                missing = self._size - len(self._connections)
                for _ in range(missing):
                    await self._open()
                await self._clock.sleep(check_s)
        finally:
            self.close()

    def _refresh(self) -> None:
        now_ns = self._clock.monotonic_ns()
        for connection in self._connections:
            if connection.idle and now_ns - connection.idle_since_ns >= self._idle_ns:
                connection.close()
        self._connections = [c for c in self._connections if not c.closed]

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, self._clock),
                    self._hostname,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._hostname if self._tls else None,
                )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            # the aiohttp path carries orders meanwhile; an outage logs a line per back-off step,
            # not one per second
            self.connect_failures += 1
            delay_s = min(_MAX_CONNECT_BACKOFF_S, 2.0 ** (self.connect_failures - 1))
            log.warning("order_wire_connect_failed", host=self._hostname, error=repr(exc),
                        failures=self.connect_failures, retry_in_s=delay_s)  # fmt: skip
            await self._clock.sleep(delay_s)
            return
        self.connect_failures = 0
        self._connections.append(connection)

    def close(self) -> None:
        """Close every connection; requests in flight fail with WireError."""
        for connection in self._connections:
            connection.close()
        self._connections = []
