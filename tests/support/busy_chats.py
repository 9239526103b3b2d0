"""Thirty people asking at once, twenty of them in two groups: the scenario of the pacing
test and of ``bench/pacing.py``, played against the local Bot API server."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tests.support.fake_telegram import BOT_USERNAME, Call, Chat, FakeTelegram

GROUPS = (Chat(-100501, "supergroup", "team one"), Chat(-100502, "supergroup", "team two"))
GROUP_MEMBERS = tuple(range(2001, 2021))
"""Ten in each group."""
LONERS = tuple(range(1001, 1011))
"""Ten people, each in a private chat with the bot."""


def allowed_users() -> str:
    """``MIRROR_ALLOWED_USERS`` for everyone in the scenario."""
    return " ".join([f"telegram:{g.id}" for g in GROUPS] + [f"telegram:{user}" for user in LONERS])


@dataclass
class Played:
    sent_at: float
    requests: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Request message id -> (chat id, requester)."""

    def final_answer(self, telegram: FakeTelegram, request: int) -> Call | None:
        """The reply to ``request`` that is not its acknowledgement."""
        replies = [c for c in telegram.replies_to(request) if not c.text.startswith("⏳")]
        return replies[0] if replies else None

    def unanswered(self, telegram: FakeTelegram) -> list[int]:
        return [r for r in self.requests if self.final_answer(telegram, r) is None]

    def last_answer_after(self, telegram: FakeTelegram) -> float:
        """Seconds from the requests to the last final answer."""
        answers = [self.final_answer(telegram, r) for r in self.requests]
        return max(a.at for a in answers if a is not None) - self.sent_at


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
