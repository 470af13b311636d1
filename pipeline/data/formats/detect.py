"""Which annotation format a zip is in, read into one pair task per image.

Every format's files are looked for; exactly one may annotate the images. Two formats
in one zip (a Roboflow download with both VOC and COCO, LabelImg saving XML and YOLO)
are refused by name, and images with no annotation in any known format get a message
that says which formats are read and how the usual tools export them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.data.formats.coco import coco_claims, is_coco
from pipeline.data.formats.labelme import is_labelme, labelme_claim
from pipeline.data.formats.tf_csv import csv_claims
from pipeline.data.formats.untrusted import UnreadableFile, load_json
from pipeline.data.formats.yolo import yolo_claims
from pipeline.data.pairing import (
    VOC_MISSING,
    Claim,
    ImageIndex,
    Layout,
    Missing,
    PairTask,
    assign,
    classify,
    voc_claims,
)
from pipeline.data.reports import Problem
from pipeline.errors import DatasetRejected

MAX_JSON_BYTES = 128 * 2**20  # COCO for ~100,000 images; the checker's address space is 4 GiB

# Names as users know them, and the files each format is recognised by (for "remove these").
FORMATS = {
    "voc": ("Pascal VOC", "the .xml files"),
    "coco": ("COCO JSON", "the COCO .json file(s)"),
    "yolo": ("YOLO", "the .txt label files"),
    "labelme": ("LabelMe JSON", "the LabelMe .json files"),
    "csv": ("TensorFlow CSV", "the .csv file(s)"),
}
_MISSING = {
    "voc": VOC_MISSING,
    "coco": Missing("is in no COCO JSON's images list", "left out; add it to the JSON to use it"),
    "yolo": Missing("has no YOLO label file (.txt)", "left out; add an empty .txt to use it as a negative"),
    "labelme": Missing("has no LabelMe JSON", "left out; label it in LabelMe to use it"),
    "csv": Missing("has no row in the CSV", "left out; the CSV cannot hold an image without boxes"),
}
HOW_TO_EXPORT = (
    "detbot reads Pascal VOC (.xml per image), COCO JSON, YOLO (.txt per image with data.yaml or obj.names), "
    "LabelMe JSON and the TensorFlow Object Detection CSV. To get one: Roboflow: Download Dataset -> "
    "'COCO', 'YOLOv8' or 'Pascal VOC' -> 'download zip'; CVAT: Export dataset -> 'COCO 1.0', 'YOLO 1.1' or "
    "'PASCAL VOC 1.1' with 'Save images' on; Label Studio: Export -> 'COCO', 'YOLO' or 'Pascal VOC XML' "
    "(the images zipped beside the export)."
)


@dataclass(frozen=True)
class Reading:
    format: str  # a key of FORMATS
    images: tuple[str, ...]  # every image of the dataset, images embedded in annotations included
    tasks: list[PairTask]


def read_annotations(source: Path, files: tuple[str, ...], problems: list[Problem]) -> Reading:
    """The zip's one format and a task per annotated image; DatasetRejected for none or a mix."""
    layout = classify(files)
    index = ImageIndex(layout.images)
    found: dict[str, list[Claim]] = {"voc": voc_claims(source, layout, index, problems)}
    written = _read_json_files(source, layout, index, problems, found)
    found["yolo"] = yolo_claims(source, layout, index, problems)
    found["csv"] = csv_claims(source, layout, index, problems)
    present = [name for name, claims in found.items() if claims]
    images = tuple(sorted({*layout.images, *written}))
    if not present:
        raise _no_annotations(images, problems)
    if len(present) > 1:
        raise _mixed(present, found)
    name = present[0]
    return Reading(name, images, assign(images, found[name], problems, _MISSING[name]))


def _read_json_files(source: Path, layout: Layout, index: ImageIndex, problems, found) -> list[str]:
    """COCO and LabelMe claims, one JSON file at a time (LabelMe files may embed whole images)."""
    found["coco"], found["labelme"], written = [], [], []
    for name in layout.others:
        if not name.lower().endswith(".json"):
            continue
        try:
            document = load_json((source / name).read_bytes(), MAX_JSON_BYTES, "JSON annotation file")
        except UnreadableFile as exc:
            why = {"reason": str(exc)}
            problems.append(Problem("bad_annotation", name, f"{name} {exc}", "ignored; fix or re-export the JSON", why))
            continue
        if is_coco(document):
            found["coco"] += coco_claims(document, name, index, problems)
        elif is_labelme(document):
            claim, image = labelme_claim(document, name, source, index, problems)
            found["labelme"] += [claim] if claim else []
            written += [image] if image else []
    return written


def _no_annotations(images: tuple[str, ...], problems: list[Problem]) -> DatasetRejected:
    unreadable = [p for p in problems if p.kind == "bad_annotation"]
    why = f" ({unreadable[0].detail})" if unreadable else ""
    return DatasetRejected(
        f"This zip has {len(images)} images but no annotations detbot can read{why}. {HOW_TO_EXPORT}",
        kind="no_annotations",
        details={"images": len(images), "formats": list(FORMATS)},
    )


def _mixed(present: list[str], found: dict[str, list[Claim]]) -> DatasetRejected:
    first, second = present[:2]
    shared = {c.image for c in found[first]} & {c.image for c in found[second]}
    example = min(shared) if shared else None
    overlap = (
        f", for the same images (e.g. {PurePosixPath(example).name}: "
        f"{_claim_of(found[first], example)} and {_claim_of(found[second], example)})"
        if example
        else ""
    )
    (name_a, files_a), (name_b, files_b) = FORMATS[first], FORMATS[second]
    return DatasetRejected(
        f"This zip holds annotations in two formats, {name_a} and {name_b}{overlap}. detbot reads one format "
        f"per zip: remove {files_a} or {files_b} and send the zip again.",
        kind="mixed_formats",
        details={"formats": [first, second]},
    )


def _claim_of(claims: list[Claim], image: str) -> str:
    return next(c.annotation for c in claims if c.image == image)
