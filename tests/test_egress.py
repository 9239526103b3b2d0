"""Server-side request forgery: redirects, token realms and names that lead inside are refused.

A hostile registry on loopback (allowed, as an operator would allow a local registry) tries to
send the registry client to other internal addresses; the client must refuse before connecting.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from mirror.egress import EgressGuard
from mirror.engines.registry.client import RegistryClient
from mirror.errors import Forbidden
from tests.support.local_http import serve_locally

MANIFEST = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}'


@pytest.fixture
async def hostile() -> AsyncIterator[int]:
    port_box: list[int] = []

    async def manifest(request: web.Request) -> web.Response:
        port = port_box[0]
        name = request.match_info["ref"]
        if name == "redirect":
            raise web.HTTPTemporaryRedirect(f"http://127.0.0.2:{port}/v2/r/manifests/ok")
        if name == "realm":
            return web.Response(
                status=401,
                headers={"WWW-Authenticate": f'Bearer realm="http://127.0.0.3:{port}/token"'},
            )
        digest = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
        return web.Response(
            body=MANIFEST,
            headers={
                "Content-Type": "application/vnd.oci.image.manifest.v1+json",
                "Docker-Content-Digest": digest,
            },
        )

    async def base(_: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v2/", base)
    app.router.add_route("*", "/v2/r/manifests/{ref}", manifest)
    runner, port = await serve_locally(app)
    port_box.append(port)
    try:
        yield port_box[0]
    finally:
        await runner.cleanup()


def client_for(port: int) -> RegistryClient:
    hostname = socket.gethostname()
    return RegistryClient(
        insecure={f"127.0.0.1:{port}", f"{hostname}:{port}"},
        guard=EgressGuard({f"127.0.0.1:{port}"}),
    )


async def test_the_allowed_registry_itself_is_reachable(hostile: int) -> None:
    client = client_for(hostile)
    try:
        manifest = await client.get_manifest(f"127.0.0.1:{hostile}", "r", "ok")
        assert manifest.data == MANIFEST
    finally:
        await client.aclose()


async def test_a_redirect_to_another_internal_address_is_refused(hostile: int) -> None:
    client = client_for(hostile)
    try:
        with pytest.raises(Forbidden, match=r"127\.0\.0\.2"):
            await client.get_manifest(f"127.0.0.1:{hostile}", "r", "redirect")
    finally:
        await client.aclose()


async def test_a_token_realm_at_an_internal_address_is_refused(hostile: int) -> None:
    client = client_for(hostile)
    try:
        with pytest.raises(Forbidden, match=r"127\.0\.0\.3"):
            await client.get_manifest(f"127.0.0.1:{hostile}", "r", "realm")
    finally:
        await client.aclose()


async def test_a_name_that_resolves_inside_is_refused(hostile: int) -> None:
    hostname = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(hostname, hostile)}
    from mirror.egress import is_internal_address

    assert addresses and all(is_internal_address(a) for a in addresses), addresses
    client = client_for(hostile)
    try:
        with pytest.raises(Forbidden, match=hostname):
            await client.get_manifest(f"{hostname}:{hostile}", "r", "ok")
    finally:
        await client.aclose()


async def test_a_token_realm_on_the_registry_host_is_allowed(hostile: int) -> None:
    """Registry and token server usually share a machine; another port there is fine."""
    from yarl import URL

    guard = EgressGuard({f"127.0.0.1:{hostile}"})
    guard.check_url(URL("http://127.0.0.1:1/token"), same_host_as="127.0.0.1")
    from mirror.egress import EgressDenied

    with pytest.raises(EgressDenied):
        guard.check_url(URL("http://127.0.0.1:1/token"))
