"""Registry reads that answer a miss with the nearest real thing, and back /tags and /inspect.

A copy that failed because the tag, the repository or the platform is not there is worth a
few cheap reads more (issue 12): the repository's tags ranked by :mod:`mirror.tags`, the same
path on the well-known registries (``HEAD``, which Docker Hub does not count), or the
platforms the image has with their sizes. These reads are the bot's own, whichever engine
copies; when they fail (the bot cannot reach the source, say) the miss keeps the engine's
sentence and nothing more is said.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from mirror import tags as tag_rank
from mirror.engines.base import CopyRequest
from mirror.engines.faults import explain
from mirror.engines.registry.client import INDEX_TYPES, Manifest, RegistryClient, descriptors
from mirror.errors import (
    AccessDenied,
    ChartUnreadable,
    MirrorError,
    NotFound,
    PlatformMissing,
    RegistryError,
    SourceMissing,
    Transient,
)
from mirror.platform import platform_of
from mirror.reference import DEFAULT_REGISTRY, ImageRef, quote
from mirror.text import Text
from mirror.units import human_bytes

if TYPE_CHECKING:
    from mirror.charts import Chart

log = logging.getLogger(__name__)

T = TypeVar("T")

WELL_KNOWN = ("registry.k8s.io", "quay.io", "ghcr.io", "gcr.io", "mcr.microsoft.com")
"""Where an image missing from Docker Hub under its short name usually lives."""

AGES = 3
"""How many of the newest tags ``/tags`` dates: each costs a manifest and a config read."""


@dataclass(frozen=True)
class Advice:
    """What to say instead of a bare "not found": one sentence, and full references to mirror
    instead, best first (chat buttons and ``--json`` read them as they are)."""

    sentence: str
    suggestions: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlatformImage:
    platform: str
    digest: str
    bytes: int
    """Compressed: the layers and config a pull of this platform downloads."""


@dataclass(frozen=True)
class Inspection:
    ref: ImageRef
    digest: str
    media_type: str
    platforms: tuple[PlatformImage, ...]
    created: datetime | None

    def digest_for(self, platform: str | None) -> str | None:
        """The digest a copy of ``platform`` (None: all) reads from the source."""
        if platform is None or self.media_type not in INDEX_TYPES:
            return self.digest
        return next((p.digest for p in self.platforms if p.platform == platform), None)


@dataclass(frozen=True)
class TagList:
    ref: ImageRef
    tags: tuple[str, ...]
    """Newest first, filtered."""
    total: int
    """How many tags the repository has (noise included)."""
    created: dict[str, datetime]
    """The creation date of the first few tags, where the image config says it."""


def _parse_created(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class Lookups:
    """The reads; ``allowed`` says which registries may be asked (the source allowlist).

    ``client`` is lent (in the bot, the engines' shared remote): its owner closes it."""

    def __init__(
        self,
        client: RegistryClient,
        *,
        allowed: Callable[[ImageRef], bool] = lambda ref: True,
        well_known: Sequence[str] = WELL_KNOWN,
        hub: str = DEFAULT_REGISTRY,
        page_size: int = 1000,
        attempts: int = 3,
        retry_wait: float = 0.5,
        timeout: float = 30.0,
    ) -> None:
        self.client = client
        self._allowed = allowed
        self._well_known = tuple(well_known)
        self._hub = hub
        self._page_size = page_size
        self._attempts = attempts
        self._retry_wait = retry_wait
        self._timeout = timeout

    async def _retry(self, step: Callable[[], Awaitable[T]]) -> T:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._retry_wait, max=5),
            retry=retry_if_exception_type(Transient),
            reraise=True,
        ):
            with attempt:
                return await step()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    # -- a miss -----------------------------------------------------------------------------

    async def advise(self, error: MirrorError, request: CopyRequest) -> Advice | None:
        """A better answer to ``error`` than its sentence, or None (nothing more to say)."""
        try:
            async with asyncio.timeout(self._timeout):
                if isinstance(error, PlatformMissing):
                    return await self._other_platforms(request.source, error)
                if isinstance(error, SourceMissing):
                    return await self._missing(request.source)
        except (RegistryError, MirrorError, TimeoutError) as exc:
            log.info("no advice for %s: %s", request.source, exc)
        return None

    async def _missing(self, source: ImageRef) -> Advice | None:
        if source.digest is not None:
            return None  # a digest has no neighbours
        try:
            found = await self.all_tags(source)
        except (NotFound, AccessDenied):
            return await self._elsewhere(source)
        asked = source.tag or "latest"
        if asked in found:
            return None  # the tag is there: the miss was something else
        nearest = tag_rank.nearest(found, asked)
        suggestions = tuple(str(source.with_tag(t)) for t in nearest)
        if not nearest:
            return Advice(
                Text(
                    "{image} does not exist, and its repository has no release tags to suggest.",
                    image=quote(source.familiar),
                )
            )
        listed = ", ".join(quote(t) for t in nearest)
        return Advice(
            Text(
                "{image} does not exist; nearest: {listed}.",
                image=quote(source.familiar),
                listed=listed,
            ),
            suggestions,
        )

    async def _elsewhere(self, source: ImageRef) -> Advice | None:
        """A short Docker Hub name that is not there: the same path on the well-known ones."""
        if source.registry != self._hub:
            return None
        path = source.repository.removeprefix("library/")
        tag = source.tag or "latest"
        candidates = [
            ImageRef(host, path, tag, None)
            for host in self._well_known
            if self._allowed(ImageRef(host, path, tag, None))
        ]
        present = await asyncio.gather(*(self._exists(ref) for ref in candidates))
        found = tuple(str(ref) for ref, ok in zip(candidates, present, strict=True) if ok)
        if not found:
            return None
        listed = ", ".join(quote(ref) for ref in found)
        return Advice(
            Text(
                "{image} is not on Docker Hub; it exists as {listed}.",
                image=quote(source.familiar),
                listed=listed,
            ),
            found,
        )

    async def _exists(self, ref: ImageRef) -> bool:
        try:
            digest = await self._retry(
                lambda: self.client.head_manifest(ref.registry, ref.repository, ref.tag or "latest")
            )
        except RegistryError:
            return False  # denied or unreachable: not something we can offer
        return digest is not None

    async def _other_platforms(self, source: ImageRef, error: PlatformMissing) -> Advice | None:
        seen = await self._inspect(source)
        if not seen.platforms:
            return None
        has = ", ".join(f"{p.platform} ({human_bytes(p.bytes)})" for p in seen.platforms)
        if not error.platform:
            return Advice(
                Text(
                    "{image} has no image for that platform; it has {has}.",
                    image=quote(source.familiar),
                    has=has,
                )
            )
        return Advice(
            Text(
                "{image} has no image for {platform}; it has {has}.",
                image=quote(source.familiar),
                platform=error.platform,
                has=has,
            )
        )

    # -- /tags --------------------------------------------------------------------------------

    async def all_tags(self, ref: ImageRef) -> list[str]:
        return await self._retry(
            lambda: self.client.list_tags(ref.registry, ref.repository, page_size=self._page_size)
        )

    async def tags(self, ref: ImageRef, pattern: str | None = None) -> TagList:
        """``/tags IMAGE [FILTER]``: newest first, the first few dated when that is cheap."""
        try:
            found = await self.all_tags(ref)
        except RegistryError as exc:
            raise explain(exc, ref, pushing=False) from exc
        shown = tag_rank.filter_tags(found, pattern)
        created: dict[str, datetime] = {}
        for tag, when in zip(
            shown[:AGES],
            await asyncio.gather(
                *(self._created(ref.with_tag(t)) for t in shown[:AGES]), return_exceptions=True
            ),
            strict=True,
        ):
            if isinstance(when, datetime):
                created[tag] = when
        return TagList(ref, tuple(shown), len(found), created)

    async def _created(self, ref: ImageRef) -> datetime | None:
        top = await self._manifest(ref, ref.tag or "latest")
        if top.media_type in INDEX_TYPES:
            entries = [e for e in descriptors(top.document().get("manifests")) if platform_of(e)]
            if not entries:
                return None
            top = await self._manifest(ref, entries[0]["digest"])
        return await self._config_created(ref, top)

    # -- a chart's images ------------------------------------------------------------------------

    async def chart(self, ref: ImageRef, *, newest: bool = False) -> tuple[ImageRef, Chart]:
        """The chart at ``ref`` and the images it deploys (:mod:`mirror.charts`); ``newest``:
        no version was given, so the newest release tag, as ``helm install oci://`` takes."""
        from mirror import charts

        try:
            async with asyncio.timeout(self._timeout):
                if newest:
                    found = charts.newest_version(await self.all_tags(ref))
                    if found is None:
                        raise ChartUnreadable(
                            Text(
                                "{image} has no release tags.", image=quote(ref.repo_only.familiar)
                            )
                        )
                    ref = ref.with_tag(found)
                layer = charts.archive_of(
                    await self._manifest(ref, ref.digest or ref.tag or ""), ref
                )
                data = await self._retry(lambda: charts.fetch_archive(self.client, ref, layer))
        except RegistryError as exc:
            raise explain(exc, ref, pushing=False) from exc
        except TimeoutError:
            raise ChartUnreadable(
                Text("{image} did not arrive in time to be read.", image=quote(ref.familiar))
            ) from None
        return ref, charts.read_chart(data)

    # -- /inspect -----------------------------------------------------------------------------

    async def inspect(self, ref: ImageRef) -> Inspection:
        """Digest, platforms with their compressed sizes, and the creation date."""
        try:
            return await self._inspect(ref)
        except RegistryError as exc:
            raise explain(exc, ref, pushing=False) from exc

    async def _inspect(self, ref: ImageRef) -> Inspection:
        top = await self._manifest(ref, ref.digest or ref.tag or "latest")
        if top.media_type in INDEX_TYPES:
            entries = [
                (p, e)
                for e in descriptors(top.document().get("manifests"))
                if (p := platform_of(e))
            ]
            children = await asyncio.gather(*(self._manifest(ref, e["digest"]) for _, e in entries))
            platforms = tuple(
                PlatformImage(str(p), child.digest, sum(s or 0 for s in child.blobs().values()))
                for (p, _), child in zip(entries, children, strict=True)
            )
            created = await self._config_created(ref, children[0]) if children else None
        else:
            config = await self._config(ref, top)
            found = platform_of(config)
            size = sum(s or 0 for s in top.blobs().values())
            platforms = (PlatformImage(str(found), top.digest, size),) if found else ()
            created = _parse_created(config.get("created"))
        return Inspection(ref, top.digest, top.media_type, platforms, created)

    async def _manifest(self, ref: ImageRef, reference: str) -> Manifest:
        return await self._retry(
            lambda: self.client.get_manifest(ref.registry, ref.repository, reference)
        )

    async def _config(self, ref: ImageRef, manifest: Manifest) -> dict[str, object]:
        config = descriptors(manifest.document().get("config"))
        if not config:
            return {}
        digest = config[0]["digest"]
        return dict(
            await self._retry(
                lambda: self.client.get_json_blob(ref.registry, ref.repository, digest)
            )
        )

    async def _config_created(self, ref: ImageRef, manifest: Manifest) -> datetime | None:
        return _parse_created((await self._config(ref, manifest)).get("created"))
