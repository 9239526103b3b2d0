"""Tag ranking, listing and watch patterns (mirror/tags.py): tables with real repositories' tags."""

import pytest

from mirror.tags import filter_tags, is_noise, matches, nearest, newest_first, parse_tag

SIG = "sha256-" + "3f" * 32 + ".sig"
NGINX = [
    "latest", "stable", "mainline", "alpine", "stable-alpine", "mainline-alpine",
    "1.24.0", "1.24.0-alpine", "1.24",
    "1.25", "1.25-alpine", "1.25.3", "1.25.3-alpine", "1.25.4", "1.25.4-alpine", "1.25.4-perl",
    "1.26", "1.26.0", "1.26.1", "1.26.1-alpine",
    "1.27", "1.27.0", "1.27.1", "1.27.1-alpine", "1.27.1-alpine3.20-slim", "1.27.1-perl",
    "1.27.2-rc1", SIG, "sha256-" + "3f" * 32 + ".att", "sha256-" + "3f" * 32,
]  # fmt: skip
NODE = [
    "lts", "lts-alpine", "current", "iron", "20", "20-alpine", "20.11", "20.11.0",
    "20.11.0-alpine3.19", "20.11.1", "20.11.1-alpine3.18", "20.11.1-alpine3.19",
    "20.11.1-bookworm-slim", "20.12.0", "20.12.0-bookworm-slim", "21.6.2", "18.19.1",
]  # fmt: skip
KUBE = [
    "v1.28.8", "v1.29.2", "v1.29.3", "v1.29.4-alpha.0", "v1.30.0-rc.1", "v1.30.0",
    "a1b2c3d", "sha-4f2e1ab", "0123456789abcdef0123456789abcdef01234567",
]  # fmt: skip


@pytest.mark.parametrize(
    ("tags", "asked", "expected"),
    [
        # same series first, nearest below, then the next series; the newest release last
        (NGINX, "1.25.5", ["1.25.4", "1.25.3", "1.25", "1.24.0", "1.27.1"]),
        (NGINX, "1.25.2", ["1.25", "1.25.3", "1.25.4", "1.24.0", "1.27.1"]),
        # a series asked in full: its newest first
        (NGINX, "1.28", ["1.27.1", "1.27.0", "1.27", "1.26.1", "1.26.0"]),
        # the variant asked, and only it
        (
            NGINX,
            "1.25.5-alpine",
            ["1.25.4-alpine", "1.25.3-alpine", "1.25-alpine", "1.24.0-alpine", "1.27.1-alpine"],
        ),
        (NGINX, "1.25.9-perl", ["1.25.4-perl", "1.27.1-perl"]),
        # a forgotten or added `v`
        (KUBE, "1.29.3", ["v1.29.3", "v1.29.2", "v1.28.8", "v1.30.0"]),
        (KUBE, "v1.29.9", ["v1.29.3", "v1.29.2", "v1.28.8", "v1.30.0"]),
        # a pre-release asked: the release it leads to, then pre-releases are neighbours too
        (
            KUBE,
            "v1.30.0-rc.2",
            ["v1.30.0", "v1.30.0-rc.1", "v1.29.4-alpha.0", "v1.29.3", "v1.29.2"],
        ),
        # a variant with its own version: alpine3.19 is asked, alpine3.18 is the same family
        (NODE, "20.11.2-alpine3.19", ["20.11.1-alpine3.19", "20.11.0-alpine3.19", "20-alpine"]),
        (NODE, "20.11.2", ["20.11.1", "20.11.0", "20.11", "20", "21.6.2"]),
        # a name, misspelt: close names, then the newest release
        (NGINX, "stabel", ["stable", "1.27.1"]),
        (NGINX, "alpnie", ["alpine", "1.27.1"]),
        # nothing alike: the newest release alone
        (["1.0", "2.0", "latest"], "edge", ["2.0"]),
        ([], "1.0", []),
    ],
)
def test_nearest(tags: list[str], asked: str, expected: list[str]) -> None:
    assert nearest(tags, asked) == expected


def test_nearest_never_offers_noise_and_at_most_five() -> None:
    tags = [f"1.0.{n}" for n in range(40)] + KUBE + [SIG]
    found = nearest(tags, "1.0.99")
    assert len(found) == 5
    assert not any(is_noise(t) for t in found)
    assert found[0] == "1.0.39"


@pytest.mark.parametrize(
    ("tag", "noise"),
    [
        (SIG, True),
        ("sha256-" + "ab" * 32 + ".sbom", True),
        ("sha256-" + "ab" * 32, True),
        ("a1b2c3d", True),
        ("sha-4f2e1ab", True),
        ("0123456789abcdef0123456789abcdef01234567", True),
        ("cosign.sig", True),
        ("20240315", False),  # a date, not a commit
        ("1.25.3", False),
        ("latest", False),
        ("beefcake", False),
        ("v1.2.3.att-fix", False),
    ],
)
def test_noise(tag: str, noise: bool) -> None:
    assert is_noise(tag) is noise


