"""/docker rmi: a card first, removal only on Confirm, and never the wrong thing — on the real engine."""

from __future__ import annotations

import contextlib
import re
import threading
import time

import pytest

from bot.core.router import Router
from bot.core.services import Services, build_services
from bot.engine.dfcall import BUSY
from bot.engine.diskusage import images_usage
from bot.jobs.report import system_df
from bot.sandbox import Engine
from handlers import COMMANDS
from tests.chat import ChatBot
from tests.conftest import store_of

# Every test here compares the bot with the docker CLI: once on each engine (tests/conftest.py).
pytestmark = pytest.mark.both_engines


def image_id(engine: Engine, ref: str) -> str:
    return engine.cli("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def exists(engine: Engine, ref: str) -> bool:
    return engine.cli("image", "inspect", ref, check=False).returncode == 0


def test_rmi_by_tag_shows_a_card_and_removes_only_on_confirm(chat: ChatBot, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "ubuntu")
    full_id = image_id(clean_engine, "ubuntu")
    card = chat("rmi ubuntu")
    assert "Remove 1 image from local?" in card
    assert f"ubuntu → {full_id[7:19]}" in card
    assert "delete the image" in card
    assert "[Confirm] [Cancel]" in card
    assert exists(clean_engine, "ubuntu"), "the command itself must not remove anything"
    result = chat("Confirm")
    assert "Untagged: ubuntu:latest" in result
    assert f"Deleted: {full_id}" in result
    assert "Total reclaimed space:" in result
    assert not exists(clean_engine, "ubuntu")


def test_cancel_removes_nothing_and_says_who(chat: ChatBot, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "alpine")
    chat("rmi alpine")
    assert "Cancelled by terminal. Nothing was changed." in chat("cancel")
    assert exists(clean_engine, "alpine")
    assert "Unknown command confirm" in chat("confirm"), "the buttons are gone from the card"


def test_confirm_on_a_stale_copy_of_a_cancelled_card_says_who_cancelled(
    chat: ChatBot, clean_engine: Engine
) -> None:
    clean_engine.cli("pull", "alpine")
    chat("rmi alpine")
    stale = chat.card()  # another client still shows the card with its buttons
    chat("cancel")
    out = chat.press_as("confirm", "terminal", local=True, card=stale)
    assert "Already cancelled by terminal. Nothing was changed." in out
    assert exists(clean_engine, "alpine")


def test_several_refs_by_id_prefix_digest_and_missing(chat: ChatBot, clean_engine: Engine) -> None:
    for name in ("ubuntu", "alpine", "nginx"):
        clean_engine.cli("pull", name)
    alpine_prefix = image_id(clean_engine, "alpine")[7:15]
    nginx_digest = clean_engine.cli(
        "image", "inspect", "--format", "{{index .RepoDigests 0}}", "nginx"
    ).stdout.strip()
    card = chat(f"rmi ubuntu {alpine_prefix} {nginx_digest} z")
    assert "Remove 3 images from local?" in card
    assert "Error: No such object: z" in card
    result = chat("confirm")
    assert "Untagged: ubuntu:latest" in result
    assert not exists(clean_engine, "ubuntu") and not exists(clean_engine, "alpine")
    if store_of(clean_engine) == "classic":
        # The classic store keeps name@digest as a reference of its own: removing it leaves the tag.
        assert f"untag {nginx_digest} only; still tagged nginx:latest" in card
        assert f"Untagged: {nginx_digest}" in result
        assert exists(clean_engine, "nginx:latest"), "a digest ref untags the digest; the tag keeps the image"
    else:
        # The containerd store has no digest references: name@digest removes every record of that
        # repository pointing at the image (here nginx:latest), and then the image.
        assert "untag nginx:latest and delete the image" in card
        assert "Untagged: nginx:latest" in result and f"Untagged: {nginx_digest}" not in result
        assert not exists(clean_engine, "nginx")


def test_shared_layers_stay_with_the_other_image(chat: ChatBot, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "redis:6")
    clean_engine.cli("pull", "redis:7")
    card = chat("rmi redis:6")
    assert "stays in layers other images share" in card
    chat("confirm")
    assert not exists(clean_engine, "redis:6")
    assert exists(clean_engine, "redis:7")
    # Creating a container needs every layer of redis:7 on disk.
    clean_engine.cli("create", "--name", "layers-present", "redis:7")
    clean_engine.cli("rm", "layers-present")


def test_two_tags_untag_conflict_and_force(chat: ChatBot, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "ubuntu")
    clean_engine.cli("tag", "ubuntu", "ubuntu:extra")
    full_id = image_id(clean_engine, "ubuntu")
    card = chat("rmi ubuntu:extra")
    assert "untag ubuntu:extra only; still tagged ubuntu:latest" in card
    result = chat("confirm")
    assert "Untagged: ubuntu:extra" in result and "Deleted" not in result
    assert exists(clean_engine, "ubuntu:latest")

    clean_engine.cli("tag", "ubuntu", "ubuntu:extra")
    card = chat(f"rmi {full_id[7:19]}")
    assert "referenced in multiple repositories" in card
    result = chat("confirm")
    assert "unable to delete" in result and "must be forced" in result
    assert exists(clean_engine, "ubuntu:extra")

    chat(f"rmi --force {full_id[7:19]}")
    result = chat("confirm")
    assert "Untagged: ubuntu:latest" in result and "Untagged: ubuntu:extra" in result
    assert f"Deleted: {full_id}" in result
    assert not exists(clean_engine, full_id)


def test_containers_block_removal_and_are_named(chat: ChatBot, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "busybox")
    clean_engine.cli("create", "--name", "stopped-one", "busybox")
    card = chat("rmi busybox")
    assert "stopped-one" in card and "untagging needs --force" in card
    result = chat("confirm")
    assert "container" in result and "is using its referenced image" in result
    assert exists(clean_engine, "busybox")

    clean_engine.cli("pull", "alpine")
    running = clean_engine.cli("run", "-d", "--name", "running-one", "alpine").stdout.strip()
    alpine_id = image_id(clean_engine, "alpine")
    card = chat(f"rmi --force {alpine_id[7:19]}")
    assert "running-one" in card and "not even --force removes it" in card
    result = chat("confirm")
    assert f"image is being used by running container {running[:12]}" in result
    assert exists(clean_engine, "alpine")


def test_a_tag_moved_after_the_card_is_not_touched(chat: ChatBot, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "ubuntu")
    clean_engine.cli("pull", "redis:7")
    old = image_id(clean_engine, "ubuntu")
    chat("rmi ubuntu")
    clean_engine.cli("tag", "redis:7", "ubuntu:latest")  # the tag now points elsewhere
    result = chat("confirm")
    assert "now points at" in result and "not touched" in result
    assert image_id(clean_engine, "ubuntu:latest") == image_id(clean_engine, "redis:7")
    assert exists(clean_engine, old)


def test_ten_presses_at_once_execute_once(chat: ChatBot, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "ubuntu")
    chat("rmi ubuntu")
    barrier = threading.Barrier(10)
    outputs: list[str] = []

    def go() -> None:
        barrier.wait()
        outputs.append(chat.press_as("confirm", "terminal", local=True))

    threads = [threading.Thread(target=go) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    transcript = chat.transcript
    assert transcript.count("Untagged: ubuntu:latest") == 1
    assert transcript.count("Already done") == 9


def test_another_user_is_refused_and_nothing_changes(chat: ChatBot, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "ubuntu")
    chat("rmi ubuntu")
    out = chat.press_as("confirm", "U999")
    assert (
        "Only terminal, who asked, or an admin can decide this (it needs the admin role on host local)."
        in out
    )
    assert exists(clean_engine, "ubuntu")
    assert "Untagged: ubuntu:latest" in chat("confirm"), "the card still works for the requester"


def test_expired_card_removes_nothing(services: Services, clean_engine: Engine) -> None:
    now = [time.time()]
    services.store.clock = lambda: now[0]
    chat = ChatBot(Router(services))
    clean_engine.cli("pull", "ubuntu")
    chat("rmi ubuntu")
    now[0] += services.settings.confirm_ttl + 1
    assert "This confirmation expired. Nothing was changed." in chat("confirm")
    assert exists(clean_engine, "ubuntu")


def test_confirm_still_works_after_a_restart(services: Services, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "ubuntu")
    first = ChatBot(Router(services))
    first("rmi ubuntu")
    assert "confirm" in first.shell.buttons
    services.close()
    restarted = build_services(services.settings, COMMANDS)  # same data dir: a new process would see the same
    try:
        second = ChatBot(Router(restarted))
        second.shell.buttons, second.shell.buttons_ref = first.shell.buttons, first.shell.buttons_ref
        assert "Untagged: ubuntu:latest" in second("confirm")
    finally:
        restarted.close()
    assert not exists(clean_engine, "ubuntu")


def test_non_admins_cannot_start_an_rmi(router: Router, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "ubuntu")
    out = ChatBot(router).say_as("rmi ubuntu", "U555")
    assert "needs the admin role" in out
    assert exists(clean_engine, "ubuntu")
    assert router.services.store.recent_audit(1)[0]["action"] == "rmi.refused"


def test_audit_records_preview_confirm_and_removal(
    chat: ChatBot, clean_engine: Engine, router: Router
) -> None:
    clean_engine.cli("pull", "ubuntu")
    chat("rmi ubuntu")
    chat("confirm")
    actions = [e["action"] for e in router.services.store.recent_audit(10)]
    assert actions[:2] == ["rmi.remove", "rmi.preview"]


def test_audit_command_shows_entries_to_admins_only(
    chat: ChatBot, clean_engine: Engine, router: Router
) -> None:
    clean_engine.cli("pull", "ubuntu")
    chat("rmi ubuntu")
    chat("cancel")
    out = chat("audit 5")
    assert "rmi.cancel" in out and "rmi.preview" in out
    assert "needs the admin role on host local" in chat.say_as("audit", "U555")


# --------------------------------------------------------------------------------------------- issue 14


def predicted_untags(card: str) -> set[str]:
    """The refs the card says will be untagged, from its `untag a, b and delete …` / `untag a only`."""
    found: set[str] = set()
    for match in re.finditer(r"— untag (.+?) (?:and delete|only)", card.replace("*", "").replace("`", "")):
        found |= set(match.group(1).split(", "))
    return found


def untagged_lines(result: str) -> set[str]:
    return {line.removeprefix("Untagged: ") for line in result.splitlines() if line.startswith("Untagged: ")}


@pytest.mark.parametrize("refs", ["nginx", "nginx nginx:two"])
def test_the_card_predicts_exactly_the_untagged_lines_the_engine_prints(
    chat: ChatBot, clean_engine: Engine, refs: str
) -> None:
    # The classic store prints `Untagged: nginx@sha256:…` after the last tag of a repository; the
    # containerd store never does (it keeps no digest references), so the card must not predict it.
    clean_engine.cli("pull", "nginx")
    if refs != "nginx":
        clean_engine.cli("tag", "nginx", "nginx:two")
    card = chat(f"rmi {refs}")
    result = chat("confirm")
    assert "Deleted: " in result, result
    assert untagged_lines(result) == predicted_untags(card), (card, result)


def test_a_digest_only_image_is_named_once(chat: ChatBot, clean_engine: Engine) -> None:
    # Pulled by digest alone: the containerd store lists it with RepoTags ["ubuntu@sha256:…"].
    clean_engine.cli("pull", "ubuntu")
    digest_ref = clean_engine.cli("image", "inspect", "--format", "{{index .RepoDigests 0}}", "ubuntu")
    ref = digest_ref.stdout.strip()
    clean_engine.cli("rmi", "ubuntu")
    clean_engine.cli("pull", ref)
    card = chat(f"rmi {ref}")
    assert card.count(ref) == 2, card  # the ref as typed, and once in "untag `…`"
    assert predicted_untags(card) == {ref}
    result = chat("confirm")
    assert untagged_lines(result) == {ref}, result
    assert not exists(clean_engine, ref)


@pytest.mark.parametrize("order", ["id first", "tag first"])
def test_one_image_named_by_id_prefix_and_by_tag_is_listed_once(
    chat: ChatBot, clean_engine: Engine, order: str
) -> None:
    clean_engine.cli("pull", "alpine")
    full_id = image_id(clean_engine, "alpine")
    alone = chat("rmi alpine")
    chat("cancel")
    refs = [full_id[7:19], "alpine"] if order == "id first" else ["alpine", full_id[7:19]]
    card = chat(f"rmi {' '.join(refs)}")
    assert "Remove 1 image from local?" in card, card
    assert card.count(f"→ {full_id[7:19]}") == 1, card
    assert f"{full_id[7:19]} → {full_id[7:19]} — untag alpine:latest and delete the image" in card
    frees = re.search(r"Frees (about|at most) (\S+)", card)
    assert frees is not None and frees.group(0) in alone, (card, alone)
    result = chat("confirm")
    assert result.count(f"Deleted: {full_id}") == 1, result
    assert "Untagged: alpine:latest" in result
    assert "already gone" not in result and "No such image" not in result


def test_a_gone_image_after_confirm_reads_as_the_cli_says(chat: ChatBot, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "alpine")
    clean_engine.cli("pull", "ubuntu")
    ubuntu_prefix = image_id(clean_engine, "ubuntu")[7:19]
    chat(f"rmi alpine {ubuntu_prefix}")
    clean_engine.cli("rmi", "alpine", "ubuntu")  # someone else was faster
    result = chat("confirm")
    for ref in ("alpine", ubuntu_prefix):
        cli = clean_engine.cli("rmi", ref, check=False)
        assert cli.returncode != 0
        assert cli.stderr.strip() in result, (cli.stderr, result)


_UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def _bytes(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)([kMG]?B)", text)
    assert match is not None, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def reclaimed(result: str) -> str:
    match = re.search(r"Total reclaimed space: (\S+)", result)
    assert match is not None, result
    return match.group(1)


def test_images_sharing_layers_removed_together_free_them_all(chat: ChatBot, clean_engine: Engine) -> None:
    # Every seed image shares the busybox layer: removing both frees it too.
    clean_engine.cli("pull", "ubuntu")
    clean_engine.cli("pull", "alpine")
    card = chat("rmi ubuntu alpine")
    assert "stays in layers other images share" not in card, card
    frees = re.search(r"Frees about (\S+)", card)
    assert frees is not None, card
    result = chat("confirm")
    assert frees.group(1) == reclaimed(result), (card, result)


def test_one_of_two_images_sharing_layers_is_estimated_right(chat: ChatBot, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "ubuntu")
    clean_engine.cli("pull", "alpine")
    card = chat("rmi alpine")
    assert "stays in layers other images share" in card
    if store_of(clean_engine) == "classic":
        frees = re.search(r"Frees about (\S+)", card)
        assert frees is not None, card
        assert frees.group(1) == reclaimed(chat("confirm"))
    else:
        # The containerd store's df counts the compressed busybox layer, which both images share in its
        # content store, as each image's own (SharedSize covers unpacked snapshots only): the card can
        # only give an upper bound, and says so.
        frees = re.search(r"Frees at most (\S+)", card)
        assert frees is not None, card
        assert _bytes(reclaimed(chat("confirm"))) <= _bytes(frees.group(1))


def raw_df_burst(engine: Engine, n: int = 40) -> list[str]:
    """n concurrent GET /system/df from separate clients (as other tools would); the errors returned."""
    errors: list[str] = []
    barrier = threading.Barrier(n)

    def one() -> None:
        client = engine.client()
        try:
            barrier.wait()
            client.api.df()
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(str(error))
        finally:
            client.close()

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_df_callers_share_one_call(services: Services, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "ubuntu")
    # The engine's own rule first. Engines before API 1.42 (Engine 23) refuse a second concurrent
    # /system/df with "a disk usage operation is already running"; later ones (the containerd-store
    # engine here) make it wait for the running one. So the burst below reaches the refusal on the
    # classic engine, and on the newer one shows there is none.
    refusals = [e for _ in range(5) for e in raw_df_burst(clean_engine) if BUSY in e]
    if store_of(clean_engine) == "classic":
        assert refusals, "the burst did not overlap: the test below would prove nothing"
    else:
        assert not refusals, refusals
    api = services.hosts.default.api
    errors: list[str] = []
    barrier = threading.Barrier(40)

    def bot_caller(i: int) -> None:
        barrier.wait()
        try:
            if i % 2:
                images_usage(api)
            else:
                system_df(api)
        except Exception as error:  # noqa: BLE001
            errors.append(str(error))

    threads = [threading.Thread(target=bot_caller, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_df_failure_never_fails_or_consumes_a_confirm(chat: ChatBot, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "alpine")
    full_id = image_id(clean_engine, "alpine")
    chat("rmi alpine")
    stop = threading.Event()

    def hammer() -> None:  # other clients keep the engine's df busy during the Confirm
        client = clean_engine.client()
        try:
            while not stop.is_set():
                with contextlib.suppress(Exception):
                    client.api.df()
        finally:
            client.close()

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        result = chat("confirm")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert f"Deleted: {full_id}" in result, result
    assert "Total reclaimed space:" in result
    assert "could not" not in result.lower() and "Already done" not in result
    assert not exists(clean_engine, "alpine")
