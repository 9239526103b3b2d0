"""Platforms (``os/arch[/variant]``), normalized the way containerd matches them.

Users type ``linux/aarch64`` or ``linux/arm64/v8`` and mean the same image as ``linux/arm64``;
normalizing once here keeps target names, coalescing of identical requests and the engines'
platform matching in agreement.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mirror.errors import InvalidPlatform
from mirror.reference import UNSAFE, has_unsafe_chars, quote
from mirror.text import Text

ALL = "all"

# Each part must also be usable inside a repository name (``nginx-linux-arm-v7``).
_PART_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_PART_MAX = 32
_USAGE = Text("use os/arch[/variant] such as linux/arm64, or all")


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(self._parts())

    @property
    def suffix(self) -> str:
        """The platform as it is appended to a target repository name (``linux-arm-v7``)."""
        return "-".join(self._parts())

    def _parts(self) -> list[str]:
        parts = [self.os, self.architecture]
        if self.variant:
            parts.append(self.variant)
        return parts


DEFAULT_PLATFORM = Platform("linux", "amd64")


def platform_of(descriptor: Mapping[str, Any]) -> Platform | None:
    """The platform an index entry (its ``platform`` field) or an image config names; None
    for an attestation (``unknown/unknown``) or anything unreadable."""
    found = descriptor.get("platform", descriptor)
    if not isinstance(found, Mapping) or not found.get("architecture"):
        return None
    parts = [str(found.get("os", "")), str(found.get("architecture", ""))]
    if found.get("variant"):
        parts.append(str(found["variant"]))
    try:
        platform = parse_platform("/".join(parts))
    except InvalidPlatform:
        return None
    return None if platform is None or platform.os == "unknown" else platform


def _not_a_platform(text: str, problem: Text) -> Text:
    return Text("{text} is not a platform: {problem}.", text=quote(text), problem=problem)


def parse_platform(text: str) -> Platform | None:
    """Parse ``os/arch[/variant]``; ``all`` gives None, meaning every platform of the image."""
    if not text:
        raise InvalidPlatform(Text("The platform is empty: {usage}.", usage=_USAGE))
    if has_unsafe_chars(text):
        raise InvalidPlatform(_not_a_platform(text, UNSAFE))
    lowered = text.lower()
    if lowered == ALL:
        return None
    parts = lowered.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidPlatform(_not_a_platform(text, _USAGE))
    for part in parts:
        if len(part) > _PART_MAX or _PART_RE.fullmatch(part) is None:
            problem = Text(
                "{part} must be letters and digits, optionally separated by `.`, `_` or `-`, "
                "at most {count} long",
                part=quote(part),
                count=_PART_MAX,
            )
            raise InvalidPlatform(_not_a_platform(text, problem))
    os_name, arch = parts[0], parts[1]
    variant = parts[2] if len(parts) == 3 else None
    arch, variant = _normalize_arch(arch, variant)
    return Platform(_normalize_os(os_name), arch, variant)


def _normalize_os(os_name: str) -> str:
    return "darwin" if os_name == "macos" else os_name


def _normalize_arch(arch: str, variant: str | None) -> tuple[str, str | None]:
    """containerd's ``normalizeArch``: aliases to Go names, default variants made explicit.

    ``arm`` alone means v7 (what ``linux/arm`` images are built for); ``arm64/v8`` is just
    ``arm64``; ``amd64/v1`` is just ``amd64``.
    """
    if arch == "i386":
        return "386", None
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", None if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", None if variant in ("8", "v8", "v8.0") else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in (None, "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant
