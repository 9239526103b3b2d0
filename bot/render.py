"""What the bot says, as neutral :class:`MessageView` s: acknowledgement, progress, answer.

Adapters only restyle these; wording, order and the ready-to-paste commands live here once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot import actions
from bot.i18n import N_, _, ago, duration, join, localize, ngettext
from bot.view import Action, Bar, Link, MessageView, Row, Tone, human_bytes
from mirror.artifacts import ArtifactKind, along_text
from mirror.errors import MirrorError
from mirror.models import Item, ItemStatus, Job, Watch, platform_text
from mirror.progress import Stage
from mirror.reference import ImageRef, parse_reference, quote
from mirror.text import Text, text_of

if TYPE_CHECKING:
    from bot.commands import Command
    from mirror.engines.registry.hosts import PullLimit
    from mirror.lookup import Inspection, TagList


@dataclass(frozen=True)
class RenderOptions:
    """The few deployment facts the answer depends on."""

    insecure_registries: frozenset[str] = frozenset()
    """Targets reached over plain HTTP: ``ctr`` then needs ``--plain-http``."""
    login_registries: frozenset[str] = frozenset()
    """Targets we push to with credentials: users likely need ``docker login`` to pull."""
    web_url: str | None = None
    """``MIRROR_WEB_URL``: every job's messages link to its page there."""


_STATE_WORDS = {
    ItemStatus.QUEUED: N_("queued"),
    ItemStatus.WAITING: N_("waiting"),
    ItemStatus.SUCCEEDED: N_("done"),
    ItemStatus.ALREADY_MIRRORED: N_("already mirrored"),
    ItemStatus.FAILED: N_("failed"),
    ItemStatus.CANCELLED: N_("cancelled"),
    ItemStatus.AWAITING_APPROVAL: N_("awaiting approval"),
    ItemStatus.DENIED: N_("denied"),
    ItemStatus.REFUSED: N_("refused"),
    ItemStatus.PRUNED: N_("pruned"),
}
_STAGE_WORDS = {
    Stage.QUEUED: N_("queued"),
    Stage.RESOLVING: N_("resolving"),
    Stage.COPYING: N_("copying"),
    Stage.PUSHING: N_("pushing"),
}
_JOB_STATES = {
    "queued": N_("queued"),
    "waiting": N_("waiting"),
    "awaiting confirmation": N_("awaiting confirmation"),
    "awaiting approval": N_("awaiting approval"),
    "refused": N_("refused"),
    "denied": N_("denied"),
    "running": N_("running"),
    "done": N_("done"),
    "failed": N_("failed"),
    "cancelled": N_("cancelled"),
    "pruned": N_("pruned"),
}
_TONES = {
    ItemStatus.SUCCEEDED: Tone.SUCCESS,
    ItemStatus.ALREADY_MIRRORED: Tone.SUCCESS,
    ItemStatus.FAILED: Tone.FAILURE,
    ItemStatus.CANCELLED: Tone.FAILURE,
    ItemStatus.DENIED: Tone.FAILURE,
    ItemStatus.REFUSED: Tone.FAILURE,
    ItemStatus.PRUNED: Tone.INFO,
}


def _images(n: int) -> str:
    return ngettext("{n} image", "{n} images", n).format(n=n)


def _state(word: str) -> str:
    """A state word (a job's, an item's, a stage's) in the asker's language."""
    return _(word)


def _job_state(job: Job) -> str:
    return _(_JOB_STATES.get(job.state, job.state))


def job_states() -> dict[str, str]:
    """Every state a job can be in, and its words in the current language."""
    return {state: _(word) for state, word in _JOB_STATES.items()}


def pull_reference(item: Item) -> str:
    """What to pull: by digest when the copy is exact and the user asked by digest."""
    if item.source.digest and item.digest_identical and item.target_digest:
        return f"{item.target.name}@{item.target_digest}"
    return f"{item.target.name}:{item.target.tag}"


def tag_back_reference(item: Item) -> str:
    """The original name to tag the copy back to (a tag, since a tag cannot be a digest)."""
    source = item.source
    tag = source.tag or item.target.tag
    return f"{source.name}:{tag}"


