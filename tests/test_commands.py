"""The chat command grammar: every adapter's text goes through it."""

from typing import Any

import pytest

from bot.commands import NoArguments, UsageError, parse_command
from bot.commands.cancel import CancelArgs
from bot.commands.confirm import ConfirmArgs
from bot.commands.inspect import InspectArgs
from bot.commands.mirror import MirrorArgs
from bot.commands.status import StatusArgs
from bot.commands.tags import TagsArgs
from mirror.errors import InvalidPlatform, InvalidReference
from mirror.platform import Platform

AMD64 = Platform("linux", "amd64")


def parsed(text: str, **kw: Any) -> tuple[str, object] | None:
    """The command's name and its arguments, as the grammar read them (None: another bot's)."""
    options: dict[str, Any] = {"default_platform": AMD64, "max_images": 11}
    options.update(kw)
    invocation = parse_command(text, **options)
    return None if invocation is None else (invocation.command.name, invocation.args)


def parse(text: str, **kw: Any) -> Any:
    """The arguments of a command the grammar read (a None result fails here)."""
    found = parsed(text, **kw)
    assert found is not None
    return found[1]


def test_mirror_with_several_images_separated_by_spaces_and_newlines() -> None:
    cmd = parse("/mirror nginx:1.25\nquay.io/prometheus/node-exporter:v1.7.0   redis")
    assert isinstance(cmd, MirrorArgs)
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
    assert isinstance(cmd, MirrorArgs) and cmd.platform == platform


def test_more_images_than_the_limit_are_a_plan_and_confirm_lifts_it() -> None:
    """Over MIRROR_MAX_IMAGES the command is a plan to show (an admin may confirm it);
    ``--confirm`` asks for the copy itself, which the bot allows admins only."""
    images = " ".join(f"img{i}" for i in range(12))
    plan = parse(f"/mirror {images} --platform all")
    assert isinstance(plan, MirrorArgs) and plan.needs_plan and plan.limit == 11
    assert len(plan.images) == 12 and plan.platform is None
    confirmed = parse(f"/mirror --confirm {images}")
    assert isinstance(confirmed, MirrorArgs) and confirmed.confirmed
    assert not confirmed.needs_plan
    assert len(confirmed.images) == 12


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/confirm k3x9qa", ConfirmArgs("k3x9qa")),
        ("/confirm k3x9qa 2", ConfirmArgs("k3x9qa", 1)),
        ("/mirror confirm k3x9qa", ConfirmArgs("k3x9qa")),
    ],
)
def test_confirm_names_a_job_and_maybe_one_image(text: str, expected: ConfirmArgs) -> None:
    assert parsed(text) == ("confirm", expected)


def test_default_platform_all_is_kept() -> None:
    cmd = parse("/mirror nginx", default_platform=None)
    assert isinstance(cmd, MirrorArgs) and cmd.platform is None


def test_target_name_override_is_parsed() -> None:
    cmd = parse("/mirror registry.k8s.io/pause:3.9$pause:latest")
    assert isinstance(cmd, MirrorArgs)
    assert (cmd.images[0].name, cmd.images[0].tag) == ("pause", "latest")


def test_duplicates_in_one_command_are_merged() -> None:
    cmd = parse("/mirror nginx nginx")
    assert isinstance(cmd, MirrorArgs) and len(cmd.images) == 1


def test_telegram_bot_suffix_and_slack_dm_form() -> None:
    assert isinstance(parse("/mirror@MirrorBot nginx", bot_username="mirrorbot"), MirrorArgs)
    assert parsed("/mirror@OtherBot nginx", bot_username="MirrorBot") is None
    assert isinstance(parse("mirror nginx"), MirrorArgs)


@pytest.mark.parametrize(
    "text",
    [
        "docker pull nginx:1.25",
        "$ docker pull --platform linux/arm64 nginx:1.25",
        "podman pull quay.io/prometheus/node-exporter:v1.7.0",
        "sudo ctr -n k8s.io images pull docker.io/library/nginx:1.25\ndocker pull redis",
    ],
)
def test_a_bare_pull_line_said_to_the_bot_alone_is_a_request(text: str) -> None:
    """In a private chat or the console a bare message is a command, and a pasted pull line
    there is a request to mirror its images; in a group the command is still needed."""
    args = parse(text, direct=True)
    assert isinstance(args, MirrorArgs) and args.images
    assert [reading.typed for reading in args.readings][:1] == [text.splitlines()[0].strip()]
    with pytest.raises(UsageError, match="is not a command I know"):
        parse(text)  # a group
    with pytest.raises(UsageError, match="`docker` is not a command I know"):
        parse("docker run nginx", direct=True)  # not a pull: nothing to mirror


def test_other_commands() -> None:
    assert parsed("/status") == ("status", StatusArgs(None))
    assert parsed("/status k3x9qa") == ("status", StatusArgs("k3x9qa"))
    assert parsed("/history") == ("history", NoArguments())
    assert parsed("/cancel k3x9qa") == ("cancel", CancelArgs("k3x9qa"))
    assert parsed("/help") == ("help", NoArguments())
    assert parsed("/start") == ("help", NoArguments())
    assert parsed("   ") == ("help", NoArguments())


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
    assert isinstance(cmd, TagsArgs)
    assert cmd.image.name == repository
    assert cmd.pattern == pattern


def test_inspect_and_its_mistakes() -> None:
    cmd = parse("/inspect registry.k8s.io/pause:3.9")
    assert isinstance(cmd, InspectArgs)
    assert str(cmd.image) == "registry.k8s.io/pause:3.9"
    for text in ("/inspect", "/inspect a b", "/tags", "/tags a b c", "/tags nginx --all"):
        with pytest.raises(UsageError):
            parse(text)
    with pytest.raises(UsageError, match="not one image reference"):
        parse("/inspect nginx$mine")
