"""Pretrained-weights fetching against a real HTTP server on 127.0.0.1 and real checkpoints."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import tarfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pipeline.errors import WeightsError
from pipeline.train.weights import fetch_checkpoint, to_https

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FAKE_FILES = {
    "model/ckpt-3.index": b"index-3" * 10,
    "model/ckpt-3.data-00000-of-00001": bytes(range(256)) * 40,
    "model/ckpt-12.index": b"index-12" * 10,
    "model/ckpt-12.data-00000-of-00001": bytes(range(256)) * 60,
    "model/checkpoint": b'model_checkpoint_path: "ckpt-12"\n',
}


class _Store:
    """What the test server serves and what it saw."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: Counter[str] = Counter()
        self.ranges: list[tuple[str, str]] = []
        self.cut_after: dict[str, int] = {}  # path -> bytes sent on its first request
        self.delay: dict[str, float] = {}  # path -> seconds before answering
        self.served = 0
        self.lock = threading.Lock()
        self.base = ""

    def url(self, path: str) -> str:
        return self.base + path


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        store: _Store = self.server.store
        path = urlsplit(self.path).path
        with store.lock:
            store.requests[path] += 1
            first = store.requests[path] == 1
        time.sleep(store.delay.get(path, 0.0))
        data = store.files.get(path)
        if data is None:
            self.send_error(404)
            return
        start, wanted = 0, self.headers.get("Range")
        if wanted:
            store.ranges.append((path, wanted))
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = store.cut_after.get(path) if first else None
        if cut is not None:
            body = body[:cut]  # HTTP/1.0: the connection closes once the handler returns
        self.wfile.write(body)
        with store.lock:
            store.served += len(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    store = _Store()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.store = store
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    store.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield store
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _tar_gz(files: dict[str, bytes], **special: tarfile.TarInfo) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in special.values():
            tar.addfile(info)
    return out.getvalue()


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# --- a real TensorFlow checkpoint -------------------------------------------------------


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory):
    """(tar.gz bytes, {name: bytes} of the bare checkpoint files, the model's weights)."""
    tf = pytest.importorskip("tensorflow")
    tf_keras = pytest.importorskip("tf_keras")
    tf.random.set_seed(1)
    model = tf_keras.Sequential([tf_keras.layers.Dense(3, input_shape=(4,))])
    root = tmp_path_factory.mktemp("tf")
    prefix = tf.train.Checkpoint(model=model).save(str(root / "src" / "ckpt"))
    names = [p.name for p in (root / "src").iterdir() if p.name.startswith(Path(prefix).name)]
    bare = {name: (root / "src" / name).read_bytes() for name in names}
    archive = _tar_gz({f"resnet/{name}": data for name, data in bare.items()})
    return archive, bare, [w.numpy() for w in model.weights]


def _assert_restores(prefix: Path, weights) -> None:
    tf = pytest.importorskip("tensorflow")
    tf_keras = pytest.importorskip("tf_keras")
    fresh = tf_keras.Sequential([tf_keras.layers.Dense(3, input_shape=(4,))])
    checkpoint = tf.train.Checkpoint(model=fresh)
    _ = checkpoint.save_counter  # created lazily; save() stored one, so it must exist to be consumed
    checkpoint.read(str(prefix)).assert_consumed()
    for restored, original in zip(fresh.weights, weights, strict=True):
        assert (restored.numpy() == original).all()


@pytest.mark.slow
def test_archive_download_extract_and_cache(server, tmp_path, real_checkpoint):
    archive, _, weights = real_checkpoint
    server.files["/vision/resnet.tar.gz"] = archive
    calls = []
    got = fetch_checkpoint(
        server.url("/vision/resnet.tar.gz"),
        tmp_path / "cache",
        progress=lambda done, total: calls.append((done, total)),
    )
    assert not got.from_cache
    assert got.sha256 == hashlib.sha256(archive).hexdigest()
    assert got.prefix.name == "ckpt-1" and got.prefix.parent.name == "resnet"
    assert calls[-1] == (len(archive), len(archive))
    _assert_restores(got.prefix, weights)
    entry = got.prefix.parent.parent.parent
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["sha256"] == got.sha256 and "resnet.tar.gz" not in _files(entry)

    before = sum(server.requests.values())
    again = fetch_checkpoint(server.url("/vision/resnet.tar.gz"), tmp_path / "cache")
    assert again == type(got)(got.prefix, got.sha256, True)
    assert sum(server.requests.values()) == before


