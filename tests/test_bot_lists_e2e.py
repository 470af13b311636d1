"""Buttons instead of ids, at chat level: the real bot process against the fake Bot API.

/jobs, /datasets and /status as lists with a row of buttons per entry, paged; /split without words shows
the split and offers ratios; /model says when to pick each model; in a group, a card answers only the
member who opened it. No training runs: datasets are prepared by the pipeline and jobs are store rows (a
running job's trainer is a sleeping process of the test), all seeded before the bot starts.
"""

from __future__ import annotations

import re
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from bot import texts
from pipeline.data.steps import prepare
from pipeline.data.synthetic import SyntheticSpec, make_voc_zip
from pipeline.train.catalogue import catalog
from pipeline.train.job_folder import JobPaths
from pipeline.train.job_process import process_start
from storage import TERMINAL, open_store
from storage.connection import new_id
from tests.test_bot_e2e import ANN, BOB, BotProcess, say, text_of

HANGUL = re.compile(r"[\uac00-\ud7a3]")
GROUP = -100200300


class World:
    """The bot's data folder, seeded through the store before the bot starts."""

    def __init__(self, root: Path):
        self.root, self.data = root, root / "data"
        self.data.mkdir()
        self.store = open_store(self.data / "detbot.db")

    def dataset(self, user: int, name: str = "shapes.zip", seed: int = 3, prepared: bool = True) -> str:
        """A ready dataset, made current: prepared from a generated zip, or (``prepared=False``) a row only."""
        self.store.ensure_user(user, {ANN: "Ann", BOB: "Bob"}[user])
        workspace = self.data / "users" / str(user) / "datasets" / f"{seed}-{time.monotonic_ns()}"
        summary = {"images": 12, "classes": {"circle": {}}}
        if prepared:
            archive = make_voc_zip(self.root / f"{user}-{seed}.zip", SyntheticSpec(images=12, seed=seed))
            summary = prepare(archive, workspace)
        dataset = self.store.add_dataset(user, name, workspace, 1000)
        self.store.finish_dataset(dataset.id, summary)
        self.store.set_current_dataset(user, dataset.id)
        return dataset.id

    def job(self, user: int, dataset_id: str, status: str, pid: int | None = None, ap: float | None = None) -> str:
        """A job row inserted in its final state in one step: a queued one would be launched by a running bot."""
        job_id, now = new_id(), time.time()
        folder = self.store.dataset(user, dataset_id).workspace / "jobs" / job_id
        folder.mkdir(parents=True)
        row = {"id": job_id, "user_id": user, "chat_id": user, "dataset_id": dataset_id, "job_dir": str(folder)}
        row |= {"model": "mobilenetv2-fpn", "request": "{}", "status": status, "events_offset": 0}
        row |= {"created": now, "updated": now, "finished": now if status in TERMINAL else None}
        if pid is not None:
            (folder / "train.pid").write_text(f"{pid} {process_start(pid)}\n")
            row |= {"pid": pid, "started": now}
        if status == "finished":
            with zipfile.ZipFile(folder / f"model-{job_id}.zip", "w") as zipped:
                zipped.writestr("label_map.pbtxt", "item { id: 1 name: 'circle' }\n")
            row["archive"] = str(folder / f"model-{job_id}.zip")
        self.store.db["jobs"].insert(row)
        if ap is not None:
            self.store.add_events(job_id, 0, [{"event": "finished", "step": 100, "time": now, "AP": ap}], 0)
        return job_id


@pytest.fixture
def world(tmp_path):
    seeded = World(tmp_path)
    yield seeded
    seeded.store.close()


@pytest.fixture
def sleeper():
    process = subprocess.Popen(["sleep", "300"])
    yield process.pid
    process.kill()
    process.wait()


@pytest.fixture
def start_bot(tg, world):
    bots = []

    def start() -> BotProcess:
        bots.append(BotProcess(tg, world.data))
        tg.wait_until_polling()
        return bots[-1]

    yield start
    for bot in bots:
        bot.stop()


def press(tg, user, message: dict, data: str, expect: str, forged: bool = False) -> dict:
    """Presses a button (any data, with ``forged``) and waits for a message that says ``expect``."""
    mark = tg.mark()
    (user.press_forged if forged else user.press)(message, data)
    return tg.wait_for(lambda m: expect in text_of(m), chat_id=user.chat_id, since=mark)


def answer(tg, query_id: str) -> dict:
    tg.wait_until(lambda: tg.callback_answer(query_id) is not None, 20, "the button's answer")
    return tg.callback_answer(query_id)


def data_of(tg, message: dict, prefix: str) -> str:
    """The callback data of the one button whose data starts with ``prefix``."""
    [data] = [data for _, data in tg.buttons(message) if data.startswith(prefix)]
    return data


