"""``/watches``: this chat's watches, when each was last checked, the digest it saw."""

from __future__ import annotations

from bot import render
from bot.commands._base import Context, NoArguments, command, no_arguments
from bot.i18n import N_
from bot.view import MessageView


@command(
    "watches",
    usage="/watches",
    summary=N_("This chat's watches"),
    parse=no_arguments,
    aliases=("/mirror watches",),
    order=90,
)
async def watches(ctx: Context, args: NoArguments) -> MessageView:
    return render.watches(await ctx.store.watches(ctx.chat))
