"""``/inspect IMAGE``: digest, platforms with sizes, created date, whether it is mirrored here
and whether upstream moved since; buttons to mirror it (every platform too, when it has
several and a plain ``/mirror`` copies one)."""

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
class InspectArgs:
    image: ImageRef
    corrected_from: str | None = None


def _parse(typed: Typed) -> InspectArgs:
    no_options(typed.args)
    if len(typed.args) != 1:
        raise UsageError(Text("`/inspect` needs exactly one image, e.g. `/inspect nginx:1.25`."))
    ref, read_from, _tag = one_image(typed.args[0])
    return InspectArgs(ref, read_from)


@command(
    "inspect",
    usage="/inspect IMAGE",
    summary=N_("Digest, platforms, sizes, and whether it is mirrored here"),
    parse=_parse,
    order=30,
    examples=("/inspect registry.k8s.io/pause:3.9",),
)
async def inspect(ctx: Context, args: InspectArgs) -> MessageView:
    ctx.services.policy.check_source(args.image)
    seen = await ctx.services.lookups.get().inspect(args.image)
    copies = await ctx.store.copies_of(str(args.image))
    view = render.inspection(seen, copies)
    several = len(seen.platforms) > 1 and ctx.services.planner.default_platform is not None
    buttons = actions.mirror_inspected(new_job_id(), seen.ref, every_platform=several)
    return await with_buttons(ctx, view, buttons, args.image, args.corrected_from)
