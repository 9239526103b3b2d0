"""Jobs and their items: what was asked, and what became of each image."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum

from mirror.artifacts import ArtifactKind, Referrer
from mirror.platform import Platform
from mirror.progress import Snapshot
from mirror.reference import ImageRef


class ItemStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    """A source's pull limit stopped it; it runs again by itself at ``not_before``."""
    AWAITING = "awaiting"
    """Measured over MIRROR_CONFIRM_BYTES: waits for its requester to say copy or cancel."""
    AWAITING_APPROVAL = "awaiting_approval"
    """Held: its source needs an admin's approval (MIRROR_APPROVAL) before anything reaches it."""
    DENIED = "denied"
    """An admin refused the held request (``approved_by`` says who)."""
    REFUSED = "refused"
    """The policy refused the request before anything ran (stored for the audit)."""
    SUCCEEDED = "succeeded"
    ALREADY_MIRRORED = "already_mirrored"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"
    """Copied, then deleted at the target by retention (``mirror-bot prune``): the store no
    longer counts it as mirrored, so a later request copies it again."""

    @property
    def finished(self) -> bool:
        return self not in UNFINISHED

    @property
    def ok(self) -> bool:
        return self in (ItemStatus.SUCCEEDED, ItemStatus.ALREADY_MIRRORED)


UNFINISHED = frozenset(
    {
        ItemStatus.QUEUED,
        ItemStatus.RUNNING,
        ItemStatus.WAITING,
        ItemStatus.AWAITING,
        ItemStatus.AWAITING_APPROVAL,
    }
)
"""What a restart resumes."""


def platform_text(platform: Platform | None) -> str:
    """How a platform choice is stored and shown: ``linux/arm64`` or ``all``."""
    return "all" if platform is None else str(platform)


@dataclass(frozen=True)
class Outcome:
    """What one copy came to: the one result type of a copy.

    An engine returns it (``SUCCEEDED``, or ``ALREADY_MIRRORED`` when the target held exactly
    this image); the job service adds ``seconds`` and turns errors into ``FAILED`` ones, and
    every job that coalesced onto the copy applies the same outcome to its item.
    """

    status: ItemStatus
    engine: str | None = None
    source_digest: str | None = None
    target_digest: str | None = None
    bytes: int | None = None
    """Compressed blob bytes (layers and configs), for every engine."""
    seconds: float | None = None
    error: str | None = None
    referrers: tuple[Referrer, ...] = ()
    """Signatures, SBOMs and attestations that came along (exact copies only)."""
    artifact: ArtifactKind | None = None
    """What was copied when it is not a runnable image (a Helm chart, ...)."""
    suggestions: tuple[str, ...] = ()
    """Full references to mirror instead, best first, when the source was a miss."""
    not_before: float | None = None
    """When a pull limit lifts (``time.time()`` seconds): a ``WAITING`` outcome runs again
    then; a ``FAILED`` one says when trying again makes sense."""

    @property
    def digest_identical(self) -> bool:
        return self.source_digest is not None and self.source_digest == self.target_digest


@dataclass
class Item:
    """One image of a job. ``progress`` is live-only and never stored.

    The outcome's fields are kept flat here rather than as an ``Outcome`` field: an item is
    stored as one row and rendered field by field, and a queued item has no outcome yet.
    ``apply`` is the one place they are copied.
    """

    spec: str
    source: ImageRef
    target: ImageRef
    platform: Platform | None
    status: ItemStatus = ItemStatus.QUEUED
    engine: str | None = None
    source_digest: str | None = None
    target_digest: str | None = None
    bytes: int | None = None
    """Once finished, what was copied; before, the size measured at the confirmation gate:
    set on an unfinished item means its requester was asked (``AWAITING``) or agreed."""
    seconds: float | None = None
    error: str | None = None
    referrers: tuple[Referrer, ...] = ()
    artifact: ArtifactKind | None = None
    not_before: float | None = None
    """``time.time()`` before which trying again is useless (a pull limit); see Outcome."""
    approved_by: str | None = None
    """``platform:id`` (or ``cli:user``) of the admin who decided a held request: approved
    it, or for a ``DENIED`` item refused it; None when nobody had to."""
    corrected_from: str | None = None
    """The text as typed when it was read as something else (a URL, a pull line); not stored."""
    suggestions: tuple[str, ...] = ()
    """What to mirror instead of a miss, full references best first; not stored (the error
    sentence, which is, names them)."""
    notes: tuple[str, ...] = ()
    """Sentences said once with this item's answer (a public repository); not stored."""
    progress: Snapshot | None = field(default=None, compare=False)

    @property
    def digest_identical(self) -> bool:
        return self.source_digest is not None and self.source_digest == self.target_digest

    def apply(self, outcome: Outcome) -> None:
        self.status = outcome.status
        self.engine = outcome.engine
        self.source_digest = outcome.source_digest
        self.target_digest = outcome.target_digest
        self.bytes = outcome.bytes
        self.seconds = outcome.seconds
        self.error = outcome.error
        self.referrers = outcome.referrers
        self.artifact = outcome.artifact
        self.suggestions = outcome.suggestions
        self.not_before = outcome.not_before
        self.progress = None


