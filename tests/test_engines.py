"""The engines' shape: found by name, one registry client per process, one fault translator.

No lab: building an engine or the registry client contacts nothing, and the translator is pure.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.runtime import open_runtime
from bot.settings import Settings
from mirror import engines
from mirror.engines.docker import DockerEngine
from mirror.engines.faults import explain, of_daemon
from mirror.engines.registry.engine import RegistryEngine
from mirror.errors import AccessDenied, CopyFailed, NotFound, SourceMissing, Unreachable
from mirror.reference import ImageRef

SOURCE = ImageRef("quay.io", "team/app", "1.0", None)
TARGET = ImageRef("registry.example.com", "mirror/app", "1.0", None)


def settings(tmp_path: Path, **more: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        mirror_db=tmp_path / "bot.db",
        mirror_target="registry.example.com/mirror",
        **more,
    )


def test_engines_are_named_by_their_entry_points() -> None:
    assert engines.modes() == ("auto", "docker", "registry")
    assert engines.is_mode("registry") and not engines.is_mode("podman")
    plugins = engines.installed()
    assert (plugins["registry"].exact, plugins["docker"].exact) == (True, False)


def test_mirror_engine_accepts_what_is_installed(tmp_path: Path) -> None:
    assert settings(tmp_path, mirror_engine="docker").mirror_engine == "docker"
    with pytest.raises(ValidationError, match="Input should be 'auto', 'docker' or 'registry'"):
        settings(tmp_path, mirror_engine="podman")


async def test_the_engines_and_the_lookups_share_one_registry_client(tmp_path: Path) -> None:
    async with open_runtime(settings(tmp_path)) as runtime:
        chooser = runtime.service.engines
        registry, docker = chooser.get("registry"), chooser.get("docker")
        assert isinstance(registry, RegistryEngine) and isinstance(docker, DockerEngine)
        client = chooser.remote.client
        assert registry.client is client
        assert runtime.lookups.get().client is client
        # One pull-limit state: what any request saw is what /status reads.
        client.host("docker.io").observe({"RateLimit-Limit": "100;w=21600"})
        assert chooser.pull_limits()["docker.io"].limit == 100


@pytest.mark.parametrize(
    ("fault", "daemon_said", "pushing", "kind"),
    [
        (
            AccessDenied("quay.io", "denied"),
            "unauthorized: authentication required",
            False,
            SourceMissing,
        ),
        (
            NotFound("quay.io", "manifest unknown"),
            "manifest unknown: manifest unknown",
            False,
            SourceMissing,
        ),
        (
            AccessDenied("registry.example.com", "authentication required"),
            "unauthorized: authentication required",
            True,
            CopyFailed,
        ),
    ],
)
def test_a_fault_says_the_same_whichever_engine_met_it(
    fault: AccessDenied | NotFound, daemon_said: str, pushing: bool, kind: type[CopyFailed]
) -> None:
    ref = TARGET if pushing else SOURCE
    by_client = explain(fault, ref, pushing=pushing)
    by_daemon = explain(of_daemon(daemon_said, ref.registry), ref, pushing=pushing)
    assert type(by_client) is type(by_daemon) is kind
    assert str(by_client) == str(by_daemon)


def test_only_the_daemons_network_faults_are_worth_a_new_copy() -> None:
    by_client = explain(Unreachable("quay.io", "ClientConnectorError"), SOURCE, pushing=False)
    daemon_said = 'Get "https://quay.io/v2/": dial tcp: lookup quay.io: no such host'
    by_daemon = explain(of_daemon(daemon_said, "quay.io"), SOURCE, pushing=False)
    assert isinstance(by_client, CopyFailed) and not by_client.transient
    assert isinstance(by_daemon, CopyFailed) and by_daemon.transient
    assert str(by_daemon) == "The registry `quay.io` could not be reached."
