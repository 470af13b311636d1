"""Where a training (and, on a cluster, every TensorFlow command) runs: this host, or a Ray cluster.

An executor submits ``python -m pipeline ARGV`` for a job folder, says whether that run is pending,
running or over, stops it hard, and shows its logs. The job folder (events.jsonl, the STOP file,
checkpoints) stays the one channel of progress and of the graceful stop, whichever executor runs it.
Public surface: ``Run``, ``RunState``, ``LocalExecutor``, ``RayExecutor`` (imports Ray only when used).
"""

from pipeline.executors.base import Run, RunState
from pipeline.executors.local import LocalExecutor

__all__ = ["LocalExecutor", "RayExecutor", "Run", "RunState"]


def __getattr__(name: str):
    # Ray takes seconds to import and is an optional extra: only a cluster user pays for it.
    if name == "RayExecutor":
        from pipeline.executors.ray_jobs import RayExecutor

        return RayExecutor
    raise AttributeError(name)
