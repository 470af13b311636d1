"""``python -m pipeline`` as the bot runs it: a JSON answer, or an error that says why there is none.

Nothing the command writes to stderr is thrown away: a trainer launch keeps it in its job
folder (``JOB/launch.log``), and any other command's, when it failed, goes to the bot log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import sys
import time
from pathlib import Path

from pipeline.files import PROJECT_ROOT

from . import texts

log = logging.getLogger(__name__)

LAUNCH_LOG = "launch.log"  # in the job folder: the stderr of each launch of its trainer


async def run_cli(args: list[str], env: dict[str, str] | None = None):
    """``env`` None: the bot's own environment. No JSON answer, or a failure without one, is an error."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pipeline",
        *args,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    await asyncio.to_thread(_keep_stderr, args, stderr, process.returncode)
    try:
        out = json.loads(stdout.decode() or "null")
    except ValueError:
        out = None
    if out is None or (process.returncode and not (isinstance(out, dict) and "error" in out)):
        lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
        detail = lines[-1][:300] if lines else ""
        return {"error": {"kind": "internal_error", "message": texts.pipeline_exit(process.returncode, detail)}}
    return out


def _keep_stderr(args: list[str], stderr: bytes, code: int | None) -> None:
    """A trainer launch keeps its stderr in JOB/launch.log; another command's, when it failed, goes to the log."""
    text = stderr.decode(errors="replace")
    if "--job-dir" not in args:
        if code:
            log.warning("python -m pipeline %s exited with %s: %s", args[0], code, text[-2000:])
        return
    path = Path(args[args.index("--job-dir") + 1]) / LAUNCH_LOG
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} exit {code}: python -m pipeline {shlex.join(args)}\n")
            out.write(text)
    except OSError as error:
        log.warning("could not keep the stderr of a launch in %s (%s): %s", path, error, text[-2000:])
        return
    log.log(
        logging.WARNING if code else logging.INFO,
        "python -m pipeline %s exited with %s; its stderr is in %s",
        args[0],
        code,
        path,
    )
