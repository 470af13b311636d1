"""Safe extraction of a user's uploaded dataset zip (images and their annotations, in any format detbot reads).

The archive comes from a stranger, so every entry is hostile until checked:
names are normalised and confined to the destination, sizes are counted as the
bytes are really produced (headers can lie), and a refusal leaves nothing behind.
"""

from __future__ import annotations

import logging
import lzma
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pipeline.data.pairing import IMAGE_EXTENSIONS
from pipeline.data.zip_directory import ArchiveFacts, DirectoryTooLarge, decode_name, read_facts
from pipeline.data.zip_entries import REZIP_FIX, SAFE_FIX, Entry, human, inspect, printable, refuse
from pipeline.errors import DatasetRejected

logger = logging.getLogger(__name__)


_CHUNK = 2**20
# Every entry's ratio is checked; this slack only spares files of a few KiB (an XML compresses 5-10x).
# Summed over entries it stays far below the ratio: each entry costs ~100 bytes of headers.
_RATIO_SLACK = 4096
_CD_BYTES_PER_ENTRY = 1024  # a central directory larger than this per allowed entry is not a dataset's
# bz2 reports a damaged stream as a bare OSError, so OSError counts as "damaged"
# here; these are only caught around reads from the archive, never around writes.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, NotImplementedError)
_OPEN_ERRORS = (*_READ_ERRORS, UnicodeDecodeError, struct.error, ValueError)
_FOREIGN_MAGIC = (
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x1f\x8b", "a gzip / .tar.gz archive"),
)


@dataclass(frozen=True)
class ExtractLimits:
    max_total_bytes: int = 8 * 2**30  # all uncompressed bytes, nested zips included
    max_entry_bytes: int = 2**30  # one entry
    max_entries: int = 200_000  # entries, nested zips included
    max_ratio: float = 200.0  # uncompressed/compressed of every entry, whatever its size
    max_nesting: int = 1  # how many levels of zip-inside-zip are unpacked
    budget_bytes: int | None = None  # disk the caller set aside (e.g. the rest of a quota); None: no budget


@dataclass(frozen=True)
class Extraction:
    root: Path  # the destination folder
    files: tuple[str, ...]  # extracted files, posix paths relative to root, sorted
    skipped: tuple[str, ...]  # OS junk and later duplicates, not extracted
    nested: tuple[str, ...]  # inner zips that were unpacked (relative paths)


@dataclass
class _Run:
    """Budget and bookkeeping shared by the outer zip and every zip inside it."""

    root: Path
    limits: ExtractLimits
    total_bytes: int = 0
    entries: int = 0
    claimed: dict[str, bool] = field(default_factory=dict)  # path -> is a folder
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    nested: list[str] = field(default_factory=list)


def extract_zip(archive: Path, destination: Path, limits: ExtractLimits = ExtractLimits()) -> Extraction:
    """Unpack ``archive`` into ``destination`` or raise DatasetRejected, leaving nothing behind."""
    archive, destination = Path(archive), Path(destination)
    partial = _prepare_partial(destination)
    run = _Run(root=partial.resolve(), limits=limits)
    try:
        with _open_zip(archive, (archive.name,), run) as zf:
            _unpack(zf, run, prefix="", where=(archive.name,), depth=0)
        _check_contents(run, archive.name)
        if destination.exists():
            destination.rmdir()  # verified empty above; rename cannot replace it portably
        partial.rename(destination)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    logger.info(
        "extracted %s: %d files, %d skipped, %d nested zips",
        archive.name,
        len(run.files),
        len(run.skipped),
        len(run.nested),
    )
    return Extraction(
        root=destination, files=tuple(sorted(run.files)), skipped=tuple(run.skipped), nested=tuple(run.nested)
    )


def _prepare_partial(destination: Path) -> Path:
    occupied = destination.exists() and (not destination.is_dir() or any(destination.iterdir()))
    if occupied or destination.is_symlink():
        raise DatasetRejected(
            f"Cannot extract the dataset into {destination}: it already exists and is not "
            "an empty folder. Choose a new destination or empty that folder first.",
            kind="destination_not_empty",
        )
    partial = destination.with_name(destination.name + ".partial")
    # A leftover of a crashed run is ours by its name; its files must not mix into this dataset.
    if partial.is_symlink() or partial.is_file():
        partial.unlink()
    elif partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def _open_zip(path: Path, where: tuple[str, ...], run: _Run) -> zipfile.ZipFile:
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            head = handle.read(8)
        if head.startswith(b"PK\x03\x04"):
            raise refuse(
                "corrupt_zip",
                where,
                "is a damaged zip: its table of contents is missing, so the file was cut short.",
                REZIP_FIX,
            )
        hint = next((f" (it looks like {what})" for magic, what in _FOREIGN_MAGIC if head.startswith(magic)), "")
        raise refuse(
            "not_a_zip",
            where,
            f"is not a zip file{hint}.",
            "Send the dataset as a .zip archive of the images and their annotations (Pascal VOC, COCO, YOLO, ...).",
        )
    # zipfile lists every entry in memory at once: count them first, in constant memory.
    archive_facts(path, run.limits, where, entries_before=run.entries)
    try:
        return zipfile.ZipFile(path)
    except _OPEN_ERRORS as exc:
        raise refuse("corrupt_zip", where, f"is a damaged zip ({exc}).", REZIP_FIX) from exc


