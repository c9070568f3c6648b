"""Every table of the bot's database, on one MetaData: the schema (bot.state.schema) creates and
migrates them; the modules that read and write them import them from here."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

# Confirmations (rmi, cleanup, pull cards): single use by an atomic UPDATE … WHERE state='pending'.
pending_actions = Table(
    "pending_actions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("user", String(64), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("state", String(16), nullable=False, default="pending"),
    Column("decided_by", String(64)),
    Column("decided_at", Float),
    Column("result", Text),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("user", String(64), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("image_id", String(80)),
    Column("tags", JSON),
    Column("result", Text, nullable=False),
    Column("request_id", String(32)),
)

# Scheduled posts Slack did not take yet (bot.state.delivery).
outbox_table = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("blocks", JSON, nullable=False),
    Column("in_channel", Boolean, nullable=False, default=True),
    Column("created_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=1),
)

# Schedules and their runs (bot.jobs.scheduler).
schedules_table = Table(
    "schedules",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("cron", String(128), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("params", JSON, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("paused", Boolean, nullable=False, default=False),
    Column("cancelled", Boolean, nullable=False, default=False),
)

runs_table = Table(
    "schedule_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("schedule_id", String(16), nullable=False),
    Column("host", String(255), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("state", String(16), nullable=False),  # running, done, failed, interrupted
    Column("kind", String(32)),
    Column("summary", Text),  # the posted summary's text, for the App Home tab
)

# When each image was last used, per host (bot.engine.ledger).
image_last_use = Table(
    "image_last_use",
    metadata,
    Column("host", String(255), primary_key=True),
    Column("image_id", String(80), primary_key=True),
    Column("last_used", Float, nullable=False),
    Column("source", String(64), nullable=False),
)

# What each `outdated schedule` posted last (bot.jobs.outdated): it posts again only when this changes.
outdated_posts = Table(
    "outdated_posts",
    metadata,
    Column("schedule_id", String(16), primary_key=True),
    Column("posted_at", Float, nullable=False),
    Column("entries", JSON, nullable=False),
)

# Who runs the scheduler and the ledger's watchers when several replicas share the database
# (bot.state.lease): one row per lease, held until `expires_at` (the database's clock) unless renewed.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# Slack deliveries already taken (bot.state.deliveries): a retried or redelivered request, on whichever
# replica it lands, finds its key here and is not run again.
delivered = Table(
    "delivered",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("at", Float, nullable=False, index=True),
)

# Messages a pull updates as it goes, by the process running it (bot.state.live_messages): if that
# replica dies, the replica holding the scheduler lease marks them interrupted.
live_messages = Table(
    "live_messages",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("ts", String(32), primary_key=True),
    Column("owner", String(200), nullable=False, index=True),
    Column("posted_at", Float, nullable=False),
)