def commands(item: Item, options: RenderOptions) -> list[str]:
    """What to paste to use the copy: the first is ``--json``'s ``pull``."""
    if item.artifact is not None:
        return artifact_commands(item, options)
    target = pull_reference(item)
    source = tag_back_reference(item)
    plain = " --plain-http" if item.target.registry in options.insecure_registries else ""
    familiar_target = ImageRef(item.target.registry, item.target.repository, None, None).familiar
    familiar_source = ImageRef(item.source.registry, item.source.repository, None, None).familiar
    docker_target = familiar_target + target[len(item.target.name) :]
    docker_source = familiar_source + source[len(item.source.name) :]
    return [
        f"docker pull {docker_target} && docker tag {docker_target} {docker_source}",
        f"ctr -n k8s.io images pull{plain} {target} && ctr -n k8s.io images tag {target} {source}",
    ]


def artifact_commands(item: Item, options: RenderOptions) -> list[str]:
    """A chart is pulled and installed by Helm (``oci://``, its version is the tag); any
    other artifact by oras. Nothing to tag back: no daemon keeps them by name."""
    plain = " --plain-http" if item.target.registry in options.insecure_registries else ""
    if item.artifact is ArtifactKind.CHART:
        # Helm speaks to Docker Hub by its API host, not by the docker.io alias.
        registry = "registry-1.docker.io" if item.target.registry == "docker.io" else None
        chart = f"oci://{registry or item.target.registry}/{item.target.repository}"
        version = f" --version {item.target.tag}" if item.target.tag else ""
        # The chart's own name makes the release name (the target's may be flattened).
        release = re.sub(r"[^a-z0-9-]+", "-", item.source.repository.rsplit("/", 1)[-1])
        return [
            f"helm pull {chart}{version}{plain}",
            f"helm install {release} {chart}{version}{plain}",
        ]
    return [f"oras pull{plain} {pull_reference(item)}"]


def _progress_row(item: Item) -> Row:
    label = item.source.familiar
    snap = item.progress
    if item.status.finished:
        status = item.status
        return Row(label, _state(_STATE_WORDS[status]), _TONES[status], localize(item.error))
    if item.status is ItemStatus.WAITING:  # the sentence says for what, and until when
        return Row(label, _state(_STATE_WORDS[item.status]), Tone.WORKING, localize(item.error))
    if item.status is ItemStatus.AWAITING_APPROVAL:
        detail = _("An admin must approve this source first; the answer comes here.")
        return Row(label, _state(_STATE_WORDS[item.status]), Tone.WORKING, detail)
    if item.status is ItemStatus.AWAITING:
        if item.bytes is not None:
            size = _("This image is {size}.").format(size=human_bytes(item.bytes))
        else:
            size = _("This image is large.")
        return Row(label, _("awaiting confirmation"), Tone.WORKING, size)
    if snap is None or snap.stage is Stage.QUEUED:
        return Row(label, _("queued"))
    bar = None
    if snap.stage in (Stage.COPYING, Stage.PUSHING):
        bar = Bar(snap.done, snap.total, snap.bytes_per_second, snap.eta_seconds)
    return Row(label, _(_STAGE_WORDS.get(snap.stage, snap.stage.value)), Tone.WORKING, None, bar)


def _title(job: Job) -> str:
    return _("Job {job}: mirroring {images}").format(job=job.id, images=_images(len(job.items)))


def job_page(job: Job, web_url: str) -> str:
    """The job's page: a capability URL (``bot.web``), the job's token in it."""
    return f"{web_url}/jobs/{job.id}/{job.token}"


def job_link(job: Job, options: RenderOptions | None) -> Link | None:
    """The link to the job's page, when the bot serves pages and the job has one."""
    if options is None or options.web_url is None or job.token is None:
        return None
    return Link(job_page(job, options.web_url), _("The job's page"))


def acknowledgement(job: Job, options: RenderOptions | None = None) -> MessageView:
    return progress(job, options)


