"""``/approve JOB [N|all] [always]``: let a held request go (MIRROR_APPROVAL); admins only.

Not tied to the requesting chat or to a job in memory: it works from the admins' chat, a
private chat, after a restart (the answer is stored and the running bot applies it,
:mod:`bot.approvals`). ``always`` also approves the source repositories for good
(``/sources``). What the Approve buttons send.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands._base import Context, Typed, UsageError, command, no_options
from bot.commands._decide import answered
from bot.i18n import N_
from bot.view import MessageView
from mirror.text import Text


@dataclass(frozen=True)
class ApproveArgs:
    request: str
    """A job's or a watch's id."""
    item: int | None = None
    """0-based index of the image, or None for every held image of the job."""
    always: bool = False


def _parse(typed: Typed) -> ApproveArgs:
    args = list(typed.args)
    no_options(args)
    always = bool(args) and args[-1].lower() == "always"
    if always:
        args.pop()
    which = args[1].lower() if len(args) == 2 else "all"
    if not 1 <= len(args) <= 2 or not (which == "all" or which.isdigit()):
        raise UsageError(
            Text(
                "`/approve` needs a job id, then optionally an image number or `all`, and "
                "`always`, e.g. `/approve k3x9qa 2 always`."
            )
        )
    if which == "0":
        raise UsageError(Text("Images of a job are numbered from 1."))
    return ApproveArgs(args[0], None if which == "all" else int(which) - 1, always)


@command(
    "approve",
    usage="/approve JOB [N|all] [always]",
    summary=N_("Let a request that waits for an admin go"),
    parse=_parse,
    aliases=("/mirror approve",),
    admin_only=True,
    menu=False,  # admins' alone: everyone's chat menu stays theirs
    order=72,
    details=N_(
        "N approves one image of the job, all (the default) every one; always also approves "
        "the source repository for good."
    ),
)
async def approve(ctx: Context, args: ApproveArgs) -> MessageView:
    recorded, applied = await ctx.services.approvals.decide(
        args.request, approve=True, by=ctx.requester, idx=args.item, always=args.always
    )
    return answered(recorded, applied)
