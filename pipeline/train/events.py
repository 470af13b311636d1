"""The job's append-only event stream: one JSON object a line in ``events.jsonl``.

The training process is the only writer; the CLI's ``status`` and the bot read it
(the bot mirrors it into SQLite), so a restart of either loses nothing.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
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
    """Every whole event record; a line still being written is read next time, a corrupt one skipped."""
    if not path.exists():
        return
    with path.open("rb") as stream:
        for line in stream:
            if not line.endswith(b"\n") or not line.strip():
                continue
            event, clean = parse_line(line)
            if not clean:
                log.warning(
                    "%s: a line is not one event record; %s: %r",
                    path,
                    "kept the record after the tear" if event else "skipped",
                    line[:120],
                )
            if event is not None:
                yield event


def parse_line(line: bytes) -> tuple[dict | None, bool]:
    """(the event record or None, whether the line was exactly one record).

    A line torn by a full disk and continued by the next write holds a whole record after the tear.
    """
    event = _record(line)
    if event is not None:
        return event, True
    start = line.rfind(b'{"event"')
    return (_record(line[start:]) if start > 0 else None), False


def _record(text: bytes) -> dict | None:
    try:
        event = json.loads(text)
    except ValueError:
        return None
    whole = isinstance(event, dict) and isinstance(event.get("event"), str) and isinstance(event.get("step"), int)
    return event if whole else None


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
