"""Random HTTP at the dashboard: never a 5xx, never down, never open without its token.

Two dashboards of a real App (fed a slice of the spot tape, as tests/engine/dashboard does),
both on 127.0.0.1: an open one (loopback config, no token), and a locked one built from a
non-loopback config (`host: 0.0.0.0`, the token from its environment variable, exactly as
`attach_dashboard` resolves it) whose aiohttp application is served on 127.0.0.1 here, since
tests bind nothing else. Requests are written as raw bytes (random methods, targets, query
strings, headers, bodies, websocket upgrades, malformed request lines) so nothing is tidied by a
client library first. After each example a plain snapshot request still answers 200.
"""

from __future__ import annotations

import asyncio
import json
import string
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_plus

import aiohttp
import pytest
from aiohttp import web
from fuzz_support import LoopRunner, count, fuzz_settings
from hypothesis import event, given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine" / "dashboard"))
from dashboard_harness import build_fed_app

from engine.app import App
from engine.dashboard import (
    Dashboard,
    DashboardAuthError,
    DashboardConfig,
    is_loopback,
    resolve_token,
)

SUITE = "dashboard"
ENV = "TICKLOOP_DASHBOARD_TOKEN"
TOKEN = "fuzz-dashboard-token-0123456789"
READ_LIMIT_S = 10.0  # a safety limit on each answer, not a timing assertion
WAIT_LIMIT_S = 0.3  # how long to wait for an answer to a request that may rightly get none


@dataclass
class Served:
    board: Dashboard
    port: int
    token: str | None


@dataclass
class Rig:
    runner: LoopRunner
    open: Served
    locked: Served


@pytest.fixture(scope="module")
def rig(tapes: dict[str, Path]) -> Iterator[Rig]:
    app: App = build_fed_app([tapes["spot_btcusdt"]], {"mode": "live"}, limit=3_000)
    runner = LoopRunner()
    sites: list[web.AppRunner] = []

    async def serve(board: Dashboard, token: str | None) -> Served:
        site_runner = web.AppRunner(board.web_app, access_log=None)
        await site_runner.setup()
        site = web.TCPSite(site_runner, "127.0.0.1", 0)
        await site.start()
        sites.append(site_runner)
        await board.publish()
        return Served(board, site_runner.addresses[0][1], token)

    open_config = DashboardConfig(port=0)
    locked_config = DashboardConfig(host="0.0.0.0", port=0)  # reachable from other machines
    with pytest.raises(DashboardAuthError):
        resolve_token(locked_config, {})  # refused without a token before any socket opens
    token = resolve_token(locked_config, {ENV: TOKEN})
    assert token == TOKEN
    open_served = runner.run(
        serve(Dashboard(app, open_config, resolve_token(open_config, {})), None)
    )
    locked_served = runner.run(serve(Dashboard(app, locked_config, token), TOKEN))
    yield Rig(runner, open_served, locked_served)

    async def stop() -> None:
        for site_runner in sites:
            await site_runner.cleanup()

    runner.run(stop())
    runner.close()


# -- requests ---------------------------------------------------------------------------------

