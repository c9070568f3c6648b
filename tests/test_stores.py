"""Where the classic image store (Engine 20.10) and the containerd image store (Engine 28) differ, on
both engines with each one's own CLI as the oracle (issue 14): image counts, digest-only pulls in the
report, the classic builder's intermediate images under `dangling`, and df callers that meet."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import pytest

from bot.core.router import Router
from bot.core.services import Services
from bot.jobs.cleanup_plan import plan_cleanup
from bot.jobs.cleanup_report import summary_message
from bot.jobs.cleanup_run import execute_cleanup
from bot.jobs.policy import parse_policy
from bot.jobs.report import build_report
from bot.render.text import render
from bot.sandbox import Engine, Sandbox
from tests.chat import ChatBot
from tests.conftest import store_of
from tests.fakes.multiplatform import push_two_platform_index
from tests.test_images import assert_rows_match_cli
from tests.test_rmi import predicted_untags, untagged_lines

pytestmark = pytest.mark.both_engines


def ids(engine: Engine, *args: str) -> set[str]:
    return set(engine.cli("images", "-q", "--no-trunc", *args).stdout.split())


def test_hosts_counts_images_not_tags(chat: ChatBot, clean_engine: Engine) -> None:
    # One image tagged three ways in two repositories, and another image: two images. The containerd
    # store's `docker info` counts image records (4 here); `docker images` and `system df` count 2.
    clean_engine.cli("pull", "ubuntu")
    clean_engine.cli("pull", "alpine")
    clean_engine.cli("tag", "alpine", "alpine:two")
    clean_engine.cli("tag", "alpine", "other/name:x")
    df_total = clean_engine.cli("system", "df", "--format", "{{.Type}} {{.TotalCount}}").stdout
    assert "Images 2" in df_total.splitlines()
    assert len(ids(clean_engine)) == 2
    out = chat("hosts")
    [row] = [line for line in out.splitlines() if line.startswith("local")]
    assert re.split(r" {2,}", row)[3] == "2", out


def test_report_names_a_digest_only_image_as_the_cli(services: Services, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "ubuntu")
    ref = clean_engine.cli(
        "image", "inspect", "--format", "{{index .RepoDigests 0}}", "ubuntu"
    ).stdout.strip()
    clean_engine.cli("rmi", "ubuntu")
    clean_engine.cli("pull", ref)
    rows = clean_engine.cli("images", "--format", "{{.Repository}} {{.Tag}}").stdout.splitlines()
    assert rows == ["ubuntu <none>"]
    text = render(build_report(services, services.hosts.default))
    unused = text[text.index("Unused for longest") :]
    assert "ubuntu:<none>" in unused, unused
    assert "@sha256" not in text, text


def build_twice(engine: Engine) -> str:
    """Two classic-builder builds of built:1 sharing their first steps: the first one's image is left
    dangling, and each build leaves intermediate images. Returns the image built:1 now names."""
    for label in ("one", "two"):
        dockerfile = f'FROM alpine\nLABEL step=a\nRUN ["/bin/busybox", "touch", "/x"]\nLABEL build={label}\n'
        engine.cli("build", "-q", "-t", "built:1", "-", input=dockerfile.encode())
    return engine.cli("image", "inspect", "--format", "{{.Id}}", "built:1").stdout.strip()


def test_dangling_grace_0_removes_what_image_prune_removes(services: Services, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "alpine")
    build_twice(clean_engine)
    api = services.hosts.default.api
    plan = plan_cleanup(
        api, parse_policy("dangling, grace 0"), host_name="local", ledger=None, now=time.time()
    )
    predicted = {c.image_id for c in plan.candidates}
    everything = ids(clean_engine, "-a")
    # The oracle: `docker image prune` on the same state (it prints the IDs it deleted; the classic
    # store also prints removed layers, which are no images).
    out = clean_engine.cli("image", "prune", "-f").stdout
    pruned = {line.split()[-1] for line in out.splitlines() if line.startswith("deleted: ")} & everything
    assert predicted == pruned, (predicted, pruned)
    if store_of(clean_engine) == "classic":
        # The classic store keeps intermediate images as parents of built:1: only the old top goes.
        assert len(pruned) == 1
    else:
        # The containerd store keeps no parent chain: prune takes the intermediate images too.
        assert len(pruned) > 1


def test_cleanup_runs_what_prune_would_and_says_what_the_figure_is(
    services: Services, clean_engine: Engine
) -> None:
    clean_engine.cli("pull", "alpine")
    build_twice(clean_engine)
    api = services.hosts.default.api
    plan = plan_cleanup(
        api, parse_policy("dangling, grace 0"), host_name="local", ledger=None, now=time.time()
    )
    result = execute_cleanup(api, plan)
    assert not result.errors and not [
        s for s in result.skipped if s.image_id in {c.image_id for c in plan.candidates}
    ]
    assert ids(clean_engine, "--filter", "dangling=true") == set(), "nothing prune would remove is left"
    text = render(summary_message("local", result))
    assert "docker system df" in text, text  # the figure is named for what it is


def test_viewers_and_a_removal_meet_on_one_host(router: Router, clean_engine: Engine) -> None:
    # hosts, report now and App Home's table all read /system/df; the classic engine (API < 1.42)
    # refuses a second one at a time. Twenty readers at once plus a Confirm: every one answers.
    clean_engine.cli("pull", "alpine")
    clean_engine.cli("pull", "ubuntu")
    chat = ChatBot(router)
    chat("rmi alpine")
    outputs: list[str] = []
    barrier = threading.Barrier(21)

    def reader(i: int) -> None:
        barrier.wait()
        outputs.append(ChatBot(router)("hosts" if i % 2 else "report now"))

    def confirm() -> None:
        barrier.wait()
        outputs.append(chat("confirm"))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(20)]
    threads.append(threading.Thread(target=confirm))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outputs) == 21
    bad = [o for o in outputs if "already running" in o or "could not" in o.lower() or "Traceback" in o]
    assert bad == []
    assert any("Total reclaimed space:" in o and "Deleted: " in o for o in outputs)
    assert "alpine" not in clean_engine.cli("images", "--format", "{{.Repository}}").stdout


def test_each_engine_has_its_store_its_cli_and_its_own_containerd(engine: Engine) -> None:
    info = engine.cli("info", "--format", "{{.Driver}} {{json .DriverStatus}} {{.ServerVersion}}").stdout
    client = engine.cli("version", "--format", "{{.Client.Version}}").stdout.strip()
    if store_of(engine) == "classic":
        assert info.startswith("overlay2 ") and "snapshotter" not in info, info
        return
    assert "io.containerd.snapshotter.v1" in info, info
    assert info.split()[-1] == client, "the newer engine is compared with its own CLI"
    # dockerd started the containerd unpacked beside it, on a socket under its own exec root.
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    mine = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if str(engine.root) in cmdline and exe.endswith("/containerd"):
            mine.append(exe)
    assert mine and all(exe.startswith(engine.binaries.path[0]) for exe in mine), mine


def test_a_two_platform_image_of_which_one_is_pulled(
    chat: ChatBot, clean_engine: Engine, sandbox: Sandbox
) -> None:
    index = push_two_platform_index(sandbox.registry, "library/alpine", "latest", "twoplat")
    clean_engine.cli("pull", "alpine")
    clean_engine.cli("pull", "alpine:twoplat")
    assert_rows_match_cli(clean_engine.cli, lambda: chat("/docker images"))
    assert_rows_match_cli(
        clean_engine.cli, lambda: chat("/docker images --digests"), "--digests", digests=True
    )
    twoplat = clean_engine.cli("image", "inspect", "--format", "{{.Id}}", "alpine:twoplat").stdout.strip()
    latest = clean_engine.cli("image", "inspect", "--format", "{{.Id}}", "alpine:latest").stdout.strip()
    if store_of(clean_engine) == "classic":
        # The classic store keeps the pulled platform's image: its ID is the config digest, the same
        # image alpine:latest is. The index is remembered only as a repo digest.
        assert twoplat == latest
    else:
        # The containerd store keeps the index itself as the image (ID = index digest), with only
        # the amd64 platform's content present: a second image beside alpine:latest.
        assert twoplat == index and twoplat != latest
    out = chat("hosts")
    [row] = [line for line in out.splitlines() if line.startswith("local")]
    assert re.split(r" {2,}", row)[3] == str(len(ids(clean_engine))), out
    card = chat("rmi alpine:twoplat")
    result = chat("confirm")
    assert untagged_lines(result) == predicted_untags(card), (card, result)
    assert ("Deleted: " in result) == (store_of(clean_engine) == "containerd"), result
    assert clean_engine.cli("image", "inspect", "alpine:latest", check=False).returncode == 0
    clean_engine.cli("create", "--name", "still-whole", "alpine:latest")  # every layer still there
