"""Slack's side of Socket Mode for the ack bench, in a process of its own.

The fake Slack (tests.fakes.slack) runs its websocket in threads of the bench process, which also
answers the bot's replies during a burst; an ack frame read there waits for that process's GIL
before its time is taken, and the figure grows by the fake's own load. Here one event loop owns
the websocket: it sends each envelope and takes the time as the loop reads its ack frame.

The fake Slack still answers apps.connections.open: the bench points it at `SocketSender.url`.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any

import uvloop
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

APP_ID = "A111BENCH"


class SocketSender:
    """The child process's handle: `url` for apps.connections.open, then `send` envelopes."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_main, args=(child,), name="socket-sender", daemon=True)
        self._process.start()
        child.close()
        self.port: int = self._ask(("port",))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link/?ticket={uuid.uuid4()}&app_id={APP_ID}"

    def wait_connected(self, timeout: float) -> None:
        if not self._ask(("connected", timeout)):
            raise RuntimeError(f"the bot did not connect to the Socket Mode sender within {timeout:g} s")

    def send(self, envelopes: list[dict[str, Any]], clients: int, timeout: float = 30) -> list[float]:
        """Send every envelope, at most `clients` unacknowledged at a time; seconds until each ack."""
        latencies: list[float] = self._ask(("send", envelopes, clients, timeout))
        return latencies

    def close_connections(self) -> None:
        self._ask(("close",))

    def stop(self) -> None:
        self._conn.send(("stop",))
        self._process.join(10)
        if self._process.exitcode is None:
            self._process.kill()

    def _ask(self, message: tuple[Any, ...]) -> Any:
        self._conn.send(message)
        kind, value = self._conn.recv()
        if kind == "error":
            raise RuntimeError(f"socket sender: {value}")
        return value


def envelope(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """As Slack frames a slash command ("slash_commands") or a button press ("interactive")."""
    return {
        "envelope_id": str(uuid.uuid4()),
        "type": kind,
        "payload": payload,
        "accepts_response_payload": kind == "slash_commands",
    }


class _Link:
    """The bot's newest connection and the acks awaited on it (in the child process)."""

    def __init__(self) -> None:
        self.socket: ServerConnection | None = None
        self.connected = asyncio.Event()
        self.waiting: dict[str, asyncio.Future[float]] = {}

    async def handler(self, socket: ServerConnection) -> None:
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": APP_ID}}
        await socket.send(json.dumps(hello))
        self.socket = socket
        self.connected.set()
        try:
            async for frame in socket:
                acked_at = time.perf_counter()
                message = json.loads(frame)
                waiter = self.waiting.pop(str(message.get("envelope_id")), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(acked_at)
        except ConnectionClosed:
            pass
        finally:
            if self.socket is socket:
                self.socket = None
                self.connected.clear()

    async def send(self, envelopes: list[dict[str, Any]], clients: int, timeout: float) -> list[float]:
        gate = asyncio.Semaphore(clients)

        async def one(env: dict[str, Any]) -> float:
            async with gate:
                await asyncio.wait_for(self.connected.wait(), timeout)
                assert self.socket is not None
                acked: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                self.waiting[env["envelope_id"]] = acked
                sent_at = time.perf_counter()
                await self.socket.send(json.dumps(env))
                return await asyncio.wait_for(acked, timeout) - sent_at

        return list(await asyncio.gather(*(one(env) for env in envelopes)))


def _main(conn: Connection) -> None:
    uvloop.run(_serve(conn))


async def _serve(conn: Connection) -> None:
    link = _Link()
    loop = asyncio.get_running_loop()
    async with serve(link.handler, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1] if hasattr(server, "sockets") else 0
        while True:
            message = await loop.run_in_executor(None, conn.recv)
            try:
                if message[0] == "stop":
                    return
                if message[0] == "port":
                    answer: Any = port
                elif message[0] == "connected":
                    answer = await _within(link.connected.wait(), message[1])
                elif message[0] == "send":
                    answer = await link.send(*message[1:])
                elif message[0] == "close":
                    if link.socket is not None:
                        await link.socket.close(1001, "going away")
                    answer = None
                else:
                    raise ValueError(f"unknown request {message[0]!r}")
                conn.send(("ok", answer))
            except Exception as error:  # noqa: BLE001 - reported to the bench, which fails the figure
                conn.send(("error", f"{type(error).__name__}: {error}"))


async def _within(waiting: Any, timeout: float) -> bool:
    try:
        await asyncio.wait_for(waiting, timeout)
        return True
    except TimeoutError:
        return False
