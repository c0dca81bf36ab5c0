"""The bounded outbound queue between the engine and the Telegram sender.

`put` never blocks and never awaits: the trading loop hands over a message and goes on. When the
queue is full, the oldest low-priority message (a signal) makes room; only when every queued
message is high priority does a new signal get dropped, or — for a new high-priority message —
the oldest high-priority one. Every drop is counted.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass


class Priority(enum.IntEnum):
    HIGH = 0  # trades, state changes, errors, mismatches, summaries, command replies
    LOW = 1  # signal notifications: the next one says the same, only newer


@dataclass(frozen=True, slots=True)
class Outbound:
    """One Bot API write: a new message, or (edit_message_id) a new text for an old one."""

    chat_id: int
    text: str
    priority: Priority = Priority.HIGH
    buttons: tuple[tuple[str, str], ...] = ()  # one row of (label, callback data)
    edit_message_id: int | None = None


@dataclass
class QueueStats:
    queued: int = 0
    dropped_low: int = 0
    dropped_high: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_low + self.dropped_high


class OutboundQueue:
    """Two FIFOs (high before low) with one shared bound; put() never blocks."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1: {capacity}")
        self.capacity = capacity
        self.stats = QueueStats()
        self._high: deque[Outbound] = deque()
        self._low: deque[Outbound] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._high) + len(self._low)

    def put(self, message: Outbound) -> Outbound | None:
        """Queue a message at once; return the message dropped to keep the bound, if any."""
        dropped = None
        if len(self) >= self.capacity:
            if self._low:
                dropped = self._low.popleft()
                self.stats.dropped_low += 1
            elif message.priority is Priority.LOW:
                self.stats.dropped_low += 1
                return message
            else:
                dropped = self._high.popleft()
                self.stats.dropped_high += 1
        (self._high if message.priority is Priority.HIGH else self._low).append(message)
        self.stats.queued += 1
        self._ready.set()
        return dropped

    def get_nowait(self) -> Outbound | None:
        """Return the next message (high priority first), or None when empty."""
        if self._high:
            return self._high.popleft()
        if self._low:
            return self._low.popleft()
        return None

    async def get(self) -> Outbound:
        """Wait for and return the next message (high priority first)."""
        while True:
            message = self.get_nowait()
            if message is not None:
                return message
            self._ready.clear()
            await self._ready.wait()

    def pending(self) -> list[Outbound]:
        """Return the queued messages in send order (for status and tests)."""
        return [*self._high, *self._low]
