"""``/tags IMAGE [FILTER]``: the repository's tags, newest first (semver-aware), with a button
to mirror each of the newest; only allowed sources are asked."""

from __future__ import annotations

from dataclasses import dataclass

from bot import actions, render
from bot.commands._base import Context, Typed, UsageError, command, no_options, one_image
from bot.commands._buttons import with_buttons
from bot.i18n import N_
from bot.view import MessageView
from mirror.models import new_job_id
from mirror.reference import ImageRef
from mirror.text import Text


@dataclass(frozen=True)
class TagsArgs:
    image: ImageRef
    """The repository (its tag, if typed, became the filter)."""
    pattern: str | None = None
    """A version prefix, substring, glob or range (:func:`mirror.tags.filter_tags`)."""
    corrected_from: str | None = None


def _parse(typed: Typed) -> TagsArgs:
    no_options(typed.args)
    if not 1 <= len(typed.args) <= 2:
        raise UsageError(
            Text("`/tags` needs an image and at most one filter, e.g. `/tags nginx 1.25`.")
        )
    ref, read_from, tag = one_image(typed.args[0])
    return TagsArgs(ref, typed.args[1] if len(typed.args) > 1 else tag, read_from)


@command(
    "tags",
    usage="/tags IMAGE [FILTER]",
    summary=N_("An image's tags, newest first"),
    parse=_parse,
    order=20,
    details=N_(
        "FILTER is a version prefix (1.25), a substring (alpine), a glob (1.2*) or a range (~1.27)."
    ),
    examples=("/tags nginx 1.25",),
)
async def tags(ctx: Context, args: TagsArgs) -> MessageView:
    ctx.services.policy.check_source(args.image)
    found = await ctx.services.lookups.get().tags(args.image, args.pattern)
    view = render.tag_list(found, args.pattern)
    buttons = actions.mirror_tags(new_job_id(), found.ref, found.tags)
    return await with_buttons(ctx, view, buttons, args.image, args.corrected_from)