def progress(job: Job, options: RenderOptions | None = None) -> MessageView:
    """The live message; once the job is finished, its compact final state (with a link to
    the job's page when ``options`` name one)."""
    if job.finished:
        ok = sum(1 for i in job.items if i.status.ok)
        title = _("Job {job}: {state} ({ok}/{total} ready)").format(
            job=job.id, state=_job_state(job), ok=ok, total=len(job.items)
        )
        tone = Tone.SUCCESS if job.state == "done" else Tone.FAILURE
    else:
        title, tone = _title(job), Tone.WORKING
    rows, reason = _one_reason([_progress_row(i) for i in job.items])
    return MessageView(
        title=title,
        tone=tone,
        rows=rows,
        lines=reason + _readings(job),
        actions=actions.while_running(job),
        link=job_link(job, options),
    )


def _one_reason(rows: Sequence[Row]) -> tuple[tuple[Row, ...], tuple[str, ...]]:
    """Rows of images that all stopped for one reason (a cancelled job of eleven) say it
    once, under them, not once per image."""
    stopped = [row for row in rows if row.tone is Tone.FAILURE]
    reasons = {row.detail for row in stopped}
    if len(stopped) < 2 or len(reasons) != 1 or None in reasons:
        return tuple(rows), ()
    (reason,) = reasons
    assert reason is not None
    bare = tuple(replace(row, detail=None) if row.tone is Tone.FAILURE else row for row in rows)
    return bare, (reason,)


def together(jobs: Sequence[Job]) -> MessageView:
    """The live message jobs asked together in one chat share (:mod:`bot.gathering`): a row
    per job (its id, its images, its state), while each job's answer is a reply of its own."""
    images = sum(len(job.items) for job in jobs)
    if all(job.finished for job in jobs):
        ok = sum(1 for job in jobs for i in job.items if i.status.ok)
        title = _("{count} jobs finished: {ok} of {total} images ready").format(
            count=len(jobs), ok=ok, total=images
        )
        tone = Tone.SUCCESS if ok == images else Tone.FAILURE
        lines: tuple[str, ...] = (_("Each answer is a reply to its request."),)
    else:
        title = _("{count} jobs: mirroring {images}").format(
            count=len(jobs), images=_images(images)
        )
        tone, lines = Tone.WORKING, ()
    rows = tuple(_job_row(job) for job in jobs)
    buttons = tuple(a for job in jobs for a in actions.while_running(job, shared=True))
    return MessageView(title, tone, rows, lines, actions=buttons)


def _job_row(job: Job) -> Row:
    """One job of a shared live message: its state (while it runs, its busiest image's
    stage) and its images, with one bar for the bytes they move."""
    label = _("Job {job}").format(job=job.id)
    if job.finished:
        return Row(label, _job_state(job), _job_tone(job), _images_named(job))
    snaps = [i.progress for i in job.items if i.progress is not None and not i.status.finished]
    moving = [s for s in snaps if s.stage in (Stage.COPYING, Stage.PUSHING)]
    if moving:
        state = _(_STAGE_WORDS[moving[0].stage])
        totals = [s.total for s in moving]
        total = sum(t for t in totals if t is not None) if None not in totals else None
        speed = sum(s.bytes_per_second or 0.0 for s in moving) or None
        eta = max((s.eta_seconds for s in moving if s.eta_seconds is not None), default=None)
        bar = Bar(sum(s.done for s in moving), total, speed, eta)
        return Row(label, state, Tone.WORKING, _images_named(job), bar)
    if any(s.stage is Stage.RESOLVING for s in snaps):
        return Row(label, _(_STAGE_WORDS[Stage.RESOLVING]), Tone.WORKING, _images_named(job))
    return Row(label, _job_state(job), Tone.WORKING, _images_named(job))


def _readings(job: Job) -> tuple[str, ...]:
    """Why a watch started it, and how pasted text was read (``read
    `https://hub.docker.com/_/nginx` as `nginx:latest```)."""
    origin = (localize(job.origin),) if job.origin else ()
    return origin + tuple(
        read_as(i.corrected_from, i.spec) for i in job.items if i.corrected_from is not None
    )


def read_as(typed: str, reference: str) -> str:
    """How a pasted text was read (``read `https://hub.docker.com/_/nginx` as `nginx```)."""
    return _("read {typed} as {reference}").format(typed=quote(typed), reference=quote(reference))


