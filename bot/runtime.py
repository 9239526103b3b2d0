"""Wiring: settings -> store, engines, job service, policy, planner; for ``run`` and ``mirror``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.planner import Planner
from bot.policy import Policy
from bot.render import RenderOptions
from bot.settings import Settings
from mirror.credentials import Credential
from mirror.engines import installed
from mirror.engines.base import EngineConfig
from mirror.engines.chooser import EngineChooser
from mirror.engines.remote import BLOB_CONCURRENCY, Remote, connection_limit
from mirror.errors import MirrorError
from mirror.jobs import JobService, OutcomeHook
from mirror.naming import parse_target_base
from mirror.reference import ImageRef
from mirror.store import Store, is_postgres, open_store

if TYPE_CHECKING:
    from mirror.copier import Copier
    from mirror.engines.base import CopyRequest
    from mirror.lookup import Advice, Lookups


class LazyLookups:
    """The bot's own registry reads (:mod:`mirror.lookup`), built on first use so that
    ``mirror-bot mirror`` imports no HTTP client until a miss or ``/tags`` needs one.

    ``remote``: the engines' registry client, shared (their chooser closes it); without one
    the lookups make their own and close it."""

    def __init__(self, settings: Settings, policy: Policy, remote: Remote | None = None) -> None:
        self._policy = policy
        self._owns_remote = remote is None
        self._remote = remote or build_remote(settings)
        self._lookups: Lookups | None = None

    def get(self) -> Lookups:
        if self._lookups is None:
            from mirror.lookup import Lookups

            self._lookups = Lookups(self._remote.client, allowed=self._allowed)
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
        if self._owns_remote:
            await self._remote.aclose()


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


def build_remote(settings: Settings) -> Remote:
    """The process's one registry client (built on first use): every registry request the
    engines and the lookups make goes through it."""
    return Remote(
        credentials(settings),
        insecure=settings.mirror_insecure_registries,
        allowed_internal=allowed_internal(settings),
        certs_dir=settings.mirror_certs_dir,
        connections=connection_limit(BLOB_CONCURRENCY, settings.mirror_blob_streams),
    )


def build_engines(settings: Settings, mode: str | None = None) -> EngineChooser:
    """The installed engines (``hub_mirror_bot.engines``), each built when first needed with
    the settings as an :class:`EngineConfig`, over one remote, which the chooser closes."""
    remote = build_remote(settings)
    config = EngineConfig(
        remote,
        remote.credentials,
        insecure=remote.insecure,
        allowed_internal=remote.allowed_internal,
        referrers=settings.mirror_referrers,
        blob_streams=settings.mirror_blob_streams,
        spool_dir=settings.data_dir / "spool",
        certs_dir=settings.mirror_certs_dir,
        docker_host=settings.docker_host,
    )
    return EngineChooser(mode or settings.mirror_engine, installed(), config)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    engine: str | None = None,
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
        chooser = build_engines(settings, engine)
        stack.push_async_callback(chooser.aclose)
        copier: Copier | None = None
        if front and is_postgres(settings.mirror_db):
            from mirror.queue.front import open_front  # procrastinate only for a queue

            registry = chooser.get("registry")  # reads manifests only: the size limit
            copier = await stack.enter_async_context(
                open_front(str(settings.mirror_db), measure=registry.measure if registry else None)
            )
        policy = Policy(settings)
        lookups = LazyLookups(settings, policy, chooser.remote)
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
