"""Who may use the bot and which sources may be copied."""

from __future__ import annotations

import pytest

from bot.chat import Incoming
from bot.policy import Denied, Policy
from bot.settings import Settings
from mirror.reference import parse_reference


def policy(**env: str) -> Policy:
    return Policy(Settings(_env_file=None, **env))  # type: ignore[call-arg]


def msg(platform: str, user: str, chat: str = "c1", *, closed: bool = False) -> Incoming:
    return Incoming(platform, user, user, chat, "/help", closed_by_default=closed)


def test_open_platforms_need_no_list_but_closed_ones_do() -> None:
    p = policy()
    p.check_user(msg("slack", "U1"))
    with pytest.raises(Denied, match="`telegram:42`"):
        p.check_user(msg("telegram", "42", closed=True))


def test_allowed_users_and_chats_narrow_access() -> None:
    p = policy(mirror_allowed_users="telegram:42, slack:C9")
    p.check_user(msg("telegram", "42", closed=True))
    p.check_user(msg("slack", "U7", chat="C9"))
    with pytest.raises(Denied):
        p.check_user(msg("slack", "U7", chat="C1"))


def test_admins_are_always_allowed() -> None:
    p = policy(mirror_allowed_users="slack:U1", mirror_admins="slack:U2")
    p.check_user(msg("slack", "U2"))
    assert p.is_admin(msg("slack", "U2")) and not p.is_admin(msg("slack", "U1"))


@pytest.mark.parametrize(
    "image",
    ["nginx", "gcr.io/x/y:1", "registry.k8s.io/pause:3.9", "quay.io/a/b", "ghcr.io/o/r:1"],
)
def test_public_sources_are_allowed_by_default(image: str) -> None:
    policy().check_source(parse_reference(image))


@pytest.mark.parametrize(
    "image",
    [
        "127.0.0.1:5000/x",
        "localhost:5000/x",
        "10.0.0.1/x",
        "169.254.169.254/latest",
        "[::1]:5000/x",
        "evil.example.com/x",
    ],
)
def test_internal_and_unknown_sources_are_refused(image: str) -> None:
    with pytest.raises(Denied, match="not an allowed source registry"):
        policy().check_source(parse_reference(image))


def test_internal_sources_pass_only_when_listed_explicitly() -> None:
    p = policy(mirror_allowed_sources="127.0.0.1:5000,10.0.0.1,*.example.com")
    p.check_source(parse_reference("127.0.0.1:5000/x"))
    p.check_source(parse_reference("10.0.0.1/x"))
    p.check_source(parse_reference("a.example.com/x"))
    with pytest.raises(Denied):
        p.check_source(parse_reference("127.0.0.1:5001/x"))
    with pytest.raises(Denied):
        policy(mirror_allowed_sources="*.0.0.1").check_source(parse_reference("127.0.0.1/x"))
