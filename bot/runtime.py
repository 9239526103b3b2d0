"""Wiring: settings -> store, engines, job service, policy, planner; for ``run`` and ``mirror``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.planner import Planner
from bot.policy import Policy
from bot.render import RenderOptions
from bot.settings import Settings
from mirror.credentials import Credential
from mirror.engine import Engine
from mirror.engines import EngineChooser, EngineMode
from mirror.errors import MirrorError
from mirror.jobs import JobService, OutcomeHook
from mirror.naming import parse_target_base
from mirror.reference import ImageRef
from mirror.store import Store, is_postgres, open_store

if TYPE_CHECKING:
    from mirror.copier import Copier
    from mirror.engine import CopyRequest
    from mirror.lookup import Advice, Lookups


class LazyLookups:
    """The bot's own registry reads (:mod:`mirror.lookup`), built on first use so that
    ``mirror-bot mirror`` imports no HTTP client until a miss or ``/tags`` needs one."""

    def __init__(self, settings: Settings, policy: Policy) -> None:
        self._settings = settings
        self._policy = policy
        self._lookups: Lookups | None = None

    def get(self) -> Lookups:
        if self._lookups is None:
            from mirror.egress import EgressGuard
            from mirror.lookup import Lookups
            from mirror.registry.client import RegistryClient

            settings = self._settings
            client = RegistryClient(
                credentials(settings),
                insecure=settings.mirror_insecure_registries,
                guard=EgressGuard(allowed_internal(settings)),
            )
            self._lookups = Lookups(client, allowed=self._allowed)
        return self._lookups

    def _allowed(self, ref: ImageRef) -> bool:
        try:
            self._policy.check_source(ref)
        except MirrorError:
            return False
        return True

    async def advise(self, error: MirrorError, request: CopyRequest) -> Advice | None:
        return await self.get().advise(error, request)

    async def aclose(self) -> None:
        if self._lookups is not None:
            await self._lookups.aclose()


@dataclass
class Runtime:
    settings: Settings
    store: Store
    service: JobService
    policy: Policy
    planner: Planner
    render_options: RenderOptions
    lookups: LazyLookups


def credentials(settings: Settings) -> dict[str, Credential]:
    """Every registry credential the bot was given, ahead of ~/.docker/config.json: per
    source (MIRROR_SOURCE_CREDENTIALS), and the target's push login, which wins for its host."""
    return {**settings.source_credentials(), **target_credentials(settings)}


def target_credentials(settings: Settings) -> dict[str, Credential]:
    """Push credentials for the target registry, when set (else ~/.docker/config.json)."""
    if not (settings.mirror_target and settings.mirror_target_username):
        return {}
    password = settings.mirror_target_password
    registry = parse_target_base(settings.mirror_target).registry
    return {
        registry: Credential(
            settings.mirror_target_username, password.get_secret_value() if password else ""
        )
    }


def render_options(settings: Settings) -> RenderOptions:
    return RenderOptions(
        insecure_registries=frozenset(settings.mirror_insecure_registries),
        login_registries=frozenset(target_credentials(settings)),
    )


def allowed_internal(settings: Settings) -> set[str]:
    """Internal hosts the registry engine may reach: the ones the operator named."""
    named = {s for s in settings.mirror_allowed_sources if not s.startswith("*.")}
    named.update(settings.mirror_insecure_registries)
    if settings.mirror_target:
        named.add(parse_target_base(settings.mirror_target).registry)
    return named


def build_engines(settings: Settings) -> dict[str, Callable[[], Engine]]:
    """Engine factories; each imports its SDK (docker, aiohttp) only when first needed."""

    def docker_engine() -> Engine:
        from mirror.docker_engine import DockerEngine

        return DockerEngine(
            settings.docker_host,
            credentials(settings),
            insecure=settings.mirror_insecure_registries,
            allowed_internal=allowed_internal(settings),
        )

    def registry_engine() -> Engine:
        from mirror.registry.blobread import Ranged
        from mirror.registry.engine import RegistryEngine

        return RegistryEngine(
            credentials(settings),
            insecure=settings.mirror_insecure_registries,
            allowed_internal=allowed_internal(settings),
            referrers=settings.mirror_referrers,
            ranged=Ranged(
                streams=settings.mirror_blob_streams,
                spool_dir=settings.data_dir / "spool",
            ),
            certs_dir=settings.mirror_certs_dir,
        )

    return {"docker": docker_engine, "registry": registry_engine}


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    engine: EngineMode | None = None,
    on_outcome: OutcomeHook | None = None,
    wait_for_limits: bool = True,
    asks: bool = False,
    front: bool = False,
) -> AsyncIterator[Runtime]:
    r"""Open the parts in order and close them in reverse, also when opening fails half-way.

    ``wait_for_limits``: the bot's jobs wait for a source's pull limit to lift and go on by
    themselves; a script (``mirror-bot mirror``) is told when it lifts instead. ``asks``:
    somebody can answer a question (a chat), so images over MIRROR_CONFIRM_BYTES wait for one;
    a script is never asked.
    ``front``: the chat front (``mirror-bot run``); with a PostgreSQL ``MIRROR_DB`` it queues
    its copies for ``mirror-bot worker``\ s instead of copying them itself.
    """
    async with AsyncExitStack() as stack:
        store = await open_store(settings.mirror_db)
        stack.push_async_callback(store.close)
        chooser = EngineChooser(engine or settings.mirror_engine, build_engines(settings))
        stack.push_async_callback(chooser.aclose)
        copier: Copier | None = None
        if front and is_postgres(settings.mirror_db):
            from mirror.queue.front import open_front  # procrastinate only for a queue

            registry = chooser.get("registry")  # reads manifests only: the size limit
            copier = await stack.enter_async_context(
                open_front(str(settings.mirror_db), measure=registry.measure if registry else None)
            )
        policy = Policy(settings)
        lookups = LazyLookups(settings, policy)
        stack.push_async_callback(lookups.aclose)
        service = JobService(
            store,
            chooser,
            concurrency=settings.mirror_concurrency,
            max_bytes=settings.mirror_max_image_bytes,
            on_outcome=on_outcome,
            advisor=lookups,
            wait_for_limits=wait_for_limits,
            confirm_bytes=settings.mirror_confirm_bytes if asks else None,
            copier=copier,
        )
        stack.push_async_callback(service.aclose)
        yield Runtime(
            settings,
            store,
            service,
            policy,
            Planner(settings, policy),
            render_options(settings),
            lookups,
        )
