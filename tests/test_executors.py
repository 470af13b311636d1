"""The executor seam without a cluster: the local executor's view of a process, what a cluster's probe answer
means (shared folder, what one training gets), the entrypoint's quoting, leases and the bot's cluster settings.
A real Ray cluster is exercised in test_ray_cluster.py."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from pipeline.errors import ClusterError
from pipeline.executors import LocalExecutor, RayExecutor, Run
from pipeline.executors.probe import check_shared, cluster_hardware
from pipeline.train.job_folder import JobPaths
from pipeline.train.job_process import process_start
from storage import open_store

GOOD = {"TELEGRAM_BOT_TOKEN": "123:abc", "ALLOWED_USER_IDS": "1"}
A100 = {"gpus": 4, "gpu_memory_mb": 81920, "compute_capability": 8.0, "cpu_cores": 32}
T4 = {"gpus": 1, "gpu_memory_mb": 15360, "compute_capability": 7.5, "cpu_cores": 8}


def node(name: str, resources: dict, hardware: dict, write_error: str | None = None) -> dict:
    return {
        "node": f"{name}-id",
        "host": name,
        "address": f"10.0.0.{len(name)}",
        "resources": resources,
        "hardware": hardware,
        "write_error": write_error,
    }


@pytest.fixture
def sleeper():
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def test_a_local_run_is_running_while_its_process_lives_and_young_then_ended(tmp_path, sleeper):
    job, local = JobPaths(tmp_path), LocalExecutor()
    run = Run("local", f"{sleeper.pid} {process_start(sleeper.pid)}", started=time.time())
    assert local.status(run, job).state == "running"  # launched, not yet in its pid file
    assert local.status(Run("local", " ", started=time.time()), job).state == "running"  # still being launched
    old = Run("local", run.id, started=time.time() - 3600)
    assert local.status(old, job).state == "ended"  # alive, but never claimed the job: not its trainer
    reused = Run("local", f"{sleeper.pid} 1", started=time.time())
    assert local.status(reused, job).state == "ended"  # the pid now belongs to a process started later
    job.pid.write_text(f"{sleeper.pid} {process_start(sleeper.pid)}\n")
    assert local.status(old, job).state == "running"  # the trainer holds its job folder
    sleeper.kill()
    sleeper.wait()
    assert local.status(run, job).state == "ended"


def test_the_plan_is_for_the_weakest_node_that_can_take_a_job():
    nodes = [node("big", {"GPU": 4.0}, A100), node("small", {"GPU": 1.0}, T4), node("head", {"CPU": 2.0}, {})]
    plan = cluster_hardware(nodes, "GPU", 1)
    assert (plan.gpus, plan.gpu_memory_mb, plan.compute_capability) == (1, 15360, 7.5)
    plan = cluster_hardware(nodes, "GPU", 2)  # only the big node has two
    assert (plan.gpus, plan.gpu_memory_mb, plan.compute_capability) == (2, 81920, 8.0)
    with pytest.raises(ClusterError) as refused:
        cluster_hardware(nodes, "GPU", 8)
    assert refused.value.kind == "no_gpu_nodes" and "'GPU'" in str(refused.value) and "[0, 1, 4]" in str(refused.value)
    cpu_only = cluster_hardware([node("w", {"fake_gpu": 1.0}, {"cpu_cores": 2})], "fake_gpu", 1)
    assert cpu_only.gpus == 0 and cpu_only.cpu_cores == 2  # a custom resource on CPU nodes: the CPU plan


def test_a_node_whose_file_is_not_here_fails_the_shared_folder_check(tmp_path):
    here, away = node("gpu1", {}, T4), node("gpu2", {}, T4)
    (tmp_path / ".detbot-check").mkdir()
    (tmp_path / ".detbot-check" / "tok-gpu1-id").write_text("gpu1-id")
    check_shared(tmp_path, "tok", [here])
    assert not list((tmp_path / ".detbot-check").iterdir())  # read back, then removed
    (tmp_path / ".detbot-check" / "tok-gpu1-id").write_text("gpu1-id")
    with pytest.raises(ClusterError) as refused:
        check_shared(tmp_path, "tok", [here, away])
    said = str(refused.value)
    assert refused.value.kind == "storage_not_shared" and f"{tmp_path} is not shared with the Ray node gpu2" in said
    with pytest.raises(ClusterError) as refused:
        check_shared(tmp_path, "tok", [node("gpu3", {}, T4, write_error="[Errno 30] Read-only file system")])
    assert "could not write there: [Errno 30] Read-only file system" in str(refused.value)


def test_every_entrypoint_argument_reaches_the_trainer_as_one_word(tmp_path):
    executor = RayExecutor("http://127.0.0.1:1", tmp_path, python="/opt/my python/bin/python", project_root=tmp_path)
    hostile = ["train", "/data/a b; rm -rf /", "$(touch x)", "`id`", "--", "name='q'\n2"]
    entrypoint = executor._entrypoint(hostile, "> /tmp/out file.json")
    cd, command = entrypoint.split(" && exec ", 1)
    assert shlex.split(cd) == ["cd", str(tmp_path)]
    assert shlex.split(command) == [
        "/opt/my python/bin/python",
        "-m",
        "pipeline",
        *hostile,
        ">",
        "/tmp/out",
        "file.json",
    ]


def test_a_cluster_that_does_not_answer_is_one_clear_error(tmp_path):
    executor = RayExecutor("http://127.0.0.1:9", tmp_path)  # nothing listens on the discard port
    with pytest.raises(ClusterError) as refused:
        executor.status(Run("ray", "detbot-x-1"))
    assert refused.value.kind == "cluster_unreachable" and "http://127.0.0.1:9" in str(refused.value)


def test_a_lease_keeps_a_second_submitter_out_until_released_or_expired():
    now = [1000.0]
    with open_store(None, clock=lambda: now[0]) as store:
        store.ensure_user(1, "Ann")
        dataset = store.add_dataset(1, "a.zip", Path("/d"), 1)
        store.finish_dataset(dataset.id, {"labelled_images": 1})
        job = store.add_job(1, 1, dataset.id, Path("/d/jobs/j"), "mobilenetv2-fpn", {"model": "mobilenetv2-fpn"})
        assert store.take_lease(job.id, "bot-a", 300)
        assert not store.take_lease(job.id, "bot-b", 300)
        assert store.take_lease(job.id, "bot-a", 300)  # its own lease, renewed
        store.release_lease(job.id, "bot-b")  # not bot-b's to release
        assert not store.take_lease(job.id, "bot-b", 300)
        store.release_lease(job.id, "bot-a")
        assert store.take_lease(job.id, "bot-b", 300)
        now[0] += 301  # bot-b died holding it
        assert store.take_lease(job.id, "bot-a", 300)
        updated = store.update_job(job.id, run_id="detbot-x-1", runs=1, stop_requested=5.0)
        assert (updated.run_id, updated.runs, updated.stop_requested) == ("detbot-x-1", 1, 5.0)


def test_cluster_settings_are_checked_at_start_up(tmp_path):
    assert load_settings(GOOD, env_file=None).executor == "local"
    with pytest.raises(ConfigError, match="RAY_ADDRESS"):
        load_settings(GOOD | {"DETBOT_EXECUTOR": "ray"}, env_file=None)
    with pytest.raises(ConfigError, match="not local or ray"):
        load_settings(GOOD | {"DETBOT_EXECUTOR": "kubernetes"}, env_file=None)
    with pytest.raises(ConfigError, match="not a Ray resource name"):
        load_settings(
            GOOD | {"DETBOT_EXECUTOR": "ray", "RAY_ADDRESS": "http://h:8265", "DETBOT_RAY_GPU_RESOURCE": "a b"}
        )
    on_cluster = load_settings(
        GOOD | {"DETBOT_EXECUTOR": "ray", "RAY_ADDRESS": "http://h:8265", "DETBOT_DATA_DIR": "data"}, env_file=None
    )
    assert on_cluster.on_cluster and on_cluster.data_dir.is_absolute() and on_cluster.ray_gpu_resource == "GPU"
