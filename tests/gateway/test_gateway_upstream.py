"""The gateway's upstream HTTP/1.1 client against real servers: reuse, streaming, closes, timeouts."""

from __future__ import annotations

import asyncio
import json

import pytest

from fleetledger.gateway.upstream import UpstreamError, UpstreamPool, UpstreamTimeout

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
HEADERS = [(b"content-type", b"application/json")]


def _counting(pool: UpstreamPool) -> list[int]:
    opened = [0]
    connect = pool._connect

    async def counted():
        opened[0] += 1
        return await connect()

    pool._connect = counted  # type: ignore[method-assign]
    return opened


def test_connections_are_reused_and_streams_arrive_in_pieces(simulator):
    async def run():
        pool = UpstreamPool(simulator.url)
        opened = _counting(pool)
        auth = [*HEADERS, (b"authorization", b"Bearer sk-upstream-secret")]
        for _ in range(5):
            response = await pool.request("POST", "/v1/chat/completions", auth, BODY)
            assert response.status_code == 200 and json.loads(await response.aread())["usage"]["prompt_tokens"] > 0
        assert opened[0] == 1 and pool.idle == 1
        streamed = json.dumps({**json.loads(BODY), "stream": True}).encode()
        response = await pool.request("POST", "/v1/chat/completions", auth, streamed)
        assert response.header("content-type", "").startswith("text/event-stream")
        pieces = [chunk async for chunk in response.aiter_raw()]
        assert len(pieces) > 1 and b"".join(pieces).endswith(b"data: [DONE]\n\n")
        errored = await pool.request("POST", "/v1/chat/completions", HEADERS, BODY)  # no key: 401 from upstream
        assert errored.status_code == 401 and b"Incorrect API key" in await errored.aread()
        assert opened[0] == 1
        await pool.close()
        await asyncio.sleep(0.05)

    asyncio.run(run())


def test_a_connection_the_server_closed_is_replaced_and_timeouts_are_reported():
    async def run():
        answers = 0
        writers: list[asyncio.StreamWriter] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal answers
            writers.append(writer)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            await reader.readexactly(length)
            answers += 1
            if answers == 3:
                await asyncio.sleep(2)  # the third request hangs
            body = b'{"ok": true}'
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            writer.close()  # closes the kept-alive connection without saying so

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = UpstreamPool(f"http://127.0.0.1:{port}", timeout_s=0.5)
        opened = _counting(pool)
        for _ in range(2):
            response = await pool.request("POST", "/x", HEADERS, BODY)
            assert await response.aread() == b'{"ok": true}'
            await asyncio.sleep(0.05)
        assert opened[0] == 2
        with pytest.raises(UpstreamTimeout):
            await pool.request("POST", "/x", HEADERS, BODY)
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
        with pytest.raises(UpstreamError):
            await pool.request("POST", "/x", HEADERS, BODY)
        await pool.close()
        await asyncio.sleep(0.05)  # let the closed transports finish closing before the loop ends

    asyncio.run(run())
