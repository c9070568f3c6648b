"""The last-use ledger: fed by the real engine's events, kept across restarts, and what makes
`unused-since 14d` mean "not used for 14 days" rather than "built 14 days ago"."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from bot.core.services import Services, build_services
from bot.engine.ledger import Ledger
from bot.jobs.cleanup_plan import plan_cleanup
from bot.jobs.cleanup_run import execute_cleanup
from bot.jobs.policy import parse_policy
from bot.sandbox import Engine
from handlers import COMMANDS
from tests.test_cleanup import DAY, Spec, image_id, load_images, present


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the ledger")
        time.sleep(0.05)


@pytest.fixture
def watching(services: Services) -> Iterator[Ledger]:
    ledger = Ledger(services.store.engine, throttle=0)
    ledger.start_watching([services.hosts.default])
    time.sleep(0.3)  # the stream is open before the test acts
    try:
        yield ledger
    finally:
        ledger.stop()


def test_touch_keeps_the_newest_and_seed_only_fills_gaps(services: Services, clean_engine: Engine) -> None:
    [old, other] = load_images(clean_engine, [Spec(["seed/a:1"], 50 * DAY), Spec(["seed/b:1"], 60 * DAY)])
    ledger = Ledger(services.store.engine)
    ledger.touch("local", old, 2000.0, "test")
    ledger.touch("local", old, 1000.0, "older")  # never moves back in time
    assert ledger.last_used("local", old) == 2000.0
    images = services.hosts.default.api.images()
    assert ledger.seed("local", images) == 1, "only the image never seen is new"
    created = {i["Id"]: i["Created"] for i in images}
    assert ledger.last_used("local", other) == created[other], "first sight: its Created time (docuum)"
    assert ledger.last_used("local", old) == 2000.0
    assert ledger.last_used("elsewhere", old) is None, "per host"
    ledger.forget("local", old)
    assert ledger.last_used("local", old) is None


def test_events_touch_the_images_containers_and_pulls_use(
    watching: Ledger, clean_engine: Engine, services: Services
) -> None:
    [old] = load_images(clean_engine, [Spec(["events/app:1"], 300 * DAY)])
    wait_for(lambda: watching.last_used("local", old) is not None)  # the load event
    t0 = time.time() - 1
    watching.forget("local", old)
    clean_engine.cli("create", "--name", "user", "events/app:1")
    wait_for(lambda: (watching.last_used("local", old) or 0) > t0)
    assert watching.all_last_used("local")[old][1].startswith("container ")

    clean_engine.cli("pull", "-q", "busybox")
    busybox = image_id(clean_engine, "busybox")
    wait_for(lambda: (watching.last_used("local", busybox) or 0) > t0)

    clean_engine.cli("rm", "user")
    clean_engine.cli("rmi", "events/app:1")
    wait_for(lambda: watching.last_used("local", old) is None)  # a deleted image is forgotten


def test_the_watcher_follows_the_engine_through_a_restart(
    watching: Ledger, clean_engine: Engine, services: Services
) -> None:
    [old] = load_images(clean_engine, [Spec(["restart/app:1"], 300 * DAY)])
    clean_engine.stop()
    try:
        time.sleep(1.5)  # the watcher sees the stream end and backs off
    finally:
        clean_engine.start()
    t0 = time.time() - 1
    clean_engine.cli("create", "--name", "after-restart", "restart/app:1")
    wait_for(lambda: (watching.last_used("local", old) or 0) > t0, timeout=45)


def test_an_old_image_used_yesterday_is_not_removed_by_unused_since(
    clean_engine: Engine, services: Services
) -> None:
    """Both images were built 300 days ago; one was used by a container "yesterday" (we use it now
    and evaluate the policy as of tomorrow). Created-based pruning would take both."""
    # Loaded before the bot watches (a load counts as a use, as a pull does): first seen at the plan.
    used, unused = load_images(
        clean_engine, [Spec(["yesterday/app:1"], 300 * DAY), Spec(["never/app:1"], 300 * DAY)]
    )
    watching = Ledger(services.store.engine)
    watching.start_watching([services.hosts.default])
    time.sleep(0.3)
    t0 = time.time() - 1
    clean_engine.cli("create", "--name", "briefly", "yesterday/app:1")
    clean_engine.cli("rm", "briefly")
    wait_for(lambda: (watching.last_used("local", used) or 0) > t0)
    watching.stop()

    api = services.hosts.default.api
    tomorrow = time.time() + DAY
    policy = parse_policy("unused-since 14d")
    plan = plan_cleanup(api, policy, host_name="local", ledger=watching, now=tomorrow)
    assert [c.image_id for c in plan.candidates] == [unused]
    kept = {k.image_id: k for k in plan.kept}
    assert kept[used].category == "recently used"
    assert kept[used].reason == "last used 24 hours ago (< unused-since 14d)"

    # Without the ledger's memory (a fresh database) the same image would go: the test can fail.
    other = build_services(
        services.settings.model_copy(update={"data_dir": services.settings.data_dir / "x"}), COMMANDS
    )
    try:
        blind = plan_cleanup(api, policy, host_name="local", ledger=Ledger(other.store.engine), now=tomorrow)
        assert {c.image_id for c in blind.candidates} == {used, unused}
    finally:
        other.close()

    result = execute_cleanup(api, plan)
    assert [r.image_id for r in result.removed] == [unused]
    assert used in present(clean_engine) and unused not in present(clean_engine)


def test_the_ledger_survives_a_restart(services: Services, clean_engine: Engine) -> None:
    [image] = load_images(clean_engine, [Spec(["kept/app:1"], 300 * DAY)])
    yesterday = time.time() - DAY
    Ledger(services.store.engine).touch("local", image, yesterday, "container start")
    services.close()
    restarted = build_services(services.settings, COMMANDS)  # same data dir: what a new process sees
    try:
        ledger = Ledger(restarted.store.engine)
        assert ledger.last_used("local", image) == pytest.approx(yesterday)
        plan = plan_cleanup(
            restarted.hosts.default.api,
            parse_policy("unused-since 14d"),
            host_name="local",
            ledger=ledger,
            now=time.time(),
        )
        assert image not in {c.image_id for c in plan.candidates}
    finally:
        restarted.close()


def test_a_plan_seeds_unknown_images_and_refreshes_those_in_use(
    services: Services, clean_engine: Engine
) -> None:
    [idle, busy] = load_images(clean_engine, [Spec(["idle/app:1"], 40 * DAY), Spec(["busy/app:1"], 40 * DAY)])
    clean_engine.cli("create", "--name", "holder", "busy/app:1")
    ledger = Ledger(services.store.engine)
    before = time.time()
    plan = plan_cleanup(
        services.hosts.default.api,
        parse_policy("unused-since 14d"),
        host_name="local",
        ledger=ledger,
        now=before,
        record=True,  # a run
    )
    assert [c.image_id for c in plan.candidates] == [idle]
    assert {k.image_id: k.reason for k in plan.kept}[busy] == "in use by holder (created)"
    known = ledger.all_last_used("local")
    assert known[idle][1] == "created" and known[idle][0] < before - 39 * DAY
    assert known[busy][1] == "in use" and known[busy][0] >= before


def test_concurrent_touches_are_safe(services: Services) -> None:
    ledger = Ledger(services.store.engine)
    errors: list[BaseException] = []

    def hammer(n: int) -> None:
        try:
            for i in range(50):
                ledger.touch("local", f"sha256:{i:064x}", float(n * 1000 + i), f"t{n}")
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert ledger.last_used("local", f"sha256:{49:064x}") == 7049.0


def test_a_preview_reads_the_ledger_and_a_run_writes_it(services: Services, clean_engine: Engine) -> None:
    """A viewer may preview: that must not change the bot's state. A run records first sight."""
    [image] = load_images(clean_engine, [Spec(["preview/app:1"], 30 * DAY)])
    ledger = Ledger(services.store.engine)
    policy = parse_policy("unused-since 14d")
    preview = plan_cleanup(
        services.hosts.default.api, policy, host_name="local", ledger=ledger, now=time.time()
    )
    assert [c.image_id for c in preview.candidates] == [image], "first sight counts as its Created time"
    assert ledger.all_last_used("local") == {}, "the preview wrote nothing"
    plan_cleanup(
        services.hosts.default.api, policy, host_name="local", ledger=ledger, now=time.time(), record=True
    )
    assert set(ledger.all_last_used("local")) == {image}
