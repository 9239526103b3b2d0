"""Reading what people paste into references (issues 12 and 15; DESIGN.md §4).

People paste what they have at hand: a ``docker pull`` line, an image page's web address, a name
typed with a CJK input method, ``kubeadm config images list`` output, a manifest. Every reader
here is a pure function from text to :class:`Reading` s, each remembering what was typed, so
the answer can say how it was read. Nothing is guessed: when the text has two plausible
readings the result is an :class:`Ambiguity`, and the bot asks with both.
"""

from __future__ import annotations

import re
import shlex
import textwrap
import unicodedata
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

from mirror.errors import InvalidReference, MirrorError
from mirror.naming import ImageSpec, parse_image_spec
from mirror.reference import DEFAULT_TAG, is_valid_tag, quote
from mirror.text import Text

if TYPE_CHECKING:
    from bot.chart_request import ChartSource


class Ambiguous(MirrorError):
    """The text reads two ways; the sentence is a question offering both, nothing is started."""

    question: ClassVar[bool] = True
    """Answered as a question, not as a failure (:func:`bot.render.refusal`)."""


@dataclass(frozen=True)
class Reading:
    """One reference read out of the text, in the syntax ``parse_image_spec`` takes."""

    text: str
    typed: str | None = None
    """What was typed when it differs from ``text`` (``corrected_from``); None when as is."""
    platform: str | None = None
    """A pull line's own platform (``linux/arm64``, or ``all``), carried into the request."""
    also: tuple[str, ...] = ()
    """Other texts read as the same image and merged into this reading (:meth:`merged`)."""

    @property
    def asked(self) -> tuple[str, ...]:
        """Every text, as typed, that this reading answers (``--json``'s ``asked``)."""
        return tuple(dict.fromkeys((self.typed or self.text, *self.also)))

    def merged(self, other: Reading) -> Reading:
        """This reading, also answering what ``other`` was typed as (the same image)."""
        return replace(self, also=(*self.also, *other.asked))

    @property
    def note(self) -> str | None:
        """How it was read, for the acknowledgement; None when it was typed as is."""
        if self.typed is None:
            return None
        return Text(
            "read {typed} as {reference}", typed=quote(self.typed), reference=quote(self.text)
        )


@dataclass(frozen=True)
class Ambiguity:
    """Text with two readings; ``options`` are the readings, each one or more references."""

    typed: str
    options: tuple[tuple[str, ...], ...]

    @property
    def question(self) -> str:
        """One sentence offering both readings, each spelled so it is no longer ambiguous."""
        offered = [_option_text(option) for option in self.options]
        return Text(
            "{typed} can be read two ways: did you mean {first}, or {second}?",
            typed=quote(self.typed),
            first=offered[0],
            second=" / ".join(offered[1:]),
        )


def _option_text(option: tuple[str, ...]) -> str:
    if len(option) == 1:
        return quote(option[0])
    names = [quote(ref) for ref in option]
    return Text("the images {names} and {last}", names=", ".join(names[:-1]), last=names[-1])


@dataclass(frozen=True)
class Pasted:
    """Everything read out of one paste: references (deduplicated, in order) and leftovers."""

    readings: tuple[Reading, ...] = ()
    ambiguities: tuple[Ambiguity, ...] = ()
    options: tuple[tuple[str, str | None], ...] = ()
    """Options of the surrounding command found outside pull lines: (name, value or None)."""
    source: str | None = None
    """What kind of bulk text it was (``Kubernetes YAML``), for a note; None for plain words."""


@dataclass(frozen=True)
class PastedFiles:
    """What kind of bulk text a job was read from, and the YAML itself when it was YAML
    (``bot.rewrite`` points it at the mirror in the answer)."""

    kind: str
    """:attr:`Pasted.source`: ``compose file``, ``Kubernetes YAML``, kubeadm output."""
    yaml: str | None = None
    chart: ChartSource | None = None
    """A whole chart asked for (:mod:`bot.chart_request`): the answer's values file points its
    images at the mirror."""


# -- characters ------------------------------------------------------------------------------

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_QUOTES = "\"'`\u201c\u201d\u2018\u2019「」『』«»()[]{}*"
_TRAILING = ".,;:!?。、"
_SEPARATORS_RE = re.compile("[,;\uff0c\uff1b、]+")  # full-width comma and semicolon too
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}")


