"""``/mirror IMAGE [IMAGE ...] [--platform os/arch|all]``: copy images into MIRROR_TARGET.

The images come from whatever was pasted after the command (:mod:`bot.paste`: names, pull
lines, addresses, manifests, compose files, kubeadm output; :mod:`bot.pasted_errors`: pull
failures, each failing image once; :mod:`bot.chart_request`: a whole chart, read before
planning, with the images it deploys). Up to MIRROR_MAX_IMAGES start a job, followed to its
answer by :mod:`bot.following`; more are answered with the plan (count, sizes) and a "Copy all"
button only an admin's press acts on, which sends the same list with ``--confirm`` (an admin's
own ``--confirm`` skips the plan, up to :data:`MAX_CONFIRMED`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bot import actions, render
from bot.chart_request import ChartAsk, chart_plan, find_chart, oci_ask, read_chart_ask
from bot.commands._base import Context, Typed, UsageError, command, echo
from bot.i18n import N_
from bot.paste import Pasted, PastedFiles, Reading, looks_like_yaml, read_pasted, references
from bot.pasted_errors import (
    FailedPull,
    Failure,
    joined,
    looks_like_pull_error,
    read_pull_errors,
    summary,
    trust_advice,
)
from bot.planner import Asked, grant
from bot.policy import Refused
from bot.view import MessageView, human_bytes
from mirror.errors import MirrorError
from mirror.models import Item, ItemStatus, Job, new_job_id, platform_text
from mirror.naming import ImageSpec, parse_image_spec
from mirror.platform import Platform, parse_platform
from mirror.text import Text, text_of

if TYPE_CHECKING:
    from mirror.lookup import Inspection

log = logging.getLogger(__name__)

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
    origin: Text | None = None
    """What was read when it was not names (a pull error, a chart): said with the job."""
    untrusted: tuple[FailedPull, ...] = ()
    """Pull failures on a certificate the puller does not trust: advice, nothing copied."""
    platform_missing: tuple[FailedPull, ...] = ()
    """Pull failures for a missing platform: the answer lists the platforms there are."""
    chart: ChartAsk | None = None
    """A whole chart: read (registry traffic) before anything is planned."""

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


def _own_options(text: str) -> tuple[tuple[tuple[str, str | None], ...], frozenset[str]]:
    """``--platform P`` and ``--confirm`` among ``text``'s words, and the words they are."""
    options: list[tuple[str, str | None]] = []
    words: set[str] = set()
    tokens = text.split()
    i = 0
    while i < len(tokens):
        name, eq, value = tokens[i].partition("=")
        if name == "--confirm":
            options.append((name, None))
            words.add(tokens[i])
        elif name == "--platform":
            words.add(tokens[i])
            if not eq and i + 1 < len(tokens):
                i += 1
                value = tokens[i]
                words.add(value)
            options.append((name, value))
        i += 1
    return tuple(options), frozenset(words)


def _leading_options(text: str) -> tuple[tuple[str, str | None], ...]:
    """Options typed on the command's own line above a paste (``/mirror --platform all``)."""
    first = text.strip().split("\n", 1)[0]
    found = _own_options(first)
    if not first.split() or set(first.split()) - found[1]:
        return ()
    return found[0]


def _from_errors(typed: Typed) -> MirrorArgs:
    """A pasted pull failure: each failing image once, with the platform an error names; a
    chart that failed comes with the images it deploys; certificate failures get advice."""
    errors = read_pull_errors(typed.text)
    if not errors.failures:
        raise UsageError(Text("Name at least one image, e.g. `/mirror nginx:1.25`."))
    options = Pasted(options=_leading_options(typed.text))
    platform, explicit, confirmed = _options(options, typed.default_platform)
    charts = [f for f in errors.copied if f.chart]
    readings = tuple(
        replace(f.reading, platform=None) if explicit else f.reading  # the typed one wins
        for f in errors.copied
        if not f.chart
    )
    found = _readings(Pasted(readings), typed.max_images) if readings else []
    return MirrorArgs(
        images=tuple(spec for spec, _reading in found),
        platform=platform,
        limit=typed.max_images,
        platform_explicit=explicit,
        readings=tuple(reading for _spec, reading in found),
        pasted=PastedFiles("pull error") if errors.kubernetes and not charts else None,
        confirmed=confirmed,
        origin=summary(errors),
        untrusted=errors.untrusted,
        platform_missing=tuple(
            f for f in errors.copied if f.failure is Failure.PLATFORM_MISSING and f.platform
        ),
        chart=oci_ask(charts[0].lines[0], charts[0].image) if charts else None,
    )


def _from_chart(typed: Typed) -> MirrorArgs | None:
    """A whole chart named alone (``oci://…``, a ``helm install`` line): read when handled."""
    own = _own_options(typed.text)
    ask = find_chart(typed.text, tuple(own[1]))
    if ask is None:
        return None
    platform, explicit, confirmed = _options(Pasted(options=own[0]), typed.default_platform)
    return MirrorArgs((), platform, typed.max_images, explicit, confirmed=confirmed, chart=ask)