def new_job_id() -> str:
    """Short enough to type in ``/cancel``; random so ids do not leak job counts."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(6))


@dataclass
class Job:
    id: str
    requester: str
    """``platform:user`` (``slack:U123``), matching the policy's ids."""
    chat: str
    """``platform:chat`` where the answer goes; ``/status`` and ``/history`` are per chat."""
    items: list[Item]
    created: float = field(default_factory=time.time)
    reply_ref: str | None = None
    """``adapter:opaque`` handle of the progress message, to resume it after a restart."""
    origin: str | None = field(default=None, compare=False)
    """Why the job exists when nobody typed it (a watch saw a change); shown, not stored."""
    confirmed: bool = False
    """An admin agreed to every image's size before it started (a bulk plan's "Copy all",
    which listed them): the confirmation gate asks about none of them, now or after a
    restart."""

    @property
    def finished(self) -> bool:
        return all(item.status.finished for item in self.items)

    @property
    def state(self) -> str:
        statuses = {item.status for item in self.items}
        if not self.finished:
            if ItemStatus.RUNNING in statuses:
                return "running"
            if ItemStatus.AWAITING in statuses:  # a person's answer first: nothing moves till then
                return "awaiting confirmation"
            if ItemStatus.AWAITING_APPROVAL in statuses and ItemStatus.QUEUED not in statuses:
                return "awaiting approval"
            return "waiting" if ItemStatus.WAITING in statuses else "queued"
        if all(item.status.ok for item in self.items):
            return "done"
        if all(item.status.ok or item.status is ItemStatus.PRUNED for item in self.items):
            return "pruned"  # copied, and later deleted at the target by retention
        if ItemStatus.CANCELLED in statuses:
            return "cancelled"
        if statuses == {ItemStatus.REFUSED}:
            return "refused"
        if ItemStatus.DENIED in statuses and not any(item.status.ok for item in self.items):
            return "denied"
        return "failed"


@dataclass(frozen=True)
class StoredAction:
    """What a button does, kept server-side: the request ``command`` as ``owner`` would type it
    in ``chat``. ``used`` is when it was pressed to effect (a button acts once)."""

    id: str
    owner: str
    chat: str
    command: str
    created: float = field(default_factory=time.time)
    used: float | None = None


def is_tag_filter(pattern: str) -> bool:
    """``1.27.*``, ``~1.27``, ``^1.2``: a watch that follows new tags, not one tag."""
    return any(ch in pattern for ch in "*?[~^")


@dataclass
class Watch:
    """An image (or a tag filter) checked upstream on a schedule, mirrored when it moves.

    ``image`` is the source without the watched part; ``pattern`` is one tag (``latest``) or a
    filter (``1.27.*``, ``~1.27``). ``digests`` holds what the last check found: tag ->
    digest for a tag watch, tag -> ``""`` for every matching tag of a filter watch (new tags
    are what it follows). Empty until the first check, which mirrors now.
    """

    id: str
    requester: str
    chat: str
    image: ImageRef
    pattern: str
    platform: Platform | None
    created: float = field(default_factory=time.time)
    reply_ref: str | None = None
    """``adapter:opaque`` handle of the message that announced the watch: its thread hears
    of every change."""
    next_check: float = 0.0
    last_check: float | None = None
    digests: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    """Why the last check could not see upstream (one sentence), or None."""
    held: bool = False
    """Its source needs an admin's approval first (MIRROR_APPROVAL): nothing checks it until
    then. A watch is approved once, when it is made; its later copies need no approval."""
    approved_by: str | None = None
    """Who approved it (``platform:id``), or None when nobody had to."""

    @property
    def is_filter(self) -> bool:
        return is_tag_filter(self.pattern)

    @property
    def shown(self) -> str:
        """``nginx:1.27.*`` as people wrote it."""
        return f"{self.image.familiar}:{self.pattern}"

    def ref_for(self, tag: str) -> ImageRef:
        return ImageRef(self.image.registry, self.image.repository, tag, None)


@dataclass(frozen=True)
class Decision:
    """An admin's answer to a held request (a job's images, or a watch), as written by whoever
    took it (a chat command, ``mirror-bot approve``) and applied by the running bot, which
    alone holds the request and tells its requester (``bot.approvals``).

    ``request`` is a job's or a watch's id; ``idx`` one image of a job (0-based) or None for
    every held one."""

    id: str
    request: str
    idx: int | None
    approve: bool
    decided_by: str
    reason: str | None = None
    created: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ApprovedSource:
    """A source repository an admin approved for good ("Approve this repository always"):
    requests for it pass without asking, besides MIRROR_ALLOWED_SOURCES."""

    repository: str
    """``registry/path`` without tag or digest (``ghcr.io/org/app``)."""
    added_by: str
    added: float = field(default_factory=time.time)
