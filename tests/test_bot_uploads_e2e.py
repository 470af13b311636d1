"""Uploads at chat level: the real bot process against the fake Bot API on 127.0.0.1.

URLs that must never be fetched, concurrent uploads against the quota, a check worker
killed mid-check, and a bot killed mid-check (the row, the worker, the user's chat).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot import texts
from pipeline.data.synthetic import SyntheticSpec, make_voc_zip
from storage import open_store
from tests.test_bot_e2e import ANN, BotProcess, say, text_of

SLOW_IMAGES = 500  # a check of a few seconds: time to kill something in the middle of it


@pytest.fixture
def data_dir(tmp_path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


@pytest.fixture
def bot(tg, data_dir):
    process = BotProcess(tg, data_dir)
    tg.wait_until_polling()
    yield process
    process.stop()


class _Recorder(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.seen.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/data.zip")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"PK\x05\x06")

    def log_message(self, *args):
        pass


def _listen(family: int, host: str) -> ThreadingHTTPServer | None:
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
    try:
        httpd = server_class((host, 0), _Recorder)
    except OSError:  # no IPv6 on this machine: [::1] is then refused without anything to record
        return None
    httpd.seen = []
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd


@pytest.fixture
def listeners():
    servers = [_listen(socket.AF_INET, "127.0.0.1"), _listen(socket.AF_INET6, "::1")]
    yield servers
    for httpd in filter(None, servers):
        httpd.shutdown()
        httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_refused_urls_are_never_requested_and_all_get_the_same_reply(tg, bot, data_dir, listeners):
    v4, v6 = listeners
    port6 = v6.server_port if v6 else _closed_port()
    urls = [
        f"http://127.0.0.1:{v4.server_port}/data.zip",
        f"http://[::1]:{port6}/data.zip",
        f"http://127.0.0.1:{v4.server_port}/redirect",
        f"http://localhost:{v4.server_port}/data.zip",
        f"http://127.0.0.1:{_closed_port()}/data.zip",
        "http://no-such-host.invalid/data.zip",
    ]
    ann = tg.user(ANN, "Ann")
    replies = {text_of(say(tg, ann, f"/dataset {url}", "could not download")) for url in urls}
    assert replies == {texts.URL_REFUSED}  # a closed port and a refused address look the same
    assert v4.seen == [] and (v6 is None or v6.seen == [])
    with open_store(data_dir / "detbot.db") as store:
        assert store.datasets(ANN) == []  # every reservation was given back
    assert not any((data_dir / "users" / str(ANN) / "uploads").glob("*"))


def test_concurrent_uploads_cannot_pass_the_quota_together(tg, bot, data_dir, tmp_path):
    ann = tg.user(ANN, "Ann")
    say(tg, ann, "/start", "Pascal VOC")
    quota = int(2.5 * 2**20)
    with open_store(data_dir / "detbot.db") as store:
        store.set_quota(ANN, max_bytes=quota)
    data = make_voc_zip(tmp_path / "small.zip", SyntheticSpec(images=12, seed=5)).read_bytes()
    mark = tg.mark()
    # Telegram says 1 MiB each: four reservations of 1 MiB, room for two
    files = [ann.send_document(data, f"set{number}.zip", file_size=2**20) for number in range(4)]
    outcome = lambda m: text_of(m).startswith("Dataset ") or "does not fit" in text_of(m)  # noqa: E731
    tg.wait_until(lambda: sum(map(outcome, tg.events(ANN, since=mark))) >= 4, timeout=60, what="4 outcomes")
    events = [text_of(e) for e in tg.events(ANN, since=mark) if e["event"] == "sent"]
    assert sum(t.startswith("Dataset ") for t in events) == 2
    assert sum("does not fit" in t and "/datasets" in t for t in events) == 2
    assert sum(tg.download_count(file_id) for file_id in files) == 2  # refused before downloading
    with open_store(data_dir / "detbot.db") as store:
        datasets = store.datasets(ANN)
        assert [d.status for d in datasets] == ["ready", "ready"] and store.user_bytes(ANN) <= quota
    assert not any((data_dir / "users" / str(ANN) / "uploads").glob("*"))  # checked zips are deleted
    listing = say(tg, ann, "/datasets", "Your datasets")
    assert all(d.id in text_of(listing) for d in datasets) and "of 2.5 MB" in text_of(listing)


def _children(parent: int, marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and marker in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_slow_check(tg, ann, data_dir: Path, tmp_path: Path) -> int:
    """Send a big zip, wait until its check is running, return the check worker's pid."""
    data = make_voc_zip(tmp_path / "slow.zip", SyntheticSpec(images=SLOW_IMAGES, seed=3)).read_bytes()
    ann.send_document(data, "slow.zip")
    deadline = time.monotonic() + 60
    while not any((data_dir / "users" / str(ANN) / "datasets").glob("*/source*")):
        assert time.monotonic() < deadline, "the check never started"
        time.sleep(0.01)
    return deadline


