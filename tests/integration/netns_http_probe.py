"""Run inside a fresh network namespace (see test_http_write_from_another_host): the edge's HTTP
API with its defaults (no API_TOKEN, no ALLOWED_PEERS) on 0.0.0.0, asked to register a caller
from an address that is not loopback, then from loopback. Prints the two statuses as JSON."""

from __future__ import annotations

import asyncio
import json
import subprocess

from edge.config import EdgeConfig
from edge.http_api import HttpApi
from edge.registry import CallRegistry

OTHER_HOST = "192.0.2.10"  # TEST-NET-1: exists only on this namespace's loopback interface
CALL = "0b5c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"


async def put(host: str, source: str, port: int) -> int:
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    body = b"0612345678"
    writer.write(
        f"PUT /calls/{CALL}/caller HTTP/1.1\r\nHost: edge\r\nContent-Length: {len(body)}\r\n"
        "\r\n".encode()
        + body
    )
    status = await asyncio.wait_for(reader.readline(), timeout=5)
    writer.close()
    return int(status.split()[1])


def second_address() -> None:
    for cmd in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "addr", "add", f"{OTHER_HOST}/32", "dev", "lo"],
    ):
        subprocess.run(cmd, check=True, timeout=10)


async def main() -> None:
    config = EdgeConfig.from_env({"HTTP_HOST": "0.0.0.0", "HTTP_PORT": "0"})
    registry = CallRegistry()
    api = HttpApi(config, registry)
    await api.start()
    port = api.address[1]
    try:
        other = await put(OTHER_HOST, OTHER_HOST, port)
        registered_after_other = registry.caller(CALL)
        local = await put("127.0.0.1", "127.0.0.1", port)
    finally:
        await api.stop()
    print(
        json.dumps(
            {
                "other_host": other,
                "registered_after_other": registered_after_other,
                "loopback": local,
                "registered": registry.caller(CALL),
                "banner": config.write_access,
            }
        )
    )


if __name__ == "__main__":
    second_address()
    asyncio.run(main())
