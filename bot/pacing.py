"""Pacing: every chat call goes out under its chat's flood limit, the most urgent first.

Chat platforms limit writes per chat (Telegram: 20 a minute in a group, about one a second in
a private chat; Slack: about one a second per channel) and sometimes per bot (Telegram: 30 a
second). Ten jobs in one group, each with an acknowledgement, progress edits and a final
answer, spend a group's minute in seconds; the platform then answers 429 and the final answers
wait behind progress nobody needs any more. So every post and edit of every job in a chat
waits in one queue per chat, and leaves it by priority: answers first, then acknowledgements,
then the last views of live messages, then progress edits. The calls still owed in a chat
(answers, last views) are counted: a last view goes as soon as the budget keeps room for the
others, a progress edit only with spare room beyond that; otherwise it waits, and since the
live message sends its newest view when its turn comes, intermediate states are skipped,
never queued. Spending fewer calls in a busy chat is :mod:`bot.gathering`'s part.

The pacer knows no platform: a conversation tells its budget (:class:`Paced`). One that does
not (the console) has no known limit: its calls go one at a time, by priority, and the live
message still leaves ``edit_interval`` between two edits of a message.

A chat's budget is spent when a call *ends*, not when it starts: the next call that would
exceed the budget starts a whole window after an earlier one's answer came back, so the
platform, which counts arrivals, never sees more than the budget in any window.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum
from functools import partial
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from bot.chat import Conversation, Reply
from bot.delivery import deliver
from bot.view import MessageView

T = TypeVar("T")

PATIENCE = 3.0
"""Seconds a final answer may wait for the budget because progress edits spent it."""
IDLE_POLL = 0.25
"""Longest sleep of a chat's queue while something waits: shared budgets free up unseen."""


class Priority(IntEnum):
    ANSWER = 0
    """A final answer, or the answer to a command: never dropped, first in line."""
    ACK = 1
    """The acknowledgement of a job: the asker learns that the bot heard."""
    LAST = 2
    """The last view of a live message: owed like an answer, so it goes as soon as the
    chat's budget keeps room for the answers still owed, never a window later."""
    PROGRESS = 3
    """An edit of a live message: waits while the chat is busy; only the newest view goes."""


@dataclass(frozen=True)
class Budget:
    """At most ``calls`` posts and edits in any ``seconds``."""

    calls: int
    seconds: float


@dataclass(frozen=True)
class Pace:
    """A chat's flood limits, as its adapter knows them."""

    chat: str
    """The chat's identity: conversations (threads, jobs) in one chat share its budget."""
    budget: Budget
    shared: Budget | None = None
    """One budget for every chat of the adapter together (Telegram's 30 a second), if any."""


@runtime_checkable
class Paced(Protocol):
    """A :class:`~bot.chat.Conversation` that tells its chat's flood limits."""

    @property
    def pace(self) -> Pace: ...


UNLIMITED = Budget(1, 0.0)
"""No flood limit known: one call at a time."""


def pace_of(conversation: Conversation) -> Pace:
    if isinstance(conversation, Paced):
        return conversation.pace
    return Pace(f"conversation-{id(conversation)}", UNLIMITED)


class _Window:
    """A budget's use: calls in flight, and when recent ones ended."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.busy = 0
        self.ended: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self.ended and self.ended[0] + self.budget.seconds <= now:
            self.ended.popleft()

    def free_at(self, now: float) -> float:
        """When the next call may start (``math.inf``: when a call in flight ends)."""
        self._expire(now)
        over = self.busy + len(self.ended) - self.budget.calls
        if over < 0:
            return now
        if over >= len(self.ended):
            return math.inf
        return self.ended[over] + self.budget.seconds

    def next_change(self, now: float) -> float:
        self._expire(now)
        return self.ended[0] + self.budget.seconds if self.ended else math.inf

    def room_after_one(self, now: float, within: float) -> int:
        """Calls that could still start in the next ``within`` seconds if one started now
        (for a window longer than ``within``: a call now holds its slot past it)."""
        self._expire(now)
        horizon = now + within
        held = self.busy + 1
        held += sum(1 for ended in self.ended if ended + self.budget.seconds > horizon)
        return self.budget.calls - held

    def take(self) -> None:
        self.busy += 1

    def give_back(self) -> None:
        self.busy -= 1
        self.ended.append(time.monotonic())

    @property
    def idle(self) -> bool:
        self._expire(time.monotonic())
        return self.busy == 0 and not self.ended


@dataclass(order=True)
class _Request:
    priority: Priority
    seq: int
    call: Callable[[], Awaitable[Any]] = field(compare=False)
    not_before: float = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    held: asyncio.Event = field(compare=False, default_factory=asyncio.Event)
    """Set when the request was passed over because the chat is busy (a live message's
    edit only)."""
    context: contextvars.Context = field(compare=False, default_factory=contextvars.copy_context)
    """The submitter's context (its language, its job's log id): the call runs in it, not in
    the lane's, which is whoever's first opened the chat's lane."""


