"""Reading pasted pull failures as what to mirror (issue 27; DESIGN.md §5 "Reading errors").

What people have in hand when a pull fails is the error, not a name: ``kubectl describe pod``
events, a ``kubectl get events`` table, a kubelet or ``crictl`` log with its quotes escaped,
``kubeadm``'s preflight ``[ERROR ImagePull]`` lines, ``docker run``'s "Unable to find image"
and the daemon's answer under it, ``helm install … oci://…`` and its failure. This module reads
them: each failing image once, whatever number of times the log repeats it, with what kind of
failure it met (the most telling line wins) and the platform an error names. Lines that name no
image are ignored, except the daemon's answer under the line that named one (``docker pull X``,
``Unable to find image 'X' locally``). Images named only in lines that say nothing failed
(``Pulling image``, ``Successfully pulled``) are not failing and are not read.

Pure functions from text, no network; :mod:`bot.commands.mirror` and the command line turn what
is read here into a job, and say (with :func:`summary`) what was read and how each failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from bot.paste import Reading, read_command_line
from bot.paste import _command_words as command_words
from mirror.errors import MirrorError
from mirror.naming import parse_image_spec
from mirror.platform import parse_platform
from mirror.reference import quote
from mirror.text import N_, Text

# -- what kind of failure -----------------------------------------------------------------------


class Failure(IntEnum):
    """What a pull met, most telling last: an image named in several lines keeps the highest
    (``Back-off pulling image`` says less than the ``i/o timeout`` above it)."""

    FAILED = 1
    """The log says the pull failed, not why (``Back-off pulling image``, ``ErrImagePull``)."""
    UNREACHABLE = 2
    """Timeouts, refused connections, DNS: the registry is out of reach from there."""
    DENIED = 3
    """``pull access denied``, 401/403: no such repository, or a login it lacks."""
    MANIFEST_UNKNOWN = 4
    """``manifest unknown``, ``not found``: no such tag where it was pulled."""
    RATE_LIMITED = 5
    """``toomanyrequests``, 429: the registry's pull limit."""
    PLATFORM_MISSING = 6
    """``no matching manifest for linux/arm64/v8``: no image for the puller's platform."""
    UNTRUSTED = 7
    """``x509``: the puller does not trust the registry's certificate; nothing to copy."""

    @property
    def mirrored(self) -> bool:
        """Whether a copy helps: not for a certificate the pulling machine does not trust."""
        return self is not Failure.UNTRUSTED

    @property
    def word(self) -> str:
        """``--json``'s name for it (``unreachable``, ``platform_missing``)."""
        return self.name.lower()


# A cause is read from one line of the log; the first matching wins, most telling first.
_CAUSES: tuple[tuple[Failure, re.Pattern[str]], ...] = (
    (
        Failure.UNTRUSTED,
        re.compile(r"x509:|certificate signed by unknown authority|failed to verify certificate"),
    ),
    (
        Failure.PLATFORM_MISSING,
        re.compile(r"no matching manifest for|no match for platform|does not match the specified"),
    ),
    (
        Failure.RATE_LIMITED,
        re.compile(r"toomanyrequests|too many requests|pull rate limit|rate limit exceeded"),
    ),
    (
        Failure.MANIFEST_UNKNOWN,
        re.compile(
            r"manifest unknown|manifest for \S+ not found|not found: manifest|"
            r"failed to resolve reference \"[^\"]+\": \S+: not found|"
            r"\bimage \S+ not found|tag \S+ not found|failed to resolve \S+: \S+: not found"
        ),
    ),
    (
        Failure.DENIED,
        re.compile(
            r"pull access denied|repository does not exist|unauthorized|forbidden|"
            r"status(?: code)?:? 40[13]\b|denied: |insufficient_scope|authorization failed|"
            r"unable to retrieve credentials"
        ),
    ),
    (
        Failure.UNREACHABLE,
        re.compile(
            r"i/o timeout|connection refused|connection reset|context deadline exceeded|"
            r"deadlineexceeded|tls handshake timeout|no such host|network is unreachable|"
            r"no route to host|request canceled|timeout exceeded|timed out|"
            r"temporary failure in name resolution|lookup \S+(?: on \S+)?: (?:try again|"
            r"server misbehaving)|dial tcp|unexpected eof|connection error"
        ),
    ),
    (
        Failure.FAILED,
        re.compile(
            r"failed to pull|back-off pulling|errimagepull|imagepullbackoff|error pulling|"
            r"error response from daemon|pulling image failed|pullimage from image service failed|"
            r"installation failed|failed to download|\[error imagepull\]|fata\[|"
            r"error: (?:upgrade|template) failed"
        ),
    ),
)
_LOCAL_RUNTIME_RE = re.compile(r"dial unix|\.sock\b")
"""A refused local socket is the runtime on that machine, not the registry: no cause read."""

