"""Image references: parsing and normalization (the distribution/reference grammar).

The grammar itself comes from ``docker-image-py``, which mirrors distribution/reference and
passes its test vectors, so ``nginx`` means what ``docker pull nginx`` means. What this module
adds is what a chat bot needs on top: one immutable value type, and a failure that names the
bad part in one sentence, because the library only says "invalid reference format".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from docker_image import digest as _digest
from docker_image import reference as _reference

from mirror.errors import InvalidReference
from mirror.text import Text

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
NAME_MAX_LENGTH = 255
"""distribution/reference applies its 255 limit to the repository path, not to the host."""

_ECHO_MAX = 80
# No valid reference comes near this (host 253 + path 255 + tag 128 + sha512 digest); the cap
# keeps pathological chat input away from the regular expressions.
_TEXT_MAX = 1000

_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST_RE = re.compile(
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
)
_IMAGE_ID_RE = re.compile(r"[a-f0-9]{64}")
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

_TAG_RULE = Text(
    "a tag is 1 to 128 letters, digits, `_`, `.` or `-` and cannot start with `.` or `-`"
)


def quote(text: str) -> str:
    """Echo user input inside backticks, safe to put in a one-line chat sentence.

    Long input is cut so one bad argument cannot flood a channel; control characters are
    escaped so the sentence stays on one line; a backtick would end the code span early.
    """
    if len(text) > _ECHO_MAX:
        text = text[: _ECHO_MAX - 1] + "…"
    shown = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )
    return "`" + shown.replace("`", "'") + "`"


def is_valid_tag(tag: str) -> bool:
    """Whether ``tag`` is a tag registries accept (``[\\w][\\w.-]{0,127}``, ASCII only)."""
    return _TAG_RE.fullmatch(tag) is not None


def is_valid_path(path: str) -> bool:
    """Whether ``path`` is a repository path: lowercase components joined by ``/``, <= 255."""
    return len(path) <= NAME_MAX_LENGTH and all(
        _COMPONENT_RE.fullmatch(part) for part in path.split("/")
    )


def is_valid_host(host: str) -> bool:
    """Whether ``host`` is ``name[:port]`` or ``[ipv6][:port]``, as docker reads a registry."""
    return _HOST_RE.fullmatch(host) is not None


def has_unsafe_chars(text: str) -> bool:
    """Whitespace or invisible characters: never part of a reference, often a paste accident."""
    return any(ch.isspace() or not ch.isprintable() for ch in text)


@dataclass(frozen=True)
class ImageRef:
    """A normalized reference: ``registry`` is explicit, Docker Hub names carry ``library/``.

    Ordering is by (registry, repository, tag, digest) with a missing part sorting first; it
    is written by hand because dataclass ordering would compare ``None`` with ``str``.
    """

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    def _key(self) -> tuple[str, str, str, str]:
        return (self.registry, self.repository, self.tag or "", self.digest or "")

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ImageRef):
            return NotImplemented
        return self._key() < other._key()

    def __le__(self, other: object) -> bool:
        if not isinstance(other, ImageRef):
            return NotImplemented
        return self._key() <= other._key()

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, ImageRef):
            return NotImplemented
        return self._key() > other._key()

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, ImageRef):
            return NotImplemented
        return self._key() >= other._key()

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def repo_only(self) -> ImageRef:
        """The repository without tag or digest (what a watch follows)."""
        return ImageRef(self.registry, self.repository, None, None)

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return tag + digest

    def __str__(self) -> str:
        return self.name + self._suffix()

    @property
    def familiar(self) -> str:
        """The short form people type and ``docker images`` shows (``nginx:1.25``)."""
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            name = self.repository
            official, _, rest = name.partition("/")
            if official == "library" and rest and "/" not in rest:
                name = rest
        return name + self._suffix()

    def with_tag(self, tag: str) -> ImageRef:
        """The same repository at ``tag``; the digest goes, since it pinned the old content."""
        if not is_valid_tag(tag):
            raise InvalidReference(
                Text("{tag} is not a valid tag: {rule}.", tag=quote(tag), rule=_TAG_RULE)
            )
        return ImageRef(self.registry, self.repository, tag, None)

    @property
    def pull_reference(self) -> str:
        """The digest if any, else the tag, bare: the ``tag`` argument of the Docker SDK's pull.

        The SDK and the daemon accept a digest there and prefer it, so a pinned pull stays
        pinned even when a tag was also given.
        """
        return self.digest or self.tag or DEFAULT_TAG


def parse_reference(text: str) -> ImageRef:
    """Parse what a user would give ``docker pull``, normalized (``nginx`` is Docker Hub's).

    A reference with neither tag nor digest means ``latest``, as for ``docker pull``, so that
    every result names exactly one thing to copy.
    """
    if not text:
        raise InvalidReference(
            Text("An empty string is not a valid image reference: give one such as `nginx:1.25`.")
        )
    if has_unsafe_chars(text):
        raise InvalidReference(_invalid(text, UNSAFE))
    if len(text) > _TEXT_MAX:
        raise InvalidReference(
            _invalid(text, Text("it is longer than {count} characters", count=_TEXT_MAX))
        )
    try:
        parsed: Any = _reference.Reference.parse_normalized_named(text)
    except (_reference.InvalidReference, _digest.InvalidDigest):
        raise InvalidReference(_invalid(text, _explain(text))) from None
    registry: str = parsed.repository["domain"]
    repository: str = parsed.repository["path"]
    tag: str | None = parsed["tag"] or None
    digest: str | None = parsed["digest"] or None
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageRef(registry, repository, tag, digest)


UNSAFE = Text("it contains whitespace or an invisible character")


def _invalid(text: str, problem: Text) -> Text:
    return Text(
        "{text} is not a valid image reference: {problem}.", text=quote(text), problem=problem
    )


def _explain(text: str) -> Text:
    """Say which part of a rejected reference is wrong (the library does not say)."""
    if "://" in text:
        return Text("leave out the URL scheme, as in `quay.io/prometheus/node-exporter:v1.7.0`")
    name_and_tag, at, digest = text.partition("@")
    if at:
        problem = _explain_digest(digest)
        if problem:
            return problem
    name, tag = _split_tag(name_and_tag)
    if tag is not None and not is_valid_tag(tag):
        if not tag:
            return Text("nothing follows the `:` that starts the tag")
        if len(tag) > 128:
            return Text("the tag {tag} is longer than 128 characters", tag=quote(tag))
        return Text("the tag {tag} is not valid ({rule})", tag=quote(tag), rule=_TAG_RULE)
    return _explain_name(name)


def _split_tag(name_and_tag: str) -> tuple[str, str | None]:
    colon = name_and_tag.rfind(":")
    if colon < 0 or "/" in name_and_tag[colon:]:
        return name_and_tag, None
    return name_and_tag[:colon], name_and_tag[colon + 1 :]


def _explain_digest(digest: str) -> Text | None:
    if not digest:
        return Text("nothing follows the `@` that starts the digest")
    algorithm, colon, encoded = digest.partition(":")
    shown = quote(digest)
    if not colon or not algorithm or not encoded:
        return Text(
            "the digest {digest} must look like `sha256:` followed by 64 hex digits", digest=shown
        )
    if algorithm not in _DIGEST_LENGTHS:
        return Text(
            "the digest algorithm {algorithm} is not supported (use sha256, sha384 or sha512)",
            algorithm=quote(algorithm),
        )
    if re.fullmatch(r"[0-9a-f]+", encoded) is None:
        return Text("the digest {digest} must be written in lowercase hex digits", digest=shown)
    expected = _DIGEST_LENGTHS[algorithm]
    if len(encoded) != expected:
        return Text(
            "a {algorithm} digest has {expected} hex digits, not {count}",
            algorithm=algorithm,
            expected=expected,
            count=len(encoded),
        )
    return None


def _explain_name(name: str) -> Text:
    if not name:
        return Text("the repository name is missing")
    if _IMAGE_ID_RE.fullmatch(name):
        return Text("a 64-digit hex string is an image ID, not a repository name")
    host, path = _reference.Reference.split_docker_domain(name)
    if not is_valid_host(host):
        return Text("{host} is not a valid registry host", host=quote(host))
    if path != path.lower():
        return LOWERCASE
    for part in path.split("/"):
        if not part:
            return Text("the repository name has an empty path component (`//` or a `/` at an end)")
        if _COMPONENT_RE.fullmatch(part) is None:
            return Text(
                "the path component {part} must be lowercase letters and digits "
                "separated by single `.`, `_`, `__` or dashes",
                part=quote(part),
            )
    if len(path) > NAME_MAX_LENGTH:
        return Text("the repository path is longer than {count} characters", count=NAME_MAX_LENGTH)
    return Text("write it as [registry/]repository[:tag][@digest], such as `nginx:1.25`")


LOWERCASE = Text("repository names must be lowercase")