def _result_detail(item: Item) -> str:
    parts = [f"{item.target.name}:{item.target.tag}"]
    if item.target_digest:
        parts.append(item.target_digest)
    if item.bytes is not None:
        parts.append(human_bytes(item.bytes))
    if item.seconds is not None:
        parts.append(duration(item.seconds))
    if item.engine:
        parts.append(_("{engine} engine").format(engine=item.engine))
    parts.append(localize(item.artifact.noun) if item.artifact else platform_text(item.platform))
    line = " · ".join(parts)
    if item.digest_identical:
        along = localize(along_text(item.referrers))
        return line + " · " + _("digest identical to the source") + (f" · {along}" if along else "")
    return line + " · " + _("digest differs from the source")


DIGEST_NOTE = N_(
    "The digest differs because the Docker daemon rebuilt the manifest, so signatures and "
    "SBOMs made for the source do not apply to it; for an exact copy that brings them, "
    "use --platform all or MIRROR_ENGINE=registry."
)
"""Why a daemon's copy has another digest: said once per chat (:func:`needs_digest_note`)."""


def needs_digest_note(job: Job) -> bool:
    """Whether the answer has a copy whose digest differs, which :data:`DIGEST_NOTE` explains."""
    return any(i.status.ok and i.artifact is None and not i.digest_identical for i in job.items)


@dataclass
class _Answer:
    """The final answer's parts, gathered image by image."""

    rows: list[Row]
    code: list[str]
    logins: list[str]
    notes: list[str]

    def add(self, item: Item, options: RenderOptions) -> None:
        state = _state(_STATE_WORDS[item.status])
        if not item.status.ok:
            tone = _TONES.get(item.status, Tone.FAILURE)
            self.rows.append(Row(item.source.familiar, state, tone, localize(item.error)))
            self.code.extend(suggestion_commands(item))
            return
        self.rows.append(Row(item.source.familiar, state, Tone.SUCCESS, _result_detail(item)))
        self.code.extend(commands(item, options))
        self.notes.extend(localize(note) for note in item.notes)
        registry = item.target.registry
        if registry in options.login_registries and registry not in self.logins:
            self.logins.append(registry)


def _answer_title(job: Job) -> tuple[str, Tone]:
    ok = sum(1 for i in job.items if i.status.ok)
    if ok == len(job.items):
        title = _("Job {job} done: {images} ready").format(job=job.id, images=_images(ok))
        return title, Tone.SUCCESS
    if ok:
        title = _("Job {job}: {ok} of {total} images ready").format(
            job=job.id, ok=ok, total=len(job.items)
        )
        return title, Tone.FAILURE
    title = _("Job {job} {state}: nothing was mirrored").format(job=job.id, state=_job_state(job))
    return title, Tone.FAILURE


def answer(
    job: Job,
    options: RenderOptions,
    *,
    notify: bool = False,
    rewrite: Sequence[str] = (),
    digest_note: bool = True,
) -> MessageView:
    """The final message: per image where it went, and the commands to paste (then
    ``rewrite``: how to point pasted manifests at the mirror, ``bot.rewrite``).

    ``digest_note``: say why a copy's digest differs (:data:`DIGEST_NOTE`); the follower says
    it once per chat, since every answer through the daemon would repeat it."""
    parts = _Answer([], [], [], [])
    for item in job.items:
        parts.add(item, options)
    rows, reason = _one_reason(parts.rows)
    lines = reason + (_readings(job)[:1] if job.origin else ()) + tuple(parts.notes)
    if digest_note and needs_digest_note(job):
        lines += (_(DIGEST_NOTE),)
    lines += tuple(
        _("The target is private: run `docker login {registry}` before pulling.").format(registry=r)
        for r in parts.logins
    )
    title, tone = _answer_title(job)
    return MessageView(
        title,
        tone,
        rows,
        lines,
        (*parts.code, *rewrite),
        notify=notify,
        actions=actions.when_finished(job),
        link=job_link(job, options),
    )


def suggestion_commands(item: Item) -> list[str]:
    """One ``/mirror`` line per suggestion, best first, ready to paste instead of a miss."""
    return [f"/mirror {parse_reference(ref).familiar}" for ref in item.suggestions]


