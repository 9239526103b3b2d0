"""The chat command grammar: every adapter's text goes through it."""

import pytest

from bot.commands import (
    CancelCommand,
    ConfirmCommand,
    HelpCommand,
    HistoryCommand,
    InspectCommand,
    MirrorCommand,
    PlanCommand,
    StatusCommand,
    TagsCommand,
    UsageError,
    parse_command,
)
from mirror.errors import InvalidPlatform, InvalidReference
from mirror.platform import Platform

AMD64 = Platform("linux", "amd64")


def parse(text: str, **kw: object) -> object:
    options: dict[str, object] = {"default_platform": AMD64, "max_images": 11}
    options.update(kw)
    return parse_command(text, **options)  # type: ignore[arg-type]


def test_mirror_with_several_images_separated_by_spaces_and_newlines() -> None:
    cmd = parse("/mirror nginx:1.25\nquay.io/prometheus/node-exporter:v1.7.0   redis")
    assert isinstance(cmd, MirrorCommand)
    assert [str(s.source) for s in cmd.images] == [
        "docker.io/library/nginx:1.25",
        "quay.io/prometheus/node-exporter:v1.7.0",
        "docker.io/library/redis:latest",
    ]
    assert cmd.platform == AMD64


@pytest.mark.parametrize(
    ("text", "platform"),
    [
        ("/mirror nginx --platform linux/arm64", Platform("linux", "arm64")),
        ("/mirror --platform=linux/arm/v7 nginx", Platform("linux", "arm", "v7")),
        ("/mirror nginx --platform all", None),
    ],
)
def test_platform_flag(text: str, platform: Platform | None) -> None:
    cmd = parse(text)
    assert isinstance(cmd, MirrorCommand) and cmd.platform == platform


def test_more_images_than_the_limit_are_a_plan_and_confirm_lifts_it() -> None:
    """Over MIRROR_MAX_IMAGES the command is a plan to show (an admin may confirm it);
    ``--confirm`` asks for the copy itself, which the bot allows admins only."""
    images = " ".join(f"img{i}" for i in range(12))
    plan = parse(f"/mirror {images} --platform all")
    assert isinstance(plan, PlanCommand) and plan.limit == 11
    assert len(plan.mirror.images) == 12 and plan.mirror.platform is None
    confirmed = parse(f"/mirror --confirm {images}")
    assert isinstance(confirmed, MirrorCommand) and confirmed.confirmed
    assert len(confirmed.images) == 12


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/confirm k3x9qa", ConfirmCommand("k3x9qa")),
        ("/confirm k3x9qa 2", ConfirmCommand("k3x9qa", 1)),
        ("/mirror confirm k3x9qa", ConfirmCommand("k3x9qa")),
    ],
)
def test_confirm_names_a_job_and_maybe_one_image(text: str, expected: ConfirmCommand) -> None:
    assert parse(text) == expected


def test_default_platform_all_is_kept() -> None:
    cmd = parse("/mirror nginx", default_platform=None)
    assert isinstance(cmd, MirrorCommand) and cmd.platform is None


def test_target_name_override_is_parsed() -> None:
    cmd = parse("/mirror registry.k8s.io/pause:3.9$pause:latest")
    assert isinstance(cmd, MirrorCommand)
    assert (cmd.images[0].name, cmd.images[0].tag) == ("pause", "latest")


def test_duplicates_in_one_command_are_merged() -> None:
    cmd = parse("/mirror nginx nginx")
    assert isinstance(cmd, MirrorCommand) and len(cmd.images) == 1


def test_telegram_bot_suffix_and_slack_dm_form() -> None:
    assert isinstance(parse("/mirror@MirrorBot nginx", bot_username="mirrorbot"), MirrorCommand)
    assert parse("/mirror@OtherBot nginx", bot_username="MirrorBot") is None
    assert isinstance(parse("mirror nginx"), MirrorCommand)


def test_other_commands() -> None:
    assert parse("/status") == StatusCommand(None)
    assert parse("/status k3x9qa") == StatusCommand("k3x9qa")
    assert parse("/history") == HistoryCommand()
    assert parse("/cancel k3x9qa") == CancelCommand("k3x9qa")
    assert parse("/help") == HelpCommand()
    assert parse("/start") == HelpCommand()
    assert parse("   ") == HelpCommand()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("/frobnicate", "not a command"),
        ("/mirror", "at least one image"),
        ("/mirror nginx --force", "not an option"),
        ("/mirror nginx --platform", "needs a value"),
        ("/cancel", "exactly one job"),
        ("/status a b", "at most one"),
        ("/history now", "no arguments"),
        ("/mirror " + " ".join(f"img{i}" for i in range(101)), "101 images; the limit is 11"),
        ("/confirm", "needs a job id"),
        ("/confirm k3x9qa first", "needs a job id"),
        ("/confirm k3x9qa 0", "numbered from 1"),
    ],
)
def test_bad_input_gets_one_sentence(text: str, words: str) -> None:
    with pytest.raises(UsageError) as err:
        parse(text)
    message = str(err.value)
    assert words in message
    assert "\n" not in message and message.endswith(".")


def test_bad_reference_and_platform_are_explained() -> None:
    with pytest.raises(InvalidReference, match="Nginx"):
        parse("/mirror Nginx")
    with pytest.raises(InvalidPlatform):
        parse("/mirror nginx --platform linux")


def test_absurdly_long_message_is_refused() -> None:
    with pytest.raises(UsageError, match="too long"):
        parse("/mirror " + "a" * 10000)


@pytest.mark.parametrize(
    ("text", "repository", "pattern"),
    [
        ("/tags nginx", "docker.io/library/nginx", None),
        ("/tags nginx 1.25", "docker.io/library/nginx", "1.25"),
        ("/tags nginx:1.25", "docker.io/library/nginx", "1.25"),  # a typed tag is the filter
        (
            "/tags@MyBot quay.io/prometheus/node-exporter ~1.7",
            "quay.io/prometheus/node-exporter",
            "~1.7",
        ),
        ("/tags localhost:5000/app", "localhost:5000/app", None),  # a port is no tag
        ("/tags https://hub.docker.com/_/redis", "docker.io/library/redis", None),
    ],
)
def test_tags(text: str, repository: str, pattern: str | None) -> None:
    cmd = parse(text, bot_username="MyBot")
    assert isinstance(cmd, TagsCommand)
    assert cmd.image.name == repository
    assert cmd.pattern == pattern


def test_inspect_and_its_mistakes() -> None:
    cmd = parse("/inspect registry.k8s.io/pause:3.9")
    assert isinstance(cmd, InspectCommand)
    assert str(cmd.image) == "registry.k8s.io/pause:3.9"
    for text in ("/inspect", "/inspect a b", "/tags", "/tags a b c", "/tags nginx --all"):
        with pytest.raises(UsageError):
            parse(text)
    with pytest.raises(UsageError, match="not one image reference"):
        parse("/inspect nginx$mine")
