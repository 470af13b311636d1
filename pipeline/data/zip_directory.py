"""A zip's table of contents: entry count and declared sizes in constant memory, and names.

``zipfile.ZipFile`` reads the whole central directory and builds one ``ZipInfo`` per
entry before anyone can look at the count: a million tiny entries cost half a GiB.
This walks the same records one at a time and stops as soon as there are too many.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

_RECORD = struct.Struct(zipfile.structCentralDir)  # 46 bytes, the fixed part of each entry's record
_SIGNATURE = zipfile.stringCentralDir
_ZIP64_EXTRA = 0x0001
_MAX32 = 0xFFFFFFFF
_BUFFER = 2**20
_UTF8_FLAG = 0x800
_UNICODE_PATH_EXTRA = 0x7075
# Without the UTF-8 flag the bytes are in the sender's OEM code page; Korean and
# Japanese Windows are the usual sources, and strict utf-8 rarely matches by accident.
_LEGACY_CODECS = ("utf-8", "cp949", "cp932")


class DirectoryTooLarge(Exception):
    """More entries, or more directory bytes, than the caller allows."""


@dataclass(frozen=True)
class ArchiveFacts:
    entries: int
    declared_bytes: int  # the sum of the uncompressed sizes the entries claim (they may lie)
    directory_bytes: int


def read_facts(path: Path, max_entries: int, max_directory_bytes: int) -> ArchiveFacts:
    """The central directory's facts; zipfile.BadZipFile if it is damaged, DirectoryTooLarge past a limit."""
    with open(path, "rb", buffering=_BUFFER) as handle:
        # zipfile's own end-of-directory reader, so "where is the directory" matches what it will open;
        # it reads at most the last 64 KiB.
        end = zipfile._EndRecData(handle)
        if not end:
            raise zipfile.BadZipFile("no end of central directory record")
        size = end[zipfile._ECD_SIZE]
        if size > max_directory_bytes:
            raise DirectoryTooLarge(f"a central directory of {size} bytes")
        start = end[zipfile._ECD_LOCATION] - size
        if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
            start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
        if start < 0:
            raise zipfile.BadZipFile("the central directory would start before the file")
        handle.seek(start)
        entries, declared = _walk(handle, size, max_entries)
    return ArchiveFacts(entries, declared, size)


def _walk(handle, size: int, max_entries: int) -> tuple[int, int]:
    entries = declared = consumed = 0
    while consumed < size:
        fixed = handle.read(_RECORD.size)
        if len(fixed) != _RECORD.size:
            raise zipfile.BadZipFile("the central directory is cut short")
        record = _RECORD.unpack(fixed)
        if record[0] != _SIGNATURE:
            raise zipfile.BadZipFile("bad magic number in the central directory")
        name_len, extra_len, comment_len = record[12], record[13], record[14]
        handle.seek(name_len, 1)
        extra = handle.read(extra_len)
        handle.seek(comment_len, 1)
        entries += 1
        if entries > max_entries:
            raise DirectoryTooLarge(f"more than {max_entries} entries")
        declared += _uncompressed(record[11], extra)
        consumed += _RECORD.size + name_len + extra_len + comment_len
    return entries, declared


def _uncompressed(size: int, extra: bytes) -> int:
    """The entry's size; a 32-bit size of all ones means the real one is in the Zip64 extra field."""
    if size != _MAX32:
        return size
    while len(extra) >= 4:
        tag, length = struct.unpack("<HH", extra[:4])
        if tag == _ZIP64_EXTRA and length >= 8:
            return struct.unpack("<Q", extra[4:12])[0]
        extra = extra[4 + length :]
    return size


def decode_name(info: zipfile.ZipInfo) -> str:
    # orig_filename, not filename: zipfile silently cuts filename at a NUL byte.
    name = info.orig_filename
    utf8 = bool(info.flag_bits & _UTF8_FLAG)
    raw = name.encode("utf-8" if utf8 else "cp437")  # zipfile decoded unflagged names as cp437
    unicode_path = _unicode_path_extra(info.extra, raw)
    if unicode_path is not None:
        return unicode_path
    if utf8:
        return name
    for codec in _LEGACY_CODECS:
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            continue
    return name


def _unicode_path_extra(extra: bytes, raw: bytes) -> str | None:
    """The Info-ZIP Unicode Path field, only if it still describes the stored name (CRC matches)."""
    while len(extra) >= 4:
        tag, size = struct.unpack("<HH", extra[:4])
        body, extra = extra[4 : 4 + size], extra[4 + size :]
        if tag != _UNICODE_PATH_EXTRA or len(body) < 5 or body[0] != 1:
            continue
        if struct.unpack("<I", body[1:5])[0] != zlib.crc32(raw):
            return None  # another tool renamed the entry without updating the field
        try:
            return body[5:].decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None
