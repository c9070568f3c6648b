"""/docker pull NAME[:TAG|@DIGEST]: pull an image, showing the engine's progress in one live message."""

from __future__ import annotations

import time

from bot.core.commands import ActionRequest, ArgParser, Command, Reply, Request, UserError
from bot.core.confirmations import may_press
from bot.core.live import LiveMessage
from bot.core.services import Services
from bot.core.settings import max_pulls
from bot.engine.hosts import DockerHost, EngineUnavailable, connection_cause, connection_errors
from bot.engine.pulling import PullError, PullSnapshot, registry_auth
from bot.engine.reference import Reference, parse_reference
from bot.render.messages import Message, code_blocks, context, section

LIVE_INTERVAL = 1.0  # Slack: about one chat.update per second per message


def add_arguments(parser: ArgParser) -> None:
    parser.add_argument(
        "name",
        metavar="NAME[:TAG|@DIGEST]",
        help="image to pull, e.g. redis:7, registry.example.com:5000/team/app:1.2",
    )


def run(req: Request, reply: Reply) -> None:
    pull(req.args.name, req.host, req.services, reply, user=req.user)


def on_pull_button(req: ActionRequest, reply: Reply) -> None:
    # The value is an image name from a search result; it is parsed like typed text, nothing more.
    if may_press(req, reply, "operator", req.host.name, "pull.refused"):
        pull(req.value.strip(), req.host, req.services, reply, user=req.user)


def pull(text: str, host: DockerHost, services: Services, reply: Reply, *, user: str) -> None:
    """Validate `text` (nothing reaches the engine if it is not a reference), then pull it live,
    within the caps on pulls waiting at once (per user, per host, in all: PullBusy otherwise)."""
    settings = services.settings
    typed = parse_reference(text)
    with services.pull_slots.take(
        user,
        host.name,
        per_user=settings.max_pulls_per_user,
        per_host=settings.max_pulls_per_host,
        total=max_pulls(settings),
    ):
        _pull(typed, host, services, reply)


def _pull(typed: Reference, host: DockerHost, services: Services, reply: Reply) -> None:
    settings = services.settings
    ref = typed.with_default_tag()
    view = PullView(ref, host, defaulted=not (typed.tag or typed.digest))
    # Slack's rate limit sets the pace of updates; an adapter without one (the terminal) says so.
    live = LiveMessage(
        reply,
        min_interval=getattr(reply, "update_interval", LIVE_INTERVAL),
        final_waits=getattr(reply, "rate_limited", True),
    )
    live.show(view.render(PullSnapshot()))

    def on_update(snapshot: PullSnapshot) -> None:
        live.show(view.render(snapshot))

    try:
        result = services.pulls.pull(
            host,
            ref,
            on_update,
            auth=registry_auth(settings, ref.domain),
            inactivity_timeout=settings.pull_inactivity_timeout,
            deadline=settings.pull_deadline,
            on_join=view.joined,
        )
    except PullError as error:
        live.finish(view.render_error(error.lines, error.text, error.hint))
        return
    except UserError as error:  # e.g. the engine is down (EngineUnavailable)
        live.finish(view.render_error((), str(error), "", engine=False))
        return
    except connection_errors() as error:
        problem = str(EngineUnavailable(host, connection_cause(error)))
        live.finish(view.render_error((), problem, "", engine=False))
        return
    except Exception:
        live.finish(view.render_error((), "The pull stopped with an unexpected error.", "", engine=False))
        raise  # the router logs it and replies with an error id
    live.finish(view.render(result, done=True))


class PullView:
    """What a user sees: the CLI's output for the pull, as a code block, plus a line of context."""

    def __init__(self, ref: Reference, host: DockerHost, *, defaulted: bool) -> None:
        self.ref = ref
        self.host = host
        self.defaulted = defaulted
        self.started = time.monotonic()
        self.followed = False

    def joined(self) -> None:
        self.followed = True

    def _head(self) -> list[str]:
        return ["Using default tag: latest"] if self.defaulted else []

    def _context(self, state: str) -> str:
        note = state.format(host=f"host `{self.host.name}`")
        if self.followed:
            note += " · the same pull was already running, so this follows it"
        return note

    def render(self, snapshot: PullSnapshot, *, done: bool = False) -> Message:
        lines = [*self._head(), *snapshot.lines]
        if done:
            lines.append(self.ref.canonical())
            elapsed = time.monotonic() - self.started
            state = f"Pulled in {elapsed:.1f} s on {{host}}"
            text = snapshot.status or f"Pulled {self.ref.familiar()}"
        else:
            lines = lines or [f"Pulling {self.ref.familiar()} …"]
            state = "Pulling on {host}…"
            text = f"Pulling {self.ref.familiar()}…"
        return Message(
            text=text,
            blocks=[*code_blocks("\n".join(lines)), context(self._context(state))],
            in_channel=True,
            keep="end",
        )

    def render_error(
        self, lines: tuple[str, ...], problem: str, hint: str, *, engine: bool = True
    ) -> Message:
        """`engine`: the engine's own text, shown verbatim at the end of the CLI output; else our mrkdwn."""
        shown = [*self._head(), *lines, *([problem] if engine else [])]
        blocks = code_blocks("\n".join(shown)) if shown else []
        if not engine:
            blocks.append(section(problem))
        if hint:
            blocks.append(section(hint))
        blocks.append(context(self._context(f"Pull of `{self.ref.familiar()}` failed on {{host}}")))
        return Message(text=problem, blocks=blocks, in_channel=True, keep="end")


COMMAND = Command(
    name="pull",
    summary="Pull an image, with live per-layer progress.",
    example="/docker pull redis:7",
    run=run,
    add_arguments=add_arguments,
    actions={"pull.start": on_pull_button},
    role="operator",
)