def test_jobs_list_has_the_buttons_of_each_jobs_state_and_each_does_its_thing(tg, world, sleeper, start_bot):
    dataset = world.dataset(ANN)
    done = world.job(ANN, dataset, "finished", ap=0.412)
    running = world.job(ANN, dataset, "running", pid=sleeper)
    failed = world.job(ANN, dataset, "failed")
    bobs = world.job(BOB, world.dataset(BOB, prepared=False), "stopped")
    start_bot()
    ann = tg.user(ANN, "Ann")
    listing = say(tg, ann, "/jobs", "Your jobs")
    lines = text_of(listing).splitlines()
    assert lines[1].startswith("1. shapes.zip - mobilenetv2-fpn - failed - ") and lines[1].endswith(f"({failed})")
    assert lines[2].startswith("2. shapes.zip - mobilenetv2-fpn - running - ")
    assert lines[3].startswith("3. shapes.zip - mobilenetv2-fpn - finished, AP 0.412 - ")
    assert lines[4].startswith("Disk:") and bobs not in text_of(listing)
    assert tg.buttons(listing) == [
        ("1: Status", f"job:status:{failed}"),
        ("1: Delete", f"jobdel:ask:{failed}"),
        ("2: Status", f"job:status:{running}"),
        ("2: Stop", f"job:stop:{running}"),
        ("3: Status", f"job:status:{done}"),
        ("3: Export", f"job:export:{done}"),
        ("3: Predict", f"job:predict:{done}"),
        ("3: Delete", f"jobdel:ask:{done}"),
    ]

    press(tg, ann, listing, f"job:status:{running}", f"Job {running} (mobilenetv2-fpn): running")
    confirm = press(tg, ann, listing, f"job:stop:{running}", f"Stop job {running}?")
    press(tg, ann, confirm, f"stop:{running}", f"Stopping job {running}")
    assert JobPaths(world.store.job(ANN, running).job_dir).stop_flag.exists()

    mark = tg.mark()
    ann.press(listing, f"job:export:{done}")
    archive = tg.wait_for(lambda m: m["kind"] == "document", chat_id=ANN, since=mark)
    assert archive["filename"] == f"model-{done}.zip"
    assert archive["bytes"] == world.store.job(ANN, done).archive.read_bytes()
    press(tg, ann, listing, f"job:predict:{done}", texts.predict_prompt(done))
    assert text_of(say(tg, ann, "what now?", done)) == texts.free_text("predict", done)  # photo mode, that model

    confirm = press(tg, ann, listing, f"jobdel:ask:{failed}", f"Delete the files of job {failed}")
    press(tg, ann, confirm, f"jobdel:del:{failed}", texts.job_deleted(failed))
    assert failed not in text_of(say(tg, ann, "/jobs", "Your jobs"))

    # Ids carried by buttons are checked like typed ones: another user's job, or a job in the wrong state.
    press(tg, ann, listing, f"job:status:{bobs}", f"No job '{bobs}' of yours", forged=True)
    press(tg, ann, listing, f"job:predict:{bobs}", f"No job '{bobs}' of yours", forged=True)
    press(tg, ann, listing, f"jobdel:del:{bobs}", f"No job '{bobs}' of yours", forged=True)
    press(tg, ann, listing, f"job:export:{running}", texts.no_model_in(running, "running"), forged=True)
    assert world.store.job(BOB, bobs).job_dir.is_dir()
    mark = tg.mark()
    answer(tg, ann.press_forged(listing, "job:status:"))  # no id: not "the newest job"
    say(tg, ann, "/start", "Pascal VOC")
    assert [text_of(m)[:20] for m in tg.events(ANN, since=mark)] == [texts.HELP[:20]]