_BRACKETED_HOST_RE = re.compile(r"\[[0-9A-Fa-f:.]+\](?::[0-9]+)?/")
"""A registry written as a bracketed IPv6 address (``[fd00::1]:5000/app``): its ``[`` stays."""


def _clean(part: str) -> str:
    """Full-width forms to ASCII (NFKC), invisible characters out, quotes and punctuation off."""
    text = unicodedata.normalize("NFKC", part).translate(_INVISIBLE)
    previous = None
    while previous != text:
        previous = text
        while text[:1] and text[0] in _QUOTES and not _BRACKETED_HOST_RE.match(text):
            text = text[1:]
        text = text.rstrip(_QUOTES).rstrip(_TRAILING)
    return text


def read_word(word: str) -> list[Reading]:
    """Read one whitespace-free word: ``nginx``, ``"nginx\uff1a1.25"``, ``nginx,redis``, a URL.

    A word can hold several references (a comma list); each keeps its own typed text.
    """
    readings = []
    for part in _SEPARATORS_RE.split(word):
        text = _clean(part)
        if text.startswith("<") and text.endswith(">") and _looks_like_address(text[1:-1]):
            text = text[1:-1]  # a Markdown autolink; a `<` elsewhere is echoed back as typed
        if not text:
            continue
        text = _read_address(text) if _looks_like_address(text) else _at_tag(text)
        readings.append(Reading(text, None if text == part else part))
    return readings


def _at_tag(text: str) -> str:
    """``nginx@1.25`` (an npm habit) can only mean the tag: ``@`` must be followed by a digest."""
    name, at, after = text.rpartition("@")
    if at and name and not _DIGEST_RE.fullmatch(after) and is_valid_tag(after):
        return f"{name}:{after}"
    return text


# -- web addresses ---------------------------------------------------------------------------

_PAGE_HOSTS = ("hub.docker.com", "quay.io/repository/", "github.com/")


def _looks_like_address(text: str) -> bool:
    lowered = text.lower()
    if "://" in lowered:
        return True
    bare = lowered.removeprefix("www.")
    return bare.startswith(_PAGE_HOSTS)


def _read_address(text: str) -> str:
    """The reference an image page, a ``https://``-prefixed reference or ``oci://`` names."""
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower() if sep else "https"
    rest = rest if sep else text
    if scheme == "oci":
        return rest
    if scheme not in ("http", "https"):
        raise InvalidReference(
            Text("{text} is not an image reference nor an image's page.", text=quote(text))
        )
    try:
        url = urlsplit(f"{scheme}://{rest}")
        host = (url.hostname or "").removeprefix("www.")
    except ValueError:  # an unclosed `[` of an IPv6 host
        raise InvalidReference(
            Text("{text} is not a web address I can read.", text=quote(text))
        ) from None
    path = [unquote(p) for p in url.path.split("/") if p]
    query = parse_qs(url.query)
    if host == "hub.docker.com":
        return _docker_hub(text, path, query)
    if host == "quay.io" and path[:1] == ["repository"]:
        return _quay(text, path[1:], query)
    if host == "github.com":
        return _github(text, path, query)
    if url.query or url.fragment:
        raise InvalidReference(
            Text("{text} is a web address I cannot read as an image.", text=quote(text))
        )
    if len(path) >= 4 and path[0] == "v2" and path[-2] == "manifests":
        ref = path[-1]
        joiner = "@" if ":" in ref else ":"
        return f"{url.netloc}/{'/'.join(path[1:-2])}{joiner}{ref}"
    return rest.rstrip("/")


def _with_tag(name: str, tag: str | None) -> str:
    return f"{name}:{tag or DEFAULT_TAG}"


def _first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values and is_valid_tag(values[0]) else None


