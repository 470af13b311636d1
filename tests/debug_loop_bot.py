"""``python -m tests.debug_loop_bot SECONDS``: ``python -m bot`` itself, on an event loop in debug mode that
logs (logger ``asyncio``, into the bot's log) every callback that holds the loop longer than SECONDS.

Held means the callback's wall time less the time the loop's thread spent waiting for a CPU (the kernel's
run-queue delay, ``/proc/thread-self/schedstat``): a machine busy with other tests must not pass for a
handler that blocks, while a blocking call (a sleeping ``nvidia-smi``, a lock, a slow disk) counts whole.
In a process of its own the bot's loop shares its interpreter lock only with the bot's own threads. Debug
mode also refuses loop calls from other threads that are not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from bot.__main__ import main

log = logging.getLogger("asyncio")


def _waited_for_cpu_s() -> float:
    with open("/proc/thread-self/schedstat") as stats:
        return int(stats.read().split()[1]) / 1e9


def watch_callbacks(slow_s: float) -> None:
    run = asyncio.Handle._run

    def timed(handle: asyncio.Handle) -> None:
        start, waited = time.monotonic(), _waited_for_cpu_s()
        run(handle)
        held = time.monotonic() - start - (_waited_for_cpu_s() - waited)
        if held > slow_s:
            log.warning("Executing %s held the loop %.3f seconds", handle, held)

    asyncio.Handle._run = timed


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
