"""``mirror-bot``: run the bot, or mirror images from a script (DESIGN.md §1, Command line).

Exit codes, alike for every command: 0 all done; 1 something failed (an image, a service
``check`` reaches, the database busy); 2 the configuration or the input is wrong (a setting,
``MIRROR_DB`` that cannot be this bot's database, no chat adapter and no terminal for the
console, a bad image name). Every setting is validated once, at start; a failure there is one
sentence naming the variable, on stderr (``check`` prints it as its ``configuration`` line).
Chat SDKs are imported only by ``run``, and only for the adapters that are configured, so
scripts start fast: ``mirror --dry-run`` opens no database, runs no event loop and loads
neither the store's driver nor the renderer (tests/test_startup_imports.py keeps it so).
"""

from __future__ import annotations

import os

# Before pydantic is imported: looking up pydantic plugins' entry points costs every start-up
# ~15 ms, and this bot has none (an operator may still set the variable to enable theirs).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import json
import logging
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import click

from bot.chat import ConfigurationError
from bot.cli_request import Requested, read_requested, with_chart, without_chart_reading
from bot.settings import Settings, load_settings
from mirror.artifacts import ArtifactKind, along_text
from mirror.errors import MirrorError
from mirror.models import Item, platform_text
from mirror.platform import parse_platform
from mirror.text import Text

if TYPE_CHECKING:
    from bot.planner import Planner
    from bot.render import RenderOptions

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class EngineChoice(click.Choice[str]):
    """``--engine``: ``auto`` or an installed engine (:mod:`mirror.engines`), listed when
    first needed (a value to check, ``--help``) rather than on every start-up."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        from mirror.engines import modes

        return modes()

    @choices.setter
    def choices(self, _: tuple[str, ...]) -> None:
        """click sets them in ``__init__``; they are read from the engines installed."""


def _fail(sentence: str, code: int) -> NoReturn:
    """One sentence and an exit: no usage text, no traceback."""
    click.echo(sentence, err=True)
    sys.exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        _fail(str(exc), EXIT_USAGE)


def _exit_code(error: MirrorError) -> int:
    from mirror.store import StoreUnusable

    return EXIT_USAGE if isinstance(error, ConfigurationError | StoreUnusable) else EXIT_FAILED


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main``; a failure to start (a part that cannot open) is one sentence and an exit."""
    import asyncio  # not for a dry run, which runs no event loop

    try:
        return asyncio.run(main)
    except MirrorError as exc:
        _fail(str(exc), _exit_code(exc))


@click.group()
@click.version_option(package_name="hub-mirror-bot", prog_name="mirror-bot")
def main() -> None:
    """Mirror container images into a registry your team can reach."""


@main.command("help")
@click.option("--json", "as_json", is_flag=True, help="Print the chat commands as JSON.")
def help_(as_json: bool) -> None:
    """List the chat commands: name, usage and summary (MIRROR_LANGUAGE or the locale's)."""
    from bot.commands import discover
    from bot.i18n import LANGUAGES, _, speaking

    commands = discover()
    if as_json:
        click.echo(json.dumps([entry.describe(LANGUAGES) for entry in commands], indent=2))
        return
    with speaking(_operator_language()):
        rows = [
            (
                entry.name,
                entry.usage,
                _(entry.summary),
                _("admins only") if entry.admin_only else "",
            )
            for entry in commands
        ]
    name_width = max(len(row[0]) for row in rows)
    usage_width = max(len(row[1]) for row in rows)
    for name, usage, summary, who in rows:
        line = f"{name:<{name_width}}  {usage:<{usage_width}}  {summary}"
        click.echo(f"{line} ({who})" if who else line)


def _operator_language() -> str:
    """MIRROR_LANGUAGE when the operator pinned one, else the terminal's, else English."""
    from bot.i18n import ENGLISH, console_tag, from_tag

    chosen = _settings().mirror_language
    if chosen != "auto":
        return chosen
    return from_tag(console_tag()).language or ENGLISH


@main.command()
def run() -> None:
    """Run the bot: every configured chat adapter, or the console when none is."""
    from bot.serve import serve

    sys.exit(_run(serve(_settings())))


@main.command()
@click.option(
    "--heartbeat",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between this worker's heartbeats.",
)
@click.option(
    "--stalled-after",
    type=click.FloatRange(min=1.0),
    default=30.0,
    show_default=True,
    help="Requeue a copy whose worker has not beaten for this many seconds.",
)
def worker(heartbeat: float, stalled_after: float) -> None:
    """Run copies from the PostgreSQL queue (MIRROR_DB=postgresql://...); any number, anywhere."""
    from bot.worker import work

    sys.exit(_run(work(_settings(), heartbeat=heartbeat, stalled_after=stalled_after)))


