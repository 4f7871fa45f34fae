"""`cerberus stdio` between the Python MCP SDK's stdio client and the example server over stdio: the
way a desktop client launches a governed local server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

pytestmark = pytest.mark.anyio

POLICY = {
    "guardrails": [
        {"type": "rbac", "allow": ["*"], "deny": ["delete_*"]},
        {"type": "pii_email", "action": "redact", "direction": "both"},
        {"type": "pii_phone", "action": "redact"},
        {"type": "pii_ip_address", "action": "redact", "direction": "response"},
        {"type": "pii_ssn", "action": "block"},
        {"type": "pii_credit_card", "action": "block"},
    ]
}


def text(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_desktop_style_launch_is_governed_and_audited(binaries: Path, tmp_path: Path, mode: str) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    audit = tmp_path / "audit.jsonl"
    server = StdioServerParameters(
        command=str(binaries / "cerberus"),
        args=[
            "stdio",
            "--policy", str(policy),
            "--audit-log", str(audit),
            "--audit-payloads", "redacted",
            "--",
            str(binaries / "cerberus-example-server"),
        ],
    )
    async with Client(server, mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "lookup_customer" in names and "echo" in names
        assert "delete_customer" not in names, "rbac filters the list the server sent"

        looked_up = await client.call_tool("lookup_customer", {"name": "Jane"})
        assert text(looked_up) == "Jane: email [REDACTED:EMAIL], phone [REDACTED:PHONE], last login from [REDACTED:IP_ADDRESS]"

        echoed = await client.call_tool("echo", {"text": "write to bob@example.org"})
        assert text(echoed) == "write to [REDACTED:EMAIL]", "redacted before the server saw it"

        with pytest.raises(MCPError) as denied:
            await client.call_tool("delete_customer", {"name": "Jane"})
        assert denied.value.code == -32050
        assert denied.value.error.data["code"] == "rbac_denied"

        with pytest.raises(MCPError) as blocked:
            await client.call_tool("billing_record", {"name": "Jane"})
        assert blocked.value.code == -32050
        assert blocked.value.error.data["guardrail"] in ("pii_credit_card", "pii_ssn")

        assert text(await client.call_tool("echo", {"text": "still here"})) == "still here"

    # The client closed the pipe: the wrapper stopped the server and flushed its audit file.
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    calls = [r for r in records if r.get("method") == "tools/call"]
    by_target = {}
    for record in calls:
        by_target.setdefault((record["target"], record["direction"]), []).append(record["decision"])
    assert by_target[("delete_customer", "request")] == ["block"]
    assert by_target[("billing_record", "response")] == ["block"]
    assert by_target[("lookup_customer", "response")] == ["modify"]
    assert by_target[("echo", "request")] == ["modify", "allow"]
    assert all(r["upstream_us"] >= 0 for r in calls if r["direction"] == "response")
    raw = audit.read_text()
    for secret in ("bob@example.org", "jane.doe@example.com", "234-5678", "203.0.113.7", "4111 1111", "536-22-1234"):
        assert secret not in raw, f"{secret} reached the audit file"
    assert "[REDACTED:EMAIL]" in raw, "payloads are kept, redacted"
