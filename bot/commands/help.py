"""``/help`` (also ``/start``, what Telegram sends first): every command with its usage, and
examples to paste."""

from __future__ import annotations

from functools import partial

from bot import render
from bot.commands._base import Context, NoArguments, Typed, command
from bot.i18n import N_
from bot.view import MessageView, translated


def _parse(typed: Typed) -> NoArguments:
    return NoArguments()  # `/help mirror` is still a request for help


@command(
    "help",
    usage="/help",
    summary=N_("Usage and examples"),
    parse=_parse,
    aliases=("/start",),
    order=120,
)
async def help_(ctx: Context, args: NoArguments) -> MessageView:
    return translated(partial(render.help_text, ctx.services.commands))
