"""The live message: a job's stream of progress becomes a few edits of one message, then the
final answer.

Chat APIs punish frequent edits (Slack ~1 per 1.5 s per message, Telegram 1/s per chat and
~1 per 3 s in groups), so an edit waits ``edit_interval`` after the previous one, unchanged
text is never sent, and at most one edit per message waits in the chat's queue
(:mod:`bot.pacing`): when its turn comes it sends the *newest* view, so states a busy chat
had no room for are skipped. The end of a job is the last view and the final answer: in a
quiet chat in that order, in a busy one the answer first and the last view when there is
room. The answer is never dropped (retried by :func:`bot.delivery.deliver`; the result stays
readable with /status if the chat never takes it). Where messages cannot be edited
(:func:`bot.chat.can_edit`), the acknowledgement and the final answer are all there is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bot.chat import ChatError, Conversation, Reply, can_edit
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
    ) -> None:
        self._pacer = pacer
        self._conversation = conversation
        self._reply = reply
        self._adapter = adapter
        self._interval = conversation.edit_interval
        self._edits = can_edit(conversation)
        self._sent = initial
        self._latest: MessageView | None = initial
        self._last_edit = time.monotonic() if initial is not None else 0.0
        self._trying: MessageView | None = None
        self._queued: Ticket | None = None
        self._final = False
        self._open = True
        pacer.opened(conversation, adapter)
        self.edits = 0

    def update(self, view: MessageView) -> None:
        """Remember the newest view; it is sent when the chat allows. Never blocks."""
        if self._final:
            return
        self._latest = view
        self._queue()

    async def finish(self, view: MessageView, answer: MessageView | None = None) -> None:
        """End the message with ``view`` and post ``answer`` in the thread.

        The last edit goes first unless the chat is busy; then the answer goes first and the
        edit follows when the chat has room. Returns when both were delivered (or refused).
        """
        self._latest = view
        self._final = True
        if answer is not None and not self._edits:
            self._sent = view  # the answer says how it ended; the message stays as posted
        ticket = self._queue()
        try:
            if ticket is not None:
                await ticket.sent_or_held()
            if answer is not None:
                await self._answer(answer)
        finally:
            self._close_job()
        while (ticket := self._queued) is not None:
            await asyncio.wait({ticket.future})

    async def close(self) -> None:
        """Stop without a last word (the bot is shutting down; the job resumes later)."""
        self._final = True
        if self._queued is not None:
            self._queued.cancel()
        self._close_job()

    def _close_job(self) -> None:
        if self._open:
            self._open = False
            self._pacer.closed(self._conversation, self._adapter)

    async def _answer(self, answer: MessageView) -> None:
        try:
            await self._pacer.send(
                self._conversation,
                Priority.ANSWER,
                lambda: self._conversation.post(answer),
                what="final answer",
                adapter=self._adapter,
            )
        except ChatError as exc:  # deliver gave up, or the chat refused for good
            log.error("the chat did not take the final answer of %s: %s", self._reply.ref, exc)

    def _queue(self) -> Ticket | None:
        """Make sure one edit waits in the chat's queue while the newest view is unsent (where
        messages cannot be edited, only a last view without an answer to carry it)."""
        if not self._edits and not self._final:
            return None
        if self._queued is None and self._latest is not None and self._latest != self._sent:
            ticket = self._pacer.submit(
                self._conversation,
                Priority.PROGRESS,
                self._edit,
                what="progress edit",
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
        self._sent = view
        self.edits += 1

    def _edited(self, future: asyncio.Future[Any]) -> None:
        self._queued = None
        if future.cancelled():
            return
        if (exc := future.exception()) is not None:
            log.error("could not deliver an edit of %s: %s", self._reply.ref, exc)
            self._sent = self._trying  # given up on: not tried again, a newer view may be
        self._queue()
