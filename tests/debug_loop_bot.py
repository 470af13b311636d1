"""``python -m tests.debug_loop_bot SECONDS``: ``python -m bot`` itself, on an event loop in debug mode that
logs (logger ``asyncio``, into the bot's log) every callback that holds the loop longer than SECONDS.

Held means the callback's wall time less the time the loop's thread spent waiting for a CPU (the kernel's
run-queue delay, ``/proc/self/task/*/schedstat``), and less the longest such wait of another of the bot's
threads, which the loop may have waited on (a fresh clone's run failed on post_init's first step, 56 ms, whose
``to_thread`` starts the pool's first worker thread and waits until it runs): a machine busy with other tests
must not pass for a handler that blocks, while a blocking call (a sleeping ``nvidia-smi``, a lock, a slow
disk) counts whole. In a process of its own the bot's loop shares its interpreter lock only with the bot's own
threads. Debug mode also refuses loop calls from other threads that are not thread-safe.

Judged from the end of python-telegram-bot's ``Application.initialize`` on: before it the library sets up its
HTTP client and asks for the bot's own user (one step of 24-40 ms of CPU here, at a load of 1-7), and the bot
reads no update until its ``post_init``, which is judged, has run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time

from telegram.ext import Application

from bot.__main__ import main

log = logging.getLogger("asyncio")


def _waited_for_cpu_s() -> dict[str, float]:
    """Each of the bot's threads' run-queue delay so far, by thread id."""
    waited = {}
    for thread in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{thread}/schedstat") as stats:
                waited[thread] = int(stats.read().split()[1]) / 1e9
        except OSError:  # the thread ended meanwhile
            pass
    return waited


def _cpu_waits(before: dict[str, float], after: dict[str, float]) -> tuple[float, float]:
    """The loop thread's wait for a CPU between two readings, and the longest of any other thread's (one that
    started meanwhile counts whole): the loop waits for such a thread when it holds the interpreter lock, or
    when ``to_thread`` starts a worker and waits until it runs."""
    loop = str(threading.get_native_id())
    others = [waited - before.get(thread, 0.0) for thread, waited in after.items() if thread != loop]
    return after.get(loop, 0.0) - before.get(loop, 0.0), max(others, default=0.0)


def _awaiting_in(handle: asyncio.Handle) -> str:
    """Where in the bot the task a callback resumes was waiting: a handle's own text names only asyncio's parts."""
    task = getattr(handle._callback, "__self__", None)
    if not isinstance(task, asyncio.Task):
        return ""
    places, awaited = [], task.get_coro()
    while getattr(awaited, "cr_frame", None) is not None:
        code = awaited.cr_frame.f_code
        if f"{os.sep}bot{os.sep}" in code.co_filename:
            places.append(f"bot/{os.path.basename(code.co_filename)}:{awaited.cr_frame.f_lineno}")
        awaited = awaited.cr_await
    return " > ".join(places)


def watch_callbacks(slow_s: float) -> None:
    run, initialize = asyncio.Handle._run, Application.initialize
    initialized = False

    async def initialize_then_judge(app: Application) -> None:
        nonlocal initialized
        await initialize(app)
        initialized = True

    def timed(handle: asyncio.Handle) -> None:
        judged, where = initialized, _awaiting_in(handle)
        start, waited = time.monotonic(), _waited_for_cpu_s()
        run(handle)
        held = time.monotonic() - start - sum(_cpu_waits(waited, _waited_for_cpu_s()))
        if judged and held > slow_s:
            log.warning("Executing %s held the loop %.3f seconds (resumed at %s)", handle, held, where or "-")

    asyncio.Handle._run = timed
    Application.initialize = initialize_then_judge


class DebugLoops(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = float("inf")  # timed above instead, without the waits for a CPU
        return loop


if __name__ == "__main__":
    watch_callbacks(float(sys.argv[1]))
    asyncio.set_event_loop_policy(DebugLoops())
    sys.exit(main())
