"""Pretrained checkpoints for TF Model Garden, downloaded once into a cache.

Runs before training, so it must not import TensorFlow. Sources: a tar archive holding
``ckpt-N.index`` + ``ckpt-N.data-*`` files, or a bare checkpoint prefix (``.../ckpt-28080``),
as an http(s)/gs URL, a ``file://`` URL or a local path (for machines without internet).

Cache: ``cache_dir/<first 16 hex of sha256(url)>/`` holds ``checkpoint/`` and ``meta.json``.
meta.json is written last and atomically, so it alone marks an entry complete. An unfinished
download stays beside it as ``<name>.part`` and is resumed with a Range request.

A bare prefix's shard count is found by trying ``PREFIX.data-00000-of-0000K`` for K = 1..16:
reading it from the ``.index`` header would need a LevelDB-table + snappy reader, while a
probe costs one tiny 404 and the successful probe is the shard's download itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import WeightsError
from pipeline.fetch import POLICIES, FetchError, Response, describe, open_url
from pipeline.files import replacing
from pipeline.train.checkpoint_files import CHUNK, SCRATCH, SHARD, check_shards, extract, locate

logger = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]

_PROGRESS_EVERY = 0.5  # seconds
_MAXSHARDS = 16
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")
_ABSENT = (403, 404)  # GCS says 403 for a missing object when the bucket cannot be listed
_DEADLINE = 4 * 3600.0  # seconds for one file in all; ``timeout`` bounds each wait for data
_REASONS = (
    (socket.gaierror, "the host name could not be resolved (no internet connection, or a DNS failure)"),
    (ConnectionRefusedError, "the connection was refused (nothing answers there, or a firewall blocks it)"),
    (TimeoutError, "no answer within {timeout:g} seconds"),
    (ssl.SSLError, "the secure (TLS) connection failed"),
)


@dataclass(frozen=True)
class FetchedCheckpoint:
    prefix: Path  # for tf.train.Checkpoint.read / Model Garden's init_checkpoint
    sha256: str  # of the archive, or of the .index file for a bare prefix
    from_cache: bool


@dataclass(frozen=True)
class _Source:
    identity: str  # the cache key is derived from it
    display: str  # host + path, or the local path: safe to log and show
    kind: str  # "archive" or "prefix"
    name: str  # archive file name or prefix base name, safe as a file name
    url: str | None  # https URL, None for a local source
    path: Path | None  # local archive or prefix


@dataclass(frozen=True)
class _Job:
    source: _Source
    entry: Path
    expected: str | None
    timeout: float
    progress: Progress | None
    policy: str  # pipeline.fetch: which addresses an http(s) source may resolve to


def fetch_checkpoint(
    url: str,
    cache_dir: Path,
    sha256: str | None = None,
    timeout: float = 30.0,
    progress: Progress | None = None,
    policy: str = "any",
) -> FetchedCheckpoint:
    """Return the checkpoint prefix for ``url``, fetching and unpacking it into the cache once.

    ``progress(done, total)`` is called now and then while each file is fetched (``total`` is
    None when the server does not say). ``policy`` ("public", "private", "any") limits the
    addresses an http(s) URL may reach; "any" is for the operator's own command line.
    Every failure is a WeightsError.
    """
    expected = sha256.strip().lower() if sha256 is not None else None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise WeightsError(f"The expected sha256 {sha256!r} is not 64 hexadecimal digits; copy it again.")
    if policy not in POLICIES:
        raise ValueError(f"unknown URL policy {policy!r}: use one of {', '.join(POLICIES)}")
    scheme = urllib.parse.urlsplit(str(url)).scheme.lower()
    if policy != "any" and (scheme == "file" or len(scheme) <= 1):  # a user must not probe our disk
        raise WeightsError(
            f"Pretrained weights from a local file are allowed only with --url-policy any; "
            f"give an https:// or gs:// address, or {SCRATCH}."
        )
    source = _resolve_source(str(url))
    entry = Path(cache_dir) / hashlib.sha256(source.identity.encode()).hexdigest()[:16]
    job = _Job(source, entry, expected, timeout, progress, policy)
    cached = _cached(job)
    if cached is not None:
        logger.info("pretrained weights for %s found in the cache", source.display)
        return cached
    try:
        entry.mkdir(parents=True, exist_ok=True)
        # Two jobs starting from the same checkpoint at once (two users, two slots) fetch it once: the second
        # waits for the first and finds it complete. The lock is on the entry folder itself: no lock file to leave.
        folder = os.open(entry, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            cached = _cached(job)
            if cached is not None:
                return cached
            digest, prefix = (_fetch_archive if source.kind == "archive" else _fetch_prefix)(job)
            _finish(job, digest, prefix)
        finally:
            os.close(folder)  # and with it the lock
    except OSError as error:  # network errors were translated already: this is the local disk
        raise WeightsError(
            f"Could not write the pretrained weights into the cache folder {entry}: "
            f"{error}. Free some disk space or fix the folder's permissions, "
            f"or {SCRATCH}."
        ) from error
    logger.info("pretrained weights for %s ready (sha256 %s)", source.display, digest)
    return FetchedCheckpoint(prefix, digest, False)


def to_https(url: str) -> str:
    """gs://bucket/path -> https://storage.googleapis.com/bucket/path; http(s) unchanged."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return url
    if scheme == "gs" and parts.netloc and parts.path.strip("/"):
        return f"https://storage.googleapis.com/{parts.netloc}/{urllib.parse.quote(parts.path.lstrip('/'))}"
    what = "a gs:// address without an object path" if scheme == "gs" else f"a '{scheme}:' address"
    raise WeightsError(
        f"Cannot fetch pretrained weights from {what}: give an https://, http:// or "
        f"gs://bucket/path address or a local file path, or {SCRATCH}."
    )


