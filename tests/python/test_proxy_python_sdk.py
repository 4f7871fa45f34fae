"""The gateway with the Python MCP SDK as the client, in both connect modes, in front of the example
server (over HTTP and over stdio) and of the reference `server-everything`."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from conftest import Gateway

pytestmark = pytest.mark.anyio

# `auto` probes server/discover (2026-07-28) and falls back; `legacy` uses the initialize handshake.
MODES = ["auto", "legacy"]


def text(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.parametrize("mode", MODES)
async def test_tools_are_filtered_and_personal_data_redacted(gateway: Gateway, mode: str) -> None:
    async with Client(gateway.transport(), mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "lookup_customer" in names and "echo" in names
        assert "delete_customer" not in names, "rbac hides what the agent cannot call"

        looked_up = await client.call_tool("lookup_customer", {"name": "Jane"})
        assert text(looked_up) == "Jane: email [REDACTED:EMAIL], phone [REDACTED:PHONE], last login from [REDACTED:IP_ADDRESS]"

        echoed = await client.call_tool("echo", {"text": "write to bob@example.org"})
        assert text(echoed) == "write to [REDACTED:EMAIL]", "the request was redacted before the server saw it"


@pytest.mark.parametrize("mode", MODES)
async def test_blocks_are_json_rpc_errors_and_the_session_goes_on(gateway: Gateway, mode: str) -> None:
    async with Client(gateway.transport(), mode=mode) as client:
        with pytest.raises(MCPError) as blocked:
            await client.call_tool("billing_record", {"name": "Jane"})
        assert blocked.value.code == -32050
        assert blocked.value.error.data["guardrail"] in ("pii_credit_card", "pii_ssn")

        with pytest.raises(MCPError) as denied:
            await client.call_tool("delete_customer", {"name": "Jane"})
        assert denied.value.code == -32050
        assert denied.value.error.data["code"] == "rbac_denied"

        assert text(await client.call_tool("echo", {"text": "still here"})) == "still here"


@pytest.mark.parametrize("mode", MODES)
async def test_the_fourth_call_in_a_minute_is_throttled(gateway: Gateway, mode: str) -> None:
    async with Client(gateway.transport("limited"), mode=mode) as client:
        for _ in range(3):
            await client.call_tool("echo", {"text": "ok"})
        with pytest.raises(MCPError) as throttled:
            await client.call_tool("echo", {"text": "one too many"})
        assert throttled.value.code == -32051
        assert 0 < throttled.value.error.data["retry_after_ms"] <= 20_000


async def test_progress_is_streamed_in_order(gateway: Gateway) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(gateway.transport(), mode="legacy") as client:
        result = await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
    assert text(result) == "Tool with progress executed successfully"
    assert seen == [0, 50, 100]


async def test_sampling_round_trips_with_redaction_both_ways(gateway: Gateway) -> None:
    asked: list[str] = []

    async def sample(context, params):
        from mcp_types import CreateMessageResult, TextContent

        asked.append("".join(getattr(m.content, "text", "") for m in params.messages))
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="call +44 20 7946 0958"), model="test")

    async with Client(gateway.transport(), mode="legacy", sampling_callback=sample) as client:
        result = await client.call_tool("test_sampling", {"prompt": "summarise jane@example.com"})
    assert asked == ["summarise [REDACTED:EMAIL]"], "the server's request reached the client redacted"
    assert text(result) == "LLM response: call [REDACTED:PHONE]", "the client's answer reached the server redacted"


@pytest.mark.parametrize("mode", MODES)
async def test_server_everything_behind_the_gateway(everything_gateway: Gateway, mode: str) -> None:
    async with Client(everything_gateway.transport(), mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "echo" in names and "get-env" not in names
        echoed = await client.call_tool("echo", {"message": "ping jane@example.com"})
        assert "[REDACTED:EMAIL]" in text(echoed) and "jane@example.com" not in text(echoed)
        with pytest.raises(MCPError) as denied:
            await client.call_tool("get-env", {})
        assert denied.value.code == -32050
