"""The pages' HTTP server: aiohttp routes, their headers, and Jinja2 templates (autoescaped).

Routes (under the path of ``MIRROR_WEB_URL``, so a proxy can pass it through):

- ``/jobs/{job}/{token}`` and its ``.json`` twin; ``/events`` (server-sent events while the
  job runs: the live part of the page, rendered here, after each change);
  ``/kustomization.yaml`` and ``/rewrite.txt`` to download. A job that does not exist and a
  token that is wrong get the same 404, word for word.
- ``/admin`` and ``/admin.json`` (a session), ``/admin/signin/{token}`` (a page with a button;
  the POST spends the link and opens the session), ``/admin/decide`` (Approve / Deny a held
  request), ``/admin/signout``. Every POST needs the session's cookie (``SameSite=Strict``),
  its form token, and an ``Origin`` that is this site's.
- ``/static/`` — the stylesheet and the one script, served from the package (no third-party
  asset: the pages work behind the firewall).

Every response carries a content security policy that allows only this site's own script and
stylesheet, ``Referrer-Policy: no-referrer`` (a job's URL is a capability: it must not leave
in a ``Referer``), and ``Cache-Control: no-store`` except for the static files.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response
from markupsafe import Markup, escape

from bot.chat import ConfigurationError
from bot.commands._decide import answered
from bot.i18n import ENGLISH, _, from_tag, localize, ngettext, speaking
from bot.runtime import Deployment
from bot.web import Web, pages
from bot.web.access import Session, same_secret
from bot.web.changes import Watching
from mirror.errors import MirrorError
from mirror.models import Job
from mirror.store import StoreError
from mirror.text import Text, text_of

if TYPE_CHECKING:
    from bot.app import MirrorBot
    from bot.approvals import Approvals

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
NO_REFERRER = "no-referrer"
"""A job's URL is a capability: it never leaves in a ``Referer``."""
SAME_ORIGIN = "same-origin"
"""The operator's pages post forms, and a browser sends ``Origin: null`` with a POST from a
``no-referrer`` page; same-origin still sends nothing to other sites, and their URLs hold no
capability (the sign-in link's is spent by that very POST)."""
HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": NO_REFERRER,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Robots-Tag": "noindex, nofollow",
}
COOKIE = "mirror_session"
STREAM_PAUSE = 0.5
"""At most two updates a second per open page: the newest state wins."""
ENDING_WAIT = 2.0
"""A job found finished when its stream opens: how long to wait for its answer to be out
(its rewrite stored) before the page is told to reload."""
MAX_ID = 64
MAX_TOKEN = 128

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Decider = Callable[[str, int | None, bool, str, str | None], Awaitable[str]]
"""``(job, image index or None for all, approve, admin, reason)`` -> what it did, a sentence."""