def _parse(typed: Typed) -> MirrorArgs:
    if looks_like_pull_error(typed.text):
        return _from_errors(typed)
    chart = _from_chart(typed)
    if chart is not None:
        return chart
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
        "output, Kubernetes YAML, compose files, and pull errors (kubectl events, kubelet "
        "logs, kubeadm, docker, helm). A chart (oci://… or helm install … --repo URL) comes "
        "with the images it deploys and a values file pointing them at the mirror."
    ),
    examples=(
        "/mirror gcr.io/google-samples/microservices-demo/emailservice:v0.3.5",
        "/mirror nginx:1.25 quay.io/prometheus/node-exporter:v1.7.0 --platform linux/arm64",
        "/mirror registry.k8s.io/pause:3.9$pause:latest",
        "/mirror oci://ghcr.io/stefanprodan/charts/podinfo:6.5.0",
    ),
)
async def mirror(ctx: Context, args: MirrorArgs) -> MessageView | None:
    """The plan, answered; or a job, which posts its own acknowledgement and answer (and,
    after a pasted pull error, what more there is to say about it)."""
    if args.chart is not None:
        args = await _with_chart(ctx, args)
    if not args.images:  # every failure was a certificate, or a chart with nothing to copy
        advice = tuple(trust_advice(args.untrusted))
        return render.read_not_copied(args.origin or "", advice)
    if args.needs_plan:
        return await _plan(ctx, args)
    job = await _start(ctx, args)
    return await _more_about_errors(ctx, args, job)


async def _with_chart(ctx: Context, args: MirrorArgs) -> MirrorArgs:
    """Read the chart (registry traffic), then plan it with the images it deploys beside any
    other image the paste named."""
    assert args.chart is not None
    await ctx.services.approvals.refresh_sources()  # repositories approved for good are read
    source = await read_chart_ask(args.chart, ctx.services.lookups, ctx.services.policy)
    plan = chart_plan(source, ctx.services.policy)
    readings = plan.readings + args.readings
    found = _readings(Pasted(readings), args.limit) if readings else []
    origin = joined([plan.origin, args.origin]) if args.origin else plan.origin
    return replace(
        args,
        images=tuple(spec for spec, _reading in found),
        readings=tuple(reading for _spec, reading in found),
        pasted=PastedFiles("Helm chart", chart=source),
        origin=origin,
    )


PLATFORM_LOOKUPS = 3
"""Images whose platforms an answer to a missing-platform error lists (a read each)."""
LOOKUP_SECONDS = 15.0
"""How long those reads may hold the answer up (they run after the job has started)."""


async def _more_about_errors(ctx: Context, args: MirrorArgs, job: Job) -> MessageView | None:
    """After a pasted pull error's job has started: where a certificate's CA goes, and which
    platforms an image missing one has (with "All platforms" for each); nothing otherwise."""
    if not args.untrusted and not args.platform_missing:
        return None
    lookups = ctx.services.lookups.get()

    async def platforms(failed: FailedPull) -> Inspection | None:
        try:
            return await lookups.inspect(parse_image_spec(failed.image).source)
        except MirrorError as exc:
            log.info("no platforms to list for %s: %s", failed.image, exc)
            return None

    wanted = args.platform_missing[:PLATFORM_LOOKUPS]
    try:
        async with asyncio.timeout(LOOKUP_SECONDS):
            found = await asyncio.gather(*(platforms(failed) for failed in wanted))
    except TimeoutError:
        found = []
    seen = [inspection for inspection in found if inspection is not None]
    buttons = tuple(
        actions.every_platform(job.id, n, found.ref)
        for n, found in enumerate(seen)
        if len(found.platforms) > 1
    )
    await ctx.store.add_actions(actions.owned(ctx.requester, ctx.chat, buttons))
    return render.more_about_errors(seen, trust_advice(args.untrusted), buttons)


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
    typed = args.chart.command if args.chart else " ".join(str(spec) for spec in args.images)
    total = human_bytes(sum(size for size in sizes if size is not None))
    button = actions.copy_all(
        new_job_id(), f"/mirror --confirm{platform} {typed}", len(items), total
    )
    await ctx.store.add_actions(actions.owned(actions.ADMINS, ctx.chat, [button]))
    return render.bulk_plan(items, sizes, args.limit, button, admin=ctx.is_admin)


async def _start(ctx: Context, args: MirrorArgs) -> Job:
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
        origin=args.origin,
    )
    if args.origin is not None:  # the origin says how each was read; no "read X as Y" each
        for item in items:
            item.corrected_from = None
    await services.jobs.start(ctx.incoming.platform, ctx.conversation, job, args.pasted)
    if any(item.status is ItemStatus.AWAITING_APPROVAL for item in job.items):
        await services.approvals.ask(job, ctx.incoming.user_name)
    return job


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
