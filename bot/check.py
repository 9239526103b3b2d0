"""``mirror-bot check``: is the configuration usable, and does every configured service answer?

One line per part, ``ok`` or ``FAILED: <one sentence>``, so an operator setting the bot up (or
a deployment pipeline) learns in seconds what is wrong, before any chat message is sent.
Chat services are asked by their adapters' plugins (``bot`` knows no chat platform).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.chat import ConfigurationError
from bot.plugins import AdapterPlugin, installed
from bot.runtime import Deployment, build_engines, build_remote, credentials
from bot.settings import Settings
from mirror.errors import MirrorError
from mirror.naming import parse_target_base
from mirror.store import StoreError, open_store

if TYPE_CHECKING:
    from mirror.credentials import Credential
    from mirror.errors import RegistryError


@dataclass(frozen=True)
class CheckResult:
    part: str
    ok: bool
    detail: str
    counts: bool = True
    """False for a note that does not make the check fail (an optional part is missing)."""
    misconfigured: bool = False
    """The part's settings themselves are wrong: ``check`` exits 2, as ``run`` would."""

    def line(self) -> str:
        if self.ok:
            return f"{self.part}: ok{f' ({self.detail})' if self.detail else ''}"
        if not self.counts:
            return f"{self.part}: not used: {self.detail}"
        return f"{self.part}: FAILED: {self.detail}"


NO_TARGET = "MIRROR_TARGET is not set; set it to REGISTRY/NAMESPACE (e.g. docker.io/yourname)."


def check_configuration(settings: Settings) -> None:
    """What the settings' own validation cannot refuse because each alone may be unset, but
    the bot cannot work without: a target to copy to. Raises :class:`ConfigurationError`,
    so ``check`` says it on its ``configuration`` line and exits 2, not "ok" and then 1."""
    if not settings.mirror_target:
        raise ConfigurationError(NO_TARGET)


async def check_target(settings: Settings) -> CheckResult:
    from mirror.errors import RegistryError

    part = "target registry"
    if not settings.mirror_target:  # check_configuration refused it already
        return CheckResult(part, False, NO_TARGET, misconfigured=True)
    try:
        registry = parse_target_base(settings.mirror_target).registry
    except MirrorError as exc:
        return CheckResult(part, False, str(exc))
    remote = build_remote(settings)
    client = remote.client
    user = credentials(settings).get(registry) or await client.credential(registry)
    try:
        async with client.request("GET", registry, "/v2/", scope=""):
            pass
    except RegistryError as exc:
        return CheckResult(part, False, _target_failed(settings, registry, user, exc))
    finally:
        await remote.aclose()
    who = f"logged in as {user.username}" if user else "no credentials; anonymous access works"
    return CheckResult(part, True, f"{registry}, {who}")


def _target_failed(
    settings: Settings, registry: str, user: Credential | None, exc: RegistryError
) -> str:
    """Why the target registry cannot be used, and what to set or run about it."""
    from mirror.errors import AccessDenied, Forbidden, TimedOut, Unreachable, Untrusted

    if isinstance(exc, AccessDenied):
        if user is None:
            return (
                f"{registry} asks for a login and none is set: set MIRROR_TARGET_USERNAME and "
                f"MIRROR_TARGET_PASSWORD, or run `docker login {registry}`."
            )
        return (
            f"{registry} refused the login of {user.username}: check "
            "MIRROR_TARGET_USERNAME and MIRROR_TARGET_PASSWORD (or `docker login`)."
        )
    if isinstance(exc, Forbidden):
        return f"{registry} resolves to an internal address the egress guard refuses."
    if isinstance(exc, Untrusted):
        return exc.detail
    if isinstance(exc, Unreachable | TimedOut):
        hint = (
            ""
            if registry in settings.mirror_insecure_registries
            else ("; a plain-HTTP registry must be listed in MIRROR_INSECURE_REGISTRIES")
        )
        return (
            f"{registry} does not answer ({exc.detail or 'no answer'}): check the address, "
            f"the network and HTTPS_PROXY{hint}."
        )
    return f"{registry} answered {exc.detail or 'with an error'}."


DOCKER_HUB_PROBE = "ratelimitpreview/test"
"""The repository Docker documents for reading its pull-limit headers: a HEAD of its manifest
is not counted as a pull."""


