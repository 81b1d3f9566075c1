"""A small asyncio HTTP/1.1 load generator (keep-alive, one connection per client) for loopback
servers: closed-loop clients (send, wait for the answer, send again) and pollers (one request per
interval). Kept minimal so the client costs little CPU next to the server on a 2-core machine."""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)   # seconds, successful answers only
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    def add(self, status: int, seconds: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.latencies.append(seconds)
        else:
            self.errors += 1

    def merge(self, other: "Result") -> None:
        self.latencies.extend(other.latencies)
        self.errors += other.errors
        for status, n in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n


class Conn:
    def __init__(self, host: str, port: int, headers: dict[str, str]):
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader = self.writer = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            await self.open()
        req = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.extra}\r\n".encode()
        try:
            self.writer.write(req)
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()  # the server closed an idle keep-alive connection: reconnect once
            await self.open()
            self.writer.write(req)
            head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status


REQUEST_TIMEOUT = 30.0


async def _timed_get(conn: Conn, path: str) -> int:
    """One request; a server that does not answer in REQUEST_TIMEOUT counts as an error (status 0)."""
    try:
        return await asyncio.wait_for(conn.get(path), REQUEST_TIMEOUT)
    except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
        await conn.close()
        return 0


async def _closed_loop(servers, headers, paths, clients, duration, result: dict[str, Result]):
    stop_at = time.perf_counter() + duration

    async def client(n: int):
        conn = Conn(*servers[n % len(servers)], headers)
        i = n
        try:
            while time.perf_counter() < stop_at:
                path = paths[i % len(paths)]
                i += 1
                t0 = time.perf_counter()
                status = await _timed_get(conn, path)
                result.setdefault(path, Result()).add(status, time.perf_counter() - t0)
        finally:
            await conn.close()

    await asyncio.gather(*(client(n) for n in range(clients)))


async def _pollers(host, port, headers, path, clients, duration, interval, result: Result, seed: int):
    rng = random.Random(seed)
    start = time.perf_counter() + 0.2
    stop_at = start + duration
    offsets = [rng.uniform(0, interval) for _ in range(clients)]

    async def client(n: int):
        # connect when first asking, as a browser does: gunicorn's gthread worker parks a thread for
        # up to 5 s on a new connection that has sent nothing yet, so 200 connections opened up front
        # and used up to a second later would measure that wait, not the page
        conn = Conn(host, port, headers)
        nxt = start + offsets[n]
        try:
            while nxt < stop_at:
                delay = nxt - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = time.perf_counter()
                status = await _timed_get(conn, path)
                result.add(status, time.perf_counter() - t0)
                nxt += interval
                while nxt < time.perf_counter():  # an answer slower than the interval: skip missed ticks
                    nxt += interval
        finally:
            await conn.close()

    await asyncio.gather(*(client(n) for n in range(clients)))


def closed_loop(base_url: str | list[str], paths: list[str], clients: int, duration: float,
                headers: dict[str, str] | None = None) -> dict[str, Result]:
    """`clients` concurrent clients, each sending the next request as soon as the last one is answered.
    Given several servers, client n talks to server n % len(servers): each gets the same share, as
    behind a round-robin load balancer."""
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    servers = [(u.hostname, u.port) for u in map(urlsplit, urls)]
    result: dict[str, Result] = {}
    asyncio.run(_closed_loop(servers, headers or {}, paths, clients, duration, result))
    return result


def pollers(base_url: str, path: str, clients: int, duration: float, interval: float = 1.0,
            headers: dict[str, str] | None = None, seed: int = 7) -> Result:
    """`clients` pollers, each asking once per `interval` (phases spread at random, as browsers are)."""
    u = urlsplit(base_url)
    result = Result()
    asyncio.run(_pollers(u.hostname, u.port, headers or {}, path, clients, duration, interval, result, seed))
    return result
