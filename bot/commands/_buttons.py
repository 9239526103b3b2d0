"""What ``/tags`` and ``/inspect`` share: an answer with buttons to mirror what it shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from bot import actions, render
from bot.commands._base import Context
from bot.view import Action, MessageView
from mirror.reference import ImageRef


async def with_buttons(
    ctx: Context,
    view: MessageView,
    buttons: Sequence[Action],
    image: ImageRef,
    corrected_from: str | None,
) -> MessageView:
    """``view`` with ``buttons``, stored as the asker's before the answer goes out, and how
    the image was read when it was not typed as a reference."""
    await ctx.store.add_actions(actions.owned(ctx.requester, ctx.chat, buttons))
    view = replace(view, actions=tuple(buttons))
    if corrected_from is not None:
        read = render.read_as(corrected_from, image.familiar)
        view = replace(view, lines=(read, *view.lines))
    return view
