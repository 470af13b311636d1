"""The Ray cluster the bot's trainings, exports and predictions run on (``DETBOT_EXECUTOR=ray``).

Nothing that needs TensorFlow or a GPU runs on the bot host then: trainings are Ray jobs on GPU nodes, and
exports and predictions are one-off Ray jobs. Every node sees ``DETBOT_DATA_DIR`` at the same path, which
start-up proves before the bot takes a single update.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket

from pipeline.errors import ClusterError
from pipeline.executors.probe import cluster_hardware
from pipeline.executors.ray_jobs import RayExecutor, probe
from pipeline.train.hardware import Hardware

from .config import Settings
from .errors import ConfigError

log = logging.getLogger(__name__)


class Cluster:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.executor = RayExecutor(settings.ray_address, settings.data_dir, settings.ray_gpu_resource)
        # Who holds a job's lease while submitting it: this bot process, among any others on the same store.
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"

    @property
    def gpus_per_job(self) -> int:
        return self.settings.gpus_per_job or 1

    def check(self) -> Hardware:
        """Blocks for seconds: every node writes into the data folder and the bot reads it back; what one
        training gets, from the GPU nodes' own nvidia-smi. Anything wrong stops start-up, in one line."""
        try:
            nodes = probe(self.executor)
            hardware = cluster_hardware(nodes, self.settings.ray_gpu_resource, self.gpus_per_job)
        except ClusterError as error:
            raise ConfigError(f"the Ray cluster at {self.settings.ray_address} is not ready: {error}") from None
        log.info(
            "Ray cluster at %s: %d nodes; one training gets %s", self.executor.address, len(nodes), hardware.device
        )
        return hardware

    async def run_cli(self, args: list[str], env: dict[str, str] | None = None):
        """``python -m pipeline ARGS`` as a one-off Ray job, answered as ``bot.cli_runner.run_cli`` answers.
        ``env`` is this host's GPU choice, which means nothing on the cluster: Ray places the job."""
        try:
            return await asyncio.to_thread(self.executor.call, args)
        except ClusterError as error:
            log.warning("python -m pipeline %s on the cluster: %s", args[0], error)
            return {"error": error.to_json()}
