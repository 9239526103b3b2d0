"""A whole Helm chart asked for (issue 27): which chart, and what a job copies for it.

``/mirror oci://…/chart:1.2.3``, ``helm install NAME oci://…/chart --version 1.2.3`` and
``helm install NAME CHART --repo URL --version 1.2.3`` (where the repository's host is an
allowed source) name a chart; ``helm install NAME repo/chart`` names a repository alias that
exists only on the machine that typed it, which nobody else can resolve, and is answered so.
The chart is read (:mod:`mirror.charts`, through the one registry client, or
:mod:`mirror.helm_repo`) before anything is planned, so the job copies the chart beside the
images it deploys, under the same rules as any list, and the answer ends with a values file that
points every image at the mirror (:func:`bot.rewrite.chart_rewrite`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bot.paste import Reading
from bot.pasted_errors import SHELL_PROMPT, joined
from bot.policy import Verdict
from mirror.errors import InvalidReference, MirrorError
from mirror.naming import parse_image_spec
from mirror.reference import ImageRef, parse_reference, quote
from mirror.text import N_, Text, text_of

if TYPE_CHECKING:
    from bot.policy import Policy
    from bot.runtime import LazyLookups
    from mirror.charts import Chart

_VERBS = frozenset({"install", "upgrade", "template", "pull", "fetch", "show", "inspect"})
_TWO_NAMES = frozenset({"install", "upgrade", "template"})
"""``helm install NAME CHART``: the chart is the second word (or the only one)."""
_VALUE_OPTIONS = frozenset(
    {"--version", "--repo", "-f", "--values", "--set", "--set-string", "--set-file",
     "--set-json", "--set-literal", "-n", "--namespace", "--username", "--password",
     "--ca-file", "--cert-file", "--key-file", "--keyring", "--timeout", "--kube-context",
     "--kubeconfig", "--description", "--post-renderer", "--post-renderer-args", "-o",
     "--output", "-d", "--destination", "--untardir", "--name-template", "--registry-config",
     "--repository-config", "--repository-cache", "--kube-apiserver", "--kube-token",
     "--kube-as-user", "--kube-as-group", "--kube-ca-file", "--labels", "-l", "--api-versions",
     "-a", "--show-only", "-s", "--output-dir", "--history-max", "--burst-limit", "--qps"}
)  # fmt: skip
_HUB_HOSTS = ("registry-1.docker.io/", "index.docker.io/")


@dataclass(frozen=True)
class ChartAsk:
    """A chart as asked: in a registry (``oci``) or in an HTTP repository (``repo``)."""

    typed: str
    oci: str | None = None
    """``host/path[:tag]``, as after ``oci://``."""
    repo: str | None = None
    name: str | None = None
    version: str | None = None

    @property
    def command(self) -> str:
        """The ask typed again (a plan's "Copy all" re-reads the chart when pressed)."""
        if self.oci is not None:
            return f"oci://{self.oci}"
        version = f" --version {self.version}" if self.version else ""
        return f"helm pull {self.name} --repo {self.repo}{version}"


def _oci(reference: str, version: str | None) -> str:
    """``host/path:tag``: the version joined as helm does, Docker Hub under its own name."""
    for alias in _HUB_HOSTS:
        if reference.startswith(alias):
            reference = "docker.io/" + reference[len(alias) :]
    last = reference.rsplit("/", 1)[-1]
    if version and ":" not in last and "@" not in last:
        reference = f"{reference}:{version.replace('+', '_')}"
    return reference


def oci_ask(typed: str, reference: str, version: str | None = None) -> ChartAsk:
    return ChartAsk(typed, oci=_oci(reference, version))


