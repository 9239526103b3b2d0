"""The audit row: one per image request, in one shape for every reader.

``mirror-bot audit`` prints these rows (JSON, CSV, a table); a webhook sends one per finished
image. :class:`AuditRow` is that shape, and :meth:`AuditRow.as_json` its JSON, documented in
``docs/operating.md``; nothing else spells the columns.

Every image a chat or a script asked for is a row, including what was never copied: a request
the policy refused is stored before the refusal is said (``refused``), a held one is
``awaiting_approval`` until an admin answers (``denied`` when they refuse). A job's item
status maps onto the few audit statuses below (``already_mirrored`` is ``succeeded``: the
target holds the copy; queued, running, and waiting for a pull limit or a size confirmation
are ``waiting``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from mirror.models import Item, ItemStatus, Job


class AuditStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    """The policy said no before anything ran (a source, a rate, a name conflict)."""
    DENIED = "denied"
    """An admin refused the held request."""
    AWAITING_APPROVAL = "awaiting_approval"
    CANCELLED = "cancelled"
    """Cancelled by someone, or held until nobody answered in time."""
    WAITING = "waiting"
    """Not finished: queued, copying, waiting for a pull limit or a size confirmation."""
    PRUNED = "pruned"
    """Copied, then deleted at the target by ``mirror-bot prune`` (retention)."""


_STATUS = {
    ItemStatus.SUCCEEDED: AuditStatus.SUCCEEDED,
    ItemStatus.ALREADY_MIRRORED: AuditStatus.SUCCEEDED,
    ItemStatus.FAILED: AuditStatus.FAILED,
    ItemStatus.REFUSED: AuditStatus.REFUSED,
    ItemStatus.DENIED: AuditStatus.DENIED,
    ItemStatus.AWAITING_APPROVAL: AuditStatus.AWAITING_APPROVAL,
    ItemStatus.CANCELLED: AuditStatus.CANCELLED,
    ItemStatus.QUEUED: AuditStatus.WAITING,
    ItemStatus.RUNNING: AuditStatus.WAITING,
    ItemStatus.WAITING: AuditStatus.WAITING,
    ItemStatus.AWAITING: AuditStatus.WAITING,
    ItemStatus.PRUNED: AuditStatus.PRUNED,
}


def iso(seconds: float) -> str:
    """``2026-05-04T12:00:05Z``: UTC, to the second."""
    when = datetime.fromtimestamp(seconds, UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AuditRow:
    """One image request: who asked for what, where, and what became of it."""

    time: str
    """When it was asked, UTC (``2026-05-04T12:00:05Z``)."""
    job: str
    requester: str
    """``platform:id`` (``slack:U123``, ``console:alice``, ``cli:alice`` for a script)."""
    chat: str
    """``platform:chat_id`` it was asked in."""
    source: str
    """The normalized source reference (``docker.io/library/nginx:1.25``)."""
    source_digest: str | None
    target: str
    """``registry/namespace/name:tag`` it was (or would be) copied to."""
    target_digest: str | None
    bytes: int | None
    """Compressed bytes the copy moved (None until it did)."""
    status: AuditStatus
    approved_by: str | None
    """The admin who answered a held request (approved it; for ``denied``, refused it)."""
    engine: str | None

    @classmethod
    def of(cls, job: Job, item: Item) -> AuditRow:
        return cls(
            time=iso(job.created),
            job=job.id,
            requester=job.requester,
            chat=job.chat,
            source=str(item.source),
            source_digest=item.source_digest,
            target=f"{item.target.name}:{item.target.tag}",
            target_digest=item.target_digest,
            bytes=item.bytes if item.status.finished else None,
            status=_STATUS[item.status],
            approved_by=item.approved_by,
            engine=item.engine,
        )

    def as_json(self) -> dict[str, Any]:
        """The row as a JSON object, its keys in :data:`COLUMNS` order."""
        return {name: getattr(self, name) for name in COLUMNS}


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(AuditRow))
"""The columns, in order: CSV headers and table columns too."""


def rows(jobs: Iterable[Job]) -> list[AuditRow]:
    """Every image of ``jobs``, in the jobs' order and each job's image order."""
    return [AuditRow.of(job, item) for job in jobs for item in job.items]
