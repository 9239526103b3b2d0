"""Which engine copies a request: the ``auto`` rule of DESIGN.md, in one place."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mirror.engines import AUTO
from mirror.engines.base import CopyRequest, Engine, EngineConfig, EnginePlugin, Inspector
from mirror.errors import EngineUnavailable
from mirror.text import Text, text_of

if TYPE_CHECKING:
    from mirror.engines.registry.hosts import PullLimit
    from mirror.engines.remote import Remote


def daemon_is_the_way_out(docker_host: str | None) -> bool:
    """Whether ``DOCKER_HOST`` names a daemon on another machine (``ssh://``, or ``tcp://``
    to a host that is not this one): the configuration saying the copies go out through it,
    because that machine reaches the sources (or the target) and this one may not."""
    if not docker_host:
        return False
    try:
        url = urlsplit(docker_host)
        host = (url.hostname or "").lower().rstrip(".")
    except ValueError:
        return False  # not for us to judge: the docker engine says it cannot connect
    scheme = url.scheme.lower()
    if scheme == "ssh":
        return True
    if scheme not in ("tcp", "http", "https"):
        return False  # unix://, npipe://, fd://: a daemon on this machine
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True  # a name: another machine (a dind sidecar counts too)
    return not (address.is_loopback or address.is_unspecified)


class EngineChooser:
    """Picks the engine per request, among the installed ones (:func:`mirror.engines.installed`).

    ``auto`` prefers an exact engine (the registry engine: the copy is the source byte for
    byte, digest kept) whenever the bot reaches the source itself, which is the default: the
    others (the daemon) are the fallback when no exact engine can work. Only when the
    configuration says a daemon is the way out (``DOCKER_HOST`` on another machine, decided
    once here from the config; in queue mode each worker from its own) does a single
    platform of a tag go through the daemon first; every platform, a digest reference that
    must keep its digest, or an artifact that is not an image (a Helm chart: the daemon cannot
    pull it) still go to an exact engine first.

    Engines are built on first use, each with ``config``: a script that only needs one engine
    never imports the other's SDK. The chooser owns the config's remote (the registry client
    the engines and the lookups share) and closes it last.
    """

    def __init__(
        self, mode: str, plugins: Mapping[str, EnginePlugin], config: EngineConfig
    ) -> None:
        self.mode = mode
        self._plugins = plugins
        self.config = config
        self._engines: dict[str, Engine] = {}
        self.daemon_first = mode == AUTO and daemon_is_the_way_out(config.docker_host)
        """``auto`` with a daemon on another machine: it copies single platforms of tags."""

    @property
    def remote(self) -> Remote:
        return self.config.remote

    def get(self, name: str) -> Engine | None:
        """The engine called ``name``, built now if it was not yet; None if none is installed."""
        if name not in self._engines:
            plugin = self._plugins.get(name)
            if plugin is None:
                return None
            self._engines[name] = plugin.build(self.config)
        return self._engines[name]

    def is_exact(self, name: str) -> bool:
        """Whether the engine called ``name`` copies byte for byte (no daemon in between)."""
        plugin = self._plugins.get(name)
        return plugin is not None and plugin.exact

    def _exact(self, exact: bool) -> list[str]:
        return [name for name, plugin in self._plugins.items() if plugin.exact is exact]

    def preference(self, request: CopyRequest) -> list[str]:
        if self.mode != AUTO:
            return [self.mode]
        if request.platform is None:
            return self._exact(True)
        if self.daemon_first and request.source.digest is None:
            return self._exact(False) + self._exact(True)
        return self._exact(True) + self._exact(False)

    async def _first_available(
        self, names: list[str]
    ) -> tuple[Engine | None, dict[str, str | None]]:
        """The first of ``names`` that can work now, and each one tried: None or why not."""
        tried: dict[str, str | None] = {}
        for name in names:
            engine = self.get(name)
            if engine is None:
                continue
            try:
                await engine.ensure_available()
            except EngineUnavailable as exc:
                tried[name] = text_of(exc)
                continue
            tried[name] = None
            return engine, tried
        return None, tried

    async def _runnable(self, request: CopyRequest) -> bool:
        """Whether the source is an image a daemon can pull, asked of the exact engine that
        can tell from the manifest (charts, WASM modules and other artifacts are not)."""
        for name in self._exact(True):
            inspector = self.get(name)
            if isinstance(inspector, Inspector):
                return (await inspector.artifact_kind(request.source)).runnable
        return True

    async def choose(self, request: CopyRequest) -> Engine:
        names = self.preference(request)
        daemon_first = self.mode == AUTO and names and not self._plugins[names[0]].exact
        if daemon_first and not await self._runnable(request):
            names = self._exact(True)  # only an exact copy can carry an artifact
        engine, tried = await self._first_available(names)
        if engine is not None:
            return engine
        if tried:
            reasons = [r for r in tried.values() if r]
            said = reasons[0]
            for reason in reasons[1:]:  # each sentence stays a Text, translated on its own
                said = Text("{first} {then}", first=said, then=reason)
            raise EngineUnavailable(said)
        if request.platform is None:
            raise EngineUnavailable(
                Text(
                    "Copying every platform needs the registry engine, which is not set up here; "
                    "choose one platform with --platform."
                )
            )
        raise EngineUnavailable(Text("The {engine} engine is not set up here.", engine=self.mode))

    async def measure(self, request: CopyRequest) -> int | None:
        """Compressed bytes the copy would move, before it moves any: asked of the engine
        that copies, else of an exact engine (the daemon cannot tell before pulling); None
        when none can."""
        size = await (await self.choose(request)).measure(request)
        for name in self._exact(True):
            if size is not None:
                break
            engine = self.get(name)
            if engine is not None:
                size = await engine.measure(request)
        return size

    async def health(self) -> dict[str, str | None]:
        """Each engine tried, with None when it can work or the reason it cannot.

        Stops at the first that can work, in the order a copy of one platform tries them, so
        a health probe costs one cheap check when things are well.
        """
        if self.mode != AUTO:
            names = [self.mode]
        elif self.daemon_first:
            names = self._exact(False) + self._exact(True)
        else:
            names = self._exact(True) + self._exact(False)
        _, tried = await self._first_available(names)
        return tried

    def pull_limits(self) -> dict[str, PullLimit]:
        """Each registry's pull-limit counters as last seen by this process (the remote's)."""
        return self.remote.pull_limits()

    async def aclose(self) -> None:
        """Close the engines built, then the remote they shared."""
        for engine in self._engines.values():
            await engine.aclose()
        await self.remote.aclose()
