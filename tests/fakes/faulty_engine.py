"""An engine socket that refuses one endpoint: a unix-socket proxy in front of a real engine.

Requests go to the real engine as they are (one upstream connection each, `Connection: close`),
except those whose path matches `refuse`, which get the answer the engine itself gives there when
it is busy (Engine 20.10 answers a second concurrent GET /system/df with HTTP 500 and "a disk usage
operation is already running"). The bot talks to it as to any engine: nothing of docker-py is
replaced.
"""

from __future__ import annotations

import json
import re
import socket
import socketserver
import threading
from pathlib import Path

BUSY = "a disk usage operation is already running"


class _Handler(socketserver.StreamRequestHandler):
    server: FaultyEngine

    def handle(self) -> None:
        while True:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = self.connection.recv(65536)
                if not chunk:
                    return
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            length = int(m.group(1)) if (m := re.search(rb"(?im)^content-length:\s*(\d+)", head)) else 0
            while len(rest) < length:
                chunk = self.connection.recv(65536)
                if not chunk:
                    return
                rest += chunk
            body, _pipelined = rest[:length], rest[length:]
            path = head.split(b" ", 2)[1].decode()
            if self.server.refuse.search(path):
                self.server.refused.append(path)
                payload = json.dumps({"message": self.server.message}).encode()
                self.connection.sendall(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                continue
            self._forward(head, body)

    def _forward(self, head: bytes, body: bytes) -> None:
        lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
        request = b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
            upstream.connect(self.server.engine_socket)
            upstream.sendall(request)
            while chunk := upstream.recv(65536):
                self.connection.sendall(chunk)


class FaultyEngine(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, engine_socket: str, refuse: str, message: str = BUSY) -> None:
        self.engine_socket = engine_socket
        self.refuse = re.compile(refuse)
        self.message = message
        self.refused: list[str] = []
        super().__init__(str(path), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"unix://{self.server_address}"

    def __enter__(self) -> FaultyEngine:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
