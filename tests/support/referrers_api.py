"""A registry that serves the OCI 1.1 referrers API: a proxy of ours in front of a lab
registry (distribution 2.8 has no such API).

Every manifest PUT through it that names a ``subject`` is remembered, as a registry with the
API indexes it, and answered with ``OCI-Subject``; ``GET /v2/<name>/referrers/<digest>``
lists them as an OCI index. Everything else passes through; requests are logged.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.local_http import serve_locally

_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>sha256:[0-9a-f]{64})$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")
_SKIP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te"}
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class ReferrersRegistry:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.address = ""
        self.seen: list[tuple[str, str]] = []
        self.index: dict[tuple[str, str], list[dict[str, Any]]] = {}
        """(repository, subject digest) -> descriptors of the manifests that refer to it."""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> ReferrersRegistry:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, port = await serve_locally(app, handle_signals=False, shutdown_timeout=0.5)
        self.address = f"127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path))
        listing = _REFERRERS.match(request.path)
        if listing and request.method == "GET":
            key = (listing["name"], listing["digest"])
            body = {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": self.index.get(key, []),
            }
            return web.Response(body=json.dumps(body).encode(), content_type=OCI_INDEX)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP}
        body_bytes = await request.read()
        async with self._session.request(
            request.method,
            f"http://{self.upstream}{request.path_qs}",
            headers=headers,
            data=body_bytes or None,
            allow_redirects=False,
        ) as upstream:
            data = await upstream.read()
            response = web.Response(status=upstream.status, body=data if data else None)
            for key, value in upstream.headers.items():
                if key.lower() not in _SKIP:
                    response.headers[key] = value
        manifest = _MANIFEST.match(request.path)
        if manifest and request.method == "PUT" and upstream.status == 201:
            subject = self._remember(manifest["name"], body_bytes, request.content_type)
            if subject:
                response.headers["OCI-Subject"] = subject
        return response

    def _remember(self, name: str, data: bytes, media_type: str) -> str | None:
        document = json.loads(data)
        subject = (document.get("subject") or {}).get("digest")
        if not subject:
            return None
        descriptor: dict[str, Any] = {
            "mediaType": media_type,
            "digest": f"sha256:{hashlib.sha256(data).hexdigest()}",
            "size": len(data),
            "artifactType": document.get("artifactType")
            or (document.get("config") or {}).get("mediaType"),
        }
        if document.get("annotations"):
            descriptor["annotations"] = document["annotations"]
        entries = self.index.setdefault((name, subject), [])
        if all(e["digest"] != descriptor["digest"] for e in entries):
            entries.append(descriptor)
        return str(subject)


@asynccontextmanager
async def referrers_registry(upstream: str) -> AsyncIterator[ReferrersRegistry]:
    server = await ReferrersRegistry(upstream).start()
    try:
        yield server
    finally:
        await server.stop()
