"""The one small protocol every copy engine implements.

The job service only talks to this protocol, so the Docker SDK path and the daemonless
registry path are interchangeable and report progress the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mirror.models import Outcome
from mirror.platform import Platform
from mirror.progress import ProgressEvent
from mirror.reference import ImageRef

ProgressSink = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class CopyRequest:
    """One image to copy. ``platform`` None means every platform (the whole index).

    ``max_bytes`` (MIRROR_MAX_IMAGE_BYTES, compressed blob bytes): the job service refuses
    what ``Engine.measure`` finds too large; an engine that cannot measure before copying
    enforces it during the copy.
    """

    source: ImageRef
    target: ImageRef
    platform: Platform | None
    max_bytes: int | None = None


class Engine(Protocol):
    """A way to copy an image from one registry to another."""

    name: str

    async def ensure_available(self) -> None:
        """Raise EngineUnavailable saying why this engine cannot work now (cheap; for ``auto``)."""
        ...

    async def source_digest(self, request: CopyRequest) -> str:
        """The digest the copy will read; raises MirrorError when the source cannot be read."""
        ...

    async def target_digest(self, target: ImageRef) -> str | None:
        """The digest the target tag holds now, or None when it does not exist."""
        ...

    async def measure(self, request: CopyRequest) -> int | None:
        """Compressed blob bytes the copy would move, asked from where this engine copies
        from; None when that cannot be known before copying (then ``copy`` enforces
        ``max_bytes`` while it moves the bytes)."""
        ...

    async def copy(self, request: CopyRequest, progress: ProgressSink) -> Outcome:
        """Copy; a ``SUCCEEDED`` or ``ALREADY_MIRRORED`` outcome, else raises MirrorError with
        a user-readable sentence (``transient`` only for a whole copy worth redoing)."""
        ...

    async def aclose(self) -> None: ...
