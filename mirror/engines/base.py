"""What an engine is: the small protocol every copy engine implements, and how one is built.

The job service only talks to :class:`Engine`, so the Docker SDK path and the daemonless
registry path are interchangeable and report progress the same way. An engine is installed
as an :class:`EnginePlugin` under the entry-point group ``hub_mirror_bot.engines`` (see
:mod:`mirror.engines` and docs/engines.md); its ``build`` gets an :class:`EngineConfig`,
which the bot fills from its settings (``mirror/`` never reads them itself).

``Outcome`` is what a copy comes to. It is defined beside the items it is applied to
(:mod:`mirror.models`, which the store and the queue share) and named here too, so an engine
needs nothing but this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from mirror.artifacts import ArtifactKind
from mirror.credentials import Credentials
from mirror.models import ItemStatus, Outcome
from mirror.platform import Platform
from mirror.progress import ProgressEvent
from mirror.reference import ImageRef

if TYPE_CHECKING:
    from mirror.engines.remote import Remote

__all__ = [
    "DEFAULT_CERTS_DIR",
    "CopyRequest",
    "Engine",
    "EngineConfig",
    "EnginePlugin",
    "Inspector",
    "ItemStatus",
    "Outcome",
    "ProgressSink",
    "ReferrerPolicy",
]

ProgressSink = Callable[[ProgressEvent], None]
"""Hears a copy's progress (:mod:`mirror.progress`) on the event loop, never blocking."""

DEFAULT_CERTS_DIR = Path("/etc/docker/certs.d")
"""Where the docker client looks for a registry's CA and client certificate, as we do."""

ReferrerPolicy = Literal["all", "signatures", "none"]
"""MIRROR_REFERRERS: what comes along with an exact copy."""


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

    async def aclose(self) -> None:
        """Release what the engine holds (not the shared remote: the chooser closes that)."""
        ...


@runtime_checkable
class Inspector(Protocol):
    """An engine that can tell what a source is from its manifest (for ``auto``)."""

    async def artifact_kind(self, ref: ImageRef) -> ArtifactKind: ...


@dataclass(frozen=True)
class EngineConfig:
    """Everything an engine may need from the bot's settings, in neutral terms."""

    remote: Remote
    """The process's one registry client (:mod:`mirror.engines.remote`): every registry
    request an engine makes itself goes through it, so backoff and pull limits are shared."""
    credentials: Credentials
    """Registry logins the bot was given (sources' and the target's push login), ahead of
    ``~/.docker/config.json``."""
    insecure: tuple[str, ...] = ()
    """MIRROR_INSECURE_REGISTRIES: spoken to over plain HTTP."""
    allowed_internal: tuple[str, ...] = ()
    """Internal hosts an engine may connect to (the egress guard refuses the others)."""
    referrers: ReferrerPolicy = "all"
    blob_streams: int = 6
    """MIRROR_BLOB_STREAMS: concurrent ranged reads of one large blob."""
    spool_dir: Path | None = None
    """Where ranged reads spool their parts (beside MIRROR_DB)."""
    certs_dir: Path = DEFAULT_CERTS_DIR
    docker_host: str | None = None
    """DOCKER_HOST: the daemon to copy through (None: the local one, or the environment's)."""


@dataclass(frozen=True)
class EnginePlugin:
    """What an entry point in ``hub_mirror_bot.engines`` names: ``plugin = EnginePlugin(...)``.

    The entry point's name is the engine's (``MIRROR_ENGINE``, ``--engine``, ``Outcome.engine``).
    Loading the plugin must stay cheap (the chooser reads every plugin's ``exact`` in
    ``auto``): import the engine's SDK in ``build``, or defer it.
    """

    build: Callable[[EngineConfig], Engine]
    exact: bool = False
    """Copies byte for byte: every platform of an index, digests kept, artifacts that are not
    images. ``auto`` sends what only an exact copy will do to such an engine."""
