"""The store on real SQLite (in memory and on disk): schema, ownership, queue, event mirror, threads."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import JOB_STATUSES, MIGRATIONS, NotFound, StoreError, open_store

ALICE, BOB = 111, 222


@pytest.fixture
def store():
    with open_store(None) as opened:
        yield opened


def ready_dataset(store, user_id=ALICE, name="kangaroo.zip"):
    store.ensure_user(user_id, f"user {user_id}")
    dataset = store.add_dataset(user_id, name, f"/data/{user_id}/{name}", 1000)
    return store.finish_dataset(dataset.id, {"images": 164, "classes": ["kangaroo"]})


def queue_job(store, user_id=ALICE, dataset=None):
    dataset = dataset or ready_dataset(store, user_id)
    return store.add_job(
        user_id,
        chat_id=user_id,
        dataset_id=dataset.id,
        job_dir=f"/jobs/{user_id}",
        model="ssd_mobilenet",
        request={"steps": 500},
    )


def events(first, count):
    return [{"event": "progress", "step": (first + i) * 10, "time": 1.0 + i, "loss": 0.5} for i in range(count)]


def versions(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT version, applied_at FROM schema_migrations ORDER BY version").fetchall()


# --- schema and migrations ---------------------------------------------------------------------


def test_file_store_migrates_once_and_reopening_changes_nothing(tmp_path):
    path = tmp_path / "state" / "detbot.db"
    with open_store(path) as first:
        assert first.db.journal_mode == "wal"
        job = queue_job(first)
    applied = versions(path)
    assert [version for version, _ in applied] == list(range(1, len(MIGRATIONS) + 1))
    with open_store(str(path)) as second:
        assert second.job(ALICE, job.id) == job  # a restart loses nothing
    assert versions(path) == applied


def test_a_file_store_commits_without_a_disk_flush_and_a_killed_bot_loses_none(tmp_path):
    # The bot commits on its event loop: with a flush per commit (SQLite's FULL), a write beside a busy disk
    # held it for 200 ms. NORMAL in WAL mode flushes at checkpoints only, and still survives a killed process.
    path = tmp_path / "detbot.db"
    killed = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_COMMIT, str(path)], cwd=Path(__file__).parents[1], timeout=60
    )
    assert killed.returncode == -9
    with open_store(path) as reopened:
        assert reopened.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert reopened.get_user(ALICE).chosen_model == "spinenet49"


CRASH_AFTER_COMMIT = f"""
import os, signal, sys
from storage import open_store
store = open_store(sys.argv[1])
store.ensure_user({ALICE}, "Alice")
store.set_model({ALICE}, "spinenet49")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_memory_store_has_every_table(store):
    assert {"users", "datasets", "jobs", "job_events", "notices", "schema_migrations"} <= set(store.db.table_names())


def test_new_migrations_run_in_order_and_only_once(tmp_path):
    path = tmp_path / "detbot.db"
    open_store(path).close()
    ran = []

    def add_colour(db):
        ran.append("colour")
        db.execute("ALTER TABLE users ADD COLUMN colour TEXT")

    later = [*MIGRATIONS, add_colour, "CREATE INDEX IF NOT EXISTS users_colour ON users(colour)"]
    open_store(path, migrations=later).close()
    open_store(path, migrations=later).close()
    assert ran == ["colour"]
    assert [version for version, _ in versions(path)] == list(range(1, len(later) + 1))


def test_a_failing_migration_leaves_the_previous_version_intact(tmp_path):
    path = tmp_path / "detbot.db"
    open_store(path).close()

    def half_done(db):
        db.execute("ALTER TABLE users ADD COLUMN colour TEXT")
        raise RuntimeError("crash mid-migration")

    with pytest.raises(RuntimeError):
        open_store(path, migrations=[*MIGRATIONS, half_done])
    assert len(versions(path)) == len(MIGRATIONS)
    with sqlite3.connect(path) as conn:
        assert "colour" not in [row[1] for row in conn.execute("PRAGMA table_info(users)")]