def test_status_without_an_id_lists_several_jobs_and_long_lists_are_paged(tg, world, start_bot):
    dataset = world.dataset(ANN, prepared=False)
    only = world.job(ANN, dataset, "stopped")
    start_bot()
    ann = tg.user(ANN, "Ann")
    assert text_of(say(tg, ann, "/status", f"Job {only}")).startswith(f"Job {only} (mobilenetv2-fpn): stopped")
    jobs = [only] + [world.job(ANN, dataset, "stopped") for _ in range(9)]  # newest last
    listing = say(tg, ann, "/status", "Your jobs")  # several: a list to pick from, not a question for an id
    assert "(page 1 of 2)" in text_of(listing)
    numbered = re.findall(r"^(\d+)\. .*\((\w+)\)$", text_of(listing), re.M)
    assert numbered == [(str(n), job) for n, job in enumerate(reversed(jobs[2:]), start=1)]
    assert tg.buttons(listing)[-1] == ("Older ›", "job:page:1")
    mark = tg.mark()
    ann.press(listing, "job:page:1")
    older = tg.wait_for(lambda m: "(page 2 of 2)" in text_of(m), chat_id=ANN, since=mark)
    assert older["message_id"] == listing["message_id"]  # turned in place
    assert re.findall(r"^(\d+)\. .*\((\w+)\)$", text_of(older), re.M) == [("9", jobs[1]), ("10", jobs[0])]
    assert tg.buttons(older)[-1] == ("‹ Newer", "job:page:0")
    press(tg, ann, older, "job:page:0", "(page 1 of 2)")
    # A page past the end (the list shrank since, or the data was forged) is the last one; the page shown
    # again changes nothing, and no apology.
    press(tg, ann, older, "job:page:9999", "(page 2 of 2)", forged=True)
    mark = tg.mark()
    ann.press_forged(older, "job:page:1")
    say(tg, ann, "/start", "Pascal VOC")
    assert [text_of(m)[:20] for m in tg.events(ANN, since=mark)] == [texts.HELP[:20]]

    for number in range(8):
        world.dataset(ANN, name=f"set{number}.zip", prepared=False)
    listing = say(tg, ann, "/datasets", "Your datasets")
    assert "(page 1 of 2)" in text_of(listing) and "1. * set7.zip - ready, 12 images, 1 classes" in text_of(listing)
    mark = tg.mark()
    ann.press(listing, "ds:page:1")
    older = tg.wait_for(lambda m: "(page 2 of 2)" in text_of(m), chat_id=ANN, since=mark)
    assert re.search(r"^9\. shapes\.zip - ready", text_of(older), re.M)
    assert ("9: Make current", f"ds:use:{dataset}") in tg.buttons(older)


def test_datasets_list_makes_current_and_deletes_with_confirmation(tg, world, start_bot):
    first = world.dataset(ANN, name="a.zip", seed=1)
    second = world.dataset(ANN, name="b.zip", seed=2)
    bobs = world.dataset(BOB, prepared=False)
    start_bot()
    ann = tg.user(ANN, "Ann")
    listing = say(tg, ann, "/datasets", "Your datasets")
    assert re.search(
        rf"^1\. \* b\.zip - ready, 12 images, \d classes, [\d.]+ MB - .* \({second}\)$", text_of(listing), re.M
    )
    assert re.search(
        rf"^2\. a\.zip - ready, 12 images, \d classes, [\d.]+ MB - .* \({first}\)$", text_of(listing), re.M
    )
    assert tg.buttons(listing) == [
        ("1: Download cleaned", f"clean:ask:{second}"),
        ("1: Delete", f"ds:ask:{second}"),
        ("2: Make current", f"ds:use:{first}"),
        ("2: Download cleaned", f"clean:ask:{first}"),
        ("2: Delete", f"ds:ask:{first}"),
    ]
    press(tg, ann, listing, f"ds:use:{first}", texts.dataset_current(first))
    assert world.store.get_user(ANN).current_dataset_id == first
    confirm = press(tg, ann, listing, f"ds:ask:{second}", f"Delete dataset {second}")
    press(tg, ann, confirm, "keep", texts.CANCELLED_DELETE)
    confirm = press(tg, ann, listing, f"ds:ask:{second}", f"Delete dataset {second}")
    press(tg, ann, confirm, f"ds:del:{second}", texts.dataset_deleted(second))
    assert [d.id for d in world.store.datasets(ANN)] == [first]

    press(tg, ann, listing, f"ds:use:{bobs}", f"No dataset '{bobs}' of yours", forged=True)
    press(tg, ann, listing, f"ds:del:{bobs}", f"No dataset '{bobs}' of yours", forged=True)
    assert world.store.get_user(ANN).current_dataset_id == first and world.store.dataset(BOB, bobs).ready


def test_split_without_words_shows_the_split_and_a_ratio_button_splits_again(tg, world, start_bot):
    dataset = world.dataset(ANN)
    bobs = world.dataset(BOB, prepared=False)
    start_bot()
    ann = tg.user(ANN, "Ann")
    card = say(tg, ann, "/split", "is split")
    assert re.match(rf"Dataset {dataset} is split: train \d+ images, val \d+ images \(val 10%, seed 0\)", text_of(card))
    assert [data for _, data in tg.buttons(card)] == [f"split:{dataset}:{r}" for r in ("0.1", "0.15", "0.2", "0.3")]
    assert tg.buttons(card)[0][0] == "* val 10%"
    before = world.store.dataset(ANN, dataset).summary["splits"]["val"]["images"]
    press(tg, ann, card, f"split:{dataset}:0.3", "Split: train")
    after = world.store.dataset(ANN, dataset).summary["splits"]["val"]["images"]
    assert after > before
    assert f"val {after} images (val 30%, seed 0)" in text_of(say(tg, ann, "/split", "is split"))

    assert "Split: train" in text_of(say(tg, ann, "/split 0.2 3", "Split:"))  # typed, as before
    card = say(tg, ann, "/split", "is split")
    assert "(val 20%, seed 3)" in text_of(card) and tg.buttons(card)[2][0] == "* val 20%"
    press(tg, ann, card, f"split:{dataset}:0.15", "Split: train")
    assert "(val 15%, seed 3)" in text_of(say(tg, ann, "/split", "is split"))  # the seed is kept

    press(tg, ann, card, f"split:{dataset}:0.9", texts.SPLIT_USAGE, forged=True)  # only the offered ratios
    press(tg, ann, card, f"split:{bobs}:0.2", f"No dataset '{bobs}' of yours", forged=True)


