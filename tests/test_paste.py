"""Reading what people paste (bot/paste.py): one table per kind of text, no network."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.paste import Ambiguity, Pasted, Reading, read_pasted, references
from mirror.errors import InvalidReference, MirrorError
from mirror.naming import parse_image_spec
from mirror.reference import quote

DIGEST = "sha256:" + "4c" * 32
PLATFORM = frozenset({"--platform"})


def read(text: str) -> Pasted:
    return read_pasted(text, value_options=PLATFORM)


def one(text: str) -> Reading:
    pasted = read(text)
    assert not pasted.ambiguities and not pasted.options
    assert len(pasted.readings) == 1, pasted.readings
    return pasted.readings[0]


@pytest.mark.parametrize(
    ("typed", "text"),
    [
        # typed as is: nothing to say
        ("nginx", "nginx"),
        ("quay.io/prometheus/node-exporter:v1.7.0", "quay.io/prometheus/node-exporter:v1.7.0"),
        (f"nginx@{DIGEST}", f"nginx@{DIGEST}"),
        ("registry.k8s.io/pause:3.9$pause:latest", "registry.k8s.io/pause:3.9$pause:latest"),
        ("127.0.0.1:5000/team/app:1", "127.0.0.1:5000/team/app:1"),
        # a bracketed IPv6 registry (distribution/reference allows it): the bracket stays
        ("[::1]:5000/x:1", "[::1]:5000/x:1"),
        ("[fd00::1]:5000/app:1", "[fd00::1]:5000/app:1"),
        ("[2001:db8::1]/repo", "[2001:db8::1]/repo"),
    ],
)
def test_typed_as_is(typed: str, text: str) -> None:
    reading = one(typed)
    assert (reading.text, reading.typed, reading.note) == (text, None, None)


@pytest.mark.parametrize(
    ("typed", "text"),
    [
        # quotes, backticks, trailing punctuation
        ('"nginx:1.25"', "nginx:1.25"),
        ("'nginx:1.25'", "nginx:1.25"),
        ("`nginx:1.25`", "nginx:1.25"),
        ("```nginx:1.25```", "nginx:1.25"),
        ("\u201cnginx:1.25\u201d", "nginx:1.25"),
        ("「nginx:1.25」", "nginx:1.25"),
        ("nginx:1.25.", "nginx:1.25"),
        ("(nginx:1.25)", "nginx:1.25"),
        ("nginx:1.25!", "nginx:1.25"),
        ("nginx:1.25。", "nginx:1.25"),
        ("**nginx:1.25**", "nginx:1.25"),
        ("`[::1]:5000/x:1`", "[::1]:5000/x:1"),
        ("([fd00::1]:5000/app:1)", "[fd00::1]:5000/app:1"),
        ('"[fd00::1]:5000/app:1"', "[fd00::1]:5000/app:1"),
        # full-width characters from CJK input methods, zero-width spaces
        ("nginx\uff1a1.25", "nginx:1.25"),
        ("quay.io\uff0fprometheus\uff0fnode-exporter", "quay.io/prometheus/node-exporter"),
        ("nginx\uff20" + DIGEST, f"nginx@{DIGEST}"),
        ("\uff4e\uff47\uff49\uff4e\uff58", "nginx"),
        ("ngi\u200bnx:1.25", "nginx:1.25"),
        ("\ufeffnginx", "nginx"),
        ("nginx:1.25\u200d", "nginx:1.25"),
        # `@` for a tag (an npm habit) has one reading: a digest needs algorithm and hex
        ("nginx@1.25", "nginx:1.25"),
        ("nginx@latest", "nginx:latest"),
    ],
)
def test_characters(typed: str, text: str) -> None:
    reading = one(typed)
    assert (reading.text, reading.typed) == (text, typed)
    assert reading.note == f"read {quote(typed)} as `{text}`"
    parse_image_spec(reading.text)  # what was read is a reference


@pytest.mark.parametrize(
    ("typed", "text"),
    [
        # Docker Hub pages
        ("https://hub.docker.com/_/nginx", "nginx:latest"),
        ("hub.docker.com/_/nginx", "nginx:latest"),
        ("https://hub.docker.com/_/nginx/", "nginx:latest"),
        ("https://hub.docker.com/_/nginx/tags", "nginx:latest"),
        ("https://hub.docker.com/_/nginx?tab=tags", "nginx:latest"),
        ("https://hub.docker.com/_/nginx/tags?name=1.25", "nginx:1.25"),
        ("https://hub.docker.com/r/bitnami/redis", "bitnami/redis:latest"),
        ("https://www.hub.docker.com/r/bitnami/redis/tags?page=1&name=7.2", "bitnami/redis:7.2"),
        ("https://hub.docker.com/r/library/nginx", "nginx:latest"),  # the same image as /_/nginx
        (
            "https://hub.docker.com/layers/library/nginx/1.25.4/images/sha256-" + "ab" * 32,
            "nginx:1.25.4",
        ),
        # Quay
        (
            "https://quay.io/repository/prometheus/node-exporter",
            "quay.io/prometheus/node-exporter:latest",
        ),
        (
            "https://quay.io/repository/prometheus/node-exporter?tab=tags",
            "quay.io/prometheus/node-exporter:latest",
        ),
        (
            "https://quay.io/repository/prometheus/node-exporter?tab=tags&tag=v1.7.0",
            "quay.io/prometheus/node-exporter:v1.7.0",
        ),
        (
            f"https://quay.io/repository/coreos/etcd/manifest/{DIGEST}",
            f"quay.io/coreos/etcd@{DIGEST}",
        ),
        # GitHub packages: the package belongs to the owner; ghcr.io names are lowercase
        (
            "https://github.com/stefanprodan/podinfo/pkgs/container/podinfo",
            "ghcr.io/stefanprodan/podinfo:latest",
        ),
        (
            "https://github.com/Azure/azure-workload-identity/pkgs/container/azure-workload-identity%2Fwebhook",
            "ghcr.io/azure/azure-workload-identity/webhook:latest",
        ),
        (
            "https://github.com/orgs/home-assistant/packages/container/package/home-assistant",
            "ghcr.io/home-assistant/home-assistant:latest",
        ),
        (
            "https://github.com/users/someone/packages/container/package/tool",
            "ghcr.io/someone/tool:latest",
        ),
        (
            "https://github.com/stefanprodan/podinfo/pkgs/container/podinfo/123456?tag=6.5.4",
            "ghcr.io/stefanprodan/podinfo:6.5.4",
        ),
        # a registry reference with a scheme in front, Helm's oci://, a registry API address
        ("https://registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
        ("http://127.0.0.1:5000/team/app:1", "127.0.0.1:5000/team/app:1"),
        (
            "https://gcr.io/google-samples/microservices-demo/emailservice:v0.3.5/",
            "gcr.io/google-samples/microservices-demo/emailservice:v0.3.5",
        ),
        (
            "oci://registry-1.docker.io/bitnamicharts/redis:18.0.0",
            "registry-1.docker.io/bitnamicharts/redis:18.0.0",
        ),
        ("oci://ghcr.io/stefanprodan/charts/podinfo", "ghcr.io/stefanprodan/charts/podinfo"),
        (
            "https://registry-1.docker.io/v2/library/nginx/manifests/1.25",
            "registry-1.docker.io/library/nginx:1.25",
        ),
        (f"https://ghcr.io/v2/owner/app/manifests/{DIGEST}", f"ghcr.io/owner/app@{DIGEST}"),
        # wrapped by chat formatting
        ("<https://hub.docker.com/_/nginx>", "nginx:latest"),
        ("`https://hub.docker.com/_/redis`.", "redis:latest"),
    ],
)  # fmt: skip
def test_addresses(typed: str, text: str) -> None:
    reading = one(typed)
    assert (reading.text, reading.typed) == (text, typed)
    parse_image_spec(reading.text)


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("https://hub.docker.com/u/bitnami", "user or organisation page"),
        ("https://hub.docker.com/r/bitnami", "user or organisation page"),
        ("https://hub.docker.com/search?q=nginx", "not an image's page"),
        ("https://github.com/stefanprodan/podinfo", "often `ghcr.io/stefanprodan/podinfo`"),
        ("https://github.com/stefanprodan/podinfo/releases", "not a container package page"),
        ("https://quay.io/repository/", "not a repository's page"),
        ("https://example.com/page?x=1", "cannot read as an image"),
        ("ftp://example.com/nginx", "not an image reference"),
    ],
)
def test_pages_that_name_no_image(typed: str, words: str) -> None:
    with pytest.raises(InvalidReference, match=words):
        read(typed)


@pytest.mark.parametrize(
    ("typed", "text", "platform"),
    [
        ("docker pull nginx:1.25", "nginx:1.25", None),
        ("docker image pull nginx:1.25", "nginx:1.25", None),
        ("$ docker pull --platform linux/arm64 nginx:1.25", "nginx:1.25", "linux/arm64"),
        ("sudo docker pull --platform=linux/arm/v7 -q nginx:1.25", "nginx:1.25", "linux/arm/v7"),
        ("# docker pull nginx:1.25", "nginx:1.25", None),  # a root prompt, not a comment
        ("podman pull --arch arm64 --variant v8 quay.io/x/y:1", "quay.io/x/y:1", "linux/arm64/v8"),
        ("podman pull --tls-verify=false --creds u:p quay.io/x/y:1", "quay.io/x/y:1", None),
        ("nerdctl --namespace k8s.io pull --all-platforms nginx", "nginx", "all"),
        ("nerdctl -n k8s.io image pull nginx", "nginx", None),
        (
            "ctr -n k8s.io images pull --platform linux/amd64 docker.io/library/nginx:1.25",
            "docker.io/library/nginx:1.25",
            "linux/amd64",
        ),
        ("ctr i pull --user u:p registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9", None),
        ("ctr image pull registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9", None),
        ("crictl pull registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9", None),
        ("docker pull 'nginx\uff1a1.25'", "nginx:1.25", None),
        ("`docker pull nginx:1.25`", "nginx:1.25", None),
        ('"docker pull nginx:1.25"', "nginx:1.25", None),
        ("docker\u3000pull\u3000nginx:1.25", "nginx:1.25", None),
        (
            "helm pull oci://registry-1.docker.io/bitnamicharts/redis --version 18.0.0",
            "registry-1.docker.io/bitnamicharts/redis:18.0.0",
            None,
        ),
        (
            "helm install cache oci://registry-1.docker.io/bitnamicharts/redis --version=18.0.0",
            "registry-1.docker.io/bitnamicharts/redis:18.0.0",
            None,
        ),
        # the bot's own answer pasted back: the tag half fetches nothing
        (
            "docker pull docker.io/alice/nginx:1.25 && "
            "docker tag docker.io/alice/nginx:1.25 nginx:1.25",
            "docker.io/alice/nginx:1.25",
            None,
        ),
    ],
)  # fmt: skip
def test_pull_lines(typed: str, text: str, platform: str | None) -> None:
    reading = one(typed)
    assert (reading.text, reading.platform) == (text, platform)
    assert reading.typed is not None and reading.typed in typed
    assert reading.note == f"read {quote(reading.typed)} as `{text}`"


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("docker pull", "names no image"),
        ("docker pull -a nginx", "pulls every tag"),
        ("docker run --rm nginx", "not a pull command"),
        ("ctr -n k8s.io images ls", "not a pull command"),
        ("helm install cache bitnami/redis", "no `oci://` chart"),
    ],
)
def test_command_lines_that_are_not_pulls(typed: str, words: str) -> None:
    with pytest.raises(InvalidReference, match=words):
        read(typed)


def test_docker_as_a_word_is_an_image() -> None:
    assert [r.text for r in read("docker nginx").readings] == ["docker", "nginx"]


@pytest.mark.parametrize(
    ("typed", "texts"),
    [
        ("nginx redis", ["nginx", "redis"]),
        ("nginx,redis", ["nginx", "redis"]),
        ("nginx, redis, busybox", ["nginx", "redis", "busybox"]),
        ("nginx\uff0credis\u3001busybox", ["nginx", "redis", "busybox"]),
        ("nginx\u3000redis", ["nginx", "redis"]),  # a full-width space
        ("nginx;redis", ["nginx", "redis"]),
        ("- nginx\n- redis\n* busybox\n1. alpine", ["nginx", "redis", "busybox", "alpine"]),
        ("nginx nginx docker.io/library/nginx nginx", ["nginx", "docker.io/library/nginx"]),
        ("```\nnginx\nredis\n```", ["nginx", "redis"]),
        ("# the cluster's images\nnginx\n\nredis\n", ["nginx", "redis"]),
    ],
)
def test_lists(typed: str, texts: list[str]) -> None:
    pasted = read(typed)
    assert [r.text for r in pasted.readings] == texts
    assert not pasted.ambiguities


def test_duplicates_keep_the_first_reading_in_order() -> None:
    pasted = read("redis https://hub.docker.com/_/nginx nginx:latest redis")
    assert [(r.text, r.typed) for r in pasted.readings] == [
        ("redis", None),
        ("nginx:latest", "https://hub.docker.com/_/nginx"),
    ]


KUBEADM = """\
$ kubeadm config images list --kubernetes-version v1.29.3
W0329 10:12:01.123456   12345 version.go:104] could not fetch a Kubernetes version from \
the internet: unable to get URL "https://dl.k8s.io/release/stable-1.txt"
registry.k8s.io/kube-apiserver:v1.29.3
registry.k8s.io/kube-controller-manager:v1.29.3
registry.k8s.io/kube-scheduler:v1.29.3
registry.k8s.io/kube-proxy:v1.29.3
registry.k8s.io/coredns/coredns:v1.11.1
registry.k8s.io/pause:3.9
registry.k8s.io/etcd:3.5.12-0
"""  # fmt: skip


def test_kubeadm_output() -> None:
    pasted = read(KUBEADM)
    assert [r.text for r in pasted.readings] == [
        "registry.k8s.io/kube-apiserver:v1.29.3",
        "registry.k8s.io/kube-controller-manager:v1.29.3",
        "registry.k8s.io/kube-scheduler:v1.29.3",
        "registry.k8s.io/kube-proxy:v1.29.3",
        "registry.k8s.io/coredns/coredns:v1.11.1",
        "registry.k8s.io/pause:3.9",
        "registry.k8s.io/etcd:3.5.12-0",
    ]
    assert all(r.typed is None for r in pasted.readings)
    assert pasted.source == "`kubeadm config images list` output"


def test_options_are_handed_back_not_read() -> None:
    pasted = read("nginx --platform linux/arm64 redis --platform=all -x")
    assert [r.text for r in pasted.readings] == ["nginx", "redis"]
    assert pasted.options == (("--platform", "linux/arm64"), ("--platform", "all"), ("-x", None))


# -- two readings: ask, with both -------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "first", "second"),
    [
        ("nginx 1.25", ("nginx:1.25",), ("nginx:latest", "1.25")),
        ("node v20.11.1", ("node:v20.11.1",), ("node:latest", "v20.11.1")),
        ("redis 7.2-alpine", ("redis:7.2-alpine",), ("redis:latest", "7.2-alpine")),
        ("busybox latest", ("busybox:latest",), ("busybox:latest", "latest")),
        ("quay.io/x/y 1", ("quay.io/x/y:1",), ("quay.io/x/y:latest", "1")),
    ],
)
def test_a_version_after_a_name_is_asked_about(
    typed: str, first: tuple[str, ...], second: tuple[str, ...]
) -> None:
    [ambiguity] = read(typed).ambiguities
    assert ambiguity == Ambiguity(typed, (first, second))
    question = ambiguity.question
    assert question.count("?") == 1 and question.endswith("?")
    assert f"`{first[0]}`" in question and f"`{second[0]}` and `{second[1]}`" in question
    # each offered spelling, pasted back, is no longer ambiguous
    for option in (first, second):
        again = read(" ".join(option))
        assert not again.ambiguities
        assert [r.text for r in again.readings] == list(dict.fromkeys(option))


@pytest.mark.parametrize(
    "typed",
    [
        "nginx:1.25 1.26",  # the first has a tag: two images
        "nginx\n1.25",  # one per line is a list
        "nginx --platform linux/arm64 1.25",
        "nginx$web 1.25",
        "kube-apiserver:v1.29.3 pause:3.9",
    ],
)
def test_no_question_when_one_reading(typed: str) -> None:
    assert read(typed).ambiguities == ()


# -- YAML: manifests, helm template, compose ------------------------------------------------

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      initContainers:
        - name: migrate
          image: ghcr.io/acme/migrate:2.1
      containers:
        - name: web
          image: "nginx:1.25"
        - name: sidecar
          image: quay.io/prometheus/nginx-exporter:v1.1.0
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: backup
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - name: backup
              image: registry.k8s.io/etcd:3.5.12-0
          restartPolicy: OnFailure
"""

