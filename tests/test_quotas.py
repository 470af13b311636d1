"""Quotas as reservations (store), extraction within a byte budget (ingest), and usage as counted."""

from __future__ import annotations

import io
import struct
import threading
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from bot.usage import dataset_bytes, measure
from pipeline.data.ingest import ExtractLimits, archive_facts, extract_zip
from pipeline.errors import DatasetRejected
from storage import DatasetInUse, NotFound, QuotaExceeded, StoreError, open_store
from tests.builders import image_bytes, write_zip

ANN, BOB = 11, 12


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "detbot.db"
    with open_store(path) as store:
        store.ensure_user(ANN, "Ann")
        store.ensure_user(BOB, "Bob")
    return path


def test_concurrent_reservations_never_pass_the_limit(db):
    """Ten uploads at once, from threads and from two connections (two processes), each 30% of the quota."""
    stores = [open_store(db), open_store(db)]
    won, refused = [], []

    def upload(number: int) -> None:
        try:
            won.append(stores[number % 2].reserve_dataset(ANN, f"{number}.zip", f"/w/{number}", 30, limit_bytes=100))
        except QuotaExceeded as error:
            refused.append(error)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 3 and len(refused) == 7
    assert stores[0].user_bytes(ANN) == 90 and stores[0].user_bytes(BOB) == 0
    assert all(error.wanted == 30 and error.limit == 100 and error.used >= 90 for error in refused)
    for store in stores:
        store.close()


def test_other_holdings_count_and_growth_must_fit(db):
    with open_store(db) as store:
        with pytest.raises(QuotaExceeded):  # job folders and predictions fill most of the room
            store.reserve_dataset(ANN, "a.zip", "/w/a", 30, limit_bytes=100, other_bytes=80)
        dataset = store.reserve_dataset(ANN, "a.zip", "/w/a", 30, limit_bytes=100, other_bytes=50)
        with pytest.raises(QuotaExceeded):  # the zip says it unpacks to more than is left
            store.resize_dataset(dataset.id, 60, limit_bytes=100, other_bytes=50)
        assert store.resize_dataset(dataset.id, 50, limit_bytes=100, other_bytes=50).size_bytes == 50
        assert store.resize_dataset(dataset.id, 5).size_bytes == 5  # the checked size, smaller: always fits
        store.cancel_reservation(dataset.id)
        assert store.datasets(ANN) == []


def test_deleting_a_dataset_waits_for_its_jobs_and_takes_ended_ones_along(db):
    with open_store(db) as store:
        dataset = store.reserve_dataset(ANN, "a.zip", "/w/a", 10, limit_bytes=100)
        with pytest.raises(StoreError, match="checking"):
            store.delete_dataset(ANN, dataset.id)
        store.finish_dataset(dataset.id, {"images": 1}, 10)
        store.set_current_dataset(ANN, dataset.id)
        old = store.add_job(ANN, ANN, dataset.id, "/w/a/jobs/1", "m", {})
        store.update_job(old.id, status="finished")
        running = store.add_job(ANN, ANN, dataset.id, "/w/a/jobs/2", "m", {})
        with pytest.raises(NotFound):
            store.delete_dataset(BOB, dataset.id)  # Bob cannot even see it
        with pytest.raises(DatasetInUse) as caught:
            store.delete_dataset(ANN, dataset.id)
        assert [job.id for job in caught.value.jobs] == [running.id]
        with pytest.raises(StoreError, match="queued"):
            store.delete_job(ANN, running.id, ("finished", "failed", "stopped"))
        store.update_job(running.id, status="failed")
        assert store.delete_job(ANN, running.id, ("finished", "failed", "stopped")).id == running.id
        store.delete_dataset(ANN, dataset.id)
        assert store.datasets(ANN) == [] and store.jobs(ANN) == []
        assert store.get_user(ANN).current_dataset_id is None


def test_usage_counts_datasets_jobs_and_predictions(db, tmp_path):
    workspace = tmp_path / "users" / str(ANN) / "datasets" / "d1"
    (workspace / "jobs" / "j1").mkdir(parents=True)
    (workspace / "data.bin").write_bytes(bytes(700))
    (workspace / "jobs" / "j1" / "ckpt").write_bytes(bytes(5000))
    predictions = tmp_path / "users" / str(ANN) / "predict"
    predictions.mkdir()
    (predictions / "1.jpg").write_bytes(bytes(300))
    assert dataset_bytes(workspace) == 700  # the job folder inside it is counted once, as a job
    with open_store(db) as store:
        dataset = store.reserve_dataset(ANN, "a.zip", workspace, 700, limit_bytes=10_000)
        store.finish_dataset(dataset.id, {}, 700)
        store.add_job(ANN, ANN, dataset.id, workspace / "jobs" / "j1", "m", {})
        usage = measure(store, ANN, tmp_path / "users" / str(ANN), 10_000)
    assert (usage.datasets, usage.jobs, usage.predictions, usage.total, usage.free) == (700, 5000, 300, 6000, 4000)


