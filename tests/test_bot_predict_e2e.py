"""/predict with a warm model, and a finished job's end, archive and /predict without warm models, through the
real bot (`python -m bot`) and the fake Bot API.

The model is the run's shared ``exported_archive``, recorded in the bot's store as a finished job of Ann's
(``seed_finished_job``). Which worker answered a photo is read from the bot's log (each worker logs its pid
when it starts and when its model is ready) and checked in /proc: a child of the bot, alive or gone. What
the photo should show is the archive's own prediction, run here with ``pipeline.export.predict``.
"""

from __future__ import annotations

import io
import os
import random
import re
import signal
import time
import zipfile
from pathlib import Path

import pytest

from bot import texts
from pipeline.data.synthetic import SyntheticSpec, render_sample
from tests.test_bot_e2e import ANN, BOB, PNG, BotProcess, say, seed_finished_job, text_of

pytestmark = pytest.mark.slow
STARTED = re.compile(r"predict worker (\d+) started")
READY = re.compile(r"predict worker (\d+) ready for .* in ([\d.]+) s")
WARM_BOUND_S = 3.0  # the target is < 1 s; this bound leaves room for a machine busy with other tests
# The warm pool's settings for the bot: idle long enough for the steps between two photos on a loaded machine and
# short enough to wait for once; a hung worker's timeout above WARM_BOUND_S, so that only the hung one times out.
IDLE_S = 5
TIMEOUT_S = 6


def shapes_photo(seed: int) -> bytes:
    """A photo like the ones the model was trained on: coloured circles, squares and triangles."""
    return render_sample(random.Random(seed), SyntheticSpec(), "photo.jpg")[0]


def started_workers(log: Path) -> list[int]:
    return [int(pid) for pid in STARTED.findall(log.read_text(errors="replace"))]


def child_of(pid: int, parent: int) -> bool:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == parent
    except OSError:
        return False


def wait_gone(pid: int, timeout: float) -> float:
    """Seconds until process ``pid`` no longer exists (reaped, not a zombie)."""
    started = time.monotonic()
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() - started < timeout, f"worker {pid} still exists after {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - started


def send_photo(tg, user, data: bytes, timeout: float = 240) -> tuple[dict, float]:
    """The bot's reply to a photo (a photo, or a text when it cannot answer with one) and the seconds it took."""
    mark = tg.mark()
    started = time.perf_counter()
    user.send_photo(data)
    reply = tg.wait_for(lambda m: m["event"] == "sent", chat_id=user.chat_id, since=mark, timeout=timeout)
    return reply, time.perf_counter() - started


def press(tg, user, message: dict, label_start: str) -> dict:
    """Presses the button whose text starts with ``label_start``; the photo as the bot then edited it."""
    [data] = [data for text, data in tg.buttons(tg_message(tg, message)) if text.startswith(label_start)]
    mark = tg.mark()
    user.press(message, data)
    return tg.wait_for(
        lambda m: m["event"] == "edited" and m["message_id"] == message["message_id"],
        chat_id=user.chat_id,
        since=mark,
        timeout=30,
    )


def tg_message(tg, message: dict) -> dict:
    return next(m for m in tg.messages(message["chat_id"]) if m["message_id"] == message["message_id"])


def expected(found, threshold: float) -> list[dict]:
    return [d.to_json() for d in found if d.score >= threshold]


@pytest.fixture(scope="module")
def seen(exported_archive, tmp_path_factory) -> tuple[bytes, list]:
    """A photo on which the archive's model shows the buttons' levels apart, and every detection it makes there
    (down to 0.05), found here. Each lower level must add boxes (0.3, 0.15, 0.05), or a redrawing could not be
    told from the photo it replaces; which photo does depends on a training that is not deterministic (on one,
    the third seed's had no box between 0.15 and 0.3), so the first of twenty seeds that does is taken."""
    from pipeline.export.predict import detect, extract, load_model, open_upright

    model = load_model(extract(exported_archive))
    folder = tmp_path_factory.mktemp("seen")
    for seed in range(20):
        path = folder / f"photo-{seed}.jpg"
        path.write_bytes(shapes_photo(seed))
        found = detect(model, open_upright(path), threshold=0.05)
        if len(expected(found, 0.05)) > len(expected(found, 0.15)) > len(expected(found, 0.3)) > 0:
            return path.read_bytes(), found
    pytest.fail("on none of 20 photos does the shared model show the thresholds 0.05, 0.15 and 0.3 apart")


