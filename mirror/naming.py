"""Where a mirrored image lands: hub-mirror's flattened names, so its users recognise them.

One source maps to one repository directly under the target namespace
(``gcr.io/x/y:v1`` -> ``docker.io/alice/gcr.io.x.y:v1``), because many registries people can
reach (Docker Hub, Aliyun ACR personal) allow only one level below the namespace.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mirror.errors import InvalidReference, NameConflict
from mirror.platform import Platform
from mirror.reference import (
    DEFAULT_REGISTRY,
    DEFAULT_TAG,
    LOWERCASE,
    UNSAFE,
    ImageRef,
    has_unsafe_chars,
    is_valid_host,
    is_valid_path,
    is_valid_tag,
    parse_reference,
    quote,
)
from mirror.text import N_, Text

OVERRIDE_SEPARATOR = "$"
_LEGACY_HUB = "index.docker.io"
_DIGEST_TAG_HEX = 12
_NOT_IN_COMPONENT_RE = re.compile(r"[^a-z0-9._-]")
_PATH_RULE = Text("lowercase letters and digits separated by `.`, `_`, `__`, `-` or `/`")
_TAG_RULE = Text("1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`")


@dataclass(frozen=True)
class ImageSpec:
    """What the user asked for one image: the source, and an optional `$NAME[:TAG]` override."""

    text: str
    source: ImageRef
    name: str | None
    tag: str | None

    def __str__(self) -> str:
        """The normalized spelling: parsing it gives the same source and override."""
        override = ""
        if self.name is not None:
            override = OVERRIDE_SEPARATOR + self.name
            if self.tag is not None:
                override += ":" + self.tag
        return str(self.source) + override


def parse_image_spec(text: str) -> ImageSpec:
    """Parse ``IMAGE[$NAME[:TAG]]`` (hub-mirror's syntax; ``$`` never occurs in a reference)."""
    if has_unsafe_chars(text):
        raise InvalidReference(
            Text(
                "{text} is not a valid image reference: {problem}.",
                text=quote(text),
                problem=UNSAFE,
            )
        )
    source_text, dollar, override = text.partition(OVERRIDE_SEPARATOR)
    if dollar and not source_text:
        raise InvalidReference(
            Text(
                "{text} has no image before `$`: write `IMAGE$NAME` or `IMAGE$NAME:TAG`.",
                text=quote(text),
            )
        )
    source = parse_reference(source_text)
    if not dollar:
        return ImageSpec(text, source, None, None)
    name, colon, tag = override.partition(":")
    if not name:
        raise InvalidReference(
            Text(
                "{text} has no name after `$`: write `IMAGE$NAME` or `IMAGE$NAME:TAG`.",
                text=quote(text),
            )
        )
    if not is_valid_path(name):
        raise InvalidReference(
            Text(
                "The target name {name} is not valid: {problem}.",
                name=quote(name),
                problem=_name_problem(name),
            )
        )
    if colon and not tag:
        raise InvalidReference(
            Text("{text} has nothing after the `:` that starts the tag.", text=quote(text))
        )
    if colon and not is_valid_tag(tag):
        raise InvalidReference(
            Text("The target tag {tag} is not valid: use {rule}.", tag=quote(tag), rule=_TAG_RULE)
        )
    return ImageSpec(text, source, name, tag if colon else None)


def _name_problem(name: str) -> Text:
    if name != name.lower():
        return LOWERCASE
    if len(name) > 255:
        return Text("it is longer than 255 characters")
    return Text("use {rule}", rule=_PATH_RULE)


@dataclass(frozen=True)
class TargetBase:
    """The registry and namespace every mirrored image is pushed under (``MIRROR_TARGET``)."""

    registry: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.registry}/{self.namespace}" if self.namespace else self.registry


def parse_target_base(text: str) -> TargetBase:
    """Parse ``MIRROR_TARGET``; the first part is a host by docker's rule, else Docker Hub.

    Operators write this once in a config file, so a trailing ``/`` is forgiven, but anything
    that would make every push fail is refused at start-up rather than at the first job.
    """
    value = text.strip().rstrip("/")
    if not value:
        raise InvalidReference(
            Text(
                "The mirror target is empty: set it to a registry and namespace "
                "such as `docker.io/alice`."
            )
        )
    if has_unsafe_chars(value):
        raise InvalidReference(_bad_target(text, UNSAFE))
    if "://" in value:
        raise InvalidReference(
            _bad_target(text, Text("leave out the URL scheme, as in `harbor.example.com/team`"))
        )
    first, _, rest = value.partition("/")
    if "." in first or ":" in first or first == "localhost":
        registry, namespace = first, rest
    else:
        registry, namespace = DEFAULT_REGISTRY, value
    if registry == _LEGACY_HUB:
        registry = DEFAULT_REGISTRY
    if not is_valid_host(registry):
        raise InvalidReference(
            _bad_target(text, Text("{host} is not a valid registry host", host=quote(registry)))
        )
    if registry == DEFAULT_REGISTRY and not namespace:
        raise InvalidReference(
            _bad_target(
                text,
                Text(
                    "Docker Hub needs a namespace (your user or organisation), "
                    "such as `docker.io/alice`"
                ),
            )
        )
    if namespace and not is_valid_path(namespace):
        raise InvalidReference(
            _bad_target(
                text,
                Text(
                    "the namespace {namespace} is not valid ({problem})",
                    namespace=quote(namespace),
                    problem=_name_problem(namespace),
                ),
            )
        )
    return TargetBase(registry, namespace)


