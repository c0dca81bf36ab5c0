"""Telegram commands: who may give them, what they answer, and confirmation of dangerous ones.

Only chats in the allowlist are obeyed. Anything from another chat — a command, a button press —
is logged (`telegram_refused`) and never answered: an answer would tell a stranger the bot is
live, and any data would leak the account.

Dangerous commands (/halt, /flatten, /stopentry, /reload, and /start, which resumes trading and
acknowledges a halt's losses; Telegram clients also send /start by themselves when a chat with
the bot is opened) only ask first: the prompt carries a 4-digit code, an inline ✅/✖ pair and
`/confirm <code>`. The action runs when the same chat confirms before `confirmation_timeout_s`;
a late, unknown or foreign code runs nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from engine.notify.botapi import IncomingUpdate
from engine.notify.control import EngineControl
from engine.notify.format import fit_message
from engine.notify.queue import Outbound

READ_COMMANDS = ("status", "positions", "balance", "profit", "daily", "performance", "signals")
DANGEROUS = {
    "halt": "Trading becomes HALTED: no new entries or adds until /start.",
    "flatten": "Every open position is closed at market.",
    "stopentry": "No new entries; open positions keep their stops and targets.",
    "reload": "Model bundles and configuration are loaded again.",
    "start": "Entries resume. A HALTED engine acknowledges its losses: drawdown and daily loss "
    "are measured from now on.",
}
HELP = (
    "Commands:\n"
    "/status – mode, trading state, symbols\n"
    "/positions – open positions with stop and target\n"
    "/balance – balances and equity\n"
    "/profit – PnL since start\n"
    "/daily – PnL per UTC day\n"
    "/performance – PnL per symbol\n"
    "/signals – latest model scores\n"
    "/stopentry – stop new entries (asks to confirm)\n"
    "/start – resume entries, leave HALTED (asks to confirm)\n"
    "/halt [reason] – halt trading (asks to confirm)\n"
    "/flatten – close all positions (asks to confirm)\n"
    "/reload – reload models and config (asks to confirm)\n"
    "/confirm CODE, /cancel [CODE] – answer a confirmation"
)


@dataclass(frozen=True, slots=True)
class Handled:
    """What to send for one update: messages, and the toast for a pressed button (None: none)."""

    replies: tuple[Outbound, ...] = ()
    callback_answer: str | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    code: str
    chat_id: int
    command: str
    args: str
    user: str
    prompt: str
    expires_ns: int


def _four_digits() -> str:
    return f"{secrets.randbelow(9000) + 1000}"


@dataclass
class CommandRouter:
    """Turn allowed chats' updates into replies; run dangerous commands once confirmed."""

    control: EngineControl
    allowed_chat_ids: Iterable[int]
    monotonic_ns: Callable[[], int]
    confirmation_timeout_s: float
    bot_username: str = ""
    new_code: Callable[[], str] = _four_digits
    pending: dict[str, Pending] = field(default_factory=dict)
    refused: int = 0

    def __post_init__(self) -> None:
        self.allowed_chat_ids = frozenset(self.allowed_chat_ids)
        self.log = structlog.get_logger("engine.notify.commands")

    # -- entry point ---------------------------------------------------------------------------
    def handle(self, update: IncomingUpdate) -> Handled:
        """Answer one update (nothing at all for chats outside the allowlist)."""
        if update.chat_id is None or update.chat_id not in self.allowed_chat_ids:
            self.refused += 1
            self.log.warning(
                "telegram_refused",
                chat_id=update.chat_id,
                user=update.user,
                command=update.text.split(maxsplit=1)[0][:40] if update.text.strip() else "",
                button=update.callback_id is not None,
            )
            return Handled()
        self._expire()
        if update.callback_id is not None:
            return self._button(update)
        return self._message(update)

    # -- messages ------------------------------------------------------------------------------
    def _message(self, update: IncomingUpdate) -> Handled:
        text = update.text.strip()
        if not text.startswith("/"):
            return Handled()  # chatter in a group is not for us
        head, _, args = text.partition(" ")
        name, _, addressee = head[1:].partition("@")
        if addressee and self.bot_username and addressee.lower() != self.bot_username.lower():
            return Handled()  # /cmd@another_bot
        name, args = name.lower(), args.strip()
        chat = update.chat_id
        assert chat is not None
        if name in READ_COMMANDS:
            return self._reply(chat, self._run(name, args, update.user))
        if name in DANGEROUS:
            return self._ask(chat, name, args, update.user)
        if name == "confirm":
            return self._reply(chat, self._confirm(chat, args.split(" ")[0] if args else ""))
        if name == "cancel":
            return self._reply(chat, self._cancel(chat, args.split(" ")[0] if args else ""))
        if name == "help":
            return self._reply(chat, HELP)
        return self._reply(chat, f"Unknown command /{name}. /help lists the commands.")

    def _reply(self, chat_id: int, text: str) -> Handled:
        return Handled((Outbound(chat_id, fit_message(text)),))

    # -- confirmation --------------------------------------------------------------------------
    def _ask(self, chat_id: int, command: str, args: str, user: str) -> Handled:
        code = self.new_code()
        while code in self.pending:
            code = self.new_code()
        timeout = self.confirmation_timeout_s
        shown = f"/{command} {args}".rstrip()
        prompt = (
            f"Confirm {shown}? {DANGEROUS[command]}\n"
            f"Tap a button or send /confirm {code} within {timeout:g} s."
        )
        expires = self.monotonic_ns() + int(timeout * 1e9)
        self.pending[code] = Pending(code, chat_id, command, args, user, prompt, expires)
        buttons = (("✅ Confirm", f"confirm:{code}"), ("✖ Cancel", f"cancel:{code}"))
        return Handled((Outbound(chat_id, prompt, buttons=buttons),))

    def _expire(self) -> None:
        now = self.monotonic_ns()
        for code, pending in list(self.pending.items()):
            if now >= pending.expires_ns:
                del self.pending[code]
                self.log.info("telegram_confirmation_expired", command=pending.command, code=code)

    def _take(self, chat_id: int, code: str) -> Pending | None:
        pending = self.pending.get(code)
        if pending is None or pending.chat_id != chat_id:
            return None
        return self.pending.pop(code)

    def _confirm(self, chat_id: int, code: str) -> str:
        pending = self._take(chat_id, code)
        if pending is None:
            return f"No pending command with code {code or '(none)'}: it expired or was done."
        self.log.warning(
            "telegram_command_confirmed",
            chat_id=chat_id,
            user=pending.user,
            command=pending.command,
            args=pending.args,
        )
        return f"/{pending.command}: {self._run(pending.command, pending.args, pending.user)}"

    def _cancel(self, chat_id: int, code: str) -> str:
        if not code:
            mine = [p for p in self.pending.values() if p.chat_id == chat_id]
            for p in mine:
                del self.pending[p.code]
            if not mine:
                return "Nothing to cancel."
            return "Cancelled " + ", ".join(f"/{p.command}" for p in mine) + "."
        pending = self._take(chat_id, code)
        if pending is None:
            return f"No pending command with code {code}: it expired or was done."
        return f"Cancelled /{pending.command}."

    def _button(self, update: IncomingUpdate) -> Handled:
        chat = update.chat_id
        assert chat is not None
        action, _, code = update.text.partition(":")
        pending = self.pending.get(code)
        prompt = pending.prompt if pending is not None and pending.chat_id == chat else None
        if action == "confirm":
            result, toast, outcome = self._confirm(chat, code), "Confirmed", "confirmed"
        elif action == "cancel":
            result, toast, outcome = self._cancel(chat, code), "Cancelled", "cancelled"
        else:
            return Handled(callback_answer="")
        if prompt is None:
            toast, outcome = "Expired", "expired or already answered"
        replies = [Outbound(chat, fit_message(result))]
        if update.message_id is not None:  # take the buttons off the prompt
            edited = f"{prompt or 'Confirmation'}\n→ {outcome}"
            replies.insert(
                0, Outbound(chat, fit_message(edited), edit_message_id=update.message_id)
            )
        return Handled(tuple(replies), toast)

    # -- engine control ------------------------------------------------------------------------
    def _run(self, command: str, args: str, user: str) -> str:
        control = self.control
        actions: dict[str, Callable[[], str]] = {
            "status": control.status,
            "positions": control.positions,
            "balance": control.balance,
            "profit": control.profit,
            "daily": control.daily,
            "performance": control.performance,
            "signals": control.signals,
            "stopentry": control.stop_entries,
            "start": control.resume_entries,
            "halt": lambda: control.halt(args or f"manual halt by {user} via Telegram"),
            "flatten": control.flatten,
            "reload": control.reload,
        }
        try:
            return actions[command]()
        except Exception as exc:
            self.log.exception("telegram_command_failed", command=command)
            return f"failed: {type(exc).__name__}: {exc}"
