"""Where a training (and, on a cluster, every TensorFlow command) runs: this host, or a Ray cluster.

An executor submits ``python -m pipeline ARGV`` for a job folder, says whether that run is pending,
running or over, and stops it hard. The job folder (events.jsonl, the STOP file, checkpoints, and
train.log, where the trainer's output goes on either) stays the one channel of progress, of the graceful
stop and of the logs, whichever executor runs it.
Public surface: ``Run``, ``RunState``, ``LocalExecutor``, ``RayExecutor`` (it imports Ray only when it first
talks to a cluster).
"""

from pipeline.executors.base import Run, RunState
from pipeline.executors.local import LocalExecutor
from pipeline.executors.ray_jobs import RayExecutor

__all__ = ["LocalExecutor", "RayExecutor", "Run", "RunState"]
