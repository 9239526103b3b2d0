"""``/web``: a one-time sign-in link to the operator's view, sent to the admin privately.

The link works once, within ten minutes (:mod:`bot.web.access`). Typed in a private chat (or
the console, which prints it) the answer is the link; typed in a group, the bot writes to the
admin privately where the platform lets it write first (:class:`bot.chat.Addressable`), and
says so in the group without the link; where it cannot, it asks for a private chat.
"""

from __future__ import annotations

from bot import render
from bot.chat import Addressable, ChatError
from bot.commands._base import Context, NoArguments, command, no_arguments
from bot.i18n import N_, _
from bot.pacing import Priority
from bot.planner import NotConfigured
from bot.view import Link, MessageView, Tone
from bot.web import Web
from mirror.text import Text

WEB_OFF = Text("The web view is off: the operator turns it on by setting MIRROR_WEB_URL.")


def sign_in_view(web: Web, token: str) -> MessageView:
    return MessageView(
        _("Your sign-in link to the operator's view"),
        Tone.INFO,
        lines=(_("It works once, within 10 minutes; do not share it."),),
        link=Link(web.sign_in_url(token), _("Sign in")),
    )


def _open_a_private_chat() -> MessageView:
    return render.info(
        _("I cannot write to you first here: open a private chat with me and send /web there.")
    )


@command(
    "web",
    usage="/web",
    summary=N_("A one-time sign-in link to the operator's web view, sent privately"),
    parse=no_arguments,
    admin_only=True,
    menu=False,  # admins' alone: everyone's chat menu stays theirs
    order=90,
)
async def web(ctx: Context, args: NoArguments) -> MessageView:
    site = ctx.services.web
    if site is None:
        raise NotConfigured(WEB_OFF)
    if not ctx.incoming.is_group:  # a private chat, or the console: answer here
        return sign_in_view(site, site.sign_ins.issue(ctx.requester))
    adapter = site.adapters.get(ctx.incoming.platform)
    if not isinstance(adapter, Addressable):
        return _open_a_private_chat()
    token = site.sign_ins.issue(ctx.requester)
    try:
        private = await adapter.open_private(ctx.incoming.user_id)
        await ctx.services.pacer.post(
            private,
            sign_in_view(site, token),
            Priority.ANSWER,
            what="sign-in link",
            adapter=ctx.incoming.platform,
        )
    except (TimeoutError, ChatError):  # never opened a private chat with the bot, or down
        site.sign_ins.revoke(token)
        return _open_a_private_chat()
    return render.info(_("I sent you a sign-in link privately; it works once, for 10 minutes."))
