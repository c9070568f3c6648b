"""/docker audit [N]: the last N entries of the audit log (admins only)."""

from __future__ import annotations

import time

from bot.core.access import rank
from bot.core.commands import ArgParser, Command, Reply, Request, hosts_of
from bot.render.formatting import format_table, short_id
from bot.render.messages import Message, code_blocks, plain


def add_arguments(parser: ArgParser) -> None:
    parser.add_argument("count", nargs="?", type=int, default=20, help="how many entries (1–200, default 20)")


def run(req: Request, reply: Reply) -> None:
    store = req.services.store
    count = min(max(req.args.count, 1), 200)
    # Only entries of hosts where the asker may read the audit log (admin on each host they name).
    access = req.services.access

    def visible(spec: str) -> bool:
        names = hosts_of(req.services, spec or "all")  # no host: an entry about every host
        return all(
            rank(access.role(req.user, req.channel, n, local=req.local)) >= rank("admin") for n in names
        )

    entries = store.recent_audit(count, visible)
    if not entries:
        reply.send(plain("The audit log is empty."))
        return
    rows = [
        [
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["at"])),
            e["user"],
            e["channel"],
            e["host"],
            e["action"],
            short_id(e["image_id"]) if e["image_id"] else "-",
            (e["result"] or "")[:80],
        ]
        for e in entries
    ]
    table = format_table(["TIME (UTC)", "USER", "CHANNEL", "HOST", "ACTION", "IMAGE", "RESULT"], rows)
    reply.send(Message(text=f"Last {len(entries)} audit entries", blocks=code_blocks(table)))


COMMAND = Command(
    name="audit",
    summary="The audit log: who previewed, confirmed, cancelled or removed what (admins).",
    example="/docker audit 50",
    run=run,
    add_arguments=add_arguments,
    role="admin",
)
