"""``/pin IMAGE``: keep an image's copy when retention prunes (MIRROR_RETENTION,
``mirror-bot prune``); admins and whoever asked for the image only."""

from __future__ import annotations

from bot import render
from bot.commands._base import Context, command
from bot.commands._pins import PinArgs, parse_image, pinnable
from bot.i18n import N_, _
from bot.view import MessageView
from mirror.retention import Pin


@command(
    "pin",
    usage="/pin IMAGE",
    summary=N_("Keep an image's copy when old copies are pruned"),
    parse=parse_image,
    aliases=("/mirror pin",),
    order=102,
    examples=("/pin registry.k8s.io/pause:3.9",),
)
async def pin(ctx: Context, args: PinArgs) -> MessageView:
    source = await pinnable(ctx, args.image)
    if not await ctx.store.add_pin(Pin(str(source), ctx.requester)):
        return render.info(_("`{image}` is pinned already.").format(image=source.familiar))
    return render.info(
        _(
            "Pinned `{image}`: pruning keeps its current copy until someone sends `/unpin {image}`."
        ).format(image=source.familiar)
    )
