"""The rows the store hands out: frozen snapshots, with JSON columns already parsed."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# editing: a split or label edit is rewriting its records, so no job may start on it meanwhile.
DATASET_STATUSES = ("checking", "ready", "editing", "failed")
JOB_STATUSES = ("queued", "starting", "running", "finished", "failed", "stopped", "interrupted")
ACTIVE = ("starting", "running")
# What counts against the per-user concurrent-job quota: a queued job will run without asking again.
PENDING = ("queued", *ACTIVE)
TERMINAL = ("finished", "failed", "stopped", "interrupted")


def to_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _path(text: str | None) -> Path | None:
    return None if text is None else Path(text)


def _ids(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(filter(None, text.split(",")))


def columns(row_type: type) -> str:
    """The SELECT list for a row type, so a query always yields exactly its fields."""
    return ", ".join(field.name for field in fields(row_type))


@dataclass(frozen=True)
class User:
    user_id: int
    name: str
    created: float
    current_dataset_id: str | None
    chosen_model: str | None
    max_jobs: int | None  # None: the bot's default quota applies
    max_bytes: int | None
    language: str | None  # None: the language of the user's Telegram app
    app_language: str | None  # that app's language_code, as last seen
    quiet: bool | None  # None: the default (quiet): only the final result and alerts notify
    plot_minutes: int | None  # minutes between loss curves while training; 0: none; None: the bot's default

    @classmethod
    def from_row(cls, row: dict) -> User:
        return cls(**row | {"quiet": None if row["quiet"] is None else bool(row["quiet"])})


@dataclass(frozen=True)
class Dataset:
    id: str
    user_id: int
    name: str
    workspace: Path
    status: str
    error: str | None
    summary: dict | None  # the pipeline's prepare JSON, once ready
    size_bytes: int
    created: float
    updated: float

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @classmethod
    def from_row(cls, row: dict) -> Dataset:
        return cls(**row | {"workspace": Path(row["workspace"]), "summary": from_json(row["summary"])})


@dataclass(frozen=True)
class Job:
    id: str
    user_id: int
    chat_id: int
    dataset_id: str
    job_dir: Path
    model: str
    request: dict
    status: str
    pid: int | None
    status_message_id: int | None
    last_status_text: str | None
    events_offset: int
    last_plot_step: int | None  # None: no plot sent yet
    archive: Path | None
    error: str | None
    created: float
    started: float | None
    finished: float | None
    updated: float
    gpus: tuple[str, ...] | None  # nvidia-smi indices its trainer was started on; None: none handed out
    run_id: str | None  # the cluster's id of its current run (a Ray submission id); None: a local process
    runs: int  # runs submitted to a cluster so far
    stop_requested: float | None  # when a graceful stop was asked for

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_row(cls, row: dict) -> Job:
        return cls(
            **row
            | {
                "job_dir": Path(row["job_dir"]),
                "archive": _path(row["archive"]),
                "request": from_json(row["request"]),
                "gpus": _ids(row["gpus"]),
            }
        )


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    seq: int  # the line number in events.jsonl, from 0
    event: str
    step: int | None
    time: float | None
    payload: dict  # the whole events.jsonl record, event/step/time included

    @classmethod
    def from_row(cls, row: dict) -> JobEvent:
        return cls(**row | {"payload": from_json(row["payload"])})


@dataclass(frozen=True)
class Notice:
    id: int
    user_id: int
    chat_id: int
    job_id: str | None
    kind: str
    step: int | None
    message_id: int | None
    created: float
    acknowledged: float | None  # when the user acknowledged it; None: not yet

    @classmethod
    def from_row(cls, row: dict) -> Notice:
        return cls(**row)