def _display(url: str) -> str:
    """Host + path: no credentials, no query string (signed URLs carry secrets there)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _resolve_source(url: str) -> _Source:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() == "file":
        return _local_source(Path(urllib.request.url2pathname(parts.path)))
    if len(parts.scheme) <= 1:  # no scheme, or a Windows drive letter
        return _local_source(Path(url))
    https = urllib.parse.urlsplit(to_https(url))
    name = urllib.parse.unquote(https.path.rstrip("/").rsplit("/", 1)[-1])
    kind = "archive" if name.lower().endswith(_ARCHIVE_SUFFIXES) else "prefix"
    if kind == "prefix" and name.endswith(".index"):
        name, https = name[:-6], https._replace(path=https.path[:-6])
    if name in ("", ".", ".."):
        raise WeightsError(
            f"The pretrained weights address {_display(url)} names no file: give the "
            f"archive (.tar.gz) or the checkpoint prefix (…/ckpt-N), or {SCRATCH}."
        )
    full = urllib.parse.urlunsplit(https)
    return _Source(full, _display(full), kind, re.sub(r"[^\w.-]", "_", name), full, None)


def _local_source(path: Path) -> _Source:
    path = path.expanduser()
    if path.name.endswith(".index") and path.is_file():
        path = path.with_name(path.name[:-6])
    kind = "prefix" if Path(f"{path}.index").is_file() else "archive" if path.is_file() else None
    if kind is None:
        raise WeightsError(
            f"The pretrained weights file {path} does not exist. Give the path of the "
            f".tar.gz archive or of the checkpoint prefix (ckpt-N.index without "
            f"'.index'), or {SCRATCH}."
        )
    resolved = path.resolve()
    return _Source(resolved.as_uri(), str(path), kind, path.name, None, resolved)


def _cached(job: _Job) -> FetchedCheckpoint | None:
    try:
        meta = json.loads((job.entry / "meta.json").read_text("utf-8"))
        prefix, digest = job.entry / meta["prefix"], meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not Path(f"{prefix}.index").is_file():
        return None
    if job.expected is not None and digest != job.expected:
        logger.warning("cached weights for %s have another sha256; fetching again", job.source.display)
        (job.entry / "meta.json").unlink()
        shutil.rmtree(job.entry / "checkpoint", ignore_errors=True)
        return None
    return FetchedCheckpoint(prefix, digest, True)


def _fetch_archive(job: _Job) -> tuple[str, Path]:
    archive = job.entry / job.source.name
    _obtain(job, "", archive)
    digest = _verify(job, archive)
    folder = job.entry / "checkpoint"
    try:
        extract(archive, folder, job.source.display)
        return digest, locate(folder, job.source.display)
    except WeightsError:
        archive.unlink()  # a damaged download must not block the next attempt
        raise


def _fetch_prefix(job: _Job) -> tuple[str, Path]:
    local = job.entry / "checkpoint" / job.source.name
    local.parent.mkdir(exist_ok=True)
    _obtain(job, ".index", Path(f"{local}.index"))
    digest = _verify(job, Path(f"{local}.index"))
    # A shard already here (placed by hand, or half-downloaded) tells the count without probing.
    known = [
        m.group(2)
        for p in local.parent.iterdir()
        if p.name.startswith(local.name) and (m := SHARD.fullmatch(p.name.removesuffix(".part")[len(local.name) :]))
    ]
    for count in dict.fromkeys([*map(int, known), *range(1, _MAXSHARDS + 1)]):
        try:
            _obtain(job, f".data-00000-of-{count:05d}", Path(f"{local}.data-00000-of-{count:05d}"))
        except WeightsError as error:
            if error.details.get("status") in _ABSENT:
                continue
            raise
        for shard in range(1, count):
            suffix = f".data-{shard:05d}-of-{count:05d}"
            _obtain(job, suffix, Path(f"{local}{suffix}"))
        check_shards(local, job.source.display)
        return digest, local
    raise WeightsError(
        f"The checkpoint {job.source.display} has an .index file but no data file "
        f"{job.source.name}.data-00000-of-000NN (NN = 01..{_MAXSHARDS}). Check the "
        f"address, or {SCRATCH}."
    )


def _obtain(job: _Job, suffix: str, dest: Path) -> None:
    """Put the source's file ``suffix`` at ``dest``; a file already there counts as fetched."""
    if dest.is_file():
        return
    if job.source.url is not None:
        _download(job, job.source.url + suffix, dest)
        return
    origin = Path(f"{job.source.path}{suffix}")
    if not origin.is_file():
        raise WeightsError(f"The checkpoint file {origin} does not exist.", details={"status": 404})
    shutil.copyfile(origin, dest)  # a copy, so that a checksum failure never deletes the user's file


