"""The checks every button press on a confirmation card passes, shared by rmi and cleanup.

The card's buttons carry only the pending action's opaque id. A press is refused (privately,
audited, nothing changed) unless the id is known, of the right kind, pressed in the card's
channel, and by someone who is an admin on the card's host now; then the action is claimed atomically, so a
second press or a retried delivery sees "already done".
"""

from __future__ import annotations

import time

from bot.core.access import rank
from bot.core.commands import ActionRequest, Reply
from bot.render.messages import Block, actions, button, mention, plain
from bot.state.store import PendingAction


def decide(req: ActionRequest, reply: Reply, kind: str, new_state: str) -> PendingAction | None:
    """The pending action when this press may go ahead as `new_state`; None when it must stop here."""
    store = req.services.store
    audit = dict(user=req.user, channel=req.channel, request_id=req.request_id)
    pending = store.get_pending(req.value)
    if pending is None or pending.kind != kind:
        store.audit(**audit, host="?", action=f"{kind}.refused", result="unknown or forged confirmation id")
        reply.private(plain("This confirmation is unknown. Nothing was changed."))
        return None
    if pending.channel != req.channel:
        store.audit(
            **audit, host=pending.host, action=f"{kind}.refused", result="pressed from another channel"
        )
        reply.private(plain("This confirmation belongs to another channel. Nothing was changed."))
        return None
    # The requester or another admin; checked at every press, so a role revoked since the card wins.
    if not may_press(req, reply, "admin", pending.host, f"{kind}.refused", asker=pending.user):
        return None
    claim = store.claim(pending.id, by=req.user, new_state=new_state)
    if claim.won:
        return claim.action
    action = claim.action
    if claim.reason == "expired" and action is not None:
        store.audit(**audit, host=action.host, action=f"{kind}.expired", result="pressed after expiry")
        reply.update(
            req.message, plain(f"This confirmation expired. Nothing was changed. Run `/docker {kind}` again.")
        )
    elif action is not None and action.state == "cancelled":
        reply.private(
            plain(f"Already cancelled by {mention(action.decided_by or '?')}. Nothing was changed.")
        )
    else:
        who = mention(action.decided_by or "?") if action else "someone"
        reply.private(plain(f"Already done (confirmed by {who}). Nothing was run twice."))
    return None


def may_press(
    req: ActionRequest, reply: Reply, needed: str, host: str, action: str, asker: str | None = None
) -> bool:
    """Whether the presser holds `needed` on `host` now; if not, a private, audited refusal."""
    # Removing is at stake: the user groups granting the role are read from Slack now, not the cache.
    role = req.role_on(host, fresh=rank(needed) >= rank("admin"))
    if rank(role) >= rank(needed):
        return True
    req.services.store.audit(
        user=req.user,
        channel=req.channel,
        host=host,
        action=action,
        result=f"needs {needed}, has {role or 'none'}",
        request_id=req.request_id,
    )
    who = f"Only {mention(asker)}, who asked, or an admin can decide this" if asker else "That button"
    reply.private(plain(f"{who} (it needs the *{needed}* role on host `{host}`). Nothing was changed."))
    return False


def cancel(req: ActionRequest, reply: Reply, kind: str) -> None:
    """The Cancel button: the card says who cancelled; nothing else happens."""
    pending = decide(req, reply, kind, "cancelled")
    if pending is None:
        return
    # It stays "cancelled", so a later press on a stale copy of the card says so.
    req.services.store.finish(pending.id, "cancelled", state="cancelled")
    req.services.store.audit(
        user=req.user,
        channel=req.channel,
        host=pending.host,
        action=f"{kind}.cancel",
        result="cancelled",
        request_id=req.request_id,
    )
    reply.update(req.message, plain(f"Cancelled by {mention(req.user)}. Nothing was changed."))


def expires_text(pending: PendingAction) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(pending.expires_at))


def decision_buttons(kind: str, pending: PendingAction, title: str, warning: str) -> Block:
    """Confirm (danger, behind Slack's own dialog) and Cancel; both carry only the pending id."""
    return actions(
        button("Confirm", f"{kind}.confirm", pending.id, style="danger", confirm=(title, warning)),
        button("Cancel", f"{kind}.cancel", pending.id),
    )
