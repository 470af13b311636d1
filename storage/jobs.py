"""Training jobs, their queue, and the mirror of each job's events.jsonl."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .connection import Connection, normalise_id, shown
from .errors import NotFound, StoreError
from .rows import ACTIVE, JOB_STATUSES, PENDING, Job, JobEvent, columns, to_json

# What update_job may change; ids, owner, dataset and creation time are fixed for life.
UPDATABLE = frozenset(
    {
        "status",
        "pid",
        "status_message_id",
        "last_status_text",
        "events_offset",
        "last_plot_step",
        "archive",
        "error",
        "started",
        "finished",
        "job_dir",
        "model",
        "request",
        "gpus",
        "run_id",
        "runs",
        "stop_requested",
    }
)
# Queue order is insertion order (rowid), not the clock: a clock stepped back by NTP, or two
# jobs in the same tick, must not let a later job overtake an earlier one.
_FIFO = "ORDER BY rowid"


def _placeholders(values: Iterable) -> str:
    return ", ".join("?" for _ in values)


class JobsAndEvents(Connection):
    # --- jobs --------------------------------------------------------------------------------

    def add_job(
        self, user_id: int, chat_id: int, dataset_id: str, job_dir: Path | str, model: str, request: dict
    ) -> Job:
        """Queue a training of one of the user's ready datasets."""
        with self._write() as db:
            dataset = self.dataset(user_id, dataset_id)
            if not dataset.ready:
                raise StoreError(
                    f"dataset {dataset.id!r} is {dataset.status}, not ready: wait for "
                    "its check to finish, or upload a fixed zip if it failed",
                    kind="not_ready",
                    thing="dataset",
                    id=dataset.id,
                    status=dataset.status,
                )
            now = self._now()
            job_id = self._fresh_id("jobs")
            db["jobs"].insert(
                {
                    "id": job_id,
                    "user_id": user_id,
                    "chat_id": chat_id,
                    "dataset_id": dataset.id,
                    "job_dir": str(job_dir),
                    "model": model,
                    "request": to_json(request),
                    "status": "queued",
                    "events_offset": 0,
                    "created": now,
                    "updated": now,
                }
            )
            return self.job_by_id(job_id)

    def job(self, user_id: int, job_id: str) -> Job:
        with self._read():
            row = self._one(
                f"SELECT {columns(Job)} FROM jobs WHERE id = ? AND user_id = ?", [normalise_id(job_id), user_id]
            )
        if row is None:
            raise NotFound(
                f"no job {shown(job_id)!r} of yours: check the id against your list of jobs",
                thing="job",
                id=shown(job_id),
            )
        return Job.from_row(row)

    def job_by_id(self, job_id: str) -> Job:
        """Any user's job: for the monitor and the queue runner, never for a user's command."""
        with self._read():
            row = self._one(f"SELECT {columns(Job)} FROM jobs WHERE id = ?", [normalise_id(job_id)])
        if row is None:
            raise NotFound(f"no job {shown(job_id)!r}: it was never added", thing="job", id=shown(job_id))
        return Job.from_row(row)

    def jobs(self, user_id: int, limit: int = 20) -> list[Job]:
        """The user's jobs, newest first."""
        with self._read():
            rows = self._all(
                f"SELECT {columns(Job)} FROM jobs WHERE user_id = ? ORDER BY rowid DESC LIMIT ?", [user_id, int(limit)]
            )
        return [Job.from_row(row) for row in rows]

    def job_page(self, user_id: int, offset: int, limit: int) -> tuple[list[Job], int]:
        """``limit`` of the user's jobs from ``offset``, newest first, and how many they have in all."""
        with self._read():
            total = self._one("SELECT COUNT(*) AS n FROM jobs WHERE user_id = ?", [user_id])["n"]
            rows = self._all(
                f"SELECT {columns(Job)} FROM jobs WHERE user_id = ? ORDER BY rowid DESC LIMIT ? OFFSET ?",
                [user_id, int(limit), max(int(offset), 0)],
            )
        return [Job.from_row(row) for row in rows], int(total)

    def update_job(self, job_id: str, **fields) -> Job:
        """Change some of a job's columns; ``updated`` is stamped. Returns the job as it now is."""
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise ValueError(f"update_job cannot set {sorted(unknown)}: it may set only {sorted(UPDATABLE)}")
        if "status" in fields and fields["status"] not in JOB_STATUSES:
            raise ValueError(f"unknown job status {fields['status']!r}: use one of {JOB_STATUSES}")
        values = {key: _column_value(key, value) for key, value in fields.items()}
        with self._write() as db:
            assignments = ", ".join(f"[{key}] = ?" for key in values)
            cursor = db.execute(
                f"UPDATE jobs SET {assignments}, updated = ? WHERE id = ?",
                [*values.values(), self._now(), normalise_id(job_id)],
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no job {shown(job_id)!r}: it was never added", thing="job", id=shown(job_id))
            return self.job_by_id(job_id)

    def queued_jobs(self) -> list[Job]:
        """Every user's queued jobs, first come first served."""
        with self._read():
            rows = self._all(f"SELECT {columns(Job)} FROM jobs WHERE status = 'queued' {_FIFO}")
        return [Job.from_row(row) for row in rows]

    def queue_position(self, job_id: str) -> int | None:
        """1 for the next job to start; None once the job is no longer queued."""
        with self._read():
            job = self.job_by_id(job_id)
            if job.status != "queued":
                return None
            row = self._one(
                "SELECT COUNT(*) AS ahead FROM jobs WHERE status = 'queued' AND rowid < "
                "(SELECT rowid FROM jobs WHERE id = ?)",
                [job.id],
            )
        return row["ahead"] + 1

    def active_jobs(self) -> list[Job]:
        """Jobs that have (or are getting) a training process: the monitor's work list."""
        with self._read():
            rows = self._all(
                f"SELECT {columns(Job)} FROM jobs WHERE status IN ({_placeholders(ACTIVE)}) {_FIFO}", ACTIVE
            )
        return [Job.from_row(row) for row in rows]

    def count_active(self, user_id: int) -> int:
        """Queued, starting and running jobs of the user: what the concurrent-job quota counts."""
        with self._read():
            row = self._one(
                f"SELECT COUNT(*) AS n FROM jobs WHERE user_id = ? AND status IN ({_placeholders(PENDING)})",
                [user_id, *PENDING],
            )
        return row["n"]

    # --- events ------------------------------------------------------------------------------

    def add_events(self, job_id: str, first_seq: int, events: list[dict], new_offset: int) -> int:
        """Mirror lines ``first_seq...`` of the job's events.jsonl read up to byte ``new_offset``.

        Rows and offset commit together, and rows already mirrored are skipped, so a crash
        at any point followed by a re-read from the stored offset neither loses nor doubles
        an event. Returns how many rows were new.
        """
        rows = [_event_row(job_id, first_seq + index, event) for index, event in enumerate(events)]
        with self._write() as db:
            self.job_by_id(job_id)
            before = db.conn.total_changes
            db["job_events"].insert_all(rows, ignore=True)
            inserted = db.conn.total_changes - before
            # MAX: replaying an old batch must not move the offset backwards.
            db.execute(
                "UPDATE jobs SET events_offset = MAX(events_offset, ?) WHERE id = ?",
                [int(new_offset), normalise_id(job_id)],
            )
            return inserted

    def events(self, job_id: str, since_seq: int = 0, kinds: Iterable[str] | None = None) -> list[JobEvent]:
        """The job's events from ``since_seq`` on, in file order; ``kinds`` keeps only those events."""
        sql = f"SELECT {columns(JobEvent)} FROM job_events WHERE job_id = ? AND seq >= ?"
        params: list = [normalise_id(job_id), int(since_seq)]
        if kinds is not None:
            kinds = list(kinds)
            sql += f" AND event IN ({_placeholders(kinds)})"
            params += kinds
        with self._read():
            rows = self._all(sql + " ORDER BY seq", params)
        return [JobEvent.from_row(row) for row in rows]

    def last_event(self, job_id: str, kind: str | None = None) -> JobEvent | None:
        sql = f"SELECT {columns(JobEvent)} FROM job_events WHERE job_id = ?"
        params: list = [normalise_id(job_id)]
        if kind is not None:
            sql += " AND event = ?"
            params.append(kind)
        with self._read():
            row = self._one(sql + " ORDER BY seq DESC LIMIT 1", params)
        return None if row is None else JobEvent.from_row(row)


def _column_value(key: str, value):
    if key == "request":
        return to_json(value)
    if key == "gpus":
        return None if value is None else ",".join(value)
    return str(value) if isinstance(value, Path) else value


def _event_row(job_id: str, seq: int, event: dict) -> dict:
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise ValueError(
            f"event {seq} of job {job_id!r} is not an events.jsonl record with an 'event' name: {str(event)[:80]}"
        )
    return {
        "job_id": normalise_id(job_id),
        "seq": seq,
        "event": event["event"],
        "step": event.get("step"),
        "time": event.get("time"),
        "payload": to_json(event),
    }
