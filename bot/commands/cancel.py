"""``/cancel JOB``: stop a running job; its requester or an admin only (the Cancel button)."""

from __future__ import annotations

from dataclasses import dataclass

from bot import render
from bot.commands._base import Context, Typed, UsageError, command, no_options
from bot.i18n import N_, _
from bot.view import MessageView
from mirror.text import Text


@dataclass(frozen=True)
class CancelArgs:
    job_id: str


def _parse(typed: Typed) -> CancelArgs:
    no_options(typed.args)
    if len(typed.args) != 1:
        raise UsageError(Text("`/cancel` needs exactly one job id, e.g. `/cancel k3x9qa`."))
    return CancelArgs(typed.args[0])


@command(
    "cancel",
    usage="/cancel JOB",
    summary=N_("Stop a running job"),
    parse=_parse,
    order=60,
)
async def cancel(ctx: Context, args: CancelArgs) -> MessageView:
    service = ctx.services.service
    job = service.active(args.job_id)
    if job is None:
        return render.error(_("Job `{job}` is not running.").format(job=args.job_id[:20]))
    if job.requester != ctx.requester and not ctx.is_admin:
        return render.error(
            _("Only the requester or an admin may cancel job {job}.").format(job=job.id)
        )
    await service.cancel(job.id)
    return render.info(_("Job {job} cancelled.").format(job=job.id))
