"""``/unwatch ID``: stop a watch; its requester or an admin only."""

from __future__ import annotations

from dataclasses import dataclass

from bot import render
from bot.commands._base import Context, Typed, UsageError, command, no_options
from bot.i18n import N_, _
from bot.view import MessageView
from mirror.text import Text


@dataclass(frozen=True)
class UnwatchArgs:
    watch_id: str


def _parse(typed: Typed) -> UnwatchArgs:
    no_options(typed.args)
    if len(typed.args) != 1:
        raise UsageError(Text("`/unwatch` needs exactly one watch id, e.g. `/unwatch w4k2pq`."))
    return UnwatchArgs(typed.args[0])


@command(
    "unwatch",
    usage="/unwatch ID",
    summary=N_("Stop a watch"),
    parse=_parse,
    aliases=("/mirror unwatch",),
    order=100,
)
async def unwatch(ctx: Context, args: UnwatchArgs) -> MessageView:
    watch = await ctx.store.get_watch(args.watch_id)
    if watch is None or watch.chat != ctx.chat:
        return render.error(
            _("There is no watch `{watch}` in this chat.").format(watch=args.watch_id[:20])
        )
    if watch.requester != ctx.requester and not ctx.is_admin:
        return render.error(
            _("Only the requester or an admin may stop watch {watch}.").format(watch=watch.id)
        )
    await ctx.store.delete_watch(watch.id)
    return render.info(
        _("Watch {watch} stopped: {image} is no longer checked.").format(
            watch=watch.id, image=watch.shown
        )
    )
