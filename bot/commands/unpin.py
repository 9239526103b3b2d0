"""``/unpin IMAGE``: let retention prune an image's copy again; admins and whoever asked for
the image only."""

from __future__ import annotations

from bot import render
from bot.commands._base import Context, command
from bot.commands._pins import PinArgs, parse_image, pinnable
from bot.i18n import N_, _
from bot.view import MessageView


@command(
    "unpin",
    usage="/unpin IMAGE",
    summary=N_("Let an image's copy be pruned again"),
    parse=parse_image,
    aliases=("/mirror unpin",),
    order=103,
)
async def unpin(ctx: Context, args: PinArgs) -> MessageView:
    source = await pinnable(ctx, args.image)
    if not await ctx.store.remove_pin(str(source)):
        return render.info(_("`{image}` is not pinned.").format(image=source.familiar))
    return render.info(
        _("Unpinned `{image}`: its copy is pruned once nobody asked for it in a while.").format(
            image=source.familiar
        )
    )