def test_a_database_from_a_newer_detbot_is_refused(tmp_path):
    path = tmp_path / "detbot.db"
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (99, 0)")
    with pytest.raises(StoreError, match=r"schema version 99.*Upgrade detbot") as raised:
        open_store(path)
    assert str(path) in str(raised.value)
    assert versions(path)[-1] == (99, 0)


def test_a_file_that_is_not_a_database_is_refused_clearly(tmp_path):
    path = tmp_path / "detbot.db"
    path.write_bytes(b"this is a zip, not a database" * 100)
    with pytest.raises(StoreError, match=r"cannot open the database .*detbot.db.*detbot database"):
        open_store(path)


# --- users and datasets -----------------------------------------------------------------------


def test_users_are_created_once_and_keep_their_settings(store):
    assert store.ensure_user(ALICE, "Alice").name == "Alice"
    store.set_model(ALICE, "ssd_mobilenet")
    store.set_quota(ALICE, max_jobs=3)
    user = store.ensure_user(ALICE, "Alice B.")
    assert (user.name, user.chosen_model, user.max_jobs, user.max_bytes) == ("Alice B.", "ssd_mobilenet", 3, None)
    assert store.set_quota(ALICE, max_jobs=None).max_jobs is None
    with pytest.raises(NotFound, match="ensure_user"):
        store.get_user(BOB)
    with pytest.raises(NotFound):
        store.set_model(BOB, "x")


def test_a_users_language_is_stored_and_null_follows_telegram(store):
    assert store.user_language(ALICE) == (None, None)  # not seen yet: nothing stored, nothing refused
    assert store.ensure_user(ALICE, "Alice", "ko-KR").language is None
    assert store.set_language(ALICE, "en").language == "en"
    user = store.ensure_user(ALICE, "Alice B.")  # an update without a language_code keeps the last one seen
    assert (user.name, user.language, user.app_language) == ("Alice B.", "en", "ko-KR")
    assert store.ensure_user(ALICE, "Alice B.", "en-US").app_language == "en-US"
    assert store.set_language(ALICE, None).language is None
    assert store.user_language(ALICE) == (None, "en-US")
    with pytest.raises(NotFound):
        store.set_language(BOB, "en")


def test_a_users_notification_settings_are_stored_and_null_is_the_default(store):
    user = store.ensure_user(ALICE, "Alice")
    assert (user.quiet, user.plot_minutes) == (None, None)
    assert store.set_notifications(ALICE, quiet=False).quiet is False
    user = store.set_notifications(ALICE, plot_minutes=0)  # one setting leaves the other alone
    assert (user.quiet, user.plot_minutes) == (False, 0)
    assert store.set_notifications(ALICE, quiet=True, plot_minutes=15).quiet is True
    assert store.ensure_user(ALICE, "Alice B.").plot_minutes == 15  # kept across updates
    assert store.set_notifications(ALICE, quiet=None).quiet is None
    with pytest.raises(NotFound):
        store.set_notifications(BOB, quiet=True)


def test_dataset_lifecycle_ids_and_disk_use(store):
    store.ensure_user(ALICE, "Alice")
    checking = store.add_dataset(ALICE, "a.zip", Path("/data/a"), 100)
    assert re.fullmatch(r"[a-z2-7]{8}", checking.id)
    assert (checking.status, checking.summary, checking.workspace) == ("checking", None, Path("/data/a"))
    ready = store.finish_dataset(checking.id, {"images": 3}, size_bytes=250)
    assert (ready.status, ready.summary, ready.size_bytes, ready.ready) == ("ready", {"images": 3}, 250, True)
    failed = store.fail_dataset(store.add_dataset(ALICE, "b.zip", "/data/b", 40).id, "not a zip")
    assert (failed.status, failed.error) == ("failed", "not a zip")
    assert [d.name for d in store.datasets(ALICE)] == ["b.zip", "a.zip"]
    assert store.user_bytes(ALICE) == 290 and store.user_bytes(BOB) == 0
    assert store.dataset(ALICE, f"  {ready.id.upper()} ") == ready  # typed ids forgive case and spaces
    assert store.set_current_dataset(ALICE, ready.id).current_dataset_id == ready.id
    assert store.set_current_dataset(ALICE, None).current_dataset_id is None
    with pytest.raises(NotFound):
        store.finish_dataset("zzzzzzzz", {})


