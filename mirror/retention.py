"""Retention (issue 26): delete at the target the copies nobody asked for in a while.

A *copy* is one manifest the bot pushed: a target tag and the digest it pushed there. Its
*last request* is when anybody last asked for it (a copy, or an "already mirrored" answer).
``mirror-bot prune --older-than 30d`` (and, with ``MIRROR_RETENTION``, the bot once a day)
deletes the copies whose last request is older than the window, by digest, as the registry
API deletes manifests (``DELETE /v2/NAME/manifests/DIGEST``), except:

- the current copy of an image somebody pinned (``/pin IMAGE``) or a watch follows: what the
  tag points at now is kept, while the digests the tag moved away from still age out;
- a digest that a copy being kept still tags in the same repository: deleting a manifest by
  digest takes every tag pointing at it along.

Only what the registry deleted is marked ``pruned`` in the store (a 404 means it was gone
already); a registry that refuses deletion (HTTP 405: distribution without
``storage.delete.enabled``, Docker Hub) is one sentence naming it, and nothing of it is marked.
A pruned copy no longer counts as mirrored, so the next request copies it again. A repository
is never deleted (the API cannot), so it still counts against ``MIRROR_TARGET_MAX_REPOS``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from mirror.engines.faults import explain
from mirror.errors import NotFound, Refused, RegistryError, StoreError
from mirror.reference import ImageRef
from mirror.tags import matches
from mirror.text import Text, text_of

if TYPE_CHECKING:
    from mirror.engines.registry.client import RegistryClient
    from mirror.models import Watch
    from mirror.store import Store

log = logging.getLogger(__name__)

DAY = 86400.0
CHORE = "prune"
"""The daily run's name in the store (when it last ran) and its lock."""
CHECK_SECONDS = 3600.0
"""How often a bot looks whether the daily run is due (the store says when it last ran)."""


@dataclass(frozen=True)
class Pin:
    """A source whose current copy retention keeps (``/pin IMAGE``)."""

    source: str
    """The normalized source reference (``docker.io/library/nginx:1.25``)."""
    pinned_by: str
    created: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Copy:
    """One manifest the bot pushed, as the store knows it."""

    target: ImageRef
    """The target tag (``registry/namespace/name:tag``)."""
    digest: str
    source: ImageRef
    last_request: float
    current: bool
    """The newest copy to its tag: what the tag points at, as far as the bot knows."""

    @property
    def repository(self) -> str:
        return self.target.name

    @property
    def shown(self) -> str:
        return f"{self.target.name}:{self.target.tag}@{self.digest}"


class Verdict(StrEnum):
    DELETE = "delete"
    PINNED = "pinned"
    WATCHED = "watched"
    SHARED = "shared"
    """Its digest is also what a kept copy's tag points at, in the same repository."""


@dataclass(frozen=True)
class Step:
    """What prune does with one copy older than the window."""

    copy: Copy
    verdict: Verdict
    shared_with: str | None = None
    """For ``SHARED``: the kept tag that still points at the digest."""


class Outcome(StrEnum):
    DELETED = "deleted"
    PLANNED = "would delete"
    """A dry run."""
    KEPT = "kept"
    FAILED = "failed"


@dataclass(frozen=True)
class Line:
    """One copy in prune's report."""

    step: Step
    outcome: Outcome
    reason: str | None = None
    """Why kept, or why the deletion failed (one sentence)."""


@dataclass
class Report:
    lines: list[Line] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """One sentence per registry that would not delete."""

    @property
    def ok(self) -> bool:
        return not self.refused and all(line.outcome is not Outcome.FAILED for line in self.lines)

    @property
    def deleted(self) -> int:
        return sum(1 for line in self.lines if line.outcome is Outcome.DELETED)


def refused_sentence(registry: str, status: int) -> Text:
    return Text(
        "`{registry}` refuses to delete manifests (HTTP {status}), so nothing was pruned "
        "there; enable deletion in that registry (distribution: storage.delete.enabled) or "
        "delete the copies by hand.",
        registry=registry,
        status=status,
    )


def watched(copy: Copy, watches: Iterable[Watch]) -> bool:
    """A watch follows the copy's source tag: its image, and the tag or a filter matching it."""
    source = copy.source
    if source.tag is None:
        return False
    for watch in watches:
        if watch.image.name != source.name:
            continue
        if watch.pattern == source.tag or (watch.is_filter and matches(watch.pattern, source.tag)):
            return True
    return False


