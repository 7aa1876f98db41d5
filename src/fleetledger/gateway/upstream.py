"""A small HTTP/1.1 client for the gateway's upstream calls: keep-alive pool, streaming, timeouts.

Why not httpx for the hot path: httpcore's pool re-checks every pooled connection (a ``select()``
per connection) on each request it assigns and releases, so with 100 concurrent clients the
gateway spent 4-10 ms of CPU per request there (measured with py-spy under bench/gateway.py).
This client keeps idle connections in a LIFO stack per upstream (the most recently used socket is
the one least likely to have been closed by the server), parses responses with ``httptools`` (the
parser uvicorn uses), and writes each request in one ``write``. It speaks only what providers need:
one request per connection at a time, ``Content-Length`` or chunked responses, HTTP and HTTPS.

A reused connection that turns out to be closed before any response byte arrived is retried once
on a new connection (the server closed it while idle; it never saw the request).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import httptools

__all__ = ["UpstreamPool", "UpstreamResponse", "UpstreamError", "UpstreamTimeout"]

_READ = 65536


class UpstreamError(Exception):
    """The upstream could not be reached, or broke off its response."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect or answer within the timeout."""


class _Connection:
    __slots__ = ("reader", "writer", "reused")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    def close(self) -> None:
        self.writer.close()


class UpstreamResponse:
    """One response: status and headers at once; the body read whole or streamed as it arrives."""

    def __init__(self, pool: UpstreamPool, connection: _Connection) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self._parser = httptools.HttpResponseParser(self)
        self._chunks: deque[bytes] = deque()
        self._headers_done = False
        self._complete = False
        self.received = False
        self._keep_alive = False
        self.status_code = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self.status_code = self._parser.get_status_code()
        # Read here: httptools resets the parser's state once the message completes.
        self._keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self._complete = True

    def header(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.raw_headers:
            if key == wanted:
                return value.decode("latin-1")
        return default

    async def _feed(self) -> bool:
        """Read and parse more; False when the upstream closed the connection."""
        assert self._connection is not None
        try:
            async with asyncio.timeout(self._pool.timeout_s):
                data = await self._connection.reader.read(_READ)
        except TimeoutError:
            self._discard()
            raise UpstreamTimeout(f"{self._pool.origin} did not answer within {self._pool.timeout_s}s") from None
        except OSError as exc:
            self._discard()
            raise UpstreamError(f"{self._pool.origin}: {exc}") from None
        if not data:
            return False
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._discard()
            raise UpstreamError(f"{self._pool.origin} sent an invalid response: {exc}") from None
        return True

    async def _start(self) -> bool:
        """Read up to the end of the headers; False when the connection was closed before any byte."""
        first = True
        while not self._headers_done:
            if not await self._feed():
                if first:
                    return False
                self._discard()
                raise UpstreamError(f"{self._pool.origin} closed the connection in the response headers")
            first = False
        return True

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked encoding decoded)."""
        try:
            while True:
                while self._chunks:
                    yield self._chunks.popleft()
                if self._complete:
                    break
                if not await self._feed():
                    self._discard()
                    raise UpstreamError(f"{self._pool.origin} broke off the response")
        finally:
            await self.aclose()

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_raw()])

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    async def aclose(self) -> None:
        """Give the connection back when the response was read to its end, else close it."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._complete and not self._chunks and self._keep_alive:
            self._pool._release(connection)
        else:
            connection.close()


class UpstreamPool:
    """Keep-alive connections to one upstream origin (``http://host:port`` or ``https://...``)."""

    def __init__(
        self, base_url: str, *, timeout_s: float = 120.0, connect_timeout_s: float = 5.0, max_idle: int = 1000
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream URL {base_url!r}: expected http(s)://host[:port][/prefix]")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        self.host_header = (self.host if default_port else f"{self.host}:{self.port}").encode()
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            try:
                import certifi

                self.ssl = ssl.create_default_context(cafile=certifi.where())
            except ImportError:  # pragma: no cover - certifi comes with httpx
                self.ssl = ssl.create_default_context()
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_idle = max_idle
        self._idle: list[_Connection] = []
        self._closed = False

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None, limit=_READ * 4
                )
        except TimeoutError:
            raise UpstreamTimeout(f"{self.origin}: no connection within {self.connect_timeout_s}s") from None
        except OSError as exc:
            raise UpstreamError(f"{self.origin}: {exc}") from None
        return _Connection(reader, writer)

    def _acquire_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.reader.at_eof() or connection.writer.is_closing():
                connection.close()
                continue
            connection.reused = True
            return connection
        return None

    def _release(self, connection: _Connection) -> None:
        if self._closed or len(self._idle) >= self.max_idle or connection.writer.is_closing():
            connection.close()
        else:
            self._idle.append(connection)

    async def request(
        self, method: str, path: str, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> UpstreamResponse:
        """Send a request; returns once the response headers arrived (read the body from the response)."""
        head = [
            f"{method} {self.prefix}{path} HTTP/1.1\r\n".encode(),
            b"host: " + self.host_header + b"\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
        ]
        head += [name + b": " + value + b"\r\n" for name, value in headers]
        payload = b"".join(head) + b"\r\n" + body
        for _ in range(2):
            connection = self._acquire_idle() or await self._connect()
            response = UpstreamResponse(self, connection)
            try:
                connection.writer.write(payload)
                if connection.writer.transport.get_write_buffer_size() > _READ:
                    async with asyncio.timeout(self.timeout_s):
                        await connection.writer.drain()
                started = await response._start()
            except TimeoutError:
                connection.close()
                raise UpstreamTimeout(f"{self.origin} did not take the request within {self.timeout_s}s") from None
            except UpstreamTimeout:
                raise
            except (OSError, UpstreamError) as exc:
                connection.close()
                if connection.reused and not response.received:
                    continue  # closed while idle: the server never saw this request
                if isinstance(exc, UpstreamError):
                    raise
                raise UpstreamError(f"{self.origin}: {exc}") from None
            except BaseException:
                connection.close()
                raise
            if started:
                return response
            connection.close()
            if not connection.reused:
                raise UpstreamError(f"{self.origin} closed the connection without answering")
        raise UpstreamError(f"{self.origin} closed the connection without answering")

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    def __repr__(self) -> str:
        return f"UpstreamPool({self.origin!r}, idle={len(self._idle)})"

    # Test seam: the number of idle connections.
    @property
    def idle(self) -> int:
        return len(self._idle)

    def __reduce__(self) -> Any:  # pragma: no cover - pools are per process
        raise TypeError("UpstreamPool cannot be pickled")
