"""Finding what refers to a manifest (signatures, SBOMs, attestations) and publishing them at a
target that has no referrers API.

Three places, the ones cosign, oras and regclient look: the OCI 1.1 referrers API, else the
referrers tag schema (an index tagged ``sha256-<hex>``), and cosign's own tags
(``sha256-<hex>.sig``, ``.att``, ``.sbom``), which hold a manifest with no ``subject`` and are
found only by their name.

Each look-up is a round trip on a long link, so they are asked the cheapest way (issue 24):

- whether a registry serves the referrers API is asked once per registry: the first subject's
  question is the probe, and the others wait for its answer rather than asking in parallel;
- the tags are read in one (paginated) tag listing per repository and copy, started before the
  manifest walk, instead of a HEAD per digest and suffix; only the tags that are there are
  read. A repository whose listing is refused or longer than :data:`LISTING_PAGES` pages is
  asked tag by tag, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mirror.artifacts import COSIGN_SUFFIXES, ReferrerKind, referrer_kind
from mirror.engines.registry.auth import canonical_host
from mirror.engines.registry.client import (
    INDEX_TYPES,
    MEDIA_OCI_INDEX,
    Manifest,
    RegistryClient,
    descriptors,
    digest_of,
)
from mirror.errors import NotFound, RegistryError
from mirror.reference import ImageRef

T = TypeVar("T")

LISTING_PAGES = 5
"""Pages of a tag listing read to find referrer tags; a repository with more tags (Docker Hub
pages hold 100) is asked tag by tag instead, which costs a few HEADs per digest."""


class Retry(Protocol):
    """The engine's retry of one unit (``RegistryEngine._retry``)."""

    async def __call__(self, step: Callable[[], Awaitable[T]]) -> T: ...


@dataclass(frozen=True)
class Found:
    """A referrer of ``subject``: listed with a descriptor (API or fallback index), or held
    by a cosign tag (``tag`` set; such a manifest does not name its subject)."""

    subject: str
    digest: str
    media_type: str
    artifact_type: str
    """Empty when only the manifest can say (cosign tags, terse fallback entries)."""
    kind: ReferrerKind | None
    """None when only the manifest can say."""
    descriptor: dict[str, Any] | None = None
    tag: str | None = None
    manifest: Manifest | None = None
    """The manifest itself when finding it meant reading it already (a listed cosign tag)."""


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag: ``sha256:abc`` -> ``sha256-abc``."""
    return digest.replace(":", "-", 1)


class ReferrerFinder:
    """Looks referrers up and writes fallback indexes, with the engine's retry per request."""

    def __init__(self, client: RegistryClient, retry: Retry) -> None:
        self._client = client
        self._retry = retry
        self._api: dict[str, asyncio.Future[bool]] = {}
        """Registry host -> whether it serves the referrers API (the first answer decides)."""

    def search(self, src: ImageRef) -> Search:
        """One copy's search of ``src``'s repository; its tag listing starts now, so it runs
        while the caller walks the manifests. Close it (``async with``) when done."""
        return Search(self, src)

    async def has_api(self, ref: ImageRef, digest: str) -> bool:
        """Whether ``ref``'s registry serves the referrers API (asked once, remembered)."""
        await self.listed(ref, digest)
        return self._api[canonical_host(ref.registry)].result()

    async def listed(self, ref: ImageRef, digest: str) -> list[dict[str, Any]] | None:
        """The API's list for ``digest``, or None to look by tag instead: the registry has no
        API, or its first answer failed (regclient's rule, kept per registry). The first
        question to a registry is its probe; questions that come while it is out wait for it."""
        host = canonical_host(ref.registry)
        while (known := self._api.get(host)) is not None:
            await asyncio.wait([known])  # not cancelled with us: others may wait for it too
            if known.cancelled():
                continue  # its prober was cancelled: ask again
            if not known.result():
                return None
            return await self._ask(ref, digest)
        probe = self._api[host] = asyncio.get_running_loop().create_future()
        try:
            listed = await self._ask(ref, digest)
        except BaseException:
            del self._api[host]  # cancelled: the next question probes again
            probe.cancel()
            raise
        probe.set_result(listed is not None)
        return listed

    async def _ask(self, ref: ImageRef, digest: str) -> list[dict[str, Any]] | None:
        try:
            return await self._retry(
                lambda: self._client.referrers(ref.registry, ref.repository, digest)
            )
        except RegistryError:
            return None

    async def manifest(self, ref: ImageRef, reference: str) -> Manifest | None:
        """GET after a HEAD, so a tag that is not there costs no counted pull."""
        if await self.resolve(ref, reference):
            return await self.get(ref, reference)
        return None

    async def resolve(self, ref: ImageRef, reference: str) -> tuple[str, str] | None:
        """(digest, media type) of a tag, by HEAD; None when it is not there."""
        client = self._client
        return await self._retry(lambda: client.resolve(ref.registry, ref.repository, reference))

    async def get(self, ref: ImageRef, reference: str) -> Manifest | None:
        try:
            return await self._retry(
                lambda: self._client.get_manifest(ref.registry, ref.repository, reference)
            )
        except NotFound:
            return None

    async def tags(self, src: ImageRef) -> frozenset[str] | None:
        """Every tag of the repository, or None when they cannot be listed cheaply."""
        try:
            tags, whole = await self._retry(
                lambda: self._client.tag_listing(
                    src.registry, src.repository, max_pages=LISTING_PAGES
                )
            )
        except RegistryError:
            return None
        return frozenset(tags) if whole else None

    async def publish_fallback(
        self, dst: ImageRef, subject: str, entries: Iterable[dict[str, Any]]
    ) -> None:
        """Merge ``entries`` into ``dst``'s ``sha256-<hex>`` index: entries another copy put
        there stay; nothing is written when every entry is there already."""
        tag = fallback_tag(subject)
        current = await self.manifest(dst, tag)
        manifests: list[dict[str, Any]] = []
        if current is not None and current.media_type in INDEX_TYPES:
            manifests = descriptors(current.document().get("manifests"))
        known = {m["digest"] for m in manifests}
        added = [e for e in entries if e["digest"] not in known]
        if not added:
            return
        document = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_INDEX,
            "manifests": manifests + added,
        }
        data = json.dumps(document, indent=2).encode()
        index = Manifest(data, MEDIA_OCI_INDEX, digest_of(data))
        await self._retry(
            lambda: self._client.put_manifest(dst.registry, dst.repository, tag, index)
        )