@pytest.mark.slow
def test_bare_prefix_url(server, tmp_path, real_checkpoint):
    _, bare, weights = real_checkpoint
    for name, data in bare.items():
        server.files[f"/ckpts/resnet50/{name}"] = data
    got = fetch_checkpoint(server.url("/ckpts/resnet50/ckpt-1"), tmp_path / "cache")
    assert got.prefix.name == "ckpt-1"
    assert got.sha256 == hashlib.sha256(bare["ckpt-1.index"]).hexdigest()
    _assert_restores(got.prefix, weights)


@pytest.mark.slow
def test_local_and_file_url_sources(tmp_path, real_checkpoint):
    archive, bare, weights = real_checkpoint
    (tmp_path / "resnet.tar.gz").write_bytes(archive)
    (tmp_path / "bare").mkdir()
    for name, data in bare.items():
        (tmp_path / "bare" / name).write_bytes(data)
    from_url = fetch_checkpoint((tmp_path / "resnet.tar.gz").as_uri(), tmp_path / "cache")
    from_path = fetch_checkpoint(str(tmp_path / "bare" / "ckpt-1"), tmp_path / "cache")
    for got in (from_url, from_path):
        assert got.prefix.is_relative_to(tmp_path / "cache")
        _assert_restores(got.prefix, weights)
    assert (tmp_path / "resnet.tar.gz").is_file()  # the user's own file stays


# --- fake checkpoint files: no TensorFlow needed ----------------------------------------


def test_highest_step_is_chosen_and_good_sha256_accepted(server, tmp_path):
    archive = _tar_gz(FAKE_FILES)
    server.files["/a.tgz"] = archive
    digest = hashlib.sha256(archive).hexdigest()
    got = fetch_checkpoint(server.url("/a.tgz"), tmp_path / "cache", sha256=digest.upper())
    assert got.prefix.name == "ckpt-12" and got.sha256 == digest
    shard = Path(f"{got.prefix}.data-00000-of-00001")
    assert shard.read_bytes() == FAKE_FILES["model/ckpt-12.data-00000-of-00001"]


def test_sha256_mismatch_deletes_the_download(server, tmp_path):
    archive = _tar_gz(FAKE_FILES)
    server.files["/a.tar.gz"] = archive
    wrong = "0" * 64
    with pytest.raises(WeightsError) as caught:
        fetch_checkpoint(server.url("/a.tar.gz"), tmp_path / "cache", sha256=wrong)
    message = str(caught.value)
    assert wrong in message and hashlib.sha256(archive).hexdigest() in message
    assert _files(tmp_path / "cache") == set()


def test_interrupted_download_resumes_with_range(server, tmp_path):
    archive = _tar_gz({**FAKE_FILES, "model/big.bin": os.urandom(300_000)})
    server.files["/big.tar.gz"] = archive
    server.cut_after["/big.tar.gz"] = len(archive) // 3
    with pytest.raises(WeightsError, match="resumes"):
        fetch_checkpoint(server.url("/big.tar.gz"), tmp_path / "cache")
    assert any(name.endswith(".part") for name in _files(tmp_path / "cache"))
    got = fetch_checkpoint(server.url("/big.tar.gz"), tmp_path / "cache")
    assert got.sha256 == hashlib.sha256(archive).hexdigest()
    assert server.ranges == [("/big.tar.gz", f"bytes={len(archive) // 3}-")]
    assert server.served < 2 * len(archive)


def test_stale_part_gets_416_and_restarts(server, tmp_path):
    archive = _tar_gz(FAKE_FILES)
    server.files["/a.tar.gz"] = archive
    first = fetch_checkpoint(server.url("/a.tar.gz"), tmp_path / "other")
    entry = first.prefix.parents[2].name
    (tmp_path / "cache" / entry).mkdir(parents=True)
    (tmp_path / "cache" / entry / "a.tar.gz.part").write_bytes(b"x" * (len(archive) + 5))
    got = fetch_checkpoint(server.url("/a.tar.gz"), tmp_path / "cache")
    assert got.sha256 == first.sha256 and server.requests["/a.tar.gz"] == 3


def test_bare_prefix_probes_the_shard_count(server, tmp_path):
    files = {
        "/p/model.ckpt-7.index": b"idx",
        "/p/model.ckpt-7.data-00000-of-00002": b"zero",
        "/p/model.ckpt-7.data-00001-of-00002": b"one",
    }
    server.files.update(files)
    got = fetch_checkpoint(server.url("/p/model.ckpt-7.index"), tmp_path / "cache")
    assert got.prefix.name == "model.ckpt-7"
    assert Path(f"{got.prefix}.data-00001-of-00002").read_bytes() == b"one"
    assert server.requests["/p/model.ckpt-7.data-00000-of-00001"] == 1


