"""The private parts of the pinned libraries the bot relies on are still there, as it uses them.

Each of these is used in one place (bot/engine/compat.py, bot/slack/socket_mode.py,
bot/slack/http.py); a library upgrade that drops or changes one fails here first."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import docker
import slack_bolt.adapter.socket_mode.internals as bolt_socket_internals
import urllib3
from slack_sdk.socket_mode.builtin import SocketModeClient
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bot.engine import compat

ROOT = Path(__file__).resolve().parent.parent


def _params(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_docker_py_api_client_internals() -> None:
    api = docker.APIClient
    source = inspect.getsource(docker.api.client)  # _get and _post are wrapped by update_headers
    assert "def _get(self, url, **kwargs):" in source and "def _post(self, url, **kwargs):" in source
    assert _params(api._url)[:2] == ["self", "pathfmt"]
    assert _params(api._result) == ["self", "response", "json", "binary"]
    assert _params(api._stream_helper) == ["self", "response", "decode"]
    assert _params(api._raise_for_status) == ["self", "response"]
    assert _params(api._retrieve_server_version) == ["self"]


def test_docker_py_builds_its_ssh_adapter_by_name() -> None:
    import docker.api.client as client_module

    assert "SSHHTTPAdapter(" in inspect.getsource(client_module.APIClient.__init__)
    base = compat.ssh_adapter_base()
    assert base.__module__ == compat.SSH_TRANSPORT
    for name in ("_create_paramiko_client", "_connect", "get_connection"):
        assert callable(getattr(base, name))
    assert "ssh_params" in inspect.getsource(base._create_paramiko_client)


def test_docker_py_skips_its_ssh_transport_if_it_cannot_be_imported() -> None:
    """defer_ssh_transport relies on this: docker-py imports the transport in try/except ImportError."""
    import docker.api.client as client_module
    import docker.transport as transport_package

    for module in (transport_package, client_module):
        source = inspect.getsource(module)
        at = source.index("SSHHTTPAdapter\n")
        assert source.rfind("try:", 0, at) > source.rfind("\n\n", 0, at), module.__name__
        assert source.find("except ImportError:", at) == at + len("SSHHTTPAdapter\n")


def _imported_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter has imported after running `code`."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return {name.split(".")[0] for name in done.stdout.split()}


def test_docker_does_not_import_paramiko_until_an_ssh_host_connects() -> None:
    ssh_stack = {"paramiko", "cryptography", "nacl", "bcrypt"}
    loaded = _imported_after(
        "import bot.engine.hosts, docker\ndocker.APIClient(base_url='unix:///x', version='1.41')"
    )
    assert "docker" in loaded and not loaded & ssh_stack
    # An ssh:// host imports it (connecting fails: nothing listens on port 9), and it is docker-py's.
    loaded = _imported_after(
        textwrap.dedent("""
        from bot.engine.hosts import DockerHost, EngineUnavailable
        try:
            DockerHost("edge", "ssh://nobody@127.0.0.1:9", timeout=2).client()
        except EngineUnavailable as error:
            assert "cannot connect to its ssh server" in str(error), error
        import docker.api.client, docker.transport.sshconn
        assert issubclass(docker.api.client.SSHHTTPAdapter, docker.transport.sshconn.SSHHTTPAdapter)
        """)
    )
    assert "paramiko" in loaded


def test_urllib3_pool_waits_in_get_conn() -> None:
    pool_class = urllib3.HTTPConnectionPool
    assert _params(pool_class._get_conn) == ["self", "timeout"]
    assert "_get_conn(timeout=" in inspect.getsource(pool_class.urlopen)


def test_wait_for_free_connection_blocks_a_pool_and_keeps_keyword_calls() -> None:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=1)
    compat.wait_for_free_connection(pool, 0.2)
    assert pool.block
    connection = pool._get_conn(timeout=None)  # as urlopen calls it
    try:
        pool._get_conn()  # none free: waits 0.2 s, then urllib3's EmptyPoolError
    except urllib3.exceptions.EmptyPoolError:
        pass
    else:
        raise AssertionError("a blocking pool with no free connection must not open another")
    pool._put_conn(connection)


def test_bolt_socket_mode_internals() -> None:
    assert _params(bolt_socket_internals.build_headers) == ["req"]
    assert _params(bolt_socket_internals.send_response)[:4] == ["client", "req", "bolt_resp", "start_time"]
    assert _params(SocketModeClient.enqueue_message) == ["self", "message"]


def test_uvicorn_httptools_protocol_hooks() -> None:
    for name in ("on_header", "on_headers_complete", "data_received"):
        assert callable(getattr(HttpToolsProtocol, name)), name


def test_engine_address_tells_unix_sockets_apart() -> None:
    # dfcall keys its one-at-a-time lock by engine: every unix client's base_url is the same.
    one = docker.APIClient(base_url="unix:///tmp/one.sock", version="1.41")
    two = docker.APIClient(base_url="unix:///tmp/two.sock", version="1.41")
    tcp = docker.APIClient(base_url="tcp://127.0.0.1:2375", version="1.41")
    try:
        assert one.base_url == two.base_url
        addresses = {compat.engine_address(c) for c in (one, two, tcp)}
        assert len(addresses) == 3 and any("/tmp/one.sock" in a for a in addresses)
    finally:
        for client in (one, two, tcp):
            client.close()