HELM = """\
---
# Source: app/templates/serviceaccount.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: release-app
---
# Source: app/templates/configmap.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: release-app
data:
  image: not-an-image:1.0
---
# Source: app/templates/statefulset.yaml
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: release-app
spec:
  template:
    spec:
      containers:
        - name: app
          image: "docker.io/bitnami/redis:7.2.4-debian-12-r9"
          imagePullPolicy: IfNotPresent
---
# Source: app/templates/daemonset.yaml
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: release-agent
spec:
  template:
    spec:
      containers:
        - name: agent
          image: docker.io/bitnami/redis:7.2.4-debian-12-r9
      ephemeralContainers:
        - name: debug
          image: busybox:1.36
"""

LIST = """\
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Pod
    metadata: {name: a}
    spec:
      containers: [{name: a, image: alpine:3.19}]
  - apiVersion: apps/v1
    kind: ReplicaSet
    metadata: {name: b}
    spec:
      template:
        spec:
          containers: [{name: b, image: "registry.k8s.io/pause:3.9"}]
  - apiVersion: batch/v1
    kind: Job
    metadata: {name: c}
    spec:
      template:
        spec:
          containers: [{name: c, image: alpine:3.19}]
"""

COMPOSE = """\
services:
  web:
    image: nginx:1.25
    ports: ["8080:80"]
  app:
    build: .
  db:
    image: postgres:16-alpine
    environment:
      POSTGRES_PASSWORD: example
volumes:
  data: {}
"""


