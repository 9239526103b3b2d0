"""``/status [JOB]``: the chat's latest jobs (and the pull limits sources reported, and how
many repositories the target holds of MIRROR_TARGET_MAX_REPOS), or one job: its live
progress, or its final answer."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bot import render
from bot.commands._base import Context, Typed, UsageError, command, no_options
from bot.i18n import N_, _
from bot.view import MessageView
from mirror.text import Text


@dataclass(frozen=True)
class StatusArgs:
    job_id: str | None = None
    """None: the chat's latest jobs."""


def _parse(typed: Typed) -> StatusArgs:
    no_options(typed.args)
    if len(typed.args) > 1:
        raise UsageError(Text("`/status` takes at most one job id."))
    return StatusArgs(typed.args[0] if typed.args else None)


@command(
    "status",
    usage="/status [JOB]",
    summary=N_("Latest jobs in this chat, or one job"),
    parse=_parse,
    order=40,
)
async def status(ctx: Context, args: StatusArgs) -> MessageView:
    service = ctx.services.service
    if args.job_id is None:
        limits = service.engines.pull_limits()
        view = render.status_list(await ctx.store.recent_jobs(ctx.chat), limits)
        room = service.budget.max_repos
        if room is None:
            return view
        count = await ctx.store.repository_count()  # MIRROR_TARGET_MAX_REPOS
        line = _("repositories {count} of {limit}").format(count=count, limit=room)
        return replace(view, lines=(*view.lines, line))
    job = service.active(args.job_id) or await ctx.store.get_job(args.job_id)
    if job is None or job.chat != ctx.chat:
        return render.error(_("There is no job `{job}` in this chat.").format(job=args.job_id[:20]))
    if job.finished:
        return render.answer(job, ctx.services.render_options, digest_note=False)
    return render.progress(job)