@pytest.fixture
def ann_with_a_model(tmp_path, trained_job, exported_archive, shapes_workspace):
    """The data folder with Ann's finished job, whose archive is the shared export."""
    seed_finished_job(tmp_path / "data", trained_job, exported_archive, shapes_workspace)
    return tmp_path / "data"


def start_bot(tg, data: Path, **settings) -> BotProcess:
    mark = tg.mark()
    process = BotProcess(tg, data, **settings)
    tg.wait_until_polling()
    ann = tg.user(ANN, "Ann")
    tg.wait_for(lambda m: m["kind"] == "document", chat_id=ANN, since=mark, timeout=60)  # the finished job's archive
    say(tg, ann, "/predict", "model of job")
    return process


def test_warm_workers_answer_unload_when_idle_refuse_forged_buttons_and_are_replaced_when_killed_or_hung(
    tg, tmp_path, ann_with_a_model, seen
):
    """One bot, one model, the photos in a row: every worker start is a TensorFlow load, so the checks share them.
    A warm second photo, the idle worker stopped and the buttons redrawing without it, a fresh worker for the next
    photo, forged and foreign button taps refused, then workers killed between photos, hung over one and dying over
    one, each replaced, the user always answered."""
    photo, found = seen
    bot = start_bot(tg, ann_with_a_model, DETBOT_PREDICT_IDLE_S=str(IDLE_S), DETBOT_PREDICT_TIMEOUT_S=str(TIMEOUT_S))
    log = tmp_path / "bot.log"
    try:
        first = _the_second_photo_is_warm_and_the_idle_model_unloads(tg, bot, log, photo, found)
        _threshold_buttons_refuse_forged_data_and_other_users(tg, first, photo)
        _a_killed_or_hung_worker_is_replaced_and_the_user_always_gets_an_answer(tg, log, photo, text_of(first))
    finally:
        bot.stop()
    assert all(not Path(f"/proc/{pid}").exists() for pid in started_workers(log))  # they died with the bot


def _the_second_photo_is_warm_and_the_idle_model_unloads(tg, bot, log: Path, photo: bytes, found) -> dict:
    """The first photo's reply, after the worker that answered it idled out and the next photo started a new one."""
    ann = tg.user(ANN, "Ann")
    first, cold = send_photo(tg, ann, photo)
    assert first["kind"] == "photo" and text_of(first) == texts.detections(expected(found, 0.3))
    [worker] = started_workers(log)
    assert child_of(worker, bot.process.pid)
    second, warm = send_photo(tg, ann, photo)
    assert second["kind"] == "photo" and text_of(second) == text_of(first)
    assert started_workers(log) == [worker] and child_of(worker, bot.process.pid)  # the same process answered
    print(f"/predict: cold {cold:.2f} s, warm {warm:.2f} s")
    assert warm < cold and warm < WARM_BOUND_S

    # Idle for IDLE_S, the worker is stopped and reaped; the buttons redraw without it.
    assert wait_gone(worker, timeout=IDLE_S + 15) < IDLE_S + 15
    assert "was idle" in log.read_text()
    lower = press(tg, ann, second, "More boxes")
    assert lower["kind"] == "photo" and lower["bytes"] != second["bytes"]
    assert text_of(lower) == texts.threshold_caption(expected(found, 0.15), 0.15)
    lowest = press(tg, ann, second, "More boxes")
    assert text_of(lowest) == texts.threshold_caption(expected(found, 0.05), 0.05)
    assert [text for text, _ in tg.buttons(lowest)] == [texts.higher_threshold(0.15)]  # nothing lower
    higher = press(tg, ann, second, "Fewer boxes")
    assert text_of(higher) == text_of(lower) and higher["bytes"] == lower["bytes"]
    assert started_workers(log) == [worker]

    # The next photo starts a fresh worker.
    third, _ = send_photo(tg, ann, photo)
    assert third["kind"] == "photo" and text_of(third) == text_of(first)
    assert len(started_workers(log)) == 2 and started_workers(log)[1] != worker
    return first


