"""The end of a job and how the bot notifies: the results album, the archive (and the smaller ones when it is too
big), quiet mode and the curve interval of /settings, and a watcher whose ticks never wait for an export.

The watcher runs for real against the fake Bot API with python-telegram-bot's Bot; the jobs are store rows with
events.jsonl written by hand and a sleeping process as their trainer; the export is a stand-in that takes
seconds. The real bot process and the shared trained job are used where the archive itself matters."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import re
import subprocess
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from telegram import Bot

from bot import preferences
from bot.config import load_settings
from bot.job_events import due
from bot.monitor import watch
from bot.training import TrainingService
from bot.users import Users
from pipeline.errors import ExportError
from pipeline.export.archive_subsets import subsets, write_subset
from pipeline.train.job_process import process_start
from storage import open_store
from tests.fake_telegram import DEFAULT_TOKEN
from tests.test_bot_e2e import ANN, BotProcess, say, seed_finished_job, text_of

BOB = 1002
STEP = re.compile(r"step (\d+)")


@pytest.fixture
def sleeper():
    """A live process to stand in for a trainer, so the watcher sees its job as running."""
    process = subprocess.Popen(["sleep", "300"])
    yield process.pid
    process.kill()
    process.wait()


def a_plot() -> bytes:
    """A real PNG, as a trainer's loss.png is (the fake Bot API refuses a photo that is no image)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 220, 240)).save(out, "PNG")
    return out.getvalue()


def make_service(tmp_path, export_s: float = 0.0, **settings) -> TrainingService:
    """A training service on a store in ``tmp_path`` whose export takes ``export_s`` seconds and writes a small
    archive (a SavedModel stand-in and a metrics.json listing it); ``service.exports`` records each start and end."""
    store = open_store(tmp_path / "detbot.db")
    env = {"TELEGRAM_BOT_TOKEN": "123:abc", "ALLOWED_USER_IDS": f"{ANN},{BOB}", "DETBOT_DATA_DIR": str(tmp_path)}
    exports: list[tuple[str, float]] = []

    async def run_cli(args, env=None):
        assert args[0] == "export", args
        exports.append(("start", time.monotonic()))
        await asyncio.sleep(export_s)
        out = Path(args[args.index("--out") + 1])
        out.write_bytes(small_archive())
        exports.append(("end", time.monotonic()))
        return {"archive": str(out)}

    service = TrainingService(store, load_settings(env | settings, env_file=None), run_cli=run_cli)
    service.exports = exports
    return service


def small_archive() -> bytes:
    artefacts = [
        {"name": "saved_model", "file": "saved_model/", "bytes": 2000, "kept": True},
        {"name": "int8", "file": "model_int8.tflite", "bytes": 0, "kept": False},
    ]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("saved_model/saved_model.pb", b"x" * 2000)
        zf.writestr("label_map.pbtxt", "item { id: 1 name: 'circle' }\n")
        zf.writestr("metrics.json", json.dumps({"artefacts": artefacts, "checkpoint": {"step": 40}}))
    return out.getvalue()


def new_job(service, tmp_path, user: int, name: str, pid: int | None) -> object:
    store = service.store
    store.ensure_user(user, f"user {user}")
    dataset = store.add_dataset(user, "shapes.zip", str(tmp_path / f"ws-{name}"), 1000)
    store.finish_dataset(dataset.id, {"images": 40, "classes": {"circle": {}}})
    job = store.add_job(user, user, dataset.id, tmp_path / name, "mobilenetv2-fpn", {"steps": 100})
    (tmp_path / name).mkdir()
    if pid is not None:
        (tmp_path / name / "train.pid").write_text(f"{pid} {process_start(pid)}\n")
    return store.update_job(job.id, status="running", pid=pid, started=time.time() - 5)


def write_events(path: Path, events: list[dict]) -> None:
    with path.open("a") as out:
        out.writelines(json.dumps(event) + "\n" for event in events)


def progress(step: int, at: float) -> dict:
    return {"event": "progress", "step": step, "time": at, "total_loss": 1.0 / step, "total_steps": 100}


