"""One job, its own GPUs: detection under CUDA_VISIBLE_DEVICES, the bot handing GPUs out, TensorFlow's set-up.

There is no GPU here: a fake ``nvidia-smi`` first on PATH answers for four GPUs of
different sizes, and the bot's trainer launches are recorded through its ``run_cli`` seam
instead of being started. The store is real SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from bot.training import TrainingService
from pipeline.train.hardware import detect_hardware, detect_visible
from storage import MIGRATIONS, open_store
from tests.builders import store_with_dataset

ROOT = Path(__file__).resolve().parents[1]
# index, uuid, memory.total (MiB), compute_cap: in nvidia-smi's (PCI bus) order
GPUS = [
    ("0", "GPU-aaaa1111-0000-0000-0000-000000000000", "16384", "7.0"),
    ("1", "GPU-bbbb2222-0000-0000-0000-000000000000", "24576", "8.6"),
    ("2", "GPU-bbbb3333-0000-0000-0000-000000000000", "40960", "8.0"),
    ("3", "GPU-cccc4444-0000-0000-0000-000000000000", "81920", "9.0"),
]
FAKE_SMI = """#!{python}
import sys
gpus = {gpus!r}
fields = ["index", "uuid", "memory.total", "compute_cap"]
query = next(a for a in sys.argv[1:] if a.startswith("--query-gpu=")).partition("=")[2].split(",")
if "--format=csv,noheader,nounits" not in sys.argv or any(f not in fields for f in query):
    sys.exit('Field "%s" is not a valid field to query.' % query)
for gpu in gpus:
    print(", ".join(gpu[fields.index(f)] for f in query))
"""
GOOD = {"TELEGRAM_BOT_TOKEN": "123:abc", "ALLOWED_USER_IDS": "1"}
USER = 1


@pytest.fixture
def smi(tmp_path, monkeypatch):
    """The fake nvidia-smi, alone on PATH."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "nvidia-smi"
    script.write_text(FAKE_SMI.format(python=sys.executable, gpus=GPUS))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    return script


# --- detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "visible, ids",
    [
        (None, ("0", "1", "2", "3")),
        ("2,3", ("2", "3")),
        ("3, 1", ("3", "1")),  # CUDA's order is the list's; spaces are tolerated
        ("GPU-cccc4444-0000-0000-0000-000000000000,0", ("3", "0")),
        ("GPU-aaaa,GPU-cc", ("0", "3")),  # the start of a UUID is enough...
        ("GPU-bbbb,0", ()),  # ...when it names one GPU only: an ambiguous one is invalid
        ("", ()),
        ("-1", ()),
        ("-1,0", ()),
        ("1,7,2", ("1",)),  # the list ends at the first entry that names no GPU
        ("1,x,2", ("1",)),
        ("1,1,2", ("1",)),  # a repeat ends it too: nobody gets a GPU twice
    ],
)
def test_detection_honours_cuda_visible_devices(smi, visible, ids):
    hardware, found = detect_visible(visible)
    assert found == ids and detect_hardware(visible) == hardware
    assert hardware.gpus == len(ids) and not hardware.assumed
    by_index = {gpu[0]: gpu for gpu in GPUS}
    if ids:  # the smallest and oldest of the visible GPUs bound what a mirrored job can do
        assert hardware.gpu_memory_mb == min(int(by_index[i][2]) for i in ids)
        assert hardware.compute_capability == min(float(by_index[i][3]) for i in ids)
    else:
        assert hardware.gpu_memory_mb == 0 and hardware.device.startswith("CPU")


