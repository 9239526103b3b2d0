"""``/mirror IMAGE [IMAGE ...] [--platform os/arch|all]``: copy images into MIRROR_TARGET.

The images come from whatever was pasted after the command (:mod:`bot.paste`: names, pull
lines, addresses, manifests, compose files, kubeadm output). Up to MIRROR_MAX_IMAGES start a
job, followed to its answer by :mod:`bot.following`; more are answered with the plan (count,
sizes) and a "Copy all" button only an admin's press acts on, which sends the same list with
``--confirm`` (an admin's own ``--confirm`` skips the plan, up to :data:`MAX_CONFIRMED`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from bot import actions, render
from bot.commands._base import Context, Typed, UsageError, command, echo
from bot.i18n import N_
from bot.paste import Pasted, PastedFiles, Reading, looks_like_yaml, read_pasted, references
from bot.planner import Asked, grant
from bot.policy import Refused
from bot.view import MessageView, human_bytes
from mirror.errors import MirrorError
from mirror.models import Item, ItemStatus, Job, new_job_id, platform_text
from mirror.naming import ImageSpec
from mirror.platform import Platform, parse_platform
from mirror.text import Text, text_of

MAX_CONFIRMED = 100
"""Images one command may copy even when an admin confirms (MIRROR_MAX_IMAGES' own ceiling)."""


@dataclass(frozen=True)
class MirrorArgs:
    images: tuple[ImageSpec, ...]
    platform: Platform | None
    """The platform to copy; None means every platform (``--platform all``)."""
    limit: int
    """MIRROR_MAX_IMAGES when it was typed."""
    platform_explicit: bool = False
    """Whether ``--platform`` was given (else ``platform`` is the configured default)."""
    readings: tuple[Reading, ...] = ()
    """How each image was read, in the order of ``images`` (empty: all typed as is)."""
    pasted: PastedFiles | None = None
    """Bulk text (manifests, compose, kubeadm output) the images came from: the answer
    adds a rewrite pointing it at the mirror."""
    confirmed: bool = False
    """``--confirm``: an admin copies more than MIRROR_MAX_IMAGES (up to
    :data:`MAX_CONFIRMED`) at once."""

    @property
    def needs_plan(self) -> bool:
        """More images than the limit, not confirmed: answered with the plan, not copied."""
        return len(self.readings or self.images) > self.limit and not self.confirmed


def _options(pasted: Pasted, default: Platform | None) -> tuple[Platform | None, bool, bool]:
    """The platform, whether it was given, and whether ``--confirm`` was."""
    platform, explicit, confirmed = default, False, False
    for name, value in pasted.options:
        if name == "--confirm":
            confirmed = True
            continue
        if name != "--platform":
            raise UsageError(
                Text(
                    "`{option}` is not an option of /mirror; only --platform (and an "
                    "admin's --confirm) are.",
                    option=echo(name),
                )
            )
        if not value:
            raise UsageError(Text("`--platform` needs a value such as linux/arm64 or all."))
        platform, explicit = parse_platform(value), True
    return platform, explicit, confirmed


def _readings(pasted: Pasted, max_images: int) -> list[tuple[ImageSpec, Reading]]:
    """The images found, refused when there are none or too many to even plan."""
    found = references(pasted)
    if len(found) > max(max_images, MAX_CONFIRMED):
        raise UsageError(
            Text(
                "You asked for {count} images; the limit is {limit} per command, "
                "and {most} even when an admin confirms.",
                count=len(found),
                limit=max_images,
                most=MAX_CONFIRMED,
            )
        )
    if not found:
        if pasted.source:
            raise UsageError(Text("I found no images in that {source}.", source=pasted.source))
        raise UsageError(Text("Name at least one image, e.g. `/mirror nginx:1.25`."))
    for _spec, reading in found:
        if reading.platform is not None:
            parse_platform(reading.platform)  # a bad platform in a pull line is refused now
    return found


def _files(text: str, pasted: Pasted) -> PastedFiles | None:
    """The pasted files a rewrite will point at the mirror (the YAML itself when it is)."""
    if not pasted.source:
        return None
    yaml_text = None
    if looks_like_yaml(text):
        first, _newline, rest = text.partition("\n")
        yaml_text = rest if first.lstrip().startswith("--") or not first.strip() else text
    return PastedFiles(pasted.source, yaml_text)


def _parse(typed: Typed) -> MirrorArgs:
    pasted = read_pasted(typed.text, value_options=frozenset({"--platform"}))
    platform, explicit, confirmed = _options(pasted, typed.default_platform)
    found = _readings(pasted, typed.max_images)
    return MirrorArgs(
        images=tuple(spec for spec, _reading in found),
        platform=platform,
        limit=typed.max_images,
        platform_explicit=explicit,
        readings=tuple(reading for _spec, reading in found),
        pasted=_files(typed.text, pasted),
        confirmed=confirmed,
    )


@command(
    "mirror",
    usage="/mirror IMAGE [IMAGE ...] [--platform os/arch|all]",
    summary=N_("Copy images to our registry"),
    parse=_parse,
    order=10,
    details=N_(
        "Add $NAME[:TAG] to an image to choose the target name. It also reads what you paste: "
        "docker/ctr/podman pull lines, image page addresses, kubeadm config images list "
        "output, Kubernetes YAML, compose files."
    ),
    examples=(
        "/mirror gcr.io/google-samples/microservices-demo/emailservice:v0.3.5",
        "/mirror nginx:1.25 quay.io/prometheus/node-exporter:v1.7.0 --platform linux/arm64",
        "/mirror registry.k8s.io/pause:3.9$pause:latest",
    ),
)
async def mirror(ctx: Context, args: MirrorArgs) -> MessageView | None:
    """The plan, answered; or a job, which posts its own acknowledgement and answer."""
    if args.needs_plan:
        return await _plan(ctx, args)
    await _start(ctx, args)
    return None


async def _plan(ctx: Context, args: MirrorArgs) -> MessageView:
    """Over MIRROR_MAX_IMAGES: each image planned through the policy and measured, and a
    "Copy all" only an admin's press acts on (its command is the list with --confirm)."""
    items = await _planned(ctx, args)
    held = [item.status is ItemStatus.AWAITING_APPROVAL for item in items]
    # Nothing reaches a source before an admin approves it: a held image's size is unknown.
    known = iter(
        await ctx.services.service.measure([i for i, h in zip(items, held, strict=True) if not h])
    )
    sizes = [None if h else next(known) for h in held]
    platform = f" --platform {platform_text(args.platform)}" if args.platform_explicit else ""
    typed = " ".join(str(spec) for spec in args.images)
    total = human_bytes(sum(size for size in sizes if size is not None))
    button = actions.copy_all(
        new_job_id(), f"/mirror --confirm{platform} {typed}", len(items), total
    )
    await ctx.store.add_actions(actions.owned(actions.ADMINS, ctx.chat, [button]))
    return render.bulk_plan(items, sizes, args.limit, button, admin=ctx.is_admin)


async def _start(ctx: Context, args: MirrorArgs) -> None:
    """Through the policy, the rate and the target check, then one job of the asker's."""
    services = ctx.services
    limit = services.settings.mirror_max_images
    if len(args.images) > limit and not ctx.is_admin:
        raise UsageError(
            Text("Only an admin may confirm more than {limit} images in one command.", limit=limit)
        )
    items = await _planned(ctx, args)
    try:
        if services.policy.rate is not None:
            since = time.time() - services.policy.rate.seconds
            used = await ctx.store.count_items_since(ctx.requester, since)
            services.policy.check_rate(ctx.incoming, used, len(items))
        await services.service.check_targets(items)
    except MirrorError as exc:
        if exc.__cause__ is not None:  # the store failed: no refusal to record
            raise
        sentence = text_of(exc)
        await _record_refusal(
            ctx, [replace(i, status=ItemStatus.REFUSED, error=sentence) for i in items]
        )
        raise
    job = Job(
        id=new_job_id(),
        requester=ctx.requester,
        chat=ctx.chat,
        items=items,
        confirmed=args.confirmed and len(items) > limit,  # the bulk plan showed sizes
    )
    await services.jobs.start(ctx.incoming.platform, ctx.conversation, job, args.pasted)
    if any(item.status is ItemStatus.AWAITING_APPROVAL for item in job.items):
        await services.approvals.ask(job, ctx.incoming.user_name)


async def _planned(ctx: Context, args: MirrorArgs) -> list[Item]:
    """The images through the policy: a source an admin must approve is held (an admin's own
    request is approved by asking); a refusal is stored before it is said, for the audit."""
    services = ctx.services
    await services.approvals.refresh_sources()
    try:
        items = services.planner.plan(
            args.images,
            args.platform,
            explicit=args.platform_explicit,
            readings=args.readings,
            asked=Asked.HOLD,
        )
    except Refused as exc:
        await _record_refusal(ctx, exc.items)
        raise
    if ctx.is_admin:
        grant(items, ctx.requester)
    return items


async def _record_refusal(ctx: Context, items: list[Item]) -> None:
    """A refused request, as a job nobody runs (its images ``REFUSED`` with the sentence)."""
    await ctx.store.add_job(Job(new_job_id(), ctx.requester, ctx.chat, items))