_MARKER_RE = re.compile(
    r"failed to pull|back-off pulling|errimagepull|imagepullbackoff|\[error imagepull\]|"
    r"error response from daemon|unable to find image|toomanyrequests|manifest unknown|"
    r"no matching manifest|x509:|pullimage from image service failed|pulling image failed|"
    r"installation failed|failed to download \"oci://|error pulling|pull access denied",
    re.IGNORECASE,
)


def looks_like_pull_error(text: str) -> bool:
    """Whether the text is (or holds) a pull failure rather than names, lines or manifests."""
    return _MARKER_RE.search(text) is not None


# -- where an image is named ------------------------------------------------------------------

_REF = r"[A-Za-z0-9\[][^\s\"'`,;<>()]*"
_NAMED = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        # kubelet, kubectl events, containerd, crictl: image "X", image="X", reference "X"
        rf"\b(?:image|reference)\s*=?\s*\"(?P<ref>{_REF})\"",
        # docker run: Unable to find image 'X' locally
        rf"unable to find image '(?P<ref>{_REF})' locally",
        # kubeadm preflight: failed to pull image X: output: …, or [X]: exit status 1
        rf"failed to pull image \[?(?P<ref>{_REF}?)\]?:?(?:\s|$)",
        # docker: manifest for X not found; pull access denied for X, repository …
        rf"manifest for (?P<ref>{_REF}) not found",
        rf"pull access denied for (?P<ref>{_REF})",
        # docker-compose and scripts: Error pulling X, retrying…
        rf"error pulling (?P<ref>{_REF})",
        # old kubelets: Error: image X not found; helm: failed to resolve X: X: not found
        rf"\bimage (?P<ref>{_REF}) not found",
        rf"failed to resolve (?P<ref>{_REF}?):\s",
    )
)
_CHART_DOWNLOAD_RE = re.compile(
    r"failed to download \"oci://(?P<ref>[^\"\s]+)\"(?: at version \"(?P<version>[^\"\s]+)\")?",
    re.IGNORECASE,
)
_DESCRIBED_IMAGE_RE = re.compile(rf"^\s*Image:\s+(?P<ref>{_REF})\s*$")
"""``kubectl describe pod``'s container block; its ``Reason:`` a few lines below says more."""
_DESCRIBED_REASON_RE = re.compile(r"^\s*Reason:\s+(?:ImagePullBackOff|ErrImagePull)\s*$")
_SUCCESS_RE = re.compile(r"successfully pulled|already present on machine|image is up to date")
_PLATFORM_RES = (
    re.compile(r"no matching manifest for (?P<platform>[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9.]+)?)"),
    re.compile(r"wanted (?P<platform>[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9.]+)?)"),
)
_HOST_RE = re.compile(r"https?://(?P<host>[^/\s\"]+)")
_ESCAPED_QUOTE_RE = re.compile(r"\\+\"")
_HUB_ALIASES = ("index.docker.io/", "registry-1.docker.io/", "registry.hub.docker.com/")


class Source(IntEnum):
    """Which tool's words the failure was read from, for the answer's "from docker's message"."""

    EVENTS = 1
    KUBELET = 2
    KUBEADM = 3
    CRICTL = 4
    DOCKER = 5
    HELM = 6

    @property
    def words(self) -> str:
        return _SOURCE_WORDS[self]

    @property
    def kubernetes(self) -> bool:
        """A cluster pulled it: the answer points its manifests at the mirror."""
        return self in (Source.EVENTS, Source.KUBELET, Source.CRICTL)


_SOURCE_WORDS = {
    Source.EVENTS: N_("the pod's events"),
    Source.KUBELET: N_("the kubelet's log"),
    Source.KUBEADM: N_("kubeadm's message"),
    Source.CRICTL: N_("crictl's message"),
    Source.DOCKER: N_("docker's message"),
    Source.HELM: N_("helm's message"),
}