def templates() -> jinja2.Environment:
    """Autoescaped HTML; ``_`` and ``ngettext`` are the catalog's (Babel extracts them from
    the templates too), translated in whatever language the page is rendered in."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(_=_, ngettext=ngettext)
    env.filters["ticks"] = ticks
    return env


_TICKS = re.compile(r"`([^`\n]+)`")


def ticks(text: str | None) -> Markup:
    """A sentence of the bot's, escaped, with its ``backtick`` spans (names, commands) as
    ``<code>``, as the chats show them."""
    escaped = str(escape(text or ""))  # first: the spans' insides are escaped text too
    return Markup(_TICKS.sub(r"<code>\1</code>", escaped))


class NotFound(Exception):
    """Nothing here for this request: one page for every reason (unknown job, wrong token)."""


class Site:
    """Everything the handlers need: the bot's parts, the pages' state, the templates."""

    def __init__(self, web_state: Web, bot: MirrorBot) -> None:
        self.web = web_state
        self.bot = bot
        self.env = templates()
        self.base = web_state.base
        self._closing = asyncio.Event()
        self.decider: Decider | None = None
        """What Approve and Deny call: the same function as ``/approve`` and ``/deny``,
        returning the sentence the admin reads (in the current language). None: the view
        shows held requests without buttons."""

    # -- the application ------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.on_response_prepare.append(_headers)
        app.on_shutdown.append(self._shutdown)
        b = self.base
        job = "/jobs/{job}/{token:[A-Za-z0-9_-]+}"
        app.router.add_get(job, self.job_html)
        app.router.add_get(job + ".json", self.job_json)
        app.router.add_get(job + "/events", self.job_events)
        app.router.add_get(job + "/" + pages.KUSTOMIZATION, self.job_kustomization)
        app.router.add_get(job + "/" + pages.REWRITE, self.job_rewrite)
        app.router.add_get("/admin", self.admin_html)
        app.router.add_get("/admin.json", self.admin_json)
        app.router.add_get("/admin/signin/{token}", self.sign_in_page)
        app.router.add_post("/admin/signin/{token}", self.sign_in)
        app.router.add_post("/admin/decide", self.decide)
        app.router.add_post("/admin/signout", self.sign_out)
        app.router.add_static("/static/", HERE / "static", show_index=False)
        if not b:
            return app
        outer = web.Application(middlewares=[self._errors])
        outer.on_response_prepare.append(_headers)
        outer.add_subapp(b, app)
        return outer

    async def _shutdown(self, _app: web.Application) -> None:
        """Open event streams end now, or the server would wait for them to stop."""
        self._closing.set()
        self.web.changes.close()

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """One 404 page for anything not found, and one sentence when the store is down."""
        try:
            return await handler(request)
        except (NotFound, web.HTTPNotFound):
            return self._render(
                "not_found.html", {}, _accepted(request), status=404, as_json=_wants_json(request)
            )
        except web.HTTPMethodNotAllowed:
            return self._render(
                "not_found.html", {}, _accepted(request), status=405, as_json=_wants_json(request)
            )
        except StoreError as exc:
            log.error("a page could not read the store: %s", exc.__cause__ or exc)
            with speaking(_accepted(request)):
                sentence = str(text_of(exc))
            return self._render(
                "problem.html", {"sentence": sentence}, _accepted(request), status=503
            )

    def _render(
        self,
        template: str,
        page: dict[str, Any],
        language: str,
        *,
        status: int = 200,
        as_json: bool = False,
        referrer: str = NO_REFERRER,
        **extra: Any,
    ) -> web.Response:
        """``page`` as HTML (the template) or as itself (JSON), in ``language``."""
        if as_json:
            return _json(page, status)
        with speaking(language):
            html = self.env.get_template(template).render(
                page=page, base=self.base, lang=_html_lang(language), referrer=referrer, **extra
            )
        return web.Response(
            text=html,
            status=status,
            content_type="text/html",
            headers={"Referrer-Policy": referrer},
        )

    # -- a job's page ---------------------------------------------------------------------

    async def _job(self, request: web.Request) -> Job:
        job_id, token = request.match_info["job"], request.match_info["token"]
        if len(job_id) > MAX_ID or len(token) > MAX_TOKEN:
            raise NotFound
        service = self.bot.service
        job = service.active(job_id) or await service.store.get_job(job_id)
        if job is None or not same_secret(token, job.token):
            raise NotFound
        return job

    async def _job_page(self, job: Job) -> tuple[dict[str, Any], str]:
        language = await self.bot.languages.of_user(job.requester)
        with speaking(language):
            page = pages.job_page(job, self.bot.services.render_options, self.base)
        return page, language

    async def job_html(self, request: web.Request) -> web.Response:
        page, language = await self._job_page(await self._job(request))
        return self._render("job.html", page, language)

    async def job_json(self, request: web.Request) -> web.Response:
        page, _language = await self._job_page(await self._job(request))
        return _json(page)

    async def job_kustomization(self, request: web.Request) -> web.Response:
        text = pages.kustomization(await self._job(request))
        if not text:
            raise NotFound
        return _download(text, pages.KUSTOMIZATION, "application/yaml")

    async def job_rewrite(self, request: web.Request) -> web.Response:
        job = await self._job(request)
        if not job.rewrite:
            raise NotFound
        return _download("\n".join(job.rewrite) + "\n", pages.REWRITE, "text/plain")

    async def job_events(self, request: web.Request) -> web.StreamResponse:
        """The live part of the page after each change (HTML rendered here, escaped like the
        page), then ``end`` once the job's answer is out: the page reloads into its finished
        state, which needs no script."""
        job = await self._job(request)
        language = await self.bot.languages.of_user(job.requester)
        with self.web.changes.watch(job.id) as watching:
            async with sse_response(request) as stream:
                gone = asyncio.ensure_future(stream.wait())
                try:
                    await self._stream(stream, gone, watching, job, language)
                except ConnectionResetError:  # the page was closed
                    pass
                finally:
                    gone.cancel()
        return stream

    async def _stream(
        self,
        stream: EventSourceResponse,
        gone: asyncio.Future[None],
        watching: Watching,
        job: Job,
        language: str,
    ) -> None:
        if job.finished:  # its answer may be on its way: the reload should find it
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ENDING_WAIT):
                    while not (watching.ended or watching.closed):
                        await watching.wait()
            await stream.send("", event="end")
            return
        await self._send_live(stream, job, language)
        while True:
            change = asyncio.ensure_future(watching.wait())
            await asyncio.wait({change, gone}, return_when=asyncio.FIRST_COMPLETED)
            change.cancel()
            if gone.done() or watching.closed or self._closing.is_set():
                return
            if watching.ended:
                await stream.send("", event="end")
                return
            await self._send_live(stream, watching.job or job, language)
            await asyncio.sleep(STREAM_PAUSE)

    async def _send_live(self, stream: EventSourceResponse, job: Job, language: str) -> None:
        with speaking(language):
            page = pages.job_page(job, self.bot.services.render_options, self.base)
            html = self.env.get_template("_live.html").render(page=page, base=self.base)
        await stream.send(html, event="live")

    # -- the operator's view --------------------------------------------------------------

    def _session(self, request: web.Request) -> Session | None:
        return self.web.sessions.get(request.cookies.get(COOKIE))

    async def _admin_page(self, request: web.Request, session: Session) -> dict[str, Any]:
        filters = pages.Filters.of(request.query)
        service = self.bot.service
        store = service.store
        overview = pages.Overview(
            operator=session.admin,
            jobs=await store.find_jobs(person=filters.person, source=filters.source),
            unfinished=[service.active(j.id) or j for j in await store.unfinished_jobs()],
            watches=await store.watches(),
            finished=await store.finished_since(time.time() - 24 * 3600),
            copies=await store.copies_by_source(),
            limits=service.engines.pull_limits(),
            workers=await self._workers(),
        )
        with speaking(await self.bot.languages.of_user(session.admin)):
            return pages.admin_page(overview, filters, self.base)

    async def _workers(self) -> pages.Workers:
        settings = self.bot.settings
        service = self.bot.service
        local = pages.Workers(False, service.in_flight, settings.mirror_concurrency)
        if Deployment.of(settings) is Deployment.LOCAL:
            return local
        from mirror.queue.app import census  # procrastinate only with a queue

        try:
            found = await census(service.store)
        except StoreError as exc:
            return pages.Workers(
                True, service.in_flight, settings.mirror_concurrency, error=text_of(exc)
            )
        return pages.Workers(
            True,
            service.in_flight,
            settings.mirror_concurrency,
            found.workers,
            found.waiting,
            found.running,
        )

    async def admin_html(self, request: web.Request) -> web.Response:
        session = self._session(request)
        if session is None:
            return self._signed_out(request)
        page = await self._admin_page(request, session)
        language = await self.bot.languages.of_user(session.admin)
        notice = self.web.sessions.notice(session.id)
        return self._render(
            "admin.html",
            page,
            language,
            referrer=SAME_ORIGIN,
            csrf=session.csrf,
            notice=notice,
            decide=self.decider is not None,
        )

    async def admin_json(self, request: web.Request) -> web.Response:
        session = self._session(request)
        if session is None:
            return self._signed_out(request, as_json=True)
        return _json(await self._admin_page(request, session))

    def _signed_out(self, request: web.Request, *, as_json: bool = False) -> web.Response:
        return self._problem(
            request,
            Text("Sign in first: send /web to the bot, and open the link it sends you."),
            as_json=as_json,
        )

    def _problem(
        self, request: web.Request, sentence: Text, *, as_json: bool = False
    ) -> web.Response:
        """A refusal: one sentence, in the browser's language, with a 403."""
        language = _accepted(request)
        with speaking(language):
            said = localize(sentence)
        return self._render(
            "problem.html", {"sentence": said}, language, status=403, as_json=as_json
        )

    async def sign_in_page(self, request: web.Request) -> web.Response:
        """The link's page: a button that spends it (a link scanner's GET spends nothing)."""
        token = request.match_info["token"]
        admin = self.web.sign_ins.admin(token)
        if admin is None:
            return self._link_spent(request)
        return self._render(
            "signin.html",
            {"admin": admin, "action": f"{self.base}/admin/signin/{token}"},
            await self.bot.languages.of_user(admin),
            referrer=SAME_ORIGIN,
        )

    async def sign_in(self, request: web.Request) -> web.Response:
        if not self._same_origin(request):
            return self._refused(request)
        admin = self.web.sign_ins.redeem(request.match_info["token"])
        if admin is None:
            return self._link_spent(request)
        session = self.web.sessions.open(admin)
        log.info("%s signed in to the operator's view", admin)
        response = _see_other(f"{self.base}/admin")
        response.set_cookie(
            COOKIE,
            session.id,
            path=self.base or "/",
            httponly=True,
            samesite="Strict",
            secure=self.web.secure,
        )
        return response

    def _link_spent(self, request: web.Request) -> web.Response:
        return self._problem(
            request,
            Text(
                "This sign-in link does not work: it was used, or its 10 minutes are over. "
                "Send /web to the bot for a new one."
            ),
        )

    async def sign_out(self, request: web.Request) -> web.Response:
        posted = await self._posted(request)
        if posted is None:
            return self._refused(request)
        session, _form = posted
        self.web.sessions.close(session.id)
        response = _see_other(f"{self.base}/admin")
        response.del_cookie(COOKIE, path=self.base or "/")
        return response

    async def decide(self, request: web.Request) -> web.Response:
        """Approve or deny a held request, as ``/approve`` and ``/deny`` do; then back to the
        view, which says what the answer did."""
        posted = await self._posted(request)
        if posted is None:
            return self._refused(request)
        session, form = posted
        decide = self.decider
        if decide is None:
            raise NotFound
        number = _field(form, "item")
        language = await self.bot.languages.of_user(session.admin)
        with speaking(language):
            try:
                said = await decide(
                    _field(form, "job")[:MAX_ID],
                    int(number) - 1 if number.isdigit() and int(number) > 0 else None,
                    _field(form, "decision") == "approve",
                    session.admin,
                    _field(form, "reason").strip()[:500] or None,
                )
            except MirrorError as exc:
                said = localize(text_of(exc))
        self.web.sessions.tell(session.id, said)
        return _see_other(f"{self.base}/admin")

    async def _posted(self, request: web.Request) -> tuple[Session, Any] | None:
        """The session and form of a POST made by these pages (a session, this site's
        ``Origin``, the session's own form token); None for any other."""
        session = self._session(request)
        form = await request.post()
        if (
            session is None
            or not self._same_origin(request)
            or not same_secret(_field(form, "csrf"), session.csrf)
        ):
            return None
        return session, form

    def _same_origin(self, request: web.Request) -> bool:
        """A POST must come from these pages: its ``Origin`` is this site's (browsers send it
        with every POST; a form on another site sends its own, or ``null``)."""
        origin = request.headers.get("Origin", "").lower()
        return bool(origin) and origin == self.web.origin

    def _refused(self, request: web.Request) -> web.Response:
        return self._problem(
            request,
            Text(
                "Refused: this request did not come from the operator's view. Reload the "
                "page and try again."
            ),
        )