@main.command()
def check() -> None:
    """Check the configuration and reach every configured service.

    Exit 2 if the configuration is wrong (a setting, an adapter's setting, MIRROR_TARGET
    missing, or a MIRROR_DB that cannot open), 1 if a service fails (a refused login or
    token, no answer), else 0.
    """
    import asyncio

    from bot.check import CheckResult, check_configuration, run_checks
    from mirror.store import StoreError

    try:
        settings = load_settings()
        _check_admin_chat(settings)
        check_configuration(settings)
        asyncio.run(_open_store(settings))
    except (ConfigurationError, StoreError) as exc:
        click.echo(f"configuration: FAILED: {exc}")
        sys.exit(_exit_code(exc))
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    click.echo("configuration: ok")
    results: list[CheckResult] = asyncio.run(run_checks(settings))
    for result in results:
        click.echo(result.line())
    if any(r.misconfigured for r in results):
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_OK if all(r.ok or not r.counts for r in results) else EXIT_FAILED)


@main.command()
@click.option(
    "--older-than",
    "older_than",
    metavar="DURATION",
    help="Prune copies nobody asked for in this long: 30d, 12h, 0s (all); default "
    "MIRROR_RETENTION.",
)
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
def prune(older_than: str | None, dry_run: bool) -> None:
    """Delete at the target the copies nobody asked for in a while (not pinned or watched).

    Exit 0 when every deletion went through, 1 when the target refused (a registry with
    deletion off answers 405) or a deletion failed, 2 for a bad duration.
    """
    from bot.logs import configure_logging
    from bot.settings import parse_duration

    settings = _settings()
    if older_than is None:
        if settings.mirror_retention is None:
            _fail(
                "Say how long a copy may go unasked before it is pruned: --older-than 30d "
                "(or set MIRROR_RETENTION).",
                EXIT_USAGE,
            )
        seconds = settings.mirror_retention
    else:
        try:
            parsed = parse_duration(older_than, zero=True)
        except ValueError as exc:
            _fail(f"--older-than: {exc}.", EXIT_USAGE)
        assert isinstance(parsed, float)  # a string always parses to seconds or raises
        seconds = parsed
    configure_logging(
        settings.secrets(),
        level=settings.mirror_log_level or logging.WARNING,
        fmt=settings.mirror_log_format,
    )
    sys.exit(_run(_prune(settings, seconds, dry_run)))


async def _prune(settings: Settings, older_than: float, dry_run: bool) -> int:
    from bot.runtime import open_runtime
    from mirror.retention import Outcome, prune

    async with open_runtime(settings) as runtime:
        report = await prune(
            runtime.store, runtime.service.engines.remote.client, older_than, dry_run=dry_run
        )
    for line in report.lines:
        copy = line.step.copy
        asked = _iso(copy.last_request)
        why = f" ({line.reason})" if line.reason else ""
        click.echo(f"{line.outcome.value}: {copy.shown}, last asked {asked}{why}")
    for sentence in report.refused:
        click.echo(sentence, err=True)
    planned = sum(1 for line in report.lines if line.outcome is Outcome.PLANNED)
    kept = sum(1 for line in report.lines if line.outcome is Outcome.KEPT)
    summary = f"{planned} would be deleted" if dry_run else f"{report.deleted} deleted"
    click.echo(f"{summary}, {kept} kept", err=True)
    return EXIT_OK if report.ok else EXIT_FAILED