def _source_of(line: str) -> Source:
    lowered = line.lower()
    if "[error imagepull]" in lowered or "[warning imagepull]" in lowered:
        return Source.KUBEADM
    if "installation failed" in lowered or "helm " in lowered or "oci://" in lowered:
        return Source.HELM
    if "fata[" in lowered or "crictl" in lowered:
        return Source.CRICTL
    if re.search(r"kubelet\[\d+\]|remote_image\.go|pod_workers\.go|err=\"", line):
        return Source.KUBELET
    if re.search(r"\b(?:Warning|Normal)\b", line) or "kubelet" in lowered:
        return Source.EVENTS
    return Source.DOCKER


# -- what was read ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedPull:
    """One failing image as the log names it, and what its pull met."""

    image: str
    """As the log first names it (``busybox``, ``registry.k8s.io/pause:3.9``)."""
    failure: Failure
    source: Source
    lines: tuple[str, ...]
    """Every line of the paste naming it or its failure, as pasted (``--json``'s ``asked``)."""
    platform: str | None = None
    """The platform the error names (``linux/arm64/v8``); ``all`` when it names none."""
    host: str | None = None
    """For a certificate failure, the host whose certificate was not trusted."""
    chart: bool = False
    """A Helm chart (``helm install … oci://…``): mirrored with the images it deploys."""

    @property
    def reading(self) -> Reading:
        """What :mod:`bot.paste` would have read: the image, typed as its first line, with the
        platform to copy when the error named a missing one."""
        platform = self.platform if self.failure is Failure.PLATFORM_MISSING else None
        return Reading(self.image, self.lines[0], platform)


@dataclass
class _Seen:
    image: str
    source: Source
    failure: Failure | None = None
    lines: list[str] = field(default_factory=list)
    """The lines saying it failed, and the one naming it that a failure below was about."""
    platform: str | None = None
    host: str | None = None
    chart: bool = False
    naming: str | None = None
    """The last line that named it without a failure (``docker pull X``, ``Image: X``)."""
    commanded: bool = False
    """A tool's command line named it (``crictl pull X``): that tool's words follow."""

    def add(
        self,
        line: str,
        failure: Failure | None,
        platform: str | None,
        host: str | None,
        *,
        attached: bool = False,
    ) -> None:
        if failure is None:
            self.naming = line
            return
        for said in (self.naming if attached else None, line):
            if said is not None and said not in self.lines:
                self.lines.append(said)
        if failure is not None and (self.failure is None or failure > self.failure):
            self.failure = failure
            if not self.commanded:
                self.source = _source_of(line)
        self.platform = self.platform or platform
        self.host = self.host or host


@dataclass(frozen=True)
class PullErrors:
    """Everything a paste of pull failures names, each image once, in the order first named."""

    failures: tuple[FailedPull, ...]

    @property
    def copied(self) -> tuple[FailedPull, ...]:
        """What a copy helps: all but the certificate failures."""
        return tuple(f for f in self.failures if f.failure.mirrored)

    @property
    def untrusted(self) -> tuple[FailedPull, ...]:
        return tuple(f for f in self.failures if not f.failure.mirrored)

    @property
    def kubernetes(self) -> bool:
        """Whether a cluster did the pulling (its manifests want pointing at the mirror)."""
        return any(f.source.kubernetes for f in self.copied)


def read_pull_errors(text: str) -> PullErrors:
    """The failing images of a pasted log; empty when it names none."""
    seen: dict[str, _Seen] = {}
    context: tuple[str, bool] | None = None
    """The image the last lines were about, and whether ``kubectl describe``'s block named it."""
    for raw in text.splitlines():
        line = _ESCAPED_QUOTE_RE.sub('"', raw).strip()
        if not line:
            continue
        lowered = line.lower()
        failure = _failure(lowered)
        named = list(_named(line))
        described = _DESCRIBED_IMAGE_RE.match(line)
        if described:
            named = [(described["ref"], False)]
        attached = not named
        if attached:
            if failure is None and not _DESCRIBED_REASON_RE.match(line):
                continue
            if context is None or not _attaches(failure, line, context[1]):
                continue
            named = [(context[0], False)]
            failure = failure or Failure.FAILED
        if _SUCCESS_RE.search(lowered):
            continue  # an image pulled fine is not one to mirror, nor a context
        for text_ref, chart in named:
            key = _key(text_ref)
            if key is None:
                continue
            entry = seen.get(key)
            if entry is None:
                commanded = command_words(SHELL_PROMPT.sub("", line, count=1)) is not None
                source = Source.EVENTS if described else _source_of(line)
                entry = seen[key] = _Seen(text_ref, source, chart=chart)
                entry.commanded = commanded or chart or described is not None
            said = raw.strip()
            platform, host = _platform(lowered, failure), _host(line, failure)
            entry.add(said, failure, platform, host, attached=attached)
            if not attached:
                context = (key, described is not None)
    found = []
    for entry in seen.values():
        if entry.failure is None:
            continue  # named, never said to fail (``Pulling image``, ``Image:``)
        platform = entry.platform
        if entry.failure is Failure.PLATFORM_MISSING and platform is None:
            platform = "all"  # the error names none: every platform, so the puller's is there
        found.append(
            FailedPull(
                _spelled(entry),
                entry.failure,
                entry.source,
                tuple(entry.lines),
                platform,
                entry.host,
                entry.chart,
            )
        )
    return PullErrors(tuple(found))