# --- extraction ------------------------------------------------------------------------------


def _pairs(count: int) -> dict[str, bytes]:
    return {f"images/{n}.jpg": image_bytes(color=(n, 40, 90)) for n in range(count)}


def test_small_entries_get_the_ratio_check_too(tmp_path):
    """600 KiB of zeros per entry was under the old 1 MiB grace: 40 of them made 24 MiB from ~25 KiB."""
    archive = write_zip(
        tmp_path / "bomb.zip", {**_pairs(1), **{f"images/z{n}.jpg": bytes(600 * 2**10) for n in range(40)}}
    )
    assert archive.stat().st_size < 64 * 2**10
    with pytest.raises(DatasetRejected) as caught:
        extract_zip(archive, tmp_path / "out")
    assert caught.value.kind == "compression_ratio" and "zip bomb" in str(caught.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_real_datasets_pass_the_ratio_check(tmp_path):
    xml = b"<annotation>" + b"<object><name>cat</name></object>" * 40 + b"</annotation>"  # ~10x compressible
    archive = write_zip(tmp_path / "ok.zip", {**_pairs(3), "images/0.xml": xml})
    assert len(extract_zip(archive, tmp_path / "out").files) == 4


def test_extraction_stays_within_the_budget(tmp_path):
    archive = write_zip(tmp_path / "big.zip", _pairs(20))
    declared = archive_facts(archive).declared_bytes
    with pytest.raises(DatasetRejected) as caught:
        extract_zip(archive, tmp_path / "out", ExtractLimits(budget_bytes=declared - 1))
    assert caught.value.kind == "over_budget" and "set aside" in str(caught.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    assert len(extract_zip(archive, tmp_path / "out", ExtractLimits(budget_bytes=declared)).files) == 20


def test_archive_facts_reads_count_and_declared_size(tmp_path):
    entries = _pairs(5)
    facts = archive_facts(write_zip(tmp_path / "a.zip", entries))
    assert (facts.entries, facts.declared_bytes) == (5, sum(map(len, entries.values())))


def _many_entries_zip(path: Path, count: int) -> Path:
    """One real entry named 'a', then ``count`` central-directory records pointing at it."""
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, zipfile.crc32(b"x") & 0xFFFFFFFF, 1, 1, 1, 0)
    record = (
        struct.pack(
            "<4s4B4HL2L5H2L",
            b"PK\x01\x02",
            20,
            3,
            20,
            0,
            0,
            0,
            0,
            0,
            zipfile.crc32(b"x") & 0xFFFFFFFF,
            1,
            1,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
        )
        + b"a"
    )
    with open(path, "wb") as out:
        out.write(local + b"a" + b"x")
        out.write(record * count)
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, len(record) * count, len(local) + 2, 0))
    return path


def test_entry_count_is_refused_before_zipfile_lists_the_entries(tmp_path):
    """300,000 entries: zipfile would build 300,000 ZipInfo objects (~150 MiB) before anyone counted."""
    archive = _many_entries_zip(tmp_path / "many.zip", 300_000)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetRejected) as caught:
            extract_zip(archive, tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.kind == "too_many_entries" and "200,000 entries" in str(caught.value)
    assert peak < 8 * 2**20
    assert archive_facts(_many_entries_zip(tmp_path / "few.zip", 3)).entries == 3


def test_a_long_path_is_refused_not_crashed_on(tmp_path):
    deep = "/".join(["d" * 200] * 25) + "/a.jpg"  # 5,000 bytes: the OS would refuse it with ENAMETOOLONG
    with zipfile.ZipFile(tmp_path / "deep.zip", "w") as zf:
        zf.writestr(deep, image_bytes())
    with pytest.raises(DatasetRejected) as caught:
        extract_zip(tmp_path / "deep.zip", tmp_path / "out")
    assert caught.value.kind == "unsafe_path" and "1,024 bytes" in str(caught.value)


def test_zip_inside_zip_counts_against_the_budget(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_STORED) as zf:
        for name, data in _pairs(10).items():
            zf.writestr(name, data)
    archive = write_zip(tmp_path / "outer.zip", {"inner.zip": inner.getvalue(), **_pairs(1)})
    declared = archive_facts(archive).declared_bytes  # the outer directory knows only the inner zip's size
    with pytest.raises(DatasetRejected, match="set aside"):
        extract_zip(archive, tmp_path / "out", ExtractLimits(budget_bytes=declared))
    assert len(extract_zip(archive, tmp_path / "out", ExtractLimits(budget_bytes=2 * declared)).files) == 11