def _see_other(location: str) -> web.Response:
    """After a POST, the page to GET (returned, not raised: it carries a cookie)."""
    return web.Response(status=303, headers={"Location": location})


def _field(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if "Cache-Control" not in response.headers:
        static = "/static/" in request.path and response.status == 200
        response.headers["Cache-Control"] = "max-age=300" if static else "no-store"


def _json(page: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(
        page, status=status, dumps=functools.partial(json.dumps, ensure_ascii=False, indent=1)
    )


def _download(text: str, name: str, content_type: str) -> web.Response:
    return web.Response(
        text=text,
        content_type=content_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _wants_json(request: web.Request) -> bool:
    return request.path.endswith(".json")


def _accepted(request: web.Request) -> str:
    """The browser's first language we speak, for pages that belong to nobody (a 404)."""
    for part in request.headers.get("Accept-Language", "").split(","):
        found = from_tag(part.split(";", 1)[0].strip())
        if found.language is not None:
            return found.language
    return ENGLISH


def _html_lang(language: str) -> str:
    return "zh-Hans" if language == "zh_Hans" else language


async def decide(
    approvals: Approvals,
    request: str,
    idx: int | None,
    approve: bool,
    by: str,
    reason: str | None,
) -> str:
    """Approve or Deny pressed in the operator's view: what ``/approve`` and ``/deny`` do, and
    the sentence they answer with."""
    recorded, applied = await approvals.decide(
        request, approve=approve, by=by, idx=idx, reason=reason
    )
    view = answered(recorded, applied)
    return " ".join((view.title, *view.lines))


@contextlib.asynccontextmanager
async def serve_web(web_state: Web, bot: MirrorBot) -> AsyncIterator[Site]:
    """Serve the pages on ``MIRROR_WEB_LISTEN:MIRROR_WEB_PORT`` until the block ends, and let
    the job follower tell them of every change."""
    site = Site(web_state, bot)
    site.decider = functools.partial(decide, bot.approvals)
    bot.jobs.observe(web_state.changes)
    runner = web.AppRunner(site.app(), access_log=None, shutdown_timeout=5)
    await runner.setup()
    try:
        await web.TCPSite(runner, web_state.listen, web_state.port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigurationError(
            f"Cannot serve the web pages on {web_state.listen}:{web_state.port} "
            f"({os.strerror(exc.errno) if exc.errno else exc}); choose another "
            "MIRROR_WEB_PORT or MIRROR_WEB_LISTEN."
        ) from None
    log.info("job pages and the operator's view on %s", web_state.url)
    try:
        yield site
    finally:
        await runner.cleanup()
