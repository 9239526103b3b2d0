"""The one small protocol every copy engine implements.

The job service only talks to this protocol, so the Docker SDK path and the daemonless
registry path are interchangeable and report progress the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mirror.platform import Platform
from mirror.progress import ProgressEvent
from mirror.reference import ImageRef

ProgressSink = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class CopyRequest:
    """One image to copy. ``platform`` None means every platform (the whole index)."""

    source: ImageRef
    target: ImageRef
    platform: Platform | None


@dataclass(frozen=True)
class CopyResult:
    engine: str
    source_digest: str | None
    target_digest: str
    bytes: int
    already_there: bool = False
    """The target already held exactly this image: nothing was copied."""

    @property
    def digest_identical(self) -> bool:
        return self.source_digest is not None and self.source_digest == self.target_digest


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

    async def copy(self, request: CopyRequest, progress: ProgressSink) -> CopyResult:
        """Copy; raises MirrorError with a user-readable sentence on failure."""
        ...

    async def aclose(self) -> None: ...
