"""Wiring: settings -> store, engines, job service, policy, planner; for ``run`` and ``mirror``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from bot.planner import Planner
from bot.policy import Policy
from bot.render import RenderOptions
from bot.settings import Settings
from mirror.credentials import Credential
from mirror.engine import Engine
from mirror.engines import EngineChooser, EngineMode
from mirror.jobs import JobService, OutcomeHook
from mirror.naming import parse_target_base
from mirror.store import Store, open_store


@dataclass
class Runtime:
    settings: Settings
    store: Store
    service: JobService
    policy: Policy
    planner: Planner
    render_options: RenderOptions


def credentials(settings: Settings) -> dict[str, Credential]:
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
        login_registries=frozenset(credentials(settings)),
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
                spool_dir=settings.mirror_db.parent / "spool",
            ),
        )

    return {"docker": docker_engine, "registry": registry_engine}


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    engine: EngineMode | None = None,
    on_outcome: OutcomeHook | None = None,
) -> AsyncIterator[Runtime]:
    """Open the parts in order and close them in reverse, also when opening fails half-way."""
    async with AsyncExitStack() as stack:
        store = await open_store(settings.mirror_db)
        stack.push_async_callback(store.close)
        chooser = EngineChooser(engine or settings.mirror_engine, build_engines(settings))
        stack.push_async_callback(chooser.aclose)
        service = JobService(
            store,
            chooser,
            concurrency=settings.mirror_concurrency,
            max_bytes=settings.mirror_max_image_bytes,
            on_outcome=on_outcome,
        )
        stack.push_async_callback(service.aclose)
        policy = Policy(settings)
        yield Runtime(
            settings, store, service, policy, Planner(settings, policy), render_options(settings)
        )
