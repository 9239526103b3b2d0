"""The operator's view's throughput chart: the last day by hour, drawn as an inline SVG by the
server (no script, no third-party asset), from the images that ended in each hour."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mirror.models import ItemStatus

HOUR = 3600.0
HOURS = 24
WIDTH = 480.0
HEIGHT = 120.0
GAP = 2.0


@dataclass(frozen=True)
class Hour:
    """One hour of the day: images copied (or found already there), failed, bytes moved."""

    start: float
    """``time.time()`` at the start of the hour (UTC hours)."""
    images: int
    failed: int
    bytes: int


@dataclass(frozen=True)
class Bar:
    """One hour's bar, in the SVG's own units (``viewBox="0 0 WIDTH HEIGHT"``)."""

    x: float
    y: float
    width: float
    height: float


def hourly(
    finished: Iterable[tuple[float, ItemStatus, int | None]], now: float, hours: int = HOURS
) -> list[Hour]:
    """The ``hours`` clock hours up to the current one, oldest first."""
    first = (now // HOUR - (hours - 1)) * HOUR
    images = [0] * hours
    failed = [0] * hours
    moved = [0] * hours
    for when, status, size in finished:
        slot = int((when - first) // HOUR)
        if not 0 <= slot < hours:
            continue
        if status.ok:
            images[slot] += 1
        if status is ItemStatus.SUCCEEDED:
            moved[slot] += size or 0
        elif status is ItemStatus.FAILED:
            failed[slot] += 1
    return [
        Hour(first + slot * HOUR, images[slot], failed[slot], moved[slot]) for slot in range(hours)
    ]


def bars(hours: Sequence[Hour], width: float = WIDTH, height: float = HEIGHT) -> list[Bar]:
    """A bar per hour, as tall as its bytes against the day's busiest hour (an hour that moved
    nothing has no height); an hour that only found copies already there still counts in the
    numbers, not in the bar."""
    if not hours:
        return []
    most = max(hour.bytes for hour in hours)
    slot = width / len(hours)
    out = []
    for index, hour in enumerate(hours):
        tall = height * hour.bytes / most if most else 0.0
        x = round(index * slot + GAP / 2, 2)
        out.append(Bar(x, round(height - tall, 2), round(slot - GAP, 2), round(tall, 2)))
    return out
