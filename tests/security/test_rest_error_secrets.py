"""Errors of the signed REST client against a server that echoes each request into its answer.

A misbehaving proxy, WAF or exchange error page may repeat the request: its query string with
the signature, its X-MBX-APIKEY header, its form body. The API secret itself never leaves the
process, so it can be in no answer; the signature and the key can. Checked here: the typed
error's str() and repr(), and the log line the engine writes for it (the real logging set-up
of `tickloop run`, reading the keys from the environment), for AuthFailed (401 -2015),
Rejected (400 -1013 on an order) and a non-JSON 403 page.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
import structlog
from aiohttp import web

from engine.clock import LiveClock
from engine.commands import setup_logging
from engine.config import parse_config
from engine.model import Market
from exchange.binance.auth import BinanceKeys
from exchange.binance.rest import BinanceRest
from exchange.binance.urls import BinanceEndpoints
from exchange.errors import AuthFailed, ExchangeError, Rejected, RejectReason

API_KEY = "tlkEchoKey" + "k3Y9" * 13  # 62 characters, never a real key
API_SECRET = "tlsEchoSecret" + "s3C7" * 12


def _echo(request: web.Request, body: str) -> str:
    key = request.headers.get("X-MBX-APIKEY", "")
    return f"X-MBX-APIKEY={key} {request.method} {request.path_qs} body={body}"


async def _time(_request: web.Request) -> web.Response:
    return web.json_response({"serverTime": time.time_ns() // 1_000_000})


async def _account(request: web.Request) -> web.Response:
    msg = "Invalid API-key, IP, or permissions for action. Request: " + _echo(request, "")
    return web.json_response({"code": -2015, "msg": msg}, status=401)


async def _order(request: web.Request) -> web.Response:
    body = (await request.read()).decode()
    msg = "Filter failure: LOT_SIZE. Request: " + _echo(request, body)
    return web.json_response({"code": -1013, "msg": msg}, status=400)


async def _waf(request: web.Request) -> web.Response:
    page = f"<html><body>Request blocked: {_echo(request, '')}</body></html>"
    return web.Response(status=403, text=page, content_type="text/html")


@pytest.fixture
async def echo_rest() -> AsyncIterator[BinanceRest]:
    app = web.Application()
    app.router.add_get("/api/v3/time", _time)
    app.router.add_get("/api/v3/account", _account)
    app.router.add_post("/api/v3/order", _order)
    app.router.add_get("/api/v3/openOrders", _waf)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as http:
        yield BinanceRest(
            Market.SPOT,
            BinanceEndpoints(f"http://127.0.0.1:{port}", "ws://unused"),
            LiveClock(),
            http,
            BinanceKeys.hmac(API_KEY, API_SECRET),
        )
    await runner.cleanup()


async def _errors(rest: BinanceRest) -> dict[str, ExchangeError]:
    errors: dict[str, ExchangeError] = {}
    with pytest.raises(AuthFailed) as auth:
        await rest.get("/api/v3/account", signed=True, weight=20)
    errors["AuthFailed"] = auth.value
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
             "quantity": "0.00001", "price": "60000", "newClientOrderId": "tl-sec-1"}  # fmt: skip
    with pytest.raises(Rejected) as rejected:
        await rest.post("/api/v3/order", order, signed=True, order=True)
    assert rejected.value.reason is RejectReason.FILTER
    errors["Rejected"] = rejected.value
    with pytest.raises(ExchangeError) as waf:
        await rest.get("/api/v3/openOrders", {"symbol": "BTCUSDT"}, signed=True, weight=6)
    errors[type(waf.value).__name__ + " (HTML 403)"] = waf.value
    return errors


def _leaks(text: str) -> list[str]:
    found = []
    if API_SECRET in text or quote(API_SECRET, safe="") in text:
        found.append("API secret")
    if "signature=" in text and "signature=***" not in text:
        found.append("signature-bearing query")
    if API_KEY in text:
        found.append("API key unredacted")
    return found


async def test_the_server_did_echo_the_signed_request(echo_rest: BinanceRest) -> None:
    # the premise of the checks below: each answer carried the query, signature and key, and the
    # error kept the echo with both redacted (not dropped)
    errors = await _errors(echo_rest)
    for name, error in errors.items():
        assert "signature=***" in error.message and f"X-MBX-APIKEY={API_KEY[:4]}***" in error.message, name


async def test_log_lines_for_these_errors_carry_no_secret_signature_or_key(
    echo_rest: BinanceRest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BINANCE_API_KEY", API_KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", API_SECRET)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout is read
    config = parse_config({"logging": {"console": "off", "file": "engine.jsonl"},
                           "paths": {"log_dir": str(tmp_path)}})  # fmt: skip
    setup_logging(config)  # what `tickloop run` does: the keys come from the environment
    try:
        errors = await _errors(echo_rest)
        log = structlog.get_logger("exchange.binance.venue")
        for name, error in errors.items():
            # as the venue logs a failed command, and as a caller logging the traceback would
            log.error("order_command_failed", symbol="BTCUSDT", command=name, error=repr(error))
            try:
                raise error
            except ExchangeError:
                log.exception("rest_call_failed", command=name)
    finally:
        structlog.reset_defaults()
    lines = (tmp_path / "engine.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 * len(errors)
    for line in lines:
        event = json.loads(line)
        assert _leaks(line) == [], event
        assert "***" in line, event  # the echo was there and was redacted, not absent


async def test_error_texts_carry_no_secret_signature_or_unredacted_key(
    echo_rest: BinanceRest,
) -> None:
    errors = await _errors(echo_rest)
    leaks = {name: _leaks(str(e)) + _leaks(repr(e)) for name, e in errors.items()}
    assert all(API_SECRET not in str(e) + repr(e) for e in errors.values())  # never sent at all
    assert leaks == {name: [] for name in errors}