def _docker_hub(text: str, path: list[str], query: dict[str, list[str]]) -> str:
    if path[:1] == ["_"] and len(path) >= 2:
        return _with_tag(path[1], _first(query, "name"))
    if path[:1] == ["r"] and len(path) >= 3:
        namespace, name = path[1], path[2]
        repository = name if namespace == "library" else f"{namespace}/{name}"
        return _with_tag(repository, _first(query, "name"))
    if path[:1] == ["layers"] and len(path) >= 4:  # /layers/NS/NAME/TAG/images/sha256-…
        namespace, name, tag = path[1], path[2], path[3]
        repository = name if namespace == "library" else f"{namespace}/{name}"
        return _with_tag(repository, tag if is_valid_tag(tag) else None)
    if path[:1] in (["u"], ["r"], ["orgs"]):
        raise InvalidReference(
            Text(
                "{text} is a Docker Hub user or organisation page, not an image: "
                "paste one of its image pages.",
                text=quote(text),
            )
        )
    raise InvalidReference(
        Text("{text} is a Docker Hub page, but not an image's page.", text=quote(text))
    )


def _quay(text: str, path: list[str], query: dict[str, list[str]]) -> str:
    if len(path) < 2:
        raise InvalidReference(
            Text("{text} is a Quay page, but not a repository's page.", text=quote(text))
        )
    name = f"quay.io/{path[0]}/{path[1]}"
    if len(path) >= 4 and path[2] == "manifest":
        return f"{name}@{path[3]}"
    return _with_tag(name, _first(query, "tag"))


_PACKAGE_PAGE = ["packages", "container", "package"]


def _github(text: str, path: list[str], query: dict[str, list[str]]) -> str:
    """``/OWNER/REPO/pkgs/container/NAME``, ``/{users,orgs}/OWNER/packages/container/package/NAME``.

    A package belongs to the owner, not to the repository; ghcr.io names are lowercase.
    """
    owner = name = None
    if len(path) >= 5 and path[2:4] == ["pkgs", "container"]:
        owner, name = path[0], path[4]
    elif len(path) >= 6 and path[0] in ("users", "orgs") and path[2:5] == _PACKAGE_PAGE:
        owner, name = path[1], path[5]
    if owner is None or name is None:
        if len(path) == 2:
            likely = "ghcr.io/" + "/".join(path[:2]).lower()
            raise InvalidReference(
                Text(
                    "{text} is a GitHub page, but not a container package page "
                    "(…/pkgs/container/NAME) (its image, if any, is often `{likely}`).",
                    text=quote(text),
                    likely=likely,
                )
            )
        raise InvalidReference(
            Text(
                "{text} is a GitHub page, but not a container package page "
                "(…/pkgs/container/NAME).",
                text=quote(text),
            )
        )
    return _with_tag(f"ghcr.io/{owner}/{name}".lower(), _first(query, "tag"))


# -- command lines ---------------------------------------------------------------------------

_TOOLS = ("docker", "podman", "nerdctl", "ctr", "crictl", "helm", "kubeadm")
_PROMPTS = ("$", "#", ">", "%", "sudo")
_GLOBAL_VALUE_OPTIONS = frozenset(
    {"-n", "--namespace", "-a", "--address", "-H", "--host", "--config", "--context",
     "--connection", "--url", "--kubeconfig", "--kube-context", "-r", "--runtime-endpoint",
     "-i", "--image-endpoint"}
)  # fmt: skip
_PULL_VALUE_OPTIONS = frozenset(
    {"--platform", "--arch", "--os", "--variant", "--creds", "--authfile", "--user", "-u",
     "--cert-dir", "--signature-policy", "--decryption-key", "--hosts-dir", "--snapshotter",
     "--label", "--version", "--repo", "--username", "--password", "--ca-file", "--cert-file",
     "--key-file", "--keyring", "-f", "--values", "--set", "--namespace", "-n", "--auth",
     "--pod-config", "--retry", "--retry-delay", "--unpack", "--max-concurrent-downloads"}
)  # fmt: skip
_SUBCOMMANDS = frozenset(
    {"push", "run", "tag", "create", "image", "images", "i", "login", "logout", "save", "load",
     "inspect", "inspecti", "rmi", "build", "ps", "exec", "compose", "manifest", "buildx",
     "content", "containers", "c", "tasks", "t", "install", "upgrade", "template", "repo",
     "config", "search", "history", "export", "import", "commit", "start", "stop", "rm"}
)  # fmt: skip
_SKIPPED = frozenset({"tag", "config", "login", "logout"})
"""Subcommands that fetch nothing: ``docker tag`` after ``&&``, ``kubeadm config …`` itself."""