def test_a_job_needs_a_ready_dataset(store):
    store.ensure_user(ALICE, "Alice")
    checking = store.add_dataset(ALICE, "a.zip", "/data/a", 1)
    with pytest.raises(StoreError, match="checking, not ready"):
        store.add_job(ALICE, ALICE, checking.id, "/jobs/x", "m", {})


# --- ownership ---------------------------------------------------------------------------------


def test_one_user_never_reaches_another_users_rows(store):
    dataset = ready_dataset(store, ALICE, name="alice-secret-holiday.zip")
    job = queue_job(store, ALICE, dataset)
    notice = store.add_notice(ALICE, ALICE, "finished", job_id=job.id)
    store.ensure_user(BOB, "Bob")
    attempts = {
        "dataset": lambda: store.dataset(BOB, dataset.id),
        "job": lambda: store.job(BOB, job.id),
        "select": lambda: store.set_current_dataset(BOB, dataset.id),
        "train": lambda: store.add_job(BOB, BOB, dataset.id, "/jobs/bob", "m", {}),
        "acknowledge": lambda: store.acknowledge(BOB, notice),
    }
    for what, attempt in attempts.items():
        with pytest.raises(NotFound) as raised:
            attempt()
        message = str(raised.value)
        assert "of yours" in message, what
        for secret in ("alice", "Alice", str(ALICE), "/data/", "kangaroo"):
            assert secret not in message, (what, message)
    assert store.datasets(BOB) == [] and store.jobs(BOB) == [] and store.notices(BOB) == []
    with pytest.raises(StoreError):
        store.add_notice(BOB, BOB, "finished", job_id=job.id)


def test_someone_elses_id_and_a_made_up_id_read_the_same(store):
    dataset = ready_dataset(store, ALICE)
    store.ensure_user(BOB, "Bob")
    with pytest.raises(NotFound) as theirs:
        store.dataset(BOB, dataset.id)
    with pytest.raises(NotFound) as nobodys:
        store.dataset(BOB, "aaaaaaaa")
    assert str(theirs.value).replace(dataset.id, "aaaaaaaa") == str(nobodys.value)


def test_a_store_error_tells_the_log_everything_and_the_user_only_its_kind(tmp_path, monkeypatch):
    """The message names the database file and what to fix; what a user reads is worded from kind and params."""
    import storage.store
    from bot import texts

    monkeypatch.setattr(storage.store, "BUSY_TIMEOUT", 0.2)
    path = tmp_path / "private" / "detbot.db"
    with open_store(path) as store, sqlite3.connect(path, isolation_level=None) as other:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the busy timeout
        with pytest.raises(StoreError) as locked:
            store.ensure_user(ALICE, "Alice")
        other.execute("ROLLBACK")
        dataset = ready_dataset(store)
        store.ensure_user(BOB, "Bob")
        with pytest.raises(NotFound) as missing:
            store.dataset(BOB, dataset.id)
    assert locked.value.kind == "locked" and str(path) in str(locked.value)
    assert (missing.value.kind, missing.value.params) == ("not_found", {"thing": "dataset", "id": dataset.id})
    for error in (locked.value, missing.value):
        shown = texts.store_error(error.kind, error.params)
        assert str(tmp_path) not in shown and "private" not in shown and "ensure_user" not in shown
    assert texts.store_error("not_found", missing.value.params).startswith(f"No dataset '{dataset.id}' of yours")


# --- jobs and the queue ------------------------------------------------------------------------


def test_queue_is_first_come_first_served_even_within_one_clock_tick():
    with open_store(None, clock=lambda: 1000.0) as store:
        dataset = ready_dataset(store, ALICE)
        ready_dataset(store, BOB)
        first, second, third = (
            queue_job(store, user, dataset if user == ALICE else store.datasets(BOB)[0]) for user in (ALICE, BOB, ALICE)
        )
        assert [job.id for job in store.queued_jobs()] == [first.id, second.id, third.id]
        assert [store.queue_position(job.id) for job in (first, second, third)] == [1, 2, 3]
        store.update_job(first.id, status="starting", pid=4242)
        assert store.queue_position(first.id) is None
        assert [store.queue_position(job.id) for job in (second, third)] == [1, 2]
        assert [job.id for job in store.active_jobs()] == [first.id]
        assert store.count_active(ALICE) == 2 and store.count_active(BOB) == 1
        store.update_job(first.id, status="finished")
        assert store.count_active(ALICE) == 1 and store.active_jobs() == []
        assert [job.id for job in store.jobs(ALICE)] == [third.id, first.id]
        assert len(store.jobs(ALICE, limit=1)) == 1


