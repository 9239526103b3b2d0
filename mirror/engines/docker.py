"""The ``docker`` engine: pull by digest -> tag -> push -> put back, through the Docker SDK.

The SDK is synchronous and streams JSON events, so each copy runs in a worker thread with its
own client (docker-py clients are not thread-safe) and hands events to the event loop. The
daemon reports many failures *inside* a 200 stream, so every event is checked for ``error``;
its words (often the registry's, passed on) are read by :mod:`mirror.engines.faults`.

The daemon is borrowed (issue 23): with the host's socket mounted, its tags are the host's.
Every reference that existed before a copy exists after it, naming the same image, and only
what the copy added is removed, never forced (an image a container uses stays). So a copy
pulls the source *by digest* (``name@sha256:…``: no tag is created or moved), the platform's
own manifest when the bot can read the source itself (then that reference can only ever name
this one image), else the digest the daemon resolves; it tags the target (the one reference
it must point: ``docker push`` pushes a tag), pushes, and points that tag back where it was,
or removes it, with the digest reference the push left. Copies in this process that use the
same reference count their use of it, and the last one out removes it if none found it there.

Sizes are compressed blob bytes, as for the registry engine: the config and layers of the
source's manifest, read through the process's registry client (the remote), so the bar, the
answer and ``/inspect`` give one number. The daemon's pull progress is in those bytes; its push
progress is in uncompressed bytes, counted as its share of the compressed layer. ``measure``
says None (the daemon cannot tell sizes before a pull), so MIRROR_MAX_IMAGE_BYTES is enforced
*during* the pull, from the layer totals in the progress stream. When the bot cannot read the
source, the bytes are those of the manifest the daemon pushed, read at the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mirror.bounded import KeyedLocks
from mirror.credentials import Credentials
from mirror.deferred_import import defer
from mirror.engines.base import (
    CopyRequest,
    EngineConfig,
    EnginePlugin,
    ItemStatus,
    Outcome,
    ProgressSink,
)
from mirror.engines.faults import explain, of_daemon
from mirror.engines.remote import Remote
from mirror.errors import (
    JOB_CANCELLED,
    Cancelled,
    CopyFailed,
    EgressDenied,
    EngineUnavailable,
    MirrorError,
    PlatformMissing,
    RegistryError,
    too_large,
)
from mirror.platform import platform_of
from mirror.progress import BlobDone, BlobProgress, ProgressEvent, Stage, StageChanged
from mirror.reference import DEFAULT_TAG, ImageRef
from mirror.text import Text

# The SDK (~0.1 s) loads with the first client, not with this module: ``auto`` reads this
# module's plugin to learn what the engine copies, also when another engine does the copy.
defer("paramiko")  # docker-py needs it for ssh:// daemons only: load it there, not at start-up
defer("docker")

import docker  # noqa: E402  (after defer)

log = logging.getLogger(__name__)

_DONE_STATUSES = ("Pull complete", "Already exists", "Pushed", "Layer already exists")


class DockerEngine:
    """Copies one platform of an image through a Docker daemon (local, ``tcp://`` or ``ssh://``)."""

    name = "docker"

    def __init__(
        self,
        remote: Remote,
        docker_host: str | None = None,
        credentials: Credentials | None = None,
        *,
        timeout: int = 600,
    ) -> None:
        """``remote``: the process's registry client, shared (the chooser closes it); the
        engine reads the source's manifest through it when it can."""
        self._remote = remote
        self._owns_remote = False
        self._docker_host = docker_host
        self._credentials = dict(credentials or {})
        self._timeout = timeout
        self._local = threading.local()
        self._api_version: str | None = None
        self._clients: list[docker.APIClient] = []
        self._clients_lock = threading.Lock()
        self._locks = KeyedLocks()
        """Per daemon reference: copies take turns to look it up, use it and put it back."""
        self._shared: dict[str, _Shared] = {}
        """Digest references copies are using now (see ``_borrowing``); empty when idle."""

    @classmethod
    def standalone(
        cls,
        docker_host: str | None = None,
        credentials: Credentials | None = None,
        *,
        insecure: Iterable[str] = (),
        allowed_internal: Iterable[str] | None = None,
        timeout: int = 600,
    ) -> DockerEngine:
        """An engine with a registry client of its own, closed with it: for a script or a
        test that copies with this engine alone (the bot shares one remote)."""
        remote = Remote(credentials, insecure=insecure, allowed_internal=allowed_internal)
        engine = cls(remote, docker_host, credentials, timeout=timeout)
        engine._owns_remote = True
        return engine

    # -- plumbing -----------------------------------------------------------------------------

    def _client(self) -> docker.APIClient:
        """One low-level client per worker thread. The first asks the daemon its API version;
        the others reuse it rather than each paying that round trip."""
        client: docker.APIClient | None = getattr(self._local, "client", None)
        if client is None:
            version = self._api_version or "auto"
            try:
                if self._docker_host:
                    client = docker.APIClient(
                        base_url=self._docker_host, version=version, timeout=self._timeout
                    )
                else:
                    client = docker.from_env(version=version, timeout=self._timeout).api
            except docker.errors.DockerException as exc:
                raise self._unavailable() from exc
            self._api_version = client.api_version
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _unavailable(self) -> EngineUnavailable:
        if self._docker_host:
            return EngineUnavailable(
                Text("The Docker daemon at `{host}` does not answer.", host=self._docker_host)
            )
        return EngineUnavailable(Text("The Docker daemon does not answer."))

    def _auth(self, registry: str) -> dict[str, str] | None:
        cred = self._credentials.get(registry)
        if cred is None:
            return None  # docker-py falls back to ~/.docker/config.json
        return {"username": cred.username, "password": cred.password}

    async def _run(self, fn: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(fn)
        except MirrorError:
            raise
        except Exception as exc:
            if _daemon_down(exc):
                raise self._unavailable() from exc
            raise

    # -- protocol -----------------------------------------------------------------------------

    async def ensure_available(self) -> None:
        try:
            await self._run(lambda: self._client().ping())
        except docker.errors.APIError as exc:
            raise self._unavailable() from exc

    async def _registry_digest(self, ref: ImageRef) -> str:
        """The digest the registry holds for ``ref``, asked through the daemon (its auth)."""
        info = await self._run(
            lambda: self._client().inspect_distribution(
                _pullable(ref), auth_config=self._auth(ref.registry)
            )
        )
        return str(info["Descriptor"]["digest"])

    async def source_digest(self, request: CopyRequest) -> str:
        try:
            return await self._registry_digest(request.source)
        except docker.errors.APIError as exc:
            raise _explain(exc, request.source, pushing=False) from exc

    async def target_digest(self, target: ImageRef) -> str | None:
        try:
            return await self._registry_digest(target)
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc).lower()
            if "unknown" in text or "not found" in text:
                return None
            raise _explain(exc, target, pushing=True) from exc

    async def measure(self, request: CopyRequest) -> None:
        """Not before the pull: the daemon does not tell layer sizes (see the module)."""
        return None

    async def copy(self, request: CopyRequest, progress: ProgressSink) -> Outcome:
        """Pull the platform's image by digest, tag it as the target, push, and put the
        daemon's references back as they were (see the module)."""
        if request.platform is None:
            raise CopyFailed(
                Text(
                    "The docker engine copies one platform at a time; use the registry engine "
                    "for --platform all."
                )
            )
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def hand_on(events: tuple[ProgressEvent, ...]) -> None:
            for event in events:
                progress(event)

        def emit(*events: ProgressEvent) -> None:
            # One callback for events that belong together (a stage and its blobs' sizes),
            # so nobody on the loop sees half of them.
            loop.call_soon_threadsafe(hand_on, events)

        wanted = await self._resolve(request)
        local = f"{request.source.name}@{wanted.digest}"
        # By the index's digest the daemon keeps one image per reference, whatever platform
        # each copy asks for: such copies take turns, and the reference is theirs alone.
        try:
            async with self._borrowing(local, exclusive=wanted.index):
                image = await self._run(lambda: self._pull(request, wanted, local, emit, stop))
                target_digest = await self._push_as(image, request.target, wanted, emit, stop)
        except asyncio.CancelledError:
            stop.set()
            raise
        except docker.errors.APIError as exc:
            raise _explain(exc, request.source, pushing=False) from exc
        if wanted.bytes is not None:
            pushed_bytes: int | None = wanted.bytes
        else:
            pushed_bytes = await self._pushed_bytes(request.target, target_digest)
        return Outcome(
            ItemStatus.SUCCEEDED,
            engine=self.name,
            source_digest=wanted.top,
            target_digest=target_digest,
            bytes=pushed_bytes,
        )

    async def _resolve(self, request: CopyRequest) -> _Wanted:
        """What to pull: the platform's own manifest, by digest, read by the bot itself when
        it reaches the source; else (a daemon on another machine, say) the digest the daemon
        resolves the reference to."""
        src = request.source
        try:
            return await self._read_source(request)
        except (RegistryError, EgressDenied) as exc:
            log.info("the bot cannot read %s itself (%s); the daemon resolves it", src, exc)
        try:
            info = await self._run(
                lambda: self._client().inspect_distribution(
                    _pullable(src), auth_config=self._auth(src.registry)
                )
            )
        except docker.errors.APIError as exc:
            raise _explain(exc, src, pushing=False) from exc
        from mirror.engines.registry.client import INDEX_TYPES

        descriptor = info["Descriptor"]
        top = src.digest or str(descriptor["digest"])
        return _Wanted(top, top, index=descriptor.get("mediaType") in INDEX_TYPES)

    async def _read_source(self, request: CopyRequest) -> _Wanted:
        from mirror.engines.registry.client import INDEX_TYPES, descriptors

        src, platform = request.source, request.platform
        client = self._remote.client
        top = await client.get_manifest(
            src.registry, src.repository, src.digest or src.tag or DEFAULT_TAG
        )
        manifest = top
        if top.media_type in INDEX_TYPES:
            entries = descriptors(top.document().get("manifests"))
            entry = next((e for e in entries if platform_of(e) == platform), None)
            if entry is None:
                offered = sorted({str(p) for p in map(platform_of, entries) if p is not None})
                raise PlatformMissing(
                    Text(
                        "`{image}` has no image for {platform} (it has {offered}).",
                        image=src.familiar,
                        platform=str(platform),
                        offered=", ".join(offered),
                    ),
                    str(platform),
                )
            manifest = await client.get_manifest(
                src.registry,
                src.repository,
                entry["digest"],
                extra_types=[str(entry.get("mediaType", ""))],
            )
        doc = manifest.document()
        blobs = [
            (str(d["digest"]), d["size"])
            for d in descriptors(doc.get("config")) + descriptors(doc.get("layers"))
            if isinstance(d.get("size"), int)
        ]
        config = descriptors(doc.get("config"))
        return _Wanted(
            top.digest,
            manifest.digest,
            config=blobs[0] if config and blobs and blobs[0][0] == config[0]["digest"] else None,
            layers=tuple(b for b in blobs if not config or b[0] != config[0]["digest"]),
        )

    @contextlib.asynccontextmanager
    async def _borrowing(self, ref: str, *, exclusive: bool) -> AsyncIterator[None]:
        """Use the daemon's reference ``ref`` for a copy, and remove it after the last copy
        that used it, unless it was there before the first one (the host's own)."""
        if exclusive:
            async with self._locks.hold(ref):
                before = await self._image_id(ref)
                try:
                    yield
                finally:
                    if before is None:
                        await self._cleanup(ref)
            return
        async with self._locks.hold(ref):
            held = self._shared.get(ref)
            if held is None:
                held = self._shared[ref] = _Shared(await self._image_id(ref))
            held.users += 1
        try:
            yield
        finally:
            async with self._locks.hold(ref):
                held.users -= 1
                if held.users == 0:
                    del self._shared[ref]
                    if held.before is None:
                        await self._cleanup(ref)

    async def _push_as(
        self,
        image: _Local,
        target: ImageRef,
        wanted: _Wanted,
        emit: _Emit,
        stop: threading.Event,
    ) -> str:
        """Tag ``image`` as the target and push it; the target's tag then names what it
        named before (or nothing, when the copy made it)."""
        tag = f"{target.name}:{target.tag}"
        async with self._locks.hold(tag):
            before = await self._image_id(tag)
            digests = await self._digest_refs(target.name)
            try:
                await self._run(
                    lambda: self._client().tag(image.id, target.name, target.tag, force=True)
                )
                return str(await self._run(lambda: self._push(target, wanted, image, emit, stop)))
            finally:
                # A push leaves a digest reference (``name@sha256:…``) besides the tag.
                for ref in sorted(await self._digest_refs(target.name) - digests):
                    await self._cleanup(ref)
                if before is None:
                    await self._cleanup(tag)
                elif before != image.id:
                    await self._restore(tag, before)

    async def _image_id(self, ref: str) -> str | None:
        """The image ``ref`` names in the daemon now, or None."""

        def look() -> str | None:
            try:
                return str(self._client().inspect_image(ref)["Id"])
            except docker.errors.NotFound:
                return None

        found: str | None = await self._run(look)
        return found

    async def _digest_refs(self, name: str) -> set[str]:
        """The digest references (``name@sha256:…``) the daemon holds for repository ``name``."""

        def look() -> set[str]:
            found: set[str] = set()
            for image in self._client().images(name=name):
                found.update(
                    ref for ref in image.get("RepoDigests") or () if ref.rpartition("@")[0] == name
                )
            return found

        refs: set[str] = await self._run(look)
        return refs

    async def _restore(self, tag: str, image_id: str) -> None:
        name, _, version = tag.rpartition(":")
        with contextlib.suppress(MirrorError, docker.errors.APIError):
            await asyncio.shield(
                self._run(lambda: self._client().tag(image_id, name, version, force=True))
            )

    async def _pushed_bytes(self, target: ImageRef, digest: str) -> int | None:
        """Compressed bytes of what was pushed, from its manifest at the target registry;
        None (unknown, logged) when the bot cannot read it, e.g. the daemon is elsewhere."""
        try:
            manifest = await self._remote.client.get_manifest(
                target.registry, target.repository, digest
            )
        except RegistryError as exc:
            log.warning("could not read the size of %s@%s: %s", target, digest, exc)
            return None
        return sum(size or 0 for size in manifest.blobs().values())

    async def aclose(self) -> None:
        """Close the client of every worker thread that made one (and the remote, if ours)."""
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        self._local = threading.local()
        if self._owns_remote:
            await self._remote.aclose()

    # -- blocking steps (worker threads) --------------------------------------------------------

    def _pull(
        self,
        request: CopyRequest,
        wanted: _Wanted,
        local: str,
        emit: _Emit,
        stop: threading.Event,
    ) -> _Local:
        """Pull ``local`` (the source by digest: no tag is created or moved) and return the
        image it names, checked to be the platform asked for."""
        src = request.source
        client = self._client()
        with contextlib.suppress(docker.errors.NotFound):
            there = client.inspect_image(local)
            if wanted.index and not _is_platform(there, request):
                # The daemon never moves a digest reference: this one keeps naming the
                # other platform's image, and nothing would say which image a pull brought.
                raise CopyFailed(
                    Text(
                        "The Docker daemon already holds `{image}` for another platform under "
                        "the same digest, so the bot cannot tell which image it would pull for "
                        "{platform}; let the bot reach `{registry}` itself, or copy with the "
                        "registry engine.",
                        image=src.familiar,
                        platform=str(request.platform),
                        registry=src.registry,
                    )
                )
        names = wanted.pull_names()
        sizes = [BlobProgress(_short(d), 0, size) for d, size in wanted.blobs()]
        emit(StageChanged(Stage.COPYING), *sizes)
        stream = client.pull(
            src.name,
            tag=wanted.digest,
            platform=str(request.platform),
            stream=True,
            decode=True,
            auth_config=self._auth(src.registry),
        )
        totals: dict[str, int] = {}
        for event in _checked(stream, stop, src, pushing=False):
            status = str(event.get("status", ""))
            _forward(event, emit, progress_status="Downloading", names=names)
            if request.max_bytes is not None and status == "Downloading":
                total = (event.get("progressDetail") or {}).get("total")
                if isinstance(total, int) and isinstance(event.get("id"), str):
                    totals[event["id"]] = total
                    if sum(totals.values()) > request.max_bytes:
                        # leaving the stream closes it, and the daemon stops the pull
                        raise too_large(src, sum(totals.values()), request.max_bytes, at_least=True)
        image = client.inspect_image(local)
        _check_platform(image, request)
        if wanted.config is not None:
            emit(BlobDone(_short(wanted.config[0]), wanted.config[1]))
        layers = (image.get("RootFS") or {}).get("Layers") or []
        return _Local(str(image["Id"]), tuple(str(layer) for layer in layers))

    def _push(
        self,
        target: ImageRef,
        wanted: _Wanted,
        image: _Local,
        emit: _Emit,
        stop: threading.Event,
    ) -> str:
        names = wanted.push_names(image.diff_ids)
        sizes = [BlobProgress(_short(d), 0, size) for d, size in wanted.blobs()]
        emit(StageChanged(Stage.PUSHING), *sizes)
        stream = self._client().push(
            target.name,
            tag=target.tag,
            stream=True,
            decode=True,
            auth_config=self._auth(target.registry),
        )
        digest: str | None = None
        logged_in = self._auth(target.registry) is not None
        for event in _checked(stream, stop, target, pushing=True, logged_in=logged_in):
            aux = event.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
            _forward(event, emit, progress_status="Pushing", names=names)
        if digest is None:
            raise CopyFailed(
                Text(
                    "The push of `{target}` ended without a digest from the registry.",
                    target=target,
                )
            )
        if wanted.config is not None:
            emit(BlobDone(_short(wanted.config[0]), wanted.config[1]))
        return digest

    def _remove(self, name: str) -> None:
        try:
            self._client().remove_image(name)
        except docker.errors.APIError as exc:
            log.info("could not remove local image %s: %s", name, exc.explanation)

    async def _cleanup(self, name: str) -> None:
        """Remove a reference the copy made. Best effort: a failed removal must not turn a
        good copy into a failure; never forced, so an image a container uses stays; finished
        even when the copy is cancelled meanwhile."""
        with contextlib.suppress(MirrorError):
            await asyncio.shield(self._run(lambda: self._remove(name)))


class _Emit(Protocol):
    """Hands progress events to the event loop, from a worker thread, all in one callback."""

    def __call__(self, *events: ProgressEvent) -> None: ...


@dataclass(frozen=True)
class _Wanted:
    """What a copy pulls. ``top``: the digest the source's reference names (an index, or the
    image's manifest); ``digest``: the one pulled, the platform's own manifest when the bot
    read the source, else ``top`` (then ``index`` says whether it is an index). ``config``
    and ``layers`` (digest, compressed size), when the bot read the manifest: the sizes
    progress and the answer count, the bytes /inspect shows."""

    top: str
    digest: str
    index: bool = False
    config: tuple[str, int] | None = None
    layers: tuple[tuple[str, int], ...] = ()

    def blobs(self) -> list[tuple[str, int]]:
        """Config and layers, when known."""
        return [self.config, *self.layers] if self.config is not None else []

    @property
    def bytes(self) -> int | None:
        if self.config is None:
            return None
        return sum(size for _, size in self.blobs())

    def pull_names(self) -> dict[str, tuple[str, int | None]]:
        """The daemon's name of each layer in a pull (its digest, short) -> ours and its size."""
        return {_short(d): (_short(d), size) for d, size in self.layers}

    def push_names(self, diff_ids: Sequence[str]) -> dict[str, tuple[str, int | None]]:
        """A push names layers by their uncompressed digest, in the manifest's order: each
        is counted as the compressed layer it was pulled as, so the sizes stay the same."""
        if len(diff_ids) != len(self.layers):
            return {}
        return {
            _short(diff): (_short(d), size)
            for diff, (d, size) in zip(diff_ids, self.layers, strict=True)
        }


@dataclass(frozen=True)
class _Local:
    """The image a pull left in the daemon: its id and its layers' uncompressed digests."""

    id: str
    diff_ids: tuple[str, ...]


@dataclass
class _Shared:
    """A digest reference copies are using: the image it named before the first of them
    (None: it did not exist, so the last one removes it) and how many use it now."""

    before: str | None
    users: int = 0


def _short(digest: str) -> str:
    """How the daemon names a layer in its progress: 12 hex digits of the digest."""
    return digest.split(":", 1)[-1][:12]


def _is_platform(image: dict[str, Any], request: CopyRequest) -> bool:
    try:
        _check_platform(image, request)
    except PlatformMissing:
        return False
    return True


def _check_platform(image: dict[str, Any], request: CopyRequest) -> None:
    """Older daemons hand back a single-platform image whatever platform was asked for."""
    wanted = request.platform
    assert wanted is not None
    got_os, got_arch = image.get("Os"), image.get("Architecture")
    got_variant = image.get("Variant") or None
    if (got_os, got_arch) != (wanted.os, wanted.architecture) or (
        wanted.variant and got_variant and wanted.variant != got_variant
    ):
        found = "/".join(p for p in (got_os, got_arch, got_variant) if p)
        raise PlatformMissing(
            Text(
                "`{image}` has no image for {platform} (it is {found} only).",
                image=request.source.familiar,
                platform=str(wanted),
                found=found,
            ),
            str(wanted),
        )


def _pullable(ref: ImageRef) -> str:
    """The full name to pull, which is also the name the daemon stores the image under."""
    return f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag}"


