"""What a model archive holds, and smaller archives cut from it for an upload limit it does not fit.

A subset copies files of the checked archive as they are: no re-export, no re-training, and no new
check beyond reading each file back (their AP50 was measured before the archive was written).
``tflite`` keeps the TFLite models that fit, smallest first (int8, float16, float32); ``saved_model``
keeps the SavedModel with its config. Both keep the label map, the README and metrics.json.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ExportError
from pipeline.export.predict import LABEL_MAP, SAVED_MODEL
from pipeline.files import replacing

SHARED = (LABEL_MAP, "README.md", "metrics.json")
KINDS = ("tflite", "saved_model")
# Per entry: a local header (30 bytes) and a central directory record (46), each with the name; then the end record.
ENTRY_OVERHEAD, END_RECORD = 76, 22


@dataclass(frozen=True)
class Artefact:
    name: str  # "saved_model", "float32", "float16", "int8" or "checkpoint"
    file: str  # in the archive
    bytes: int


@dataclass(frozen=True)
class Contents:
    artefacts: tuple[Artefact, ...]  # the models kept in the archive, as metrics.json lists them
    files: tuple[str, ...]  # every file in the archive
    checkpoint_step: int | None

    def has(self, name: str) -> bool:
        return name in self.files


@dataclass(frozen=True)
class Subset:
    kind: str  # one of KINDS
    entries: tuple[str, ...]
    bytes: int  # the zip's size, estimated from the entries' compressed sizes
    artefacts: tuple[str, ...]  # the models in it (Artefact.name)


def contents(archive: Path) -> Contents:
    """What ``archive`` holds, from its metrics.json (written by ``archive.export_job``) and its file list."""
    with zipfile.ZipFile(archive) as zf:
        metrics = json.loads(zf.read("metrics.json"))
        files = tuple(zf.namelist())
    kept = tuple(Artefact(a["name"], a["file"], a["bytes"]) for a in metrics["artefacts"] if a["kept"])
    return Contents(kept, files, (metrics.get("checkpoint") or {}).get("step"))


def subsets(archive: Path, limit: int) -> dict[str, Subset]:
    """The subsets of ``archive`` that fit ``limit`` bytes and hold at least one model, by kind."""
    with zipfile.ZipFile(archive) as zf:
        infos = {info.filename: info for info in zf.infolist()}
    held = contents(archive)
    shared = [name for name in SHARED if name in infos]
    found = {}
    saved = [name for name in infos if name.startswith(f"{SAVED_MODEL}/")]
    if saved:
        entries = [*saved, *shared, *(["params.yaml"] if "params.yaml" in infos else [])]
        found["saved_model"] = Subset("saved_model", tuple(entries), _size(infos, entries), ("saved_model",))
    lite = sorted((a for a in held.artefacts if a.file.endswith(".tflite")), key=lambda a: a.bytes)
    chosen: list[Artefact] = []
    for artefact in lite:
        if _size(infos, [*shared, *(a.file for a in chosen), artefact.file]) <= limit:
            chosen.append(artefact)
    if chosen:
        entries = [*(a.file for a in chosen), *shared]
        found["tflite"] = Subset("tflite", tuple(entries), _size(infos, entries), tuple(a.name for a in chosen))
    return {kind: subset for kind, subset in found.items() if subset.bytes <= limit}


def write_subset(archive: Path, kind: str, limit: int, out: Path) -> Subset:
    """The ``kind`` subset of ``archive`` at ``out``; ExportError if there is none that fits ``limit``."""
    subset = subsets(archive, limit).get(kind)
    if subset is None:
        raise ExportError(f"no {kind} subset of {archive.name} fits {limit} bytes", kind="too_big")
    with zipfile.ZipFile(archive) as source, replacing(out) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in subset.entries:
                zf.writestr(source.getinfo(name), source.read(name))  # read() checks each file's CRC
    if out.stat().st_size > limit:  # the estimate is exact up to zip64 extras, which a file this small has none of
        out.unlink()
        raise ExportError(f"the {kind} subset of {archive.name} came out above {limit} bytes", kind="too_big")
    return subset


def _size(infos: dict[str, zipfile.ZipInfo], entries: list[str]) -> int:
    return END_RECORD + sum(infos[name].compress_size + ENTRY_OVERHEAD + 2 * len(name.encode()) for name in entries)
