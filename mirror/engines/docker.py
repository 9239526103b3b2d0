"""The ``docker`` engine: pull -> tag -> push -> remove, through the Docker SDK.

The SDK is synchronous and streams JSON events, so each copy runs in a worker thread with its
own client (docker-py clients are not thread-safe) and hands events to the event loop. The
daemon reports many failures *inside* a 200 stream, so every event is checked for ``error``;
its words (often the registry's, passed on) are read by :mod:`mirror.engines.faults`.

Sizes are compressed blob bytes, as for the registry engine. The daemon cannot tell them
before a pull (its distribution inspect gives the manifest's descriptor and platforms, not
layer sizes), so ``measure`` says None and MIRROR_MAX_IMAGE_BYTES is enforced *during* the
pull, from the layer totals in the progress stream: the pull stops as soon as they add up to
more than the limit. The bytes reported after a copy are read from the manifest the daemon
pushed, at the target registry, through the process's shared registry client (the remote).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

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
    EngineUnavailable,
    MirrorError,
    PlatformMissing,
    RegistryError,
    too_large,
)
from mirror.progress import BlobDone, BlobProgress, ProgressEvent, Stage, StageChanged
from mirror.reference import ImageRef
from mirror.text import Text

# The SDK (~0.1 s) loads with the first client, not with this module: ``auto`` reads this
# module's plugin to learn what the engine copies, also when another engine does the copy.
defer("paramiko")  # docker-py needs it for ssh:// daemons only: load it there, not at start-up
defer("docker")

import docker  # noqa: E402  (after defer)

log = logging.getLogger(__name__)

_DONE_STATUSES = ("Pull complete", "Already exists", "Pushed", "Layer already exists")
_DIGEST_LINE = re.compile(r"Digest: (sha256:[0-9a-f]{64})")


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
        remove_after: bool = True,
    ) -> None:
        """``remote``: the process's registry client, shared (the chooser closes it); the
        engine reads the size of what it pushed through it."""
        self._remote = remote
        self._owns_remote = False
        self._docker_host = docker_host
        self._credentials = dict(credentials or {})
        self._timeout = timeout
        self._remove_after = remove_after
        self._local = threading.local()
        self._api_version: str | None = None
        self._clients: list[docker.APIClient] = []
        self._clients_lock = threading.Lock()
        self._source_locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def standalone(
        cls,
        docker_host: str | None = None,
        credentials: Credentials | None = None,
        *,
        insecure: Iterable[str] = (),
        allowed_internal: Iterable[str] | None = None,
        timeout: int = 600,
        remove_after: bool = True,
    ) -> DockerEngine:
        """An engine with a registry client of its own, closed with it: for a script or a
        test that copies with this engine alone (the bot shares one remote)."""
        remote = Remote(credentials, insecure=insecure, allowed_internal=allowed_internal)
        engine = cls(remote, docker_host, credentials, timeout=timeout, remove_after=remove_after)
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
        if request.platform is None:
            raise CopyFailed(
                Text(
                    "The docker engine copies one platform at a time; use the registry engine "
                    "for --platform all."
                )
            )
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def emit(event: ProgressEvent) -> None:
            loop.call_soon_threadsafe(progress, event)

        lock = self._source_locks.setdefault(request.source.name, asyncio.Lock())
        pushed: str | None = None  # the target's digest, once pushed
        try:
            # Pull and tag under a per-repository lock: two platforms (or two targets) of one
            # source must not re-tag the local image under each other's feet.
            async with lock:
                emit(StageChanged(Stage.COPYING))
                try:
                    source_digest, image_id = await self._run(
                        lambda: self._pull(request, emit, stop)
                    )
                    await self._run(lambda: self._tag(image_id, request.target))
                finally:
                    if self._remove_after:  # the target tag keeps the image until pushed
                        await self._cleanup(_pullable(request.source))
            emit(StageChanged(Stage.PUSHING))
            pushed = target_digest = await self._run(lambda: self._push(request.target, emit, stop))
        except asyncio.CancelledError:
            stop.set()
            raise
        except docker.errors.APIError as exc:
            raise _explain(exc, request.source, pushing=False) from exc
        finally:
            if self._remove_after and pushed is None:
                await self._cleanup(_pullable(request.target))
        # The removal (the daemon deleting layers) and the size lookup (a registry round trip)
        # wait on different parties: overlap them. The removal goes first, so its worker thread
        # is under way before the lookup's first step runs on the event loop.
        _, pushed_bytes = await asyncio.gather(
            self._cleanup(_pullable(request.target)) if self._remove_after else _nothing(),
            self._pushed_bytes(request.target, target_digest),
        )
        return Outcome(
            ItemStatus.SUCCEEDED,
            engine=self.name,
            source_digest=source_digest,
            target_digest=target_digest,
            bytes=pushed_bytes,
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
        self, request: CopyRequest, emit: Callable[[ProgressEvent], None], stop: threading.Event
    ) -> tuple[str | None, str]:
        src = request.source
        stream = self._client().pull(
            src.name,
            tag=src.pull_reference,
            platform=str(request.platform),
            stream=True,
            decode=True,
            auth_config=self._auth(src.registry),
        )
        digest: str | None = None
        totals: dict[str, int] = {}
        for event in _checked(stream, stop, src, pushing=False):
            status = str(event.get("status", ""))
            found = _DIGEST_LINE.search(status)
            if found:
                digest = found.group(1)
            _forward(event, emit, progress_status="Downloading")
            if request.max_bytes is not None and status == "Downloading":
                total = (event.get("progressDetail") or {}).get("total")
                if isinstance(total, int) and isinstance(event.get("id"), str):
                    totals[event["id"]] = total
                    if sum(totals.values()) > request.max_bytes:
                        # leaving the stream closes it, and the daemon stops the pull
                        raise too_large(src, sum(totals.values()), request.max_bytes, at_least=True)
        image = self._client().inspect_image(_pullable(src))
        _check_platform(image, request)
        return digest, str(image["Id"])

    def _tag(self, image_id: str, target: ImageRef) -> None:
        self._client().tag(image_id, target.name, target.tag, force=True)

    def _push(
        self, target: ImageRef, emit: Callable[[ProgressEvent], None], stop: threading.Event
    ) -> str:
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
            _forward(event, emit, progress_status="Pushing")
        if digest is None:
            raise CopyFailed(
                Text(
                    "The push of `{target}` ended without a digest from the registry.",
                    target=target,
                )
            )
        return digest

    def _remove(self, name: str) -> None:
        try:
            self._client().remove_image(name)
        except docker.errors.APIError as exc:
            log.info("could not remove local image %s: %s", name, exc.explanation)

    async def _cleanup(self, name: str) -> None:
        """Best effort: a failed removal must not turn a good copy into a failure."""
        with contextlib.suppress(MirrorError):
            await self._run(lambda: self._remove(name))


async def _nothing() -> None:
    return None


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
    event: dict[str, Any], emit: Callable[[ProgressEvent], None], *, progress_status: str
) -> None:
    layer = event.get("id")
    status = str(event.get("status", ""))
    if not layer or not isinstance(layer, str):
        return
    if status == progress_status:
        detail = event.get("progressDetail") or {}
        current = detail.get("current")
        if isinstance(current, int):
            total = detail.get("total")
            emit(BlobProgress(layer, current, total if isinstance(total, int) else None))
    elif status in _DONE_STATUSES or status.startswith("Mounted from"):
        emit(BlobDone(layer))


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
    return isinstance(
        exc,
        requests.exceptions.RequestException
        | urllib3.exceptions.HTTPError
        | docker.errors.DockerException,
    )


def _build(config: EngineConfig) -> DockerEngine:
    return DockerEngine(config.remote, config.docker_host, config.credentials)


plugin = EnginePlugin(_build, exact=False)
"""The ``docker`` entry point: one platform at a time, through a Docker daemon."""
