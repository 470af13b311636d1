"""The worker process that checks uploaded datasets, and what happens when it fails.

Checks run one at a time in a separate process, so a hostile zip can slow only itself.
Whatever goes wrong comes back as data, and every failure settles the dataset:

* a PipelineError is the user's to fix and carries its own message;
* any other exception (a full disk, a path the OS refuses, MemoryError) is a "crash"
  with a kind the bot words without paths, the traceback going to the log;
* a worker killed outright (the OOM killer, SIGKILL) breaks the pool: it is replaced,
  and a check that had not started yet is tried once more on the new one.

Workers are spawned (a fresh interpreter: a fork would inherit the bot's threads and its
asyncio signal handlers, which made SIGTERM a no-op), die with the bot through
PR_SET_PDEATHSIG, and have their address space capped.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import multiprocessing
import os
import resource
import signal
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

log = logging.getLogger(__name__)

WORKER_MEMORY_BYTES = 4 * 2**30
_PR_SET_PDEATHSIG = 1


def _init_worker(parent_pid: int, memory_bytes: int | None) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the bot decides
    # One BLAS thread: the check fans out over processes, and every thread would reserve address space.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL when the bot's thread that spawned us ends; spawn only from the event-loop thread."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pool's pipes end an idle worker instead
        log.warning("cannot tie the check worker's life to the bot's (no prctl)")
    if os.getppid() != parent_pid:  # the bot died before the signal was armed
        os._exit(1)


def prepare_in_worker(archive: str, out: str, budget_bytes: int | None) -> dict:
    """Runs in the worker; errors come back as data because their pickling loses fields."""
    from pipeline.errors import PipelineError

    try:
        from pipeline.data import steps
        from pipeline.data.ingest import ExtractLimits

        options = steps.PrepareOptions(limits=ExtractLimits(budget_bytes=budget_bytes))
        return {"summary": steps.prepare(Path(archive), Path(out), options)}
    except PipelineError as error:
        return {"error": error.to_json()}
    except Exception as error:  # anything else must still settle the dataset, never leave it 'checking'
        return {"crash": crash_kind(error), "detail": traceback.format_exc()}


def crash_kind(error: BaseException) -> str:
    """A word for what broke, for ``texts.check_crashed``; the message itself may hold paths."""
    if isinstance(error, MemoryError):
        return "memory"
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    if isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG:
        return "name_too_long"
    return "internal"


class CheckPool:
    """One check at a time in a worker process that is replaced when it dies."""

    def __init__(self, memory_bytes: int | None = WORKER_MEMORY_BYTES):
        self._memory = memory_bytes
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(os.getpid(), self._memory),
        )

    async def run(self, archive: Path, out: Path, budget_bytes: int | None) -> dict:
        """``{"summary"}``, ``{"error": PipelineError JSON}`` or ``{"crash": kind}``."""
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = self._pool
            try:
                result = await loop.run_in_executor(pool, prepare_in_worker, str(archive), str(out), budget_bytes)
            except BrokenProcessPool:
                self._replace(pool)
                # The workspace appears once a check starts: only a check that never began is retried,
                # so a zip that kills its worker cannot kill the next one too.
                if attempt == 1 and not out.exists():
                    continue
                log.error("the check worker died while checking %s", archive.name)
                return {"crash": "worker_died"}
            except Exception as error:  # the result or the call did not cross the process boundary
                log.exception("the check of %s could not run", archive.name)
                return {"crash": crash_kind(error)}
            if "crash" in result:
                log.error("checking %s failed:\n%s", archive.name, result.pop("detail"))
            return result
        raise AssertionError("unreachable")

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._pool is broken:  # several waiting checks see the same breakage; replace it once
            log.warning("the check worker died; starting a new one")
            self._pool = self._new_pool()
            broken.shutdown(wait=False, cancel_futures=True)

    def worker_pids(self) -> list[int]:
        # ProcessPoolExecutor keeps its processes in a private dict; nothing public lists them.
        return list(getattr(self._pool, "_processes", None) or {})

    def close(self) -> None:
        """Stop now: a check in progress is abandoned (its dataset is settled at the next start)."""
        pids = self.worker_pids()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
