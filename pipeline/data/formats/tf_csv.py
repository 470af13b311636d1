"""The CSV of the TF Object Detection API tutorials (``xml_to_csv.py``) and Roboflow's "TensorFlow CSV".

``filename,width,height,class,xmin,ymin,xmax,ymax``: one row per box, pixels, any column
order. A CSV without those columns is not an annotation file and is left alone.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path, PurePosixPath

from pipeline.data.formats.untrusted import UnreadableFile, check_size, decode_text, number, positive_int
from pipeline.data.pairing import Claim, ImageIndex, Layout, split_of_file
from pipeline.data.reports import Problem
from pipeline.data.voc import MAX_OBJECTS, VocAnnotation, VocObject

MAX_CSV_BYTES = 64 * 2**20
COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")
_REQUIRED = {"filename", "class", "xmin", "ymin", "xmax", "ymax"}


def csv_claims(source: Path, layout: Layout, index: ImageIndex, problems: list[Problem]) -> list[Claim]:
    claims = []
    for name in layout.others:
        if name.lower().endswith(".csv"):
            claims += _file_claims(source / name, name, index, problems)
    return claims


def _file_claims(path: Path, name: str, index: ImageIndex, problems: list[Problem]) -> list[Claim]:
    try:
        rows = _rows(path.read_bytes())
    except UnreadableFile as exc:
        problems.append(
            Problem("bad_annotation", name, f"{name} {exc}", "ignored; fix or re-export the CSV", {"reason": str(exc)})
        )
        return []
    if rows is None:
        return []
    by_file: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_file[(row.get("filename") or "").strip()].append(row)
    claims, split = [], split_of_file(name)
    for file_name, group in sorted(by_file.items()):
        image = index.resolve(file_name, near=name) if file_name else None
        if image is None:
            problems.append(
                Problem(
                    "annotation_without_image",
                    f"{name}#{file_name}",
                    f"{name} has {len(group)} row(s) for {file_name or 'no file name'}, which is not in the zip",
                    "left out; add the image or remove its rows",
                )
            )
            continue
        where = f"{name}#{PurePosixPath(image).name}"
        annotation = VocAnnotation(
            filename=file_name,
            width=positive_int(group[0].get("width")),
            height=positive_int(group[0].get("height")),
            objects=tuple(_object(row) for row in group[:MAX_OBJECTS]),
        )
        claims.append(Claim(image, where, annotation, split))
    return claims


def _rows(data: bytes) -> list[dict] | None:
    """The rows with lower-cased column names; None when the header is not this format's."""
    check_size(data, MAX_CSV_BYTES, "CSV file")
    try:
        reader = csv.DictReader(io.StringIO(decode_text(data)))
        if not reader.fieldnames or not _REQUIRED <= {f.strip().lower() for f in reader.fieldnames if f}:
            return None
        return [{(k or "").strip().lower(): v for k, v in row.items()} for row in reader]
    except csv.Error as exc:
        raise UnreadableFile(f"is not a readable CSV ({exc})") from None


def _object(row: dict) -> VocObject:
    label = (row.get("class") or "").strip() or None
    if label is None:
        return VocObject(None, None, False, False, "has no class")
    try:
        box = tuple(number(row.get(key)) for key in ("xmin", "ymin", "xmax", "ymax"))
    except ValueError as exc:
        return VocObject(label, None, False, False, f"has an unusable coordinate ({exc})")
    return VocObject(label, box, False, False)
