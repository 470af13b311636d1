"""The cleaned dataset of a workspace as a zip in VOC, COCO or YOLO (``python -m pipeline export-data``).

Cleaned: only the images that go into the records, with the label edits applied (renamed,
merged, dropped classes), boxes as checked (clipped, rescaled), pixels turned upright and
converted to RGB where the records needed it, and the split as folders (train, valid, test).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from pipeline.data.formats.writers import Entry, split_folder, write_dataset_zip
from pipeline.data.images import record_image_bytes
from pipeline.data.label_plan import load_plan
from pipeline.data.samples import Sample
from pipeline.data.workspace import Workspace
from pipeline.files import replacing

UNSPLIT_FOLDER = "dataset"


def export_dataset(ws: Workspace, fmt: str, out: Path) -> dict:
    """Write the zip (``fmt``: one of ``writers.WRITERS``); returns what was written (the JSON of ``export-data``)."""
    samples = ws.load_samples()
    plan = load_plan(ws, samples)
    assignment = (
        {int(k): v for k, v in ws.read_json(ws.split, "split")["assignment"].items()} if ws.split.exists() else {}
    )
    relabelled = [plan.relabel(sample) for sample in samples]
    splits = {sample.id: assignment.get(sample.id, sample.folder_split) for sample in samples}
    classes = [item.name for item in plan.label_map.items]
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as tmp:
        folders = write_dataset_zip(tmp, _entries(ws.source, relabelled, splits), fmt, classes)
    return {
        "format": fmt,
        "images": len(relabelled),
        "boxes": sum(len(sample.boxes) for sample in relabelled),
        "classes": classes,
        "folders": folders,
        "outputs": {"dataset": str(out)},
    }


def _entries(source: Path, samples: list[Sample], splits: dict[int, str | None]) -> Iterator[Entry]:
    used: set[str] = set()
    for sample in samples:
        folder = split_folder(splits[sample.id], UNSPLIT_FOLDER)
        data, name = _image(source, sample)
        if f"{folder}/{PurePosixPath(name).stem.casefold()}" in used:  # flattened folders may repeat a name
            name = f"{sample.id}_{name}"
        used.add(f"{folder}/{PurePosixPath(name).stem.casefold()}")
        yield Entry(name, data, sample.width, sample.height, sample.boxes, folder)


def _image(source: Path, sample: Sample) -> tuple[bytes, str]:
    """The file as sent, unless its pixels had to change (EXIF rotation, colour mode): then the record's JPEG."""
    name = PurePosixPath(sample.image).name
    if sample.transform.orientation == 1 and sample.transform.convert_from is None:
        return (source / sample.image).read_bytes(), name
    return record_image_bytes(source / sample.image, sample.transform), str(PurePosixPath(name).with_suffix(".jpg"))