def test_update_job_sets_known_columns_only(store):
    job = queue_job(store)
    updated = store.update_job(
        job.id,
        status="running",
        pid=77,
        archive=Path("/jobs/a.zip"),
        request={"steps": 900},
        last_status_text="step 10",
    )
    assert (updated.status, updated.pid, updated.archive, updated.request) == (
        "running",
        77,
        Path("/jobs/a.zip"),
        {"steps": 900},
    )
    assert updated.active and not updated.done and updated.updated >= job.updated
    with pytest.raises(ValueError, match="user_id"):
        store.update_job(job.id, user_id=BOB)
    with pytest.raises(ValueError, match="unknown job status"):
        store.update_job(job.id, status="exploded")
    with pytest.raises(NotFound):
        store.update_job("zzzzzzzz", status="failed")
    assert store.job_by_id(job.id) == updated


# --- the events.jsonl mirror -------------------------------------------------------------------


def test_replaying_an_event_batch_changes_nothing(store):
    job = queue_job(store)
    assert store.add_events(job.id, 0, events(0, 3), new_offset=300) == 3
    before = store.events(job.id)
    assert store.add_events(job.id, 0, events(0, 3), new_offset=300) == 0
    assert store.events(job.id) == before
    assert store.add_events(job.id, 2, events(2, 3), new_offset=500) == 2  # overlaps by one line
    assert [e.seq for e in store.events(job.id)] == [0, 1, 2, 3, 4]
    store.add_events(job.id, 0, events(0, 1), new_offset=100)  # a stale batch
    assert store.job_by_id(job.id).events_offset == 500
    with pytest.raises(NotFound):
        store.add_events("zzzzzzzz", 0, events(0, 1), new_offset=1)


def test_events_and_offset_commit_together_or_not_at_all(tmp_path):
    with open_store(tmp_path / "detbot.db") as store:
        job = queue_job(store)
        store.add_events(job.id, 0, events(0, 2), new_offset=200)
        # Our own constraint violation, after the rows are in but before the offset is: the crash
        # the transaction exists for.
        store.db.execute(
            "CREATE TRIGGER no_offset BEFORE UPDATE OF events_offset ON jobs "
            "BEGIN SELECT RAISE(ABORT, 'simulated crash'); END"
        )
        with pytest.raises(StoreError, match="simulated crash"):
            store.add_events(job.id, 2, events(2, 3), new_offset=500)
        assert [e.seq for e in store.events(job.id)] == [0, 1]
        assert store.job_by_id(job.id).events_offset == 200
        store.db.execute("DROP TRIGGER no_offset")
        assert store.add_events(job.id, 2, events(2, 3), new_offset=500) == 3
        assert store.job_by_id(job.id).events_offset == 500


def test_a_malformed_event_is_refused_before_anything_is_written(store):
    job = queue_job(store)
    with pytest.raises(ValueError, match="'event' name"):
        store.add_events(job.id, 0, [*events(0, 2), {"step": 3}], new_offset=300)
    assert store.events(job.id) == [] and store.job_by_id(job.id).events_offset == 0


def test_events_filter_by_position_and_kind(store):
    job = queue_job(store)
    batch = [
        {"event": "started", "step": 0, "time": 1.0},
        *events(1, 2),
        {"event": "nan", "step": 30, "time": 4.0, "loss": "nan"},
        *events(4, 1),
    ]
    store.add_events(job.id, 0, batch, new_offset=999)
    assert [e.payload for e in store.events(job.id)] == batch
    assert [e.seq for e in store.events(job.id, since_seq=3)] == [3, 4]
    assert [e.event for e in store.events(job.id, kinds=["nan", "started"])] == ["started", "nan"]
    assert store.last_event(job.id).seq == 4
    assert store.last_event(job.id, "nan").payload["loss"] == "nan"
    assert store.last_event(job.id, "eval") is None