def plan(
    copies: Sequence[Copy], pins: Iterable[Pin], watches: Sequence[Watch], cutoff: float
) -> list[Step]:
    """What to do with every copy last requested before ``cutoff`` (newest request first)."""
    pinned = {pin.source for pin in pins}
    steps: list[Step] = []
    kept: dict[tuple[str, str], str] = {}
    """(repository, digest) -> a tag pointing at it that stays."""
    for copy in copies:
        if not copy.current:
            continue  # an old digest is not what any tag points at
        expired = copy.last_request < cutoff
        if not expired or str(copy.source) in pinned or watched(copy, watches):
            kept.setdefault((copy.repository, copy.digest), f"{copy.target.name}:{copy.target.tag}")
    for copy in sorted(copies, key=lambda c: c.last_request, reverse=True):
        if copy.last_request >= cutoff:
            continue
        if copy.current and str(copy.source) in pinned:
            steps.append(Step(copy, Verdict.PINNED))
        elif copy.current and watched(copy, watches):
            steps.append(Step(copy, Verdict.WATCHED))
        elif (other := kept.get((copy.repository, copy.digest))) is not None:
            steps.append(Step(copy, Verdict.SHARED, other))
        else:
            steps.append(Step(copy, Verdict.DELETE))
    return steps


def kept_reason(step: Step) -> str:
    """Why a copy old enough stays, for the operator's report (``mirror-bot prune``)."""
    if step.verdict is Verdict.PINNED:
        return "pinned"
    if step.verdict is Verdict.WATCHED:
        return "watched"
    return f"its digest is still tagged `{step.shared_with}`"


async def prune(
    store: Store,
    client: RegistryClient,
    older_than: float,
    *,
    dry_run: bool = False,
    now: float | None = None,
) -> Report:
    """Delete the copies last requested more than ``older_than`` seconds ago (see the
    module's docstring); with ``dry_run``, only say which."""
    cutoff = (time.time() if now is None else now) - older_than
    steps = plan(await store.copies_made(), await store.pins(), await store.watches(), cutoff)
    report = Report()
    by_manifest: dict[tuple[str, str, str], list[Step]] = defaultdict(list)
    for step in steps:
        if step.verdict is not Verdict.DELETE:
            report.lines.append(Line(step, Outcome.KEPT, kept_reason(step)))
        elif dry_run:
            report.lines.append(Line(step, Outcome.PLANNED))
        else:
            target = step.copy.target
            by_manifest[(target.registry, target.repository, step.copy.digest)].append(step)
    refusing: set[str] = set()
    for (registry, repository, digest), same in by_manifest.items():
        if registry in refusing:
            continue
        try:
            await client.delete_manifest(registry, repository, digest)
        except NotFound:
            log.info("prune: %s/%s@%s was gone already", registry, repository, digest)
        except Refused as exc:
            if exc.status in (400, 405):  # UNSUPPORTED: deletion is off
                refusing.add(registry)
                report.refused.append(refused_sentence(registry, exc.status))
                continue
            sentence = text_of(explain(exc, same[0].copy.target, pushing=True))
            report.lines.extend(Line(step, Outcome.FAILED, sentence) for step in same)
            continue
        except RegistryError as exc:  # worded by the one fault -> sentence translator
            sentence = text_of(explain(exc, same[0].copy.target, pushing=True))
            report.lines.extend(Line(step, Outcome.FAILED, sentence) for step in same)
            continue
        for step in same:
            await store.mark_pruned(str(step.copy.target), step.copy.digest)
            report.lines.append(Line(step, Outcome.DELETED))
            log.info("prune: deleted %s", step.copy.shown)
    return report


async def prune_if_due(
    store: Store, client: RegistryClient, retention: float, now: float
) -> Report | None:
    """``MIRROR_RETENTION``'s run, when a day has passed since the last one (by whichever
    process: the store remembers), in one place at a time (the store's lock: with PostgreSQL,
    fronts share the database). None when it was not this process's to run."""
    async with store.exclusive(CHORE) as mine:
        if not mine:
            return None
        last = await store.last_run(CHORE)
        if last is not None and now - last < DAY:
            return None
        report = await prune(store, client, retention, now=now)
        await store.ran(CHORE, now)
    for sentence in report.refused:
        log.error("retention: %s", sentence)
    log.info("retention: %d copies older than %.0f days deleted", report.deleted, retention / DAY)
    return report


async def prune_daily(
    store: Store,
    client: RegistryClient,
    retention: float,
    *,
    clock: Callable[[], float] = time.time,
    check_every: float = CHECK_SECONDS,
) -> None:
    """Run :func:`prune_if_due` every ``check_every`` seconds until cancelled."""
    while True:
        try:
            await prune_if_due(store, client, retention, clock())
        except StoreError as exc:  # the next look tries again
            log.warning("retention: the store failed: %s", exc.__cause__ or exc)
        await asyncio.sleep(check_every)