def _command_words(segment: str) -> list[str] | None:
    """The words of a tool's command line, without a prompt or ``sudo``; None if not one."""
    segment = segment.replace("\u3000", " ")  # a full-width space between words
    try:
        words = shlex.split(segment)
    except ValueError:
        words = segment.split()
    while words and words[0] in _PROMPTS:
        words = words[1:]
    if len(words) < 2 or words[0] not in _TOOLS:
        return None
    rest = _skip_options(words[1:], _GLOBAL_VALUE_OPTIONS)
    if not rest or rest[0] not in _SUBCOMMANDS | {"pull"}:
        return None  # ``docker nginx``: the image ``docker`` and another one, as typed
    return words


def starts_with_pull(text: str) -> bool:
    """Whether ``text`` begins with a pull line (``docker pull …``, ``$ sudo ctr images pull
    …``: any tool read here), so that one said to the bot alone is read as ``/mirror``."""
    first = next((line.strip().strip("`") for line in text.splitlines() if line.strip()), "")
    words = _command_words(first)
    if words is None:
        return False
    rest = _skip_options(words[1:], _GLOBAL_VALUE_OPTIONS)
    if rest[0] in ("image", "images", "i") and len(rest) > 1:
        rest = rest[1:]
    return rest[0] == "pull"


def _skip_options(words: list[str], value_options: frozenset[str]) -> list[str]:
    i = 0
    while i < len(words) and words[i].startswith("-"):
        i += 2 if words[i] in value_options else 1
    return words[i:]


def read_command_line(segment: str, words: list[str]) -> list[Reading]:
    """The images a ``docker/podman/nerdctl/ctr/crictl pull`` or ``helm pull oci://`` line names.

    Flags such as ``--platform`` are carried into the request; a command that fetches nothing
    (``docker tag``, ``kubeadm config images list``) is skipped; any other is refused.
    """
    tool = words[0]
    rest = _skip_options(words[1:], _GLOBAL_VALUE_OPTIONS)
    verb = rest[0]
    if verb in ("image", "images", "i") and len(rest) > 1:
        verb, rest = rest[1], rest[1:]
    if tool == "kubeadm" or verb in _SKIPPED:
        return []
    shown = " ".join(words)
    if tool == "helm" and verb in ("pull", "install", "upgrade", "template"):
        return _helm(shown, rest[1:])
    if verb != "pull":
        raise InvalidReference(
            Text(
                "{text} is not a pull command; paste `{tool} pull IMAGE` lines or names.",
                text=quote(shown),
                tool=tool,
            )
        )
    platform, positional = _pull_arguments(shown, rest[1:])
    if not positional:
        raise InvalidReference(Text("{text} names no image.", text=quote(shown)))
    readings = []
    for arg in positional:
        for reading in read_word(arg):
            readings.append(Reading(reading.text, segment.strip(), platform))
    return readings


def _pull_arguments(shown: str, args: list[str]) -> tuple[str | None, list[str]]:
    """A pull line's platform (``--platform``, or ``--os``/``--arch``/``--variant``, or
    ``--all-platforms``) and its images; ``--all-tags`` is refused."""
    platform, arch, os_, variant = None, None, "linux", None
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in _PULL_VALUE_OPTIONS and not eq:
            value = args[i + 1] if i + 1 < len(args) else ""
            i += 1
        if name == "--platform":
            platform = value
        elif name == "--arch":
            arch = value
        elif name == "--os":
            os_ = value
        elif name == "--variant":
            variant = value
        elif name == "--all-platforms":
            platform = "all"
        elif name in ("-a", "--all-tags"):
            raise InvalidReference(
                Text(
                    "{text} pulls every tag; I mirror one tag at a time, so name the tags.",
                    text=quote(shown),
                )
            )
        elif not arg.startswith("-"):
            positional.append(arg)
        i += 1
    if platform is None and arch is not None:
        platform = "/".join(p for p in (os_, arch, variant) if p)
    return platform, positional


def _helm(shown: str, args: list[str]) -> list[Reading]:
    """``helm pull oci://REGISTRY/CHART --version V`` names ``REGISTRY/CHART:V``."""
    version = None
    charts = []
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name == "--version":
            version = value if eq else (args[i + 1] if i + 1 < len(args) else None)
            i += 0 if eq else 1
        elif args[i].startswith("oci://"):
            charts.append(args[i].removeprefix("oci://"))
        i += 1
    if not charts:
        raise InvalidReference(
            f"{quote(shown)} names no `oci://` chart; charts from a Helm repository "
            "are not in a registry."
        )
    return [
        Reading(chart if version is None or ":" in chart.rsplit("/", 1)[-1]
                else f"{chart}:{version}", shown)
        for chart in charts
    ]  # fmt: skip


