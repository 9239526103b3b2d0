"""The web pages in a real browser (Debian's headless Chromium through Playwright): what a
person sees while a copy runs and after, on a phone and without JavaScript, and that signing
in and cross-site requests behave as they must.

The bot runs in process with its web server (tests/test_web.py's ``running_site``); copies go
between the lab's real registries, slowed by a throttled relay so there is progress to watch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page

import lab as lab_module
from bot.web.access import SIGN_IN_SECONDS
from tests.support.browser import chromium
from tests.support.local_http import serve_locally
from tests.support.throttle import throttled
from tests.test_app import finish, job_id_of, say
from tests.test_web import Running, running_site, web_command

LONG = 120_000
"""Milliseconds Playwright waits for a page to reach a state (a copy on a throttled link)."""


async def shown(page: Page, item: int, field: str) -> list[str]:
    """What the page shows for ``field`` of image ``item`` (every element marked with it)."""
    return await page.locator(f"#item-{item} [data-field={field}]").all_inner_texts()


async def test_a_job_page_follows_the_copy_then_shows_what_landed(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    with throttled(lab.source, rate=300_000) as slow:  # six MB: some seconds of copying
        async with (
            running_site(tmp_path, target=lab.target, sources=(slow.address,)) as site,
            chromium() as browser,
        ):
            asked = await say(
                site.bot, "alice", "room", f"/mirror {slow.address}/library/multi:1.0"
            )
            job_id = job_id_of(asked)
            link = asked.messages[0].views[0].link
            assert link is not None and link.url.startswith(f"{site.web.url}/jobs/{job_id}/")

            context = await browser.new_context()
            page = await context.new_page()
            response = await page.goto(link.url)
            assert response is not None and response.status == 200
            assert response.headers["referrer-policy"] == "no-referrer"
            await page.evaluate("window.sameDocument = true")
            bar = "document.querySelector('#item-1 progress')"
            await page.wait_for_function(f"{bar} !== null", timeout=LONG)
            first = await page.evaluate(f"{bar}.value")
            await page.wait_for_function(
                f"(seen) => {bar} !== null && {bar}.value > seen", arg=first, timeout=LONG
            )
            # It moved in the same document: the event stream, not a reload.
            assert await page.evaluate("window.sameDocument === true")
            assert site.web.changes.watched() == 1

            # Once the answer is out, the page reloads into the finished state.
            await page.wait_for_selector("#item-1 [data-field=target_digest]", timeout=LONG)
            assert await page.evaluate("window.sameDocument === undefined")
            data = (await (await page.request.get(f"{link.url}.json")).json())["items"][0]
            assert data["status"] == "succeeded" and data["digest_identical"] is True
            for field in ("source_digest", "target_digest", "digest_text", "size", "engine"):
                assert await shown(page, 1, field) == [data[field]], field
            assert data["source_digest"].startswith("sha256:")
            assert await shown(page, 1, "platform") == [data["platform"]] == ["linux/amd64"]
            assert await shown(page, 1, "state_text") == [data["state_text"]] == ["done"]
            pull = await shown(page, 1, "pull")
            assert pull == data["pull"] and pull[0].startswith("docker pull ")
            assert await page.locator(".downloads a").all_inner_texts() == ["kustomization.yaml"]

            # The copy button puts the command on the clipboard.
            await context.grant_permissions(
                ["clipboard-read", "clipboard-write"], origin=site.web.origin
            )
            await page.locator("#item-1 button.copy").first.click()
            assert await page.evaluate("navigator.clipboard.readText()") == pull[0]
            await context.close()

            await finish(site.bot)
            assert f"Job {job_id} done" in asked.texts[-1]
            assert asked.messages[-1].views[-1].link == link  # the answer links to it too
            await finished_page_on_a_phone_without_javascript(browser, link.url, data)


async def finished_page_on_a_phone_without_javascript(
    browser: Browser, url: str, data: dict[str, Any]
) -> None:
    context = await browser.new_context(
        java_script_enabled=False, viewport={"width": 360, "height": 740}, is_mobile=True
    )
    page = await context.new_page()
    await page.goto(url)
    assert await shown(page, 1, "target_digest") == [data["target_digest"]]
    assert await shown(page, 1, "pull") == data["pull"]
    assert not await page.locator("button.copy").first.is_visible()  # nothing to copy with
    # Readable on a phone: nothing wider than the screen (long digests and commands wrap or
    # scroll inside their own box).
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, width
    await context.close()


async def test_a_wrong_token_shows_nothing_of_the_job(lab: lab_module.Lab, tmp_path: Path) -> None:
    async with (
        running_site(tmp_path, target=lab.target, sources=(lab.source,)) as site,
        chromium() as browser,
    ):
        asked = await say(site.bot, "alice", "room", f"/mirror {lab.source}/library/hello:1.0")
        job_id = job_id_of(asked)
        await finish(site.bot)
        link = asked.messages[0].views[0].link
        assert link is not None
        page = await browser.new_page()
        right = await page.goto(link.url)
        assert right is not None and right.status == 200
        assert job_id in await page.inner_text("body")
        token = link.url.rsplit("/", 1)[1]
        for wrong in (
            link.url[: -len(token)] + token[::-1],
            f"{site.web.url}/jobs/{job_id}/{token[:-1]}",
            f"{site.web.url}/jobs/zzzzzz/{token}",
        ):
            response = await page.goto(wrong)
            assert response is not None and response.status == 404
            text = await page.inner_text("body")
            assert job_id not in text and "hello" not in text and lab.source not in text


async def signed_in_page(site: Running, browser: Browser) -> tuple[Page, str]:
    said = await web_command(site, "carol", group=False)
    link = said.views[0].link
    assert link is not None
    page = await (await browser.new_context()).new_page()
    await page.goto(link.url)
    await page.click("#sign-in")
    await page.wait_for_url(f"{site.web.url}/admin")
    return page, link.url


@pytest.mark.slow
async def test_a_sign_in_link_works_once_in_the_browser(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site, chromium() as browser:
        page, link = await signed_in_page(site, browser)
        assert await page.inner_text("h1") == "The operator's view"
        data = await (await page.request.get(f"{site.web.url}/admin.json")).json()
        assert await page.inner_text("[data-field=operator]") == data["operator"] == "test:carol"
        assert await page.locator("svg.chart rect.bar").count() == len(data["throughput"]["hours"])

        spent = await page.goto(link)
        assert spent is not None and spent.status == 403
        assert "does not work" in await page.inner_text("body")
        again = await page.goto(f"{site.web.url}/admin")  # the session goes on
        assert again is not None and again.status == 200

        late = (await web_command(site, "carol", group=False)).views[0].link
        assert late is not None
        site.clock.now += SIGN_IN_SECONDS
        other = await (await browser.new_context()).new_page()
        expired = await other.goto(late.url)
        assert expired is not None and expired.status == 403
        assert (await other.goto(f"{site.web.url}/admin")).status == 403  # type: ignore[union-attr]


@pytest.mark.slow
async def test_a_form_on_another_site_is_refused(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site, chromium() as browser:
        page, _link = await signed_in_page(site, browser)
        target = f"{site.web.url}/admin/signout"

        async def evil(_request: web.Request) -> web.Response:
            form = (
                f'<form method="post" action="{target}"><input name="csrf" value="guess">'
                '<button id="go">win a prize</button></form>'
            )
            return web.Response(text=form, content_type="text/html")

        app = web.Application()
        app.router.add_get("/", evil)
        runner, port = await serve_locally(app)
        try:
            await page.goto(f"http://localhost:{port}/")  # another site than 127.0.0.1
            async with page.expect_navigation():
                await page.click("#go")
            assert "Refused" in await page.inner_text("body")
        finally:
            await runner.cleanup()
        signed_in = await page.goto(f"{site.web.url}/admin")
        assert signed_in is not None and signed_in.status == 200