def archive_facts(
    path: Path, limits: ExtractLimits = ExtractLimits(), where: tuple[str, ...] | None = None, entries_before: int = 0
) -> ArchiveFacts:
    """Entries and declared size from the zip's table of contents, refused past ``limits.max_entries``.

    Constant memory, so a caller may size a reservation from it before anything is unpacked.
    """
    where = where or (Path(path).name,)
    allowed = max(limits.max_entries - entries_before, 0)
    try:
        return read_facts(Path(path), allowed, limits.max_entries * _CD_BYTES_PER_ENTRY)
    except DirectoryTooLarge:
        raise _too_many(where, limits) from None
    except _OPEN_ERRORS as exc:
        raise refuse("corrupt_zip", where, f"is a damaged zip ({exc}).", REZIP_FIX) from exc


def _unpack(zf: zipfile.ZipFile, run: _Run, prefix: str, where: tuple[str, ...], depth: int) -> None:
    for entry in _survey(zf, run, where, depth):
        full = "/".join(part for part in (prefix, entry.path) if part)
        here = (*where, entry.shown)
        if entry.junk:
            run.skipped.append(full + "/" if entry.is_dir else full)
        elif entry.is_dir:
            _make_dir(run, full, here)
        elif PurePosixPath(entry.path).suffix.lower() == ".zip":
            _unpack_nested(zf, entry, run, full, here, depth)
        else:
            _extract_file(zf, entry, run, full, here)


def _survey(zf: zipfile.ZipFile, run: _Run, where: tuple[str, ...], depth: int) -> list[Entry]:
    """Check every entry before writing anything, trusting headers only to refuse early."""
    infos = zf.infolist()
    limits = run.limits
    run.entries += len(infos)
    if run.entries > limits.max_entries:
        raise _too_many(where, limits)
    declared = run.total_bytes + sum(info.file_size for info in infos)
    if limits.budget_bytes is not None and declared > limits.budget_bytes:
        raise _over_budget(where, limits, declared)
    if declared > limits.max_total_bytes:
        biggest = decode_name(max(infos, key=lambda info: info.file_size))
        raise refuse(
            "too_large",
            where,
            f"would unpack to {human(declared)}, more than the {human(limits.max_total_bytes)} "
            f"allowed (largest entry: '{printable(biggest)}').",
            "Send a smaller dataset, e.g. with resized images, or split it into several zips.",
            limit=limits.max_total_bytes,
            one_file=False,
        )
    entries = [inspect(info, limits.max_entry_bytes, where) for info in infos]
    if depth == 0 and all(entry.junk or entry.is_dir for entry in entries):
        raise refuse(
            "empty_zip",
            where,
            "contains no files apart from folders and system files such as __MACOSX and .DS_Store.",
            "Zip the folder that holds the images and annotations and send it again.",
        )
    return entries


def _claim(run: _Run, full: str, is_dir: bool) -> bool:
    """Reserve a path; False when an earlier entry already owns it (first one wins)."""
    parts = full.split("/")
    parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
    if any(run.claimed.get(parent) is False for parent in parents):
        return False  # a file sits where a folder would have to be
    previous = run.claimed.get(full)
    if previous is not None:
        return is_dir and previous
    run.claimed.update(dict.fromkeys(parents, True))
    run.claimed[full] = is_dir
    return True


def _target(run: _Run, full: str, here: tuple[str, ...]) -> Path:
    target = (run.root / full).resolve()
    if not target.is_relative_to(run.root):
        raise refuse("unsafe_path", here, "was refused: its path leads outside the dataset folder.", SAFE_FIX)
    return target


def _make_dir(run: _Run, full: str, here: tuple[str, ...]) -> None:
    if not full:
        return
    if not _claim(run, full, is_dir=True):
        run.skipped.append(full + "/")
        return
    _target(run, full, here).mkdir(parents=True, exist_ok=True)


def _extract_file(zf: zipfile.ZipFile, entry: Entry, run: _Run, full: str, here: tuple[str, ...]) -> None:
    if not _claim(run, full, is_dir=False):
        run.skipped.append(full)
        return
    target = _target(run, full, here)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "xb") as dst:  # "x": never follow or overwrite something already there
        _stream(zf, entry, dst, run, here)
    run.files.append(full)