def _checked(
    stream: Iterator[dict[str, Any]],
    stop: threading.Event,
    ref: ImageRef,
    *,
    pushing: bool,
    logged_in: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yield stream events, raising on an in-band ``error`` or a cancellation."""
    for event in stream:
        if stop.is_set():
            raise Cancelled(JOB_CANCELLED)
        if event.get("error"):
            said = str(event["error"])
            raise explain(of_daemon(said, ref.registry), ref, pushing=pushing, logged_in=logged_in)
        yield event


def _forward(
    event: dict[str, Any],
    emit: _Emit,
    *,
    progress_status: str,
    names: Mapping[str, tuple[str, int | None]],
) -> None:
    """One event of the daemon's stream as progress. A layer in ``names`` is counted in its
    compressed size (a push reports the uncompressed bytes it reads: their share is kept)."""
    layer = event.get("id")
    status = str(event.get("status", ""))
    if not layer or not isinstance(layer, str):
        return
    blob, size = names.get(layer, (layer, None))
    if status == progress_status:
        detail = event.get("progressDetail") or {}
        current, total = detail.get("current"), detail.get("total")
        if not isinstance(current, int):
            return
        total = total if isinstance(total, int) and total > 0 else None
        if size is not None and total is not None:
            emit(BlobProgress(blob, min(size, current * size // total), size))
        elif size is None:
            emit(BlobProgress(blob, current, total))
    elif status in _DONE_STATUSES or status.startswith("Mounted from"):
        emit(BlobDone(blob, size))


def _explain(exc: docker.errors.APIError, ref: ImageRef, *, pushing: bool) -> MirrorError:
    """A refusal the daemon answered with (not one inside a stream), for a person."""
    said = str(exc.explanation or exc)
    return explain(of_daemon(said, ref.registry), ref, pushing=pushing)


def _daemon_down(exc: Exception) -> bool:
    """No answer from the daemon; an ``APIError`` is an answer (a refusal), explained."""
    import requests.exceptions  # loaded with the SDK by now
    import urllib3.exceptions

    if isinstance(exc, docker.errors.APIError):
        return False
    ssh = sys.modules.get("paramiko")  # an ssh:// daemon's connection fails in paramiko
    if ssh is not None and isinstance(exc, ssh.SSHException):
        return True
    return isinstance(
        exc,
        requests.exceptions.RequestException
        | urllib3.exceptions.HTTPError
        | docker.errors.DockerException
        | OSError,  # an ssh:// host that does not resolve or refuses
    )


def _build(config: EngineConfig) -> DockerEngine:
    return DockerEngine(config.remote, config.docker_host, config.credentials)


plugin = EnginePlugin(_build, exact=False)
"""The ``docker`` entry point: one platform at a time, through a Docker daemon."""
