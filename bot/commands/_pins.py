"""What ``/pin`` and ``/unpin`` share: their argument, and who may touch which image."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands._base import Context, Typed, UsageError, no_options, one_image
from mirror.errors import MirrorError
from mirror.reference import ImageRef
from mirror.text import Text


@dataclass(frozen=True)
class PinArgs:
    image: ImageRef


def parse_image(typed: Typed) -> PinArgs:
    """Exactly one image, as /mirror reads it (a name, an address, a pull line)."""
    no_options(typed.args)
    if len(typed.args) != 1:
        raise UsageError(
            Text(
                "`/{command}` needs exactly one image, e.g. `/{command} nginx:1.25`.",
                command=typed.name,
            )
        )
    return PinArgs(one_image(typed.args[0])[0])


async def pinnable(ctx: Context, image: ImageRef) -> ImageRef:
    """The source ``image`` names, given as the source or as its copy (the target reference
    pasted back); refused unless it has a copy here and the asker is an admin or one of the
    people who asked for it."""
    store = ctx.store
    source = image
    if not await store.copies_of(str(image)):
        copied = await store.last_success(str(image))
        if copied is None:
            raise MirrorError(
                Text("`{image}` has no copy here; mirror it first.", image=image.familiar)
            )
        source = copied.source
    if not ctx.is_admin and ctx.requester not in await store.requesters_of(str(source)):
        raise MirrorError(
            Text(
                "Only an admin or someone who asked for `{image}` may pin or unpin it.",
                image=source.familiar,
            )
        )
    return source