def _unpack_nested(zf: zipfile.ZipFile, entry: Entry, run: _Run, full: str, here: tuple[str, ...], depth: int) -> None:
    if depth + 1 > run.limits.max_nesting:
        raise refuse(
            "nested_too_deep",
            here,
            f"was refused: it is a zip nested deeper than the {run.limits.max_nesting} "
            "level(s) of zip-inside-zip that are unpacked.",
            "Unpack it and send one zip that holds the images and annotations directly.",
            levels=run.limits.max_nesting,
        )
    folder = full[: -len(".zip")]
    if not _claim(run, full, is_dir=False) or not _claim(run, folder, is_dir=True):
        run.skipped.append(full)
        return
    # The inner zip needs random access, so it is spooled to disk; its bytes stay in
    # the budget because it really occupies disk alongside its own contents.
    handle, spool = tempfile.mkstemp(prefix=".nested-", suffix=".zip", dir=run.root)
    try:
        with os.fdopen(handle, "wb") as dst:
            _stream(zf, entry, dst, run, here)
        with _open_zip(Path(spool), here, run) as inner:
            _unpack(inner, run, folder, here, depth + 1)
    finally:
        os.unlink(spool)
    run.nested.append(full)


def _stream(zf: zipfile.ZipFile, entry: Entry, dst, run: _Run, here: tuple[str, ...]) -> None:
    """Copy one entry, counting the bytes it really produces; headers may lie."""
    produced = 0
    with _guard_read(here, zf.open, entry.info) as src:
        while chunk := _guard_read(here, src.read, _CHUNK):
            produced += len(chunk)
            run.total_bytes += len(chunk)
            _check_growth(entry, produced, run, here)
            dst.write(chunk)


def _guard_read(here: tuple[str, ...], read, *args):
    try:
        return read(*args)
    except _READ_ERRORS as exc:
        raise refuse("corrupt_zip", here, f"is damaged and cannot be read ({exc}).", REZIP_FIX) from exc


def _check_growth(entry: Entry, produced: int, run: _Run, here: tuple[str, ...]) -> None:
    limits = run.limits
    if produced > limits.max_entry_bytes:
        raise refuse(
            "too_large",
            here,
            f"unpacks to more than the {human(limits.max_entry_bytes)} allowed for one file.",
            "Remove or shrink that file and send the zip again.",
            limit=limits.max_entry_bytes,
            one_file=True,
        )
    if run.total_bytes > limits.max_total_bytes:
        raise refuse(
            "too_large",
            here,
            f"brings the dataset past the {human(limits.max_total_bytes)} allowed in total.",
            "Send a smaller dataset or split it into several zips.",
            limit=limits.max_total_bytes,
            one_file=False,
        )
    if limits.budget_bytes is not None and run.total_bytes > limits.budget_bytes:
        raise _over_budget(here, limits, run.total_bytes)
    if produced > limits.max_ratio * entry.info.compress_size + _RATIO_SLACK:
        raise refuse(
            "compression_ratio",
            here,
            f"expands more than {limits.max_ratio:g} times its compressed size, which looks like a zip bomb.",
            "Images and annotations never compress like that: send a zip that holds only the dataset's real files.",
            ratio=limits.max_ratio,
        )


def _check_contents(run: _Run, archive_name: str) -> None:
    where = (archive_name,)
    if not run.files:
        raise refuse(
            "empty_zip",
            where,
            "contains no files once folders and system files (__MACOSX, .DS_Store, ...) are left out.",
            "Zip the folder that holds the images and annotations and send it again.",
        )
    if not any(name.lower().endswith(IMAGE_EXTENSIONS) for name in run.files):
        examples = ", ".join(f"'{printable(name)}'" for name in sorted(run.files)[:3])
        raise refuse(
            "no_images",
            where,
            f"contains no images: none of its {len(run.files)} files ({examples}) ends in "
            f"{', '.join(IMAGE_EXTENSIONS)}.",
            "Add the JPEG or PNG images next to their annotations and send the zip again.",
            files=len(run.files),
            examples=[printable(name) for name in sorted(run.files)[:3]],
        )


def _too_many(where: tuple[str, ...], limits: ExtractLimits) -> DatasetRejected:
    return refuse(
        "too_many_entries",
        where,
        f"brings the dataset past {limits.max_entries:,} entries (entries of zips inside zips count too).",
        "Remove files that are neither images nor annotations, or split the dataset, and send a smaller zip.",
        limit=limits.max_entries,
    )


def _over_budget(where: tuple[str, ...], limits: ExtractLimits, size: int) -> DatasetRejected:
    return refuse(
        "over_budget",
        where,
        f"unpacks to more than the {human(limits.budget_bytes or 0)} of disk space set aside "
        f"for it (at least {human(size)}).",
        "Free some space or send a smaller dataset.",
        limit=limits.budget_bytes or 0,
        size=size,
    )
