"""Finding what refers to a manifest (signatures, SBOMs, attestations) and publishing them at a
target that has no referrers API.

Three places, the ones cosign, oras and regclient look: the OCI 1.1 referrers API (asked once
per repository and remembered, as regclient does), else the referrers tag schema (an index
tagged ``sha256-<hex>``), and cosign's own tags (``sha256-<hex>.sig``, ``.att``, ``.sbom``),
which hold a manifest with no ``subject`` and are found only by their name.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mirror.artifacts import COSIGN_SUFFIXES, ReferrerKind, referrer_kind
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


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag: ``sha256:abc`` -> ``sha256-abc``."""
    return digest.replace(":", "-", 1)


class ReferrerFinder:
    """Looks referrers up and writes fallback indexes, with the engine's retry per request."""

    def __init__(self, client: RegistryClient, retry: Retry) -> None:
        self._client = client
        self._retry = retry
        self._api: dict[tuple[str, str], bool] = {}
        """(registry, repository) -> whether it serves the referrers API."""

    async def has_api(self, ref: ImageRef, digest: str) -> bool:
        """Whether ``ref``'s repository serves the referrers API (asked once, remembered)."""
        key = (ref.registry, ref.repository)
        if key not in self._api:
            await self._listed(ref, digest)
        return self._api[key]

    async def _listed(self, ref: ImageRef, digest: str) -> list[dict[str, Any]] | None:
        """The API's list, or None to look by tag instead: the registry has no API, or it
        failed this time (regclient's rule: the first answer decides for the repository)."""
        try:
            listed = await self._retry(
                lambda: self._client.referrers(ref.registry, ref.repository, digest)
            )
        except RegistryError:
            listed = None
        self._api.setdefault((ref.registry, ref.repository), listed is not None)
        return listed

    async def find(self, src: ImageRef, subject: str) -> list[Found]:
        """Every referrer of ``subject`` in ``src``'s repository, each once."""
        listed: list[dict[str, Any]] | None = None
        if self._api.get((src.registry, src.repository), True):
            listed = await self._listed(src, subject)
        if listed is None:
            listed = await self._fallback_entries(src, subject)
        found = [_from_descriptor(subject, d) for d in listed]
        tagged = await asyncio.gather(*(self._cosign(src, subject, s) for s in COSIGN_SUFFIXES))
        found += [f for f in tagged if f is not None]
        unique: dict[str, Found] = {}
        for f in found:
            unique.setdefault(f.digest, f)
        return list(unique.values())

    async def _fallback_entries(self, src: ImageRef, subject: str) -> list[dict[str, Any]]:
        manifest = await self._manifest(src, fallback_tag(subject))
        if manifest is None or manifest.media_type not in INDEX_TYPES:
            return []
        return descriptors(manifest.document().get("manifests"))

    async def _cosign(self, src: ImageRef, subject: str, suffix: str) -> Found | None:
        tag = fallback_tag(subject) + suffix
        resolved = await self._retry(
            lambda: self._client.resolve(src.registry, src.repository, tag)
        )
        if resolved is None:
            return None
        digest, media_type = resolved
        return Found(subject, digest, media_type, "", COSIGN_SUFFIXES[suffix], tag=tag)

    async def _manifest(self, ref: ImageRef, reference: str) -> Manifest | None:
        """GET after a HEAD, so a tag that is not there costs no counted pull."""
        client = self._client
        if await self._retry(lambda: client.resolve(ref.registry, ref.repository, reference)):
            try:
                return await self._retry(
                    lambda: client.get_manifest(ref.registry, ref.repository, reference)
                )
            except NotFound:
                return None
        return None

    async def publish_fallback(
        self, dst: ImageRef, subject: str, entries: Iterable[dict[str, Any]]
    ) -> None:
        """Merge ``entries`` into ``dst``'s ``sha256-<hex>`` index: entries another copy put
        there stay; nothing is written when every entry is there already."""
        tag = fallback_tag(subject)
        current = await self._manifest(dst, tag)
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