@main.command()
@click.argument("images", nargs=-1)
@click.option(
    "--from",
    "from_file",
    type=click.File("r", encoding="utf-8"),
    help="Read references from FILE (`-`: stdin): names, pull lines, manifests, compose files.",
)
@click.option("--platform", "platform_text_", metavar="OS/ARCH|all", help="Platform to copy.")
@click.option(
    "--engine",
    type=EngineChoice(),
    help="Copy engine (default: MIRROR_ENGINE or auto).",
)
@click.option("--dry-run", is_flag=True, help="Parse, name and check policy; no network.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array, an object per image.")
def mirror(
    images: tuple[str, ...],
    from_file: TextIO | None,
    platform_text_: str | None,
    engine: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Copy IMAGE... (or those read --from a file) to MIRROR_TARGET."""
    from bot.logs import configure_logging

    pasted = "\n".join(images) + ("\n" + from_file.read() if from_file is not None else "")
    if not pasted.strip():
        raise click.UsageError("Name at least one image, or read them --from a file.")

    settings = _settings()
    configure_logging(
        settings.secrets(),
        level=settings.mirror_log_level or logging.WARNING,
        fmt=settings.mirror_log_format,
    )
    if dry_run:
        sys.exit(_dry_run(settings, pasted, platform_text_, as_json))
    sys.exit(_run(_mirror(settings, pasted, platform_text_, engine, as_json)))


def _check_admin_chat(settings: Settings) -> None:
    """MIRROR_ADMIN_CHAT names a configured platform (``run`` also checks it can write first)."""
    if not settings.mirror_admin_chat:
        return
    from bot.approvals import admin_chat_problem
    from bot.plugins import configured_adapters

    problem = admin_chat_problem(settings, [entry.name for entry in configured_adapters()])
    if problem is not None:
        raise ConfigurationError(problem)


async def _open_store(settings: Settings) -> None:
    """Open the database as ``run`` would (creating or upgrading it), then close it."""
    from mirror.store import open_store

    store = await open_store(settings.mirror_db)
    await store.close()


def _plan(
    settings: Settings, planner: Planner, requested: Requested, platform_choice: str | None
) -> list[Item]:
    """The items the pasted text names, or the MirrorError that says why not."""
    found = requested.found
    if not found and not requested.untrusted and not requested.notes:
        raise MirrorError(Text("Name at least one image, e.g. `/mirror nginx:1.25`."))
    readings = [reading for _, reading in found]
    if len(readings) > settings.mirror_max_images:
        raise MirrorError(
            f"You asked for {len(readings)} images; the limit is "
            f"{settings.mirror_max_images} per command."
        )
    platform = (
        parse_platform(platform_choice) if platform_choice is not None else planner.default_platform
    )
    specs = [spec for spec, _ in found]
    return planner.plan(specs, platform, explicit=platform_choice is not None, readings=readings)


def _dry_run(settings: Settings, pasted: str, platform_choice: str | None, as_json: bool) -> int:
    """Parse, name and check policy: no store, no engines, no event loop, so a script's check
    costs little more than Python's start-up."""
    from bot.planner import Planner
    from bot.policy import Policy

    try:
        requested = without_chart_reading(read_requested(pasted))
        items = _plan(settings, Planner(settings, Policy(settings)), requested, platform_choice)
    except MirrorError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    _say_read(requested)
    _report(items, as_json, None, planned=True, requested=requested)
    return EXIT_OK


async def _mirror(
    settings: Settings,
    pasted: str,
    platform_choice: str | None,
    engine: str | None,
    as_json: bool,
) -> int:
    import getpass

    from bot.runtime import open_runtime
    from mirror.models import Job, new_job_id

    async with open_runtime(settings, engine=engine, wait_for_limits=False) as runtime:
        try:
            requested = await with_chart(read_requested(pasted), runtime.lookups, runtime.policy)
            items = _plan(settings, runtime.planner, requested, platform_choice)
            await runtime.service.check_targets(items)
        except MirrorError as exc:
            click.echo(f"error: {exc}", err=True)
            return EXIT_USAGE
        _say_read(requested)
        if not items:
            _report(items, as_json, runtime.render_options, planned=False, requested=requested)
            return EXIT_OK
        job = Job(new_job_id(), f"cli:{getpass.getuser()}", "cli:local", items)
        shown: dict[int, str] = {}

        def progress(job: Job) -> None:
            for idx, item in enumerate(job.items):
                word = item.progress.stage.value if item.progress else item.status.value
                if shown.get(idx) != word:
                    shown[idx] = word
                    click.echo(f"{item.source.familiar}: {word}", err=True)

        task = await runtime.service.submit(job, progress)
        await task
        _report(job.items, as_json, runtime.render_options, planned=False, requested=requested)
        return EXIT_OK if all(i.status.ok for i in job.items) else EXIT_FAILED


def _as_dict(
    item: Item, asked: tuple[str, ...], options: RenderOptions | None, *, planned: bool
) -> dict[str, Any]:
    ok = item.status.ok
    return {
        "source": str(item.source),
        "asked": list(asked),
        "target": f"{item.target.name}:{item.target.tag}",
        "status": "planned" if planned else item.status.value,
        "engine": item.engine,
        "platform": platform_text(item.platform),
        "source_digest": item.source_digest,
        "target_digest": item.target_digest,
        "digest_identical": item.digest_identical if ok else None,
        "bytes": item.bytes,
        "seconds": round(item.seconds, 3) if item.seconds is not None else None,
        "pull": _commands(item, options)[0] if ok else None,
        "referrers": [r.as_dict() for r in item.referrers],
        "artifact": (item.artifact or ArtifactKind.IMAGE).value if ok else None,
        "error": item.error,
        "lifts_at": _iso(item.not_before),
        "corrected_from": item.corrected_from,
        "suggestions": list(item.suggestions),
    }


def _iso(seconds: float | None) -> str | None:
    """``2026-11-29T14:05:00Z``: when a pull limit that stopped the copy lifts."""
    if seconds is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _commands(item: Item, options: RenderOptions | None) -> list[str]:
    """The pull (or helm, oras) lines for a copied item; a planned one has none."""
    from bot.render import commands

    assert options is not None, "only a copied item has commands, and copying renders them"
    return commands(item, options)


def _report(
    items: list[Item],
    as_json: bool,
    options: RenderOptions | None,
    *,
    planned: bool,
    requested: Requested,
) -> None:
    if as_json:
        objects = [
            _as_dict(item, texts, options, planned=planned)
            for item, texts in zip(items, requested.asked, strict=True)
        ]
        click.echo(json.dumps(_with_failures(objects, requested), indent=2))
        return
    for advice in requested.advice:
        click.echo(advice)
    for item in items:
        if planned:
            click.echo(
                f"{item.source} -> {item.target.name}:{item.target.tag} "
                f"({platform_text(item.platform)})"
            )
        elif not item.status.ok:
            click.echo(f"{item.source.familiar}: {item.status.value}: {item.error}")
        else:
            along = along_text(item.referrers)
            click.echo(
                f"{item.source.familiar}: {item.status.value.replace('_', ' ')} -> "
                f"{item.target.name}:{item.target.tag} ({item.target_digest})"
                + (f" {along}" if along else "")
            )
            for line in _commands(item, options):
                click.echo(f"  {line}")
    if requested.source is not None and not planned:
        from bot.rewrite import chart_rewrite

        copied = [item for item in items if item.status.ok]
        for line in chart_rewrite(copied, requested.source, options or _no_options()):
            click.echo(line)


# -- pasted pull failures and charts (issue 27) -------------------------------------------------


def _no_options() -> RenderOptions:
    from bot.render import RenderOptions

    return RenderOptions()


def _say_read(requested: Requested) -> None:
    """What was read (a pull error's images and kinds, a chart's), on stderr."""
    for note in requested.notes:
        click.echo(note, err=True)


def _with_failures(objects: list[dict[str, Any]], requested: Requested) -> list[dict[str, Any]]:
    """Each object with, from a pasted pull error, what the pull met (``failure``); then one
    ``not_copied`` object per certificate failure."""
    for obj, failure in zip(objects, requested.failures, strict=True):
        obj["failure"] = failure.word if failure is not None else None
    advice = dict(zip((f.image for f in requested.untrusted), requested.advice, strict=False))
    for failed in requested.untrusted:
        objects.append(
            {
                **dict.fromkeys(objects[0] if objects else ()),
                "source": failed.image,
                "asked": list(failed.lines),
                "target": None,
                "status": "not_copied",
                "platform": None,
                "referrers": [],
                "error": advice.get(failed.image),
                "corrected_from": failed.lines[0],
                "suggestions": [],
                "failure": failed.failure.word,
            }
        )
    return objects


# -- approvals, sources and the audit (issue 26) ------------------------------------------------


def _operator() -> str:
    """Who answers from the command line: ``cli:<login>``, as ``mirror-bot mirror`` requests."""
    import getpass

    return f"cli:{getpass.getuser()}"


@main.command()
@click.argument("request", metavar="JOB")
@click.option("--always", is_flag=True, help="Also approve the source repositories for good.")
def approve(request: str, always: bool) -> None:
    """Approve a held request (a job, or a watch): the running bot copies it."""
    sys.exit(_run(_decide(_settings(), request, approve=True, always=always, reason=None)))


@main.command()
@click.argument("request", metavar="JOB")
@click.option("--reason", metavar="TEXT", help="Why, for the requester.")
def deny(request: str, reason: str | None) -> None:
    """Deny a held request (a job, or a watch): its requester is told."""
    sys.exit(_run(_decide(_settings(), request, approve=False, always=False, reason=reason)))


async def _decide(
    settings: Settings, request: str, *, approve: bool, always: bool, reason: str | None
) -> int:
    """Store the answer; the running bot applies it within seconds (or at its next start)."""
    from bot.approvals import NothingHeld, record
    from bot.policy import Policy
    from mirror.store import open_store

    store = await open_store(settings.mirror_db)
    try:
        recorded = await record(
            store,
            Policy(settings),
            request,
            approve=approve,
            by=_operator(),
            always=always,
            reason=reason,
        )
    except NothingHeld as exc:
        click.echo(str(exc), err=True)
        return EXIT_FAILED
    finally:
        await store.close()
    images = ", ".join(ref.familiar for ref in recorded.images)
    verb = "approved" if approve else "denied"
    click.echo(f"{recorded.kind} {request}: {verb} ({images}); the running bot applies it.")
    for repository in recorded.always:
        click.echo(f"approved for good: {repository}")
    for repository in recorded.refused:
        click.echo(f"not approvable (internal, not named by the operator): {repository}")
    return EXIT_OK


@main.group()
def sources() -> None:
    """The source repositories admins approved for good (besides MIRROR_ALLOWED_SOURCES)."""


@sources.command("list")
def sources_list() -> None:
    """List the configured registries and the approved repositories."""
    sys.exit(_run(_sources(_settings(), "list", None)))


@sources.command("add")
@click.argument("repository")
def sources_add(repository: str) -> None:
    """Approve REPOSITORY (e.g. ghcr.io/org/app) for good."""
    sys.exit(_run(_sources(_settings(), "add", repository)))


@sources.command("remove")
@click.argument("repository")
def sources_remove(repository: str) -> None:
    """Take REPOSITORY's approval back (MIRROR_ALLOWED_SOURCES is not changed here)."""
    sys.exit(_run(_sources(_settings(), "remove", repository)))


async def _sources(settings: Settings, action: str, text: str | None) -> int:
    from bot.approvals import add_source, repository
    from bot.policy import Policy
    from mirror.store import open_store

    store = await open_store(settings.mirror_db)
    try:
        if action == "add":
            assert text is not None
            added = await add_source(store, Policy(settings), text, _operator())
            click.echo(f"approved for good: {added.repository}")
        elif action == "remove":
            assert text is not None
            name = repository(text).name
            if not await store.remove_approved_source(name):
                click.echo(f"{name} was not an approved source.", err=True)
                return EXIT_FAILED
            click.echo(f"removed: {name}")
        else:
            from mirror.audit import iso

            click.echo(
                f"configured (MIRROR_ALLOWED_SOURCES): {', '.join(settings.mirror_allowed_sources)}"
            )
            for source in await store.approved_sources():
                click.echo(
                    f"{source.repository}\tapproved by {source.added_by}\t{iso(source.added)}"
                )
    finally:
        await store.close()
    return EXIT_OK


@main.command()
@click.option("--since", default="7d", show_default=True, help="How far back: 12h, 7d, 90d.")
@click.option(
    "--format",
    "form",
    type=click.Choice(["json", "csv", "table"]),
    default="table",
    show_default=True,
    help="How to print the rows.",
)
def audit(since: str, form: str) -> None:
    """One row per image request: who asked for what, where, and what became of it."""
    from bot.settings import parse_duration

    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    assert isinstance(seconds, float)
    sys.exit(_run(_audit(_settings(), seconds, form)))


async def _audit(settings: Settings, seconds: float, form: str) -> int:
    import time

    from mirror.audit import rows
    from mirror.store import open_store

    store = await open_store(settings.mirror_db)
    try:
        found = rows(await store.jobs_since(time.time() - seconds))
    finally:
        await store.close()
    click.echo(_audit_text(found, form), nl=False)
    return EXIT_OK


def _audit_text(found: list[Any], form: str) -> str:
    """The rows as JSON (an array of :meth:`AuditRow.as_json`), CSV with a header, or an
    aligned table."""
    import csv
    import io

    from mirror.audit import COLUMNS

    if form == "json":
        return json.dumps([row.as_json() for row in found], indent=2) + "\n"
    cells = [[_cell(row.as_json()[name]) for name in COLUMNS] for row in found]
    if form == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(cells)
        return out.getvalue()
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(COLUMNS)]
    lines = [
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(COLUMNS), *cells]
    ]
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    return "" if value is None else str(value)
