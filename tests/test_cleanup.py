"""Cleanup policies on the real engine: the preview is exactly what the run removes, and in-use,
excluded, pinned and young images survive.

Images of a chosen age: the engine's Created is the image config's `created`, which `docker load`
keeps as it is, so `load_images` writes a docker-archive (manifest.json + config + one tiny layer)
with the dates a test needs. Loading is what `docker load` does; nothing about the engine is faked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import docker
import pytest

from bot.core.channels import channel_text, member_hint, parse_channel
from bot.core.commands import UsageError, UserError
from bot.core.router import Router
from bot.core.services import Services
from bot.engine.hosts import DockerHost
from bot.engine.ledger import Ledger
from bot.jobs import cleanup_run
from bot.jobs.cleanup import run_scheduled_cleanup
from bot.jobs.cleanup_plan import _filesystem_size, plan_cleanup
from bot.jobs.cleanup_report import summary_message
from bot.jobs.cleanup_run import execute_cleanup
from bot.jobs.policy import check_policies, parse_policy, resolve_policy
from bot.jobs.scheduler import Scheduler
from bot.render.messages import MAX_SECTION_TEXT, Message
from bot.render.mrkdwn import escape
from bot.render.text import render
from bot.sandbox import Engine
from bot.state.delivery import Delivery
from tests.chat import ChatBot
from tests.fakes.faulty_engine import FaultyEngine
from tests.fakes.images import Spec, load_images

# Every test here compares the bot with the docker CLI: once on each engine (tests/conftest.py).
pytestmark = pytest.mark.both_engines

DAY = 86400.0


# --------------------------------------------------------------------------------------------- images


def present(engine: Engine) -> set[str]:
    return set(engine.cli("images", "-q", "--no-trunc").stdout.split())


def image_id(engine: Engine, ref: str) -> str:
    return engine.cli("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


# --------------------------------------------------------------------------------------------- the mix


@dataclass
class Mix:
    ids: dict[str, str]  # name -> image ID

    def names(self, image_ids: set[str]) -> set[str]:
        back = {v: k for k, v in self.ids.items()}
        return {back.get(i, i) for i in image_ids}


MIX = {
    "dangling-old": Spec([], 400 * DAY),
    "dangling-young": Spec([], 600),
    "dangling-in-use": Spec(["gone/app:1"], 400 * DAY),  # its tag moves after a container is made from it
    "old": Spec(["old/app:1"], 300 * DAY),
    "mid": Spec(["mid/app:1"], 20 * DAY),
    "young": Spec(["new/app:1"], 600),
    "stopped": Spec(["stopped/app:1"], 300 * DAY),
    "postgres": Spec(["postgres:16"], 300 * DAY),
    "labelled": Spec(["labelled/app:1"], 300 * DAY, {"keep": "true"}),
    "pinned": Spec(["base/os:1"], 300 * DAY, {"dockerbot.pin": "true"}),
    "multi": Spec(["multi/app:a", "multi/app:b", "other/name:x"], 300 * DAY),
    **{f"many{i}": Spec([f"many/app:{i}"], (100 - i) * DAY) for i in range(1, 6)},
}


@pytest.fixture
def mix(clean_engine: Engine) -> Mix:
    """Dangling, old and new unused, used by a running and by stopped containers, excluded by glob
    and by label, pinned, and many tags of one repository (ages relative to now)."""
    ids = dict(zip(MIX, load_images(clean_engine, list(MIX.values())), strict=True))
    clean_engine.cli("pull", "-q", "redis:7")
    clean_engine.cli("run", "-d", "--name", "runs", "redis:7")
    ids["running"] = image_id(clean_engine, "redis:7")
    clean_engine.cli("create", "--name", "stopped-one", "stopped/app:1")
    clean_engine.cli("create", "--name", "orphan", "gone/app:1")
    # Loading another gone/app:1 moves the tag: the old image is dangling, and still used by "orphan".
    [ids["retagged"]] = load_images(clean_engine, [Spec(["gone/app:1"], 600)])
    return Mix(ids)


NEVER_REMOVED = {"running", "stopped", "dangling-in-use", "young", "dangling-young", "pinned", "retagged"}
OLD_TAGGED = {"old", "mid", "postgres", "labelled", "multi", "many1", "many2", "many3", "many4", "many5"}

POLICIES = {
    "dangling": {"dangling-old"},
    "unused": OLD_TAGGED,
    "unused --older-than 30d": OLD_TAGGED - {"mid"},
    "unused-since 14d": OLD_TAGGED | {"dangling-old"},
    # keep-newest counts per repository: a repository's only image is its newest (as docker-gc).
    "unused-since 14d, keep-newest 2, exclude postgres:* label=keep=true": {
        "many1",
        "many2",
        "many3",
        "dangling-old",
    },
    "unused, exclude multi/* old/app:1": OLD_TAGGED - {"multi", "old"},
    "unused, exclude-label keep=true, pin many/app:5": OLD_TAGGED - {"labelled", "many5"},
    "dangling, unused --older-than 200d, grace 0": {"dangling-old", "dangling-young"}
    | (OLD_TAGGED - {"mid", "many1", "many2", "many3", "many4", "many5"}),
    "disk-threshold 1B 0": OLD_TAGGED | {"dangling-old"},
    "disk-threshold 1TB 500GB": set(),
    "dangling, unused, grace 30d": {"dangling-old"} | (OLD_TAGGED - {"mid"}),
}


def host(services: Services) -> DockerHost:
    return services.hosts.default


@pytest.mark.parametrize("text", list(POLICIES))
def test_preview_is_exactly_what_the_run_removes(
    text: str, mix: Mix, services: Services, engine: Engine
) -> None:
    api = host(services).api
    policy = parse_policy(text)
    ledger = Ledger(services.store.engine)
    before = present(engine)
    plan = plan_cleanup(api, policy, host_name="local", ledger=ledger, now=time.time())
    predicted = {c.image_id for c in plan.candidates}
    assert mix.names(predicted) == POLICIES[text]

    result = execute_cleanup(api, plan)
    removed = {r.image_id for r in result.removed}
    assert removed == predicted, [s.reason for s in result.skipped if s.image_id in predicted]
    assert not result.errors
    assert present(engine) == before - predicted, "the engine agrees: exactly the previewed images went"
    for name in NEVER_REMOVED - POLICIES[text]:
        assert mix.ids[name] in present(engine), name
    assert len(engine.cli("ps", "-aq").stdout.split()) == 3, "containers are never touched"
    if predicted:
        assert result.after is not None and result.before is not None
        assert result.reclaimed == result.before - result.after > 0


def test_kept_images_say_why(mix: Mix, services: Services) -> None:
    policy = parse_policy("unused, exclude postgres:* label=keep=true, keep-newest 2")
    plan = plan_cleanup(host(services).api, policy, host_name="local", ledger=None, now=time.time())
    why = {mix.names({k.image_id}).pop(): (k.category, k.reason) for k in plan.kept}
    assert why["running"] == ("in use", "in use by runs (running)")
    assert why["stopped"] == ("in use", "in use by stopped-one (created)")
    assert why["postgres"] == ("excluded", "excluded by postgres:*")
    assert why["labelled"] == ("excluded", "excluded by label keep=true")
    assert why["pinned"] == ("pinned", "pinned by label dockerbot.pin")
    assert why["young"][0] == "too young" and "created 10 minutes ago (grace 1h)" in why["young"][1]
    assert why["many5"] == ("keep-newest", "keep-newest 2: one of the newest of many/app")
    assert "many3" not in why, "only the 2 newest of many/app are kept"
    assert plan.unmatched == 3, "the three dangling images are not `unused` (tagged) images"


def test_as_of_a_later_time_the_young_image_goes(mix: Mix, services: Services, engine: Engine) -> None:
    """`now` is a parameter: what the policy does in two hours needs no faked engine."""
    api = host(services).api
    policy = parse_policy("dangling")
    later = plan_cleanup(api, policy, host_name="local", ledger=None, now=time.time() + 7200)
    assert mix.names({c.image_id for c in later.candidates}) == {"dangling-old", "dangling-young"}
    assert {k.category for k in later.kept} == {"in use"}


def test_disk_threshold_evicts_least_recently_used_down_to_low(mix: Mix, services: Services) -> None:
    api = host(services).api
    ledger = Ledger(services.store.engine)
    ledger.touch("local", mix.ids["old"], time.time() - 2 * DAY, "test")  # the most recently used one
    plan = plan_cleanup(
        api, parse_policy("disk-threshold 1B 0"), host_name="local", ledger=ledger, now=time.time()
    )
    total = plan.images_total
    ids = [c.image_id for c in plan.candidates]
    assert ids[-1] == mix.ids["old"], "least recently used first; the one used 2 days ago last"
    # LOW just below the total: the first (least recently used) candidate is enough.
    policy = parse_policy(f"disk-threshold {total - 1}B {total - 1}B")
    plan = plan_cleanup(api, policy, host_name="local", ledger=ledger, now=time.time())
    assert [c.image_id for c in plan.candidates] == ids[:1]
    assert any(k.category == "below threshold" for k in plan.kept)
    assert any("evicting least recently used" in n for n in plan.notes)
    # Percent of the data-root filesystem (the sandbox engine's data root is on this machine).
    plan = plan_cleanup(
        api, parse_policy("disk-threshold 99% 98%"), host_name="local", ledger=ledger, now=time.time()
    )
    assert plan.candidates == [] and not plan.notes
    assert {k.category for k in plan.kept} >= {"below threshold"}


def test_a_run_rechecks_each_image(mix: Mix, services: Services, engine: Engine) -> None:
    api = host(services).api
    plan = plan_cleanup(api, parse_policy("unused"), host_name="local", ledger=None, now=time.time())
    engine.cli("tag", "many/app:1", "many/app:new")  # gained a tag after the preview
    engine.cli("create", "--name", "late", "many/app:2")  # now in use
    engine.cli("tag", "new/app:1", "old/app:1")  # the tag moved to an image the preview keeps (young)
    result = execute_cleanup(api, plan)
    skipped = {mix.names({s.image_id}).pop(): s for s in result.skipped}
    assert skipped["many1"].category == "changed" and "many/app:new" in skipped["many1"].reason
    assert skipped["many2"].category == "in use" and "late" in skipped["many2"].reason
    assert image_id(engine, "many/app:new") == mix.ids["many1"]
    assert image_id(engine, "many/app:2") == mix.ids["many2"]
    # The previewed image lost its tag and went by ID; the tag's new image was not touched.
    assert mix.ids["old"] in {r.image_id for r in result.removed}
    assert mix.ids["old"] not in present(engine)
    assert image_id(engine, "old/app:1") == mix.ids["young"]


def test_the_engine_refuses_what_became_used_and_the_run_goes_on(
    mix: Mix, services: Services, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the re-check and the removal a container can appear: no force, so the engine's 409 wins."""
    api = host(services).api
    plan = plan_cleanup(api, parse_policy("unused"), host_name="local", ledger=None, now=time.time())
    real = cleanup_run._recheck

    def recheck_then_race(cand, fresh):  # type: ignore[no-untyped-def]
        current, skip = real(cand, fresh)
        if cand.image_id == mix.ids["old"]:  # the race, made to happen: a container right after the check
            engine.cli("create", "--name", "racer", "old/app:1")
        return current, skip

    monkeypatch.setattr(cleanup_run, "_recheck", recheck_then_race)
    result = execute_cleanup(api, plan, workers=1)
    skipped = {s.image_id: s for s in result.skipped}
    assert skipped[mix.ids["old"]].category == "conflict"
    assert "is using its referenced image" in skipped[mix.ids["old"]].reason
    assert mix.ids["old"] in present(engine)
    assert len(result.removed) == len(plan.candidates) - 1, "one refusal never stops the others"


