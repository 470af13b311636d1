"""Fixtures shared across test modules, built once per test run, and the run's check for leftover processes."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.data.steps import PrepareOptions, prepare
from pipeline.data.synthetic import SyntheticSpec, make_voc_zip
from tests.fake_telegram import DEFAULT_TOKEN, FakeTelegram

ROOT = Path(__file__).resolve().parents[1]
RUN_MARKER = "DETBOT_TEST_RUN"  # every process the run starts inherits it; the last hook looks for survivors
# How long the run waits for its processes to end; the hygiene test's inner run, whose sleeper never ends, waits less.
LEFTOVER_GRACE_S = float(os.environ.get("DETBOT_TEST_LEFTOVER_GRACE_S", "5"))
LONGEST_FIRST = (
    "test_export.py",
    "test_ray_cluster.py",
    "test_gpu_emulation.py",
    "test_train.py",
    "test_bot_predict_e2e.py",
    "test_finetune.py",
    "test_bot_e2e.py",
)
# The shared trained job: long enough that the detector finds the shapes reliably, so that its export verifies
# against training and a drawn circle is found as a circle; short enough to cost under two minutes of CPU.
# Measured on the 8 validation images (this machine): AP50 0.63 and 0.71 after 200 steps, where a circle was at
# times taken for a square; 0.72-0.975 over the seven runs of 400 whose AP50 was kept (104 CPU-seconds), and the
# export tests passed in every test run at 400.
TRAINED_STEPS = 400
TRAIN_ARGS = [
    "--model",
    "mobilenetv2-fpn",
    "--no-pretrained",
    "--steps",
    str(TRAINED_STEPS),
    "--batch-size",
    "4",
    # The warm-up the export tests were tuned with (5%): the planner's 10% leaves the model at a borderline
    # AP50 where TFLite's and the SavedModel's NMS can part by more than the export's tolerance.
    "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=0.06",
    "trainer.optimizer_config.warmup.linear.warmup_steps=10",
    "trainer.steps_per_loop=100",
    "trainer.checkpoint_interval=200",
    f"trainer.validation_interval={TRAINED_STEPS}",
]


def pytest_configure(config):
    os.environ.setdefault(RUN_MARKER, uuid.uuid4().hex)  # set by the controller; xdist workers inherit it
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_xdist_auto_num_workers(config):
    """Workers for ``-n auto``, the default (pyproject.toml). A run with TensorFlow in it is CPU-bound: two, one per
    core of the machines it is timed on (three took 715 s against 710). The fast tier (``-m "not slow"``) mostly
    waits on the bot processes its end-to-end tests start: four (94 s on two, 75 and 82 s on four, 83 s on six)."""
    return 4 if config.option.markexpr == "not slow" else 2


def pytest_collection_modifyitems(items):
    """Slow files first, the longest of them first: the two workers share them out from the start instead of
    one waiting on the last. test_export.py leads because it builds the shared trained job and its export,
    which the other files that need a trained model wait for; the other worker meanwhile runs files that train
    their own (test_train.py's trainings come before its two tests on the shared job)."""
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None, _rank(item.path.name)))


def _rank(filename: str) -> int:
    return LONGEST_FIRST.index(filename) if filename in LONGEST_FIRST else len(LONGEST_FIRST)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _tensorflow_only_when_slow(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _tensorflow_only_when_slow(item))


def _tensorflow_only_when_slow(item):
    """The fast tier (``-m "not slow"``) stays fast only if its tests never import TensorFlow: fail one that does.

    Exact in a fast-tier run; in a full run TensorFlow may already be loaded by an earlier slow test, and then
    nothing can be told.
    """
    before = "tensorflow" in sys.modules
    result = yield
    if not before and "tensorflow" in sys.modules and item.get_closest_marker("slow") is None:
        pytest.fail(f"{item.nodeid} imports TensorFlow: mark it slow (pytest.mark.slow)", pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session):
    """After everything else (xdist has shut its workers down by then): no process of this run may outlive it.

    Only the controller looks (under xdist a worker's children are the controller's grandchildren and carry the
    same marker). What is still alive after a grace period is killed, and the run fails with its command line.
    """
    yield
    if hasattr(session.config, "workerinput"):
        return
    leftovers = _wait_for_leftovers(os.environ[RUN_MARKER], LEFTOVER_GRACE_S)
    if not leftovers:
        return
    for pid in leftovers:
        _kill(pid)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"  pid {pid}: {cmd}" for pid, cmd in leftovers.items()]
    message = "processes started by the tests outlived the run (killed now):\n" + "\n".join(lines)
    if reporter is not None:
        reporter.write_line(message, red=True, bold=True)
    else:
        print(message, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _wait_for_leftovers(marker: str, grace: float) -> dict[int, str]:
    deadline = time.monotonic() + grace
    while True:
        found = _marked_processes(marker)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.2)


