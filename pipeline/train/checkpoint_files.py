"""A pretrained checkpoint's files on disk: a tar archive unpacked safely, the checkpoint found in it,
its data shards checked complete. No network and no TensorFlow here: pipeline.train.weights fetches the files.
"""

from __future__ import annotations

import gzip
import re
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from pipeline.errors import WeightsError

CHUNK = 2**20
SCRATCH = "train from scratch with the --no-pretrained option"  # the way out every error offers
SHARD = re.compile(r"\.data-(\d{5})-of-(\d{5})")  # what follows the prefix
_CKPT_INDEX = re.compile(r"(?:model\.)?ckpt-(\d+)\.index")
_UNSAFE_NAME = re.compile(r"^/|^[A-Za-z]:|\\")


def extract(archive: Path, folder: Path, display: str) -> None:
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                _extract_member(tar, member, staging, display)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise WeightsError(
            f"The pretrained weights archive from {display} cannot be unpacked "
            f"({error.__class__.__name__}: {error}); it is damaged or not a tar archive. "
            f"Try again, or {SCRATCH}."
        ) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, display: str) -> None:
    parts = [p for p in PurePosixPath(member.name).parts if p != "."]
    problem = (
        "a path outside its folder"
        if _UNSAFE_NAME.search(member.name) or ".." in parts
        else None
        if member.isfile() or member.isdir()
        else "a link or special file"
    )
    if problem:
        raise WeightsError(
            f"The pretrained weights archive from {display} contains {problem} "
            f"({member.name[:200]!r}); for safety nothing was extracted. Use the official "
            f"archive, or unpack it yourself and give the checkpoint prefix, or {SCRATCH}."
        )
    target = root.joinpath(*parts)
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tar.extractfile(member) as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK)


def locate(folder: Path, display: str) -> Path:
    indexes = sorted(folder.rglob("*.index"))
    numbered = [(int(m.group(1)), -len(p.parts), p) for p in indexes if (m := _CKPT_INDEX.fullmatch(p.name))]
    if numbered:
        index = max(numbered)[2]  # the latest step; at equal steps the shallowest
    elif len(indexes) == 1:
        index = indexes[0]
    else:
        found = ", ".join(p.relative_to(folder).as_posix() for p in indexes[:5]) or "no .index file"
        raise WeightsError(
            f"The pretrained weights archive from {display} holds no checkpoint named "
            f"ckpt-N.index (found: {found}). Check the address, or {SCRATCH}."
        )
    prefix = index.with_name(index.name[:-6])
    check_shards(prefix, display)
    return prefix


def check_shards(prefix: Path, display: str) -> None:
    found = {
        tuple(map(int, m.groups()))
        for p in prefix.parent.iterdir()
        if p.name.startswith(prefix.name) and (m := SHARD.fullmatch(p.name[len(prefix.name) :]))
    }
    counts = {count for _, count in found}
    if len(counts) == 1 and {shard for shard, _ in found} == set(range(counts.pop())):
        return
    raise WeightsError(
        f"The checkpoint {prefix.name} from {display} is incomplete: its data files "
        f"({prefix.name}.data-NNNNN-of-NNNNN) are missing or mixed. Fetch it again, "
        f"or {SCRATCH}."
    )