def find_chart(text: str, options: Sequence[str] = ()) -> ChartAsk | None:
    """The chart ``text`` names when it names one chart and nothing else (``options`` are the
    surrounding command's words to leave aside, e.g. ``--confirm``), else None.

    Raises :class:`InvalidReference` for a chart nobody but the asker can resolve (a repository
    alias, a file on their disk)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    words = [w for line in lines for w in line.split() if w not in options]
    if len(words) == 1 and words[0].lower().startswith("oci://"):
        return oci_ask(words[0], words[0][len("oci://") :])
    content = [line for line in lines if not all(w in options for w in line.split())]
    if len(content) != 1:
        return None
    helm = _helm_words(content[0].strip("`").strip())
    if helm is None:
        return None
    return _helm(content[0], helm)


def _helm_words(line: str) -> list[str] | None:
    """The words after ``helm`` on a pasted command line (a prompt or ``sudo`` before it)."""
    try:
        words = shlex.split(SHELL_PROMPT.sub("", line, count=1))
    except ValueError:
        return None
    while words and words[0] in ("$", "#", ">", "%", "sudo"):
        words = words[1:]
    return words[1:] if words[:1] == ["helm"] else None


def _helm(line: str, words: list[str]) -> ChartAsk | None:
    verb: str | None = None
    positional: list[str] = []
    given: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, value = word.partition("=")
        if word.startswith("-"):
            if name in _VALUE_OPTIONS and not eq:
                value = words[i + 1] if i + 1 < len(words) else ""
                i += 1
            given[name] = value
        elif verb is None:
            verb = word
        else:
            positional.append(word)
        i += 1
    if verb not in _VERBS:
        return None
    if verb in ("show", "inspect") and positional:
        positional = positional[1:]  # helm show values CHART
    if not positional:
        return None
    chart = positional[1] if verb in _TWO_NAMES and len(positional) > 1 else positional[0]
    version = given.get("--version") or None
    if chart.lower().startswith("oci://"):
        return oci_ask(line, chart[len("oci://") :], version)
    repo = given.get("--repo")
    if repo:
        if urlsplit(repo).scheme not in ("http", "https"):
            raise InvalidReference(
                Text("{repo} is not a Helm repository's address.", repo=quote(repo))
            )
        return ChartAsk(line, repo=repo.rstrip("/"), name=chart, version=version)
    if chart.startswith((".", "/", "~")) or chart.endswith((".tgz", ".tar.gz")):
        raise InvalidReference(
            Text(
                "{chart} is a chart on your disk, which I cannot read: give it as `oci://…`, "
                "or as its name with `--repo URL`.",
                chart=quote(chart),
            )
        )
    if re.fullmatch(r"[\w.-]+/[\w.-]+", chart):
        alias = chart.split("/", 1)[0]
        raise InvalidReference(
            Text(
                "{chart} is a Helm repository alias: `{alias}` means whatever `helm repo add` "
                "named it on your machine, so I cannot resolve it. Give the chart as "
                "`oci://…`, or as `helm install NAME {name} --repo URL`.",
                chart=quote(chart),
                alias=alias,
                name=chart.split("/", 1)[1],
            )
        )
    return None


# -- reading it ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartSource:
    """A chart read: what the job copies for it, and what its answer's values file points."""

    ask: ChartAsk
    chart: Chart | None
    """None when it could not be read (``unread`` says why): the chart is copied alone."""
    ref: ImageRef | None
    """The chart in its registry, as copied beside its images (its version resolved); None
    for a chart that lives in an HTTP repository, which is not copied."""
    repo_url: str | None = None
    """Where an HTTP repository's chart stays."""
    unread: str | None = None
    """Why the archive was not read (too large, a link in it, no chart, not reachable)."""


async def read_chart_ask(ask: ChartAsk, lookups: LazyLookups, policy: Policy) -> ChartSource:
    """Read the chart (the registry's, or an allowed HTTP repository's): network."""
    if ask.oci is not None:
        return await _from_registry(ask, ask.oci, lookups, policy)
    assert ask.repo is not None and ask.name is not None
    host = urlsplit(ask.repo).netloc
    policy.check_source(ImageRef(host, ask.name.lower(), None, None))
    found = await lookups.helm_repos().chart(ask.repo, ask.name, ask.version)
    if found.oci is not None:  # the index points at a registry: an OCI chart after all
        return await _from_registry(ask, _oci(found.oci, None), lookups, policy)
    from mirror.charts import read_chart

    assert found.archive is not None
    return ChartSource(ask, read_chart(found.archive), None, ask.repo)


