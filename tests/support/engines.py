"""Engine configurations for tests that build a chooser themselves, as ``bot.runtime`` does."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mirror.credentials import Credentials
from mirror.engines.base import EngineConfig, EnginePlugin
from mirror.engines.registry.engine import RegistryEngine
from mirror.engines.registry.hosts import LONG_RETRY_AFTER
from mirror.engines.remote import Remote


def engine_config(
    credentials: Credentials | None = None,
    *,
    insecure: Iterable[str] = (),
    allowed_internal: Iterable[str] | None = None,
    docker_host: str | None = None,
    long_retry_after: float = LONG_RETRY_AFTER,
) -> EngineConfig:
    """A configuration over a remote of its own (the chooser given it closes it)."""
    remote = Remote(
        credentials,
        insecure=insecure,
        allowed_internal=allowed_internal,
        long_retry_after=long_retry_after,
    )
    return EngineConfig(
        remote,
        remote.credentials,
        insecure=remote.insecure,
        allowed_internal=remote.allowed_internal,
        docker_host=docker_host,
    )


def registry_with(**options: Any) -> EnginePlugin:
    """The registry engine's plugin with a test's own options (``attempts``, ``retry_wait``)."""
    return EnginePlugin(lambda config: RegistryEngine(config.remote, **options), exact=True)
