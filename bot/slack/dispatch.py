"""Where an acknowledged Slack request goes: `LocalDispatch` runs it on a thread pool in this process
(the worker process, or the tests' in-process bot); bot.runtime.worker.WorkerProcess forwards it there."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core.router import Router
from bot.slack.client import count_api_error
from bot.slack.home import publish_home
from bot.slack.reply import SlackRef, SlackReply

log = logging.getLogger("dockerbot.slack")


class Dispatch(Protocol):
    """Where acknowledged requests go (Slack's request bodies, as Bolt parsed them)."""

    def command(self, body: dict[str, Any]) -> None: ...

    def button(self, body: dict[str, Any]) -> None: ...

    def home_opened(self, user: str) -> None: ...


class LocalDispatch:
    """Runs acknowledged requests on a thread pool in this process, answering through `client`."""

    def __init__(self, router: Router, client: WebClient, work: ThreadPoolExecutor) -> None:
        self.router = router
        self.client = client
        self.work = work
        # Roles granted to user groups: members come from Slack, refreshed in the background.
        groups = router.services.access.groups
        groups.fetch = lambda group: client.usergroups_users_list(usergroup=group)["users"]
        groups.start()

    # `done`, if given, is called when the work has finished, however it ended; `live` with each
    # message posted to be updated as the work goes on.
    def command(
        self,
        body: dict[str, Any],
        done: Callable[[], None] | None = None,
        live: Callable[[SlackRef], None] | None = None,
    ) -> None:
        user, channel = body.get("user_id", ""), body.get("channel_id", "")
        response_url = body.get("response_url")
        reply = SlackReply(self.client, channel=channel, user=user, response_url=response_url, on_live=live)
        work = partial(self.router.handle, body.get("text", ""), user=user, channel=channel, reply=reply)
        self._submit(work, done)

    def button(
        self,
        body: dict[str, Any],
        done: Callable[[], None] | None = None,
        live: Callable[[SlackRef], None] | None = None,
    ) -> None:
        action = body["actions"][0]
        user = body.get("user", {}).get("id", "")
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id", "")
        response_url = body.get("response_url")
        ref = SlackRef(channel=channel, ts=container.get("message_ts"), response_url=response_url)
        reply = SlackReply(self.client, channel=channel, user=user, response_url=response_url, on_live=live)
        work = partial(
            self.router.press,
            action["action_id"],
            action.get("value", ""),
            user=user,
            channel=channel,
            message=ref,
            reply=reply,
        )
        self._submit(work, done)

    def home_opened(self, user: str, done: Callable[[], None] | None = None) -> None:
        self._submit(partial(publish_home, self.client, self.router.services, user), done)

    def _submit(self, work: Callable[[], Any], done: Callable[[], None] | None) -> None:
        def guarded() -> None:
            try:
                work()
            except Exception as error:  # a failing reply must not kill the worker silently
                if isinstance(error, SlackApiError):
                    count_api_error(error)
                log.exception("could not deliver a reply to Slack")
            finally:
                if done is not None:
                    done()

        self.work.submit(guarded)
