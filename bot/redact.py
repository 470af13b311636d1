"""Text from the pipeline or a trainer's log, made fit for a chat: no secret, no absolute path of the host."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

TAIL_BYTES = 16 * 1024  # read from the end of a log: enough for a traceback, never the whole file
# An absolute path of two parts or more (so "/train" stays a command), not inside a URL; it keeps its last part.
_ABSOLUTE = re.compile(r"(?<![\w.~:/-])/(?:[^\s/\"'`()<>:,;=]+/)+([^\s/\"'`()<>:,;=]*)")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[hidden]")
    return _ABSOLUTE.sub(lambda match: match.group(1) or ".", text)


def log_tail(path: Path, secrets: Iterable[str] = (), lines: int = 12, width: int = 160) -> str | None:
    """The last ``lines`` non-blank lines of a log, each cut to ``width`` characters, redacted; None: no log."""
    try:
        with path.open("rb") as stream:
            stream.seek(max(0, stream.seek(0, os.SEEK_END) - TAIL_BYTES))
            data = stream.read()
    except OSError:
        return None
    text = redact(data.decode(errors="replace"), secrets)
    kept = [line.rstrip() for line in text.splitlines() if line.strip(" \t^~")]  # no blank or caret-only lines
    return "\n".join(line if len(line) <= width else line[: width - 3] + "..." for line in kept[-lines:]) or None
