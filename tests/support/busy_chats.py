"""Thirty people asking at once, twenty of them in two groups: the scenario of the pacing
test and of ``bench/pacing.py``, played against the local Bot API server, and what it shows.

A message's *state* is its newest text: the send, or its last accepted edit. A job's answer
may be a new reply or the last edit of its acknowledgement; a *live message* is one the bot
sent while work was running (``⏳``), settled once its state is no longer that.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from tests.support.fake_telegram import BOT_USERNAME, Call, Chat, FakeTelegram

GROUPS = (Chat(-100501, "supergroup", "team one"), Chat(-100502, "supergroup", "team two"))
GROUP_MEMBERS = tuple(range(2001, 2021))
"""Ten in each group."""
LONERS = tuple(range(1001, 1011))
"""Ten people, each in a private chat with the bot."""
WORKING = "⏳"
_JOB = re.compile(r"Job (\w{6})")


def allowed_users() -> str:
    """``MIRROR_ALLOWED_USERS`` for everyone in the scenario."""
    return " ".join([f"telegram:{g.id}" for g in GROUPS] + [f"telegram:{user}" for user in LONERS])


@dataclass
class Played:
    sent_at: float
    requests: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Request message id -> (chat id, requester)."""

    def final_answer(self, telegram: FakeTelegram, request: int) -> Call | None:
        """The state of the reply to ``request`` that carries its pull command."""
        for send in telegram.replies_to(request):
            now = telegram.state(send)
            if "docker pull" in now.text:
                return now
        return None

    def unanswered(self, telegram: FakeTelegram) -> list[int]:
        return [r for r in self.requests if self.final_answer(telegram, r) is None]

    def last_answer_after(self, telegram: FakeTelegram) -> float:
        """Seconds from the requests to the last final answer."""
        answers = [self.final_answer(telegram, r) for r in self.requests]
        return max(a.at for a in answers if a is not None) - self.sent_at

    def live_messages(self, telegram: FakeTelegram) -> list[Call]:
        """Every message the bot sent while work was running."""
        return [c for c in telegram.ok("sendMessage") if c.text.startswith(WORKING)]

    def unsettled(self, telegram: FakeTelegram) -> list[Call]:
        """Live messages still showing work in progress."""
        live = self.live_messages(telegram)
        return [c for c in live if telegram.state(c).text.startswith(WORKING)]

    def settled_after(self, telegram: FakeTelegram) -> float | None:
        """Seconds from the requests until the last live message showed its end; None while
        one still shows work in progress."""
        live = self.live_messages(telegram)
        if not live or self.unsettled(telegram):
            return None
        return max(telegram.state(c).at for c in live) - self.sent_at

    def first_named(self, telegram: FakeTelegram, request: int) -> Call | None:
        """The first message (send or edit) that named the job answering ``request``."""
        answer = self.final_answer(telegram, request)
        found = _JOB.search(answer.text) if answer is not None else None
        if found is None:
            return None
        said = [c for c in telegram.ok("sendMessage") + telegram.ok("editMessageText")]
        naming = [c for c in said if re.search(rf"\b{found.group(1)}\b", c.text)]
        return min(naming, key=lambda c: c.at) if naming else None

    def calls_in(self, telegram: FakeTelegram, chat: int) -> list[Call]:
        """Sends and edits the chat took."""
        return telegram.ok("sendMessage", chat) + telegram.ok("editMessageText", chat)


def ask_all(telegram: FakeTelegram, image: str) -> Played:
    """Queue the thirty ``/mirror`` commands at once (one ``getUpdates`` serves them all)."""
    played = Played(time.monotonic())
    for n, user in enumerate(GROUP_MEMBERS):
        group = GROUPS[n % 2]
        request = telegram.send(group, user, f"/mirror@{BOT_USERNAME} {image}")
        played.requests[request] = (group.id, user)
    for user in LONERS:
        request = telegram.send(Chat(user), user, f"/mirror {image}")
        played.requests[request] = (user, user)
    return played