def _threshold_buttons_refuse_forged_data_and_other_users(tg, shot: dict, photo: bytes) -> None:
    """``shot``: a photo of Ann's, in her chat, as the bot first sent it."""
    ann, bob = tg.user(ANN, "Ann"), tg.user(BOB, "Bob")
    [(_, data), _] = tg.buttons(shot)
    assert re.fullmatch(r"thr:[0-9a-f]{8}:[0-9]", data)
    # A modified client's data, in her own chat: another photo, a path, too long, a level out of range.
    for forged in ("thr:0000000a:1", "thr:../../x:1", "thr:" + "f" * 60, data[:-1] + "9", "thr:"):
        mark = tg.mark()
        ann.press_forged(shot, forged)
        reply = tg.wait_for(lambda m: m["event"] == "sent", chat_id=ANN, since=mark, timeout=30)
        assert text_of(reply) == texts.PHOTO_FORGOTTEN, forged
    assert tg_message(tg, shot)["bytes"] == shot["bytes"]

    # In a group, Bob's tap on Ann's photo is refused (an alert); hers redraws it.
    group = tg.group(-5, "Team")
    in_group = group.member(ann)
    theirs, _ = send_photo(tg, in_group, photo)
    [(_, stamped), _] = tg.buttons(theirs)
    assert len(stamped.encode()) <= 64
    mark = tg.mark()
    query = group.member(bob).press(theirs, stamped)
    tg.wait_until(lambda: tg.callback_answer(query) is not None, 30, "the answer to Bob's tap")
    assert tg.callback_answer(query).get("show_alert") is True
    assert not [e for e in tg.events(group.id, since=mark) if e["event"] == "edited"]
    edited = press(tg, in_group, theirs, "More boxes")
    assert edited["kind"] == "photo" and text_of(edited) == text_of(press(tg, ann, shot, "More boxes"))


def _a_killed_or_hung_worker_is_replaced_and_the_user_always_gets_an_answer(
    tg, log: Path, photo: bytes, caption: str
) -> None:
    """``caption``: what the model's answer to ``photo`` says."""
    ann = tg.user(ANN, "Ann")
    first, _ = send_photo(tg, ann, photo)  # answered by a live worker (a new one if the last idled out meanwhile)
    assert first["kind"] == "photo" and text_of(first) == caption
    killed = started_workers(log)[-1]
    os.kill(killed, signal.SIGKILL)  # between photos: the next photo starts a new worker and gets its answer
    wait_gone(killed, timeout=10)
    second, _ = send_photo(tg, ann, photo)
    assert second["kind"] == "photo" and text_of(second) == caption
    hung = started_workers(log)[-1]
    assert hung != killed

    os.kill(hung, signal.SIGSTOP)  # hung over a photo: stopped after the timeout, the user told
    reply, waited = send_photo(tg, ann, photo, timeout=60)
    assert text_of(reply) == texts.predict_timed_out(TIMEOUT_S) and TIMEOUT_S <= waited < 30
    wait_gone(hung, timeout=10)

    third, _ = send_photo(tg, ann, photo)
    assert third["kind"] == "photo" and text_of(third) == caption
    dying, started = started_workers(log)[-1], len(started_workers(log))
    assert dying not in (killed, hung)
    os.kill(dying, signal.SIGSTOP)
    mark = tg.mark()
    ann.send_photo(photo)
    time.sleep(1)
    os.kill(dying, signal.SIGKILL)  # dies over a photo
    reply = tg.wait_for(lambda m: m["event"] == "sent", chat_id=ANN, since=mark, timeout=30)
    assert text_of(reply) == texts.PREDICT_CRASHED
    assert len(started_workers(log)) == started  # the photo it died over started no other worker


