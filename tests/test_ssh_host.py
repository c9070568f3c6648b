"""An ssh:// host for real: the bot reaches the session engine through a private sshd (tests/fakes/sshd.py),
over docker-py's paramiko transport and `docker system dial-stdio`, next to the same engine's own socket.

`local` and `edge` are one engine reached two ways, so the docker CLI on the socket is the oracle for
what the bot reads and writes over ssh.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.core.router import Router
from bot.core.services import Services, build_services
from bot.core.settings import Settings
from bot.engine.hosts import SSH_SESSIONS, DockerHost, connection_cause, connection_errors
from bot.sandbox import Engine, Sandbox
from handlers import COMMANDS
from tests.chat import ChatBot
from tests.fakes.registry import FakeRegistry
from tests.fakes.sshd import Sshd, keygen
from tests.test_images import assert_rows_match_cli
from tests.test_pull import final_message, fresh_image

ChatOver = Callable[..., ChatBot]


@pytest.fixture(scope="module")
def sshd(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with Sshd(tmp_path_factory.mktemp("sshd"), sandbox.docker_host) as server:
        yield server


@pytest.fixture
def chat_over(
    settings: Settings, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ChatOver]:
    """A bot whose hosts are `local` (the engine's socket, the default) and `edge` at an ssh:// URL.
    HOME is the sshd's client home (key and known_hosts); no ssh agent offers other keys."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    opened: list[Services] = []

    def over(server: Sshd, **settings_update: Any) -> ChatBot:
        monkeypatch.setenv("HOME", str(server.home))
        config = {"hosts": {"local": {"url": sandbox.docker_host}, "edge": {"url": server.url}}}
        path = tmp_path / "dockerbot.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        update = {"config": path, "host_timeout": 10, **settings_update}
        services = build_services(settings.model_copy(update=update), COMMANDS)
        opened.append(services)
        return ChatBot(Router(services), files_dir=tmp_path / "files")

    yield over
    for services in opened:
        services.close()


@pytest.fixture
def chat(chat_over: ChatOver, sshd: Sshd) -> ChatBot:
    return chat_over(sshd)


def exists(engine: Engine, ref: str) -> bool:
    return engine.cli("image", "inspect", ref, check=False).returncode == 0


def test_hosts_shows_the_ssh_host_up(chat: ChatBot, engine: Engine) -> None:
    out = chat("hosts")
    assert "2 Docker hosts, 2 up" in out
    version = engine.cli("version", "--format", "{{.Server.Version}}").stdout.strip()
    edge = next(line for line in out.splitlines() if line.startswith("edge "))
    assert version in edge and " up " in edge


def test_images_over_ssh_are_the_engines(chat: ChatBot, engine: Engine) -> None:
    engine.cli("pull", "alpine")
    out = assert_rows_match_cli(engine.cli, lambda: chat("@edge images"))
    assert "alpine" in out
    assert_rows_match_cli(engine.cli, lambda: chat("images --host edge alpine"), "alpine")


def test_pull_and_rmi_over_ssh(chat: ChatBot, engine: Engine) -> None:
    engine.cli("rmi", "busybox", check=False)
    out = chat("@edge pull busybox")
    assert "Status: Downloaded newer image for busybox:latest" in out
    full_id = engine.cli("image", "inspect", "--format", "{{.Id}}", "busybox").stdout.strip()
    card = chat("@edge rmi busybox")
    assert "Remove 1 image from edge?" in card
    assert f"busybox → {full_id[7:19]}" in card
    result = chat("confirm")
    assert "Untagged: busybox:latest" in result
    assert f"Deleted: {full_id}" in result
    assert not exists(engine, "busybox")


def test_sshd_down_is_reported_and_the_bot_goes_on(chat: ChatBot, sshd: Sshd) -> None:
    assert "Cannot reach" not in chat("@edge images")
    sshd.stop()  # the connection the bot holds drops with it
    try:
        dropped = chat("@edge images")  # on the connection that dropped, or a new attempt
        assert dropped.startswith("Cannot reach the Docker engine on host edge") and "ssh" in dropped
        assert chat("@edge images").strip() == (
            f"Cannot reach the Docker engine on host edge ({sshd.url}):"
            " cannot connect to its ssh server (is sshd running?)"
        )
        assert "2 Docker hosts, 1 up" in chat("hosts")
        assert "Cannot reach" not in chat("images")  # local goes on
    finally:
        sshd.start()
    assert "2 Docker hosts, 2 up" in chat("hosts"), "the same bot reconnects once sshd is back"


def test_host_key_and_client_key_are_checked(
    chat_over: ChatOver, sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = chat_over(sshd)
    stranger = tmp_path / "stranger"
    shutil.copytree(sshd.home, stranger)
    monkeypatch.setenv("HOME", str(stranger))
    (stranger / ".ssh" / "known_hosts").write_text("")
    assert "its ssh host key is not in the bot's known_hosts" in chat("@edge images")

    shutil.copy(sshd.home / ".ssh" / "known_hosts", stranger / ".ssh" / "known_hosts")
    keygen(stranger / "id_stranger")  # a key the server does not know
    (stranger / ".ssh" / "config").write_text(f"Host 127.0.0.1\n  IdentityFile {stranger / 'id_stranger'}\n")
    out = chat("@edge images")
    assert "ssh authentication failed (is the bot's key in the host's authorized_keys?)" in out


def test_a_remote_whose_docker_fails_is_reported(chat_over: ChatOver, tmp_path: Path) -> None:
    with Sshd(tmp_path / "nodocker", "unix:///nonexistent/docker.sock") as server:
        chat = chat_over(server)
        assert chat("@edge images").strip() == (
            f"Cannot reach the Docker engine on host edge ({server.url}): the engine closed the connection"
            " without an answer (ssh:// hosts: does docker system dial-stdio work there?)"
        )


def test_a_session_the_ssh_server_refuses_is_named(
    chat_over: ChatOver, sandbox: Sandbox, tmp_path: Path
) -> None:
    """sshd allows MaxSessions per login (10 by default; 1 here): a request that needs one more
    session than that is refused, and the reply names it, not "ChannelException"."""
    with Sshd(tmp_path / "onesession", sandbox.docker_host, max_sessions=1) as server:
        chat = chat_over(server)
        assert "2 up" in chat("hosts")
        # A stream holds the one session while referenced (docker-py cannot cancel one over ssh;
        # dropped, its connection goes back to the pool).
        held = chat.shell.router.services.hosts.get("edge").api.events(decode=True)
        out = chat("@edge images").strip()
        assert held is not None
        assert out == (
            f"Cannot reach the Docker engine on host edge ({server.url}): its ssh server refused another"
            " session (MaxSessions in its sshd_config, 10 by default)"
        )


def test_many_requests_at_once_share_a_few_sessions(sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-py alone opens a session per concurrent request: 10 of 12 failed against this sshd.
    The bot's host keeps one pool of SSH_SESSIONS; the rest wait their turn, up to the host timeout,
    and then get a reply that says why."""
    monkeypatch.setenv("HOME", str(sshd.home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    host = DockerHost("edge", sshd.url, timeout=3)
    try:
        with ThreadPoolExecutor(40) as pool:
            listings = list(
                pool.map(lambda i: host.api.images() if i % 2 else host.api.containers(all=True), range(40))
            )
        assert len(listings) == 40
        held = [host.api.events(decode=True) for _ in range(SSH_SESSIONS)]  # every session busy
        with pytest.raises(connection_errors()) as refused:
            host.api.images()
        assert len(held) == SSH_SESSIONS
        assert connection_cause(refused.value) == (
            f"all {SSH_SESSIONS} of the bot's ssh sessions to it stayed busy (long pulls?); try again later"
        )
    finally:
        host.close()


def test_a_stalled_pull_over_ssh_is_stopped(
    chat_over: ChatOver, sshd: Sshd, sandbox: Sandbox, fake_registry: FakeRegistry
) -> None:
    """The inactivity watchdog wakes the pull blocked reading the engine's stream; over ssh that
    stream is a paramiko channel, not a socket."""
    fake_registry.stall_blobs = True
    chat = chat_over(sshd, pull_inactivity_timeout=1.5)
    started = time.monotonic()
    out = final_message(chat(f"@edge pull {fake_registry.address}/{fresh_image(sandbox)}"))
    assert time.monotonic() - started < 8
    assert "No progress from the registry for 1.5 s; the pull was stopped." in out


def test_an_ssh_server_that_never_answers_is_given_up_on(
    chat_over: ChatOver, sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A port that accepts and then says nothing (a wedged sshd, a half-open proxy): the bot gives
    up after its handshake timeout, never later than the host's own timeout, and says why."""
    import socket
    import time

    silent = socket.create_server(("127.0.0.1", 0))
    try:
        url = f"ssh://{sshd.url.split('//', 1)[1].split('@')[0]}@127.0.0.1:{silent.getsockname()[1]}"
        stand_in = type("Silent", (), {"url": url, "home": sshd.home})()
        chat = chat_over(stand_in, docker_timeout=2)
        started = time.monotonic()
        reply = chat("@edge images").strip()
        assert time.monotonic() - started < 8
        assert reply == (
            f"Cannot reach the Docker engine on host edge ({url}):"
            " the ssh handshake did not complete (its server did not answer in time, or hung up)"
        )
        assert "local" in chat("hosts") and "edge" in chat("hosts")  # and the bot goes on
    finally:
        silent.close()


class Relay:
    """A TCP relay to the sshd, as a flaky link: `hang_up` makes it drop every connection it carries
    and, from then on, hang up on new ones just after relaying the server's banner (mid-handshake)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.hanging_up = False
        self.links: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.port))
                self.links += [client, server]
                if self.hanging_up:
                    client.sendall(server.recv(256))  # "SSH-2.0-OpenSSH_…": the handshake starts
                    client.close()
                    server.close()
                    continue
                for source, sink in ((client, server), (server, client)):
                    threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def hang_up(self) -> None:
        self.hanging_up = True
        for link in self.links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        self.hang_up()


def test_a_connection_dropped_mid_handshake_is_named(chat_over: ChatOver, sshd: Sshd, tmp_path: Path) -> None:
    """paramiko raises its transport's EOFError, not one of its SSHExceptions, when the server's end
    goes away before the session is up (and when a channel is being opened as the link drops): it
    once reached a user as "Something went wrong"."""
    relay = Relay(sshd.port)
    try:
        home = tmp_path / "relayed"  # the same client, trusting the same host key at the relay's port
        shutil.copytree(sshd.home, home)
        known_hosts = home / ".ssh" / "known_hosts"
        key = known_hosts.read_text().split(" ", 1)[1]
        known_hosts.write_text(f"[127.0.0.1]:{relay.address.split(':')[1]} {key}")
        url = f"ssh://{sshd.user}@{relay.address}"
        chat = chat_over(type("Relayed", (), {"url": url, "home": home})())
        assert "Cannot reach" not in chat("@edge images")
        relay.hang_up()  # the bot's connection drops; reconnecting, the server hangs up mid-handshake
        # Under load the first command may still find the dropped session (paramiko's transport
        # thread has not seen the hang-up yet) and says so; the next one reconnects.
        replies = [chat("@edge images").strip() for _ in range(2)]
        cannot = f"Cannot reach the Docker engine on host edge ({url}): "
        assert all(r.startswith(cannot) for r in replies), replies
        handshake = "the ssh handshake did not complete (its server did not answer in time, or hung up)"
        assert cannot + handshake in replies, replies
        assert "2 Docker hosts, 1 up" in chat("hosts")
        # The same EOFError from an established session (opening a channel as the link drops):
        assert isinstance(EOFError(), connection_errors())
        assert connection_cause(EOFError()) == "the ssh connection dropped"
    finally:
        relay.close()
