"""What ``/approve`` and ``/deny`` share: the admin's answer, once the bot applied it."""

from __future__ import annotations

from bot import approval_views, render
from bot.approvals import Applied, Recorded
from bot.i18n import _
from bot.view import MessageView


def answered(recorded: Recorded, applied: Applied | None) -> MessageView:
    """What the answer did: images let go or refused, identical requests answered alike,
    repositories approved for good."""
    decision = recorded.decision
    if applied is None:  # held, but its job is not running in this process yet
        return render.info(_("Your answer is stored; the bot applies it once the request runs."))
    own = sum(1 for job, _idx in applied.settled if job.id == decision.request)
    others = len({job.id for job, _idx in applied.settled if job.id != decision.request})
    return approval_views.decided(
        decision.request,
        recorded.kind,
        decision.approve,
        own,
        others,
        recorded.always,
        recorded.refused,
    )
