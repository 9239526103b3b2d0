"""``/deny JOB [reason]``: refuse a held request (MIRROR_APPROVAL); admins only.

Every held image of the job ends ``denied``, and so does every identical held request; the
requester hears it (and the reason) in their thread. What the Deny button sends.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands._base import Context, Typed, UsageError, command
from bot.commands._decide import answered
from bot.i18n import N_
from bot.view import MessageView
from mirror.text import Text

MAX_REASON = 300
"""A reason is a sentence for the requester, not an essay."""


@dataclass(frozen=True)
class DenyArgs:
    request: str
    reason: str | None = None


def _parse(typed: Typed) -> DenyArgs:
    if not typed.args:
        raise UsageError(Text("`/deny` needs a job id, e.g. `/deny k3x9qa not for production`."))
    first = typed.args[0]
    if first.startswith("-"):
        raise UsageError(Text("`/deny` needs a job id, e.g. `/deny k3x9qa not for production`."))
    reason = typed.text.strip()[len(first) :].strip()
    return DenyArgs(first, reason[:MAX_REASON] or None)


@command(
    "deny",
    usage="/deny JOB [reason]",
    summary=N_("Refuse a request that waits for an admin"),
    parse=_parse,
    aliases=("/mirror deny",),
    admin_only=True,
    menu=False,  # admins' alone: everyone's chat menu stays theirs
    order=74,
    examples=("/deny k3x9qa please use the team's base image",),
)
async def deny(ctx: Context, args: DenyArgs) -> MessageView:
    recorded, applied = await ctx.services.approvals.decide(
        args.request, approve=False, by=ctx.requester, reason=args.reason
    )
    return answered(recorded, applied)