def test_no_nvidia_smi_is_a_cpu_host(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    hardware, ids = detect_visible()
    assert ids == () and hardware.gpus == 0 and hardware.cpu_cores >= 1 and detect_hardware() == hardware


# --- settings ----------------------------------------------------------------------------------


def test_gpu_settings_defaults_and_validation():
    plain = load_settings(GOOD, env_file=None)
    assert plain.gpus_per_job is None and plain.visible_devices is None
    assert plain.job_gpus(4) == 4  # one training slot: all of them
    assert load_settings(GOOD | {"DETBOT_TRAINING_SLOTS": "3"}, None).job_gpus(4) == 1
    chosen = load_settings(GOOD | {"DETBOT_GPUS_PER_JOB": "2", "CUDA_VISIBLE_DEVICES": ""}, None)
    assert chosen.job_gpus(4) == 2 and chosen.visible_devices == ""  # "" hides every GPU, unlike unset
    for bad in ("0", "1.5", "two", "-1"):
        with pytest.raises(ConfigError, match="DETBOT_GPUS_PER_JOB"):
            load_settings(GOOD | {"DETBOT_GPUS_PER_JOB": bad}, None)


# --- the bot hands GPUs out --------------------------------------------------------------------


class Recorder:
    """Stands in for ``_run_cli``: records each pipeline command and the environment it would get."""

    def __init__(self):
        self.calls: list[tuple[list[str], dict | None]] = []

    async def __call__(self, args, env=None):
        self.calls.append((args, env))
        return {"train": {"pid": 4000 + len(self.calls)}, "export": {}, "predict": []}[args[0]]

    def gpus(self, index: int = -1) -> str | None:
        env = self.calls[index][1]
        return None if env is None else env["CUDA_VISIBLE_DEVICES"]


def service(tmp_path, **env):
    store, dataset = store_with_dataset(tmp_path / "detbot.db", USER, tmp_path / "ws")
    recorder = Recorder()
    return TrainingService(store, load_settings(GOOD | env, env_file=None), run_cli=recorder), recorder, dataset


def queue(svc, dataset, count):
    return [
        svc.store.add_job(USER, USER, dataset.id, f"/jobs/{n}", "mobilenetv2-fpn", {"steps": 5}) for n in range(count)
    ]


def test_concurrent_jobs_get_disjoint_gpus_and_a_third_waits_for_free_ones(smi, tmp_path):
    svc, runs, dataset = service(tmp_path, DETBOT_TRAINING_SLOTS="3", DETBOT_GPUS_PER_JOB="2")
    assert svc.hardware.gpus == 2  # the card plans for what one training gets
    first, _, third = queue(svc, dataset, 3)
    started = asyncio.run(svc.start_queued())
    assert [job.gpus for job in started] == [("0", "1"), ("2", "3")]
    assert [job.status for job in started] == ["running", "running"]
    assert svc.store.job_by_id(third.id).status == "queued"  # a slot is free, but no GPUs are
    args, env = runs.calls[0]
    assert args[0] == "train" and "--detach" in args and env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and env["PATH"] == str(smi.parent)  # the rest is inherited
    assert runs.gpus(1) == "2,3"
    assert asyncio.run(svc.start_queued()) == [] and len(runs.calls) == 2

    svc.store.update_job(first.id, status="finished")
    (resumed,) = asyncio.run(svc.start_queued())
    assert resumed.id == third.id and resumed.gpus == ("0", "1") and runs.gpus() == "0,1"
    assert svc.store.job_by_id(first.id).gpus == ("0", "1")  # kept: what it trained on


def test_defaults_one_gpu_each_with_slots_all_with_one_slot(smi, tmp_path):
    svc, runs, dataset = service(tmp_path, DETBOT_TRAINING_SLOTS="2")
    queue(svc, dataset, 3)
    assert [job.gpus for job in asyncio.run(svc.start_queued())] == [("0",), ("1",)]  # the slots bound it
    assert [runs.gpus(n) for n in (0, 1)] == ["0", "1"]

    alone, runs, dataset = service(tmp_path / "alone")
    queue(alone, dataset, 2)
    assert [job.gpus for job in asyncio.run(alone.start_queued())] == [("0", "1", "2", "3")]
    assert runs.gpus() == "0,1,2,3" and alone.hardware.gpus == 4


def test_only_the_bots_visible_gpus_are_handed_out(smi, tmp_path):
    svc, _, dataset = service(tmp_path, CUDA_VISIBLE_DEVICES="GPU-cccc,1", DETBOT_TRAINING_SLOTS="4")
    assert svc.gpu_ids == ("3", "1") and svc.hardware.gpu_memory_mb == 24576
    queue(svc, dataset, 3)
    assert [job.gpus for job in asyncio.run(svc.start_queued())] == [("3",), ("1",)]
    with pytest.raises(ConfigError, match="DETBOT_GPUS_PER_JOB=3"):
        service(tmp_path / "too-many", CUDA_VISIBLE_DEVICES="0,1", DETBOT_GPUS_PER_JOB="3")


def test_a_trainer_from_before_gpus_were_handed_out_holds_them_all(smi, tmp_path):
    svc, _, dataset = service(tmp_path, DETBOT_TRAINING_SLOTS="2")
    old, new = queue(svc, dataset, 2)
    svc.store.update_job(old.id, status="running", pid=1)  # gpus NULL, as a job of an older detbot
    assert asyncio.run(svc.start_queued()) == [] and svc.store.job_by_id(new.id).status == "queued"


def test_an_older_database_gains_the_gpus_column(tmp_path):
    path = tmp_path / "detbot.db"
    with open_store(path, migrations=MIGRATIONS[:1]) as old:
        old.db["users"].insert({"user_id": USER, "name": "alice", "created": 1.0})  # as that version wrote it
        dataset = old.add_dataset(USER, "shapes.zip", str(tmp_path / "ws"), 1000)
        old.db["jobs"].insert(
            {
                "id": "j1",
                "user_id": USER,
                "chat_id": USER,
                "dataset_id": dataset.id,
                "job_dir": "/jobs/1",
                "model": "m",
                "request": "{}",
                "status": "running",
                "events_offset": 0,
                "created": 1.0,
                "updated": 1.0,
            }
        )
    with open_store(path) as store:
        assert store.job_by_id("j1").gpus is None
        assert store.update_job("j1", gpus=("2", "0")).gpus == ("2", "0")


def test_a_cpu_host_launches_as_before(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    svc, runs, dataset = service(tmp_path, DETBOT_TRAINING_SLOTS="2", DETBOT_GPUS_PER_JOB="2")
    first = queue(svc, dataset, 3)[0]
    started = asyncio.run(svc.start_queued())
    assert len(started) == 2 and all(job.gpus is None for job in started) and runs.gpus() is None
    assert svc.hardware.gpus == 0
    asyncio.run(svc.export(svc.store.job_by_id(first.id)))
    assert runs.calls[-1][0][0] == "export" and runs.gpus() is None


def test_export_and_predict_use_a_free_gpu_of_their_job_else_the_cpu(smi, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bot.training")
    svc, runs, dataset = service(tmp_path, DETBOT_TRAINING_SLOTS="2", DETBOT_GPUS_PER_JOB="2")
    first, second = queue(svc, dataset, 2)
    asyncio.run(svc.start_queued())
    first = svc.store.update_job(first.id, status="finished")
    second = svc.store.job_by_id(second.id)

    archive = asyncio.run(svc.export(first))
    assert runs.calls[-1][0][0] == "export" and runs.gpus() == "0"  # one GPU: both run on a single device
    asyncio.run(svc.predict(archive, tmp_path / "photo.jpg", tmp_path / "out.png", job=first))
    assert runs.calls[-1][0][0] == "predict" and runs.gpus() == "0"
    asyncio.run(svc.export(second))  # still training: its GPUs are taken
    assert runs.gpus() == "" and f"export of job {second.id} runs on the CPU" in caplog.text
    asyncio.run(svc.predict(archive, tmp_path / "photo.jpg", tmp_path / "out.png"))
    assert runs.gpus() == "0"  # no job named: any GPU no training holds

    third = queue(svc, dataset, 1)[0]
    assert asyncio.run(svc.start_queued())[0].id == third.id  # takes 0,1 back
    asyncio.run(svc.predict(archive, tmp_path / "photo.jpg", tmp_path / "out.png", job=first))
    assert runs.gpus() == "" and f"predict of job {first.id} runs on the CPU" in caplog.text


# --- TensorFlow's set-up -----------------------------------------------------------------------


@pytest.mark.slow
def test_configure_tensorflow_in_a_real_tensorflow_process():
    code = (
        "import logging, tensorflow as tf\n"
        "from pipeline.train.devices import configure_tensorflow\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "print(configure_tensorflow(tf))\n"
        "print(float(tf.constant(1.0) + 1))\n"  # initialised now: calling again must not raise
        "print(configure_tensorflow(tf))\n"
        "print(configure_tensorflow(tf, use_gpu=False))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["the", "CPU", "2.0", "the", "CPU", "the", "CPU"]
    assert "pipeline.train.devices:TensorFlow runs on the CPU" in result.stderr