def _spelled(entry: _Seen) -> str:
    """Docker Hub's API hosts as people write them: ``docker.io/…``."""
    for alias in _HUB_ALIASES:
        if entry.image.startswith(alias):
            return "docker.io/" + entry.image[len(alias) :]
    return entry.image


def _failure(lowered: str) -> Failure | None:
    for failure, pattern in _CAUSES:
        if pattern.search(lowered):
            if failure is Failure.UNREACHABLE and _LOCAL_RUNTIME_RE.search(lowered):
                return Failure.FAILED  # the runtime's own socket: a copy may still help
            return failure
    return None


def _attaches(failure: Failure | None, line: str, described: bool) -> bool:
    """Whether a line naming no image is about the one named above it: the daemon's answer
    under ``docker pull X`` says why (a cause, not a bare "failed"); under ``kubectl describe``
    the container's ``Reason: ImagePullBackOff`` belongs to its ``Image:``. A bare
    ``Error: ErrImagePull`` event may follow any image, so it attaches to none."""
    if described:
        return _DESCRIBED_REASON_RE.match(line) is not None or (
            failure is not None and failure > Failure.FAILED
        )
    return failure is not None and failure > Failure.FAILED


SHELL_PROMPT = re.compile(
    r"^(?:.{0,80}?[$#%>\u276f\u00bb]|\u279c\s+\S+|PS [^>]{0,80}>)\s*"
    r"(?=(?:sudo\s+)?(?:docker|podman|nerdctl|ctr|crictl|helm)\s)"
)
"""A shell prompt before a pasted command: ``user@host ~ %``, ``PS C:\\>``, zsh's ``➜  dir``."""


def _named(line: str) -> Iterator[tuple[str, bool]]:
    """The references a line names (``(text, is_chart)``), in order, each once."""
    found: dict[str, bool] = {}
    words = command_words(SHELL_PROMPT.sub("", line, count=1))
    if words is not None:
        found.update(_from_command(line, words))
    chart = _CHART_DOWNLOAD_RE.search(line)
    if chart:
        ref = chart["ref"]
        if chart["version"] and ":" not in ref.rsplit("/", 1)[-1]:
            ref = f"{ref}:{chart['version']}"
        found.setdefault(ref, True)
    for pattern in _NAMED:
        for match in pattern.finditer(line):
            ref = match["ref"].rstrip(".:")
            if not ref.startswith(("http", "oci:")) and "://" not in ref:
                found.setdefault(ref, False)
    yield from found.items()


def _from_command(line: str, words: list[str]) -> Iterator[tuple[str, bool]]:
    """A ``docker pull X`` or ``helm install N oci://X`` line names what the answer under it is
    about; a command that is not a pull names nothing."""
    try:
        readings = read_command_line(line, words)
    except MirrorError:
        return
    chart = words[0] == "helm"
    for reading in readings:
        yield reading.text, chart


def _key(text: str) -> str | None:
    """One key per image however the log spells it (``busybox``, ``docker.io/library/busybox
    :latest``); None for what is no image reference (a digest, a URL, a template)."""
    for alias in _HUB_ALIASES:
        if text.startswith(alias):
            text = "docker.io/" + text[len(alias) :]
    try:
        spec = parse_image_spec(text)
    except MirrorError:
        return None
    return str(spec.source)


