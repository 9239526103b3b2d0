"""``/history``: the last images this chat mirrored, newest first."""

from __future__ import annotations

from bot import render
from bot.commands._base import Context, NoArguments, command, no_arguments
from bot.i18n import N_
from bot.view import MessageView


@command(
    "history",
    usage="/history",
    summary=N_("What this chat mirrored"),
    parse=no_arguments,
    order=50,
)
async def history(ctx: Context, args: NoArguments) -> MessageView:
    return render.history(await ctx.store.history(ctx.chat))
