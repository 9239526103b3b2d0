"""Pasted text through the grammar, the acknowledgement and ``mirror-bot mirror --from``.

The command line runs as a subprocess with ``--dry-run``: readers, policy and names, no network.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pexpect
import pytest

import lab as lab_module
from bot import render
from bot.commands import UsageError, parse_command
from bot.commands.mirror import MirrorArgs
from bot.paste import Ambiguous
from bot.view import to_plain_text
from mirror.models import Item, Job
from mirror.platform import Platform
from mirror.reference import parse_reference
from tests.support.cli import MIRROR_BOT, bot_env

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")


def mirror(text: str, max_images: int = 11) -> MirrorArgs:
    invocation = parse_command(text, default_platform=AMD64, max_images=max_images)
    assert invocation is not None
    command = invocation.args
    assert isinstance(command, MirrorArgs)
    assert len(command.readings) == len(command.images)
    return command


# -- the grammar -----------------------------------------------------------------------------


def test_pasted_text_keeps_what_was_typed_per_image() -> None:
    command = mirror(
        "/mirror https://hub.docker.com/_/nginx\n"
        "docker pull --platform linux/arm64 quay.io/prometheus/node-exporter:v1.7.0\n"
        "redis\uff1a7.2"
    )
    assert [str(s.source) for s in command.images] == [
        "docker.io/library/nginx:latest",
        "quay.io/prometheus/node-exporter:v1.7.0",
        "docker.io/library/redis:7.2",
    ]
    assert [r.typed for r in command.readings] == [
        "https://hub.docker.com/_/nginx",
        "docker pull --platform linux/arm64 quay.io/prometheus/node-exporter:v1.7.0",
        "redis\uff1a7.2",
    ]
    assert [r.platform for r in command.readings] == [None, "linux/arm64", None]
    assert command.platform == AMD64 and not command.platform_explicit


@pytest.mark.parametrize(
    ("text", "platform", "explicit", "line_platform"),
    [
        ("/mirror nginx --platform linux/arm64", ARM64, True, None),
        ("/mirror --platform linux/arm64\ndocker pull nginx", ARM64, True, None),
        # after a pull command, the flag is the pull line's own
        ("/mirror docker pull nginx --platform linux/arm64", AMD64, False, "linux/arm64"),
    ],
)
def test_whose_platform_flag(
    text: str, platform: Platform, explicit: bool, line_platform: str | None
) -> None:
    command = mirror(text)
    assert (command.platform, command.platform_explicit) == (platform, explicit)
    assert command.readings[0].platform == line_platform


def test_the_same_image_spelt_twice_is_one() -> None:
    command = mirror("/mirror nginx docker.io/library/nginx:latest https://hub.docker.com/_/nginx")
    assert [str(s.source) for s in command.images] == ["docker.io/library/nginx:latest"]
    assert command.readings[0].typed is None


def test_a_manifest_longer_than_a_typed_command() -> None:
    containers = "".join(
        f"        - name: c{i}\n          image: registry.k8s.io/pause:3.{i % 3}\n"
        + "          env: [{name: PADDING, value: "
        + "x" * 400
        + "}]\n"
        for i in range(30)
    )
    manifest = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: big}\nspec:\n  template:\n"
        "    spec:\n      containers:\n" + containers
    )
    assert len(manifest) > 8000
    command = mirror("/mirror --platform all\n" + manifest)
    assert [s.text for s in command.images] == [f"registry.k8s.io/pause:3.{i}" for i in range(3)]
    assert command.platform is None and command.platform_explicit


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        ("/mirror nginx 1.25", Ambiguous, "did you mean `nginx:1.25`, or the images"),
        ("/mirror status", Ambiguous, "the command `/status`, or to mirror the image `status`"),
        ("/mirror cancel k3x9qa", Ambiguous, "`/mirror library/cancel k3x9qa`"),
        ("/mirror docker pull --platform linux nginx", Exception, "linux"),
        ("/mirror docker pull", Exception, "names no image"),
        ("/mirror https://hub.docker.com/u/bitnami", Exception, "organisation page"),
        (
            "/mirror apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n",
            UsageError,
            "no images in that Kubernetes YAML",
        ),
        (
            "/mirror\n$ kubeadm config images list\n"
            + "\n".join(f"registry.k8s.io/kube-{n}:v1.29.{n}" for n in range(101)),
            UsageError,
            "You asked for 101 images; the limit is 3 per command, and 100 even when an admin",
        ),
    ],
)
def test_refusals_and_questions_are_one_sentence(
    text: str, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as raised:
        parse_command(text, default_platform=AMD64, max_images=3)
    message = str(raised.value)
    assert words in message
    assert "\n" not in message
    if error is Ambiguous:
        assert message.count("?") == 1 and message.endswith("?")


# -- the acknowledgement says how something was read -----------------------------------------


def test_acknowledgement_names_each_corrected_reading() -> None:
    def item(spec: str, typed: str | None) -> Item:
        source = parse_reference(spec)
        target = parse_reference("docker.io/alice/" + source.repository.split("/")[-1])
        return Item(spec, source, target, AMD64, corrected_from=typed)

    job = Job(
        "k3x9qa",
        "console:me",
        "console:here",
        [item("nginx:latest", "https://hub.docker.com/_/nginx"), item("redis", None)],
    )
    view = render.acknowledgement(job)
    assert view.lines == ("read `https://hub.docker.com/_/nginx` as `nginx:latest`",)
    assert "read `https://hub.docker.com/_/nginx` as `nginx:latest`" in to_plain_text(view)
    job.items[0].corrected_from = None
    assert render.acknowledgement(job).lines == ()


# -- mirror-bot mirror --from FILE|- --dry-run --json ---------------------------------------


def run(tmp_path: Path, *args: str, stdin: str = "", **env: str) -> tuple[int, Any, str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("MIRROR_", "SLACK_", "TELEGRAM_"))
    }
    environment.update(MIRROR_TARGET="docker.io/alice", MIRROR_DB=str(tmp_path / "bot.db"))
    environment.update(env)
    done = subprocess.run(
        [MIRROR_BOT, "mirror", "--dry-run", "--json", *args],
        input=stdin,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    payload = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, payload, done.stderr


COMPOSE = """\
services:
  web:
    image: nginx:1.25
  app:
    build: .
  exporter:
    image: quay.io/prometheus/node-exporter:v1.7.0
