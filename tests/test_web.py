"""The job pages and the operator's view without a browser: their data, their HTTP rules.

The bot runs in process on a real SQLite store with its real web server on a loopback port;
requests go through aiohttp's client as a browser would send them (cookies, ``Origin``). What
a person sees in a real browser is tests/test_web_browser.py's.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

import lab as lab_module
from adapters.dingtalk_text import markdown
from adapters.feishu_card import single
from adapters.slack_text import to_mrkdwn
from adapters.telegram_html import blocks
from bot import render
from bot.app import MirrorBot
from bot.chat import Conversation, Incoming, Undeliverable
from bot.i18n import CHINESE, speaking
from bot.runtime import open_runtime
from bot.settings import Settings, describe
from bot.view import Link, MessageView, to_plain_text
from bot.web import Web, pages
from bot.web.access import SIGN_IN_SECONDS, Sessions, SignIns
from bot.web.app import COOKIE, CSP, Site, serve_web
from bot.web.changes import JobChanges
from bot.web.chart import HOUR, bars, hourly
from mirror.artifacts import Referrer, ReferrerKind
from mirror.models import Item, ItemStatus, Job, Watch
from mirror.platform import DEFAULT_PLATFORM
from mirror.progress import Snapshot, Stage
from mirror.reference import parse_reference
from mirror.text import Text
from tests.support.cli import Workers
from tests.test_app import PLATFORM, finish, job_id_of, say, settings_for

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def item(
    source: str, target: str, status: ItemStatus = ItemStatus.SUCCEEDED, **more: object
) -> Item:
    fields: dict[str, object] = {
        "status": status,
        "engine": "registry",
        "source_digest": DIGEST_A,
        "target_digest": DIGEST_A,
        "bytes": 25_000_000,
        "seconds": 12.3,
    }
    if status is not ItemStatus.SUCCEEDED:
        fields = {"status": status}
    fields.update(more)
    return Item(
        source,
        parse_reference(source),
        parse_reference(target),
        DEFAULT_PLATFORM,
        **fields,  # type: ignore[arg-type]
    )


def copied_job(job_id: str = "abcdef") -> Job:
    signature = Referrer(
        DIGEST_B, "application/vnd.dev.cosign.artifact.sig.v1+json", ReferrerKind.SIGNATURE
    )
    return Job(
        job_id,
        f"{PLATFORM}:alice",
        f"{PLATFORM}:room",
        [
            item("nginx:1.25", "127.0.0.1:5000/app/nginx:1.25", referrers=(signature,)),
            item(
                "redis:9",
                "127.0.0.1:5000/app/redis:9",
                ItemStatus.FAILED,
                error=Text(
                    "`{image}` was not found in `{registry}`: check the name and tag.",
                    image="redis:9",
                    registry="docker.io",
                ),
                suggestions=("docker.io/library/redis:8",),
            ),
        ],
    )


OPTIONS = render.RenderOptions(web_url="https://mirror.example.com")


# -- the data -------------------------------------------------------------------------------


def test_a_finished_job_page_has_each_image_with_its_digests_and_commands() -> None:
    job = copied_job()
    page = pages.job_page(job, OPTIONS, "", now=job.created + 90)
    assert page["job"] == "abcdef"
    assert page["title"] == "Job abcdef: 1 of 2 images ready"
    assert page["finished"] is True and page["state"] == "failed"
    assert page["created_text"].endswith("(1m30s ago)")
    ok, bad = page["items"]
    assert ok["source"] == "nginx:1.25"
    assert ok["target"] == "127.0.0.1:5000/app/nginx:1.25"
    assert ok["state_text"] == "done" and ok["tone"] == "success"
    assert ok["source_digest"] == ok["target_digest"] == DIGEST_A
    assert ok["digest_identical"] is True
    assert ok["digest_text"] == "digest identical to the source"
    assert ok["size"] == "25.0 MB" and ok["time"] == "12s" and ok["engine"] == "registry"
    assert ok["platform"] == "linux/amd64"
    assert ok["referrers"] == [
        {
            "digest": DIGEST_B,
            "artifact_type": "application/vnd.dev.cosign.artifact.sig.v1+json",
            "kind": "signature",
        }
    ]
    assert ok["referrers_text"] == "with 1 signature"
    # The same commands as the chat's answer, first the docker line.
    assert ok["pull"] == render.commands(job.items[0], OPTIONS)
    assert ok["pull"][0].startswith("docker pull 127.0.0.1:5000/app/nginx:1.25 && docker tag")
    assert bad["state_text"] == "failed" and bad["tone"] == "failure"
    assert bad["error"] == "`redis:9` was not found in `docker.io`: check the name and tag."
    assert bad["suggestions"] == ["/mirror redis:8"]
    assert bad["pull"] == [] and bad["digest_identical"] is None
    assert page["downloads"] == [
        {"name": "kustomization.yaml", "href": f"/jobs/abcdef/{job.token}/kustomization.yaml"}
    ]
    assert page["links"]["json"] == f"/jobs/abcdef/{job.token}.json"


def test_a_running_job_page_has_the_progress_the_chat_has() -> None:
    job = Job(
        "runnin",
        "test:alice",
        "test:room",
        [item("nginx:1.25", "r.example/app/nginx:1.25", ItemStatus.RUNNING)],
    )
    job.items[0].progress = Snapshot(Stage.COPYING, 6_000_000, 24_000_000, 1, 3, 2_000_000.0, 9.0)
    page = pages.job_page(job, OPTIONS, "/mirror")
    (running,) = page["items"]
    assert page["finished"] is False and page["state"] == "running"
    assert running["stage"] == "copying" and running["state_text"] == "copying"
    assert running["progress"]["done"] == 6_000_000 and running["progress"]["total"] == 24_000_000
    assert running["progress"]["percent"] == 25.0
    assert "6.0 MB / 24.0 MB" in running["progress"]["text"]
    assert running["pull"] == [] and running["source_digest"] is None
    assert page["links"]["events"] == f"/mirror/jobs/runnin/{job.token}/events"


def test_the_page_speaks_the_requesters_language() -> None:
    job = copied_job()
    with speaking(CHINESE):
        page = pages.job_page(job, OPTIONS, "")
    ok, bad = page["items"]
    assert ok["state_text"] == "完成"
    assert "摘要" in ok["digest_text"]
    assert bad["pull"] == [] and "`redis:9`" in bad["error"] and bad["error"] != job.items[1].error
    # References and commands are never translated.
    assert ok["pull"] == render.commands(job.items[0], OPTIONS)


def test_the_kustomization_names_what_was_copied() -> None:
    assert pages.kustomization(copied_job()) == (
        "# kustomization.yaml: point the manifests at the mirror\n"
        "images:\n"
        "- name: nginx\n"
        "  newName: 127.0.0.1:5000/app/nginx\n"
        '  newTag: "1.25"\n'
    )


def test_the_throughput_is_counted_by_clock_hour_and_drawn_against_the_busiest() -> None:
    now = 100 * HOUR + 1800  # half past the hour
    finished = [
        (now - 60, ItemStatus.SUCCEEDED, 3_000),
        (now - 120, ItemStatus.ALREADY_MIRRORED, None),
        (now - HOUR, ItemStatus.SUCCEEDED, 1_000),
        (now - 2 * HOUR, ItemStatus.FAILED, None),
        (now - 30 * HOUR, ItemStatus.SUCCEEDED, 9_999_999),  # more than a day ago
    ]
    hours = hourly(finished, now)
    assert len(hours) == 24 and hours[-1].start == 100 * HOUR
    assert (hours[-1].images, hours[-1].failed, hours[-1].bytes) == (2, 0, 3_000)
    assert (hours[-2].images, hours[-2].bytes) == (1, 1_000)
    assert (hours[-3].images, hours[-3].failed) == (0, 1)
    drawn = bars(hours)
    assert drawn[-1].height == 120.0 and drawn[-1].y == 0.0
    assert drawn[-2].height == 40.0
    assert all(bar.height == 0.0 for bar in drawn[:-2])
    assert all(bar.x + bar.width <= 480 for bar in drawn)


def test_the_registries_are_summed_busiest_first() -> None:
    found = pages._registries(
        [
            ("docker.io/library/nginx:1.25", 2, 100),
            ("quay.io/a/b:1", 5, 10),
            ("docker.io/library/redis:7", 4, 50),
        ]
    )
    assert [(r["registry"], r["copies"], r["bytes"]) for r in found] == [
        ("docker.io", 6, 150),
        ("quay.io", 5, 10),
    ]


# -- links in chat -------------------------------------------------------------------------


def test_every_job_message_links_to_its_page_when_the_pages_are_on() -> None:
    job = copied_job()
    url = f"https://mirror.example.com/jobs/abcdef/{job.token}"
    for view in (render.answer(job, OPTIONS), render.progress(job, OPTIONS)):
        assert view.link == Link(url, "The job's page")
    assert render.answer(job, render.RenderOptions()).link is None
    assert render.progress(Job("x", "u", "c", [], token=None), OPTIONS).link is None


def test_each_platform_shows_the_link() -> None:
    view = MessageView(
        "Job abcdef done", link=Link("https://m.example/jobs/a/t0k&n", "The job's page")
    )
    assert to_plain_text(view).endswith("The job's page: https://m.example/jobs/a/t0k&n")
    assert to_mrkdwn(view).endswith("<https://m.example/jobs/a/t0k&amp;n|The job's page>")
    assert blocks(view)[-1] == '<a href="https://m.example/jobs/a/t0k&amp;n">The job\'s page</a>'
    assert markdown(view).endswith("[The job's page](https://m.example/jobs/a/t0k&n)")
    elements = single(view)["elements"]
    assert elements[-1] == {
        "tag": "markdown",
        "content": "[The job's page](https://m.example/jobs/a/t0k&n)",
    }


# -- sign-in links and sessions --------------------------------------------------------------


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_sign_in_link_works_once_and_for_ten_minutes() -> None:
    clock = Clock()
    links = SignIns(clock)
    first = links.issue("slack:U1")
    assert links.admin(first) == "slack:U1"  # looking spends nothing
    assert links.redeem(first) == "slack:U1"
    assert links.redeem(first) is None and links.admin(first) is None

    late = links.issue("slack:U1")
    clock.now += SIGN_IN_SECONDS - 1
    assert links.admin(late) == "slack:U1"
    clock.now += 1
    assert links.redeem(late) is None

    revoked = links.issue("slack:U1")
    links.revoke(revoked)
    assert links.redeem(revoked) is None
    assert links.redeem("nonsense") is None


def test_a_session_ends_when_it_expires_or_is_closed() -> None:
    clock = Clock()
    sessions = Sessions(clock)
    session = sessions.open("slack:U1")
    assert sessions.get(session.id) == session and session.csrf != session.id
    sessions.tell(session.id, "Approved.")
    assert sessions.notice(session.id) == "Approved." and sessions.notice(session.id) is None
    clock.now = session.expires
    assert sessions.get(session.id) is None
    other = sessions.open("slack:U1")
    sessions.close(other.id)
    assert sessions.get(other.id) is None and sessions.get(None) is None


# -- settings --------------------------------------------------------------------------------


def test_the_web_settings_are_checked_at_start() -> None:
    settings = Settings(_env_file=None, mirror_web_url="https://mirror.example.com/tools/")  # type: ignore[call-arg]
    assert settings.mirror_web_url == "https://mirror.example.com/tools"
    web = Web.of(settings)
    assert web is not None and web.base == "/tools" and web.origin == "https://mirror.example.com"
    assert web.secure and web.port == 8080
    assert Web.of(Settings(_env_file=None)) is None  # type: ignore[call-arg]
    for bad in ("mirror.example.com", "ftp://x", "https://x/?a=1", "https://u:p@x", "https://x:no"):
        with pytest.raises(ValueError) as refused:
            Settings(_env_file=None, mirror_web_url=bad)  # type: ignore[call-arg]
        assert describe(refused.value).startswith("MIRROR_WEB_URL: "), bad
    with pytest.raises(ValueError) as clash:
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            mirror_web_url="http://x",
            mirror_web_port=9090,
            mirror_metrics_port=9090,
        )
    assert describe(clash.value) == (
        "MIRROR_WEB_PORT: 9090 is MIRROR_METRICS_PORT's; the pages need a port of their own."
    )


# -- the server ------------------------------------------------------------------------------


@dataclass
class Running:
    bot: MirrorBot
    site: Site
    web: Web
    clock: Clock
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        """Where paths start: the site's origin (a page's path includes the base)."""
        return self.web.origin

    async def get(self, path: str, **headers: str) -> tuple[int, str, dict[str, str]]:
        async with self.http.get(self.url + path, headers=headers, allow_redirects=False) as got:
            return got.status, await got.text(), dict(got.headers)

    async def post(
        self, path: str, data: dict[str, str], origin: str | None = None
    ) -> tuple[int, str, dict[str, str]]:
        headers = {"Origin": origin if origin is not None else self.web.origin}
        if origin == "":
            headers = {}
        async with self.http.post(
            self.url + path, data=data, headers=headers, allow_redirects=False
        ) as got:
            return got.status, await got.text(), dict(got.headers)

    async def sign_in(self, admin: str = f"{PLATFORM}:carol") -> str:
        token = self.web.sign_ins.issue(admin)
        status, _body, headers = await self.post(f"{self.web.base}/admin/signin/{token}", {})
        assert status == 303 and headers["Location"] == f"{self.web.base}/admin"
        return self.http.cookie_jar.filter_cookies(URL(self.web.url))[COOKIE].value


@asynccontextmanager
async def running_site(
    tmp_path: Path,
    base: str = "",
    *,
    target: str = "127.0.0.1:5000",
    sources: tuple[str, ...] = (),
    **more: Any,
) -> AsyncIterator[Running]:
    """The bot in process (``test:carol`` is an admin) with its pages on a loopback port;
    ``target`` and ``sources``: registries it copies between (the lab's); ``more`` settings."""
    port = lab_module.free_port()
    url = f"http://127.0.0.1:{port}{base}"
    db = more.pop("mirror_db", None)
    settings = settings_for(
        tmp_path, target, *sources, mirror_web_url=url, mirror_web_port=port, **more
    )
    if db is not None:  # a postgresql:// URL
        settings = settings.model_copy(update={"mirror_db": db})
    clock = Clock()
    web = Web(url, "127.0.0.1", port, clock=clock)
    async with (
        open_runtime(settings) as runtime,
        MirrorBot(
            settings,
            runtime.service,
            runtime.policy,
            runtime.planner,
            runtime.render_options,
            web=web,
        ) as bot,
        serve_web(web, bot) as site,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
    ):
        yield Running(bot, site, web, clock, http)


async def test_a_job_page_needs_its_token_and_a_wrong_one_says_nothing(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        job = copied_job()
        await site.bot.service.store.add_job(job)
        status, html, headers = await site.get(f"/jobs/abcdef/{job.token}")
        assert status == 200
        assert "nginx:1.25" in html and DIGEST_A in html and "docker pull" in html
        assert headers["Content-Security-Policy"] == CSP
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
        assert headers["X-Content-Type-Options"] == "nosniff"

        wrong = await site.get(f"/jobs/abcdef/{'x' * len(job.token or '')}")
        unknown = await site.get(f"/jobs/zzzzzz/{job.token}")
        other = await site.get("/jobs/abcdef/")
        for status, html, headers in (wrong, unknown, other):
            assert status == 404
            assert "abcdef" not in html and "nginx" not in html
            assert headers["Referrer-Policy"] == "no-referrer"
        assert wrong[1] == unknown[1] == other[1]
        for path in (".json", "/events", "/kustomization.yaml"):
            assert (await site.get(f"/jobs/abcdef/{'x' * 32}{path}"))[0] == 404

        # A job stored before jobs had tokens has no page at all.
        old = copied_job("oldjob")
        old.token = None
        await site.bot.service.store.add_job(old)
        assert (await site.get("/jobs/oldjob/None"))[0] == 404


async def test_a_job_page_is_in_its_requesters_language(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        job = copied_job()
        await site.bot.service.store.add_job(job)
        await site.bot.service.store.set_language(job.requester, CHINESE)
        status, html, _h = await site.get(f"/jobs/abcdef/{job.token}")
        assert status == 200 and '<html lang="zh-Hans">' in html
        assert "源摘要" in html and "完成" in html
        assert "docker pull 127.0.0.1:5000/app/nginx:1.25" in html  # commands stay as they are
        # A page that belongs to nobody follows the browser's language.
        missing = await site.get("/jobs/zzzzzz/x", **{"Accept-Language": "zh-CN,en;q=0.5"})
        assert missing[0] == 404 and "未找到" in missing[1]


async def test_the_json_twin_is_the_pages_data(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        job = copied_job()
        job.rewrite = ("# kustomization.yaml: …", "images:")
        await site.bot.service.store.add_job(job)
        status, body, headers = await site.get(f"/jobs/abcdef/{job.token}.json")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        stored = await site.bot.service.store.get_job("abcdef")
        assert stored is not None and stored.token == job.token
        assert json.loads(body) == pages.job_page(stored, site.bot.services.render_options, "")
        status, text, headers = await site.get(f"/jobs/abcdef/{job.token}/kustomization.yaml")
        assert status == 200 and text == pages.kustomization(job)
        assert headers["Content-Disposition"] == 'attachment; filename="kustomization.yaml"'
        status, text, _h = await site.get(f"/jobs/abcdef/{job.token}/rewrite.txt")
        assert status == 200 and text == "# kustomization.yaml: …\nimages:\n"


async def test_everything_a_person_typed_is_escaped(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        job = copied_job()
        job.items[1].error = "<script>alert(1)</script> & `x`"
        job.requester = f"{PLATFORM}:<b>mallory</b>"
        await site.bot.service.store.add_job(job)
        _status, html, _headers = await site.get(f"/jobs/abcdef/{job.token}")
        assert "<script>alert(1)" not in html
        # Backtick spans are code, as in the chats; their insides escaped all the same.
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; <code>x</code>" in html
        await site.sign_in()
        _status, admin, _headers = await site.get("/admin?person=%3Cb%3E")
        assert "<b>mallory</b>" not in admin and "&lt;b&gt;mallory&lt;/b&gt;" in admin
        assert 'value="&lt;b&gt;"' in admin  # the filter as typed, echoed escaped


async def test_a_sign_in_link_opens_the_view_once(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        status, body, _h = await site.get("/admin")
        assert status == 403 and "send /web to the bot" in body
        assert (await site.get("/admin.json"))[0] == 403

        token = site.web.sign_ins.issue(f"{PLATFORM}:carol")
        status, page, _h = await site.get(f"/admin/signin/{token}")
        assert status == 200 and "Sign in as test:carol?" in page  # a GET spends nothing
        assert (await site.get(f"/admin/signin/{token}"))[0] == 200
        # Another site's form, or none that says where it is from, is refused.
        assert (await site.post(f"/admin/signin/{token}", {}, origin="https://evil.example"))[
            0
        ] == 403
        assert (await site.post(f"/admin/signin/{token}", {}, origin="null"))[0] == 403
        assert (await site.post(f"/admin/signin/{token}", {}, origin=""))[0] == 403

        status, _body, headers = await site.post(f"/admin/signin/{token}", {})
        assert status == 303 and headers["Location"] == "/admin"
        cookie = headers["Set-Cookie"]
        assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # http here; https sets it
        status, html, _h = await site.get("/admin")
        assert status == 200 and "The operator&#39;s view" in html and "test:carol" in html

        again = await site.post(f"/admin/signin/{token}", {})
        assert again[0] == 403 and "it was used, or its 10 minutes are over" in again[1]


async def test_a_sign_in_link_expires_after_ten_minutes(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        token = site.web.sign_ins.issue(f"{PLATFORM}:carol")
        site.clock.now += SIGN_IN_SECONDS
        assert (await site.get(f"/admin/signin/{token}"))[0] == 403
        assert (await site.post(f"/admin/signin/{token}", {}))[0] == 403
        assert (await site.get("/admin"))[0] == 403


async def test_posts_need_the_session_token_and_this_sites_origin(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        await site.sign_in()
        _status, html, _h = await site.get("/admin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', html)
        assert csrf is not None
        assert (await site.post("/admin/signout", {}))[0] == 403
        assert (await site.post("/admin/signout", {"csrf": "guess"}))[0] == 403
        assert (await site.post("/admin/signout", {"csrf": csrf.group(1)}, origin="http://x"))[
            0
        ] == 403
        assert (await site.get("/admin"))[0] == 200  # still signed in
        status, _body, _h = await site.post("/admin/signout", {"csrf": csrf.group(1)})
        assert status == 303
        site.http.cookie_jar.clear()
        assert (await site.get("/admin"))[0] == 403


async def test_the_operators_view_shows_the_service(tmp_path: Path) -> None:
    async with running_site(tmp_path, base="/mirror") as site:
        store = site.bot.service.store
        await store.add_job(copied_job())
        waiting = Job(
            "waitin",
            f"{PLATFORM}:bob",
            f"{PLATFORM}:room",
            [
                item(
                    "quay.io/a/b:1",
                    "127.0.0.1:5000/app/quay.io.a.b:1",
                    ItemStatus.WAITING,
                    error="quay.io's pull limit is reached; it lifts at 14:05 UTC.",
                    not_before=2_000_000_000.0,
                )
            ],
        )
        await store.add_job(waiting)
        await store.add_watch(
            Watch(
                "w1",
                f"{PLATFORM}:bob",
                f"{PLATFORM}:room",
                parse_reference("nginx").repo_only,
                "1.27.*",
                DEFAULT_PLATFORM,
            )
        )
        await site.sign_in()
        status, body, _h = await site.get("/mirror/admin.json")
        assert status == 200
        page = json.loads(body)
        assert page["operator"] == "test:carol"
        assert [j["job"] for j in page["jobs"]] == ["waitin", "abcdef"]
        assert page["jobs"][1]["href"].startswith("/mirror/jobs/abcdef/")
        assert [(h["job"], h["status"], h["until"]) for h in page["held"]] == [
            ("waitin", "waiting", "2033-05-18T03:33:20Z")
        ]
        assert [w["image"] for w in page["watches"]] == ["nginx:1.27.*"]
        assert page["throughput"]["images"] == 1 and page["throughput"]["failed"] == 1
        assert page["registries"] == [
            {"registry": "docker.io", "copies": 1, "bytes": 25_000_000, "size": "25.0 MB"}
        ]
        assert page["workers"]["queue"] is False

        filtered = json.loads((await site.get("/mirror/admin.json?person=BOB"))[1])
        assert [j["job"] for j in filtered["jobs"]] == ["waitin"]
        filtered = json.loads((await site.get("/mirror/admin.json?source=redis"))[1])
        assert [j["job"] for j in filtered["jobs"]] == ["abcdef"]
        filtered = json.loads((await site.get("/mirror/admin.json?state=failed"))[1])
        assert [j["job"] for j in filtered["jobs"]] == ["abcdef"]
        filtered = json.loads((await site.get("/mirror/admin.json?source=%25"))[1])
        assert filtered["jobs"] == []  # a % is a percent sign, not "anything"

        status, html, _h = await site.get("/mirror/admin")
        assert status == 200 and "<svg" in html and "waitin" in html
        assert 'href="/mirror/static/web.css"' in html
        assert (await site.get("/mirror/static/web.css"))[0] == 200
        assert (await site.get("/admin"))[0] == 404  # outside its path


async def test_an_admin_answers_a_held_request_from_the_view(tmp_path: Path) -> None:
    async with running_site(tmp_path, mirror_approval="outside-allowlist") as site:
        asked = await say(site.bot, "alice", "room", "/mirror quay.io/team/app:1")
        job_id = job_id_of(asked)
        await site.sign_in()
        page = json.loads((await site.get("/admin.json"))[1])
        assert [(h["job"], h["number"], h["status"], h["decidable"]) for h in page["held"]] == [
            (job_id, 1, "awaiting_approval", True)
        ]
        _status, html, _h = await site.get("/admin")
        assert 'name="decision" value="approve"' in html
        csrf = re.search(r'name="csrf" value="([^"]+)"', html)
        assert csrf is not None
        answer = {"job": job_id, "item": "1", "decision": "deny", "reason": "not <b>this</b>"}
        assert (await site.post("/admin/decide", answer))[0] == 403  # no form token
        assert (await site.post("/admin/decide", {**answer, "csrf": "x"}))[0] == 403
        refused = await site.post("/admin/decide", {**answer, "csrf": csrf.group(1)}, "null")
        assert refused[0] == 403
        stored = await site.bot.service.store.get_job(job_id)
        assert stored is not None and stored.items[0].status is ItemStatus.AWAITING_APPROVAL

        status, _body, headers = await site.post("/admin/decide", {**answer, "csrf": csrf.group(1)})
        assert status == 303 and headers["Location"] == "/admin"
        _status, html, _h = await site.get("/admin")
        assert f"Denied 1 image of job {job_id}." in html  # said once, after the redirect
        assert f"Denied 1 image of job {job_id}." not in (await site.get("/admin"))[1]
        await finish(site.bot)
        stored = await site.bot.service.store.get_job(job_id)
        assert stored is not None and stored.items[0].status is ItemStatus.DENIED
        assert stored.items[0].approved_by == "test:carol"
        assert json.loads((await site.get("/admin.json"))[1])["held"] == []


async def test_the_operators_view_counts_the_queues_workers(
    lab: lab_module.Lab, pg_dsn: str, workers: Workers, tmp_path: Path
) -> None:
    workers()
    async with running_site(
        tmp_path, target=lab.target, sources=(lab.source,), mirror_db=pg_dsn
    ) as site:
        await site.sign_in()

        async def beating() -> dict[str, Any] | None:
            found: dict[str, Any] = json.loads((await site.get("/admin.json"))[1])["workers"]
            return found if found["workers"] == 1 else None

        async with asyncio.timeout(60):
            while (found := await beating()) is None:
                await asyncio.sleep(0.2)
        assert found["queue"] is True and found["waiting"] == 0 and found["error"] is None
        html = (await site.get("/admin"))[1]
        assert "1 worker beats; 0 copies queued, 0 running." in html


async def events(stream: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
    """Server-sent events as ``(event, data)``, pings left out."""
    name, data = "message", []
    async for raw in stream.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data:"):
            data.append(line[len("data: ") :])


async def test_a_running_jobs_page_hears_each_change_then_its_end(tmp_path: Path) -> None:
    async with running_site(tmp_path, mirror_approval="outside-allowlist") as site:
        asked = await say(site.bot, "alice", "room", "/mirror quay.io/team/app:1")
        job_id = job_id_of(asked)
        link = asked.messages[0].views[0].link
        assert link is not None
        heard: list[tuple[str, str]] = []
        async with site.http.get(link.url + "/events") as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            assert stream.headers["Referrer-Policy"] == "no-referrer"
            async with asyncio.timeout(60):
                async for event in events(stream):
                    heard.append(event)
                    if len(heard) == 1:  # the page's live part as it is now
                        assert site.web.changes.watched() == 1
                        await site.bot.approvals.decide(job_id, approve=False, by="test:carol")
                    if event[0] == "end":
                        break
        first, *_changes, last = heard
        assert first[0] == "live" and "awaiting approval" in first[1]
        assert "<h1" in first[1] and "quay.io/team/app:1" in first[1]
        assert last == ("end", "")
        await finish(site.bot)
        assert site.web.changes.watched() == 0


def test_each_open_page_keeps_only_the_newest_state() -> None:
    changes = JobChanges()
    first, second = copied_job(), copied_job()
    with changes.watch("abcdef") as watching, changes.watch("abcdef") as other:
        assert changes.watched() == 2
        changes.changed(first)
        changes.changed(second)
        changes.changed(copied_job("zzzzzz"))  # another job's page is not told
        assert watching.job is second and not watching.ended
        changes.ended(second)
        assert watching.ended and other.ended
        changes.close()
        assert watching.closed
    assert changes.watched() == 0


# -- /web -----------------------------------------------------------------------------------


@dataclass
class Said:
    views: list[MessageView] = field(default_factory=list)

    @property
    def edit_interval(self) -> float:
        return 0.0

    async def post(self, view: MessageView) -> object:
        self.views.append(view)
        return self


@dataclass
class Adapter:
    """A chat that can write to a person first, or one that refuses (never opened a chat)."""

    name: str = PLATFORM
    private: Said = field(default_factory=Said)
    refuses: bool = False

    async def open_chat(self, chat_id: str) -> Conversation:
        raise Undeliverable("no")

    async def open_private(self, user_id: str) -> Conversation:
        if self.refuses:
            raise Undeliverable("the person never wrote to the bot", code="forbidden")
        return self.private  # type: ignore[return-value]


async def web_command(site: Running, user: str, *, group: bool) -> Said:
    said = Said()
    await site.bot.handle(Incoming(PLATFORM, user, user, "room", "/web", is_group=group), said)  # type: ignore[arg-type]
    return said


async def test_web_gives_an_admin_a_sign_in_link_privately(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        here = await web_command(site, "carol", group=False)
        (view,) = here.views
        assert view.title == "Your sign-in link to the operator's view"
        assert view.link is not None and view.link.url.startswith(f"{site.web.url}/admin/signin/")
        assert site.web.sign_ins.admin(view.link.url.rsplit("/", 1)[1]) == "test:carol"

        site.web.adapters = {PLATFORM: Adapter()}  # type: ignore[dict-item]
        in_group = await web_command(site, "carol", group=True)
        assert [v.title for v in in_group.views] == [
            "I sent you a sign-in link privately; it works once, for 10 minutes."
        ]
        assert all(v.link is None for v in in_group.views)  # the group never sees it
        (private,) = site.web.adapters[PLATFORM].private.views  # type: ignore[attr-defined]
        assert private.link is not None and "/admin/signin/" in private.link.url

        site.web.adapters = {PLATFORM: Adapter(refuses=True)}  # type: ignore[dict-item]
        refused = await web_command(site, "carol", group=True)
        assert [v.title for v in refused.views] == [
            "I cannot write to you first here: open a private chat with me and send /web there."
        ]
        site.web.adapters = {}
        assert [v.title for v in (await web_command(site, "carol", group=True)).views] == [
            "I cannot write to you first here: open a private chat with me and send /web there."
        ]

        stranger = await web_command(site, "bob", group=False)
        assert [v.title for v in stranger.views] == ["Only an admin may use `/web`."]


# -- the link reaches the chat without a preview ---------------------------------------------

SIGN_IN = MessageView(
    "Your sign-in link", link=Link("https://m.example/admin/signin/t0k", "Sign in")
)


def test_slack_carries_the_link_with_previews_off() -> None:
    from adapters.slack import SlackAdapter
    from tests.support.fake_slack import FakeSlack

    slack = FakeSlack("xoxb-token").start()
    try:
        adapter = SlackAdapter(bot_token="xoxb-token", signing_secret="s", api_url=slack.api_url)

        async def post() -> None:
            await (await adapter.open_private("U0CAROL")).post(SIGN_IN)

        asyncio.run(post())
        [sent] = slack.posts("D0CAROL")
        assert sent.params["text"].endswith("<https://m.example/admin/signin/t0k|Sign in>")
        assert str(sent.params["unfurl_links"]).lower() == "false"
        assert str(sent.params["unfurl_media"]).lower() == "false"
    finally:
        slack.stop()


async def test_telegram_carries_the_link_with_previews_off() -> None:
    from adapters.telegram import TelegramAdapter
    from tests.support.fake_telegram import Chat, FakeTelegram

    fake = await FakeTelegram("42:secret").start()
    adapter = TelegramAdapter("42:secret", api_url=fake.url)
    heard: list[Incoming] = []

    async def handler(incoming: Incoming, conversation: object) -> None:
        heard.append(incoming)

    serving = asyncio.create_task(adapter.serve(handler))
    try:
        fake.send(Chat(77), 77, "/help")  # a person who started the bot
        await fake.wait_for(lambda: heard or None)
        await (await adapter.open_private("77")).post(SIGN_IN)
        [sent] = fake.ok("sendMessage")
        assert sent.text.endswith('<a href="https://m.example/admin/signin/t0k">Sign in</a>')
        assert sent.value("link_preview_options") == {"is_disabled": True}
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await fake.close()
