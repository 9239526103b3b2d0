"""The ``registry`` engine: daemonless, exact copies over the OCI distribution API.

Manifests travel as their exact bytes, so the target digest is the source digest and pulls by
digest keep working; an index goes with every child (attestations and unknown media types
too). Blobs stream from the source GET into the target PATCH in constant memory, are hashed on
the way and committed only when the hash matches. The tag is written last, so a copy that
stops half-way leaves nothing a user could pull.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mirror.artifacts import (
    ArtifactKind,
    Referrer,
    ReferrerKind,
    artifact_type_of,
    manifest_kind,
    referrer_kind,
)
from mirror.bounded import LRU
from mirror.credentials import Credentials
from mirror.engines.base import (
    DEFAULT_CERTS_DIR,
    CopyRequest,
    EngineConfig,
    EnginePlugin,
    ItemStatus,
    Outcome,
    ProgressSink,
    ReferrerPolicy,
)
from mirror.engines.faults import explain
from mirror.engines.registry.auth import canonical_host
from mirror.engines.registry.blobread import BlobReader, Ranged, Streams
from mirror.engines.registry.client import (
    INDEX_TYPES,
    MEDIA_OCI_MANIFEST,
    Manifest,
    RegistryClient,
    descriptors,
)
from mirror.engines.registry.hosts import LONG_RETRY_AFTER
from mirror.engines.registry.referrers import Found, ReferrerFinder, Search
from mirror.engines.remote import BLOB_CONCURRENCY, Remote, connection_limit
from mirror.errors import (
    CopyFailed,
    DigestMismatch,
    NotFound,
    PlatformMissing,
    RegistryError,
    Transient,
)
from mirror.platform import Platform, platform_of
from mirror.progress import BlobDone, BlobProgress, ProgressEvent, Stage, StageChanged
from mirror.reference import ImageRef
from mirror.retrying import retried
from mirror.text import Text

log = logging.getLogger(__name__)

T = TypeVar("T")

_CHUNK = 1 << 20
FEW_COPIES = 2
"""Copies that always run at once (under the job service's ceiling); more start only while
their source's link has room."""
_ADMIT_TICK = 0.1
_PROGRESS_STEP = 1 << 20  # one progress event per MiB is plenty for a bar
_CONFIG_MAX = 8 << 20  # an image config bigger than this is not an image config
_REFERRER_DEPTH = 4  # a signature on an SBOM on an image is 2; deeper chains are not real
_SIGNATURE = ReferrerKind.SIGNATURE


def _quiet(_: ProgressEvent) -> None:
    """Referrers are a few KB: their blobs do not move the image's progress bar."""


@dataclass(frozen=True)
class _Blob:
    digest: str
    size: int | None


@dataclass
class _BlobFlight:
    task: asyncio.Task[None]
    watchers: int = 0


@dataclass
class _Plan:
    """What one copy moves: blobs first (any order), then manifests in this order."""

    manifests: list[Manifest] = field(default_factory=list)
    blobs: dict[str, _Blob] = field(default_factory=dict)

    @property
    def top(self) -> Manifest:
        return self.manifests[-1]

    @property
    def bytes(self) -> int:
        return sum(b.size or 0 for b in self.blobs.values())


KNOWN_BLOBS = 20_000
"""Blobs whose repository at the target this process remembers (to mount them rather than
copy them again): the most recently used, so a bot that runs for months stays the same size."""


@dataclass(frozen=True)
class _Referring:
    """A referrer found at the source, read, and judged (``new``: not yet among those this
    copy brings; a referrer listed under two subjects is copied once, indexed under both)."""

    found: Found
    manifest: Manifest
    artifact_type: str
    kind: ReferrerKind
    new: bool


async def _ready(value: T) -> T:
    return value


async def _cancelled(task: asyncio.Task[Any]) -> None:
    """Stop ``task`` if it still runs (the copy failed before it was needed)."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


_HASH_IN_THREAD = 4 << 20
"""Blobs this large (or of unknown size) are hashed off the event loop."""

_HASH_AHEAD = 2
"""Chunks handed on before their hashing finished, at most (memory: this many MiB a blob)."""


class _Hasher:
    """sha256 of a blob, computed off the event loop for a large one (issue 23): the loop
    keeps serving chats and other copies while a core hashes. Each chunk's update runs in the
    blob's own thread, in order, while the chunk is already on its way to the target; at
    most :data:`_HASH_AHEAD` chunks wait for it. hashlib releases the GIL while it hashes a
    buffer this large, so the loop and the hashing thread do run at once. A small blob is
    hashed in place: a thread hop would cost more than its hash."""

    def __init__(self, *, threaded: bool) -> None:
        self._sha = hashlib.sha256()
        self._pool = ThreadPoolExecutor(1, "sha256") if threaded else None
        self._pending: collections.deque[asyncio.Future[None]] = collections.deque()

    async def update(self, chunk: bytes) -> None:
        if self._pool is None:
            self._sha.update(chunk)
            return
        loop = asyncio.get_running_loop()
        self._pending.append(loop.run_in_executor(self._pool, self._sha.update, chunk))
        while len(self._pending) > _HASH_AHEAD:
            await self._pending.popleft()

    async def hexdigest(self) -> str:
        while self._pending:
            await self._pending.popleft()
        return self._sha.hexdigest()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class RegistryEngine:
    """Copies images registry to registry; every platform (``platform=None``) or one.

    The one owner of retries for registry faults (go-containerregistry's ``uploadOne``): each
    unit (one manifest read, one existence check, one blob copy HEAD -> mount -> POST -> PATCH
    -> PUT, one manifest push) is retried in one loop, and the client under it never retries.
    ``Retry-After`` is honoured by the host's shared backoff (``hosts.HostState``). What this
    engine raises is final for the job service: it already tried.
    """

    name = "registry"

    def __init__(
        self,
        remote: Remote,
        *,
        blob_concurrency: int = BLOB_CONCURRENCY,
        ranged: Ranged | None = None,
        attempts: int = 4,
        retry_wait: float = 0.5,
        max_wait: float = 30.0,
        referrers: ReferrerPolicy = "all",
    ) -> None:
        """``remote``: the process's registry client, shared (the chooser closes it)."""
        self._remote = remote
        self._owns_remote = False
        self._ranged = ranged or Ranged()
        self._blob_slots = asyncio.Semaphore(blob_concurrency)
        self._attempts = attempts
        self._retry_wait = retry_wait
        self._max_wait = max_wait
        self._known: LRU[tuple[str, str], str] = LRU(KNOWN_BLOBS)
        """(registry, blob digest) -> a repository of that registry known to hold the blob."""
        self._blob_flights: dict[tuple[str, str, str], _BlobFlight] = {}
        """(registry, repository, digest) -> the one copy of that blob in progress."""
        self._referrers = referrers
        self._finder = ReferrerFinder(self.client, self._retry)
        self._copying = 0
        """Copies running in this engine now."""
        self._streams: dict[str, Streams] = {}
        """Registry host -> the measure of the link to it (how many streams pay)."""

    @classmethod
    def standalone(
        cls,
        credentials: Credentials | None = None,
        *,
        insecure: Iterable[str] = (),
        allowed_internal: Iterable[str] | None = None,
        docker_config: Path | None = None,
        certs_dir: Path = DEFAULT_CERTS_DIR,
        read_timeout: float = 120.0,
        long_retry_after: float = LONG_RETRY_AFTER,
        blob_concurrency: int = BLOB_CONCURRENCY,
        ranged: Ranged | None = None,
        attempts: int = 4,
        retry_wait: float = 0.5,
        max_wait: float = 30.0,
        referrers: ReferrerPolicy = "all",
    ) -> RegistryEngine:
        """An engine with a registry client of its own, closed with it: for a script or a
        test that copies with this engine alone (the bot shares one remote)."""
        remote = Remote(
            credentials,
            insecure=insecure,
            allowed_internal=allowed_internal,
            certs_dir=certs_dir,
            connections=connection_limit(blob_concurrency, (ranged or Ranged()).streams),
            docker_config=docker_config,
            read_timeout=read_timeout,
            long_retry_after=long_retry_after,
        )
        engine = cls(
            remote,
            blob_concurrency=blob_concurrency,
            ranged=ranged,
            attempts=attempts,
            retry_wait=retry_wait,
            max_wait=max_wait,
            referrers=referrers,
        )
        engine._owns_remote = True
        return engine

    @property
    def client(self) -> RegistryClient:
        return self._remote.client

    # -- protocol -------------------------------------------------------------------------------

    async def ensure_available(self) -> None:
        """Always available: it needs nothing but the network, which each copy checks itself."""

    async def source_digest(self, request: CopyRequest) -> str:
        """A HEAD (not counted by Docker Hub's pull limit) unless one platform of an index is
        wanted: then the index must be read to find that platform's digest."""
        src = request.source
        try:
            found = await self._retry(
                lambda: self.client.resolve(
                    src.registry, src.repository, src.digest or src.tag or "latest"
                )
            )
            if found is None:
                raise NotFound(src.registry, "manifest unknown")
            digest, media_type = found
            if request.platform is None or media_type not in INDEX_TYPES:
                return digest
            return (await self._select(request, check_config=False)).digest
        except RegistryError as exc:
            raise explain(exc, src, pushing=False) from exc

    async def target_digest(self, target: ImageRef) -> str | None:
        try:
            return await self._retry(
                lambda: self.client.head_manifest(
                    target.registry, target.repository, target.digest or target.tag or "latest"
                )
            )
        except RegistryError as exc:
            raise explain(
                exc, target, pushing=True, logged_in=await self._logged_in(target)
            ) from exc

    async def head_digest(self, ref: ImageRef) -> str | None:
        """The digest a tag points at now, by HEAD (no pull counted); None when it is gone."""
        try:
            return await self._retry(
                lambda: self.client.head_manifest(
                    ref.registry, ref.repository, ref.digest or ref.tag or "latest"
                )
            )
        except RegistryError as exc:
            raise explain(exc, ref, pushing=False) from exc

    async def tags(self, ref: ImageRef) -> list[str]:
        """Every tag of ``ref``'s repository."""
        try:
            return await self._retry(lambda: self.client.list_tags(ref.registry, ref.repository))
        except RegistryError as exc:
            raise explain(exc, ref, pushing=False) from exc

    async def measure(self, request: CopyRequest) -> int:
        """What the copy would move (compressed layers and configs), from manifests alone,
        so MIRROR_MAX_IMAGE_BYTES refuses an image before any blob moves."""
        try:
            _, plan = await self._plan(request)
        except RegistryError as exc:
            raise explain(exc, request.source, pushing=False) from exc
        return plan.bytes

    async def _plan(self, request: CopyRequest) -> tuple[Manifest, _Plan]:
        top = await self._select(request, check_config=True)
        plan = _Plan()
        await self._collect(request.source, top, plan, whole=request.platform is None)
        return top, plan

    async def copy(self, request: CopyRequest, progress: ProgressSink) -> Outcome:
        async with self._admitted(request.source):
            return await self._copy(request, progress)

    @contextlib.asynccontextmanager
    async def _admitted(self, src: ImageRef) -> AsyncIterator[None]:
        """Copies overlap (each is mostly round trips until its blobs move) while the link
        to their source has room: at least :data:`FEW_COPIES` at once, and more only while
        its measure does not say it is full. ``MIRROR_CONCURRENCY`` is the ceiling."""
        streams = self._streams_to(src.registry)
        while self._copying >= FEW_COPIES and streams.full():
            await asyncio.sleep(_ADMIT_TICK)
        self._copying += 1
        try:
            yield
        finally:
            self._copying -= 1

    async def _copy(self, request: CopyRequest, progress: ProgressSink) -> Outcome:
        src, dst = request.source, request.target
        pushing = False
        try:
            async with contextlib.AsyncExitStack() as stack:
                # Referrers are looked for at the source while the manifests are walked and
                # the blobs move: each look-up is a round trip, none waits for the copy.
                search = None
                if self._referrers != "none":
                    search = await stack.enter_async_context(self._finder.search(src))
                # The target tag's digest, asked while the source is read (if it has a tag).
                held: asyncio.Task[str | None] | None = None
                if dst.tag:
                    held = asyncio.create_task(self._head(dst, dst.tag))
                    stack.push_async_callback(_cancelled, held)
                top, plan = await self._plan(request)
                finding: asyncio.Task[list[_Referring]] | None = None
                if search is not None:
                    finding = asyncio.create_task(
                        self._find_referrers(src, search, [m.digest for m in plan.manifests])
                    )
                    stack.push_async_callback(_cancelled, finding)
                kind = manifest_kind(top.document())
                artifact = None if kind.runnable else kind
                reference = dst.tag or top.digest
                pushing = True
                current = await (held or self._head(dst, reference))
                if current != top.digest:
                    await self._move(src, dst, plan, progress)
                # Before the tag: whoever pulls the tag finds its signatures already there.
                referrers: tuple[Referrer, ...] = ()
                if finding is not None:
                    referrers = await self._push_referrers(src, dst, await finding)
            if current == top.digest:
                # Already there, byte for byte: no blob traffic, only referrers it lacked.
                return Outcome(
                    ItemStatus.ALREADY_MIRRORED,
                    self.name,
                    top.digest,
                    top.digest,
                    plan.bytes,
                    referrers=referrers,
                    artifact=artifact,
                )
            stored = await self._push_manifest(dst, reference, top)
        except RegistryError as exc:
            if src.registry != dst.registry:
                pushing = exc.registry == dst.registry  # which side failed, when we can tell
            raise explain(
                exc, dst if pushing else src, pushing=pushing, logged_in=await self._logged_in(dst)
            ) from exc
        return Outcome(
            ItemStatus.SUCCEEDED,
            self.name,
            top.digest,
            stored,
            plan.bytes,
            referrers=referrers,
            artifact=artifact,
        )

    async def _move(
        self, src: ImageRef, dst: ImageRef, plan: _Plan, progress: ProgressSink
    ) -> None:
        """Every blob, then every manifest but the top one (whose tag is pushed last). The bar
        counts the image's blobs in both stages, so its total is the size /inspect and the
        answer give from the start (manifests are not counted)."""
        progress(StageChanged(Stage.COPYING))
        for blob in plan.blobs.values():
            progress(BlobProgress(_short(blob.digest), 0, blob.size))
        await self._copy_blobs(src, dst, plan, progress)
        progress(StageChanged(Stage.PUSHING))
        for blob in plan.blobs.values():
            progress(BlobDone(_short(blob.digest), blob.size))
        for child in plan.manifests[:-1]:
            await self._push_manifest(dst, child.digest, child)

    async def artifact_kind(self, ref: ImageRef) -> ArtifactKind:
        """What ``ref`` is, for the engine choice: a HEAD, and a GET only for an OCI manifest
        (the one type a chart or other artifact comes as). A source that cannot be read
        counts as an image: the engine that copies it says why it cannot."""
        try:
            found = await self._retry(
                lambda: self.client.resolve(
                    ref.registry, ref.repository, ref.digest or ref.tag or "latest"
                )
            )
            if found is None or found[1] != MEDIA_OCI_MANIFEST:
                return ArtifactKind.IMAGE
            return manifest_kind((await self._get(ref, found[0], found[1])).document())
        except RegistryError:
            return ArtifactKind.IMAGE

    # -- referrers ------------------------------------------------------------------------------

    async def _find_referrers(
        self, src: ImageRef, search: Search, subjects: list[str]
    ) -> list[_Referring]:
        """What refers to ``subjects`` (and, level by level, what refers to that), as
        MIRROR_REFERRERS says: source reads only, each manifest read once."""
        wanted: list[_Referring] = []
        seen = set(subjects)
        level = list(subjects)
        for _ in range(_REFERRER_DEPTH):
            if not level:
                break
            listed = await asyncio.gather(*(search.find(s) for s in level))
            found_all = [f for group in listed for f in group]
            if self._referrers == "signatures":
                found_all = [f for f in found_all if f.kind in (None, _SIGNATURE)]
            manifests = await asyncio.gather(
                *(
                    _ready(f.manifest)
                    if f.manifest is not None
                    else self._get(src, f.tag or f.digest, f.media_type)
                    for f in found_all
                )
            )
            level = []
            for found, manifest in zip(found_all, manifests, strict=True):
                artifact_type = found.artifact_type or artifact_type_of(manifest.document())
                kind = found.kind or referrer_kind(artifact_type)
                if self._referrers == "signatures" and kind is not _SIGNATURE:
                    continue
                new = manifest.digest not in seen
                seen.add(manifest.digest)
                wanted.append(_Referring(found, manifest, artifact_type, kind, new))
                if new:
                    level.append(manifest.digest)
        return wanted

    async def _push_referrers(
        self, src: ImageRef, dst: ImageRef, wanted: list[_Referring]
    ) -> tuple[Referrer, ...]:
        """Copy each referrer found, exactly; then publish the fallback indexes a target
        without the referrers API needs so that tools find them there."""
        copied: dict[str, Referrer] = {}
        fallback: dict[str, list[dict[str, Any]]] = {}
        for item in wanted:
            if item.found.descriptor is not None:
                fallback.setdefault(item.found.subject, []).append(item.found.descriptor)
            if not item.new:
                continue
            await self._push_artifact(src, dst, item.manifest, item.found.tag)
            copied[item.manifest.digest] = Referrer(
                item.manifest.digest, item.artifact_type, item.kind
            )
        if fallback and not await self._finder.has_api(dst, next(iter(fallback))):
            for subject, entries in fallback.items():
                await self._finder.publish_fallback(dst, subject, entries)
        return tuple(copied.values())

    async def _push_artifact(
        self, src: ImageRef, dst: ImageRef, manifest: Manifest, tag: str | None
    ) -> None:
        """One referrer, exactly: its blobs (verified), any children, then its manifest, by
        digest or under its cosign tag. Its bytes are small and not shown as progress."""
        reference = tag or manifest.digest
        current = await self._retry(
            lambda: self.client.head_manifest(dst.registry, dst.repository, reference)
        )
        if current == manifest.digest:
            return
        plan = _Plan()
        await self._collect(src, manifest, plan, whole=True)
        await self._copy_blobs(src, dst, plan, _quiet)
        for child in plan.manifests[:-1]:
            await self._push_manifest(dst, child.digest, child)
        await self._push_manifest(dst, reference, manifest)

    async def aclose(self) -> None:
        if self._owns_remote:
            await self._remote.aclose()

    async def _logged_in(self, target: ImageRef) -> bool:
        return await self.client.credential(target.registry) is not None

    # -- retries --------------------------------------------------------------------------------

    async def _retry(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run one unit again on transient faults, with backoff; a ``Retry-After`` is waited
        out by the host's not-before time, which every request to that host honours."""
        return await retried(
            step,
            attempts=self._attempts,
            retry_if=lambda exc: isinstance(exc, Transient),
            multiplier=self._retry_wait,
            max_wait=self._max_wait,
        )

    # -- reading the source ---------------------------------------------------------------------

    async def _get(self, ref: ImageRef, reference: str, media_type: str = "") -> Manifest:
        extra = [media_type] if media_type else []
        return await self._retry(
            lambda: self.client.get_manifest(
                ref.registry, ref.repository, reference, extra_types=extra
            )
        )

    async def _select(self, request: CopyRequest, *, check_config: bool) -> Manifest:
        """The manifest that lands under the target tag: the whole thing, or one platform's."""
        src = request.source
        top = await self._get(src, src.digest or src.tag or "latest")
        wanted = request.platform
        if wanted is None:
            return top
        if top.media_type in INDEX_TYPES:
            entries = descriptors(top.document().get("manifests"))
            for entry in entries:
                if platform_of(entry) == wanted:
                    return await self._get(src, entry["digest"], str(entry.get("mediaType", "")))
            offered = sorted({str(p) for p in map(platform_of, entries) if p is not None})
            if offered:
                sentence = Text(
                    "`{image}` has no image for {platform} (it has {offered}).",
                    image=src.familiar,
                    platform=str(wanted),
                    offered=", ".join(offered),
                )
            else:
                sentence = Text(
                    "`{image}` has no image for {platform}.",
                    image=src.familiar,
                    platform=str(wanted),
                )
            raise PlatformMissing(sentence, str(wanted))
        if check_config:
            await self._check_platform(src, top, wanted)
        return top

    async def _check_platform(self, src: ImageRef, manifest: Manifest, wanted: Platform) -> None:
        """A single-platform image copied for another platform would not run: refuse it."""
        config = descriptors(manifest.document().get("config"))
        if not config or (config[0].get("size") or 0) > _CONFIG_MAX:
            return
        digest = config[0]["digest"]

        async def read() -> bytes:
            async with self.client.open_blob(src.registry, src.repository, digest) as resp:
                return await resp.content.read(_CONFIG_MAX)

        with contextlib.suppress(ValueError):
            doc = json.loads(await self._retry(read))
            if not isinstance(doc, dict) or "architecture" not in doc:
                return
            found = platform_of({"platform": doc})
            if found is not None and found != wanted:
                raise PlatformMissing(
                    Text(
                        "`{image}` is an image for {found} only, not for {platform}.",
                        image=src.familiar,
                        found=str(found),
                        platform=str(wanted),
                    ),
                    str(wanted),
                )

    async def _collect(
        self, src: ImageRef, manifest: Manifest, plan: _Plan, *, whole: bool
    ) -> None:
        """Add ``manifest``, after its children and blobs, to ``plan`` (depth first)."""
        if any(m.digest == manifest.digest for m in plan.manifests):
            return
        if whole:
            # The children at once: each is a round trip, and none depends on another.
            entries = descriptors(manifest.document().get("manifests"))
            children = await asyncio.gather(
                *(self._get(src, e["digest"], str(e.get("mediaType", ""))) for e in entries)
            )
            for child in children:
                await self._collect(src, child, plan, whole=True)
        for digest, size in manifest.blobs().items():
            plan.blobs.setdefault(digest, _Blob(digest, size))
        plan.manifests.append(manifest)

    # -- writing the target ---------------------------------------------------------------------

    async def _push_manifest(self, dst: ImageRef, reference: str, manifest: Manifest) -> str:
        stored = await self._retry(
            lambda: self.client.put_manifest(dst.registry, dst.repository, reference, manifest)
        )
        if stored is None:
            stored = await self._retry(
                lambda: self.client.head_manifest(dst.registry, dst.repository, manifest.digest)
            )
        if stored != manifest.digest:
            raise CopyFailed(
                Text(
                    "The target registry `{registry}` stored the manifest of `{image}` as "
                    "{stored}, not as {digest}: it does not keep manifests exactly.",
                    registry=dst.registry,
                    image=dst.familiar,
                    stored=str(stored),
                    digest=manifest.digest,
                )
            )
        return stored

    async def _copy_blobs(
        self, src: ImageRef, dst: ImageRef, plan: _Plan, progress: ProgressSink
    ) -> None:
        if src.registry == dst.registry and src.repository != dst.repository:
            for digest in plan.blobs:
                self._known.setdefault((dst.registry, digest), src.repository)

        # Big blobs first: they take their slots (and their streams) while the link is
        # fresh, and small ones fill in around them rather than leaving a big one last, alone.
        biggest_first = sorted(plan.blobs.values(), key=lambda b: -(b.size or 0))
        tasks = [
            asyncio.create_task(self._copy_blob_once(src, dst, blob, progress))
            for blob in biggest_first
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _copy_blob_once(
        self, src: ImageRef, dst: ImageRef, blob: _Blob, progress: ProgressSink
    ) -> None:
        """One copy of a blob per (registry, repository, digest), however many copies need
        it at once; a failure is forgotten so the next caller tries again (pusher.go)."""
        key = (dst.registry, dst.repository, blob.digest)
        flight = self._blob_flights.get(key)
        joined = flight is not None
        if flight is None:
            task = asyncio.create_task(
                self._retry(lambda: self._copy_blob(src, dst, blob, progress))
            )
            flight = self._blob_flights[key] = _BlobFlight(task)
            task.add_done_callback(lambda _: self._blob_flights.pop(key, None))
        flight.watchers += 1
        try:
            await asyncio.shield(flight.task)
        finally:
            flight.watchers -= 1
            if flight.watchers == 0 and not flight.task.done():
                flight.task.cancel()  # every copy that needed it has stopped
        if joined:
            progress(BlobDone(_short(blob.digest), blob.size))

    async def _copy_blob(
        self, src: ImageRef, dst: ImageRef, blob: _Blob, progress: ProgressSink
    ) -> None:
        """HEAD the target (skip), mount from a known repository, else stream it across."""
        async with self._blob_slots:
            client = self.client
            name = _short(blob.digest)
            if await client.blob_exists(dst.registry, dst.repository, blob.digest):
                self._remember(dst, blob.digest)
                progress(BlobDone(name, blob.size))
                return
            location: str | None = None
            known = self._known.get((dst.registry, blob.digest))
            if known and known != dst.repository:
                location = await client.mount_blob(dst.registry, dst.repository, blob.digest, known)
                if location is None:
                    self._remember(dst, blob.digest)
                    progress(BlobDone(name, blob.size))
                    return
            if location is None:
                location = await client.start_upload(dst.registry, dst.repository)
            try:
                await self._stream(src, dst, blob, location, progress)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        client.cancel_upload(dst.registry, dst.repository, location)
                    )
                raise
            self._remember(dst, blob.digest)
            progress(BlobDone(name, blob.size))

    async def _head(self, ref: ImageRef, reference: str) -> str | None:
        return await self._retry(
            lambda: self.client.head_manifest(ref.registry, ref.repository, reference)
        )

    def _streams_to(self, registry: str) -> Streams:
        """The measure of the link to ``registry``, shared by every blob read from it."""
        host = canonical_host(registry)
        streams = self._streams.get(host)
        if streams is None:
            streams = self._streams[host] = Streams()
        return streams

    def _remember(self, dst: ImageRef, digest: str) -> None:
        self._known[(dst.registry, digest)] = dst.repository

    async def _stream(
        self, src: ImageRef, dst: ImageRef, blob: _Blob, location: str, progress: ProgressSink
    ) -> None:
        """Source -> target PATCH, hashing on the way; PUT (commit) only when it matches.

        The source side is a ``BlobReader``: one resumable stream, or ranged reads of a large
        blob in parallel, handed on in order.
        """
        name = _short(blob.digest)
        size = blob.size
        failure: list[BaseException] = []

        async def body(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            hasher = _Hasher(threaded=size is None or size >= _HASH_IN_THREAD)
            done = reported = 0
            try:
                async for chunk in chunks:
                    await hasher.update(chunk)
                    done += len(chunk)
                    if size is not None and done > size:
                        raise DigestMismatch(src.registry, f"{blob.digest} is too long")
                    if done - reported >= _PROGRESS_STEP:
                        reported = done
                        progress(BlobProgress(name, done, size))
                    yield chunk
                actual = f"sha256:{await hasher.hexdigest()}"
                if actual != blob.digest or (size is not None and done != size):
                    raise DigestMismatch(src.registry, f"{blob.digest} arrived as {actual}")
                progress(BlobProgress(name, done, size))
            except Exception as exc:  # what went wrong, before aiohttp wraps it in its own
                failure.append(exc)
                raise
            finally:
                hasher.close()

        reader = BlobReader(
            self.client,
            src.registry,
            src.repository,
            blob.digest,
            size,
            self._ranged,
            self._streams_to(src.registry),
        )
        async with reader:
            try:
                await self.client.upload_blob(
                    dst.registry, dst.repository, location, blob.digest, size, body(reader.chunks())
                )
            except Exception as exc:
                if failure and failure[0] is not exc:
                    raise failure[0] from exc
                raise


def _build(config: EngineConfig) -> RegistryEngine:
    return RegistryEngine(
        config.remote,
        referrers=config.referrers,
        ranged=Ranged(streams=config.blob_streams, spool_dir=config.spool_dir),
    )


plugin = EnginePlugin(_build, exact=True)
"""The ``registry`` entry point: exact copies, daemonless."""