class Search:
    """Referrers in one source repository for one copy: the tag listing is read once, at the
    start, and each subject costs the API question (where the registry serves it) and a read
    of each referrer tag that is there."""

    def __init__(self, finder: ReferrerFinder, src: ImageRef) -> None:
        self._finder = finder
        self._src = src
        self._tags = asyncio.create_task(finder.tags(src))

    async def __aenter__(self) -> Search:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._tags.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._tags

    async def find(self, subject: str) -> list[Found]:
        """Every referrer of ``subject``, each once."""
        finder, src = self._finder, self._src
        tags = await asyncio.shield(self._tags)
        listed = await finder.listed(src, subject)
        if listed is None:
            listed = await self._fallback_entries(subject, tags)
        found = [_from_descriptor(subject, d) for d in listed]
        tagged = await asyncio.gather(
            *(self._cosign(subject, suffix, tags) for suffix in COSIGN_SUFFIXES)
        )
        found += [f for f in tagged if f is not None]
        unique: dict[str, Found] = {}
        for f in found:
            unique.setdefault(f.digest, f)
        return list(unique.values())

    async def _fallback_entries(
        self, subject: str, tags: frozenset[str] | None
    ) -> list[dict[str, Any]]:
        tag = fallback_tag(subject)
        if tags is None:
            manifest = await self._finder.manifest(self._src, tag)
        elif tag in tags:
            manifest = await self._finder.get(self._src, tag)
        else:
            return []
        if manifest is None or manifest.media_type not in INDEX_TYPES:
            return []
        return descriptors(manifest.document().get("manifests"))

    async def _cosign(self, subject: str, suffix: str, tags: frozenset[str] | None) -> Found | None:
        src, tag = self._src, fallback_tag(subject) + suffix
        kind = COSIGN_SUFFIXES[suffix]
        if tags is not None:
            if tag not in tags:
                return None
            manifest = await self._finder.get(src, tag)
            if manifest is None:
                return None
            return Found(
                subject, manifest.digest, manifest.media_type, "", kind, tag=tag, manifest=manifest
            )
        resolved = await self._finder.resolve(src, tag)
        if resolved is None:
            return None
        digest, media_type = resolved
        return Found(subject, digest, media_type, "", kind, tag=tag)


def _from_descriptor(subject: str, descriptor: dict[str, Any]) -> Found:
    artifact_type = str(descriptor.get("artifactType") or "")
    return Found(
        subject,
        descriptor["digest"],
        str(descriptor.get("mediaType") or ""),
        artifact_type,
        referrer_kind(artifact_type) if artifact_type else None,
        descriptor=descriptor,
    )
