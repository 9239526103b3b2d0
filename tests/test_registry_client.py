"""The registry client's pure parts: challenges, hosts, docker config credentials."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from mirror.credentials import Credential
from mirror.engines.registry.auth import canonical_host, docker_config_credential, parse_challenge
from mirror.engines.registry.client import RegistryClient


def test_bearer_challenge_with_quoted_commas() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull,push"'
    )
    assert challenge is not None
    assert challenge.scheme == "bearer"
    assert dict(challenge.params) == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/nginx:pull,push",
    }


def test_basic_challenge_and_garbage() -> None:
    basic = parse_challenge('Basic realm="lab"')
    assert basic is not None and basic.scheme == "basic" and basic.params == {"realm": "lab"}
    assert parse_challenge("") is None


def test_hosts_docker_hub_and_plain_http() -> None:
    client = RegistryClient(insecure={"127.0.0.1:5000"})
    assert canonical_host("index.docker.io") == "docker.io"
    assert client.base_url("docker.io") == "https://registry-1.docker.io"
    assert client.base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert client.base_url("quay.io") == "https://quay.io"


async def test_docker_config_auths(tmp_path: Path) -> None:
    def encoded(pair: str) -> str:
        return base64.b64encode(pair.encode()).decode()

    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": encoded("alice:hub:pw")},
                    "registry.example:5000": {"auth": encoded("bob:pw2")},
                    "helper.example": {},
                },
                "credHelpers": {"gcr.io": "gcloud"},
            }
        )
    )
    hub = await docker_config_credential("docker.io", config)
    assert hub == Credential("alice", "hub:pw")
    assert "pw" not in repr(hub)
    assert await docker_config_credential("registry.example:5000", config) == Credential(
        "bob", "pw2"
    )
    assert await docker_config_credential("helper.example", config) is None
    # a helper that is not installed means anonymous access, not a failure
    assert await docker_config_credential("gcr.io", config) is None
    assert await docker_config_credential("docker.io", tmp_path / "missing.json") is None


HELPER = """#!/bin/sh
# docker-credential-test: the credential-helper protocol (server URL on stdin, JSON out)
read server
echo "$server" >> "$(dirname "$0")/asked"
case "$server" in
  helped.example) echo '{"ServerURL":"helped.example","Username":"dana","Secret":"s3cret"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"""


@pytest.mark.parametrize("key", ["credHelpers", "credsStore"])
async def test_credential_helpers_run_as_docker_runs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    helper = tmp_path / "docker-credential-test"
    helper.write_text(HELPER)
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "config.json"
    value = {"helped.example": "test"} if key == "credHelpers" else "test"
    config.write_text(json.dumps({key: value}))
    client = RegistryClient(docker_config=config)
    assert await client.credential("helped.example") == Credential("dana", "s3cret")
    assert await client.credential("helped.example") == Credential("dana", "s3cret")
    assert (tmp_path / "asked").read_text().splitlines() == ["helped.example"]  # cached
    if key == "credsStore":
        assert await client.credential("other.example") is None


async def test_settings_win_over_docker_config(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"r.example": {"auth": "Ym9iOnB3"}}}))
    client = RegistryClient({"r.example": Credential("carol", "x")}, docker_config=config)
    assert await client.credential("r.example") == Credential("carol", "x")
    found = await RegistryClient(docker_config=config).credential("r.example")
    assert found == Credential("bob", "pw")
