"""Budgets (issue 26): each person's quota over calendar windows, and the target's room.

``MIRROR_QUOTA`` (``20 images/day, 10GB/week``) is a person's budget: every rule counts over
the calendar window it names, in UTC (a day from midnight, a week from Monday midnight), and
renews when the next window starts. Only copies that moved bytes count. A copy reserves its
image (and its size, when a size rule needs it) when it starts, in the same transaction that
adds up what the person used, so two requests at once cannot both take the last image; the
reservation becomes the copy's use when it lands, and stops counting when it does not.

``MIRROR_TARGET_MAX_REPOS`` is the target's room: repositories are counted from the store
(a registry's API cannot delete a repository, so one the bot ever pushed to stays counted),
and a copy that would make one more than the limit is refused before it starts.

This module holds the rules and the sentences; :meth:`mirror.store.Store.reserve` the
transaction, :class:`mirror.jobs.JobService` when it happens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from mirror.errors import MirrorError
from mirror.text import Text
from mirror.units import human_bytes

Clock = Callable[[], float]
"""``time.time`` unless a test moves it."""


class Window(StrEnum):
    """A calendar window in UTC."""

    DAY = "day"
    WEEK = "week"

    def start(self, now: float) -> float:
        """When the window holding ``now`` began: midnight UTC (Monday's, for a week)."""
        midnight = datetime.fromtimestamp(now, UTC).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        if self is Window.WEEK:
            midnight -= timedelta(days=midnight.weekday())
        return midnight.timestamp()

    def renews(self, now: float) -> float:
        """When the next window begins, and what was used in this one stops counting."""
        days = 7 if self is Window.WEEK else 1
        return (datetime.fromtimestamp(self.start(now), UTC) + timedelta(days=days)).timestamp()


class Measure(StrEnum):
    IMAGES = "images"
    BYTES = "bytes"


@dataclass(frozen=True)
class Rule:
    """``20 images/day`` or ``10GB/week``: at most ``limit`` over each ``window``."""

    limit: int
    measure: Measure
    window: Window

    def __str__(self) -> str:
        if self.measure is Measure.IMAGES:
            noun = "image" if self.limit == 1 else "images"
            return f"{self.limit} {noun}/{self.window.value}"
        return f"{self.amount(self.limit)}/{self.window.value}"

    def amount(self, value: int) -> str:
        """``3`` (images) or ``1.2 GB``, as this rule counts."""
        return str(value) if self.measure is Measure.IMAGES else human_bytes(value)


@dataclass(frozen=True)
class Usage:
    """What one person used in one window: images copied and their bytes, reservations of
    copies still running included."""

    images: int = 0
    bytes: int = 0

    def of(self, measure: Measure) -> int:
        return self.images if measure is Measure.IMAGES else self.bytes


@dataclass(frozen=True)
class Quota:
    """``MIRROR_QUOTA``: every rule must hold."""

    rules: tuple[Rule, ...]

    @property
    def windows(self) -> tuple[Window, ...]:
        return tuple(dict.fromkeys(rule.window for rule in self.rules))

    @property
    def counts_bytes(self) -> bool:
        """Whether a copy's size must be known when it is reserved."""
        return any(rule.measure is Measure.BYTES for rule in self.rules)

    def __str__(self) -> str:
        return ", ".join(str(rule) for rule in self.rules)

    def check(self, used: dict[Window, Usage], images: int, size: int, now: float) -> None:
        """Raise :class:`QuotaExceeded` unless ``images`` more (of ``size`` bytes in all) fit
        every rule, on top of ``used`` (per window)."""
        for rule in self.rules:
            before = used.get(rule.window, Usage()).of(rule.measure)
            adding = images if rule.measure is Measure.IMAGES else size
            if before + adding > rule.limit:
                raise QuotaExceeded(rule, before, rule.window.renews(now))


@dataclass(frozen=True)
class Budget:
    """What a copy must fit before it starts: its requester's quota (admins are exempt, and
    so is whoever ``quota`` is None for: a script), and the target's room."""

    quota: Quota | None = None
    max_repos: int | None = None
    exempt: frozenset[str] = field(default_factory=frozenset)
    """``platform:id`` of the admins."""

    def quota_of(self, person: str) -> Quota | None:
        return None if person in self.exempt else self.quota

    @property
    def active(self) -> bool:
        return self.quota is not None or self.max_repos is not None


@dataclass(frozen=True)
class Reservation:
    """One image's claim on its requester's quota and the target's room, made when its copy
    starts (one per job item)."""

    job_id: str
    idx: int
    person: str
    repository: str
    """The target repository without tag (``registry/namespace/name``)."""
    bytes: int
    """The image's size when known before the copy (0 when not, or when no rule counts it)."""
    created: float


class OverBudget(MirrorError):
    """A copy does not fit: its requester's quota or the target's room is used up."""


class QuotaExceeded(OverBudget):
    """A rule of MIRROR_QUOTA is used up until its window renews."""

    def __init__(self, rule: Rule, used: int, renews: float) -> None:
        self.rule = rule
        self.used = used
        self.renews = renews
        super().__init__(
            Text(
                "You have used {used} of your quota of {rule} (MIRROR_QUOTA); it renews at "
                "{when}, and nothing was copied.",
                used=rule.amount(used),
                rule=str(rule),
                when=renewal(renews),
            )
        )


class CapacityReached(OverBudget):
    """MIRROR_TARGET_MAX_REPOS: one more repository would be past the limit."""

    def __init__(self, repository: str, count: int, limit: int) -> None:
        self.repository = repository
        super().__init__(
            Text(
                "The target already holds {count} repositories, and MIRROR_TARGET_MAX_REPOS "
                "allows {limit}: `{repository}` would be one more, so nothing was copied.",
                count=count,
                limit=limit,
                repository=repository,
            )
        )


def renewal(when: float) -> str:
    """``2026-05-11 00:00 UTC``: a window renews at a midnight after today, so with its date."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M UTC")