def bulk_plan(
    items: Sequence[Item], sizes: Sequence[int | None], limit: int, action: Action, *, admin: bool
) -> MessageView:
    """More images than MIRROR_MAX_IMAGES: what copying them all would move, and who may
    say yes."""
    rows = tuple(
        Row(item.source.familiar, human_bytes(size) if size is not None else _("size unknown"))
        for item, size in zip(items, sizes, strict=True)
    )
    known = [size for size in sizes if size is not None]
    unknown = len(sizes) - len(known)
    if unknown:
        total = ngettext(
            "In all {size}, and {count} image whose size I could not tell.",
            "In all {size}, and {count} images whose size I could not tell.",
            unknown,
        ).format(size=human_bytes(sum(known)), count=unknown)
    else:
        total = _("In all {size}.").format(size=human_bytes(sum(known)))
    who = (
        _("Press the button to copy them all.")
        if admin
        else _("An admin may confirm it with the button below.")
    )
    return MessageView(
        _("That is {count} images, more than the {limit} one command may copy.").format(
            count=len(items), limit=limit
        ),
        Tone.INFO,
        rows,
        (total, who),
        actions=(action,),
    )


def confirmed(job: Job, items: Sequence[Item]) -> MessageView:
    """The answer to "Copy 3.2 GB": what is copied now, in the job's thread."""
    sizes = [i.bytes for i in items if i.bytes is not None]
    what = quote(items[0].source.familiar) if len(items) == 1 else _images(len(items))
    if sizes:
        return info(
            _("Job {job}: copying {what} ({size}).").format(
                job=job.id, what=what, size=human_bytes(sum(sizes))
            )
        )
    return info(_("Job {job}: copying {what}.").format(job=job.id, what=what))


def error(sentence: str) -> MessageView:
    """A refusal or failure; ``sentence`` may come from ``mirror/`` (a ``Text``)."""
    return MessageView(localize(sentence), Tone.FAILURE)


def refusal(exc: MirrorError, usage: str) -> MessageView:
    """A command stopped by ``exc``'s sentence, shown as its class says: a question
    (``question``, e.g. :class:`bot.paste.Ambiguous`) is no failure, and a malformed command
    (``with_usage``, :class:`bot.commands.UsageError`) is answered with the ``usage`` line."""
    tone = Tone.INFO if getattr(exc, "question", False) else Tone.FAILURE
    footer = _("Usage: {usage}").format(usage=usage) if getattr(exc, "with_usage", False) else None
    return MessageView(localize(text_of(exc)), tone, footer=footer)


def info(sentence: str) -> MessageView:
    return MessageView(localize(sentence), Tone.INFO)


def help_text(commands: Iterable[Command[Any]]) -> MessageView:
    """Every command's usage and summary (and details), then examples to paste."""
    lines: list[str] = []
    examples: list[str] = []
    for entry in commands:
        lines.append(f"{entry.usage} — {_(entry.summary)}")
        if entry.details:
            lines.append(_(entry.details))
        examples.extend(entry.examples)
    return MessageView(
        _("hub-mirror-bot copies images into a registry your team can reach."),
        Tone.INFO,
        lines=tuple(lines),
        code=tuple(examples),
    )


def _job_tone(job: Job) -> Tone:
    if not job.finished:
        return Tone.WORKING
    if job.state == "pruned":
        return Tone.INFO
    return Tone.SUCCESS if job.state == "done" else Tone.FAILURE


def _ago(created: float) -> str:
    return ago(time.time() - created)


def pulls_left(limit: PullLimit) -> str:
    """``37 of 100 pulls left``, as the source's ``RateLimit-*`` headers said."""
    if limit.remaining is None:
        count = limit.limit or 0
        return ngettext("a limit of {count} pull", "a limit of {count} pulls", count).format(
            count=count
        )
    if limit.limit is None:
        return _("{remaining} pulls left").format(remaining=limit.remaining)
    return _("{remaining} of {limit} pulls left").format(
        remaining=limit.remaining, limit=limit.limit
    )


def pull_limit_text(registry: str, limit: PullLimit) -> str:
    """``docker.io: 37 of 100 pulls left (as of 2m ago)``."""
    return _("{registry}: {left} (as of {ago})").format(
        registry=registry, left=pulls_left(limit), ago=_ago(limit.seen_at.timestamp())
    )