"""


def test_from_a_compose_file(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(COMPOSE, encoding="utf-8")
    code, payload, _ = run(tmp_path, "--from", str(path))
    assert code == 0
    assert [(o["source"], o["target"], o["status"]) for o in payload] == [
        ("docker.io/library/nginx:1.25", "docker.io/alice/nginx:1.25", "planned"),
        (
            "quay.io/prometheus/node-exporter:v1.7.0",
            "docker.io/alice/quay.io.prometheus.node-exporter:v1.7.0",
            "planned",
        ),
    ]
    assert all(o["corrected_from"] is None and o["suggestions"] == [] for o in payload)


def test_from_stdin_with_pull_lines_and_addresses(tmp_path: Path) -> None:
    pasted = (
        "docker pull --platform linux/arm64 nginx:1.25\n"
        "https://quay.io/repository/prometheus/node-exporter?tab=tags&tag=v1.7.0\n"
    )
    code, payload, _ = run(tmp_path, "busybox:1.36", "--from", "-", stdin=pasted)
    assert code == 0
    assert [(o["source"], o["platform"], o["corrected_from"]) for o in payload] == [
        ("docker.io/library/busybox:1.36", "linux/amd64", None),
        (
            "docker.io/library/nginx:1.25",
            "linux/arm64",
            "docker pull --platform linux/arm64 nginx:1.25",
        ),
        (
            "quay.io/prometheus/node-exporter:v1.7.0",
            "linux/amd64",
            "https://quay.io/repository/prometheus/node-exporter?tab=tags&tag=v1.7.0",
        ),
    ]
    assert [o["asked"] for o in payload] == [
        ["busybox:1.36"],
        ["docker pull --platform linux/arm64 nginx:1.25"],
        ["https://quay.io/repository/prometheus/node-exporter?tab=tags&tag=v1.7.0"],
    ]
    # the line's own platform names the copy as a single-platform one does
    assert payload[1]["target"] == "docker.io/alice/nginx-linux-arm64:1.25"


def test_each_object_says_which_input_texts_it_answers(tmp_path: Path) -> None:
    """Identical images are one object; ``asked`` lists every text that named it, as typed,
    so a script can map its inputs to the answers (``corrected_from`` stays the reading note
    of the first)."""
    code, payload, _ = run(
        tmp_path,
        "nginx:1.25",
        "docker.io/library/nginx:1.25",
        "nginx\uff1a1.25",
        "busybox",
        "--from",
        "-",
        stdin="docker pull nginx:1.25\n",
    )
    assert code == 0
    assert [(o["source"], o["asked"], o["corrected_from"]) for o in payload] == [
        (
            "docker.io/library/nginx:1.25",
            [  # the texts read as `nginx:1.25`, then the other spellings of that image
                "nginx:1.25",
                "nginx\uff1a1.25",
                "docker pull nginx:1.25",
                "docker.io/library/nginx:1.25",
            ],
            None,
        ),
        ("docker.io/library/busybox:latest", ["busybox"], None),
    ]


def test_addresses_as_arguments_too(tmp_path: Path) -> None:
    code, payload, _ = run(
        tmp_path, "https://hub.docker.com/_/nginx", "oci://ghcr.io/acme/chart:1.0"
    )
    assert code == 0
    assert [(o["source"], o["corrected_from"]) for o in payload] == [
        ("docker.io/library/nginx:latest", "https://hub.docker.com/_/nginx"),
        ("ghcr.io/acme/chart:1.0", "oci://ghcr.io/acme/chart:1.0"),
    ]


@pytest.mark.parametrize(
    ("stdin", "env", "words"),
    [
        ("nginx 1.25\n", {}, "did you mean `nginx:1.25`, or the images `nginx:latest` and `1.25`?"),
        (
            "\n".join(f"registry.k8s.io/kube-{n}:v1.29.3" for n in "abcd"),
            {"MIRROR_MAX_IMAGES": "3"},
            "You asked for 4 images; the limit is 3 per command.",
        ),
        ("nginx --platform all\n", {}, "is an option, not an image"),
        ("services:\n  app:\n    build: .\n", {}, "no images in that compose file"),
        ("", {}, "Name at least one image"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_sentence(
    tmp_path: Path, stdin: str, env: dict[str, str], words: str
) -> None:
    code, payload, stderr = run(tmp_path, "--from", "-", stdin=stdin, **env)
    assert code == 2
    assert payload is None
    assert words in stderr
    assert "Traceback" not in stderr


# -- the bot, driven at its console ----------------------------------------------------------


def test_console_asks_and_acknowledges_how_it_read(lab: lab_module.Lab, tmp_path: Path) -> None:
    child = pexpect.spawn(
        MIRROR_BOT, ["run"], env=bot_env(lab, tmp_path / "console.db"), encoding="utf-8",
        timeout=120,
    )  # fmt: skip
    try:
        child.expect_exact("mirror> ")
        child.sendline("/mirror nginx 1.25")
        child.expect_exact("did you mean `nginx:1.25`, or the images `nginx:latest` and `1.25`?")
        child.expect_exact("mirror> ")
        assert "Job " not in child.before  # nothing started on a guess

        typed = f"http://{lab.source}/library/multi:1.0"
        child.sendline(f"/mirror {typed}")
        child.expect(r"Job (\w{6}): mirroring 1 image")
        child.expect_exact(f"read `{typed}` as `{lab.source}/library/multi:1.0`")
        child.expect(r"Job \w{6} done: 1 image ready")
    finally:
        child.close(force=True)


@pytest.mark.parametrize(
    ("typed", "source", "registry", "flat"),
    [
        ("[::1]:5000/x:1", "[::1]:5000/x:1", "[::1]:5000", "1--5000.x"),
        ("`[fd00::1]:5000/app:1`", "[fd00::1]:5000/app:1", "[fd00::1]:5000", "fd00--1--5000.app"),
    ],
)
def test_a_bracketed_ipv6_registry_is_read_then_refused_unless_named(
    typed: str, source: str, registry: str, flat: str
) -> None:
    """distribution/reference allows ``[ipv6]:port`` hosts: a chat message names one, the
    egress rule refuses it (loopback, private) unless the operator named it, and its target
    is a valid repository name."""
    from bot.policy import Denied, Policy
    from bot.settings import Settings
    from mirror.naming import TargetBase, target_for
    from mirror.reference import is_valid_path

    [spec] = mirror(f"/mirror {typed}").images
    assert str(spec.source) == source
    closed = Policy(Settings(_env_file=None))  # type: ignore[call-arg]
    with pytest.raises(Denied, match=f"`{re.escape(registry)}` is not an allowed source"):
        closed.check_source(spec.source)
    named = Policy(Settings(_env_file=None, mirror_allowed_sources=registry))  # type: ignore[call-arg]
    named.check_source(spec.source)
    target = target_for(spec, TargetBase("registry.example.com", "mirror"), AMD64, AMD64)
    assert target.repository == f"mirror/{flat}"
    assert is_valid_path(target.repository)