def _download(job: _Job, url: str, dest: Path) -> None:
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "detbot-weights/1", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    logger.info("downloading %s (%d bytes already here)", _display(url), offset)
    try:
        response = open_url(url, policy=job.policy, timeout=_DEADLINE, stall_timeout=job.timeout, headers=headers)
    except FetchError as error:
        raise _network_error(job, url, dest, error) from error
    with response:
        if response.status == 416 and offset:  # the part is complete or stale: start again
            part.unlink()
            response.close()
            return _download(job, url, dest)
        if response.status not in (200, 206):
            raise _network_error(
                job, url, dest, FetchError(f"HTTP {response.status} {response.reason}", status=response.status)
            )
        _receive(job, url, dest, response, offset)
    part.replace(dest)


def _receive(job: _Job, url: str, dest: Path, response: Response, offset: int) -> None:
    part = dest.with_name(dest.name + ".part")
    length = response.headers.get("Content-Length", "")
    start, total = 0, int(length) if length.isdigit() else None
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            part.unlink()
            wrong = ConnectionError("the server resumed at the wrong place")
            raise _network_error(job, url, dest, FetchError(str(wrong), cause=wrong))
        start = offset
        total = int(match.group(2)) if match.group(2) != "*" else None if total is None else offset + total
    done, last = start, 0.0
    with open(part, "ab" if start else "wb") as out:  # a 200 means the server ignored the Range
        while True:
            if job.progress is not None and time.monotonic() - last >= _PROGRESS_EVERY:
                job.progress(done, total)
                last = time.monotonic()
            try:
                chunk = response.read(CHUNK)
            except FetchError as error:
                raise _network_error(job, url, dest, error) from error
            if not chunk:
                break
            out.write(chunk)
            done += len(chunk)
    if total is not None and done != total:
        closed = ConnectionError(f"the connection closed after {done} of {total} bytes")
        raise _network_error(job, url, dest, FetchError(str(closed), cause=closed))
    if job.progress is not None:
        job.progress(done, total)


def _network_error(job: _Job, url: str, dest: Path, error: FetchError) -> WeightsError:
    logger.info("download of %s failed: %s", _display(url), describe(error))
    reason = _reason(error, job.timeout) if job.policy == "any" else "it is unreachable or not allowed"
    status = error.status
    part = dest.with_name(dest.name + ".part")
    kept = part.stat().st_size if part.is_file() else 0
    resume = f" The {kept} bytes received so far are kept; the next attempt resumes." if kept else ""
    return WeightsError(
        f"Could not download the pretrained weights from {_display(url)}: {reason}.{resume} Check the "
        f"internet connection and try again, or {SCRATCH}, or download the file on another computer "
        f"and pass its local path instead of the URL (or put it at {dest}).",
        details={"url": _display(url), "status": status},
    )


def _reason(error: FetchError, timeout: float) -> str:
    """What went wrong, in words: for the operator (policy "any"), never for a chat user."""
    if error.status is not None:
        reason = f"the server answered {error.detail}"
        return reason + (" (the file is not at that address)" if error.status in _ABSENT else "")
    cause = error.cause
    if cause is None:
        return error.detail
    return next(
        (text.format(timeout=timeout) for kind, text in _REASONS if isinstance(cause, kind)),
        str(cause) or cause.__class__.__name__,
    )


def _verify(job: _Job, path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    actual = digest.hexdigest()
    if job.expected is None or actual == job.expected:
        return actual
    path.unlink()  # always our cache copy, so that the next call fetches it afresh
    raise WeightsError(
        f"The pretrained weights from {job.source.display} do not match their checksum: "
        f"expected sha256 {job.expected}, got {actual}. The cached copy was deleted. Try "
        f"again (the file may have been damaged in transit); if it still differs, check "
        f"that the sha256 in the configuration belongs to this file, or {SCRATCH}."
    )


def _finish(job: _Job, digest: str, prefix: Path) -> None:
    meta = {
        "source": job.source.display,
        "kind": job.source.kind,
        "sha256": digest,
        "prefix": prefix.relative_to(job.entry).as_posix(),
    }
    with replacing(job.entry / "meta.json") as temporary, open(temporary, "w", encoding="utf-8") as out:
        json.dump(meta, out, indent=2)
        out.flush()
        os.fsync(out.fileno())  # the cache entry must survive a power cut once it says it is complete
    # Only now is the archive redundant: the unpacked files replace it.
    for leftover in job.entry.iterdir():
        if leftover.is_file() and leftover.name != "meta.json":
            leftover.unlink()
