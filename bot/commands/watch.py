"""``/watch IMAGE[:TAG|FILTER]``: mirror now, then again whenever the tag moves upstream or a
new tag matches the filter; the news is posted where the watch was made (:mod:`bot.watching`)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands._base import Context, Typed, UsageError, command, echo
from bot.i18n import N_
from mirror.models import is_tag_filter
from mirror.platform import Platform, parse_platform
from mirror.reference import ImageRef, parse_reference
from mirror.text import Text


@dataclass(frozen=True)
class WatchArgs:
    image: ImageRef
    """The repository, without tag."""
    pattern: str
    """One tag (``latest``) or a tag filter (``1.27.*``, ``~1.27``)."""
    platform: Platform | None


def _words_and_platform(typed: Typed) -> tuple[list[str], Platform | None]:
    """The words that are not ``--platform``, and the platform (the default without it)."""
    platform, words = typed.default_platform, []
    rest = iter(typed.args)
    for arg in rest:
        if arg.startswith("--platform"):
            value = arg.partition("=")[2] or next(rest, "")
            if not value:
                raise UsageError(Text("`--platform` needs a value such as linux/arm64 or all."))
            platform = parse_platform(value)
        elif arg.startswith("-"):
            raise UsageError(
                Text("`{option}` is not an option of /watch; only --platform is.", option=echo(arg))
            )
        else:
            words.append(arg)
    return words, platform


def _parse(typed: Typed) -> WatchArgs:
    words, platform = _words_and_platform(typed)
    if len(words) != 1:
        raise UsageError(
            Text("Name one image to watch, e.g. `/watch nginx:1.27` or `/watch nginx:~1.27`.")
        )
    text = words[0]
    if "$" in text:
        raise UsageError(Text("A watch keeps the image's own name; leave out `$NAME`."))
    name, colon, suffix = text.rpartition(":")
    if colon and "/" not in suffix and is_tag_filter(suffix):
        return WatchArgs(parse_reference(name).repo_only, suffix, platform)
    ref = parse_reference(text)
    if ref.digest is not None:
        raise UsageError(Text("A digest never moves; watch a tag, e.g. `/watch nginx:1.27`."))
    return WatchArgs(ref.repo_only, ref.tag or "latest", platform)


@command(
    "watch",
    usage="/watch IMAGE[:TAG|FILTER] [--platform os/arch|all]",
    summary=N_("Mirror again when a tag moves"),
    parse=_parse,
    aliases=("/mirror watch",),
    order=80,
    details=N_(
        "A FILTER follows new tags: a glob (1.27.*) or a range (~1.27: patch releases of 1.27)."
    ),
)
async def watch(ctx: Context, args: WatchArgs) -> None:
    """Posts its own announcement, which the watch's news then follows; a watch of a source
    an admin must approve is held, and the admins are asked."""
    await ctx.services.approvals.refresh_sources()
    made = await ctx.services.watches.add(
        ctx.incoming, ctx.conversation, args.image, args.pattern, args.platform, admin=ctx.is_admin
    )
    if made.held:
        await ctx.services.approvals.ask_watch(made, ctx.incoming.user_name)
