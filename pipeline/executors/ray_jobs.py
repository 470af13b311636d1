"""Ray Jobs as the executor: each run is a Ray job whose entrypoint is ``python -m pipeline ...``.

Every node runs detbot from the same folder with the same Python, and sees the bot's data folder at the same
path (shared storage): the entrypoint writes the job folder the bot reads. Ray places the entrypoint on a node
with the resources asked for, queues it while none has them free, and can stop it.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import uuid
from pathlib import Path

from pipeline.errors import ClusterError
from pipeline.executors.base import Run, RunState
from pipeline.executors.probe import check_shared
from pipeline.files import PROJECT_ROOT
from pipeline.train.job_folder import JobPaths

STATES = {status: status.lower() for status in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED")}
POLL_S = 0.5


class RayExecutor:
    name = "ray"

    def __init__(
        self,
        address: str,
        shared_dir: Path,
        gpu_resource: str = "GPU",
        python: str = sys.executable,
        project_root: Path = PROJECT_ROOT,
    ):
        """``address``: the head's job server (``http://HOST:8265``); ``shared_dir``: a folder every node sees at
        this path, for answers of one-off commands; ``gpu_resource``: the Ray resource a training's GPUs are
        counted in (``GPU``, or a custom one)."""
        self.address, self.shared_dir, self.gpu_resource = address, Path(shared_dir), gpu_resource
        self.python, self.project_root = python, Path(project_root)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            try:
                self._client = JobSubmissionClient(self.address)
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise ClusterError(
                    f"cannot reach the Ray job server at {self.address}: {error}. Start the head with "
                    "`ray start --head --dashboard-host=...` and check the address.",
                    kind="cluster_unreachable",
                    details={"address": self.address},
                ) from None
        return self._client

    # --- the executor seam ----------------------------------------------------------------------------

    def submit(self, argv: list[str], job: JobPaths, gpus: int = 0, run_id: str | None = None) -> Run:
        """A run of ``argv`` on ``gpus`` of the cluster's GPU resource; its output goes to the job's train.log."""
        job.root.mkdir(parents=True, exist_ok=True)
        run_id = run_id or f"detbot-{job.root.name}-{uuid.uuid4().hex[:8]}"
        self._submit(self._entrypoint(argv, f">> {shlex.quote(str(job.log))} 2>&1"), run_id, gpus, job.root.name)
        run = Run(self.name, run_id, self.address, time.time())
        run.save(job)
        return run

    def status(self, run: Run, job: JobPaths | None = None) -> RunState:
        try:
            info = self.client.get_job_info(run.id)
        except RuntimeError as error:
            if "does not exist" in str(error):
                return RunState("lost", f"the cluster does not know the run {run.id}")
            raise self._unreachable(error) from None
        except ConnectionError as error:
            raise self._unreachable(error) from None
        return RunState(STATES.get(str(info.status), "lost"), info.message or "")

    def stop(self, run: Run, job: JobPaths | None = None) -> None:
        try:
            self.client.stop_job(run.id)
        except (RuntimeError, ConnectionError) as error:
            raise self._unreachable(error) from None

    # --- one-off commands -----------------------------------------------------------------------------

    def call(self, argv: list[str], timeout_s: float = 3600.0) -> dict:
        """Runs ``python -m pipeline ARGV --json`` on the cluster, on one CPU, and returns its JSON answer, as the
        CLI would print it (an ``{"error": ...}`` included)."""
        answers = self.shared_dir / ".detbot-answers"
        answers.mkdir(parents=True, exist_ok=True)
        run_id = f"detbot-{argv[0]}-{uuid.uuid4().hex[:12]}"
        answer = answers / f"{run_id}.json"
        asked = argv if "--json" in argv else [*argv, "--json"]
        entrypoint = self._entrypoint(asked, f"> {shlex.quote(str(answer))}")
        self._submit(entrypoint, run_id, 0, argv[0])
        run = Run(self.name, run_id, self.address)
        state = self.wait(run, timeout_s)
        try:
            return json.loads(answer.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ClusterError(
                f"`python -m pipeline {argv[0]}` gave no answer on the cluster ({state.state}: "
                f"{state.message[-300:]}); its log: `ray job logs {run_id}`.",
                kind="cluster_command_failed",
                details={"command": argv[0], "state": state.state},
            ) from None
        finally:
            answer.unlink(missing_ok=True)

    def wait(self, run: Run, timeout_s: float) -> RunState:
        """The run's state once it is over; stopped (and said so) when it takes longer than ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (state := self.status(run)).active:
            if time.monotonic() > deadline:
                self.stop(run)
                return RunState("stopped", f"stopped after {timeout_s:g} s")
            time.sleep(POLL_S)
        return state

    # --- building blocks ------------------------------------------------------------------------------

    def _entrypoint(self, argv: list[str], redirect: str) -> str:
        # Every value is quoted: the arguments are checked values, and the shell reads none of them.
        command = shlex.join([self.python, "-m", "pipeline", *argv])
        return f"cd {shlex.quote(str(self.project_root))} && exec {command} {redirect}"

    def _submit(self, entrypoint: str, run_id: str, gpus: int, what: str) -> None:
        # One CPU: a head started with --num-cpus=0 (the bot host) never runs a training or a TensorFlow command.
        options: dict = {"entrypoint_num_cpus": 1}
        if gpus and self.gpu_resource == "GPU":
            options["entrypoint_num_gpus"] = gpus
        elif gpus:
            options["entrypoint_resources"] = {self.gpu_resource: gpus}
        try:
            self.client.submit_job(entrypoint=entrypoint, submission_id=run_id, metadata={"detbot": what}, **options)
        except (RuntimeError, ConnectionError) as error:
            if "already exists" in str(error):  # this very run was submitted already: never twice
                raise ClusterError(
                    f"the cluster already has a run {run_id}; it is not submitted again.",
                    kind="run_exists",
                    details={"run": run_id},
                ) from None
            raise self._unreachable(error) from None

    def _unreachable(self, error: Exception) -> ClusterError:
        return ClusterError(
            f"the Ray job server at {self.address} did not answer: {str(error)[:300]}",
            kind="cluster_unreachable",
            details={"address": self.address},
        )


def probe(executor: RayExecutor, token: str | None = None) -> list[dict]:
    """Every live node of the cluster, with its resources and GPUs, once each has proved it shares the folder."""
    token = token or uuid.uuid4().hex
    answer = executor.call(["cluster-probe", str(executor.shared_dir), "--token", token], timeout_s=300)
    if "error" in answer:
        raise ClusterError(
            f"the cluster's probe failed: {answer['error'].get('message')}",
            kind="cluster_command_failed",
            details={"command": "cluster-probe", "state": "failed"},
        )
    check_shared(executor.shared_dir, token, answer["nodes"])
    return answer["nodes"]