# --------------------------------------------------------------------------------------------- parsing


def test_policy_text_is_normalised_and_rules_compose() -> None:
    policy = parse_policy("Unused-Since 14d ; keep-newest 3, exclude postgres:* label=keep=true, pin base/*")
    assert (
        policy.text
        == "unused-since 14d, keep-newest 3, exclude postgres:* label=keep=true, pin base/*, grace 1h"
    )
    assert policy.excludes == ("postgres:*",) and policy.exclude_labels == (("keep", "true"),)
    assert policy.selectors[0].age == 14 * DAY and policy.keep_newest == 3 and policy.pins == ("base/*",)
    assert parse_policy("").text == "dangling, grace 1h"
    assert parse_policy("unused --older-than 2w, grace 0").grace == 0
    assert parse_policy("unused --older-than=1h30m").selectors[0].age == 5400
    high, low = parse_policy("disk-threshold 10GB 500MiB").threshold or ()
    assert (high.value, low.value) == (10e9, 500 * 2**20)
    assert parse_policy("disk-threshold 85% 80%, build-cache").build_cache


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("unused-since forever", "`unused-since forever`: `forever` is not a duration"),
        ("keep-newest x", "`keep-newest x`: N must be a whole number"),
        ("keep-newest 0", "`keep-newest 0`: N must be a whole number of at least 1"),
        ("disk-threshold 10GB 20GB", "LOW (20GB) must not be above HIGH (10GB)"),
        ("disk-threshold lots", "`lots` is not a size"),
        ("disk-threshold 120% 80%", "`120%` must be between 0% and 100%"),
        ("unused, unused", "`unused` appears twice"),
        ("unused --newer-than 3d", "write `unused` or `unused --older-than 30d`"),
        ("exclude", "`exclude`: wrong arguments"),
        ("delete-everything", "Unknown cleanup rule `delete-everything`"),
        ("exclude label==x", "is not a label"),
    ],
)
def test_a_bad_rule_is_named(text: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_policy(text)
    assert message in str(caught.value)


def test_named_policies_from_the_bot_config() -> None:
    """`policies:` in DOCKERBOT_CONFIG arrive as services.policies (name -> rules)."""
    services = SimpleNamespace(
        policies={"nightly": "unused-since 14d, keep-newest 3"}, settings=SimpleNamespace()
    )
    assert resolve_policy("nightly", services).title == "nightly (unused-since 14d, keep-newest 3, grace 1h)"
    assert resolve_policy(None, services).text == "dangling, grace 1h"
    services.policies["bad"] = "keep-newest lots"
    with pytest.raises(UserError, match="policies: `bad`: `keep-newest lots`"):
        resolve_policy("nightly", services)


@pytest.mark.parametrize("name", ["dangling", "keep-newest", "a b", "-x", ""])
def test_a_policy_name_that_reads_as_a_rule_or_is_malformed_is_refused(name: str) -> None:
    with pytest.raises(UserError, match="cannot name a policy"):
        check_policies({name: "dangling"})


# `--channel` of `cleanup schedule` and `report schedule` (bot/core/channels.py).
@pytest.mark.parametrize(
    ("text", "channel"),
    [
        ("<#C0123ABC|ops>", "C0123ABC"),
        ("<#C0123ABC>", "C0123ABC"),
        ("<#C0123ABCD|ops>", "C0123ABCD"),
        ("<#C0123ABCD>", "C0123ABCD"),
        ("<#G0PRIVATE|secret-ops>", "G0PRIVATE"),
        ("C0123ABC", "C0123ABC"),
        ("C0123ABCD", "C0123ABCD"),
        ("G0123ABCD", "G0123ABCD"),
        ("D0123ABCD", "D0123ABCD"),
        (" C0123ABCD ", "C0123ABCD"),
    ],
)
def test_channel_forms(text: str, channel: str) -> None:
    assert parse_channel(text) == channel


@pytest.mark.parametrize("text", ["#ops-alerts", "#release.v2_ci", "ops", "#" + "a" * 80])
def test_a_channel_name_is_refused_with_what_to_give(text: str) -> None:
    """Schedules keep IDs: files.completeUploadExternal takes only a channel ID, and names change."""
    with pytest.raises(UsageError, match=r"needs the channel's ID, not its name `#[a-z]") as refused:
        parse_channel(text)
    assert "leave `--channel` out" in str(refused.value) and "C0123ABCD" in str(refused.value)


NOT_CHANNELS = [
    "ops alerts", "bad name!", "#Ops", "#", "", "#" + "a" * 81, "X0123ABCD", "C", "c0123abc!",
    "<#c0123abc>", "<#C0123ABCD", "<@U0123ABCD>", "#-ops",
]  # fmt: skip


@pytest.mark.parametrize("text", NOT_CHANNELS)
def test_not_a_channel_gets_the_usage(text: str) -> None:
    with pytest.raises(UsageError, match="is not a channel: give a channel ID such as C0123ABCD"):
        parse_channel(text)


def test_a_reply_mentions_an_id_and_shows_a_name() -> None:
    assert escape(channel_text("C0123ABCD")) == "<#C0123ABCD>"  # live: the bot resolved it
    assert escape(channel_text("D0123ABCD")) == "<#D0123ABCD>"
    assert channel_text("#ops") == "#ops"
    assert channel_text("terminal") == "terminal"


def test_scheduling_into_a_channel_says_the_bot_must_be_in_it() -> None:
    assert "`/invite @dockerbot` there" in member_hint("C0123ABCD")
    assert "member of #ops" in member_hint("#ops")
    assert member_hint("terminal") == ""


# --------------------------------------------------------------------------------------------- chat


def test_preview_then_now_with_confirm_in_chat(mix: Mix, chat: ChatBot, engine: Engine) -> None:
    policy = '--policy "unused-since 14d, keep-newest 2, exclude postgres:* label=keep=true"'
    preview = chat(f"cleanup preview {policy}")
    expected = POLICIES["unused-since 14d, keep-newest 2, exclude postgres:* label=keep=true"]
    assert f"Would remove {len(expected)} images" in preview
    for name in expected:
        assert mix.ids[name][7:19] in preview, name
    assert "in use by runs (running)" in preview and "excluded by postgres:*" in preview
    assert "keep-newest 2: one of the newest of many/app" in preview
    assert present(engine) >= {mix.ids[n] for n in expected}, "a preview changes nothing"

    card = chat(f"cleanup now {policy}")
    assert "Run this cleanup on local?" in card and "[Confirm] [Cancel]" in card
    assert present(engine) >= {mix.ids[n] for n in expected}, "the card itself changes nothing"
    result = chat("confirm")
    assert f"{len(expected)} images removed" in result
    assert "Untagged" not in result, "the engine's lines go in the file, the message has the table"
    assert "Total reclaimed space:" in result
    assert not present(engine) & {mix.ids[n] for n in expected}
    assert "Unknown command confirm" in chat("confirm"), "the card's buttons are gone"


def test_the_card_has_rmis_guarantees(mix: Mix, chat: ChatBot, router: Router, engine: Engine) -> None:
    chat('cleanup now --policy "dangling"')
    assert "Only terminal, who asked, or an admin can decide this" in chat.press_as("confirm", "U999")
    assert mix.ids["dangling-old"] in present(engine)
    assert "Cancelled by terminal. Nothing was changed." in chat("cancel")
    assert mix.ids["dangling-old"] in present(engine)

    assert "needs the admin role" in chat.say_as("cleanup now", "U555")
    assert router.services.store.recent_audit(1)[0]["action"] == "cleanup.refused"

    chat('cleanup now --policy "dangling"')
    card = chat.card()  # a second press of the same card
    first = chat.press_as("confirm", "terminal", local=True, card=card)
    second = chat.press_as("confirm", "terminal", local=True, card=card)
    assert "1 image removed" in first and "Already done" in second
    assert mix.ids["dangling-old"] not in present(engine)
    actions = [e["action"] for e in router.services.store.recent_audit(10)]
    assert "cleanup.remove" in actions and "cleanup.preview" in actions


def test_nothing_to_remove_posts_no_card(clean_engine: Engine, chat: ChatBot) -> None:
    out = chat("cleanup now")
    assert "nothing to do" in out and "Nothing to remove" in out and "[Confirm]" not in out


def test_bad_input_gets_a_short_reply(chat: ChatBot) -> None:
    assert "Say what to do: preview, now, schedule" in chat("cleanup")
    assert "Unknown cleanup rule sometimes" in chat('cleanup preview --policy "sometimes"')
    assert "invalid choice" in chat("cleanup sweep")
    assert "Scheduling is not running in this process." in chat("cleanup list")


# --------------------------------------------------------------------------------------------- summaries


def test_engine_down_still_gets_a_summary(services: Services) -> None:
    down = DockerHost(name="down", url="unix:///nonexistent/dockerbot-cleanup.sock")
    message = run_scheduled_cleanup(services, down, {"policy": "unused"})
    text = render(message)
    assert "Cleanup on down could not run" in text
    assert "Cannot reach the Docker engine on down" in text
    assert "Total reclaimed space: 0B" in text
    bad = render(run_scheduled_cleanup(services, host(services), {"policy": "unused-since soon"}))
    assert "Bad policy" in bad and "soon is not a duration" in bad


def test_a_long_run_folds_into_one_message_with_a_file(clean_engine: Engine, services: Services) -> None:
    ids = load_images(clean_engine, [Spec([f"bulk/app:{i}"], 30 * DAY) for i in range(25)])
    api = host(services).api
    plan = plan_cleanup(api, parse_policy("unused"), host_name="local", ledger=None, now=time.time())
    assert len(plan.candidates) == 25
    result = execute_cleanup(api, plan)
    assert {r.image_id for r in result.removed} == set(ids)
    message = summary_message("local", result)
    assert len(message.blocks) <= 49, "room for the scheduler's next-run line"
    for block in message.blocks:
        assert len(block.get("text", {}).get("text", "")) <= MAX_SECTION_TEXT
    text = render(message)
    assert "25 images removed" in text and "…and 5 more" in text
    assert message.facts["reclaimed"] == result.reclaimed > 0 and message.facts["removed"] == 25
    assert len(message.files) == 1
    report = str(message.files[0].content)
    assert all(f"Deleted: {i}" in report for i in ids)
    assert "Total reclaimed space: " in report


def test_build_cache_is_pruned_when_asked(clean_engine: Engine, services: Services) -> None:
    api = host(services).api
    policy = parse_policy("dangling, build-cache")
    plan = plan_cleanup(api, policy, host_name="local", ledger=None, now=time.time())
    assert isinstance(plan.build_cache, int)
    result = execute_cleanup(api, plan, prune_build_cache=True)
    assert result.build_cache_reclaimed is not None and not result.errors
    assert "Build cache" in render(summary_message("local", result))


# --------------------------------------------------------------------------------------------- schedules


class Posted:
    def __init__(self) -> None:
        self.messages: list[tuple[str, Message]] = []

    def post(self, channel: str, message: Message) -> None:
        self.messages.append((channel, message))


@pytest.fixture
def scheduled(services: Services) -> Iterator[tuple[Services, Posted]]:
    posted = Posted()
    scheduler = Scheduler(services, Delivery(services.store.engine, posted))
    services.scheduler = scheduler
    scheduler.start(paused=True)  # nothing fires by the clock; tests run schedules themselves
    try:
        yield services, posted
    finally:
        scheduler.shutdown(wait=False)
        services.scheduler = None


def test_schedule_list_pause_resume_run_cancel(
    mix: Mix, scheduled: tuple[Services, Posted], engine: Engine
) -> None:
    services, posted = scheduled
    chat = ChatBot(Router(services))
    out = chat('cleanup schedule "0 3 * * *" --policy "dangling" --channel <#C0OPS|ops> --tz Europe/Berlin')
    assert "Scheduled cleanup" in out and "(Europe/Berlin)" in out and "<#C0OPS>" in out
    [made] = services.scheduler.list("cleanup")
    assert (made.cron, made.timezone, made.channel, made.params) == (
        "0 3 * * *",
        "Europe/Berlin",
        "C0OPS",
        {"policy": "dangling"},
    )
    assert made.next_run is not None and made.next_run.hour == 3
    listing = chat("cleanup list")
    assert made.id in listing and "Europe/Berlin" in listing and "active" in listing
    berlin = f"{made.next_run:%Y-%m-%d} 03:00 CE"  # CET or CEST: the zone the schedule was given
    assert berlin in listing
    assert "Paused" in chat(f"cleanup pause {made.id}") and "paused" in chat("cleanup list")
    assert "Resumed" in chat(f"cleanup resume {made.id}")

    services.scheduler.run(made.id)  # what the clock would do at 03:00, without confirmation
    [(channel, message)] = posted.messages
    text = render(message)
    assert channel == "C0OPS"
    assert "Cleanup on local: 1 image removed" in text and "Total reclaimed space:" in text
    assert f"Schedule `{made.id}` · next run {berlin}" in message.blocks[-1]["elements"][0]["text"]
    assert mix.ids["dangling-old"] not in present(engine)
    assert mix.ids["dangling-young"] in present(engine)

    assert "Cancelled" in chat(f"cleanup cancel {made.id}")
    assert "No cleanup schedules" in chat("cleanup list")
    assert "There is no schedule" in chat(f"cleanup pause {made.id}")


def test_schedules_are_for_admins_and_bad_ones_are_refused(scheduled: tuple[Services, Posted]) -> None:
    services, _ = scheduled
    chat = ChatBot(Router(services))
    assert "needs the admin role" in chat.say_as('cleanup schedule "0 3 * * *"', "U555")
    assert "not a cron expression" in chat('cleanup schedule "0 3 * *"')
    assert "Unknown time zone" in chat('cleanup schedule "0 3 * * *" --tz Mars/Olympus')
    assert "Unknown cleanup rule" in chat('cleanup schedule "0 3 * * *" --policy "everything"')
    assert "is not a channel" in chat('cleanup schedule "0 3 * * *" --channel "ops room"')
    assert services.scheduler.list("cleanup") == [], "nothing bad was scheduled"
    out = chat("cleanup schedule 30 2 * * 1-5")  # unquoted cron words are joined
    assert "30 2 * * 1-5" in out
    assert len(services.scheduler.list("cleanup")) == 1


def test_a_percent_threshold_is_not_measured_on_this_machine_for_a_remote_engine() -> None:
    """A tcp:// engine's data root may exist here as a path on another disk: never statvfs it."""
    remote = docker.APIClient(base_url="tcp://127.0.0.1:9", version="1.41")  # never contacted
    size, problem = _filesystem_size(remote, "edge")
    assert size is None and problem and "edge is reached over the network" in problem


def test_a_refused_df_costs_the_figure_never_the_removals(
    services: Services, clean_engine: Engine, tmp_path: Path
) -> None:
    """The engine may refuse /system/df while another caller runs one (Engine 20.10: HTTP 500, "a
    disk usage operation is already running"): the run still removes what it previewed and says so."""
    [dangling] = load_images(clean_engine, [Spec([], 30 * DAY)])
    policy = parse_policy("dangling, grace 0")
    plan = plan_cleanup(services.hosts.default.api, policy, host_name="local", ledger=None, now=time.time())
    assert [c.image_id for c in plan.candidates] == [dangling]
    with FaultyEngine(tmp_path / "busy.sock", str(clean_engine.socket), refuse=r"/system/df") as busy:
        result = execute_cleanup(DockerHost(name="local", url=busy.url).api, plan)
        assert busy.refused, "the run asked for df, and the engine refused it"
    assert [r.image_id for r in result.removed] == [dangling]
    assert dangling not in present(clean_engine)
    text = render(summary_message("local", result))
    assert "Cleanup on local: 1 image removed, reclaimed space unknown" in text
    assert "a disk usage operation is already running" in text
    assert "Total reclaimed space: unknown" in text and "could not run" not in text
