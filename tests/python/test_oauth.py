"""OAuth end to end: a real OpenID provider (`oidc-provider`, scripts/node/test-identity-provider.mjs),
the `cerberus serve` binary trusting it for one workspace, and the Python MCP SDK's own OAuth client:
discovery from the 401, dynamic registration, the authorization code flow with PKCE (the provider
signs its person in and consents at once), and a governed call with the token it gets. Then the
refusals, with tokens the provider itself issues: expired, for another audience, and from an issuer
the organisation does not trust."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2
import pytest
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from conftest import NODE, POLICY, free_port, wait_for_port

pytestmark = pytest.mark.anyio

REDIRECT = "http://127.0.0.1:43110/callback"


def start_provider(node22: str, account: str = "ann") -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    process = subprocess.Popen(
        [node22, str(NODE / "test-identity-provider.mjs")],
        env={"PORT": str(port), "ACCOUNT": account, "GROUPS": "staff", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process)
    return f"http://127.0.0.1:{port}", process


@pytest.fixture(scope="module")
def provider(node22: str) -> Iterator[str]:
    issuer, process = start_provider(node22)
    yield issuer
    process.terminate()
    process.wait()


@pytest.fixture(scope="module")
def stranger(node22: str) -> Iterator[str]:
    """An identity provider the organisation does not trust."""
    issuer, process = start_provider(node22, account="mallory")
    yield issuer
    process.terminate()
    process.wait()


@dataclass
class OAuthGateway:
    resource: str
    """The workspace's own MCP endpoint, as `cerberus serve` printed it."""
    log: Path
    """What `cerberus serve` logged."""


@pytest.fixture(scope="module")
def gateway(binaries: Path, tmp_path_factory: pytest.TempPathFactory, example_http: str, provider: str) -> Iterator[OAuthGateway]:
    directory = tmp_path_factory.mktemp("oauth")
    port = free_port()
    config = directory / "gateway.toml"
    config.write_text(
        f"""[server]
listen = "127.0.0.1:{port}"

[oauth]
public_url = "http://127.0.0.1:{port}"
leeway_secs = 0

[[organisations]]
name = "acme"
policy = {POLICY}

[[workspaces]]
name = "tools"
organisation = "acme"
upstream = {{ url = "{example_http}" }}

[[identity_providers]]
name = "test-provider"
organisation = "acme"
issuer = "{provider}"
workspaces = ["tools"]
required_scopes = ["mcp"]
"""
    )
    output, log = directory / "stdout", directory / "stderr"
    with output.open("wb") as stdout, log.open("wb") as stderr:
        process = subprocess.Popen([str(binaries / "cerberus"), "serve", "--config", str(config)], stdout=stdout, stderr=stderr)
    wait_for_port(port, process)
    printed = output.read_text()
    prefix = "OAuth MCP endpoint of acme/tools: "
    lines = [line for line in printed.splitlines() if line.startswith(prefix)]
    assert lines, f"cerberus serve prints the workspace's OAuth endpoint: {printed!r}"
    yield OAuthGateway(lines[0].removeprefix(prefix), log)
    process.terminate()
    process.wait()


class MemoryStorage:
    """The SDK's token storage, in memory: what the client was given is read back by the test."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class Browser:
    """Follows the authorization redirects as a person's browser would, up to the redirect back to the
    client, whose code and state it keeps for the SDK's callback."""

    def __init__(self) -> None:
        self.result: AuthorizationCodeResult | None = None
        self.visited: list[str] = []

    async def open(self, url: str) -> None:
        async with httpx2.AsyncClient(follow_redirects=False, timeout=30) as browser:
            for _ in range(10):
                self.visited.append(url)
                response = await browser.get(url)
                location = response.headers.get("location")
                assert location, f"{url} answered {response.status_code} without a redirect: {response.text[:300]}"
                location = urljoin(url, location)
                if location.startswith(REDIRECT):
                    query = parse_qs(urlsplit(location).query)
                    assert "code" in query, f"the provider refused: {query}"
                    self.result = AuthorizationCodeResult(
                        code=query["code"][0], state=query.get("state", [None])[0], iss=query.get("iss", [None])[0]
                    )
                    return
                url = location
        raise AssertionError(f"no redirect back to the client after {self.visited}")

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


def text(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def test_the_sdk_signs_in_from_the_challenge_and_makes_a_governed_call(gateway: OAuthGateway, provider: str) -> None:
    # The provider's keys are fetched at start-up, before any token: a bad issuer would show here.
    for _ in range(300):
        if "fetched an identity provider's keys" in gateway.log.read_text():
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no key fetch logged: {gateway.log.read_text()!r}")
    storage, browser = MemoryStorage(), Browser()
    auth = OAuthClientProvider(
        server_url=gateway.resource,
        client_metadata=OAuthClientMetadata(
            client_name="cerberus tests",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )
    async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
        async with Client(streamable_http_client(gateway.resource, http_client=http), mode="legacy") as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "echo" in names and "delete_customer" not in names, "the organisation's policy applies"
            echoed = await client.call_tool("echo", {"text": "write to bob@example.org"})
            assert text(echoed) == "write to [REDACTED:EMAIL]"

    assert browser.visited[0].startswith(f"{provider}/auth?"), "the SDK found the provider from the 401"
    query = parse_qs(urlsplit(browser.visited[0]).query)
    assert query["code_challenge_method"] == ["S256"], "PKCE"
    assert query["resource"] == [gateway.resource], "RFC 8707: the token is asked for this resource"
    assert storage.tokens is not None and "mcp" in (storage.tokens.scope or "")


async def machine_token(issuer: str, resource: str, client: str = "robot") -> str:
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{issuer}/token",
            data={"grant_type": "client_credentials", "scope": "mcp", "resource": resource},
            auth=(client, "robot-secret"),
        )
        assert response.status_code == 200, response.text
        return response.json()["access_token"]


async def initialize(resource: str, token: str) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.post(
            resource,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json, text/event-stream",
                "Content-Type": "application/json",
            },
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
            },
        )


def refused(response: httpx2.Response, reason: str) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge and reason in challenge, challenge
    assert "resource_metadata=" in challenge


async def test_tokens_expired_for_another_audience_or_from_a_stranger_are_refused(
    gateway: OAuthGateway, provider: str, stranger: str
) -> None:
    good = await machine_token(provider, gateway.resource)
    assert (await initialize(gateway.resource, good)).status_code == 200, "the provider's own token passes"

    other = await machine_token(provider, "https://other.example/mcp")
    refused(await initialize(gateway.resource, other), "for another resource")

    foreign = await machine_token(stranger, gateway.resource)
    refused(await initialize(gateway.resource, foreign), "issuer is not trusted")

    short = await machine_token(provider, gateway.resource, client="robot-short")
    assert (await initialize(gateway.resource, short)).status_code == 200
    time.sleep(2.5)
    refused(await initialize(gateway.resource, short), "expired")
