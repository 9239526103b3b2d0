"""Reference parsing against the distribution/reference test vectors, plus our sentences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirror.errors import InvalidReference
from mirror.reference import ImageRef, parse_reference, quote

HEX64 = "f" * 64
DIGEST = "sha256:" + HEX64
SHA512 = "sha512:" + "f" * 128


def assert_sentence(message: str) -> None:
    """What chat users see: one line, one sentence, the bad part echoed in backticks."""
    assert "\n" not in message
    assert message.endswith(".")
    assert message.count("`") >= 2
    assert message.count("`") % 2 == 0
    assert message[0].isupper() or message[0] == "`"


def reject(text: str) -> str:
    with pytest.raises(InvalidReference) as caught:
        parse_reference(text)
    message = str(caught.value)
    assert_sentence(message)
    return message


# fmt: off
# (input, registry, repository, tag, digest) -- from normalize_test.go / reference_test.go,
# seen through ParseNormalizedNamed and our "latest" default.
VALID = [
    ("nginx", "docker.io", "library/nginx", "latest", None),
    ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
    ("docker/docker", "docker.io", "docker/docker", "latest", None),
    ("library/debian", "docker.io", "library/debian", "latest", None),
    ("docker.io/debian", "docker.io", "library/debian", "latest", None),
    ("docker.io/library/debian", "docker.io", "library/debian", "latest", None),
    ("index.docker.io/docker/docker", "docker.io", "docker/docker", "latest", None),
    ("index.docker.io/debian", "docker.io", "library/debian", "latest", None),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar", "latest", None),
    ("store/foo/bar", "docker.io", "store/foo/bar", "latest", None),
    ("other/library", "docker.io", "other/library", "latest", None),
    ("test_com/foo", "docker.io", "test_com/foo", "latest", None),
    ("127.0.0.1:5000/docker/docker", "127.0.0.1:5000", "docker/docker", "latest", None),
    ("127.0.0.1:5000/debian", "127.0.0.1:5000", "debian", "latest", None),
    ("192.168.0.1", "docker.io", "library/192.168.0.1", "latest", None),
    ("192.168.0.1:80", "docker.io", "library/192.168.0.1", "80", None),
    ("192.168.0.1:8/debian", "192.168.0.1:8", "debian", "latest", None),
    ("test.com:5000", "docker.io", "library/test.com", "5000", None),
    ("test.com/repo:tag", "test.com", "repo", "tag", None),
    ("test:5000/repo", "test:5000", "repo", "latest", None),
    ("test-com:8080/foo", "test-com:8080", "foo", "latest", None),
    ("localhost/foo", "localhost", "foo", "latest", None),
    ("localhost:5000/foo", "localhost:5000", "foo", "latest", None),
    ("test:5000/repo@" + DIGEST, "test:5000", "repo", None, DIGEST),
    ("test:5000/repo:tag@" + DIGEST, "test:5000", "repo", "tag", DIGEST),
    ("foo@" + DIGEST, "docker.io", "library/foo", None, DIGEST),
    ("lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", None),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux",
     "some-long-tag", None),
    ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io", "test.example.com/my-app",
     "test.example.com", None),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", None),
    ("xn--7o8h.com/myimage:xn--7o8h.com@" + SHA512, "xn--7o8h.com", "myimage", "xn--7o8h.com",
     SHA512),
    ("foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", "8080", None),
    ("[2001:db8::1]/repo", "[2001:db8::1]", "repo", "latest", None),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000", "repo", "tag", None),
    ("[::1]:5000/repo", "[::1]:5000", "repo", "latest", None),
    ("[fc00:1:2:3:4:5:6:7]:5000/library/debian", "[fc00:1:2:3:4:5:6:7]:5000", "library/debian",
     "latest", None),
    ("docker.io/" + "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
     "docker.io", "library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
     "latest", None),
    ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io",
     "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "latest", None),
    ("docker---rules/docker", "docker.io", "docker---rules/docker", "latest", None),
    ("dock__er/docker", "docker.io", "dock__er/docker", "latest", None),
    ("d/docker", "docker.io", "d/docker", "latest", None),
    # Docker's rule: an uppercase first component is a host, not a namespace.
    ("Docker/docker", "Docker", "docker", "latest", None),
    ("busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa",
     "docker.io", "library/busybox", "latest",
     "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"),
    # The 255 limit is on the repository path, as in distribution/reference.
    ("a/" * 127 + "a:tag-puts-this-over-max", "docker.io", "a/" * 127 + "a",
     "tag-puts-this-over-max", None),
    ("sha256:" + HEX64, "docker.io", "library/sha256", HEX64, None),
]
# fmt: on


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest"), VALID)
def test_valid_references(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert ref == ImageRef(registry, repository, tag, digest)
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar) == ref


# fmt: off
# (input, a fragment the sentence must contain)
INVALID = [
    (":justtag", "repository name is missing"),
    ("@" + DIGEST, "repository name is missing"),
    ("repo@sha256:" + "f" * 34, "64 hex digits, not 34"),
    ("foo@sha256:abc", "64 hex digits, not 3"),
    ("foo@sha256:", "`sha256:`"),
    ("foo@sha256:" + "F" * 64, "lowercase hex"),
    ("foo@sha256:" + "g" * 64, "lowercase hex"),
    ("validname@invaliddigest:" + HEX64, "`invaliddigest` is not supported"),
    ("foo@md5:" + "f" * 32, "`md5` is not supported"),
    ("nginx@", "nothing follows the `@`"),
    ("nginx:", "nothing follows the `:`"),
    ("Uppercase:tag", "must be lowercase"),
    ("Nginx", "must be lowercase"),
    ("docker/Docker", "must be lowercase"),
    ("docker.io/docker/Docker", "must be lowercase"),
    ("test:5000/Uppercase/lowercase:tag", "must be lowercase"),
    ("a/" * 128 + "a:tag", "longer than 255"),
    ("a" * 250, "longer than 255"),  # 258 once Docker Hub's library/ is added
    ("aa/asdf$$^/aa", "`asdf$$^`"),
    ("https://github.com/docker/docker", "URL scheme"),
    ("-docker", "`-docker`"),
    ("-docker/docker", "`-docker`"),
    ("docker-/docker", "`docker-`"),
    ("-docker.io/docker/docker", "`-docker.io` is not a valid registry host"),
    ("docker///docker", "empty path component"),
    ("docker.io/docker///docker", "empty path component"),
    ("docker/", "empty path component"),
    ("____/____", "`____`"),
    ("_docker/_docker", "`_docker`"),
    ("dock..er/docker", "`dock..er`"),
    ("dock_.er/docker", "`dock_.er`"),
    ("[2001:db8::1]", "not a valid image reference"),
    ("[fc00::1]:5000", "not a valid image reference"),
    ("[2001:db8::1]:tag", "not a valid image reference"),
    ("fc00::1:5000/debian", "`fc00::1:5000` is not a valid registry host"),
    ("[fe80::1%eth0]:5000/repo", "is not a valid registry host"),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", "is not a valid registry host"),
    ("1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", "image ID"),
    ("nginx:-x", "the tag `-x`"),
    ("nginx:.x", "the tag `.x`"),
    ("nginx:" + "a" * 129, "longer than 128"),
    ("nginx:ü", "the tag `ü`"),
    ("ngïnx", "`ngïnx`"),
    ("nginx$web", "`nginx$web`"),
    ("nginx\n", "whitespace"),
    ("nginx:1.25\n", "whitespace"),
    (" nginx", "whitespace"),
    ("ng inx", "whitespace"),
    ("nginx\x00", "whitespace or an invisible character"),
    ("nginx\u200b", "invisible"),
    ("x" * 2000, "longer than 1000"),
    ("_".join(["this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255"] * 4)
     + "/docker",
     "longer than 255"),
]
# fmt: on


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_invalid_references(text: str, fragment: str) -> None:
    message = reject(text)
    assert fragment in message
    assert message.startswith(quote(text) + " is not a valid image reference: ")


def test_empty_reference() -> None:
    assert "empty" in reject("")


def test_messages_truncate_long_input() -> None:
    message = reject("A" * 300)
    assert "A" * 79 + "…`" in message
    assert "A" * 80 not in message


def test_quote_keeps_one_line_and_code_span() -> None:
    assert quote("a\nb") == "`a\\nb`"
    assert quote("a`b") == "`a'b`"
    assert quote("x" * 100) == "`" + "x" * 79 + "…`"


def test_library_message_is_ours() -> None:
    assert (
        reject("Nginx")
        == "`Nginx` is not a valid image reference: repository names must be lowercase."
    )


def test_str_forms() -> None:
    assert str(parse_reference("nginx:1.25")) == "docker.io/library/nginx:1.25"
    assert str(parse_reference("busybox@" + DIGEST)) == "docker.io/library/busybox@" + DIGEST
    both = parse_reference("busybox:1.36@" + DIGEST)
    assert str(both) == "docker.io/library/busybox:1.36@" + DIGEST
    assert parse_reference("nginx").name == "docker.io/library/nginx"
    assert ImageRef("docker.io", "library/nginx", None, None).familiar == "nginx"


@pytest.mark.parametrize(
    ("text", "familiar"),
    [
        ("nginx:1.25", "nginx:1.25"),
        ("docker.io/library/nginx:1.25", "nginx:1.25"),
        ("alice/app:1", "alice/app:1"),
        ("library/foo/bar:1", "library/foo/bar:1"),
        ("gcr.io/x/y:v1", "gcr.io/x/y:v1"),
        ("gcr.io/library/y:v1", "gcr.io/library/y:v1"),
        ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase:latest"),
        ("busybox@" + DIGEST, "busybox@" + DIGEST),
        ("Foo/bar", "Foo/bar:latest"),
    ],
)
def test_familiar(text: str, familiar: str) -> None:
    assert parse_reference(text).familiar == familiar


def test_with_tag_drops_digest() -> None:
    ref = parse_reference("busybox:1.36@" + DIGEST)
    assert ref.with_tag("stable") == ImageRef("docker.io", "library/busybox", "stable", None)
    with pytest.raises(InvalidReference, match="`-bad` is not a valid tag"):
        ref.with_tag("-bad")


def test_pull_reference_prefers_digest() -> None:
    assert parse_reference("nginx:1.25").pull_reference == "1.25"
    assert parse_reference("nginx").pull_reference == "latest"
    assert parse_reference("busybox@" + DIGEST).pull_reference == DIGEST
    assert parse_reference("busybox:1.36@" + DIGEST).pull_reference == DIGEST


def test_ordering_handles_missing_parts() -> None:
    by_digest = parse_reference("busybox@" + DIGEST)
    by_tag = parse_reference("busybox:1.36")
    assert sorted([by_tag, by_digest]) == [by_digest, by_tag]
    assert by_digest < by_tag <= by_tag
    assert by_tag > by_digest >= by_digest


def test_hashable_and_frozen() -> None:
    assert len({parse_reference("nginx"), parse_reference("docker.io/library/nginx:latest")}) == 1


_REFERENCE_LIKE = st.from_regex(
    r"\A(?:(?:[a-zA-Z0-9.-]{1,12}|localhost|\[[0-9a-f:]{2,8}\])(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]{1,6}(?:[._-]{1,2}[a-z0-9]{1,6}){0,2}(?:/[a-z0-9_.-]{1,8}){0,3}"
    r"(?::[A-Za-z0-9_.-]{0,10})?(?:@(?:sha256|sha512|md5)?:?[0-9a-fA-F]{0,66})?\Z"
)


@given(st.one_of(st.text(max_size=80), _REFERENCE_LIKE))
def test_parse_reference_round_trips_or_says_why(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference as error:
        assert_sentence(str(error))
        return
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar) == ref
    assert ref.tag is not None or ref.digest is not None