def _images_named(job: Job) -> str:
    """``a, b, c and 2 more`` (``a、b、c和另外 2 个``): the first images of a job."""
    names = [i.source.familiar for i in job.items[:3]]
    if len(job.items) > 3:
        names.append(_("{count} more").format(count=len(job.items) - 3))
    return join(names)


def status_list(jobs: Sequence[Job], limits: Mapping[str, PullLimit] | None = None) -> MessageView:
    """The chat's latest jobs, and the pull limits sources reported (``RateLimit-*``)."""
    lines = tuple(pull_limit_text(r, limit) for r, limit in sorted((limits or {}).items()))
    if not jobs:
        empty = info(_("No jobs in this chat yet; start one with /mirror IMAGE."))
        return replace(empty, lines=lines)
    rows = tuple(
        Row(
            job.id,
            _job_state(job),
            _job_tone(job),
            _images_named(job) + f" · {_ago(job.created)}",
        )
        for job in jobs
    )
    return MessageView(_("Latest jobs in this chat"), Tone.INFO, rows, lines)


def history(items: Sequence[Item]) -> MessageView:
    if not items:
        return info(_("Nothing mirrored from this chat yet."))
    rows = tuple(
        Row(
            item.source.familiar,
            f"{item.target.name}:{item.target.tag}",
            Tone.SUCCESS,
            item.target_digest,
        )
        for item in items
    )
    return MessageView(_("Mirrored from this chat"), Tone.INFO, rows)


# -- /tags and /inspect -------------------------------------------------------------------------

TAGS_SHOWN = 30
"""Tags listed in one answer; the rest are counted, and a filter narrows them."""


def _date(when: datetime) -> str:
    """``2024-01-01 (3 days ago)``: a date far back reads in days, not hours."""
    return _("{date} ({ago})").format(date=f"{when:%Y-%m-%d}", ago=_ago(when.timestamp()))


def tag_list(found: TagList, pattern: str | None) -> MessageView:
    """``/tags IMAGE [FILTER]``: newest first, the first few with their creation date."""
    repository = ImageRef(found.ref.registry, found.ref.repository, None, None).familiar
    shown = quote(repository)
    if not found.tags:
        if found.total and pattern:
            return info(
                ngettext(
                    "{repository} has {count} tag, none matching {pattern}.",
                    "{repository} has {count} tags, none matching {pattern}.",
                    found.total,
                ).format(repository=shown, count=found.total, pattern=quote(pattern))
            )
        if found.total:
            return info(
                ngettext(
                    "{repository} has {count} tag, none.",
                    "{repository} has {count} tags, none.",
                    found.total,
                ).format(repository=shown, count=found.total)
            )
        return info(_("{repository} has no tags.").format(repository=shown))
    lines = tuple(
        _("{tag} · created {date}").format(tag=quote(tag), date=_date(found.created[tag]))
        if tag in found.created
        else quote(tag)
        for tag in found.tags[:TAGS_SHOWN]
    )
    rest = len(found.tags) - TAGS_SHOWN
    footer = (
        _("and {count} more; narrow them with `/tags {repository} FILTER`.").format(
            count=rest, repository=repository
        )
        if rest > 0
        else None
    )
    if pattern:
        title = _("Tags of {repository} matching {pattern}, newest first ({count})").format(
            repository=shown, pattern=quote(pattern), count=len(found.tags)
        )
    else:
        title = _("Tags of {repository}, newest first ({count})").format(
            repository=shown, count=len(found.tags)
        )
    return MessageView(title, Tone.INFO, lines=lines, footer=footer)


def inspection(seen: Inspection, copies: Sequence[tuple[Item, float]] = ()) -> MessageView:
    """``/inspect IMAGE``: what the source is now, and what this bot made of it."""
    lines = [_("digest {digest}").format(digest=seen.digest)]
    if seen.created is not None:
        lines.append(_("created {date}").format(date=_date(seen.created)))
    rows = tuple(Row(p.platform, human_bytes(p.bytes), Tone.INFO, p.digest) for p in seen.platforms)
    if not copies:
        lines.append(_("Not mirrored here yet."))
    for item, since in copies:
        lines.append(
            _("Mirrored here since {ago} as {target} ({platform}).").format(
                ago=_ago(since),
                target=quote(f"{item.target.name}:{item.target.tag}"),
                platform=platform_text(item.platform),
            )
        )
        current = seen.digest_for(None if item.platform is None else str(item.platform))
        if current is None or item.source_digest is None:
            continue
        if current == item.source_digest:
            lines.append(_("Upstream has not moved since the last copy."))
        else:
            lines.append(
                _(
                    "Upstream moved since the last copy (it was {digest}…); "
                    "send `/mirror {image}` to update the mirror."
                ).format(digest=item.source_digest[:19], image=seen.ref.familiar)
            )
    return MessageView(quote(seen.ref.familiar), Tone.INFO, rows, tuple(lines))