def _gone_within(pids: list[int], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while any(map(_alive, pids)):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_killed_check_worker_fails_its_dataset_and_the_next_upload_works(tg, bot, data_dir, tmp_path):
    ann = tg.user(ANN, "Ann")
    mark = tg.mark()
    _start_slow_check(tg, ann, data_dir, tmp_path)
    workers = _children(bot.process.pid, "spawn_main")
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGTERM)  # what `kill` or a service manager sends: the worker must not ignore it
    _gone_within(workers, 5, "the check worker ignored SIGTERM")
    failed = tg.wait_for(lambda m: "could not use slow.zip" in text_of(m), chat_id=ANN, since=mark, timeout=60)
    assert texts.check_crashed("worker_died") in text_of(failed) and str(data_dir) not in text_of(failed)
    mark = tg.mark()
    ann.send_document(make_voc_zip(tmp_path / "next.zip", SyntheticSpec(images=12, seed=5)).read_bytes(), "next.zip")
    report = tg.wait_for(lambda m: text_of(m).startswith("Dataset "), chat_id=ANN, since=mark, timeout=60)
    assert "12 images" in text_of(report)
    with open_store(data_dir / "detbot.db") as store:
        assert sorted(d.status for d in store.datasets(ANN)) == ["failed", "ready"]
    replacement = _children(bot.process.pid, "spawn_main")
    assert len(replacement) == 1 and replacement != workers
    bot.stop()  # a clean shutdown ends the worker too
    assert not any(map(_alive, replacement))


def test_a_restart_mid_check_settles_the_row_kills_the_worker_and_tells_the_user(tg, bot, data_dir, tmp_path):
    ann = tg.user(ANN, "Ann")
    _start_slow_check(tg, ann, data_dir, tmp_path)
    workers = _children(bot.process.pid, "spawn_main")
    assert len(workers) == 1
    children = _children(bot.process.pid, "")  # the worker, and whatever helps it (multiprocessing's tracker)
    bot.kill()  # no shutdown code runs: only the parent-death signal can end the worker
    _gone_within(workers, 5, "the check worker outlived the bot")
    _gone_within(children, 5, f"a process of the bot outlived it: {children}")
    with open_store(data_dir / "detbot.db") as store:
        [dataset] = store.datasets(ANN)
        assert dataset.status == "checking"
    mark = tg.mark()
    again = BotProcess(tg, data_dir)
    try:
        notice = tg.wait_for(lambda m: "restarted" in text_of(m), chat_id=ANN, since=mark, timeout=60)
        assert text_of(notice) == texts.check_interrupted(dataset.id, "slow.zip")
        with open_store(data_dir / "detbot.db") as store:
            settled = store.dataset(ANN, dataset.id)
        assert (settled.status, settled.error, settled.size_bytes) == ("failed", texts.CHECK_INTERRUPTED, 0)
        assert not dataset.workspace.exists()
        assert not any((data_dir / "users" / str(ANN) / "uploads").glob("*"))
        listing = say(tg, ann, "/datasets", "Your datasets")  # and the new bot serves the chat
        assert re.search(rf"^1\. slow\.zip - failed, .*\({dataset.id}\)$", text_of(listing), re.M)
    finally:
        again.stop()


