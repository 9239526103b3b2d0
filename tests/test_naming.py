"""Target names (DESIGN.md "Target names"), image specs, target bases and platforms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirror.errors import InvalidPlatform, InvalidReference, NameConflict
from mirror.naming import (
    ImageSpec,
    TargetBase,
    check_unique_targets,
    flatten,
    parse_image_spec,
    parse_target_base,
    target_for,
)
from mirror.platform import DEFAULT_PLATFORM, Platform, parse_platform
from mirror.reference import ImageRef, parse_reference

HEX64 = "0123456789abcdef" * 4
ALICE = TargetBase("docker.io", "alice")
ARM64 = Platform("linux", "arm64")


def assert_sentence(message: str) -> None:
    assert "\n" not in message
    assert message.endswith(".")
    assert message.count("`") >= 2
    assert message.count("`") % 2 == 0


def target(
    text: str, base: TargetBase = ALICE, platform: Platform | None = DEFAULT_PLATFORM
) -> str:
    return str(target_for(parse_image_spec(text), base, platform, DEFAULT_PLATFORM))


# --- target names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "gcr.io/google-samples/microservices-demo/emailservice:v0.3.5",
            "docker.io/alice/gcr.io.google-samples.microservices-demo.emailservice:v0.3.5",
        ),
        ("nginx:1.25", "docker.io/alice/nginx:1.25"),
        ("nginx", "docker.io/alice/nginx:latest"),
        ("docker.io/library/nginx:1.25", "docker.io/alice/nginx:1.25"),
        ("alice/app:1", "docker.io/alice/alice.app:1"),
        ("docker.io/library/foo/bar:1", "docker.io/alice/foo.bar:1"),
        ("127.0.0.1:5000/team/app:1", "docker.io/alice/127.0.0.1-5000.team.app:1"),
        ("localhost:5000/app:1", "docker.io/alice/localhost-5000.app:1"),
        ("localhost/app", "docker.io/alice/localhost.app:latest"),
        (
            "quay.io/prometheus/node-exporter:v1.7.0",
            "docker.io/alice/quay.io.prometheus.node-exporter:v1.7.0",
        ),
        ("gcr.io/library/y:v1", "docker.io/alice/gcr.io.library.y:v1"),
        ("[::1]:5000/foo:1", "docker.io/alice/1--5000.foo:1"),
        ("[2001:db8::1]:5000/foo:1", "docker.io/alice/2001-db8--1--5000.foo:1"),
        ("[fd00::1]:5000/app:1", "docker.io/alice/fd00--1--5000.app:1"),
        ("Docker/app:1", "docker.io/alice/docker.app:1"),
    ],
)
def test_flattened_names(source: str, expected: str) -> None:
    assert target(source) == expected


def test_other_bases() -> None:
    assert (
        target("nginx:1.25", TargetBase("127.0.0.1:5000", "mirror"))
        == "127.0.0.1:5000/mirror/nginx:1.25"
    )
    assert target("nginx:1.25", TargetBase("127.0.0.1:5000", "")) == "127.0.0.1:5000/nginx:1.25"
    assert (
        target("alice/app:1", TargetBase("harbor.example.com", "a/b"))
        == "harbor.example.com/a/b/alice.app:1"
    )


def test_target_is_plain_image_ref() -> None:
    ref = target_for(parse_image_spec("gcr.io/x/y:v1"), ALICE, None, DEFAULT_PLATFORM)
    assert ref == ImageRef("docker.io", "alice/gcr.io.x.y", "v1", None)


def test_single_non_default_platform_gets_suffix() -> None:
    assert target("nginx:1.25", platform=ARM64) == "docker.io/alice/nginx-linux-arm64:1.25"
    assert (
        target("nginx:1.25", platform=Platform("linux", "arm", "v7"))
        == "docker.io/alice/nginx-linux-arm-v7:1.25"
    )
    assert target("nginx:1.25", platform=None) == "docker.io/alice/nginx:1.25"
    assert target("nginx:1.25", platform=DEFAULT_PLATFORM) == "docker.io/alice/nginx:1.25"


def test_default_platform_all() -> None:
    """An operator who defaults to `all` gets a suffix for any single platform asked for."""
    spec = parse_image_spec("nginx:1.25")
    assert str(target_for(spec, ALICE, None, None)) == "docker.io/alice/nginx:1.25"
    assert (
        str(target_for(spec, ALICE, DEFAULT_PLATFORM, None))
        == "docker.io/alice/nginx-linux-amd64:1.25"
    )


def test_override_name_and_tag() -> None:
    assert target("nginx$web") == "docker.io/alice/web:latest"
    assert target("nginx:1.25$web") == "docker.io/alice/web:1.25"
    assert target("gcr.io/x/y:v1$myname:tag") == "docker.io/alice/myname:tag"
    harbor = TargetBase("harbor.example.com", "alice")  # Docker Hub would refuse a deeper name
    assert (
        target("gcr.io/x/y:v1$team/y:v1-arm", harbor, platform=ARM64)
        == "harbor.example.com/alice/team/y:v1-arm"
    )
    assert target("nginx:1.25$web", platform=ARM64) == "docker.io/alice/web:1.25"


def test_digest_sources_get_a_readable_tag() -> None:
    assert target(f"busybox@sha256:{HEX64}") == "docker.io/alice/busybox:sha256-0123456789ab"
    assert target(f"busybox:1.36@sha256:{HEX64}") == "docker.io/alice/busybox:1.36"
    assert target(f"busybox@sha256:{HEX64}$bb:pinned") == "docker.io/alice/bb:pinned"
    ref = target_for(parse_image_spec(f"busybox@sha256:{HEX64}"), ALICE, None, DEFAULT_PLATFORM)
    assert ref.digest is None


def test_flatten_directly() -> None:
    assert flatten(parse_reference("nginx")) == "nginx"
    assert flatten(parse_reference("GCR.io/x/y")) == "gcr.io.x.y"


def test_too_long_flattened_name_asks_for_a_name() -> None:
    source = "gcr.io/" + "/".join(["abcdefghij" * 2] * 11)  # path 230: fine as a source
    with pytest.raises(InvalidReference) as caught:
        target(source, TargetBase("docker.io", "a-rather-long-namespace"))
    message = str(caught.value)
    assert_sentence(message)
    assert "`$NAME`" in message
    assert "shorter name" in message
    assert message.count("\n") == 0


def test_weird_host_asks_for_a_name() -> None:
    with pytest.raises(InvalidReference, match=r"`\$NAME`"):
        target("[::]/foo:1")


def test_override_too_long_with_namespace() -> None:
    name = "n" * 250
    with pytest.raises(InvalidReference, match="shorter name"):
        target(f"nginx${name}")


# --- image specs ------------------------------------------------------------------------


def test_parse_image_spec() -> None:
    spec = parse_image_spec("gcr.io/x/y:v1$myname:tag")
    assert spec == ImageSpec(
        "gcr.io/x/y:v1$myname:tag", parse_reference("gcr.io/x/y:v1"), "myname", "tag"
    )
    assert parse_image_spec("nginx$web") == ImageSpec(
        "nginx$web", parse_reference("nginx"), "web", None
    )
    assert parse_image_spec("nginx") == ImageSpec("nginx", parse_reference("nginx"), None, None)
    assert str(parse_image_spec("nginx$web:v1")) == "docker.io/library/nginx:latest$web:v1"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("nginx$", "no name after `$`"),
        ("$web", "no image before `$`"),
        ("nginx$Web", "target name `Web` is not valid: repository names must be lowercase"),
        ("nginx$-web", "target name `-web`"),
        ("nginx$a//b", "target name `a//b`"),
        ("nginx$web/", "target name `web/`"),
        ("nginx$we$b", "target name `we$b`"),
        ("nginx$" + "a" * 256, "longer than 255"),
        ("nginx$web:", "nothing after the `:`"),
        ("nginx$web:-x", "target tag `-x`"),
        ("nginx$web:a:b", "target tag `a:b`"),
        ("nginx$web:" + "t" * 129, "target tag"),
        ("Nginx$web", "`Nginx` is not a valid image reference: repository names must be lowercase"),
        ("nginx $web", "whitespace"),
        ("nginx$web\n", "whitespace"),
        ("", "empty"),
    ],
)
def test_bad_image_specs(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse_image_spec(text)
    assert fragment in str(caught.value)
    assert_sentence(str(caught.value))


# --- target bases -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry", "namespace"),
    [
        ("docker.io/alice", "docker.io", "alice"),
        ("alice", "docker.io", "alice"),
        ("index.docker.io/alice", "docker.io", "alice"),
        ("registry.cn-hangzhou.aliyuncs.com/myns", "registry.cn-hangzhou.aliyuncs.com", "myns"),
        ("127.0.0.1:5000/mirror", "127.0.0.1:5000", "mirror"),
        ("127.0.0.1:5000", "127.0.0.1:5000", ""),
        ("localhost", "localhost", ""),
        ("localhost/team", "localhost", "team"),
        ("harbor.example.com/a/b", "harbor.example.com", "a/b"),
        ("harbor.example.com/a/b/", "harbor.example.com", "a/b"),
        ("org/team", "docker.io", "org/team"),
        (" docker.io/alice ", "docker.io", "alice"),
    ],
)
def test_parse_target_base(text: str, registry: str, namespace: str) -> None:
    assert parse_target_base(text) == TargetBase(registry, namespace)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("docker.io", "Docker Hub needs a namespace"),
        ("index.docker.io/", "Docker Hub needs a namespace"),
        ("https://harbor.example.com/team", "URL scheme"),
        ("docker.io/Alice", "namespace `Alice` is not valid (repository names must be lowercase)"),
        ("docker.io/a//b", "namespace `a//b`"),
        ("-bad.io/ns", "`-bad.io` is not a valid registry host"),
        ("host:port/ns", "`host:port` is not a valid registry host"),
        ("docker.io/al ice", "whitespace"),
    ],
)
def test_bad_target_bases(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse_target_base(text)
    assert fragment in str(caught.value)
    assert_sentence(str(caught.value))


# --- uniqueness -------------------------------------------------------------------------


def _pair(
    text: str, platform: Platform | None = DEFAULT_PLATFORM
) -> tuple[ImageRef, Platform | None, ImageRef]:
    spec = parse_image_spec(text)
    return spec.source, platform, target_for(spec, ALICE, platform, DEFAULT_PLATFORM)


def test_identical_duplicates_are_fine() -> None:
    check_unique_targets([_pair("nginx"), _pair("docker.io/library/nginx:latest"), _pair("nginx")])
    check_unique_targets([_pair("nginx"), _pair("nginx", ARM64), _pair("nginx", ARM64)])


def test_default_platform_and_all_share_a_name_so_they_conflict() -> None:
    """Neither gets a suffix; the amd64-only copy and the whole index must not overwrite."""
    with pytest.raises(NameConflict, match=r"\(linux/amd64\) and `nginx:latest` \(all platforms\)"):
        check_unique_targets([_pair("nginx"), _pair("nginx", None)])
    check_unique_targets([])


def test_flattening_collision_is_refused() -> None:
    with pytest.raises(NameConflict) as caught:
        check_unique_targets([_pair("a/b.c:1"), _pair("a.b/c:1")])
    message = str(caught.value)
    assert message == (
        "`a/b.c:1` (linux/amd64) and `a.b/c:1` (linux/amd64) would both be mirrored to "
        "`docker.io/alice/a.b.c:1`: give one of them another name with `$NAME`."
    )


def test_override_collision_is_refused() -> None:
    with pytest.raises(NameConflict, match=r"`docker\.io/alice/web:latest`"):
        check_unique_targets([_pair("nginx$web"), _pair("httpd$web")])


def test_same_source_other_platform_same_name_is_refused() -> None:
    with pytest.raises(NameConflict, match=r"\(linux/arm64\).*\(all platforms\)"):
        check_unique_targets([_pair("nginx$web", ARM64), _pair("nginx$web", None)])


def test_library_prefix_collision_is_refused() -> None:
    with pytest.raises(NameConflict):
        check_unique_targets([_pair("library/foo/bar:1"), _pair("foo/bar:1")])


# --- platforms --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/arm64", "linux/arm64"),
        ("Linux/ARM64", "linux/arm64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm64/v9", "linux/arm64/v9"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/arm/5", "linux/arm/v5"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("linux/ppc64le", "linux/ppc64le"),
        ("linux/s390x", "linux/s390x"),
        ("windows/amd64", "windows/amd64"),
        ("macos/arm64", "darwin/arm64"),
    ],
)
def test_parse_platform(text: str, expected: str) -> None:
    platform = parse_platform(text)
    assert platform is not None
    assert str(platform) == expected
    assert parse_platform(str(platform)) == platform


def test_platform_all_and_suffix() -> None:
    assert parse_platform("all") is None
    assert parse_platform("ALL") is None
    assert Platform("linux", "arm", "v7").suffix == "linux-arm-v7"
    assert str(Platform("linux", "arm", "v7")) == "linux/arm/v7"
    assert Platform("linux", "amd64") == DEFAULT_PLATFORM


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("linux", "`linux` is not a platform: use os/arch[/variant] such as linux/arm64, or all."),
        ("", "The platform is empty"),
        ("linux/arm/v7/x", "`linux/arm/v7/x` is not a platform"),
        ("linux//arm", "`linux//arm` is not a platform: use os/arch"),
        ("linux/", "`linux/` is not a platform: use os/arch"),
        ("linux/ar$m", "`ar$m` must be"),
        ("linux/-arm", "`-arm` must be"),
        ("linux/arm64 ", "whitespace"),
        ("linux/" + "a" * 40, "at most 32"),
    ],
)
def test_bad_platforms(text: str, fragment: str) -> None:
    with pytest.raises(InvalidPlatform) as caught:
        parse_platform(text)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)
    assert str(caught.value).endswith(".")


# --- properties -------------------------------------------------------------------------

_SPEC_LIKE = st.from_regex(
    r"\A(?:[a-z0-9.:-]{1,10}/)?[a-zA-Z0-9]{1,6}(?:[._-][a-z0-9]{1,4}){0,2}(?:/[a-z0-9]{1,5}){0,2}"
    r"(?::[A-Za-z0-9_.-]{0,8})?(?:@sha256:[0-9a-f]{64})?"
    r"(?:\$(?:[a-z0-9]{1,5}(?:[/._-][a-z0-9]{1,4}){0,2}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,6})?"
    r"|[a-zA-Z0-9/._$-]{0,10}(?::[a-zA-Z0-9_.:-]{0,8})?))?\Z"
)


@given(st.one_of(st.text(max_size=60), _SPEC_LIKE))
def test_parse_image_spec_round_trips_or_says_why(text: str) -> None:
    try:
        spec = parse_image_spec(text)
    except InvalidReference as error:
        assert_sentence(str(error))
        return
    again = parse_image_spec(str(spec))
    assert (again.source, again.name, again.tag) == (spec.source, spec.name, spec.tag)
    if spec.name is None:
        return
    try:  # a name with `/` cannot land on Docker Hub under a namespace: a sentence says so
        named = target_for(spec, ALICE, None, DEFAULT_PLATFORM)
    except InvalidReference as error:
        assert_sentence(str(error))
        return
    assert parse_reference(str(named)) == named


_PLATFORM_LIKE = st.from_regex(
    r"\A[a-zA-Z0-9_.$-]{0,8}(?:/[a-zA-Z0-9_.$-]{0,8}){0,3}\Z"
) | st.sampled_from(["all", "linux/arm", "linux/arm64/v8", "linux/aarch64", "linux/armhf/v5"])


@given(st.one_of(st.text(max_size=30), _PLATFORM_LIKE))
def test_parse_platform_round_trips_or_says_why(text: str) -> None:
    try:
        platform = parse_platform(text)
    except InvalidPlatform as error:
        assert "\n" not in str(error)
        assert str(error).endswith(".")
        return
    if platform is None:
        assert text.lower() == "all"
        return
    assert parse_platform(str(platform)) == platform
    # Every platform can be part of a target name.
    spec = parse_image_spec("nginx:1")
    assert target_for(spec, ALICE, platform, DEFAULT_PLATFORM).repository.startswith("alice/nginx")


@given(st.one_of(st.text(max_size=60), _SPEC_LIKE))
def test_targets_are_valid_references_or_say_why(text: str) -> None:
    try:
        spec = parse_image_spec(text)
        result = target_for(spec, ALICE, ARM64, DEFAULT_PLATFORM)
    except InvalidReference as error:
        assert_sentence(str(error))
        return
    assert parse_reference(str(result)) == result
    assert result.digest is None


@pytest.mark.parametrize("text", ["nginx:1.25$library/nginx", "nginx:1.25$a/b:1"])
def test_docker_hub_takes_only_namespace_and_name(text: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        target(text)
    assert_sentence(str(caught.value))
    assert "Docker Hub takes only `namespace/name`" in str(caught.value)
    # the same name lands in a registry whose paths may be deeper
    assert target(text, TargetBase("harbor.example.com", "team")).startswith(
        "harbor.example.com/team/"
    )
