"""End to end through ``mirror-bot mirror`` with the Docker engine, against the real lab."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from pathlib import Path

import docker
import pytest

import lab as lab_module
from tests.support.cli import bot_env, run_json, run_mirror
from tests.support.docker_events import pulls_since
from tests.support.throttle import throttled


def source_config(lab: lab_module.Lab, repository: str, tag: str) -> dict[str, object]:
    raw, _ = lab_module.pull_manifest(lab.source, repository, tag)
    digest = json.loads(raw)["config"]["digest"]
    config: dict[str, object] = json.loads(lab_module.get_blob(lab.source, repository, digest))
    return config


@pytest.fixture
def env(lab: lab_module.Lab, tmp_path: Path) -> dict[str, str]:
    return bot_env(lab, tmp_path / "mirror.db", MIRROR_ENGINE="docker")


def test_copy_through_the_daemon_keeps_config_and_layers(
    lab: lab_module.Lab, env: dict[str, str]
) -> None:
    code, [result], _ = run_json(env, f"{lab.source}/library/multi:1.0")
    assert code == 0, result
    target = f"{lab.target}/mirror/{lab.source.replace(':', '-')}.library.multi:1.0"
    assert result["status"] == "succeeded"
    assert result["source"] == f"{lab.source}/library/multi:1.0"
    assert result["target"] == target
    assert result["engine"] == "docker"
    assert result["platform"] == "linux/amd64"
    assert str(result["target_digest"]).startswith("sha256:")
    assert result["pull"].startswith(f"docker pull {target} && docker tag {target} ")
    assert result["error"] is None

    client = docker.DockerClient(base_url=lab.docker_host)
    try:
        # The engine removed its local copies; a pull by a user fetches the mirrored image.
        assert not client.images.list(name=target.rsplit(":", 1)[0])
        pulled = client.images.pull(target)
        expected = source_config(lab, "library/multi", "1.0")
        assert pulled.attrs["RootFS"]["Layers"] == expected["rootfs"]["diff_ids"]  # type: ignore[index]
        assert pulled.attrs["Config"]["Cmd"] == expected["config"]["Cmd"]  # type: ignore[index]
        client.images.remove(target)
    finally:
        client.close()


def test_second_copy_is_answered_as_already_mirrored_without_pulling(
    lab: lab_module.Lab, env: dict[str, str]
) -> None:
    image = f"{lab.source}/library/hello:1.0"
    code, [first], _ = run_json(env, image)
    assert code == 0 and first["status"] == "succeeded"
    started = time.time_ns()
    code, [second], _ = run_json(env, image)
    pulls = pulls_since(lab.docker_host, started)
    assert code == 0
    assert second["status"] == "already_mirrored"
    assert second["target_digest"] == first["target_digest"]
    assert pulls == []


def test_push_to_a_registry_with_htpasswd_credentials(
    lab: lab_module.Lab, env: dict[str, str]
) -> None:
    env = env | {
        "MIRROR_TARGET": f"{lab.auth}/team",
        "MIRROR_TARGET_USERNAME": lab.auth_user,
        "MIRROR_TARGET_PASSWORD": lab.auth_password,
    }
    code, [result], _ = run_json(env, f"{lab.source}/library/hello:1.0")
    assert code == 0, result
    repository = f"team/{lab.source.replace(':', '-')}.library.hello"
    raw, _ = lab_module.pull_manifest(
        lab.auth, repository, "1.0", user=lab.auth_user, password=lab.auth_password
    )
    assert json.loads(raw)["layers"]


def test_wrong_password_fails_with_one_sentence_and_no_secret(
    lab: lab_module.Lab, env: dict[str, str]
) -> None:
    wrong = "not-the-password-4711"
    env = env | {
        "MIRROR_TARGET": f"{lab.auth}/team",
        "MIRROR_TARGET_USERNAME": lab.auth_user,
        "MIRROR_TARGET_PASSWORD": wrong,
    }
    done = run_mirror(env, f"{lab.source}/library/multi:1.0")
    assert done.returncode == 1
    failure = [line for line in done.stdout.splitlines() if ": failed: " in line]
    assert len(failure) == 1
    assert "refused the push" in failure[0] and failure[0].endswith(".")
    assert wrong not in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_missing_tag_is_a_clear_failure(lab: lab_module.Lab, env: dict[str, str]) -> None:
    code, [result], _ = run_json(env, f"{lab.source}/library/hello:9.9")
    assert code == 1
    assert result["status"] == "failed"
    assert result["error"] == f"`{lab.source}/library/hello:9.9` does not exist; nearest: `1.0`."
    assert result["suggestions"] == [f"{lab.source}/library/hello:1.0"]


def test_dry_run_plans_without_network(lab: lab_module.Lab, env: dict[str, str]) -> None:
    env = env | {
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "MIRROR_ALLOWED_SOURCES": "gcr.io",
    }
    code, results, _ = run_json(
        env,
        "--dry-run",
        "gcr.io/google-samples/microservices-demo/emailservice:v0.3.5",
        "gcr.io/distroless/static$static:v1",
        "--platform",
        "linux/arm64",
    )
    assert code == 0
    assert [(r["status"], r["target"], r["platform"]) for r in results] == [
        (
            "planned",
            f"{lab.target}/mirror/gcr.io.google-samples.microservices-demo.emailservice-linux-arm64:v0.3.5",
            "linux/arm64",
        ),
        ("planned", f"{lab.target}/mirror/static:v1", "linux/arm64"),
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["Not/Valid"], "not a valid image reference"),
        (["evil.example.com/x:1"], "not an allowed source registry"),
        (["nginx", "--platform", "linux"], "is not a platform"),
        (["a.b/c", "a/b.c"], "would both"),
    ],
)
def test_bad_input_exits_2_with_one_sentence(
    env: dict[str, str], args: list[str], words: str
) -> None:
    env = env | {"MIRROR_ALLOWED_SOURCES": "docker.io,a.b"}
    done = run_mirror(env, *args)
    assert done.returncode == 2
    assert words in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""


def test_daemon_down_is_a_clear_failure(lab: lab_module.Lab, env: dict[str, str]) -> None:
    env = env | {"DOCKER_HOST": "unix:///tmp/no-such-dockerd.sock"}
    code, [result], stderr = run_json(env, f"{lab.source}/library/hello:1.0")
    assert code == 1
    assert (
        result["error"]
        == "The Docker daemon at `unix:///tmp/no-such-dockerd.sock` does not answer."
    )
    assert "Traceback" not in stderr


def test_a_platform_the_image_does_not_have_is_refused(
    lab: lab_module.Lab, env: dict[str, str]
) -> None:
    code, [result], _ = run_json(
        env, f"{lab.source}/library/hello:1.0", "--platform", "linux/arm64"
    )
    assert code == 1
    assert result["error"] == (
        f"`{lab.source}/library/hello:1.0` has no image for linux/arm64; it has linux/amd64 "
        "(66.3 KB)."  # the lab's hello: a 64 KiB layer of random bytes, gzip'd, and its config
    )
    client = docker.DockerClient(base_url=lab.docker_host)
    try:
        assert not client.images.list(name=f"{lab.source}/library/hello")
    finally:
        client.close()


def test_a_digest_reference_copies_every_platform_unless_one_is_chosen(
    lab: lab_module.Lab, env: dict[str, str]
) -> None:
    image = f"{lab.source}/library/hello@sha256:{'a' * 64}"
    _, [pinned], _ = run_json(env, "--dry-run", image)
    _, [chosen], _ = run_json(env, "--dry-run", image, "--platform", "linux/arm64")
    flat = f"{lab.target}/mirror/{lab.source.replace(':', '-')}.library.hello"
    assert (pinned["platform"], pinned["target"]) == ("all", f"{flat}:sha256-aaaaaaaaaaaa")
    assert (chosen["platform"], chosen["target"]) == (
        "linux/arm64",
        f"{flat}-linux-arm64:sha256-aaaaaaaaaaaa",
    )


@pytest.mark.parametrize(("engine", "measured"), [("docker", "at least "), ("registry", "6.0 MiB")])
def test_an_image_over_the_size_limit_is_refused_by_the_engine_that_copies(
    lab: lab_module.Lab, env: dict[str, str], engine: str, measured: str
) -> None:
    """The registry engine measures from manifests before any blob moves; the daemon cannot
    tell sizes before a pull, so the docker engine stops its pull once the layer totals are
    over the limit (and never pushes)."""
    env = env | {"MIRROR_MAX_IMAGE_BYTES": str(1 << 20), "MIRROR_ENGINE": engine}
    started = time.time_ns()
    # Through a 1 MB/s relay: the 6 MiB pull lasts seconds, so the daemon cannot finish it
    # before the engine has seen the layer totals, however busy the machine is.
    with throttled(lab.source, 1_000_000) as relay:
        env |= {
            "MIRROR_ALLOWED_SOURCES": relay.address,
            "MIRROR_INSECURE_REGISTRIES": f"{relay.address},{lab.target}",
        }
        code, [result], _ = run_json(env, f"{relay.address}/library/multi:1.0$too-big-{engine}")
    assert code == 1
    assert result["error"].startswith(
        f"`{relay.address}/library/multi:1.0` is too large: {measured}"
    )
    assert result["error"].endswith("over the limit of 1.0 MiB (MIRROR_MAX_IMAGE_BYTES).")
    assert pulls_since(lab.docker_host, started) == []  # no pull completed
    with pytest.raises(lab_module.RegistryError):
        lab_module.pull_manifest(lab.target, f"mirror/too-big-{engine}", "1.0")


def test_both_engines_report_the_compressed_bytes_of_the_image(
    lab: lab_module.Lab, env: dict[str, str]
) -> None:
    """``bytes`` is compressed blob bytes (config and layers) for both engines, not the
    daemon's uncompressed ``Size``: the image's, as its manifest at the source lists them, so
    an answer says what ``/inspect`` says (issue 23). The registry engine's copy is the source
    byte for byte; the daemon (graph-driver store) re-compresses the layers it pushes to a new
    registry, so its copy at the target can differ by a few bytes."""

    def compressed(registry: str, repository: str) -> int:
        raw, _ = lab_module.pull_manifest(registry, repository, "1.0")
        manifest = json.loads(raw)
        return int(manifest["config"]["size"]) + sum(
            int(layer["size"]) for layer in manifest["layers"]
        )

    image = f"{lab.source}/library/multi:1.0"
    source_bytes = compressed(lab.source, "library/multi")
    for engine in ("docker", "registry"):
        code, [result], _ = run_json(
            env | {"MIRROR_ENGINE": engine},
            f"{image}$bytes-{engine}:1.0",
            "--platform",
            "linux/amd64",
        )
        assert code == 0, result
        assert result["bytes"] == source_bytes
        held = compressed(lab.target, f"mirror/bytes-{engine}")
        assert abs(held - source_bytes) < source_bytes // 100  # the same image


def _sockets() -> set[str]:
    """The sockets this process holds open (``socket:[inode]``)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:"):
                found.add(link)
    return found


async def test_aclose_closes_the_client_of_every_worker_thread(lab: lab_module.Lab) -> None:
    from mirror.engines.docker import DockerEngine

    before = _sockets()
    engine = DockerEngine.standalone(lab.docker_host)
    barrier = threading.Barrier(3)

    def in_a_thread() -> None:
        engine._client().ping()
        barrier.wait(timeout=30)  # three threads at once: three clients

    await asyncio.gather(*(asyncio.to_thread(in_a_thread) for _ in range(3)))
    opened = _sockets() - before
    assert len(opened) >= 3  # one connection to the daemon per thread's client
    await engine.aclose()
    assert opened & _sockets() == set()