_TOKEN_CHARS = st.characters(codec="ascii", exclude_categories=("Cc",))
_URL_TEXT = st.text(
    st.sampled_from(string.ascii_letters + string.digits + "-._~/%!$'()*+,;=:@"), max_size=30
)
ROUTES = ["/", "/api/snapshot", "/ws"]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
_METHOD = st.sampled_from(METHODS * 4 + ["TRACE", "CONNECT", "BREW", "get", "", "A" * 50])
_PATH = st.one_of(
    st.sampled_from(ROUTES),
    st.sampled_from(["/api/snapshot/", "/api", "/static/app.js", "/../../etc/passwd",
                     "/%2e%2e/%2e%2e/", "//api/snapshot", "/index.html", "/api/snapshot%00", "/%zz",
                     "*", "http://127.0.0.1/api/snapshot", "", "/API/SNAPSHOT", "/ws/", "/a b"]),
    _URL_TEXT.map(lambda t: "/" + t),
)  # fmt: skip
_QUERY = st.one_of(
    st.just(""),
    st.sampled_from(["token=" + TOKEN, "token=", "token=" + TOKEN[:-1], "token=%zz",
                     "token=" + TOKEN + "&token=x", "x=1&token=" + TOKEN, "token=" + TOKEN.upper(),
                     "token[]=" + TOKEN, "=&&=", "token=" + "a" * 5000, "token=" + TOKEN + "%00"]),
    _URL_TEXT.map(lambda t: t.replace("/", "&")),
)  # fmt: skip
_COMMON_HEADER = st.sampled_from(
    [("Authorization", "Bearer " + TOKEN), ("Authorization", "Bearer " + TOKEN + " "),
     ("Authorization", "bearer " + TOKEN), ("Authorization", "Basic dXNlcjpwYXNz"),
     ("Authorization", "Bearer"), ("Authorization", "Bearer \xe9"), ("Upgrade", "websocket"),
     ("Connection", "Upgrade"), ("Connection", "close"), ("Sec-WebSocket-Version", "13"),
     ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Key", "x"),
     ("Content-Encoding", "gzip"), ("Content-Type", "application/json"), ("Host", ""),
     ("Host", "evil.example"), ("Origin", "http://evil.example"), ("X-Forwarded-For", "1.2.3.4"),
     ("Cookie", "token=" + TOKEN), ("X", "a" * 9000), ("Accept", "*/*")]
)  # fmt: skip
_FRAMING_HEADER = st.sampled_from(
    [("Content-Length", "5"), ("Content-Length", "0"), ("Content-Length", "-1"),
     ("Content-Length", "99999999999"), ("Content-Length", "5, 6"), ("Transfer-Encoding", "chunked"),
     ("Transfer-Encoding", "gzip, chunked"), ("Transfer-Encoding", "identity"),
     ("Expect", "100-continue"), ("Expect", "nonsense")]
)  # fmt: skip
_HEADER = st.one_of(
    _COMMON_HEADER,
    _COMMON_HEADER,
    _COMMON_HEADER,
    _FRAMING_HEADER,
    st.tuples(st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=10),
              st.text(_TOKEN_CHARS, max_size=30)),
)  # fmt: skip
_VERSION = st.sampled_from(["HTTP/1.1"] * 15 + ["HTTP/1.0", "HTTP/2.0", "HTTP/9", "", "FOO"])
_BODY = st.one_of(
    st.just(b""),
    st.just(b""),
    st.just(b""),
    st.binary(max_size=300),
    st.sampled_from([b"0\r\n\r\n", b"zz\r\nx\r\n"]),
)
_MAX_FRAMED = 10_000


@dataclass(frozen=True)
class RawRequest:
    method: str
    path: str
    query: str
    version: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    garbage: bytes | None  # a request line that is not HTTP at all

    def _framed_body(self) -> bytes:
        """The body as long as a Content-Length says, so a complete request is complete."""
        for name, value in self.headers:
            if name.lower() == "content-length" and value.isdigit() and int(value) <= _MAX_FRAMED:
                return self.body[: int(value)].ljust(int(value), b"x")
        return self.body

    def to_bytes(self) -> bytes:
        if self.garbage is not None:
            return self.garbage
        target = self.path + ("?" + self.query if self.query else "")
        lines = [f"{self.method} {target} {self.version}".rstrip(), "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + self._framed_body()

    @property
    def may_wait(self) -> bool:
        """True when the server may rightly wait for more bytes (no answer is then fine)."""
        if self.garbage is not None:
            return True
        for name, value in self.headers:
            if name.lower() == "transfer-encoding" or (
                name.lower() == "content-length" and value.isdigit() and int(value) > _MAX_FRAMED
            ):
                return True
        return False

    @property
    def offers_token(self) -> bool:
        """True when the exact token appears anywhere the dashboard could read it."""
        return self.garbage is None and (
            f"token={TOKEN}" in self.query
            or any(
                v.strip() == "Bearer " + TOKEN
                for n, v in self.headers
                if n.lower() == "authorization"
            )
        )

    @property
    def authenticated(self) -> bool:
        """True when the request carries the exact token the way the dashboard takes it:
        the first `token` query parameter, else an `Authorization: Bearer <token>` header."""
        if self.garbage is not None:
            return False
        values = [
            unquote_plus(value)
            for key, _, value in (p.partition("=") for p in self.query.split("&") if p)
            if unquote_plus(key) == "token"
        ]
        if values:
            return values[0] == TOKEN
        auth = [v.strip() for n, v in self.headers if n.lower() == "authorization"]
        return bool(auth) and auth[0] == "Bearer " + TOKEN


_GARBAGE = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [b"\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
         b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n"]
    ),
)  # fmt: skip
_REQUEST = st.builds(
    RawRequest,
    method=_METHOD,
    path=_PATH,
    query=_QUERY,
    version=_VERSION,
    headers=st.lists(_HEADER, max_size=3).map(tuple),
    body=_BODY,
    garbage=st.one_of(st.none(), st.none(), st.none(), st.none(), _GARBAGE),
)