@pytest.mark.parametrize(
    ("text", "images", "source"),
    [
        (
            DEPLOYMENT,
            ["ghcr.io/acme/migrate:2.1", "nginx:1.25", "quay.io/prometheus/nginx-exporter:v1.1.0",
             "registry.k8s.io/etcd:3.5.12-0"],
            "Kubernetes YAML",
        ),
        (HELM, ["docker.io/bitnami/redis:7.2.4-debian-12-r9", "busybox:1.36"], "Kubernetes YAML"),
        (LIST, ["alpine:3.19", "registry.k8s.io/pause:3.9"], "Kubernetes YAML"),
        (COMPOSE, ["nginx:1.25", "postgres:16-alpine"], "compose file"),
        (
            "containers:\n  - name: x\n    image: nginx:1.25\n",  # a snippet without a kind
            ["nginx:1.25"],
            "Kubernetes YAML",
        ),
        ("apiVersion: v1\nkind: ConfigMap\ndata:\n  image: nginx\n", [], "Kubernetes YAML"),
    ],
)  # fmt: skip
def test_yaml(text: str, images: list[str], source: str | None) -> None:
    pasted = read(text)
    assert [r.text for r in pasted.readings] == images
    assert all(r.typed is None for r in pasted.readings)
    assert pasted.source == source