def test_an_unexpected_error_in_a_check_comes_back_as_a_kind_without_paths(tmp_path):
    """Not a PipelineError: the OS refusing a 300-byte folder name (ENAMETOOLONG) in the real worker."""
    from bot.checker import CheckPool

    archive = make_voc_zip(tmp_path / "a.zip", SyntheticSpec(images=4, seed=1))
    pool = CheckPool()
    try:
        result = asyncio.run(pool.run(archive, tmp_path / ("x" * 300) / "ws", None))
    finally:
        pool.close()
    assert result == {"crash": "name_too_long"}
    assert "too long" in texts.check_crashed("name_too_long") and "/" not in texts.check_crashed("name_too_long")


def _upload(tg, user, tmp_path: Path, name: str, seed: int) -> str:
    mark = tg.mark()
    user.send_document(make_voc_zip(tmp_path / name, SyntheticSpec(images=6, seed=seed)).read_bytes(), name)
    report = tg.wait_for(lambda m: text_of(m).startswith("Dataset "), chat_id=user.chat_id, since=mark, timeout=60)
    return text_of(report).split()[1].rstrip(":")


def _press(tg, user, message: dict, data: str, expect: str) -> dict:
    mark = tg.mark()
    user.press(message, data)
    return tg.wait_for(lambda m: expect in text_of(m), chat_id=user.chat_id, since=mark)


def test_datasets_and_job_files_are_chosen_and_deleted_with_confirmation(tg, bot, data_dir, tmp_path):
    ann = tg.user(ANN, "Ann")
    first, second = _upload(tg, ann, tmp_path, "a.zip", 1), _upload(tg, ann, tmp_path, "b.zip", 2)
    with open_store(data_dir / "detbot.db") as store:
        job_dir = store.dataset(ANN, first).workspace / "jobs" / "old"
        (job_dir / "ckpt").mkdir(parents=True)
        (job_dir / "ckpt" / "ckpt-5.data").write_bytes(bytes(3 * 2**20))
        # Inserted as finished in one step: a queued row would be picked up and trained by the bot.
        store.db["jobs"].insert(
            {
                "id": "oldjob01",
                "user_id": ANN,
                "chat_id": ANN,
                "dataset_id": first,
                "job_dir": str(job_dir),
                "model": "m",
                "request": "{}",
                "status": "finished",
                "events_offset": 0,
                "created": time.time(),
                "updated": time.time(),
            }
        )
    listing = say(tg, ann, "/jobs", "oldjob01")
    assert "jobs 3.0 MB" in text_of(listing)
    confirm = _press(tg, ann, listing, "jobdel:ask:oldjob01", "Delete the files of job oldjob01 (3.0 MB")
    _press(tg, ann, confirm, "jobdel:del:oldjob01", texts.job_deleted("oldjob01"))
    assert not job_dir.exists()
    assert "jobs 0.0 MB" in text_of(say(tg, ann, "/jobs", "Disk:"))

    listing = say(tg, ann, "/datasets", "Your datasets")
    assert re.search(rf"^1\. \* b\.zip .*\({second}\)$", text_of(listing), re.M)  # * marks the current one
    assert re.search(rf"^2\. a\.zip .*\({first}\)$", text_of(listing), re.M)
    assert ("2: Make current", f"ds:use:{first}") in tg.buttons(listing)
    _press(tg, ann, listing, f"ds:use:{first}", texts.dataset_current(first))
    confirm = _press(tg, ann, listing, f"ds:ask:{second}", f"Delete dataset {second}")
    _press(tg, ann, confirm, "keep", texts.CANCELLED_DELETE)
    confirm = _press(tg, ann, listing, f"ds:ask:{second}", f"Delete dataset {second}")
    _press(tg, ann, confirm, f"ds:del:{second}", texts.dataset_deleted(second))
    with open_store(data_dir / "detbot.db") as store:
        assert [d.id for d in store.datasets(ANN)] == [first]
        assert store.get_user(ANN).current_dataset_id == first
    assert len(list((data_dir / "users" / str(ANN) / "datasets").iterdir())) == 1
