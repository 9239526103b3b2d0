"""Progress events that engines emit, and their aggregation into what a user sees.

Engines only report facts about blobs ("this layer has 3 MiB of 10 MiB", "that one was already
there"); turning those into one bar with speed and ETA happens here, once, for every engine.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Stage(StrEnum):
    QUEUED = "queued"
    RESOLVING = "resolving"
    COPYING = "copying"
    PUSHING = "pushing"


@dataclass(frozen=True)
class StageChanged:
    stage: Stage


@dataclass(frozen=True)
class BlobProgress:
    """Cumulative bytes of one blob in the current stage (not a delta)."""

    blob: str
    done: int
    total: int | None


@dataclass(frozen=True)
class BlobDone:
    """A blob finished, or was already present ("Already exists"): it no longer holds us back."""

    blob: str
    size: int | None = None


ProgressEvent = StageChanged | BlobProgress | BlobDone


@dataclass(frozen=True)
class Snapshot:
    stage: Stage
    done: int
    total: int | None
    blobs_done: int
    blobs_total: int
    bytes_per_second: float | None
    eta_seconds: float | None


@dataclass
class _Blob:
    done: int = 0
    total: int | None = None
    finished: bool = False


@dataclass
class ProgressTracker:
    """Folds events into a :class:`Snapshot`; resets byte counts when the stage changes.

    Speed is measured over a short sliding window so a stall shows up quickly instead of being
    averaged away by the fast start.
    """

    window_seconds: float = 5.0
    clock: Callable[[], float] = field(default=lambda: time.monotonic())
    stage: Stage = Stage.QUEUED
    _blobs: dict[str, _Blob] = field(default_factory=dict)
    _samples: deque[tuple[float, int]] = field(default_factory=deque)

    def feed(self, event: ProgressEvent) -> None:
        if isinstance(event, StageChanged):
            if event.stage != self.stage:
                self.stage = event.stage
                if event.stage in (Stage.COPYING, Stage.PUSHING):
                    self._blobs.clear()
                    self._samples.clear()
            return
        blob = self._blobs.setdefault(event.blob, _Blob())
        if isinstance(event, BlobProgress):
            blob.done = max(blob.done, event.done)
            if event.total:
                blob.total = event.total
        else:
            blob.finished = True
            if event.size is not None:
                blob.total = event.size
            if blob.total is not None:
                blob.done = blob.total
        self._sample()

    @property
    def done(self) -> int:
        return sum(b.done for b in self._blobs.values())

    def _sample(self) -> None:
        now = self.clock()
        self._samples.append((now, self.done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window_seconds:
            self._samples.popleft()

    def snapshot(self) -> Snapshot:
        blobs = self._blobs.values()
        done = self.done
        known = [b.total for b in blobs if b.total is not None]
        total = sum(known) if known else None
        speed: float | None = None
        if len(self._samples) >= 2:
            (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
            if t1 > t0:
                speed = (d1 - d0) / (t1 - t0)
        eta: float | None = None
        if speed and total is not None and total >= done:
            eta = (total - done) / speed
        return Snapshot(
            stage=self.stage,
            done=done,
            total=total,
            blobs_done=sum(1 for b in blobs if b.finished),
            blobs_total=len(self._blobs),
            bytes_per_second=speed,
            eta_seconds=eta,
        )