def test_options_before_a_manifest_are_read() -> None:
    pasted = read("--platform linux/arm64\n" + COMPOSE)
    assert pasted.options == (("--platform", "linux/arm64"),)
    assert [r.text for r in pasted.readings] == ["nginx:1.25", "postgres:16-alpine"]


def test_unrendered_template_is_one_sentence() -> None:
    template = (
        "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n"
        "      containers:\n{{- range .Values.containers }}\n        - image: {{ .image }}\n"
    )
    with pytest.raises(InvalidReference, match=r"cannot be read at line \d+"):
        read(template)


def test_anchors_and_aliases_are_read_once() -> None:
    """Nine aliases per level, eleven levels: 9**11 containers if each alias were walked."""
    levels = ["a0: &a0 {containers: [{image: 'nginx:1.25'}]}"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 12)]
    pasted = read("kind: Pod\nspec:\n" + "\n".join("  " + line for line in levels))
    assert [r.text for r in pasted.readings] == ["nginx:1.25"]


def test_compose_merge_keys() -> None:
    compose = (
        "x-base: &base\n  image: busybox:1.36\n  restart: always\n"
        "services:\n  a:\n    <<: *base\n  b:\n    <<: *base\n    image: alpine:3.19\n"
    )
    assert [r.text for r in read(compose).readings] == ["busybox:1.36", "alpine:3.19"]


PIECES = st.sampled_from(
    ["https://", "http://[", "oci://", "hub.docker.com/", "_/", "r/", "layers/", "github.com/",
     "quay.io/repository/", "/pkgs/container/", "?tag=", "&name=", "%2F", "docker pull ",
     "ctr -n x images pull ", "helm pull ", "--version ", "--platform ", "\n", " ", "\t",
     "apiVersion: v1\n", "kind: List\n", "items:\n", "  - ", "containers:\n", "image: ",
     "services:\n", "---\n", "# Source: x\n", ":", "@", "\uff0c", "\u200b", "'", '"', "`",
     "nginx", "1.25", "v2/", "/manifests/", DIGEST, "$ kubeadm config images list\n", "&&",
     "{", "[", "*", "&a ", "!!python/object:os.system ", "%", "\\"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(PIECES, st.text(max_size=5)), max_size=25).map("".join))
def test_any_paste_is_read_or_refused_with_one_sentence(text: str) -> None:
    try:
        found = references(read(text))
    except MirrorError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert all(reading.text for _, reading in found)
