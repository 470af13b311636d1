"""The job's append-only event stream: one JSON object a line in ``events.jsonl``.

The training process is the only writer; the CLI's ``status`` and the bot read it
(the bot mirrors it into SQLite), so a restart of either loses nothing.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

EVENTS = ("started", "progress", "checkpoint", "eval", "nan", "recovered", "finished", "failed", "stopped")


class EventLog:
    def __init__(self, path: Path):
        self.path = path

    def emit(self, event: str, step: int, **fields) -> dict:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}")
        record = {"event": event, "step": int(step), "time": round(time.time(), 3)} | _clean(fields)
        line = json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"
        # One write per line in append mode: a reader never sees half a line from a live writer.
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(line)
            stream.flush()
            os.fsync(stream.fileno())
        return record


def read_events(path: Path) -> list[dict]:
    return list(iter_events(path))


def iter_events(path: Path) -> Iterator[dict]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            if line.endswith("\n"):  # a line still being written is read next time
                yield json.loads(line)


def _clean(fields: dict) -> dict:
    """JSON has no NaN: a non-finite loss is written as the string 'nan' / 'inf'."""
    def fix(value):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [fix(v) for v in value]
        return value
    return {key: fix(value) for key, value in fields.items()}
