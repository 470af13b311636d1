"""Files written whole or not at all, and where the project lives.

Every step's output is read later by another step, process or the bot, often while a
job is running: a reader must never see half a file, and a crash must never leave one
that a later step trusts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling to write; it replaces ``path`` when the block ends without error.

    The temporary name keeps the suffix, so writers that pick a format by extension
    (matplotlib, Pillow) still pick the right one; it is removed if the block fails.
    """
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, payload) -> None:
    with replacing(path) as tmp, tmp.open("w", encoding="utf-8") as stream:
        # Streamed: a big sample index never sits in memory as one string.
        json.dump(payload, stream, indent=1, ensure_ascii=False)
