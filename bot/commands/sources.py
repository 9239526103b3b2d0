"""``/sources``: where images may come from: the registries the operator allowed
(MIRROR_ALLOWED_SOURCES) and the repositories admins approved for good."""

from __future__ import annotations

from bot import approval_views
from bot.commands._base import Context, NoArguments, command, no_arguments
from bot.i18n import N_
from bot.view import MessageView


@command(
    "sources",
    usage="/sources",
    summary=N_("Where images may come from"),
    parse=no_arguments,
    order=76,
)
async def sources(ctx: Context, args: NoArguments) -> MessageView:
    policy = ctx.services.policy
    approved = await ctx.store.approved_sources()
    return approval_views.sources(policy.configured_sources, approved, policy.approval)