async def _send(port: int, payload: bytes, limit_s: float = READ_LIMIT_S) -> int | None:
    """Send raw bytes; return the response status, or None when no answer came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), limit_s)
        while line.startswith(b"HTTP/1.1 100"):  # "continue": the final status follows
            while (await asyncio.wait_for(reader.readline(), limit_s)).strip():
                pass
            line = await asyncio.wait_for(reader.readline(), limit_s)
    except (ConnectionError, TimeoutError):
        return None
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)
    parts = line.split()
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    assert not line, f"not an HTTP answer: {line!r}"
    return None


async def _snapshot_still_served(served: Served) -> None:
    params = {"token": served.token} if served.token else {}
    url = f"http://127.0.0.1:{served.port}/api/snapshot"
    async with aiohttp.ClientSession() as http, http.get(url, params=params) as resp:
        assert resp.status == 200
        snapshot = json.loads(await resp.text())
    assert snapshot["coins"][0]["symbol"] == "BTCUSDT"


@fuzz_settings(ci_examples=120, deep_examples=5000)
@given(requests=st.lists(_REQUEST, min_size=1, max_size=4), locked=st.booleans())
def test_any_request_is_answered_without_a_5xx_and_the_token_is_required(
    rig: Rig, requests: list[RawRequest], locked: bool
) -> None:
    count(SUITE)
    count(SUITE, "requests", len(requests))
    served = rig.locked if locked else rig.open
    for request in requests:
        limit_s = WAIT_LIMIT_S if request.may_wait else READ_LIMIT_S
        status = rig.runner.run(_send(served.port, request.to_bytes(), limit_s))
        event(f"status {status}")
        assert status is not None or request.may_wait, f"no answer to a complete request {request}"
        # 505 is the protocol's own answer to "HTTP/9": a refusal, not a server error
        assert status is None or status < 500 or status == 505, (status, request)
        if locked and status is not None and not request.authenticated:
            assert not 200 <= status < 400, (status, request)  # never served without the token
            if not request.offers_token:  # (CONNECT's target has no query the server reads)
                assert status in (400, 401, 403, 413, 414, 417, 431, 505), (status, request)
    rig.runner.run(_snapshot_still_served(served))


_AUTH_VARIANTS = {
    "none": ("", ()),
    "empty query token": ("token=", ()),
    "prefix": ("token=" + TOKEN[:-1], ()),
    "wrong": ("token=not-the-token-at-all-000", ()),
    "upper": ("token=" + TOKEN.upper(), ()),
    "bearer lower": ("", (("Authorization", "bearer " + TOKEN),)),
    "basic": ("", (("Authorization", "Basic " + TOKEN),)),
    "cookie": ("", (("Cookie", "token=" + TOKEN),)),
    "wrong query wins": ("token=x", (("Authorization", "Bearer " + TOKEN),)),
    "token[]": ("token[]=" + TOKEN, ()),
}


@pytest.mark.parametrize("auth", list(_AUTH_VARIANTS), ids=list(_AUTH_VARIANTS))
def test_every_route_and_method_refuses_a_request_without_the_token(rig: Rig, auth: str) -> None:
    """The grid the fuzz samples from, in full: no route, no method opens without the token."""
    count(SUITE)
    query, headers = _AUTH_VARIANTS[auth]
    for path in [*ROUTES, "/nosuch"]:
        for method in METHODS:
            request = RawRequest(method, path, query, "HTTP/1.1", headers, b"", None)
            assert not request.authenticated
            count(SUITE, "requests")
            status = rig.runner.run(_send(rig.locked.port, request.to_bytes()))
            assert status in (401, 403), (status, request)


_WS_MESSAGE = st.one_of(
    st.text(max_size=50).map(lambda t: ("text", t)),
    st.binary(max_size=50).map(lambda b: ("bytes", b)),
    st.sampled_from([("ping", b"x"), ("close", b"")]),
)


@fuzz_settings(ci_examples=25, deep_examples=500)
@given(messages=st.lists(_WS_MESSAGE, max_size=6), locked=st.booleans())
def test_a_websocket_client_sending_anything_leaves_the_push_running(
    rig: Rig, messages: list[tuple[str, object]], locked: bool
) -> None:
    count(SUITE)
    served = rig.locked if locked else rig.open

    async def talk() -> None:
        params = {"token": served.token} if served.token else {}
        url = f"http://127.0.0.1:{served.port}/ws"
        async with aiohttp.ClientSession() as http, http.ws_connect(url, params=params) as ws:
            first = await ws.receive(timeout=READ_LIMIT_S)
            assert json.loads(first.data)["coins"]
            for kind, body in messages:
                if kind == "text":
                    await ws.send_str(body)  # type: ignore[arg-type]
                elif kind == "bytes":
                    await ws.send_bytes(body)  # type: ignore[arg-type]
                elif kind == "ping":
                    await ws.ping(body)  # type: ignore[arg-type]
                else:
                    await ws.close()
                    return
            await served.board.publish()  # the page still gets the next snapshot
            pushed = await ws.receive(timeout=READ_LIMIT_S)
            assert pushed.type is aiohttp.WSMsgType.TEXT and json.loads(pushed.data)["coins"]

    rig.runner.run(talk())
    rig.runner.run(_snapshot_still_served(served))


@fuzz_settings(ci_examples=200, deep_examples=10_000)
@given(
    host=st.one_of(
        st.sampled_from(["127.0.0.1", "localhost", "LOCALHOST", "::1", "[::1]", "0.0.0.0", "::",
                         "127.255.255.254", "10.0.0.1", "example.org", "127.0.0.1.nip.io",
                         "localhost.evil.example", "0177.0.0.1", "::ffff:127.0.0.1", " 127.0.0.1"]),
        st.ip_addresses().map(str),
        st.text(min_size=1, max_size=20),
    ),
    token=st.one_of(st.none(), st.text(max_size=40)),
)  # fmt: skip
def test_a_host_reachable_from_elsewhere_never_goes_without_a_token(
    host: str, token: str | None
) -> None:
    count(SUITE)
    try:
        config = DashboardConfig(host=host)
    except ValueError:
        return  # refused by the config (an empty host)
    env = {ENV: token} if token is not None else {}
    try:
        resolved = resolve_token(config, env)
    except DashboardAuthError:
        return
    if resolved is None:
        assert is_loopback(config.host), config.host  # open only where only this machine reaches
    else:
        assert resolved == token and len(resolved) >= 16


@pytest.mark.parametrize(
    "header", [b"Bearer \xe9", b"Bearer \xff\xfe", b"Bearer " + TOKEN.encode() + b"\xe9"]
)
def test_a_token_header_that_is_not_utf8_is_refused_not_a_500(rig: Rig, header: bytes) -> None:
    """Regression of issue #8: the token check encoded the header strictly and answered 500."""
    count(SUITE)
    raw = b"GET /api/snapshot HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + header + b"\r\n\r\n"
    assert rig.runner.run(_send(rig.locked.port, raw)) == 403
    rig.runner.run(_snapshot_still_served(rig.locked))
