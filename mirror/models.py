"""Jobs and their items: what was asked, and what became of each image."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum

from mirror.platform import Platform
from mirror.progress import Snapshot
from mirror.reference import ImageRef


class ItemStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    ALREADY_MIRRORED = "already_mirrored"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (ItemStatus.QUEUED, ItemStatus.RUNNING)

    @property
    def ok(self) -> bool:
        return self in (ItemStatus.SUCCEEDED, ItemStatus.ALREADY_MIRRORED)


def platform_text(platform: Platform | None) -> str:
    """How a platform choice is stored and shown: ``linux/arm64`` or ``all``."""
    return "all" if platform is None else str(platform)


@dataclass
class Item:
    """One image of a job. ``progress`` is live-only and never stored."""

    spec: str
    source: ImageRef
    target: ImageRef
    platform: Platform | None
    status: ItemStatus = ItemStatus.QUEUED
    engine: str | None = None
    source_digest: str | None = None
    target_digest: str | None = None
    bytes: int | None = None
    seconds: float | None = None
    error: str | None = None
    progress: Snapshot | None = field(default=None, compare=False)

    @property
    def digest_identical(self) -> bool:
        return self.source_digest is not None and self.source_digest == self.target_digest


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

    @property
    def finished(self) -> bool:
        return all(item.status.finished for item in self.items)

    @property
    def state(self) -> str:
        if not self.finished:
            running = any(item.status is ItemStatus.RUNNING for item in self.items)
            return "running" if running else "queued"
        if all(item.status.ok for item in self.items):
            return "done"
        if any(item.status is ItemStatus.CANCELLED for item in self.items):
            return "cancelled"
        return "failed"