def test_model_says_when_to_pick_each_model(tg, world, start_bot):
    world.dataset(ANN, prepared=False)
    start_bot()
    menu = text_of(say(tg, tg.user(ANN, "Ann"), "/model", "Pick a detector"))
    recommended = re.match(r"Pick a detector\. Recommended \(\*\): (\S+) - ", menu)[1]
    for spec in catalog():
        assert f"{'* ' if spec.name == recommended else ''}{spec.name}: {spec.when}" in menu.splitlines()


def test_in_a_group_a_card_answers_only_its_owner(tg, world, start_bot):
    world.dataset(ANN)
    for _ in range(9):
        world.job(ANN, world.store.get_user(ANN).current_dataset_id, "stopped")
    start_bot()
    group = tg.group(GROUP, "Team")
    ann, bob = group.member(tg.user(ANN, "Ann")), group.member(tg.user(BOB, "Bob", language_code="ko"))
    listing = say(tg, ann, "/jobs", "Your jobs")
    assert listing["chat_id"] == GROUP
    older = data_of(tg, listing, "job:page:1|")
    assert all(re.fullmatch(rf"[\w:]+\|{ANN}\.[\w-]{{8}}", data) for _, data in tg.buttons(listing))

    mark = tg.mark()
    alert = answer(tg, bob.press(listing, older))  # in Bob's language, naming whose card it is
    assert alert["show_alert"] and alert["text"].startswith("Ann님의 카드예요") and HANGUL.search(alert["text"])
    for forged in (older.split("|")[0], older.replace(f"|{ANN}.", f"|{BOB}."), f"job:page:1|{BOB}.AAAAAAAA"):
        alert = answer(tg, bob.press_forged(listing, forged))  # no stamp, Ann's tag under Bob's id, a made-up tag
        assert alert["show_alert"] and "다른 사람의 카드예요" in alert["text"]
    assert tg.events(GROUP, since=mark) == []  # the card is as it was
    ann.press(listing, older)
    turned = tg.wait_for(lambda m: "(page 2 of 2)" in text_of(m), chat_id=GROUP, since=mark)
    assert turned["message_id"] == listing["message_id"]

    card = say(tg, ann, "/train 20 steps", "Ready to train")
    cancel = data_of(tg, card, "train:cancel:")
    mark = tg.mark()
    assert answer(tg, bob.press(card, cancel))["show_alert"]
    assert tg.events(GROUP, since=mark) == [] and tg.buttons(tg.messages(GROUP)[-1]) == tg.buttons(card)
    press(tg, ann, card, cancel, texts.CANCELLED)  # not "expired": Bob's tap left it alone

    assert "아직 작업이 없어요" in text_of(say(tg, bob, "/jobs", "/train"))  # Bob's own list, in Korean


def test_lists_and_menus_in_korean(tg, world, sleeper, start_bot):
    dataset = world.dataset(ANN)
    world.job(ANN, dataset, "finished", ap=0.5)
    world.job(ANN, dataset, "running", pid=sleeper)
    start_bot()
    ko = tg.user(ANN, "Ann", language_code="ko")
    listing = say(tg, ko, "/jobs", "내 작업")
    assert "- 학습 중 -" in text_of(listing) and "- 완료, AP 0.500 -" in text_of(listing)
    assert [label for label, _ in tg.buttons(listing)] == [
        "1: 상태",
        "1: 중지",
        "2: 상태",
        "2: 내보내기",
        "2: 예측",
        "2: 삭제",
    ]
    assert "* shapes.zip - 준비됨, 이미지 12장" in text_of(say(tg, ko, "/datasets", "내 데이터셋"))
    card = say(tg, ko, "/split", "분할")
    assert "(검증 10%, 시드 0)" in text_of(card) and tg.buttons(card)[0][0] == "* 검증 10%"
    menu = text_of(say(tg, ko, "/model", "검출기를 고르세요"))
    for spec in catalog():
        [line] = [line for line in menu.splitlines() if line.lstrip("* ").startswith(f"{spec.name}: ")]
        assert HANGUL.search(line.split(": ", 1)[1]), line