def _platform(lowered: str, failure: Failure | None) -> str | None:
    if failure is not Failure.PLATFORM_MISSING:
        return None
    for pattern in _PLATFORM_RES:
        match = pattern.search(lowered)
        if match:
            try:
                parse_platform(match["platform"])
            except MirrorError:
                continue
            return match["platform"]
    return None


def _host(line: str, failure: Failure | None) -> str | None:
    """The host a certificate failure names (``Get https://HOST/v2/: x509: …``)."""
    if failure is not Failure.UNTRUSTED:
        return None
    match = _HOST_RE.search(line)
    return match["host"].lower() if match else None


# -- what to say ------------------------------------------------------------------------------

_COUNTED = (N_("From a pull error: 1 image."), N_("From a pull error: {count} images."))
_KIND_WORDS = {
    Failure.FAILED: N_("{image}: the pull failed; mirroring it."),
    Failure.UNREACHABLE: N_(
        "{image}: its registry was out of reach from where it was pulled; mirroring it."
    ),
    Failure.DENIED: N_(
        "{image}: the registry refused the pull (no such repository, or a login is needed); "
        "mirroring it says which."
    ),
    Failure.MANIFEST_UNKNOWN: N_(
        "{image}: no such tag where it was pulled; mirroring it from the source, or the "
        "nearest tags if the source has none either."
    ),
    Failure.RATE_LIMITED: N_("{image}: its registry's pull limit stopped the pull; mirroring it."),
    Failure.PLATFORM_MISSING: N_(
        "{image}: no image for {platform} where it was pulled; copying {platform}."
    ),
    Failure.UNTRUSTED: N_(
        "{image}: the pulling machine does not trust the certificate of {host}: that is its "
        "CA, not the image, so nothing is copied."
    ),
}


def kind_line(failed: FailedPull) -> Text:
    """What one failing image met, and what the bot does about it, in one sentence."""
    image = quote(failed.image)
    template = _KIND_WORDS[failed.failure]
    if failed.failure is Failure.PLATFORM_MISSING:
        if failed.platform == "all":
            return Text(
                "{image}: no image for the pulling machine's platform; copying every platform.",
                image=image,
            )
        return Text(template, image=image, platform=failed.platform)
    if failed.failure is Failure.UNTRUSTED:
        return Text(template, image=image, host=failed.host or _registry(failed.image))
    return Text(template, image=image)


def summary(errors: PullErrors) -> Text:
    """``From a pull error: 2 images; linux/arm64/v8 from docker's message.``, then one line
    per image saying what its pull met: what the answer says it read."""
    count = len(errors.failures)
    head = Text(_COUNTED[0]) if count == 1 else Text(_COUNTED[1], count=count)
    named = [f for f in errors.failures if f.platform and f.platform != "all"]
    if named:
        platforms = ", ".join(dict.fromkeys(f.platform or "" for f in named))
        head = Text(
            "From a pull error: {images}; {platforms} from {source}.",
            images=_counted_images(count),
            platforms=platforms,
            source=Text(named[0].source.words),
        )
    return joined([head, *(kind_line(f) for f in errors.failures)])


def _counted_images(count: int) -> Text:
    return Text("1 image") if count == 1 else Text("{count} images", count=count)


def joined(parts: Sequence[Text]) -> Text:
    """Sentences on lines of their own, each translated where shown."""
    together = parts[0]
    for part in parts[1:]:
        together = Text("{lines}\n{line}", lines=together, line=part)
    return together


def _registry(image: str) -> str:
    try:
        return parse_image_spec(image).source.registry
    except MirrorError:
        return image


def certs_path(host: str) -> str:
    return f"/etc/docker/certs.d/{host}/ca.crt"


def trust_advice(untrusted: Iterable[FailedPull]) -> list[Text]:
    """For each host whose certificate the puller rejected: where its CA goes (docker's
    ``certs.d``, and containerd's, which a cluster's nodes read)."""
    hosts = dict.fromkeys(f.host or _registry(f.image) for f in untrusted)
    return [
        Text(
            "Put the CA that signed {host}'s certificate in {docker} on the machine that pulls "
            "(containerd on a cluster node: {containerd}, named as `ca` in hosts.toml there), "
            "then pull again.",
            host=quote(host),
            docker=quote(certs_path(host)),
            containerd=quote(f"/etc/containerd/certs.d/{host}/ca.crt"),
        )
        for host in hosts
    ]
