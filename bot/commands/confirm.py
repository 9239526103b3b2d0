"""``/confirm JOB [N]``: copy what a job asked about (an image over MIRROR_CONFIRM_BYTES), one
image or every one waiting; what the "Copy 3.2 GB" button sends (its Cancel is ``/cancel``)."""

from __future__ import annotations

from dataclasses import dataclass

from bot import render
from bot.commands._base import Context, Typed, UsageError, command, no_options
from bot.i18n import N_, _
from bot.view import MessageView
from mirror.models import ItemStatus
from mirror.text import Text


@dataclass(frozen=True)
class ConfirmArgs:
    job_id: str
    item: int | None = None
    """0-based index of the image, or None for every image of the job that waits."""


def _parse(typed: Typed) -> ConfirmArgs:
    args = typed.args
    no_options(args)
    if not 1 <= len(args) <= 2 or (len(args) == 2 and not args[1].isdigit()):
        raise UsageError(
            Text(
                "`/confirm` needs a job id and optionally an image number, e.g. `/confirm k3x9qa`."
            )
        )
    number = int(args[1]) if len(args) == 2 else None
    if number == 0:
        raise UsageError(Text("Images of a job are numbered from 1."))
    return ConfirmArgs(args[0], None if number is None else number - 1)


@command(
    "confirm",
    usage="/confirm JOB [N]",
    summary=N_("Copy an image the bot asked about because of its size"),
    parse=_parse,
    aliases=("/mirror confirm",),
    menu=False,
    order=70,
)
async def confirm(ctx: Context, args: ConfirmArgs) -> MessageView:
    service = ctx.services.service
    job = service.active(args.job_id)
    if job is None or job.chat != ctx.chat:
        return render.error(_("Job `{job}` is not running.").format(job=args.job_id[:20]))
    if job.requester != ctx.requester and not ctx.is_admin:
        return render.error(
            _("Only the requester or an admin may confirm job {job}.").format(job=job.id)
        )
    waiting = [
        item
        for idx, item in enumerate(job.items)
        if item.status is ItemStatus.AWAITING and args.item in (None, idx)
    ]
    if not await service.confirm(job.id, args.item):
        return render.info(_("Nothing in job {job} is waiting for an answer.").format(job=job.id))
    return render.confirmed(job, waiting)
