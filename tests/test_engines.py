"""The engines' shape: found by name, one registry client per process, one fault translator.

No lab: building an engine or the registry client contacts nothing, and the translator is pure.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.runtime import build_engines, open_runtime
from bot.settings import Settings
from mirror import engines
from mirror.engines.base import CopyRequest
from mirror.engines.chooser import daemon_is_the_way_out
from mirror.engines.docker import DockerEngine
from mirror.engines.faults import explain, of_daemon
from mirror.engines.registry.engine import RegistryEngine
from mirror.errors import AccessDenied, CopyFailed, NotFound, SourceMissing, Unreachable
from mirror.platform import Platform
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


@pytest.mark.parametrize(
    ("docker_host", "way_out"),
    [
        (None, False),
        ("unix:///var/run/docker.sock", False),
        ("tcp://127.0.0.1:2375", False),
        ("tcp://localhost:2376", False),
        ("tcp://[::1]:2375", False),
        ("npipe:////./pipe/docker_engine", False),
        ("ssh://builder@build.example.com", True),
        ("tcp://10.1.2.3:2376", True),
        ("tcp://docker:2375", True),  # a dind sidecar: another machine as far as we know
    ],
)
def test_a_daemon_is_the_way_out_only_on_another_machine(
    docker_host: str | None, way_out: bool
) -> None:
    assert daemon_is_the_way_out(docker_host) is way_out


ONE_PLATFORM = CopyRequest(SOURCE, TARGET, Platform("linux", "amd64"))
PINNED = CopyRequest(
    ImageRef("quay.io", "team/app", None, "sha256:" + "a" * 64), TARGET, Platform("linux", "amd64")
)
EVERY_PLATFORM = CopyRequest(SOURCE, TARGET, None)


@pytest.mark.parametrize(
    ("more", "one", "pinned", "every"),
    [
        ({}, ["registry", "docker"], ["registry", "docker"], ["registry"]),
        (
            {"docker_host": "unix:///var/run/docker.sock"},
            ["registry", "docker"],
            ["registry", "docker"],
            ["registry"],
        ),
        (
            {"docker_host": "ssh://builder@build.example.com"},
            ["docker", "registry"],
            ["registry", "docker"],
            ["registry"],
        ),
        ({"mirror_engine": "docker"}, ["docker"], ["docker"], ["docker"]),
        (
            {"mirror_engine": "registry", "docker_host": "tcp://10.1.2.3:2376"},
            ["registry"],
            ["registry"],
            ["registry"],
        ),
    ],
)
async def test_auto_copies_exactly_unless_the_configuration_names_a_daemon_elsewhere(
    tmp_path: Path, more: dict[str, str], one: list[str], pinned: list[str], every: list[str]
) -> None:
    """DESIGN.md §5: ``auto`` prefers the exact engine whenever the bot reaches the source
    itself; a ``DOCKER_HOST`` on another machine (decided once, from the settings) makes the
    daemon the way out for one platform of a tag."""
    chooser = build_engines(settings(tmp_path, **more))
    try:
        assert chooser.preference(ONE_PLATFORM) == one
        assert chooser.preference(PINNED) == pinned
        assert chooser.preference(EVERY_PLATFORM) == every
    finally:
        await chooser.aclose()


async def test_a_daemon_elsewhere_that_does_not_answer_leaves_the_copy_to_the_registry_engine(
    tmp_path: Path,
) -> None:
    """The fallback stays: the daemon is tried first and says why it cannot work."""
    host = "tcp://no-such-daemon.invalid:2375"  # .invalid never resolves (RFC 6761)
    chooser = build_engines(settings(tmp_path, docker_host=host))
    request = CopyRequest(
        ImageRef("no-such-registry.invalid", "team/app", "1.0", None),
        TARGET,
        Platform("linux", "amd64"),
    )
    try:
        assert chooser.daemon_first
        assert (await chooser.choose(request)).name == "registry"
        assert await chooser.health() == {
            "docker": f"The Docker daemon at `{host}` does not answer.",
            "registry": None,
        }
    finally:
        await chooser.aclose()