def evaluation(step: int, at: float) -> dict:
    per_class = {"circle": 0.5, "square": 0.25}
    return {"event": "eval", "step": step, "time": at, "AP": 0.4, "AP50": 0.8} | {"per_class_AP": per_class}


def finished(step: int, at: float) -> dict:
    fields = {"AP": 0.4, "AP50": 0.8, "best_step": step, "per_class_AP": {"원": 0.5, "square": 0.25}}
    return {"event": "finished", "step": step, "time": at} | fields


async def ticks(service, tg, seconds: float, every: float = 0.5, between=None, until=None) -> list[float]:
    """The watcher ticking for ``seconds`` as the JobQueue runs it, then until ``until()`` holds (at most a minute
    more: a loaded machine draws the charts slowly); each tick's duration."""
    took = []
    async with Bot(DEFAULT_TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot:
        services = SimpleNamespace(training=service, users=Users(service.store, frozenset()))
        context = SimpleNamespace(bot=bot, bot_data={"services": services})
        end, deadline = time.monotonic() + seconds, time.monotonic() + seconds + 60
        while time.monotonic() < end or (until and not until() and time.monotonic() < deadline):
            if between:
                between()
            start = time.monotonic()
            await watch(context)
            took.append(time.monotonic() - start)
            await asyncio.sleep(every)
    return took


def documents(tg, chat_id: int) -> list[dict]:
    return [e for e in tg.events(chat_id) if e["kind"] == "document"]


# --- how often: the due logic ------------------------------------------------------------------------------


def test_due_never_fires_before_its_interval_and_never_when_off():
    assert due(None, 100.0, 30.0) and due(70.0, 100.0, 30.0)
    assert not due(70.5, 100.0, 30.0)
    assert not due(None, 100.0, None) and not due(0.0, 1e9, None)


def test_curves_and_edits_come_at_most_once_per_interval_as_the_user_set(tmp_path, sleeper):
    service = make_service(tmp_path, DETBOT_PROGRESS_INTERVAL_S="1")
    job = new_job(service, tmp_path, ANN, "a", sleeper)
    (tmp_path / "a" / "loss.png").write_bytes(a_plot())
    service.store.set_notifications(ANN, plot_minutes=5)
    start = job.started
    # An hour of training in one-minute reports, an evaluation every 10 minutes, read in polls of 5 events.
    events = [progress(step, start + 60 * step) for step in range(1, 61)]
    events += [evaluation(step, start + 60 * step + 1) for step in range(10, 61, 10)]
    events.sort(key=lambda e: e["time"])
    sent, statuses = [], []
    for first in range(0, len(events), 5):
        write_events(tmp_path / "a" / "events.jsonl", events[first : first + 5])
        for outgoing in service.poll(job):
            if outgoing.kind in ("photo", "album"):
                caption = outgoing.text or outgoing.extra["photos"][0][1]
                sent.append((outgoing.kind, int(STEP.search(caption).group(1))))
            if outgoing.kind == "status":
                statuses.append(time.monotonic())
                service.edited(job.id)  # what the watcher does when it edits
        time.sleep(0.1)
    # A step is a minute here. The first loss curve five minutes in, the next five minutes later; the evaluation
    # a second after it waits, and from then on the evaluations' albums (which show the loss too) take the turns.
    assert sent == [("photo", 5), ("photo", 10)] + [("album", step) for step in range(20, 61, 10)]
    assert len(statuses) >= 2 and all(later - earlier >= 1 for earlier, later in zip(statuses, statuses[1:]))

    service.store.set_notifications(ANN, plot_minutes=0)  # no curves at all, evaluations included
    write_events(tmp_path / "a" / "events.jsonl", [progress(90, start + 9000), evaluation(90, start + 9001)])
    assert [o.kind for o in service.poll(job) if o.kind in ("photo", "album")] == []


def test_a_settings_button_stores_only_the_fixed_choices(tmp_path):
    with open_store(tmp_path / "detbot.db") as store:
        store.ensure_user(ANN, "Ann")
        assert preferences.choose(store, ANN, "plots:15").plot_minutes == 15
        for hostile in ("plots:7", "plots:-5", "quiet:yes", "plots:15:x", "other:1", ""):
            assert preferences.choose(store, ANN, hostile).plot_minutes == 15
        assert preferences.choose(store, ANN, "quiet:0").quiet is False


# --- how loud: quiet by default ---------------------------------------------------------------------------


def test_quiet_mode_photos_are_silent_and_alerts_and_the_result_notify(tmp_path, tg, sleeper):
    ann, bob = tg.user(ANN, "Ann"), tg.user(BOB, "Bob")
    service = make_service(tmp_path)
    now = time.time()
    for user, name in ((ANN, "a"), (BOB, "b")):
        new_job(service, tmp_path, user, name, sleeper)
        (tmp_path / name / "loss.png").write_bytes(a_plot())
        nan = {"event": "nan", "step": 12, "time": now, "message": "loss is NaN/Inf at step 12"}
        write_events(tmp_path / name / "events.jsonl", [evaluation(10, now - 1), nan, finished(20, now)])
    service.store.set_notifications(BOB, quiet=False)
    asyncio.run(ticks(service, tg, 1.0, until=lambda: len(documents(tg, ANN)) + len(documents(tg, BOB)) == 2))
    for user, quiet in ((ann, True), (bob, False)):
        sent = [e for e in tg.events(user.chat_id) if e["event"] == "sent"]
        plots = [e for e in sent if e["kind"] == "photo" and "step 10" in text_of(e)]
        assert len(plots) == 1 and plots[0]["silent"] is quiet
        assert [e["silent"] for e in sent if "Alert" in text_of(e)] == [False]
        assert [e["silent"] for e in sent if " finished: best AP" in text_of(e)] == [False]
        album = [e for e in sent if e.get("media_group_id")]
        assert len(album) == 2 and album[0]["silent"] is False  # curves and AP per class: this job has no export
        assert [e["silent"] for e in sent if text_of(e).startswith("AP50 0.80")] == [quiet]
        assert [e["silent"] for e in sent if e["kind"] == "document"] == [False]


# --- responsive: the export runs beside the ticks ------------------------------------------------------------


def test_other_jobs_status_goes_on_while_one_job_exports(tmp_path, tg, sleeper):
    tg.user(ANN, "Ann"), tg.user(BOB, "Bob")
    service = make_service(tmp_path, export_s=6.0, DETBOT_PROGRESS_INTERVAL_S="1")
    done = new_job(service, tmp_path, ANN, "done", sleeper)
    busy = new_job(service, tmp_path, BOB, "busy", sleeper)
    write_events(tmp_path / "done" / "events.jsonl", [progress(10, time.time() - 2), finished(20, time.time())])
    step = iter(range(1, 1000))

    def train_on() -> None:
        write_events(tmp_path / "busy" / "events.jsonl", [progress(next(step), time.time())])

    took = asyncio.run(ticks(service, tg, 9.0, between=train_on, until=lambda: documents(tg, ANN)))
    (_, export_start), (_, export_end) = service.exports
    assert export_end - export_start >= 6.0 and max(took) < 2.0, took  # no tick waited for the export
    edits = [e for e in tg.events(BOB) if e["event"] == "edited" and busy.id in text_of(e)]
    during = [e for e in edits if export_start < e["at"] < export_end]
    assert len(during) >= 3, [e["text"] for e in edits]  # Bob's status moved on all the while
    (document,) = documents(tg, ANN)
    assert document["at"] > export_end
    actions = [a["time"] for a in tg.chat_actions(ANN) if a["action"] == "upload_document"]
    assert len([t for t in actions if export_start <= t <= export_end]) >= 2  # repeated while it worked
    assert service.store.job_by_id(done.id).archive.exists()


def test_a_restart_mid_export_still_delivers_the_archive_once(tmp_path, tg, sleeper):
    tg.user(ANN, "Ann")
    first = make_service(tmp_path, export_s=30.0)
    job = new_job(first, tmp_path, ANN, "done", sleeper)
    write_events(tmp_path / "done" / "events.jsonl", [progress(10, time.time() - 2), finished(20, time.time())])
    asyncio.run(ticks(first, tg, 2.0))  # the bot stops mid-export: its loop ends, the export with it
    assert [kind for kind, _ in first.exports] == ["start"] and first.store.job_by_id(job.id).archive is None
    first.store.close()
    again = make_service(tmp_path, export_s=1.0)
    asyncio.run(ticks(again, tg, 2.0, until=lambda: documents(tg, ANN)))
    assert [kind for kind, _ in again.exports] == ["start", "end"]
    sent = [e for e in tg.events(ANN) if e["event"] == "sent"]
    assert len([e for e in sent if e["kind"] == "document"]) == 1
    assert len([e for e in sent if text_of(e).startswith(f"Job {job.id} finished")]) == 1
    assert len([e for e in sent if e.get("media_group_id")]) == 2  # one album
    asyncio.run(ticks(again, tg, 1.5))  # and nothing more on later ticks
    assert [e for e in tg.events(ANN) if e["event"] == "sent"] == sent
    again.store.close()


# --- smaller archives cut from a whole one ---------------------------------------------------------------


def test_subsets_keep_what_fits_smallest_models_first_and_read_back_intact(tmp_path):
    sizes = {"saved_model/variables/variables.data-00000-of-00001": 300_000, "model.tflite": 200_000}
    sizes |= {"model_fp16.tflite": 100_000, "model_int8.tflite": 50_000, "checkpoint/ckpt-40.index": 90_000}
    names = {"model.tflite": "float32", "model_fp16.tflite": "float16", "model_int8.tflite": "int8"}
    artefacts = [{"name": names.get(f, "saved_model"), "file": f, "bytes": n, "kept": True} for f, n in sizes.items()]
    whole = tmp_path / "model-x.zip"
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, size in sizes.items():
            zf.writestr(name, os.urandom(size))  # incompressible, as model weights nearly are
        zf.writestr("label_map.pbtxt", "item { id: 1 name: 'circle' }\n")
        zf.writestr("README.md", "# circle detector\n")
        zf.writestr("metrics.json", json.dumps({"artefacts": artefacts, "checkpoint": {"step": 40}}))
    small = subsets(whole, 180_000)
    assert list(small) == ["tflite"] and small["tflite"].artefacts == ("int8", "float16")
    out = write_subset(whole, "tflite", 180_000, tmp_path / "model-x-tflite.zip")
    with zipfile.ZipFile(tmp_path / "model-x-tflite.zip") as zf, zipfile.ZipFile(whole) as source:
        assert zf.testzip() is None and set(zf.namelist()) == set(out.entries)
        assert {"label_map.pbtxt", "README.md", "model_int8.tflite", "model_fp16.tflite"} <= set(zf.namelist())
        assert all(zf.read(name) == source.read(name) for name in zf.namelist())
    assert (tmp_path / "model-x-tflite.zip").stat().st_size <= 180_000
    roomy = subsets(whole, 2_000_000)
    assert roomy["tflite"].artefacts == ("int8", "float16", "float32") and "saved_model" in roomy
    assert not any(name.startswith("checkpoint/") for subset in roomy.values() for name in subset.entries)
    with pytest.raises(ExportError):
        write_subset(whole, "saved_model", 180_000, tmp_path / "nope.zip")


# --- the real bot: /settings, and an archive above the upload limit -----------------------------------------


def test_settings_sets_quiet_mode_and_the_curve_interval(tg, tmp_path):
    (tmp_path / "data").mkdir()
    process = BotProcess(tg, tmp_path / "data")
    try:
        tg.wait_until_polling()
        ann = tg.user(ANN, "Ann")
        card = say(tg, ann, "/settings", "Settings")
        assert "quiet" in text_of(card) and "every 5 min" in text_of(card)  # DETBOT_PLOT_INTERVAL_S's 300 s
        for data, shown in (("notify:quiet:0", "every message makes a sound"), ("notify:plots:15", "every 15 min")):
            mark = tg.mark()
            ann.press(card, data)
            card = tg.wait_for(lambda m, s=shown, c=card: _is(m, c) and s in text_of(m), since=mark)
        with open_store(tmp_path / "data" / "detbot.db") as store:
            user = store.get_user(ANN)
        assert (user.quiet, user.plot_minutes) == (False, 15)
    finally:
        process.stop()


@pytest.mark.slow
def test_an_archive_above_the_limit_offers_a_smaller_one_that_fits_and_loads(
    tg, tmp_path, trained_job, exported_archive, shapes_workspace
):
    job, archive = seed_finished_job(tmp_path / "data", trained_job, exported_archive, shapes_workspace)
    limit = 3  # MB: the whole archive (about 10 MB) and its SavedModel are above it, its TFLite models are not
    mark = tg.mark()
    process = BotProcess(tg, tmp_path / "data", DETBOT_UPLOAD_LIMIT_MB=limit)
    try:
        tg.wait_until_polling()
        ann = tg.user(ANN, "Ann")
        offer = tg.wait_for(lambda m: tg.buttons(m) and "above the 3 MB" in text_of(m), chat_id=ANN, since=mark)
        kinds = [data.split(":")[1] for _, data in tg.buttons(offer)]
        assert kinds == ["tflite", "parts"], tg.buttons(offer)
        mark = tg.mark()
        ann.press(offer, f"slim:tflite:{job}")
        smaller = tg.wait_for(lambda m: m["kind"] == "document", chat_id=ANN, since=mark, timeout=60)
        # The smallest TFLite model the export kept (int8 unless its check left it out of this run's archive).
        with zipfile.ZipFile(archive) as whole:
            kept = json.loads(whole.read("metrics.json"))["artefacts"]
        lite = min((a for a in kept if a["kept"] and a["file"].endswith(".tflite")), key=lambda a: a["bytes"])["file"]
        assert len(smaller["bytes"]) <= limit * 2**20 and lite in text_of(smaller)
        with zipfile.ZipFile(io.BytesIO(smaller["bytes"])) as zf:
            names = set(zf.namelist())
            assert {"label_map.pbtxt", "README.md", lite} <= names
            assert not any(name.startswith("saved_model/") for name in names)
            _loads(zf.read(lite))
        _parts_join_back(tg, ann, job, archive, tmp_path)
    finally:
        process.stop()


def _is(message: dict, card: dict) -> bool:
    return message["message_id"] == card["message_id"]


def _loads(model: bytes) -> None:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=model)
    interpreter.allocate_tensors()
    assert len(interpreter.get_output_details()) == 4


def _parts_join_back(tg, ann, job: str, archive: Path, tmp_path: Path) -> None:
    """The last resort: /export, the parts button, and the parts joined as the message says (cat) are the archive."""
    mark = tg.mark()
    ann.send_text("/export")
    offer = tg.wait_for(lambda m: tg.buttons(m) and "above the 3 MB" in text_of(m), chat_id=ANN, since=mark)
    mark = tg.mark()
    ann.press(offer, f"slim:parts:{job}")
    how = tg.wait_for(lambda m: "cat " in text_of(m), chat_id=ANN, since=mark, timeout=60)
    parts = [e for e in tg.events(ANN, since=mark) if e["kind"] == "document"]
    assert len(parts) == math.ceil(archive.stat().st_size / (3 * 2**20 - 64 * 1024)) > 1
    assert all(len(p["bytes"]) <= 3 * 2**20 for p in parts)
    for part in parts:
        (tmp_path / part["filename"]).write_bytes(part["bytes"])
    command = text_of(how).split("macOS, Linux: ")[1].splitlines()[0]
    subprocess.run(command, shell=True, cwd=tmp_path, check=True)
    assert (tmp_path / archive.name).read_bytes() == archive.read_bytes()