# -- watches ------------------------------------------------------------------------------------


def watch_started(watch: Watch, interval: float) -> MessageView:
    if watch.is_filter:
        title = _("Watch {watch}: new tags matching {image}")
    else:
        title = _("Watch {watch}: changes of {image}")
    return MessageView(
        title.format(watch=watch.id, image=quote(watch.shown)),
        Tone.INFO,
        lines=(
            _(
                "Mirroring it now, then checking upstream every {interval}; "
                "changes are posted here. `/unwatch {watch}` stops it."
            ).format(interval=duration(interval), watch=watch.id),
        ),
    )


def watch_fired(watch: Watch, tags: Sequence[str]) -> Text | None:
    """The line a job started by a watch carries (rendered again in each asker's language);
    none for its first copy, which the watch's announcement right above already tells of."""
    if watch.last_check is None:
        return None
    if watch.is_filter:
        names = ", ".join(quote(f"{watch.image.familiar}:{t}") for t in tags)
        return Text(
            "Watch {watch}: new tag upstream matching {pattern}: {names}.",
            watch=watch.id,
            pattern=quote(watch.pattern),
            names=names,
        )
    return Text(
        "Watch {watch}: {image} moved upstream; mirroring it again.",
        watch=watch.id,
        image=quote(watch.shown),
    )


def _watch_detail(watch: Watch) -> str:
    parts = []
    if watch.last_check is None:
        parts.append(_("not checked yet"))
    else:
        parts.append(_("checked {ago}").format(ago=_ago(watch.last_check)))
    if watch.is_filter:
        parts.append(
            ngettext("{count} matching tag", "{count} matching tags", len(watch.digests)).format(
                count=len(watch.digests)
            )
        )
    else:
        digest = watch.digests.get(watch.pattern)
        if digest:
            parts.append(digest)
    if watch.error:
        parts.append(localize(watch.error))
    return " · ".join(parts)


def watches(found: Sequence[Watch]) -> MessageView:
    if not found:
        return info(_("No watches in this chat; start one with /watch IMAGE."))
    rows = tuple(
        Row(watch.id, watch.shown, Tone.FAILURE if watch.error else Tone.INFO, _watch_detail(watch))
        for watch in found
    )
    return MessageView(_("Watches in this chat"), Tone.INFO, rows)


# -- pasted pull errors (issue 27) ------------------------------------------------------------


def read_not_copied(origin: str, advice: Sequence[str]) -> MessageView:
    """A paste of pull failures none of which a copy fixes (a certificate the puller does not
    trust, a chart with no image): what was read, and what to do instead."""
    return MessageView(
        _("Nothing to copy"),
        Tone.INFO,
        lines=(localize(origin), *(localize(line) for line in advice)),
    )


def platforms_of(seen: Inspection) -> str:
    """``nginx:1.25 has linux/amd64 (67.2 MB), linux/arm64 (64.1 MB).``"""
    has = ", ".join(f"{p.platform} ({human_bytes(p.bytes)})" for p in seen.platforms)
    if not has:
        return _("{image} lists no platforms.").format(image=quote(seen.ref.familiar))
    return _("{image} has {platforms}.").format(image=quote(seen.ref.familiar), platforms=has)


def more_about_errors(
    seen: Sequence[Inspection], advice: Sequence[str], buttons: Sequence[Action]
) -> MessageView | None:
    """After a pasted pull error's job started: the platforms each image missing one has, and
    where a distrusted certificate's CA goes; None when there is nothing to add."""
    lines = (*(platforms_of(found) for found in seen), *(localize(line) for line in advice))
    if not lines:
        return None
    return MessageView(_("About the pull error"), Tone.INFO, lines=lines, actions=tuple(buttons))
