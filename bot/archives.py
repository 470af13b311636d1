"""Archives that are not zips, named from the file name or the first bytes, so the user hears what
they sent ("that is a RAR archive") instead of only that it is not a zip."""

from __future__ import annotations

from pathlib import Path

_SUFFIXES = ((".tar.gz", "gzip"), (".tgz", "gzip"), (".gz", "gzip"), (".tar", "tar"), (".rar", "rar"), (".7z", "7z"))
_MAGIC = ((b"Rar!\x1a\x07", "rar"), (b"7z\xbc\xaf\x27\x1c", "7z"), (b"\x1f\x8b", "gzip"))
_TAR_MAGIC_AT = 257  # POSIX and GNU tar headers carry "ustar" there


def kind_by_name(name: str) -> str | None:
    lowered = name.lower()
    return next((kind for suffix, kind in _SUFFIXES if lowered.endswith(suffix)), None)


def kind_by_bytes(path: Path) -> str | None:
    """The archive kind of a file that may be named .zip but is not one; reads 262 bytes."""
    with path.open("rb") as stream:
        head = stream.read(_TAR_MAGIC_AT + 5)
    if head[_TAR_MAGIC_AT:] == b"ustar":
        return "tar"
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)
