"""Pasted pull failures read as what to mirror (bot/pasted_errors.py), no network.

Every sample is taken verbatim from a public issue where somebody pasted it, kept as it was in
``tests/data/pull_errors/`` with its thread named beside it below: kubectl events and tables,
kubelet and crictl logs with their escaped quotes, kubeadm preflight, docker, helm. The tests
read each for its failing images, each once, with the kind of failure and the platform or host
the error names.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.commands import UsageError, parse_command
from bot.commands.mirror import MirrorArgs
from bot.i18n import localize, speaking
from bot.pasted_errors import (
    Failure,
    Source,
    looks_like_pull_error,
    read_pull_errors,
    summary,
    trust_advice,
)
from mirror.platform import Platform

SAMPLES = Path(__file__).parent / "data" / "pull_errors"
"""Each file holds one paste exactly as it was posted (its thread is named where it is read)."""


def sample(name: str) -> str:
    return (SAMPLES / f"{name}.txt").read_text(encoding="utf-8")


# https://github.com/cri-o/cri-o/pull/189 (kubectl describe, the old tab-separated events)
CRIO_EVENTS = sample("crio-events")

# https://github.com/ciiiii/cloudflare-docker-proxy/issues/85 (kubectl describe events)
PROXY_TIMEOUT = sample("proxy-timeout")

# https://github.com/red-hat-storage/ocs-ci/issues/4494 (kubectl describe events)
OCS_RATE_LIMIT = sample("ocs-rate-limit")

# https://github.com/democratic-csi/democratic-csi/issues/90 (a `kubectl get events` table)
EVENTS_TABLE = sample("events-table")

# https://github.com/kubernetes/minikube/issues/12944 (events, with the reporter's ** kept)
MINIKUBE_X509 = sample("minikube-x509")

# https://github.com/kubernetes/kubernetes/issues/43924 (an event's message)
PRIVATE_X509 = sample("private-x509")

# https://github.com/kubernetes-sigs/cri-tools/issues/1137 (crictl, the kubelet's log format)
CRICTL_LOG = sample("crictl-log")

# https://github.com/ciiiii/cloudflare-docker-proxy/issues/98 (crictl; `nginx` spelt two ways)
CRICTL_TWO_SPELLINGS = sample("crictl-two-spellings")

# https://github.com/labring/sealos/issues/1708 (crictl)
CRICTL_401 = sample("crictl-401")

# https://github.com/kubernetes/kubernetes/issues/123901 (kubeadm preflight, quotes escaped)
KUBEADM_DNS = sample("kubeadm-dns")

# https://github.com/kubernetes/minikube/issues/3721 (kubeadm preflight behind a TLS proxy)
KUBEADM_X509 = sample("kubeadm-x509")

# https://github.com/aquanauts/legit/issues/1 (docker run on an ARM machine)
DOCKER_ARM = sample("docker-arm")

# https://github.com/link-assistant/hive-mind/issues/962 (docker pull, a zsh prompt)
DOCKER_ARM_PULL = sample("docker-arm-pull")

# https://github.com/aquasecurity/tracee/issues/4248 (docker run; the first line names no image)
DOCKER_RATE_LIMIT = sample("docker-rate-limit")

# https://github.com/mailcow/mailcow-dockerized/issues/3863 (a script's retries, quoted)
MAILCOW_RETRIES = sample("mailcow-retries")

# https://github.com/ivangabriele/dockfish/issues/13 (docker pull, no such tag)
DOCKER_MANIFEST_UNKNOWN = sample("docker-manifest-unknown")

# https://github.com/devcontainers/template-starter/issues/50 (PowerShell; the answer names none)
POWERSHELL_MANIFEST_UNKNOWN = sample("powershell-manifest-unknown")

# https://github.com/deliveryhero/helm-charts/issues/765 (helm install oci://, a 403)
HELM_403 = sample("helm-403")

# https://github.com/bitnami/charts/issues/33841 (helm install oci://, Docker Hub's API host)
HELM_HUB = sample("helm-hub")

# https://github.com/8gears/n8n-helm-chart/issues/108 (helm's own words name the chart)
HELM_DOWNLOAD = sample("helm-download")

# https://github.com/aeraki-mesh/aeraki/issues/313 (kubectl describe pod, the container block)
DESCRIBED_CONTAINER = sample("described-container")

# https://github.com/kodekloudhub/kodekloud-engineer/issues/58 (the daemon's answer alone)
NAMES_NONE = sample("names-none")

# https://github.com/docker/docs/issues/21908 (helm; only a registry URL, no chart named)
HELM_NAMES_NONE = sample("helm-names-none")

U, R, P, M, D, X, F = (
    Failure.UNREACHABLE,
    Failure.RATE_LIMITED,
    Failure.PLATFORM_MISSING,
    Failure.MANIFEST_UNKNOWN,
    Failure.DENIED,
    Failure.UNTRUSTED,
    Failure.FAILED,
)
K8S = "k8s.gcr.io"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(CRIO_EVENTS, [("nginx", U, Source.EVENTS)], id="crio-events"),
        pytest.param(
            PROXY_TIMEOUT,
            [("registry.k8s.io/ingress-nginx/controller:v1.11.2", U, Source.EVENTS)],
            id="events-timeout",
        ),
        pytest.param(
            OCS_RATE_LIMIT,
            [("obsidiandynamics/kafdrop:latest", R, Source.EVENTS)],
            id="events-rate-limit",
        ),
        pytest.param(
            EVENTS_TABLE,
            [("democraticcsi/democratic-csi:latest", R, Source.EVENTS)],
            id="get-events-table",
        ),
        pytest.param(MINIKUBE_X509, [("selenium/hub", X, Source.EVENTS)], id="events-x509"),
        pytest.param(
            PRIVATE_X509, [("10.78.0.228:5000/monitorms", X, Source.EVENTS)], id="event-x509"
        ),
        pytest.param(
            CRICTL_LOG,
            [("victoriametrics/victoria-metrics:v1.76.1", F, Source.CRICTL)],
            id="crictl-log",
        ),
        pytest.param(CRICTL_TWO_SPELLINGS, [("nginx", F, Source.CRICTL)], id="crictl-spellings"),
        pytest.param(CRICTL_401, [("nginx:alpine", D, Source.CRICTL)], id="crictl-401"),
        pytest.param(
            KUBEADM_DNS,
            [("registry.k8s.io/kube-apiserver:v1.29.2", U, Source.KUBEADM)],
            id="kubeadm-dns",
        ),
        pytest.param(
            KUBEADM_X509,
            [
                (f"{K8S}/{name}", X, Source.KUBEADM)
                for name in (
                    "kube-apiserver:v1.13.3",
                    "kube-controller-manager:v1.13.3",
                    "kube-scheduler:v1.13.3",
                    "kube-proxy:v1.13.3",
                    "pause:3.1",
                )
            ],
            id="kubeadm-x509",
        ),
        pytest.param(
            DOCKER_ARM, [("ghcr.io/aquanauts/legit-server:latest", P, Source.DOCKER)], id="arm"
        ),
        pytest.param(
            DOCKER_ARM_PULL, [("konard/hive-mind:latest", P, Source.DOCKER)], id="arm-pull"
        ),
        pytest.param(DOCKER_RATE_LIMIT, [("ubuntu:latest", R, Source.DOCKER)], id="docker-429"),
        pytest.param(MAILCOW_RETRIES, [("mailcow/unbound:1.12", R, Source.DOCKER)], id="retries"),
        pytest.param(
            DOCKER_MANIFEST_UNKNOWN,
            [("ivangabriele/dockfish", M, Source.DOCKER)],  # as the pull line wrote it
            id="manifest-unknown",
        ),
        pytest.param(
            POWERSHELL_MANIFEST_UNKNOWN,
            [("ghcr.io/devcontainers/color:latest", M, Source.DOCKER)],
            id="powershell",
        ),
        pytest.param(
            HELM_403,
            [("ghcr.io/deliveryhero/helm-charts/node-problem-detector:2.4.0", D, Source.HELM)],
            id="helm-403",
        ),
        pytest.param(
            HELM_HUB, [("docker.io/bitnamicharts/external-dns", D, Source.HELM)], id="helm-hub"
        ),
        pytest.param(
            HELM_DOWNLOAD,
            [("8gears.container-registry.com/library/n8n:0.24.3", F, Source.HELM)],
            id="helm-download",
        ),
        pytest.param(
            DESCRIBED_CONTAINER, [("istio/pilot:1.14.5", F, Source.EVENTS)], id="described"
        ),
    ],
)
def test_real_pull_failures_read_as_their_failing_images(
    text: str, expected: list[tuple[str, Failure, Source]]
) -> None:
    assert looks_like_pull_error(text) or text is DESCRIBED_CONTAINER
    errors = read_pull_errors(text)
    assert [(f.image, f.failure, f.source) for f in errors.failures] == expected
    for failed in errors.failures:
        assert failed.lines, "each image answers the lines it was read from"
        assert all(line in text for line in failed.lines)
        assert failed.reading.typed == failed.lines[0]


def test_each_failing_image_once_however_often_the_log_repeats_it() -> None:
    [failed] = read_pull_errors(MAILCOW_RETRIES).failures
    assert failed.lines == tuple(
        dict.fromkeys(line.strip() for line in MAILCOW_RETRIES.splitlines()[2:-2] if "> E" in line)
    )
    [nginx] = read_pull_errors(CRICTL_TWO_SPELLINGS).failures  # `nginx` and docker.io/library/…
    assert len(nginx.lines) == 2


def test_the_platform_and_host_an_error_names() -> None:
    [arm] = read_pull_errors(DOCKER_ARM).failures
    assert arm.platform == "linux/arm64/v8"
    assert arm.reading.platform == "linux/arm64/v8"  # carried into the request
    assert arm.lines == (
        "Unable to find image 'ghcr.io/aquanauts/legit-server:latest' locally",
        "docker: no matching manifest for linux/arm64/v8 in the manifest list entries.",
    )
    [hub] = read_pull_errors(MINIKUBE_X509).failures
    assert hub.host == "registry-1.docker.io"
    [private] = read_pull_errors(PRIVATE_X509).failures
    assert private.host == "10.78.0.228:5000"
    assert not private.failure.mirrored
    assert read_pull_errors(MINIKUBE_X509).copied == ()


def test_a_chart_that_failed_is_a_chart() -> None:
    [chart] = read_pull_errors(HELM_403).failures
    assert chart.chart
    assert chart.lines[0].startswith("\u276f helm install --generate-name oci://")
    [n8n] = read_pull_errors(HELM_DOWNLOAD).failures
    assert n8n.chart


@pytest.mark.parametrize(
    "text",
    [
        "nginx:1.25",
        "docker pull nginx:1.25",
        "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: nginx\n",
        "registry.k8s.io/kube-apiserver:v1.29.2\nregistry.k8s.io/pause:3.9",
    ],
)
def test_names_lines_and_manifests_are_no_pull_error(text: str) -> None:
    assert not looks_like_pull_error(text)


def parse(text: str) -> MirrorArgs:
    invocation = parse_command(text, default_platform=Platform("linux", "amd64"), max_images=11)
    assert invocation is not None and isinstance(invocation.args, MirrorArgs)
    return invocation.args


@pytest.mark.parametrize("text", [NAMES_NONE, HELM_NAMES_NONE])
def test_a_paste_that_names_no_image_gets_the_usage_answer(text: str) -> None:
    assert looks_like_pull_error(text)
    assert read_pull_errors(text).failures == ()
    with pytest.raises(UsageError, match="Name at least one image") as raised:
        parse(f"/mirror {text}")
    assert raised.value.with_usage


def test_mirror_reads_a_paste_into_its_request() -> None:
    args = parse(f"/mirror {OCS_RATE_LIMIT}{DOCKER_ARM}{MINIKUBE_X509}")
    assert [str(spec.source) for spec in args.images] == [
        "docker.io/obsidiandynamics/kafdrop:latest",
        "ghcr.io/aquanauts/legit-server:latest",
    ]
    assert [r.platform for r in args.readings] == [None, "linux/arm64/v8"]
    assert [f.image for f in args.untrusted] == ["selenium/hub"]
    assert [f.image for f in args.platform_missing] == ["ghcr.io/aquanauts/legit-server:latest"]
    assert args.pasted is not None and args.pasted.kind == "pull error"  # the events: kustomize
    assert args.origin is not None
    assert str(args.origin).splitlines() == [
        "From a pull error: 3 images; linux/arm64/v8 from docker's message.",
        "`obsidiandynamics/kafdrop:latest`: its registry's pull limit stopped the pull; "
        "mirroring it.",
        "`ghcr.io/aquanauts/legit-server:latest`: no image for linux/arm64/v8 where it was "
        "pulled; copying linux/arm64/v8.",
        "`selenium/hub`: the pulling machine does not trust the certificate of "
        "registry-1.docker.io: that is its CA, not the image, so nothing is copied.",
    ]


def test_options_on_the_command_line_above_a_paste() -> None:
    args = parse(f"/mirror --platform all\n{KUBEADM_DNS}")
    assert args.platform is None and args.platform_explicit
    assert args.pasted is None  # kubeadm's images are tagged back by the answer's ctr lines


def test_only_certificate_failures_plan_nothing() -> None:
    args = parse(f"/mirror {KUBEADM_X509}")
    assert args.images == () and len(args.untrusted) == 5
    [advice] = trust_advice(args.untrusted)  # one host, said once
    assert "/etc/docker/certs.d/k8s.gcr.io/ca.crt" in advice
    assert "/etc/containerd/certs.d/k8s.gcr.io/ca.crt" in advice


def test_a_failed_chart_is_asked_as_a_whole_chart() -> None:
    args = parse(f"/mirror {HELM_HUB}")
    assert args.images == ()
    assert args.chart is not None
    assert args.chart.oci == "docker.io/bitnamicharts/external-dns"  # newest release, read later


def test_what_was_read_in_both_languages() -> None:
    errors = read_pull_errors(DOCKER_ARM + MINIKUBE_X509)
    said = summary(errors)
    with speaking("zh_Hans"):
        chinese = localize(said)
        advice = [localize(line) for line in trust_advice(errors.untrusted)]
    assert chinese != str(said)
    assert "linux/arm64/v8" in chinese and "`ghcr.io/aquanauts/legit-server:latest`" in chinese
    assert len(chinese.splitlines()) == 3
    assert all("\u4e00" <= ch <= "\u9fff" for ch in chinese.splitlines()[0][:2])
    assert "/etc/docker/certs.d/registry-1.docker.io/ca.crt" in advice[0]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in advice[0])