# -- plain text ------------------------------------------------------------------------------

_KLOG_RE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")
_FENCE_RE = re.compile(r"^`{3}\w*$")
_LIST_MARK_RE = re.compile(r"^(?:[-*•]|\d+[.)])$")
_VERSIONISH_RE = re.compile(r"v?\d+(?:\.\d+)*(?:-[0-9A-Za-z.]+)?|latest")
_SEGMENT_SPLIT_RE = re.compile(r"\s*(?:&&|\|\||;|\|)\s*")


def _segments(text: str) -> Iterator[str]:
    for raw in text.splitlines():
        line = raw.strip()
        if not line or _KLOG_RE.match(line) or _FENCE_RE.match(line):
            continue
        inner = line.strip("`\"'").strip()
        if line[0] in "`\"'" and _command_words(inner) is not None:
            line = inner  # a command line in a code span or quotes
        if line.startswith("#") and _command_words(line) is None:
            continue  # a comment; ``# docker pull …`` (a root prompt) is read
        if _command_words(line) is not None:
            yield from _SEGMENT_SPLIT_RE.split(line)
        else:
            yield line


def read_text(text: str, *, value_options: frozenset[str] = frozenset()) -> Pasted:
    """Read plain text: names, addresses, pull lines and ``kubeadm config images list`` output.

    ``value_options`` are the surrounding command's options that take a value
    (``--platform``); they and any other ``-`` word are handed back, not read as images.
    """
    readings: list[Reading] = []
    ambiguities: list[Ambiguity] = []
    options: list[tuple[str, str | None]] = []
    source = None
    for segment in _segments(text):
        words = _command_words(segment)
        if words is not None:
            if words[0] == "kubeadm":
                source = "`kubeadm config images list` output"
            readings.extend(read_command_line(segment, words))
            continue
        tokens = segment.split()
        i = 0
        previous: Reading | None = None
        while i < len(tokens):
            token = tokens[i]
            if token.startswith("--") or (token.startswith("-") and len(token) > 1):
                name, eq, value = token.partition("=")
                if name in value_options and not eq:
                    value = tokens[i + 1] if i + 1 < len(tokens) else ""
                    i += 1
                options.append((name, value if name in value_options else None))
                previous = None
            elif _LIST_MARK_RE.match(token) and i == 0:
                pass
            else:
                found = read_word(token)
                if (
                    previous is not None
                    and len(found) == 1
                    and found[0].typed is None
                    and _VERSIONISH_RE.fullmatch(found[0].text)
                    and _untagged(previous.text)
                ):
                    ambiguities.append(_version_after_name(previous, found[0]))
                readings.extend(found)
                previous = found[-1] if found else None
            i += 1
    return Pasted(tuple(dedupe(readings)), tuple(ambiguities), tuple(options), source)


def _untagged(text: str) -> bool:
    last = text.rsplit("/", 1)[-1]
    return ":" not in last and "@" not in last and "$" not in text


def _version_after_name(name: Reading, version: Reading) -> Ambiguity:
    return Ambiguity(
        f"{name.typed or name.text} {version.text}",
        ((f"{name.text}:{version.text}",), (f"{name.text}:{DEFAULT_TAG}", version.text)),
    )


def dedupe(readings: Iterable[Reading]) -> list[Reading]:
    """The first reading of each reference, in order, answering the later ones too."""
    seen: dict[str, Reading] = {}
    for reading in readings:
        first = seen.setdefault(reading.text, reading)
        if first is not reading:
            seen[reading.text] = first.merged(reading)
    return list(seen.values())


# -- YAML: Kubernetes manifests, helm template output, compose files ----------------------

WORKLOAD_KINDS = frozenset(
    {"Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet",
     "ReplicationController", "PodTemplate"}
)  # fmt: skip
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
_YAML_HINT_RE = re.compile(
    r"^(?:---|# Source: |(?:apiVersion|kind|services)\s*:|\s*-?\s*(?:image|containers)\s*:)",
    re.MULTILINE,
)


