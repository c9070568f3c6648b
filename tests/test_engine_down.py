"""An engine that is down gets a clear reply naming the host; the next command works once it is back."""

from __future__ import annotations

from bot.sandbox import Engine
from tests.chat import ChatBot


def test_engine_down_then_back(chat: ChatBot, engine: Engine) -> None:
    engine.cli("pull", "busybox")
    assert "busybox" in chat("images")
    engine.stop()
    try:
        out = chat("images")
        assert "Cannot reach the Docker engine on host local" in out
        assert engine.docker_host in out
        assert "Traceback" not in out
    finally:
        engine.start()
    assert "busybox" in chat("images")