def test_a_finished_jobs_end_and_archive_reach_the_chat_and_predict_runs_without_warm_models(
    tg, tmp_path, trained_job, exported_archive, shapes_workspace, seen
):
    """The bot finds the job running, its trainer's events ending in "finished", the archive exported: the watcher
    words the end and sends that archive; /export sends it again. /predict on it, without warm models
    (DETBOT_PREDICT_MODELS=0): each photo runs in a process of its own, and its buttons redraw it."""
    photo, found = seen
    job, archive = seed_finished_job(tmp_path / "data", trained_job, exported_archive, shapes_workspace)
    mark = tg.mark()
    process = BotProcess(tg, tmp_path / "data", DETBOT_PREDICT_MODELS="0")
    try:
        tg.wait_until_polling()
        ann = tg.user(ANN, "Ann")
        sent = tg.wait_for(lambda m: m["kind"] == "document", chat_id=ANN, since=mark, timeout=60)
        assert sent["filename"] == archive.name and sent["bytes"] == archive.read_bytes()
        _the_end_is_worth_looking_at(tg, job, sent, mark)
        mark = tg.mark()
        ann.send_text("/export")
        sent = tg.wait_for(lambda m: m["kind"] == "document", chat_id=ANN, since=mark, timeout=60)
        assert sent["filename"] == archive.name and sent["bytes"] == archive.read_bytes()
        with zipfile.ZipFile(io.BytesIO(sent["bytes"])) as zf:
            assert zf.testzip() is None and {"label_map.pbtxt", "saved_model/saved_model.pb"} <= set(zf.namelist())
        say(tg, ann, "/predict", f"model of job {job}")
        shot, _ = send_photo(tg, ann, photo)
        assert shot["kind"] == "photo" and shot["bytes"][:8] == PNG
        assert text_of(shot) == texts.detections(expected(found, 0.3))
        assert started_workers(tmp_path / "bot.log") == []
        higher = press(tg, ann, shot, "Fewer boxes")
        assert text_of(higher) == texts.threshold_caption(expected(found, 0.5), 0.5)
    finally:
        process.stop()


def _the_end_is_worth_looking_at(tg, job: str, archive: dict, since: int) -> None:
    """Before the archive, one album (curves, confusion matrix, AP per class, detections) and AP50 in plain words;
    the archive's caption lists what is in it and what to do next. The end and the archive notify, the rest not."""
    sent = [e for e in tg.events(ANN, since=since) if e["event"] == "sent"]
    words = next(m for m in sent if text_of(m).startswith(f"Job {job} finished"))
    album = [m for m in sent if m.get("media_group_id") and m["seq"] > words["seq"]]  # not the evaluation's
    assert [m["kind"] for m in album] == ["photo"] * 4 and len({m["media_group_id"] for m in album}) == 1
    captions = [text_of(m) for m in album]
    for shown, caption in zip(("loss and validation AP", "confusion matrix", "AP per class", "detections"), captions):
        assert shown in caption and job in caption
    ap50 = next(m for m in sent if text_of(m).startswith("AP50 "))
    assert "overlaps the true one by half" in text_of(ap50) and "1.0 is perfect" in text_of(ap50)
    assert words["seq"] < album[0]["seq"] < ap50["seq"] < archive["seq"]
    caption = text_of(archive)
    for listed in ("SavedModel (saved_model/)", "model.tflite", "label_map.pbtxt", "checkpoint/"):
        assert listed in caption
    assert "Python: " in caption and "Android: " in caption and len(caption) <= 1024
    assert [words["silent"], album[0]["silent"], ap50["silent"], archive["silent"]] == [False, False, True, False]
    assert any(a["action"] == "upload_document" for a in tg.chat_actions(ANN))


def test_at_most_the_set_number_of_models_stay_loaded_the_least_recently_used_going_first(
    tmp_path, exported_archive, seen, caplog
):
    """The pool alone, on two archives (two copies: a model is known by its archive's path)."""
    import asyncio
    import logging
    import shutil

    from bot.predictor import WarmPredictors

    caplog.set_level(logging.INFO, logger="bot.predictor")
    photo, found = seen
    (tmp_path / "photo.jpg").write_bytes(photo)
    first, second = (shutil.copyfile(exported_archive, tmp_path / f"{name}.zip") for name in ("first", "second"))
    request = {"image": str(tmp_path / "photo.jpg"), "out": str(tmp_path / "out.png"), "threshold": 0.3, "floor": 0.05}

    async def photos() -> None:
        pool = WarmPredictors(idle_s=60, models=1, timeout_s=60)
        try:
            for archive in (first, second, first):
                answer = await pool.predict(archive, request, None)
                assert answer["detections"] == expected(found, 0.05)
                *evicted, current = [int(pid) for pid in STARTED.findall(caplog.text)]
                for _ in range(50):  # the evicted worker's exit is reaped on the loop
                    if not any(Path(f"/proc/{pid}").exists() for pid in evicted):
                        break
                    await asyncio.sleep(0.1)
                assert Path(f"/proc/{current}").exists()
                assert [pid for pid in evicted if Path(f"/proc/{pid}").exists()] == []
        finally:
            pool.close()

    asyncio.run(photos())
    pids = [int(pid) for pid in STARTED.findall(caplog.text)]
    assert len(set(pids)) == 3 and not any(Path(f"/proc/{pid}").exists() for pid in pids)