class Ticket:
    """A queued call: its outcome, and whether it was put off because the chat is busy."""

    def __init__(self, request: _Request, wake: asyncio.Event) -> None:
        self._request = request
        self._wake = wake

    def hasten(self, priority: Priority) -> None:
        """Raise the call's priority while it waits (a progress edit that became the last
        view); a call under way is not affected."""
        if priority < self._request.priority:
            self._request.priority = priority
            self._request.held.clear()
            self._wake.set()

    @property
    def future(self) -> asyncio.Future[Any]:
        return self._request.future

    async def sent_or_held(self) -> None:
        """Until the call ended (either way) or was put off for a busy chat."""
        held = asyncio.ensure_future(self._request.held.wait())
        try:
            await asyncio.wait({self.future, held}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            held.cancel()

    def cancel(self) -> None:
        """Drop the call if it has not started; a call under way ends on its own."""
        self.future.cancel()


class _Lane:
    """One chat's queue and budget; a task runs its calls one at a time while any wait."""

    def __init__(self, window: _Window, shared: _Window | None, patience: float) -> None:
        self.window = window
        self.shared = shared
        self.patience = patience
        self.pending: list[_Request] = []
        self.open = 0
        """Calls owed in this chat (answers, last views of live messages): the budget keeps
        room for them."""
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        return self.task is None and self.open == 0 and not self.pending and self.window.idle

    def _windows(self) -> list[_Window]:
        return [self.window] if self.shared is None else [self.window, self.shared]

    def _free_at(self, now: float) -> float:
        return max(w.free_at(now) for w in self._windows())

    def _may_edit(self, request: _Request, now: float) -> bool:
        """A live message's edit must leave room for the calls owed in the chat.

        Where the budget's window is short (a second), an answer waits at most that long
        behind an edit, so priority is enough; where it is long (a group's minute), an edit
        spent now is missing for a minute: a last view may spend what the owed answers leave,
        a progress edit only spare room beyond that (kept for newcomers' acknowledgements).
        """
        if request.priority < Priority.LAST or self.window.budget.seconds <= self.patience:
            return True
        spare = self.window.budget.calls // 4 if request.priority is Priority.PROGRESS else 0
        return self.window.room_after_one(now, self.patience) >= self.open + spare

    def _choose(self, now: float) -> _Request | None:
        """The most urgent call that may go now; an edit a busy chat has no room for is
        marked held (so a job's end need not wait for its last view)."""
        for request in sorted(self.pending):
            if request.future.done():
                continue
            if not self._may_edit(request, now):
                request.held.set()
                continue
            if request.not_before <= now:
                return request
        return None

    def _next_wake(self, now: float) -> float:
        times = [r.not_before for r in self.pending if r.not_before > now]
        times += [w.next_change(now) for w in self._windows()]
        return min([*times, now + IDLE_POLL])

    async def run(self, send: Callable[[_Request], Awaitable[None]]) -> None:
        try:
            while True:
                self.pending = [r for r in self.pending if not r.future.done()]
                if not self.pending:
                    return
                now = time.monotonic()
                start = self._free_at(now)
                request = self._choose(now)
                if request is None or start > now:
                    # Nothing may go (progress held for room): wait for what could change
                    # that, not for a budget that is already free, which would spin.
                    wake = start if request is not None else self._next_wake(now)
                    self.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), max(wake - now, 0.0))
                    continue
                self.pending.remove(request)
                await send(request)
        finally:
            self.task = None

    async def attempt(self, call: Callable[[], Awaitable[T]]) -> T:
        """One try of a call, once the budget has room; the budget is spent when it ends."""
        while (start := self._free_at(time.monotonic())) > time.monotonic():
            await asyncio.sleep(min(start - time.monotonic(), IDLE_POLL))
        windows = self._windows()
        for window in windows:
            window.take()
        try:
            return await call()
        finally:
            for window in windows:
                window.give_back()


class Pacer:
    """Every chat call of the bot, queued per chat and sent by priority under its budget.

    A call runs with :func:`bot.delivery.deliver`'s retries; each try waits for the budget.
    """

    def __init__(self, patience: float = PATIENCE) -> None:
        self.patience = patience
        """Seconds an answer may wait behind an edit: a budget counted over a longer window
        (a group's minute) is spent with care."""
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._shared: dict[str, _Window] = {}
        self._seq = itertools.count()

    def _lane(self, conversation: Conversation, adapter: str) -> _Lane:
        pace = pace_of(conversation)
        lane = self._lanes.get((adapter, pace.chat))
        if lane is None:
            self._forget_idle()
            shared = None
            if pace.shared is not None:
                shared = self._shared.setdefault(adapter, _Window(pace.shared))
            lane = _Lane(_Window(pace.budget), shared, self.patience)
            self._lanes[(adapter, pace.chat)] = lane
        return lane

    def _forget_idle(self) -> None:
        for key in [key for key, lane in self._lanes.items() if lane.idle]:
            del self._lanes[key]

    def submit(
        self,
        conversation: Conversation,
        priority: Priority,
        call: Callable[[], Awaitable[Any]],
        *,
        what: str,
        adapter: str,
        not_before: float = 0.0,
    ) -> Ticket:
        """Queue ``call`` in its chat; it runs when its priority and the budget allow."""
        lane = self._lane(conversation, adapter)
        loop = asyncio.get_running_loop()
        request = _Request(priority, next(self._seq), call, not_before, loop.create_future())

        async def run(request: _Request) -> None:
            try:
                result = await asyncio.create_task(
                    deliver(partial(lane.attempt, request.call), what=what, adapter=adapter),
                    context=request.context,
                )
            except asyncio.CancelledError:
                request.future.cancel()
                raise
            except Exception as exc:
                if not request.future.done():
                    request.future.set_exception(exc)
            else:
                if not request.future.done():
                    request.future.set_result(result)

        lane.pending.append(request)
        lane.wake.set()
        if lane.task is None:
            lane.task = asyncio.create_task(lane.run(run), name=f"pacer-{adapter}")
        return Ticket(request, lane.wake)

    async def send(
        self,
        conversation: Conversation,
        priority: Priority,
        call: Callable[[], Awaitable[T]],
        *,
        what: str,
        adapter: str,
    ) -> T:
        """``call`` in its turn, with ``deliver``'s retries; raises what ``deliver`` raises."""
        ticket = self.submit(conversation, priority, call, what=what, adapter=adapter)
        try:
            return cast(T, await ticket.future)
        except asyncio.CancelledError:
            ticket.cancel()
            raise

    async def post(
        self,
        conversation: Conversation,
        view: MessageView,
        priority: Priority,
        *,
        what: str,
        adapter: str,
    ) -> Reply:
        """A new message in ``conversation``, in its turn: what most of the bot's sends are."""
        return await self.send(
            conversation, priority, partial(conversation.post, view), what=what, adapter=adapter
        )

    def owed(self, conversation: Conversation, adapter: str) -> int:
        """Calls owed in this chat now: more than none means it is busy."""
        lane = self._lanes.get((adapter, pace_of(conversation).chat))
        return lane.open if lane is not None else 0

    def opened(self, conversation: Conversation, adapter: str, calls: int = 1) -> None:
        """``calls`` more will be owed in this chat (a job's answer, a shared live
        message's last view): keep room for them."""
        self._lane(conversation, adapter).open += calls

    def closed(self, conversation: Conversation, adapter: str, calls: int = 1) -> None:
        """``calls`` owed were made (or will never be)."""
        lane = self._lane(conversation, adapter)
        lane.open = max(lane.open - calls, 0)
        lane.wake.set()

    async def aclose(self) -> None:
        """Drop what waits and stop every queue (the bot is shutting down)."""
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for lane in self._lanes.values():
            for request in lane.pending:
                request.future.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
