"""The live subscribe protocol of Binance market-data websockets (reference/binance-api.md §1.2).

``SUBSCRIBE``/``UNSUBSCRIBE`` answer ``{"result":null,"id":N}``, ``LIST_SUBSCRIPTIONS`` the list,
``SET_PROPERTY``/``GET_PROPERTY`` handle ``combined``. Malformed requests get Binance's error
shape ``{"error":{"code":2,"msg":"Invalid request: ..."},"id":N}``. A stream on the wrong route
is accepted like Binance does, and simply never delivers.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from exchange.sim.connection import Connection

if TYPE_CHECKING:
    from exchange.sim.server import SimServer

_ID_STRING_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


def _error(code: int, msg: str, request_id: Any) -> bytes:
    return orjson.dumps({"error": {"code": code, "msg": msg}, "id": request_id})


def _valid_id(request_id: Any) -> bool:
    if request_id is None:
        return True
    if isinstance(request_id, bool):
        return False
    if isinstance(request_id, int):
        return -(2**63) <= request_id < 2**63
    return isinstance(request_id, str) and bool(_ID_STRING_RE.match(request_id))


def _stream_params(params: Any) -> list[str] | None:
    if not isinstance(params, list) or not all(isinstance(p, str) and p for p in params):
        return None
    return params


def handle_control_message(sim: SimServer, conn: Connection, text: str) -> bytes | None:
    """Apply one client JSON request to conn; return the reply frame."""
    try:
        request = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return _error(3, f"Invalid JSON: {exc}", None)
    if not isinstance(request, dict):
        return _error(2, "Invalid request: expected a JSON object", None)
    request_id = request.get("id")
    if not _valid_id(request_id):
        return _error(2, "Invalid request: request ID must be an integer or short string", None)
    method = request.get("method")
    params = request.get("params")
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        names = _stream_params(params)
        if names is None:
            return _error(2, "Invalid request: params must be a list of stream names", request_id)
        if method == "SUBSCRIBE":
            sim.subscribe(conn, names)
        else:
            sim.unsubscribe(conn, names)
        return orjson.dumps({"result": None, "id": request_id})
    if method == "LIST_SUBSCRIPTIONS":
        return orjson.dumps({"result": list(conn.subs), "id": request_id})
    if method == "SET_PROPERTY":
        if not isinstance(params, list) or len(params) != 2 or params[0] != "combined":
            return _error(0, "Unknown property", request_id)
        if not isinstance(params[1], bool):
            return _error(1, "Invalid value type: expected Boolean", request_id)
        conn.combined = params[1]
        return orjson.dumps({"result": None, "id": request_id})
    if method == "GET_PROPERTY":
        if params != ["combined"]:
            return _error(0, "Unknown property", request_id)
        return orjson.dumps({"result": conn.combined, "id": request_id})
    return _error(2, f"Invalid request: unknown method {method!r}", request_id)