def _marked_processes(marker: str) -> dict[int, str]:
    """pid -> command line of every live process other than this one whose environment carries the marker."""
    needle = f"{RUN_MARKER}={marker}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state == "Z":
            continue  # exited, only not yet reaped by its parent
        if int(parent) == os.getpid() and "from multiprocessing." in command:
            continue  # this process's own fork server or resource tracker: they end when it does
        found[int(entry.name)] = command
    return found


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def build_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """``build(path)`` once per test run, even when xdist runs two workers: the others wait and reuse it.

    The pattern pytest-xdist documents: a file lock in the directory all workers share (the parent of their
    base temp directories), and a marker written when the build is done. A failed build leaves its error
    there, so that the next worker fails at once instead of repeating minutes of work.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # gw0/gw1 live in the run's folder
    target, done, failed = shared / name, shared / f"{name}.done", shared / f"{name}.failed"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(f"building {name} failed in another worker:\n{failed.read_text()}")
        if not done.exists():
            try:
                build(target)
            except BaseException:
                failed.write_text(traceback.format_exc())
                raise
            done.touch()
    return target


def pipeline_cli(*args: str, timeout: float = 900) -> dict:
    """``python -m pipeline ARGS --json`` in a fresh process; its JSON answer, or an error with its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *args, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(
            f"pipeline {args[0]} exited {result.returncode}: {result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def shapes_workspace(tmp_path_factory) -> Path:
    """A prepared workspace of 40 generated shapes images (32 train, 8 val, 3 classes). Read-only.

    Built once per run and shared by the workers, so that the trained job below, which points into it, and
    the tests that read it see one folder. Tests that change a workspace copy it first (``shutil.copytree``).
    """

    def build(path: Path) -> None:
        path.mkdir()
        archive = make_voc_zip(path / "shapes.zip", SyntheticSpec(images=40, seed=7))
        prepare(archive, path / "ws", PrepareOptions(val_ratio=0.2))

    return build_once(tmp_path_factory, "shapes", build) / "ws"


@pytest.fixture(scope="session")
def shapes_zip(shapes_workspace) -> Path:
    """The zip the shapes workspace was prepared from, as a user would upload it. Read-only."""
    return shapes_workspace.parent / "shapes.zip"


@pytest.fixture(scope="session")
def trained_job(shapes_workspace, tmp_path_factory) -> Path:
    """A finished training job folder: a real ``python -m pipeline train`` on the shapes workspace. Read-only.

    mobilenetv2-fpn from scratch, 400 steps of batch 4 (``TRAIN_ARGS``): loops of 100 steps, checkpoints at
    200 and 400, one evaluation at the end, whose best checkpoint (step 400) finds the big shapes well enough
    that an export of it reproduces its AP50 within the export's tolerance. Every test that only needs "a
    trained model" (export, verify, predict, resume-free job checks, the bot's archive) uses this one job,
    built once per run even under xdist. A test that changes a job works on ``copy_job(trained_job, ...)``.
    """
    return build_once(
        tmp_path_factory,
        "trained_job",
        lambda path: pipeline_cli("train", str(shapes_workspace), *TRAIN_ARGS, "--job-dir", str(path)),
    )


@pytest.fixture(scope="session")
def exported_archive(trained_job, tmp_path_factory) -> Path:
    """The model zip exported from ``trained_job`` by ``python -m pipeline export``, with TFLite. Read-only.

    The export has already checked itself: the SavedModel (and the TFLite model) reproduced the job's AP50
    on the validation images, else the command fails and so does every test that asks for this fixture. The
    export's JSON report sits beside the zip as ``report.json``. ``predict`` unpacks next to the zip
    (``model.zip.cache``) and tolerates concurrent readers, so tests may predict with it directly.
    """

    def build(path: Path) -> None:
        path.mkdir()
        report = pipeline_cli("export", str(trained_job), "--out", str(path / "model.zip"))
        (path / "report.json").write_text(json.dumps(report, indent=1))

    return build_once(tmp_path_factory, "exported", build) / "model.zip"


@pytest.fixture
def tg():
    """The fake Bot API server on 127.0.0.1, for a real bot process or a python-telegram-bot client."""
    with FakeTelegram(DEFAULT_TOKEN) as server:
        yield server


@pytest.fixture
def bot(tg, tmp_path):
    """The real bot process (``python -m bot``) on the fake Bot API, its data in ``tmp_path / "data"``;
    files that need other settings define their own."""
    from tests.test_bot_e2e import BotProcess, kill_trainers

    (tmp_path / "data").mkdir()
    process = BotProcess(tg, tmp_path / "data")
    tg.wait_until_polling()
    yield process
    process.stop()
    kill_trainers(tmp_path / "data")
