"""Wiring: settings -> store, engines, job service, policy, planner, and the copy queue when
the deployment has one; for ``run``, ``worker`` and ``mirror``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from bot.chat import ConfigurationError
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
from mirror.quota import Budget
from mirror.reference import ImageRef
from mirror.store import Store, is_postgres, open_store

if TYPE_CHECKING:
    from mirror.copier import Copier
    from mirror.engines.base import CopyRequest
    from mirror.helm_repo import HelmRepos
    from mirror.lookup import Advice, Lookups
    from mirror.queue.app import Queue

NEEDS_POSTGRES = (
    "MIRROR_DB: `mirror-bot worker` takes its copies from a PostgreSQL queue; set MIRROR_DB "
    "to the postgresql:// URL the chat front uses."
)


class Deployment(Enum):
    r"""How the bot is laid out, decided once, here, from ``MIRROR_DB``; everything that
    differs between the two asks :attr:`Runtime.deployment` (or :meth:`of`).

    - ``LOCAL`` (a SQLite file): ``mirror-bot run`` copies and checks the watches itself.
    - ``QUEUE`` (PostgreSQL): ``mirror-bot run`` is the chat front, which queues its copies
      and posts what the watches saw move; ``mirror-bot worker``\ s copy and check the
      watches (:mod:`mirror.queue`).

    ``mirror-bot mirror`` copies by itself in either.
    """

    LOCAL = "local"
    QUEUE = "queue"

    @classmethod
    def of(cls, settings: Settings) -> Deployment:
        return cls.QUEUE if is_postgres(settings.mirror_db) else cls.LOCAL


class Role(Enum):
    """This process's part; in a ``QUEUE`` deployment a front or a worker opens the queue."""

    ALONE = "alone"
    """Copies by itself (``mirror-bot mirror``)."""
    FRONT = "front"
    """``mirror-bot run``: the chat; with a queue, its copies go to the workers."""
    WORKER = "worker"
    """``mirror-bot worker``: runs the queue's copies and watch checks."""


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

    def helm_repos(self) -> HelmRepos:
        """Charts from HTTP Helm repositories, through the remote's egress guard and TLS trust."""
        from mirror.egress import EgressGuard
        from mirror.helm_repo import HelmRepos

        return HelmRepos(EgressGuard(self._remote.allowed_internal), self._remote.client.ssl_for)

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
    deployment: Deployment
    queue: Queue | None = None
    """The copy queue, open for a front or a worker of a ``QUEUE`` deployment."""


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
        web_url=settings.mirror_web_url,
    )


def allowed_internal(settings: Settings) -> set[str]:
    """Internal hosts the registry engine may reach: the ones the operator named."""
    named = {s for s in settings.mirror_allowed_sources if not s.startswith("*.")}
    named.update(settings.mirror_insecure_registries)
    if settings.mirror_target:
        named.add(parse_target_base(settings.mirror_target).registry)
    return named


def budget(settings: Settings, role: Role) -> Budget:
    """What each copy must fit: the target's room always; people's quotas where people ask
    (the bot), not for a script (``mirror-bot mirror``), and never for the admins."""
    return Budget(
        quota=settings.mirror_quota if role is not Role.ALONE else None,
        max_repos=settings.mirror_target_max_repos,
        exempt=frozenset(settings.mirror_admins),
    )


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
    role: Role = Role.ALONE,
) -> AsyncIterator[Runtime]:
    """Open the parts in order and close them in reverse, also when opening fails half-way.

    ``wait_for_limits``: the bot's jobs wait for a source's pull limit to lift and go on by
    themselves; a script (``mirror-bot mirror``) is told when it lifts instead. ``asks``:
    somebody can answer a question (a chat), so images over MIRROR_CONFIRM_BYTES wait for one;
    a script is never asked. ``role``: with a ``QUEUE`` deployment a front queues its copies
    for the workers instead of copying them itself; a worker needs one.
    """
    deployment = Deployment.of(settings)
    if role is Role.WORKER and deployment is Deployment.LOCAL:
        raise ConfigurationError(NEEDS_POSTGRES)
    async with AsyncExitStack() as stack:
        store = await open_store(settings.mirror_db)
        stack.push_async_callback(store.close)
        options = render_options(settings)
        if settings.mirror_webhook_url:  # every finished image adds a delivery to the outbox
            from bot.webhook_payload import webhook_payload

            store.set_outbox(webhook_payload(options))
        chooser = build_engines(settings, engine)
        stack.push_async_callback(chooser.aclose)
        queue, copier = await _open_queue(stack, deployment, role, store, chooser)
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
            budget=budget(settings, role),
        )
        stack.push_async_callback(service.aclose)
        yield Runtime(
            settings,
            store,
            service,
            policy,
            Planner(settings, policy),
            options,
            lookups,
            deployment,
            queue,
        )


async def _open_queue(
    stack: AsyncExitStack,
    deployment: Deployment,
    role: Role,
    store: Store,
    chooser: EngineChooser,
) -> tuple[Queue | None, Copier | None]:
    """The copy queue, for a front or a worker of a ``QUEUE`` deployment, on the store's pool;
    and a front's copier on it (without one, the job service copies in this process)."""
    if deployment is Deployment.LOCAL or role is Role.ALONE:
        return None, None
    from mirror.queue.app import open_queue  # procrastinate only for a queue
    from mirror.queue.front import open_front

    queue = await stack.enter_async_context(open_queue(store))
    if role is Role.WORKER:
        return queue, None
    registry = chooser.get("registry")  # reads manifests only: the size limit
    measure = registry.measure if registry else None
    return queue, await stack.enter_async_context(open_front(queue, measure=measure))
