"""Which engine copies a request: the ``auto`` rule of DESIGN.md, in one place."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from mirror.artifacts import ArtifactKind
from mirror.engine import CopyRequest, Engine
from mirror.errors import EngineUnavailable
from mirror.reference import ImageRef
from mirror.text import Text, text_of

if TYPE_CHECKING:
    from mirror.registry.hosts import PullLimit

EngineMode = Literal["auto", "docker", "registry"]


@runtime_checkable
class Inspector(Protocol):
    """An engine that can tell what a source is from its manifest."""

    async def artifact_kind(self, ref: ImageRef) -> ArtifactKind: ...


@runtime_checkable
class LimitReporter(Protocol):
    """An engine that keeps what sources said of their pull limits (``RateLimit-*``)."""

    def pull_limits(self) -> dict[str, PullLimit]: ...


class EngineChooser:
    """Picks the engine per request.

    ``auto`` prefers the daemon for a single platform and the registry engine whenever only
    an exact copy will do: every platform, a digest reference that must keep pulling by
    digest, or an artifact that is not an image (a Helm chart: the daemon cannot pull it).
    Each falls back to the other when it cannot work right now.
    """

    def __init__(self, mode: EngineMode, factories: Mapping[str, Callable[[], Engine]]) -> None:
        self.mode = mode
        self._factories = dict(factories)
        self._engines: dict[str, Engine] = {}

    def get(self, name: str) -> Engine | None:
        """Built on first use: a script that only needs one engine never imports the other."""
        if name not in self._engines:
            factory = self._factories.get(name)
            if factory is None:
                return None
            self._engines[name] = factory()
        return self._engines[name]

    def preference(self, request: CopyRequest) -> list[str]:
        if self.mode != "auto":
            return [self.mode]
        if request.platform is None:
            return ["registry"]
        if request.source.digest is not None:
            return ["registry", "docker"]
        return ["docker", "registry"]

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
        """Whether the source is an image a daemon can pull, asked of the engine that can
        tell from the manifest (charts, WASM modules and other artifacts are not)."""
        inspector = self.get("registry")
        if not isinstance(inspector, Inspector):
            return True
        return (await inspector.artifact_kind(request.source)).runnable

    async def choose(self, request: CopyRequest) -> Engine:
        names = self.preference(request)
        if self.mode == "auto" and names[0] == "docker" and not await self._runnable(request):
            names = ["registry"]  # only an exact copy can carry an artifact
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
        that copies, else of the registry engine (the daemon cannot tell before pulling);
        None when neither can."""
        size = await (await self.choose(request)).measure(request)
        registry = self.get("registry")
        if size is None and registry is not None:
            size = await registry.measure(request)
        return size

    async def health(self) -> dict[str, str | None]:
        """Each engine tried, with None when it can work or the reason it cannot.

        Stops at the first that can work (the registry engine first in ``auto``: it needs no
        daemon), so a health probe costs one cheap check when things are well.
        """
        names: list[str] = ["registry", "docker"] if self.mode == "auto" else [self.mode]
        _, tried = await self._first_available(names)
        return tried

    def pull_limits(self) -> dict[str, PullLimit]:
        """Each registry's pull-limit counters as last seen by any engine built so far (none
        is built for this: nothing seen means nothing to say)."""
        seen: dict[str, PullLimit] = {}
        for engine in self._engines.values():
            if isinstance(engine, LimitReporter):
                for host, limit in engine.pull_limits().items():
                    if host not in seen or seen[host].seen_at < limit.seen_at:
                        seen[host] = limit
        return seen

    async def aclose(self) -> None:
        for engine in self._engines.values():
            await engine.aclose()