def looks_like_yaml(text: str) -> bool:
    """Whether the text is a manifest or compose file rather than names and command lines."""
    return _YAML_HINT_RE.search(text) is not None


def read_yaml(text: str) -> Pasted:
    """Images of Kubernetes workloads (any number of ``---`` documents, ``List`` kinds,
    ``helm template`` output) and of compose services; other kinds and image-less services
    are ignored."""
    import yaml  # only a pasted manifest or compose file needs it: ~20 ms of every start-up

    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except (yaml.YAMLError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidReference(
            f"The pasted YAML cannot be read{where}; paste it as rendered (not a template)."
        ) from None
    images: list[str] = []
    kinds: set[str] = set()
    for document in documents:
        if isinstance(document, dict) and isinstance(document.get("services"), dict):
            kinds.add("compose file")
            for service in document["services"].values():
                if isinstance(service, dict) and isinstance(service.get("image"), str):
                    images.append(service["image"])
            continue
        if isinstance(document, dict | list):
            kinds.add("Kubernetes YAML")
        for workload in _workloads(document):
            images.extend(_container_images(workload))
    readings = [Reading(image.strip()) for image in images if image.strip()]
    return Pasted(tuple(dedupe(readings)), source=" and ".join(sorted(kinds)) or None)


def _workloads(document: Any) -> Iterator[Any]:
    """Documents worth reading: workload kinds, the items of a ``List``, a kind-less snippet."""
    pending = deque([document])
    while pending:
        node = pending.popleft()
        if isinstance(node, list):
            pending.extendleft(reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and isinstance(node.get("items"), list):
            pending.extendleft(reversed(node["items"]))
        elif kind in WORKLOAD_KINDS or kind is None:
            yield node


def _container_images(root: Any) -> Iterator[str]:
    """Every ``image`` of a container list anywhere below (pod templates nest at any depth).

    Iterative, and each YAML node once: anchors and aliases can make a small text a huge tree.
    """
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, dict):
            children = []
            for key, value in node.items():
                if key in _CONTAINER_LISTS and isinstance(value, list):
                    for container in value:
                        if isinstance(container, dict) and isinstance(container.get("image"), str):
                            yield container["image"]
                else:
                    children.append(value)
            stack.extend(reversed(children))


# -- everything ------------------------------------------------------------------------------


def read_pasted(text: str, *, value_options: frozenset[str] = frozenset()) -> Pasted:
    """Read whatever was pasted: YAML when it looks like a manifest, else plain text.

    Text typed on the command's own line is read as options (``/mirror --platform all`` and
    the YAML on the next lines) or as the YAML's first line; a snippet pasted indented is
    read as if it were not.
    """
    if not looks_like_yaml(text):
        return read_text(text, value_options=value_options)
    first, _, rest = text.partition("\n")
    if not first.strip():
        return read_yaml(textwrap.dedent(rest))
    if first.lstrip().startswith("--"):
        head = read_text(first, value_options=value_options)
        body = read_yaml(textwrap.dedent(rest))
        return Pasted(body.readings, head.ambiguities, head.options, body.source)
    return read_yaml(first.lstrip() + "\n" + rest)


def references(pasted: Pasted) -> list[tuple[ImageSpec, Reading]]:
    """Each image once (``nginx`` and ``docker.io/library/nginx`` are one), first reading kept.

    Raises :class:`Ambiguous` with the question when any text read two ways, so nothing
    starts on a guess.
    """
    if pasted.ambiguities:
        raise Ambiguous(pasted.ambiguities[0].question)
    specs: dict[str, tuple[ImageSpec, Reading]] = {}
    for reading in pasted.readings:
        spec = parse_image_spec(reading.text)
        first_spec, first = specs.setdefault(str(spec), (spec, reading))
        if first is not reading:
            specs[str(spec)] = (first_spec, first.merged(reading))
    return list(specs.values())


def read_references(text: str) -> list[tuple[ImageSpec, Reading]]:
    """References in a file or on a command line, where no option may hide among them."""
    pasted = read_pasted(text)
    if pasted.options:
        raise InvalidReference(
            Text(
                "{option} is an option, not an image; put options on the command line.",
                option=quote(pasted.options[0][0]),
            )
        )
    found = references(pasted)
    if not found and pasted.source:
        raise InvalidReference(Text("I found no images in that {source}.", source=pasted.source))
    return found
