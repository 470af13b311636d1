"""The schema, as an append-only list of migrations; version N is ``MIGRATIONS[N - 1]``.

Never edit a released migration: add a new one. Each is a SQL script or a function of
the ``sqlite_utils.Database``, and runs inside the transaction that records it, so a
crash mid-migration leaves the previous version intact.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlite_utils import Database

from .errors import StoreError

Migration = str | Callable[[Database], None]

INITIAL = """
CREATE TABLE IF NOT EXISTS users (
    user_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    current_dataset_id TEXT REFERENCES datasets(id),
    chosen_model TEXT,
    max_jobs INTEGER,
    max_bytes INTEGER
);
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(user_id),
    name TEXT NOT NULL,
    workspace TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    summary TEXT,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS datasets_user ON datasets(user_id);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(user_id),
    chat_id INTEGER NOT NULL,
    dataset_id TEXT NOT NULL REFERENCES datasets(id),
    job_dir TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER,
    status_message_id INTEGER,
    last_status_text TEXT,
    events_offset INTEGER NOT NULL DEFAULT 0,
    last_plot_step INTEGER,
    archive TEXT,
    error TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs(user_id);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    step INTEGER,
    time REAL,
    payload TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS notices (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(user_id),
    chat_id INTEGER NOT NULL,
    job_id TEXT REFERENCES jobs(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    step INTEGER,
    message_id INTEGER,
    created REAL NOT NULL,
    acknowledged REAL
);
-- One notice per (job, kind, step): the guard against alerting twice after a restart.
-- NULLs are distinct in a UNIQUE index, hence the COALESCE; job-less notices are not deduplicated.
CREATE UNIQUE INDEX IF NOT EXISTS notices_once
    ON notices(job_id, kind, COALESCE(step, -1)) WHERE job_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS notices_user ON notices(user_id);
"""

# Version 2: the GPUs (nvidia-smi indices, comma-separated) a job's trainer was started on;
# NULL when none were handed out (a CPU host, or a job not started yet).
JOB_GPUS = "ALTER TABLE jobs ADD COLUMN gpus TEXT;"

# Version 3: when the user blocked the bot (Telegram answered 403 Forbidden); NULL: not paused.
# Their jobs go on training and mirroring; only messages to them wait until they write again.
NOTICES_PAUSED = "ALTER TABLE users ADD COLUMN notices_paused REAL;"

# Version 4: the language the bot speaks to the user ("en", "ko"), chosen with /settings (NULL: follow
# their Telegram app's), and that app's language_code as last seen, for messages no update carries
# (a job's progress).
USER_LANGUAGE = """
ALTER TABLE users ADD COLUMN language TEXT;
ALTER TABLE users ADD COLUMN app_language TEXT;
"""

# Version 5: how the bot notifies the user, chosen with /settings: quiet (1: photos and progress without a sound,
# only the final result and alerts notify; 0: everything notifies; NULL: the default, quiet) and the minutes
# between loss curves while a job trains (0: none; NULL: the bot's DETBOT_PLOT_INTERVAL_S).
USER_NOTIFICATIONS = """
ALTER TABLE users ADD COLUMN quiet INTEGER;
ALTER TABLE users ADD COLUMN plot_minutes INTEGER;
"""

# Version 6: where a job's trainer runs when an executor other than the bot's own host does (a Ray cluster):
# the id of its current run there (NULL: a local process, found by its pid), how many runs it has had (each
# resubmission gets a new id), and when a graceful stop was asked for (the cluster's hard stop follows a
# grace period later). A lease taken while a job is being submitted keeps two bots, or two /resume at once,
# from submitting it twice.
JOB_RUNS = """
ALTER TABLE jobs ADD COLUMN run_id TEXT;
ALTER TABLE jobs ADD COLUMN runs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN stop_requested REAL;
CREATE TABLE IF NOT EXISTS job_leases (
    job_id TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    holder TEXT NOT NULL,
    expires REAL NOT NULL
);
"""

MIGRATIONS: list[Migration] = [INITIAL, JOB_GPUS, NOTICES_PAUSED, USER_LANGUAGE, USER_NOTIFICATIONS, JOB_RUNS]


def migrate(db: Database, where: str, migrations: list[Migration] = MIGRATIONS) -> int:
    """Bring the schema up to ``len(migrations)``; returns how many migrations ran.

    Call outside a transaction. Each migration takes the write lock (BEGIN IMMEDIATE)
    and re-reads the version under it, so two processes opening a new file at once
    do not both apply the same migration.
    """
    db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    applied = 0
    while True:
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            version = current_version(db)
            _refuse_newer(version, len(migrations), where)
            if version == len(migrations):
                db.conn.execute("COMMIT")
                return applied
            _apply(db, migrations[version])
            db["schema_migrations"].insert({"version": version + 1, "applied_at": time.time()})
            db.conn.execute("COMMIT")
            applied += 1
        except BaseException:
            db.rollback()
            raise


def current_version(db: Database) -> int:
    row = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return row[0] or 0


def _apply(db: Database, migration: Migration) -> None:
    if callable(migration):
        migration(db)
    else:
        db.executescript(migration)  # inside our transaction sqlite-utils runs it statement by statement


def _refuse_newer(version: int, known: int, where: str) -> None:
    if version > known:
        raise StoreError(
            f"the database {where} has schema version {version}, but this detbot only knows up to "
            f"version {known}: it was written by a newer detbot. Upgrade detbot (or open another "
            f"database file); nothing in it was changed.",
            kind="newer_schema",
        )