async def _from_registry(
    ask: ChartAsk, oci: str, lookups: LazyLookups, policy: Policy
) -> ChartSource:
    try:
        ref = parse_reference(oci)
    except MirrorError as exc:
        raise InvalidReference(Text("{chart} is not a chart's address.", chart=quote(oci))) from exc
    try:
        policy.check_source(ref)
    except MirrorError:  # held for an admin, or refused: the planner says which, and records it
        return ChartSource(ask, None, ref, unread=_WAITS)
    last = oci.rsplit("/", 1)[-1]
    newest = ":" not in last and "@" not in last
    try:
        ref, chart = await lookups.get().chart(ref, newest=newest)
    except MirrorError as exc:  # the artifact is still copied, exactly, as any other
        return ChartSource(ask, None, ref, unread=text_of(exc))
    return ChartSource(ask, chart, ref)


_WAITS = Text("nothing reaches its registry before an admin approves it.")


@dataclass(frozen=True)
class ChartPlan:
    """What a job copies for a chart, and what the acknowledgement says it read."""

    readings: tuple[Reading, ...]
    origin: Text
    refused: tuple[str, ...] = ()


def chart_plan(source: ChartSource, policy: Policy) -> ChartPlan:
    """The chart (when it is in a registry) and each image it deploys once, in order; images
    from registries the policy refuses are left out and named."""
    readings: list[Reading] = []
    if source.ref is not None:
        readings.append(Reading(str(source.ref), source.ask.typed))
    refused: list[str] = []
    seen: set[str] = set()
    if source.chart is None:
        return ChartPlan(tuple(readings), _unread(source))
    for image in source.chart.images:
        try:
            spec = parse_image_spec(image.reference)
        except MirrorError:
            refused.append(image.reference)
            continue
        if policy.judge(spec.source) is Verdict.REFUSED:  # one an admin must approve is held
            refused.append(image.reference)
            continue
        if str(spec.source) not in seen:
            seen.add(str(spec.source))
            readings.append(Reading(image.reference))
    return ChartPlan(tuple(readings), _origin(source, len(seen), refused), tuple(refused))


_DEPLOYS_ANNOTATED = (
    N_("Chart {chart} {version} deploys 1 image, as its artifacthub.io/images annotation says."),
    N_(
        "Chart {chart} {version} deploys {count} images, as its artifacthub.io/images "
        "annotation says."
    ),
)
_DEPLOYS_VALUES = (
    N_("Chart {chart} {version} deploys 1 image, as its default values set it."),
    N_(
        "Chart {chart} {version} deploys {count} images, as its default values and its "
        "subcharts' set them."
    ),
)


def _unread(source: ChartSource) -> Text:
    return Text(
        "I could not read which images {chart} deploys: {reason} Copying the chart alone.",
        chart=quote(source.ask.command),
        reason=source.unread or "",
    )


def _origin(source: ChartSource, count: int, refused: Sequence[str]) -> Text:
    chart = source.chart
    assert chart is not None
    name, version = quote(chart.name), chart.version
    if count == 0 and not refused:
        head = Text(
            "Chart {chart} {version} sets no image I can find in its default values; "
            "copying the chart alone.",
            chart=name,
            version=version,
        )
    else:
        pair = _DEPLOYS_ANNOTATED if chart.from_annotation else _DEPLOYS_VALUES
        total = count + len(refused)
        head = (
            Text(pair[0], chart=name, version=version)
            if total == 1
            else Text(pair[1], chart=name, version=version, count=total)
        )
    parts = [head]
    if chart.disabled:
        parts.append(
            Text(
                "Subcharts off by default, not read: {names}.",
                names=", ".join(quote(d) for d in chart.disabled),
            )
        )
    if refused:
        parts.append(
            Text(
                "Not copied, their registries not being allowed sources here: {images}.",
                images=", ".join(quote(r) for r in refused),
            )
        )
    if source.ref is None and source.repo_url is not None:
        parts.append(
            Text(
                "The chart itself stays in {repo}, which is no registry: install it from there "
                "with the values file below.",
                repo=quote(source.repo_url),
            )
        )
    return joined(parts)
