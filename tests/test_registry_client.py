"""The registry client's pure parts: challenges, hosts, docker config credentials."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from mirror.credentials import Credential
from mirror.registry_client import (
    RegistryClient,
    canonical_host,
    docker_config_credentials,
    parse_challenge,
)


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


def test_docker_config_auths(tmp_path: Path) -> None:
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
    found = docker_config_credentials(config)
    assert found == {
        "docker.io": Credential("alice", "hub:pw"),
        "registry.example:5000": Credential("bob", "pw2"),
    }
    assert "pw" not in repr(found["docker.io"])
    assert docker_config_credentials(tmp_path / "missing.json") == {}


def test_settings_win_over_docker_config(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"r.example": {"auth": "Ym9iOnB3"}}}))
    client = RegistryClient({"r.example": Credential("carol", "x")}, docker_config=config)
    assert client.credential("r.example") == Credential("carol", "x")
    assert RegistryClient(docker_config=config).credential("r.example") == Credential("bob", "pw")