async def check_sources(settings: Settings) -> list[CheckResult]:
    """Each source in MIRROR_SOURCE_CREDENTIALS: does it take the login, and what is left of
    its pull limit when it says (Docker Hub: one uncounted HEAD). Sources without credentials
    cost no request: a fresh process has seen no counters, so there is nothing to show."""
    found = settings.source_credentials()
    if not found:
        return []
    from bot.render import pulls_left
    from mirror.engines.registry.auth import DOCKER_HUB, pull_scope
    from mirror.errors import AccessDenied, RegistryError

    remote = build_remote(settings)
    client = remote.client
    results = []
    try:
        for registry, cred in found.items():
            part = f"source {registry}"
            try:
                async with client.request("GET", registry, "/v2/", scope=""):
                    pass
                if registry == DOCKER_HUB:
                    probe = f"/v2/{DOCKER_HUB_PROBE}/manifests/latest"
                    async with client.request(
                        "HEAD", registry, probe, scope=pull_scope(DOCKER_HUB_PROBE)
                    ):
                        pass
            except AccessDenied:
                why = (
                    f"{registry} refused the login of {cred.username}: "
                    "check MIRROR_SOURCE_CREDENTIALS."
                )
                results.append(CheckResult(part, False, why))
                continue
            except RegistryError as exc:
                why = f"{registry} did not answer ({exc.detail or type(exc).__name__})."
                results.append(CheckResult(part, False, why))
                continue
            limit = client.pull_limit(registry)
            left = f"; {pulls_left(limit)}" if limit is not None else ""
            results.append(CheckResult(part, True, f"logged in as {cred.username}{left}"))
    finally:
        await remote.aclose()
    return results


async def check_docker(settings: Settings) -> CheckResult:
    from mirror.errors import EngineUnavailable

    part = "docker daemon"
    if settings.mirror_engine == "registry":
        return CheckResult(part, False, "MIRROR_ENGINE=registry.", counts=False)
    engines = build_engines(settings)
    engine = engines.get("docker")
    assert engine is not None
    try:
        await engine.ensure_available()
    except EngineUnavailable as exc:
        # With auto the registry engine copies unless a daemon elsewhere is the way out.
        required = settings.mirror_engine == "docker" or engines.daemon_first
        detail = str(exc) if required else f"{exc} The registry engine copies instead."
        return CheckResult(part, False, detail, counts=required)
    finally:
        await engines.aclose()
    where = settings.docker_host or "the local socket"
    if _proxy_set():  # the bot's HTTPS_PROXY reaches the registry engine, not the daemon
        where += "; proxies are the daemon's own settings"
    return CheckResult(part, True, where)


def _proxy_set() -> bool:
    import urllib.request

    return any(scheme != "no" for scheme in urllib.request.getproxies())


async def check_adapter(name: str, plugin: AdapterPlugin) -> CheckResult | None:
    """The adapter's own check, or ``None`` when the environment does not ask for it."""
    try:
        setup = plugin.configure()
    except MirrorError as exc:  # a wrong setting: `run` would not start either
        return CheckResult(name, False, str(exc), misconfigured=True)
    if setup is None:
        return None
    try:
        return CheckResult(name, True, await setup.check())
    except MirrorError as exc:  # ConfigurationError: one sentence from the adapter
        return CheckResult(name, False, str(exc))


async def check_adapters() -> list[CheckResult]:
    """Every configured chat adapter; the fallback (the console) has nothing to reach."""
    try:
        plugins = installed(asked=True)
    except MirrorError as exc:  # an adapter that cannot even be loaded
        return [CheckResult("chat adapters", False, str(exc))]
    results = [
        await check_adapter(name, plugin) for name, plugin in plugins.items() if not plugin.fallback
    ]
    return [result for result in results if result is not None]


async def check_queue(settings: Settings) -> list[CheckResult]:
    """In a queue deployment the front copies nothing itself: someone must work. Asked on
    the store's pool, as the front would."""
    if Deployment.of(settings) is Deployment.LOCAL:
        return []
    from mirror.queue.app import census

    part = "copy workers"
    try:
        store = await open_store(settings.mirror_db)
        try:
            found = await census(store)
        finally:
            await store.close()
    except StoreError as exc:
        return [CheckResult(part, False, str(exc))]
    if not found.workers:
        return [
            CheckResult(
                part,
                False,
                "no `mirror-bot worker` has beaten in the last 30 s, so copies would wait in "
                "the queue; start one where it reaches PostgreSQL, the sources and the target.",
            )
        ]
    return [
        CheckResult(
            part,
            True,
            f"{found.workers} beating; {found.waiting} copies waiting, {found.running} running",
        )
    ]


async def run_checks(settings: Settings) -> list[CheckResult]:
    return [
        await check_target(settings),
        *await check_sources(settings),
        await check_docker(settings),
        *await check_queue(settings),
        *await check_adapters(),
    ]
