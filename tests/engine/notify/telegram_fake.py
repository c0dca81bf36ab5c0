"""A local fake of the Telegram Bot API on 127.0.0.1, speaking the wire format aiogram uses.

`POST /bot<token>/<method>` with form fields; answers `{"ok": true, "result": ...}`. Implements
getMe, sendMessage, editMessageText, answerCallbackQuery and getUpdates (long polling with
offset; a negative offset keeps only the newest updates, as Telegram does). Every request is
recorded (method, fields, a stamp from an optional clock), never with the token: the fake only
checks it and answers 401 to any other. Faults are scripted per method: an HTTP status with a
description and optional `parameters.retry_after`, a non-JSON body, or a delay.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

BOT_ID = 123456789
BOT_USERNAME = "tickloop_test_bot"
DATE = 1_767_225_600  # 2026-01-01T00:00:00Z: messages' date field


@dataclass(frozen=True)
class Recorded:
    method: str
    fields: dict[str, str]
    stamp_ns: int | None  # the test clock when the request arrived
    status: int  # what the fake answered


@dataclass
class Fault:
    status: int
    description: str = "fault"
    retry_after: int | None = None
    body: str | None = None  # a raw (non-JSON) body instead of the JSON error
    echo_path: bool = False  # put the request path (with the token) into the description
    delay_s: float = 0.0


@dataclass
class FakeTelegram:
    token: str = field(repr=False)  # never shown, even in a failing test's locals
    clock_ns: Callable[[], int] | None = None
    requests: list[Recorded] = field(default_factory=list)
    faults: dict[str, deque[Fault]] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)  # sendMessage results
    next_update_id: int = 1
    next_message_id: int = 100
    _runner: web.AppRunner | None = None
    port: int = 0

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._new_update = asyncio.Event()
        # no access log: the request path carries the token
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        self._new_update.set()  # end pending long polls now rather than at their timeout
        await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting -----------------------------------------------------------------------------
    def fail(self, method: str, fault: Fault, times: int = 1) -> None:
        """Answer the next `times` calls of method with this fault."""
        self.faults.setdefault(method, deque()).extend(fault for _ in range(times))

    def push_message(
        self, chat_id: int, text: str, user_id: int | None = None, username: str = "operator"
    ) -> int:
        """Queue an incoming text message for getUpdates; return its update id."""
        message = {
            "message_id": self._message_id(),
            "date": DATE,
            "chat": {"id": chat_id, "type": "private"},
            "from": {
                "id": user_id or chat_id,
                "is_bot": False,
                "first_name": "Op",
                "username": username,
            },
            "text": text,
        }
        return self._push({"message": message})

    def push_callback(
        self, chat_id: int, data: str, message_id: int, username: str = "operator"
    ) -> int:
        """Queue an inline-button press on message_id for getUpdates; return its update id."""
        query = {
            "id": f"cb{self.next_update_id}",
            "from": {"id": chat_id, "is_bot": False, "first_name": "Op", "username": username},
            "chat_instance": "ci",
            "data": data,
            "message": {
                "message_id": message_id,
                "date": DATE,
                "chat": {"id": chat_id, "type": "private"},
                "text": "prompt",
            },
        }
        return self._push({"callback_query": query})

    def _push(self, body: dict[str, Any]) -> int:
        update_id = self.next_update_id
        self.next_update_id += 1
        self.updates.append({"update_id": update_id, **body})
        self._new_update.set()
        return update_id

    def _message_id(self) -> int:
        self.next_message_id += 1
        return self.next_message_id

    # -- reading what happened -----------------------------------------------------------------
    def calls(self, method: str, status: int | None = 200) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.method == method and (status is None or r.status == status)
        ]

    def sent(self, chat_id: int | None = None) -> list[str]:
        """Texts of the messages delivered (status 200), optionally to one chat."""
        return [
            r.fields["text"]
            for r in self.calls("sendMessage")
            if chat_id is None or int(r.fields["chat_id"]) == chat_id
        ]

    async def wait_for(self, predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
        """Wait until predicate() holds (a safety limit, not a timing assertion)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while not predicate():
            if loop.time() > deadline:
                methods = [(r.method, r.status) for r in self.requests]
                raise AssertionError(f"condition not met; requests so far: {methods}")
            await asyncio.sleep(0.005)

    # -- the server ----------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        fields = {k: str(v) for k, v in (await request.post()).items()}
        stamp = self.clock_ns() if self.clock_ns is not None else None
        if request.match_info["token"] != self.token:
            return self._record(method, fields, stamp, 401, self._error(401, "Unauthorized"))
        queue = self.faults.get(method)
        if queue:
            fault = queue.popleft()
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.body is not None:
                response = web.Response(status=fault.status, text=fault.body)
                return self._record(method, fields, stamp, fault.status, response)
            description = fault.description + (f" at {request.path}" if fault.echo_path else "")
            return self._record(
                method,
                fields,
                stamp,
                fault.status,
                self._error(fault.status, description, fault.retry_after),
            )
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return self._record(method, fields, stamp, 404, self._error(404, "Not Found"))
        result = await handler(fields)
        return self._record(
            method, fields, stamp, 200, web.json_response({"ok": True, "result": result})
        )

    def _record(
        self,
        method: str,
        fields: dict[str, str],
        stamp: int | None,
        status: int,
        response: web.Response,
    ) -> web.Response:
        self.requests.append(Recorded(method, fields, stamp, status))
        return response

    @staticmethod
    def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)

    # -- methods -------------------------------------------------------------------------------
    async def _m_getMe(self, fields: dict[str, str]) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "tickloop", "username": BOT_USERNAME}

    async def _m_sendMessage(self, fields: dict[str, str]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": self._message_id(),
            "date": DATE,
            "chat": {"id": int(fields["chat_id"]), "type": "private"},
            "text": fields["text"],
        }
        if "reply_markup" in fields:
            message["reply_markup"] = json.loads(fields["reply_markup"])
        self.messages.append(message)
        return message

    async def _m_editMessageText(self, fields: dict[str, str]) -> dict[str, Any]:
        return {
            "message_id": int(fields["message_id"]),
            "date": DATE,
            "chat": {"id": int(fields["chat_id"]), "type": "private"},
            "text": fields["text"],
        }

    async def _m_answerCallbackQuery(self, fields: dict[str, str]) -> bool:
        return True

    async def _m_getUpdates(self, fields: dict[str, str]) -> list[dict[str, Any]]:
        offset = int(fields.get("offset", "0"))
        if offset < 0:
            self.updates = self.updates[offset:]  # keep the newest -offset, forget the rest
        elif offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if not self.updates and (timeout := int(fields.get("timeout", "0"))) > 0:
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), timeout)
            except TimeoutError:
                pass
        return list(self.updates)
