"""Many engine endpoints in front of one real engine: loopback TCP proxies that add latency, or never answer.

Each proxy is a host of its own to the bot (`tcp://127.0.0.1:PORT`). A live one forwards every byte
to the engine's unix socket and back, each direction delayed by half the host's round-trip time, as a
network link would delay it: what was sent at t arrives at t + rtt/2, and later bytes are never held
behind earlier ones longer than that (no serialising of requests on one connection or across them).
A dead one accepts connections and then neither reads nor answers, like a host whose engine hangs.
All of them run on one asyncio loop in one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Endpoint:
    url: str  # tcp://127.0.0.1:PORT
    rtt: float | None  # seconds added to each request/response round trip; None: never answers


class LatencyProxies:
    """`live(rtt)` and `dead()` each open one endpoint; `close()` ends them all."""

    def __init__(self, engine_socket: str) -> None:
        self.engine_socket = engine_socket
        self.loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._held: set[asyncio.StreamWriter] = set()
        self._closing = asyncio.Event()
        self._thread = threading.Thread(target=self.loop.run_forever, name="latency-proxies", daemon=True)
        self._thread.start()

    def live(self, rtt: float) -> Endpoint:
        return Endpoint(self._serve(lambda r, w: self._forward(r, w, rtt / 2)), rtt)

    def dead(self) -> Endpoint:
        return Endpoint(self._serve(self._hold), None)

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            self._closing.set()
            for writer in list(self._held):
                writer.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.wait(others, timeout=5)
            for task in others:
                task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    # --- on the loop -------------------------------------------------------------------------------
    def _serve(self, handler) -> str:  # type: ignore[no-untyped-def]
        async def start() -> asyncio.Server:
            return await asyncio.start_server(handler, "127.0.0.1", 0)

        server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self._servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"tcp://127.0.0.1:{port}"

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
    ) -> None:
        self._held.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.engine_socket)
        except OSError:
            writer.close()
            self._held.discard(writer)
            return
        self._held.add(up_writer)
        try:
            await asyncio.gather(_link(reader, up_writer, delay), _link(up_reader, writer, delay))
        finally:
            for w in (writer, up_writer):
                w.close()
                self._held.discard(w)

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.add(writer)  # kept open, never read, never answered, until close()
        await self._closing.wait()


async def _link(source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay: float) -> None:
    """Copy source to sink, each chunk delivered `delay` seconds after it was read."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                with contextlib.suppress(OSError):
                    sink.write_eof()
                return
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            sink.write(chunk)
            await sink.drain()

    delivering = asyncio.ensure_future(deliver())
    try:
        while True:
            chunk = await source.read(65536)
            await queue.put((time.monotonic() + delay, chunk))
            if not chunk:
                break
        await delivering
    except (ConnectionError, OSError):
        delivering.cancel()
    finally:
        if not delivering.done():
            delivering.cancel()


class ProxyProcess:
    """The same endpoints served by a process of their own (`rtts`: seconds, or None for a dead one),
    so that forwarding bytes does not compete with the bot for this process's GIL (the bench)."""

    def __init__(self, engine_socket: str, rtts: list[float | None]) -> None:
        args = ["dead" if rtt is None else f"{rtt:.4f}" for rtt in rtts]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.latency_proxy", engine_socket, *args],
            cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("the latency proxies did not start")
        self.endpoints = [Endpoint(url, rtt) for url, rtt in zip(json.loads(line), rtts, strict=True)]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the child ends at EOF
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main(argv: list[str]) -> None:
    """`python -m tests.fakes.latency_proxy ENGINE_SOCKET RTT|dead …`: one JSON line of URLs, then
    serve until stdin closes."""
    proxies = LatencyProxies(argv[0])
    endpoints = [proxies.dead() if arg == "dead" else proxies.live(float(arg)) for arg in argv[1:]]
    print(json.dumps([e.url for e in endpoints]), flush=True)
    sys.stdin.read()
    proxies.close()


if __name__ == "__main__":
    main(sys.argv[1:])