def _bad_target(text: str, problem: Text) -> Text:
    return Text(
        "{target} is not a valid mirror target: {problem}.", target=quote(text), problem=problem
    )


def flatten(source: ImageRef) -> str:
    """hub-mirror's name for a source: its path joined with ``.``, minus Docker Hub's prefixes.

    The host goes in too (lowercased, since hosts are case-insensitive and repositories are
    not); characters a repository cannot hold, such as the ``:`` before a port, become ``-``.
    """
    if source.registry == DEFAULT_REGISTRY:
        path = source.repository
        if path.startswith("library/"):
            path = path[len("library/") :]
        parts = path.split("/")
    else:
        host = _NOT_IN_COMPONENT_RE.sub("-", source.registry.lower()).strip("._-")
        parts = [host, *source.repository.split("/")]
    return ".".join(parts)


def target_for(
    spec: ImageSpec,
    base: TargetBase,
    platform: Platform | None,
    default_platform: Platform | None,
) -> ImageRef:
    """The reference one image is pushed to; ``platform`` None means every platform.

    A single platform other than the default gets a suffix so that, say, the arm64 copy never
    overwrites the amd64 one under the same tag. The result carries no digest: which digest
    the target ends up with is the engine's business.
    """
    source = spec.source
    if spec.name is not None:
        name = spec.name
    else:
        name = flatten(source)
        if platform is not None and platform != default_platform:
            name += "-" + platform.suffix
    tag = spec.tag or source.tag or _digest_tag(source.digest)
    repository = f"{base.namespace}/{name}" if base.namespace else name
    target = ImageRef(base.registry, repository, tag, None)
    if base.registry == DEFAULT_REGISTRY and repository.count("/") > 1:
        raise InvalidReference(
            Text(
                "{image} would be mirrored as {target}, but Docker Hub takes only "
                "`namespace/name`: choose a name without `/` by adding `$NAME` to the image.",
                image=quote(spec.text),
                target=quote(str(target)),
            )
        )
    if not is_valid_path(repository) or not _round_trips(target):
        if len(repository) > 255:
            sentence = N_(
                "{image} would be mirrored as {target}, which is not a valid image reference: "
                "choose a shorter name by adding `$NAME` to the image."
            )
        else:
            sentence = N_(
                "{image} would be mirrored as {target}, which is not a valid image reference: "
                "choose a name by adding `$NAME` to the image."
            )
        raise InvalidReference(Text(sentence, image=quote(spec.text), target=quote(str(target))))
    return target


def _digest_tag(digest: str | None) -> str:
    """A readable tag for a digest-only source: ``sha256-`` and the first 12 hex digits."""
    if digest is None:
        return DEFAULT_TAG
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}-{encoded[:_DIGEST_TAG_HEX]}"


def _round_trips(target: ImageRef) -> bool:
    """Whether docker would read the target back as the same image (a final safety net)."""
    try:
        return parse_reference(str(target)) == target
    except InvalidReference:
        return False


def check_unique_targets(pairs: Iterable[tuple[ImageRef, Platform | None, ImageRef]]) -> None:
    """Refuse two different (source, platform) pairs that would land on one target.

    Pushing both would silently overwrite one with the other. The same pair twice is fine:
    it is one copy.
    """
    seen: dict[str, tuple[ImageRef, Platform | None]] = {}
    for source, platform, target in pairs:
        key = str(target)
        first = seen.setdefault(key, (source, platform))
        if first != (source, platform):
            raise NameConflict(
                Text(
                    "{first} and {second} would both be mirrored to {target}: give one of them "
                    "another name with `$NAME`.",
                    first=_describe(*first),
                    second=_describe(source, platform),
                    target=quote(key),
                )
            )


def _describe(source: ImageRef, platform: Platform | None) -> Text:
    if platform is None:
        return Text("{image} (all platforms)", image=quote(source.familiar))
    return Text("{image} ({platform})", image=quote(source.familiar), platform=str(platform))