def test_missing_file_is_reported(server, tmp_path):
    with pytest.raises(WeightsError, match="HTTP 404") as caught:
        fetch_checkpoint(server.url("/nope.tar.gz?token=secret"), tmp_path / "cache")
    assert "secret" not in str(caught.value) and "127.0.0.1" in str(caught.value)


def test_offline_names_the_host_and_the_way_out(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WeightsError) as caught:
        fetch_checkpoint(f"http://127.0.0.1:{port}/w/ckpt.tar.gz", tmp_path / "cache", timeout=5)
    message = str(caught.value)
    assert f"127.0.0.1:{port}/w/ckpt.tar.gz" in message
    assert "refused" in message and "--no-pretrained" in message
    assert str(tmp_path / "cache") in message


def _member(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "bad",
    [
        {"files": {"../evil": b"boom"}},
        {"files": {"/tmp/evil-abs": b"boom"}},
        {"link": _member("model/evil", tarfile.SYMTYPE, "../../../evil")},
        {"link": _member("model/evil", tarfile.LNKTYPE, "model/ckpt-3.index")},
        {"link": _member("model/evil", tarfile.CHRTYPE)},
    ],
)
def test_unsafe_archive_is_refused(tmp_path, bad):
    archive = tmp_path / "src" / "evil.tar.gz"
    archive.parent.mkdir()
    files = {**FAKE_FILES, **bad.get("files", {})}
    archive.write_bytes(_tar_gz(files, **({"link": bad["link"]} if "link" in bad else {})))
    with pytest.raises(WeightsError, match="for safety nothing was extracted"):
        fetch_checkpoint(archive.as_uri(), tmp_path / "cache")
    assert _files(tmp_path) == {"src/evil.tar.gz"}
    assert not Path("/tmp/evil-abs").exists()


def test_damaged_archive_is_not_kept(server, tmp_path):
    server.files["/page.tar.gz"] = b"<html>Sign in</html>"
    with pytest.raises(WeightsError, match="damaged or not a tar"):
        fetch_checkpoint(server.url("/page.tar.gz"), tmp_path / "cache")
    assert _files(tmp_path / "cache") == set()  # so the next call downloads it again


def test_cache_entry_with_another_sha256_is_fetched_again(server, tmp_path):
    server.files["/a.tar.gz"] = _tar_gz(FAKE_FILES)
    fetch_checkpoint(server.url("/a.tar.gz"), tmp_path / "cache")
    with pytest.raises(WeightsError, match="expected sha256 1111"):
        fetch_checkpoint(server.url("/a.tar.gz"), tmp_path / "cache", sha256="1" * 64)
    assert server.requests["/a.tar.gz"] == 2
    with pytest.raises(WeightsError, match="64 hexadecimal"):
        fetch_checkpoint(server.url("/a.tar.gz"), tmp_path / "cache", sha256="abc")


def test_to_https():
    assert to_https("gs://cloud-tpu-checkpoints/vision-2.0/resnet50_imagenet/ckpt-28080") == (
        "https://storage.googleapis.com/cloud-tpu-checkpoints/vision-2.0/resnet50_imagenet/ckpt-28080"
    )
    assert to_https("http://example.com/a.tar.gz") == "http://example.com/a.tar.gz"
    for bad in ("ftp://example.com/a.tar.gz", "gs://bucket-only"):
        with pytest.raises(WeightsError):
            to_https(bad)


def test_two_jobs_fetching_the_same_checkpoint_at_once_download_it_once(server, tmp_path):
    """Two trainings of the same catalogue model starting together (two users, two slots) share one download."""
    server.files["/w.tar.gz"] = _tar_gz(FAKE_FILES)
    server.delay["/w.tar.gz"] = 0.5  # both have asked the cache before either download ends
    url, results, errors = server.url("/w.tar.gz"), [], []

    def fetch():
        try:
            results.append(fetch_checkpoint(url, tmp_path / "cache"))
        except Exception as error:  # reported below, with the other thread's result
            errors.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and len(results) == 2
    assert results[0].prefix == results[1].prefix and results[0].prefix.name == "ckpt-12"
    assert server.requests["/w.tar.gz"] == 1 and sorted(r.from_cache for r in results) == [False, True]