@pytest.mark.parametrize(
    ("tag", "numbers", "pre", "variant"),
    [
        ("1.25.3", (1, 25, 3), None, ""),
        ("v1.29.3", (1, 29, 3), None, ""),
        ("1.25.3-alpine", (1, 25, 3), None, "alpine"),
        ("20-alpine3.19", (20,), None, "alpine3.19"),
        ("20.11.1-bookworm-slim", (20, 11, 1), None, "bookworm-slim"),
        ("v1.30.0-rc.1", (1, 30, 0), "rc.1", ""),
        ("3.13.0rc1", (3, 13, 0), "rc1", ""),
        ("1.2.3-beta.2-alpine", (1, 2, 3), "beta.2", "alpine"),
        ("7.2.4-debian-12-r9", (7, 2, 4), None, "debian-12-r9"),
    ],
)
def test_parse_tag(tag: str, numbers: tuple[int, ...], pre: str | None, variant: str) -> None:
    version = parse_tag(tag)
    assert version is not None
    assert (version.numbers, version.pre, version.variant) == (numbers, pre, variant)


@pytest.mark.parametrize("tag", ["latest", "stable-alpine", "lts", "mainline"])
def test_names_are_not_versions(tag: str) -> None:
    assert parse_tag(tag) is None


def test_newest_first_is_semver_aware() -> None:
    tags = ["1.9.0", "1.10.0", "1.10.0-alpine", "1.10.1-rc1", "latest", "1.2", "edge", SIG]
    assert newest_first(tags) == ["1.10.1-rc1", "1.10.0", "1.10.0-alpine", "1.9.0", "1.2",
                                  "edge", "latest"]  # fmt: skip


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (
            "1.25",
            [
                "1.25.4",
                "1.25.4-alpine",
                "1.25.4-perl",
                "1.25.3",
                "1.25.3-alpine",
                "1.25",
                "1.25-alpine",
            ],
        ),
        ("1.2", []),  # a version prefix, not a substring: 1.25 is not 1.2.x
        (
            "alpine",
            [
                "1.27.1-alpine",
                "1.27.1-alpine3.20-slim",
                "1.26.1-alpine",
                "1.25.4-alpine",
                "1.25.3-alpine",
                "1.25-alpine",
                "1.24.0-alpine",
                "alpine",
                "mainline-alpine",
                "stable-alpine",
            ],
        ),
        (
            "1.27.*",
            [
                "1.27.2-rc1",
                "1.27.1",
                "1.27.1-alpine",
                "1.27.1-alpine3.20-slim",
                "1.27.1-perl",
                "1.27.0",
            ],
        ),
        ("~1.26", ["1.26.1", "1.26.0", "1.26"]),
    ],
)
def test_filter_tags(pattern: str, expected: list[str]) -> None:
    assert filter_tags(NGINX, pattern) == expected


def test_filter_without_pattern_lists_all_but_noise() -> None:
    listed = filter_tags(KUBE)
    assert listed == ["v1.30.0", "v1.30.0-rc.1", "v1.29.4-alpha.0", "v1.29.3", "v1.29.2",
                      "v1.28.8"]  # fmt: skip


@pytest.mark.parametrize(
    ("pattern", "tag", "expected"),
    [
        ("1.27.*", "1.27.3", True),
        ("1.27.*", "1.28.0", False),
        ("1.27.*", "1.27.3-alpine", True),  # a glob means what it says
        ("*-alpine", "1.27.3-alpine", True),
        ("~1.27", "1.27.3", True),
        ("~1.27", "1.27", True),
        ("~1.27", "1.28.0", False),
        ("~1.27", "1.27.3-alpine", False),  # no variant asked
        ("~1.27-alpine", "1.27.3-alpine", True),
        ("~1.27", "1.27.4-rc1", False),  # no pre-release
        ("~1.27.2", "1.27.1", False),
        ("~1.27.2", "1.27.9", True),
        ("~1", "1.99.0", True),
        ("^1.2", "1.9.0", True),
        ("^1.2", "2.0.0", False),
        ("^1.2", "1.1.9", False),
        ("^0.2.3", "0.2.9", True),
        ("^0.2.3", "0.3.0", False),
        ("~1.29", "v1.29.3", True),
        ("~1.27", SIG, False),
        ("*", SIG, False),
        ("~latest", "latest", False),
    ],
)
def test_matches(pattern: str, tag: str, expected: bool) -> None:
    assert matches(pattern, tag) is expected
