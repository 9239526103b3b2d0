"""An in-process chat for the live message and the pacer: it records every post and edit
with its time, and refuses (429) what goes over its flood limit, as the platforms do."""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field

from bot.chat import RateLimited, Reply, Undeliverable
from bot.pacing import Budget, Pace
from bot.view import MessageView


@dataclass
class Sent:
    at: float
    kind: str
    """``post`` or ``edit``."""
    message: int
    title: str


@dataclass
class RecordingChat:
    """One chat: ``budget`` calls in any window (arrivals counted), else 429."""

    budget: Budget | None = None
    name: str = "chat"
    edit_interval: float = 0.0
    storm: int = 0
    """How many of the next calls get a 429 regardless."""
    retry_after: float = 0.2
    gone: bool = False
    """The bot was removed from this chat: everything is refused for good."""
    sent: list[Sent] = field(default_factory=list)
    refused: int = 0
    _arrivals: deque[float] = field(default_factory=deque)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def pace(self) -> Pace:
        return Pace(self.name, self.budget or Budget(1000, 1.0))

    def _arrive(self, kind: str, message: int, view: MessageView) -> None:
        now = time.monotonic()
        if self.gone:
            self.refused += 1
            raise Undeliverable("chat is gone", code="chat_not_found")
        if self.storm > 0:
            self.storm -= 1
            self.refused += 1
            raise RateLimited(self.retry_after)
        if self.budget is not None:
            while self._arrivals and self._arrivals[0] + self.budget.seconds <= now:
                self._arrivals.popleft()
            if len(self._arrivals) >= self.budget.calls:
                self.refused += 1
                raise RateLimited(self._arrivals[0] + self.budget.seconds - now)
            self._arrivals.append(now)
        self.sent.append(Sent(now, kind, message, view.title))

    async def post(self, view: MessageView) -> Reply:
        message = next(self._ids)
        self._arrive("post", message, view)
        return RecordedReply(self, message)

    def titles(self, kind: str | None = None) -> list[str]:
        return [s.title for s in self.sent if kind is None or s.kind == kind]


@dataclass
class RecordedReply:
    chat: RecordingChat
    message: int

    @property
    def ref(self) -> str:
        return f"{self.chat.name}:{self.message}"

    async def edit(self, view: MessageView) -> None:
        self.chat._arrive("edit", self.message, view)
