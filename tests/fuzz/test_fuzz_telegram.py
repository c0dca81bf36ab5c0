"""Random Telegram updates: never a crash, strangers refused and logged, dangerous commands only
after the same chat confirmed the code it was shown.

Two layers, both in front of a real paper-trading App (AppControl; its methods are recorded by a
pass-through proxy, never replaced):

* the command router (engine/notify/commands.py `CommandRouter.handle`) with random sequences of
  messages and button presses from allowed, unknown and missing chats, random commands, codes,
  arguments and clock steps;
* the whole notifier through aiogram (`TelegramNotifier.run` + `AiogramBotApi`) against the local
  fake Bot API server of tests/engine/notify, fed random update objects of every shape the Bot
  API schema allows; afterwards the service is alive and still answers an allowed chat.

An update aiogram cannot validate (a schema break) is confirmed and skipped, never handled; the
commands after it are still answered (issue #8's finding, now a regression test).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from fuzz_support import LoopRunner, count, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine" / "notify"))
from notify_support import CHAT, OTHER_CHAT, STRANGER, TOKEN, spot_exchange_info, tg_config
from telegram_fake import FakeTelegram

from engine.app import App
from engine.clock import ReplayClock
from engine.config import parse_config
from engine.notify import TelegramNotifier
from engine.notify.botapi import AiogramBotApi, IncomingUpdate
from engine.notify.commands import HELP, CommandRouter
from engine.notify.control import AppControl

SUITE = "telegram"
ALLOWED = (CHAT, OTHER_CHAT)
T0_NS = 1_767_268_800 * 10**9
TIMEOUT_S = 60.0
TELEGRAM_MAX_CHARS = 4096
DANGEROUS_METHODS = {
    "halt": "halt",
    "flatten": "flatten",
    "stopentry": "stop_entries",
    "reload": "reload",
    "start": "resume_entries",
}


class Recorder:
    """Pass every call through to the real control and note which method ran."""

    def __init__(self, control: AppControl) -> None:
        self._control = control
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._control, name)

        def call(*args: Any) -> Any:
            self.calls.append(name)
            return method(*args)

        return call


@pytest.fixture(scope="module")
def app(shared_data: Path) -> App:
    config = parse_config({"logging": {"console": "off", "file": None}})
    exchange_info = spot_exchange_info(shared_data, config.market.symbols)
    return App(config, clock=ReplayClock(T0_NS), exchange_info=exchange_info)


# -- the router -------------------------------------------------------------------------------

_CHATS = st.one_of(
    st.sampled_from([CHAT, CHAT, OTHER_CHAT, STRANGER, None, 0, -CHAT]),
    st.integers(-(2**63), 2**63),
)
_COMMANDS = st.sampled_from(
    ["/status", "/positions", "/balance", "/profit", "/daily", "/performance", "/signals",
     "/help", "/start", "/halt", "/halt market is weird", "/flatten", "/stopentry", "/reload",
     "/cancel", "/confirm", "/STATUS@tickloop_test_bot", "/flatten@other_bot", "/nosuch",
     "/", "//halt", "/halt\tnow", " /status ", "/confirm\t1234", "/cancel 0000"]
)  # fmt: skip
_TEXT = st.text(max_size=40)


@dataclass
class Prompt:
    chat: int
    command: str
    expires_ns: int


@dataclass
class RouterModel:
    """What may run: the prompts each chat was shown (code -> chat, command, expiry)."""

    prompts: dict[str, Prompt] = field(default_factory=dict)

    def learn(self, replies: tuple, now_ns: int) -> None:
        for reply in replies:
            code = re.search(r"/confirm (\d{4})", reply.text)
            command = re.match(r"Confirm /(\w+)", reply.text)
            if code and command and reply.edit_message_id is None:
                self.prompts[code.group(1)] = Prompt(
                    reply.chat_id, command.group(1), now_ns + int(TIMEOUT_S * 1e9)
                )


def _confirmed_code(update: IncomingUpdate) -> str | None:
    """The code an update confirms, read permissively (the router may refuse more)."""
    if update.callback_id is not None:
        action, _, code = update.text.partition(":")
        return code if action == "confirm" else None
    match = re.match(r"\s*/confirm\S*\s+(\S+)", update.text, re.IGNORECASE)
    return match.group(1) if match else None


_KIND = st.sampled_from(["command", "command", "confirm", "confirm", "cancel", "button", "text"])
_STEP_NS = st.sampled_from([0, 10**9, 30 * 10**9, 59 * 10**9, 61 * 10**9])


def _update(data: st.DataObject, n: int, codes: list[str]) -> IncomingUpdate:
    chat = data.draw(st.one_of(st.sampled_from(ALLOWED), _CHATS), label="chat")
    user = data.draw(st.sampled_from(["@operator", "id 5", "", "@" + "x" * 300]))
    code = data.draw(st.sampled_from([*codes[::-1], "1234", "", "abcd", "99999"]), label="code")
    kind = data.draw(_KIND, label="kind")
    if kind == "button":
        payload = data.draw(
            st.one_of(
                st.sampled_from([f"confirm:{code}", f"cancel:{code}", "confirm:", ":"]), _TEXT
            )
        )
        message_id = data.draw(st.one_of(st.none(), st.integers(-5, 2**40)))
        return IncomingUpdate(n, chat, user, payload, callback_id=f"cb{n}", message_id=message_id)
    if kind == "confirm":
        text = data.draw(
            st.sampled_from([f"/confirm {code}", f"/CONFIRM@bot {code}", f"/confirm  {code}"])
        )
    elif kind == "cancel":
        text = data.draw(st.sampled_from([f"/cancel {code}", "/cancel", f"/cancel@bot {code} x"]))
    elif kind == "command":
        text = data.draw(
            st.one_of(_COMMANDS, _COMMANDS.flatmap(lambda c: _TEXT.map(lambda t: f"{c} {t}")))
        )
    else:
        text = data.draw(st.one_of(_TEXT, st.just("/status " + "x" * 5000)), label="text")
    return IncomingUpdate(
        n, chat, user, text, message_id=data.draw(st.one_of(st.none(), st.integers()))
    )


@fuzz_settings(ci_examples=150, deep_examples=5000)
@given(data=st.data())
def test_router_refuses_strangers_and_runs_dangerous_commands_only_when_confirmed(
    app: App, data: st.DataObject
) -> None:
    count(SUITE)
    now = [T0_NS]
    recorder = Recorder(AppControl(app))
    router = CommandRouter(recorder, ALLOWED, lambda: now[0], TIMEOUT_S)
    model = RouterModel()
    steps = data.draw(st.integers(1, 15), label="updates")
    for n in range(steps):
        now[0] += data.draw(_STEP_NS, label="clock step")
        update = _update(data, n, list(model.prompts))
        refused_before, calls_before = router.refused, len(recorder.calls)
        with structlog.testing.capture_logs() as logs:
            handled = router.handle(update)  # never raises
        calls = recorder.calls[calls_before:]
        count(SUITE, "updates")
        if update.chat_id not in ALLOWED:
            assert handled.replies == () and handled.callback_answer is None, handled
            assert router.refused == refused_before + 1
            assert calls == [], calls
            refusals = [e for e in logs if e["event"] == "telegram_refused"]
            assert refusals and refusals[0]["chat_id"] == update.chat_id
            continue
        for reply in handled.replies:
            assert reply.chat_id == update.chat_id, (reply, update)
            assert 0 < len(reply.text) <= TELEGRAM_MAX_CHARS
            assert reply.edit_message_id is None or reply.edit_message_id == update.message_id
        dangerous = [c for c in calls if c in DANGEROUS_METHODS.values()]
        if dangerous:
            code = _confirmed_code(update)
            prompt = model.prompts.pop(code, None) if code is not None else None
            assert prompt is not None, (update, dangerous)  # never without a prompt's code
            assert prompt.chat == update.chat_id and now[0] < prompt.expires_ns, (update, prompt)
            assert dangerous == [DANGEROUS_METHODS[prompt.command]], (dangerous, prompt)
        model.learn(handled.replies, now[0])


# -- the whole notifier through aiogram ----------------------------------------------------------

_ID = st.integers(-(2**62), 2**62)
_USER = st.fixed_dictionaries(
    {"id": _ID, "is_bot": st.booleans(), "first_name": _TEXT},
    optional={"username": st.text(st.characters(codec="ascii", categories=("L", "N")), max_size=12),
              "language_code": st.sampled_from(["en", "de", ""])},
)  # fmt: skip
_CHAT = st.fixed_dictionaries(
    {"id": st.one_of(st.sampled_from([CHAT, OTHER_CHAT, STRANGER]), _ID),
     "type": st.sampled_from(["private", "group", "supergroup", "channel"])},
    optional={"title": _TEXT, "username": st.sampled_from(["chan", "x"])},
)  # fmt: skip
_MESSAGE = st.fixed_dictionaries(
    {"message_id": st.integers(1, 2**31), "date": st.integers(0, 2**31), "chat": _CHAT},
    optional={"from": _USER, "text": st.one_of(_COMMANDS, _TEXT, st.just("/help " + "é" * 3000)),
              "caption": _TEXT, "unknown_field": _TEXT},
)  # fmt: skip
_CALLBACK = st.fixed_dictionaries(
    {"id": st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=10),
     "from": _USER, "chat_instance": _TEXT},
    optional={"data": st.one_of(st.sampled_from(["confirm:12345", "cancel:", "x"]), _TEXT),
              "message": _MESSAGE},
)  # fmt: skip
_UPDATE_BODY = st.one_of(
    _MESSAGE.map(lambda m: {"message": m}),
    _CALLBACK.map(lambda c: {"callback_query": c}),
    _MESSAGE.map(lambda m: {"edited_message": m}),
    _MESSAGE.map(lambda m: {"channel_post": m}),
    st.just({}),
)


@dataclass
class Bot:
    runner: LoopRunner
    fake: FakeTelegram
    notifier: TelegramNotifier
    recorder: Recorder
    task: asyncio.Task[None]


def _start_bot(runner: LoopRunner, app: App) -> Bot:
    async def start() -> Bot:
        fake = FakeTelegram(TOKEN)
        await fake.__aenter__()
        config = tg_config(fake.base_url, chat_ids=ALLOWED, poll_timeout_s=1)
        recorder = Recorder(AppControl(app, config))

        def api() -> AiogramBotApi:
            return AiogramBotApi(TOKEN, config.api_base, config.request_timeout_s)

        notifier = TelegramNotifier(config, api, clock=ReplayClock(T0_NS), control=recorder)
        task = asyncio.create_task(notifier.run())
        await fake.wait_for(lambda: any(r.method == "getUpdates" for r in fake.requests))
        return Bot(runner, fake, notifier, recorder, task)

    return runner.run(start())


def _stop_bot(bot: Bot) -> None:
    async def stop() -> None:
        bot.task.cancel()
        await asyncio.gather(bot.task, return_exceptions=True)
        await bot.fake.__aexit__(None, None, None)

    bot.runner.run(stop())


@pytest.fixture(scope="module")
def bot(app: App) -> Iterator[Bot]:
    runner = LoopRunner()
    started = _start_bot(runner, app)
    yield started
    _stop_bot(started)
    runner.close()


def _chat_of(update: dict[str, Any]) -> int | None:
    if "message" in update:
        return update["message"]["chat"]["id"]
    query = update.get("callback_query")
    if query is not None and "message" in query:
        return query["message"]["chat"]["id"]
    return None


_SENTINELS = itertools.count()


@fuzz_settings(ci_examples=40, deep_examples=1500)
@given(bodies=st.lists(_UPDATE_BODY, min_size=1, max_size=6))
def test_random_updates_through_aiogram_never_stop_the_commands(
    bot: Bot, bodies: list[dict[str, Any]]
) -> None:
    count(SUITE)
    count(SUITE, "updates", len(bodies) + 1)
    fake, notifier = bot.fake, bot.notifier
    assert notifier.router is not None
    refused_before = notifier.router.refused
    strangers = 0
    for body in bodies:
        fake._push(body)  # the fake's own queue: any shape, as Telegram would send
        strangers += _chat_of(body) not in ALLOWED  # edited messages, posts: no chat to obey
    # the sentinel, answered only after every update before it: an allowed chat still works
    sentinel = f"/sentinel{next(_SENTINELS)}"
    fake.push_message(CHAT, sentinel)

    async def answered() -> None:
        await fake.wait_for(lambda: any(sentinel in m for m in fake.sent(CHAT)), limit_s=20)

    bot.runner.run(answered())
    assert not bot.task.done(), "the notifier service ended"
    delivered = [r for r in fake.requests if r.method in ("sendMessage", "editMessageText")]
    assert all(int(r.fields["chat_id"]) in ALLOWED for r in delivered)
    assert notifier.router.refused == refused_before + strangers
    assert not set(bot.recorder.calls) & set(DANGEROUS_METHODS.values()), bot.recorder.calls


def test_an_update_that_breaks_the_schema_does_not_stop_later_commands(app: App) -> None:
    """Regression of issue #8: one update aiogram could not validate failed every getUpdates
    (ClientDecodeError -> TelegramRetry); the offset never passed it, no later command ran."""
    count(SUITE)
    runner = LoopRunner()
    poisoned = _start_bot(runner, app)
    try:
        poisoned.fake._push({"message": {"chat": 5}})  # no message_id, date, chat.type
        poisoned.fake.push_message(CHAT, "/help")

        async def answered() -> None:
            await poisoned.fake.wait_for(lambda: HELP in poisoned.fake.sent(CHAT), limit_s=3)

        runner.run(answered())
    finally:
        _stop_bot(poisoned)
        runner.close()


@pytest.mark.parametrize("failures", [1, 7, 1025, 10**6])
def test_the_poll_backoff_stays_a_number_after_any_count_of_failures(failures: int) -> None:
    """Regression of issue #8: 2 ** 1024 overflowed float after ~1,000 failed polls and ended the
    whole notifier (alerts included); the wait is capped at backoff_max_s instead."""
    count(SUITE)
    policy = tg_config("http://127.0.0.1:1").retry
    wait = policy.backoff_s(failures)
    assert wait == min(
        policy.backoff_initial_s * 2.0 ** min(failures - 1, 60), policy.backoff_max_s
    )
    assert 0 < wait <= policy.backoff_max_s
