"""One entry of an uploaded zip, vetted before a byte of it is written, and the refusal every check raises.

A name is normalised and confined to the dataset folder; encryption, links, exotic compression
and oversized files are refused by what the entry's header says. pipeline.data.ingest counts
what an entry really produces as it unpacks it.
"""

from __future__ import annotations

import re
import stat
import zipfile
from dataclasses import dataclass

from pipeline.data.zip_directory import decode_name
from pipeline.errors import DatasetRejected

_MAX_PATH_BYTES = 1024  # whole relative path; the OS refuses ~4096 with the destination in front
_ENCRYPTED_FLAG = 0x1
_JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
_DRIVE = re.compile(r"^[A-Za-z]:")
SAFE_FIX = (
    "For safety nothing was extracted. Zip the dataset folder itself (e.g. right-click it > "
    "Compress) so that every path stays inside it, and send the new zip."
)
REZIP_FIX = "It was probably damaged during upload or copying: create the zip again and send it again."


@dataclass(frozen=True)
class Entry:
    info: zipfile.ZipInfo
    shown: str  # decoded name, as the sender's zip tool shows it
    path: str  # normalised, relative to the root of its own zip
    is_dir: bool
    junk: bool


def inspect(info: zipfile.ZipInfo, max_entry_bytes: int, where: tuple[str, ...]) -> Entry:
    shown = decode_name(info)
    here = (*where, shown)
    path = _normalise(shown, here)
    is_dir = shown.replace("\\", "/").endswith("/")
    if info.flag_bits & _ENCRYPTED_FLAG:
        raise refuse(
            "encrypted",
            here,
            "is password-protected, so it cannot be read.",
            "Re-zip the dataset without a password and send it again.",
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise refuse(
            "symlink",
            here,
            "is a symbolic link, which could point outside the dataset.",
            "Put the real files in the zip instead of links and send it again.",
        )
    if is_dir:
        return Entry(info, shown, path, True, _is_junk(path))
    if not path:
        raise refuse("unsafe_path", here, "was refused: it is a file without a name.", SAFE_FIX)
    if info.compress_type not in _METHODS:
        raise refuse(
            "unsupported_compression",
            here,
            f"uses compression method {info.compress_type} (e.g. Deflate64), which cannot be read.",
            "Re-zip the dataset with standard Deflate compression (7-Zip: Deflate, or `zip -r`) and send it again.",
            method=info.compress_type,
        )
    if info.file_size > max_entry_bytes:
        raise refuse(
            "too_large",
            here,
            f"would unpack to {human(info.file_size)}, more than the {human(max_entry_bytes)} allowed for one file.",
            "Remove or shrink that file and send the zip again.",
            limit=max_entry_bytes,
            one_file=True,
        )
    return Entry(info, shown, path, False, _is_junk(path))


def _normalise(shown: str, here: tuple[str, ...]) -> str:
    name = shown.replace("\\", "/")  # Windows zip tools store backslashes
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if "\x00" in name:
        problem = "its name contains a NUL byte, which can hide where the file really goes"
    elif name.startswith("//"):
        problem = "its path points to a network share (\\\\server\\...)"
    elif name.startswith("/"):
        problem = "its path is absolute (starts with '/') instead of relative to the dataset folder"
    elif _DRIVE.match(name):
        problem = "its path starts with a Windows drive letter (like C:)"
    elif ".." in parts:
        problem = "its path climbs out of the dataset folder with '..'"
    elif any(len(part.encode("utf-8")) > 255 for part in parts):
        problem = "a part of its name is longer than the 255 bytes a file name may have"
    elif len(name.encode("utf-8")) > _MAX_PATH_BYTES:
        problem = f"its path is longer than the {_MAX_PATH_BYTES:,} bytes a path may have here"
    else:
        return "/".join(parts)
    raise refuse("unsafe_path", here, f"was refused: {problem}.", SAFE_FIX)


def _is_junk(path: str) -> bool:
    parts = path.split("/")
    name = parts[-1]
    return "__MACOSX" in parts or name.lower() in _JUNK_NAMES or name.startswith("._")


def refuse(kind: str, where: tuple[str, ...], problem: str, fix: str, **params) -> DatasetRejected:
    """``details``: ``where`` (the zip, then the entries inside it, made printable) and ``params``."""
    place = " > ".join(printable(part) for part in where)
    details = {"where": [printable(part) for part in where]} | params
    return DatasetRejected(f"{place} {problem} {fix}", kind=kind, details=details)


def printable(text: str) -> str:
    # A hostile name may carry control characters meant to garble the chat or a log.
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode() for char in text)


def human(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
