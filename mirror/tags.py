"""Ranking and filtering a repository's tags the way people read them (issue 12, issue 15).

Container tags are not PEP 440 (``packaging`` rejects ``1.25.3-alpine``) nor SemVer (the
``semver`` package rejects ``1.25`` and ``v1.29``), yet most are a version with an optional
``v``, a pre-release and a variant suffix (``20.11.1-bookworm-slim``). :func:`parse_tag` reads
that shape; everything else (``latest``, ``mainline``) is a name. Pure functions, no network.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_SUGGESTIONS = 5

_VERSION_RE = re.compile(
    r"(?P<v>[vV])?(?P<numbers>\d+(?:\.\d+)*)"
    r"(?:[-.]?(?P<pre>(?:alpha|beta|rc|pre|dev|a|b)(?:[.-]?\d+)?)(?![a-z]))?"
    r"(?:[-_.](?P<variant>[A-Za-z0-9][A-Za-z0-9._-]*))?"
)
_NOISE_RES = (
    re.compile(r"sha256-[0-9a-f]{64}(?:\..+)?"),  # cosign / referrers fallback tags
    re.compile(r"(?:sha-)?(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}"),  # commit-like
    re.compile(r".+\.(?:sig|att|sbom)"),  # signatures, attestations, SBOMs
)
_PRE_NUMBER_RE = re.compile(r"\d+")
_FAMILY_DIGITS_RE = re.compile(r"[\d.]+")


@dataclass(frozen=True)
class TagVersion:
    """A tag read as ``[v]NUMBERS[-PRE][-VARIANT]``."""

    tag: str
    numbers: tuple[int, ...]
    pre: str | None
    variant: str

    @property
    def family(self) -> str:
        """The variant without its own versions: ``alpine3.19`` and ``alpine3.18`` are alike."""
        return _FAMILY_DIGITS_RE.sub("", self.variant)

    @property
    def stable(self) -> bool:
        return self.pre is None

    def key(self) -> tuple[tuple[int, ...], int, tuple[int, ...], str]:
        """Sort key, oldest first: a pre-release sorts before its release."""
        pre_numbers = tuple(int(n) for n in _PRE_NUMBER_RE.findall(self.pre or ""))
        return (self.numbers, 1 if self.stable else 0, pre_numbers, self.variant)


def parse_tag(tag: str) -> TagVersion | None:
    """The tag as a version, or None for a name such as ``latest`` or ``stable-alpine``."""
    match = _VERSION_RE.fullmatch(tag)
    if match is None:
        return None
    numbers = tuple(int(n) for n in match["numbers"].split("."))
    return TagVersion(tag, numbers, match["pre"], match["variant"] or "")


def is_noise(tag: str) -> bool:
    """Digest, commit and signature tags: never worth suggesting or listing."""
    return any(pattern.fullmatch(tag) for pattern in _NOISE_RES)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _one_per_version(versions: Iterable[TagVersion], variant: str) -> list[TagVersion]:
    """One tag per version: the asked variant itself if present, else the newest spelling."""
    chosen: dict[tuple[tuple[int, ...], str | None], TagVersion] = {}

    def preference(version: TagVersion) -> tuple[bool, str]:
        return (version.variant == variant, version.variant)

    for version in versions:
        slot = (version.numbers, version.pre)
        held = chosen.get(slot)
        if held is None or preference(version) > preference(held):
            chosen[slot] = version
    return list(chosen.values())


def nearest(tags: Iterable[str], asked: str, limit: int = MAX_SUGGESTIONS) -> list[str]:
    """The tags nearest to ``asked`` (which does not exist), best first, at most ``limit``.

    Same version prefix and semver neighbours first (the nearest below, then above), with the
    same variant as asked (no ``-alpine`` when none was asked); then the newest stable release.
    """
    usable = [t for t in dict.fromkeys(tags) if t != asked and not is_noise(t)]
    want = parse_tag(asked)
    if want is None:
        close = difflib.get_close_matches(asked, usable, n=limit - 1, cutoff=0.6)
        newest = _newest_stable(usable, "")
        return _with_newest(close, newest, limit)
    versions = [v for t in usable if (v := parse_tag(t)) is not None and v.family == want.family]
    if want.stable:
        versions = [v for v in versions if v.stable]
    versions = _one_per_version(versions, want.variant)
    groups: dict[int, list[TagVersion]] = {}
    for version in versions:
        groups.setdefault(_common_prefix(want.numbers, version.numbers), []).append(version)
    ranked: list[str] = []
    for shared in sorted(groups, reverse=True):
        if shared == 0 and ranked:
            break  # another major version is no neighbour; the newest release follows
        ranked.extend(v.tag for v in _neighbours(groups[shared], want, shared))
    newest = _newest_stable(usable, want.family)
    return _with_newest(ranked, newest, limit)


def _neighbours(group: list[TagVersion], want: TagVersion, shared: int) -> list[TagVersion]:
    """Within one shared prefix: a series the asked tag names in full (``1.25`` asked,
    ``1.25.4`` found) newest first; otherwise the nearest below and above, alternating."""
    if shared == len(want.numbers):
        return sorted(group, key=TagVersion.key, reverse=True)
    below = sorted((v for v in group if v.key() < want.key()), key=TagVersion.key, reverse=True)
    above = sorted((v for v in group if v.key() >= want.key()), key=TagVersion.key)
    out: list[TagVersion] = []
    for i in range(max(len(below), len(above))):
        out.extend(side[i] for side in (below, above) if i < len(side))
    return out


def _newest_stable(tags: Iterable[str], family: str) -> str | None:
    versions = [v for t in tags if (v := parse_tag(t)) and v.stable and v.family == family]
    return max(versions, key=TagVersion.key).tag if versions else None


def _with_newest(ranked: list[str], newest: str | None, limit: int) -> list[str]:
    ranked = list(dict.fromkeys(ranked))
    if newest is None or newest in ranked[:limit]:
        return ranked[:limit]
    return [*ranked[: limit - 1], newest]


# -- /tags IMAGE [FILTER] ---------------------------------------------------------------------


def newest_first(tags: Iterable[str]) -> list[str]:
    """Versions newest first (a plain tag before its variants), then names alphabetically."""
    versions, names = [], []
    for tag in dict.fromkeys(tags):
        if is_noise(tag):
            continue
        version = parse_tag(tag)
        if version is None:
            names.append(tag)
        else:
            versions.append(version)
    versions.sort(key=lambda v: (v.numbers, v.stable, v.key()[2], v.variant == ""), reverse=True)
    return [v.tag for v in versions] + sorted(names)


def filter_tags(tags: Iterable[str], pattern: str | None = None) -> list[str]:
    """``/tags IMAGE [FILTER]``: a version prefix (``1.25`` matches ``1.25.3-alpine``, not
    ``1.250``), a glob or ``~1.27``, or else a substring; newest first."""
    ordered = newest_first(tags)
    if not pattern:
        return ordered
    if any(ch in pattern for ch in "*?[~^"):
        return [t for t in ordered if matches(pattern, t)]
    prefix = parse_tag(pattern)
    if prefix is not None and not prefix.variant and prefix.pre is None:
        size = len(prefix.numbers)
        return [t for t in ordered if (v := parse_tag(t)) and v.numbers[:size] == prefix.numbers]
    needle = pattern.lower()
    return [t for t in ordered if needle in t.lower()]


# -- watches: 1.27.*, ~1.27, ^1.2 --------------------------------------------------------------


def matches(pattern: str, tag: str) -> bool:
    """Whether ``tag`` is one a watch on ``pattern`` follows.

    ``~1.27`` allows patch releases (``1.27.x``), ``^1.2`` minor ones (``1.x`` from ``1.2``);
    neither takes a pre-release or another variant. Anything else is a glob (``1.27.*``).
    """
    if is_noise(tag):
        return False
    if pattern[:1] in ("~", "^"):
        base = parse_tag(pattern[1:])
        version = parse_tag(tag)
        if base is None or version is None or not version.stable:
            return False
        if version.family != base.family or version.numbers < base.numbers:
            return False
        fixed = _fixed_parts(pattern[0], base.numbers)
        return version.numbers[:fixed] == base.numbers[:fixed]
    return fnmatch.fnmatchcase(tag, pattern)


def _fixed_parts(operator: str, numbers: tuple[int, ...]) -> int:
    """How many leading numbers a range keeps, as npm reads ``~`` and ``^``."""
    if operator == "~":
        return len(numbers) if len(numbers) <= 2 else len(numbers) - 1
    nonzero = next((i for i, n in enumerate(numbers) if n != 0), len(numbers) - 1)
    return nonzero + 1
