"""The live message: a job's stream of progress becomes a few edits of one message, then its
end.

Chat APIs punish frequent edits (Slack ~1 per 1.5 s per message, Telegram 1/s per chat and
~1 per 3 s in groups), so an edit waits ``edit_interval`` after the previous one, unchanged
text is never sent, and at most one edit per message waits in the chat's queue
(:mod:`bot.pacing`): when its turn comes it sends the *newest* view, so states a busy chat
had no room for are skipped.

A live message ends in one of two ways. It may *become* the answer (:meth:`become`): one edit,
at an answer's priority, where the answer fits in one message and needs no notification (a
quick job: nobody is waiting to be told). Or it ends with its last view and the answer follows
as a new message (:meth:`finish`): in a quiet chat in that order, in a busy one the answer
first and the last view as soon as the answers still owed leave room. The answer is never
dropped (retried by :func:`bot.delivery.deliver`; the result stays readable with /status if
the chat never takes it). Several jobs may share one live message (:mod:`bot.gathering`).
Where messages cannot be edited (:func:`bot.chat.can_edit`), the acknowledgement and the final
answer are all there is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bot.chat import ChatError, Conversation, Replaceable, Reply, can_edit
from bot.pacing import Pacer, Priority, Ticket
from bot.view import MessageView

log = logging.getLogger(__name__)


class LiveMessage:
    def __init__(
        self,
        pacer: Pacer,
        conversation: Conversation,
        reply: Reply,
        initial: MessageView | None = None,
        *,
        adapter: str = "chat",
        owed: int = 1,
    ) -> None:
        self._pacer = pacer
        self._conversation = conversation
        self._reply = reply
        self._adapter = adapter
        self._interval = conversation.edit_interval
        self._edits = can_edit(conversation)
        self._sent = initial
        """The newest view sent, or given up on (not tried again)."""
        self._shown = initial
        """The newest view the chat took."""
        self._latest: MessageView | None = initial
        self._last_edit = time.monotonic() if initial is not None else 0.0
        self._trying: MessageView | None = None
        self._queued: Ticket | None = None
        self._final: Priority | None = None
        """Once the message is ending: the priority of its last edit (LAST, or ANSWER when
        it becomes the answer)."""
        self._owed = owed
        """Calls still owed for this message (its answers, the last view of a shared one):
        the chat's budget keeps room for them."""
        pacer.opened(conversation, adapter, owed)
        self.edits = 0

    @property
    def reply(self) -> Reply:
        return self._reply

    def update(self, view: MessageView) -> None:
        """Remember the newest view; it is sent when the chat allows. Never blocks."""
        if self._final is not None:
            return
        self._latest = view
        self._queue()

    def can_become(self, answer: MessageView) -> bool:
        """Whether an edit carries ``answer`` as well as a new message would: whole, and
        with no notification a new message would have given (:class:`~bot.chat.Replaceable`;
        a platform that does not say keeps its answers in messages of their own)."""
        replaceable = isinstance(self._reply, Replaceable) and self._reply.can_become(answer)
        return self._edits and replaceable

    async def become(self, answer: MessageView) -> None:
        """End the message by turning it into ``answer``: one edit, sent as an answer is; if
        the chat refuses the edit for good (the message was deleted), a new message."""
        self._latest = answer
        self._final = Priority.ANSWER
        self._queue()
        try:
            while (ticket := self._queued) is not None:
                await asyncio.wait({ticket.future})
            if self._shown != answer:
                await post_answer(
                    self._pacer, self._conversation, answer, self._adapter, self._reply.ref
                )
        finally:
            self.paid(self._owed)

    async def finish(self, view: MessageView, answer: MessageView | None = None) -> None:
        """End the message with ``view`` and post ``answer`` in the thread.

        The last edit goes first unless the chat is busy; then the answer goes first and the
        edit follows when the chat has room. Returns when both were delivered (or refused).
        """
        self._latest = view
        self._final = Priority.LAST
        if answer is None:
            self.paid(self._owed)  # only the last view is left: it is what is being paid
        elif not self._edits:
            self._sent = view  # the answer says how it ended; the message stays as posted
        ticket = self._queue()
        try:
            if ticket is not None:
                await ticket.sent_or_held()
            if answer is not None:
                await post_answer(
                    self._pacer, self._conversation, answer, self._adapter, self._reply.ref
                )
        finally:
            self.paid(self._owed)
        while (ticket := self._queued) is not None:
            await asyncio.wait({ticket.future})

    async def close(self) -> None:
        """Stop without a last word (the bot is shutting down; the job resumes later)."""
        self._final = Priority.LAST
        if self._queued is not None:
            self._queued.cancel()
        self.paid(self._owed)

    def owe(self, calls: int = 1) -> None:
        """``calls`` more are owed for this message (a job joined it)."""
        self._owed += calls
        self._pacer.opened(self._conversation, self._adapter, calls)

    def paid(self, calls: int = 1) -> None:
        """``calls`` owed for this message were made (or never will be)."""
        calls = min(calls, self._owed)
        if calls:
            self._owed -= calls
            self._pacer.closed(self._conversation, self._adapter, calls)

    def _queue(self) -> Ticket | None:
        """Make sure one edit waits in the chat's queue while the newest view is unsent; the
        last one at the priority its ending asked for (where messages cannot be edited, only a
        last view without an answer to carry it)."""
        if not self._edits and self._final is None:
            return None
        priority = Priority.PROGRESS if self._final is None else self._final
        if self._queued is not None:
            self._queued.hasten(priority)
        elif self._latest is not None and self._latest != self._sent:
            ticket = self._pacer.submit(
                self._conversation,
                priority,
                self._edit,
                what="final answer" if priority is Priority.ANSWER else "progress edit",
                adapter=self._adapter,
                not_before=self._last_edit + self._interval,
            )
            ticket.future.add_done_callback(self._edited)
            self._queued = ticket
        return self._queued

    async def _edit(self) -> None:
        """One try: the newest view, so a retry after a 429 never replays a stale one."""
        view = self._trying = self._latest
        if view is None or view == self._sent:
            return
        try:
            await self._reply.edit(view)
        finally:
            self._last_edit = time.monotonic()
        self._sent = self._shown = view
        self.edits += 1

    def _edited(self, future: asyncio.Future[Any]) -> None:
        self._queued = None
        if future.cancelled():
            return
        if (exc := future.exception()) is not None:
            log.error("could not deliver an edit of %s: %s", self._reply.ref, exc)
            self._sent = self._trying  # given up on: not tried again, a newer view may be
        self._queue()


async def post_answer(
    pacer: Pacer, conversation: Conversation, answer: MessageView, adapter: str, ref: str
) -> None:
    """Post a job's answer in its thread, first in its chat's line; a chat that will not
    take it is logged (the result stays readable with /status)."""
    try:
        await pacer.post(
            conversation, answer, Priority.ANSWER, what="final answer", adapter=adapter
        )
    except ChatError as exc:  # deliver gave up, or the chat refused for good
        log.error("the chat did not take the final answer of %s: %s", ref, exc)