# --- notices -----------------------------------------------------------------------------------


def test_a_notice_is_recorded_once_per_job_kind_and_step(store):
    job = queue_job(store)
    assert not store.notice_sent(job.id, "nan_alert", 30)
    first = store.add_notice(ALICE, ALICE, "nan_alert", job_id=job.id, step=30, message_id=5)
    assert store.add_notice(ALICE, ALICE, "nan_alert", job_id=job.id, step=30, message_id=6) == first
    assert store.notice_sent(job.id, "nan_alert", 30)
    assert not store.notice_sent(job.id, "nan_alert", 40) and not store.notice_sent(job.id, "finished")
    store.add_notice(ALICE, ALICE, "finished", job_id=job.id)
    assert store.notice_sent(job.id.upper(), "finished")
    assert [n.message_id for n in store.notices(ALICE)] == [5, None]
    acknowledged = store.acknowledge(ALICE, first)
    assert acknowledged.acknowledged is not None
    assert store.acknowledge(ALICE, first).acknowledged == acknowledged.acknowledged
    assert [n.kind for n in store.notices(ALICE, unacknowledged_only=True)] == ["finished"]


def test_owed_notices_are_every_users_unacknowledged_ones_of_a_kind(store):
    mine, theirs = queue_job(store), queue_job(store, BOB)
    first = store.add_notice(ALICE, ALICE, "results", job_id=mine.id)
    store.add_notice(BOB, BOB, "results", job_id=theirs.id)
    store.add_notice(ALICE, ALICE, "nan_alert", job_id=mine.id, step=3)
    assert [(n.user_id, n.job_id) for n in store.owed("results")] == [(ALICE, mine.id), (BOB, theirs.id)]
    store.acknowledge(ALICE, first)
    assert [n.job_id for n in store.owed("results")] == [theirs.id]


# --- threads -----------------------------------------------------------------------------------


def test_threads_and_a_second_connection_write_without_locking_errors(tmp_path):
    path = tmp_path / "detbot.db"
    bot, other_process = open_store(path), open_store(path)
    dataset = ready_dataset(bot, ALICE)
    jobs = [queue_job(bot, ALICE, dataset) for _ in range(6)]
    errors: list[BaseException] = []

    def mirror(store, job_id):
        try:
            for batch in range(25):
                store.add_events(job_id, batch * 4, events(batch * 4, 4), new_offset=(batch + 1) * 400)
                store.update_job(job_id, status="running", last_status_text=f"batch {batch}")
                store.queued_jobs(), store.count_active(ALICE)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [
        threading.Thread(target=mirror, args=(bot if i % 2 else other_process, job.id)) for i, job in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    for job in jobs:
        assert len(bot.events(job.id)) == 100
        assert bot.job_by_id(job.id).events_offset == 25 * 400
    bot.close(), other_process.close()


# --- property: the queue is exactly the queued jobs, in creation order --------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from([ALICE, BOB])),
        st.tuples(st.just("set"), st.integers(0, 15), st.sampled_from(JOB_STATUSES)),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(operations)
def test_queued_jobs_are_the_queued_ones_in_creation_order(ops):
    with open_store(None, clock=lambda: 1000.0) as store:
        datasets = {user: ready_dataset(store, user) for user in (ALICE, BOB)}
        created: list[str] = []
        status: dict[str, str] = {}
        for op in ops:
            if op[0] == "add":
                job = queue_job(store, op[1], datasets[op[1]])
                created.append(job.id)
                status[job.id] = "queued"
            elif created:
                job_id = created[op[1] % len(created)]
                store.update_job(job_id, status=op[2])
                status[job_id] = op[2]
        expected = [job_id for job_id in created if status[job_id] == "queued"]
        assert [job.id for job in store.queued_jobs()] == expected
        assert [store.queue_position(job_id) for job_id in expected] == list(range(1, len(expected) + 1))
