"""Checked samples back to a zip in Pascal VOC, COCO JSON or YOLO, laid out as Roboflow downloads are.

``voc``:  SPLIT/NAME.jpg + SPLIT/NAME.xml
``coco``: SPLIT/NAME.jpg + SPLIT/_annotations.coco.json
``yolo``: data.yaml + SPLIT/images/NAME.jpg + SPLIT/labels/NAME.txt

Each format reads back into the same boxes (within rounding: VOC and COCO keep two decimals of a
pixel, YOLO six decimals of the image side) and classes, and the split folders read back as the split.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from xml.sax.saxutils import escape

import yaml

from pipeline.data.samples import Box

WRITERS = ("voc", "coco", "yolo")
_SPLIT_FOLDERS = {"train": "train", "val": "valid", "test": "test"}


@dataclass(frozen=True)
class Entry:
    """One image to write: a file name unique in its folder, its bytes, its size and its boxes."""

    name: str
    data: bytes
    width: int
    height: int
    boxes: tuple[Box, ...]
    folder: str  # the split's folder (train, valid, test) or the dataset's name


def split_folder(split: str | None, default: str) -> str:
    return _SPLIT_FOLDERS.get(split or "", default)


def write_dataset_zip(path, entries: Iterable[Entry], fmt: str, classes: list[str]) -> dict[str, int]:
    """Write ``entries`` as ``fmt``; returns images and boxes written per folder."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r}")
    counts: dict[str, int] = {}
    coco: dict[str, dict] = {}
    ids = {name: number for number, name in enumerate(classes)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry in entries:
            counts[entry.folder] = counts.get(entry.folder, 0) + 1
            image_path = f"{entry.folder}/images/{entry.name}" if fmt == "yolo" else f"{entry.folder}/{entry.name}"
            archive.writestr(image_path, entry.data, compress_type=zipfile.ZIP_STORED)
            stem = PurePosixPath(entry.name).stem
            if fmt == "voc":
                xml = voc_xml(entry.name, entry.width, entry.height, entry.boxes)
                archive.writestr(f"{entry.folder}/{stem}.xml", xml)
            elif fmt == "yolo":
                archive.writestr(f"{entry.folder}/labels/{stem}.txt", yolo_lines(entry, ids))
            else:
                _add_coco(coco.setdefault(entry.folder, _coco_document(classes)), entry, ids)
        for folder, document in coco.items():
            archive.writestr(f"{folder}/_annotations.coco.json", json.dumps(document, ensure_ascii=False))
        if fmt == "yolo":
            archive.writestr("data.yaml", _data_yaml(classes, sorted(counts)))
    return counts


def _number(value: float, digits: int = 2) -> str:
    rounded = round(value, digits)
    return str(int(rounded)) if float(rounded).is_integer() else f"{rounded:.{digits}f}".rstrip("0")


def voc_xml(filename: str, width: int, height: int, boxes: Iterable[Box]) -> str:
    """A Pascal VOC annotation as LabelImg writes it (names escaped)."""
    parts = [
        f"<annotation><folder></folder><filename>{escape(filename)}</filename>",
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for box in boxes:
        corners = "".join(f"<{key}>{_number(getattr(box, key))}</{key}>" for key in ("xmin", "ymin", "xmax", "ymax"))
        parts.append(
            f"<object><name>{escape(box.label)}</name><pose>Unspecified</pose><truncated>{int(box.truncated)}"
            f"</truncated><difficult>{int(box.difficult)}</difficult><bndbox>{corners}</bndbox></object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts)


def yolo_lines(entry: Entry, ids: dict[str, int]) -> str:
    lines = []
    for box in entry.boxes:
        x = (box.xmin + box.xmax) / 2 / entry.width
        y = (box.ymin + box.ymax) / 2 / entry.height
        w, h = (box.xmax - box.xmin) / entry.width, (box.ymax - box.ymin) / entry.height
        lines.append(f"{ids[box.label]} {x:.6f} {y:.6f} {w:.6f} {h:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def _data_yaml(classes: list[str], folders: list[str]) -> str:
    document = {f: f"../{f}/images" for f in folders if f in ("train", "test")}
    if "valid" in folders:
        document["val"] = "../valid/images"
    document |= {"nc": len(classes), "names": list(classes)}
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


def _coco_document(classes: list[str]) -> dict:
    return {
        "info": {"description": "exported by detbot"},
        "images": [],
        "annotations": [],
        "categories": [{"id": number, "name": name, "supercategory": "none"} for number, name in enumerate(classes)],
    }


def _add_coco(document: dict, entry: Entry, ids: dict[str, int]) -> None:
    image_id = len(document["images"])
    document["images"].append({"id": image_id, "file_name": entry.name, "width": entry.width, "height": entry.height})
    for box in entry.boxes:
        bbox = [round(box.xmin, 2), round(box.ymin, 2), round(box.xmax - box.xmin, 2), round(box.ymax - box.ymin, 2)]
        document["annotations"].append(
            {
                "id": len(document["annotations"]),
                "image_id": image_id,
                "category_id": ids[box.label],
                "bbox": bbox,
                "area": round(bbox[2] * bbox[3], 2),
                "segmentation": [],
                "iscrowd": 0,
            }
        )
