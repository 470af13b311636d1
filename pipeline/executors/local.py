"""The embedded default: the trainer is a detached process on this host, found by its pid."""

from __future__ import annotations

import os
import signal
import time

from pipeline.executors.base import Run, RunState
from pipeline.train.job_folder import JobPaths
from pipeline.train.job_process import process_alive, process_start, running_pid, start_detached

# A just-started trainer imports TensorFlow before it claims its job folder's pid file.
STARTUP_GRACE_S = 120.0


class LocalExecutor:
    name = "local"

    def submit(self, argv: list[str], job: JobPaths, gpus: int = 0, run_id: str | None = None) -> Run:
        """``gpus`` and ``run_id`` are a cluster's business: here the caller's environment picks the GPUs."""
        pid = start_detached(argv, job)
        run = Run(self.name, f"{pid} {process_start(pid)}", started=time.time())
        run.save(job)
        return run

    def status(self, run: Run, job: JobPaths) -> RunState:
        """Running while the trainer holds the job's pid file; ended once the launched process (``run.id``, empty
        while it is being launched) is gone, or, alive, once it had the time to claim the file and did not."""
        if running_pid(job) is not None:
            return RunState("running")
        pid, _, start = run.id.partition(" ")
        if pid.isdigit() and not process_alive(int(pid), start or None):
            return RunState("ended")
        young = time.time() - run.started < STARTUP_GRACE_S and not job.events.exists()
        return RunState("running" if young else "ended")

    def stop(self, run: Run, job: JobPaths) -> None:
        pid = running_pid(job)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
