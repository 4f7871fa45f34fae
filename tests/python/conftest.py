"""Fixtures: the real gateway binary in front of real MCP servers, and the Python SDK as the client.

Each gateway is a `cerberus serve` process with its own config, key and free port; each test's client
talks to it over loopback only.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BIN = TARGET / "debug"
NODE = ROOT / "scripts" / "node"

POLICY = """{ guardrails = [
  { type = "rbac", allow = ["*"], deny = ["delete_*", "get-env"] },
  { type = "pii_email", action = "redact" },
  { type = "pii_phone", action = "redact" },
  { type = "pii_ip_address", action = "redact", direction = "response" },
  { type = "pii_ssn", action = "block" },
  { type = "pii_credit_card", action = "block" },
  { type = "rate_limit_per_minute", limit = 1000 },
] }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes], deadline_s: float = 60.0) -> None:
    """Polls until something listens on `port`; fails at once if the process died."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@pytest.fixture(scope="session")
def binaries() -> Path:
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "cerberus-axum", "-p", "cerberus-example-server"], cwd=ROOT, check=True
    )
    return BIN


@pytest.fixture(scope="session")
def node22() -> str:
    return subprocess.run([str(NODE / "install")], check=True, capture_output=True, text=True).stdout.strip()


def _spawn(args: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process)
    return process


@pytest.fixture(scope="session")
def example_http(binaries: Path) -> Iterator[str]:
    port = free_port()
    process = _spawn([str(binaries / "cerberus-example-server"), "--http", f"127.0.0.1:{port}"], port)
    yield f"http://127.0.0.1:{port}/mcp"
    process.terminate()
    process.wait()


@pytest.fixture(scope="session")
def everything_http(node22: str) -> Iterator[str]:
    port = free_port()
    entry = NODE / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
    process = _spawn([node22, str(entry), "streamableHttp"], port, {"PORT": str(port)})
    yield f"http://127.0.0.1:{port}/mcp"
    process.terminate()
    process.wait()


@dataclass
class Gateway:
    url: str
    keys: dict[str, str]

    def transport(self, agent: str = "bot"):
        client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {self.keys[agent]}"}, timeout=30)
        return streamable_http_client(self.url, http_client=client)


def start_gateway(binaries: Path, directory: Path, upstream: str) -> tuple[Gateway, subprocess.Popen[bytes]]:
    """A gateway for agent `bot` (organisation policy only) and `limited` (three calls a minute)."""
    keys = {name: "cbk_" + secrets.token_urlsafe(32) for name in ("bot", "limited")}
    digest = {name: hashlib.sha256(key.encode()).hexdigest() for name, key in keys.items()}
    port = free_port()
    config = directory / "gateway.toml"
    config.write_text(
        f"""[server]
listen = "127.0.0.1:{port}"

[[organisations]]
name = "acme"
policy = {POLICY}

[[workspaces]]
name = "tools"
organisation = "acme"
upstream = {upstream}

[[agents]]
name = "bot"
workspace = "tools"
key_sha256 = "{digest['bot']}"

[[agents]]
name = "limited"
workspace = "tools"
key_sha256 = "{digest['limited']}"
policy = {{ guardrails = [{{ type = "rate_limit_per_minute", limit = 3 }}] }}
"""
    )
    process = _spawn([str(binaries / "cerberus"), "serve", "--config", str(config)], port)
    return Gateway(f"http://127.0.0.1:{port}/governance-plane/api/v1/proxy/mcp", keys), process


@pytest.fixture(params=["http", "stdio"])
def gateway(request: pytest.FixtureRequest, binaries: Path, tmp_path: Path, example_http: str) -> Iterator[Gateway]:
    """A gateway in front of the example server, reached over HTTP or started over stdio."""
    upstream = (
        f'{{ url = "{example_http}" }}'
        if request.param == "http"
        else f'{{ command = "{binaries / "cerberus-example-server"}" }}'
    )
    gw, process = start_gateway(binaries, tmp_path, upstream)
    yield gw
    process.terminate()
    process.wait()


@pytest.fixture
def everything_gateway(binaries: Path, tmp_path: Path, everything_http: str) -> Iterator[Gateway]:
    gw, process = start_gateway(binaries, tmp_path, f'{{ url = "{everything_http}" }}')
    yield gw
    process.terminate()
    process.wait()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
