"""kangaroo.zip (Pascal VOC) converted here into COCO JSON and YOLO gives the same dataset from `prepare --json`:
the same images, boxes, classes, split and problem reports (the truncated JPEG, the duplicate pair)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from pipeline.cli.main import main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
KANGAROO = SHARED / "kangaroo.zip"
pytestmark = pytest.mark.skipif(not KANGAROO.exists(), reason="shared datasets not present")


def voc_objects(xml: bytes) -> tuple[int, int, list[tuple]]:
    """The test's own reading of a (trusted) kangaroo XML: size and (name, xmin, ymin, xmax, ymax)."""
    root = ElementTree.fromstring(xml)
    size = int(root.findtext("size/width")), int(root.findtext("size/height"))
    objects = [
        (obj.findtext("name"), *(float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")))
        for obj in root.iter("object")
    ]
    return *size, objects


def convert(target: Path, fmt: str) -> Path:
    """kangaroo.zip with its XMLs replaced by CVAT-style COCO or Ultralytics-style YOLO labels."""
    with zipfile.ZipFile(KANGAROO) as source, zipfile.ZipFile(target, "w") as out:
        annotations = {
            PurePosixPath(n).stem: voc_objects(source.read(n)) for n in source.namelist() if n.endswith(".xml")
        }
        images = sorted(n for n in source.namelist() if n.endswith(".jpg"))
        for name in images:
            out.writestr(name, source.read(name))
        if fmt == "coco":
            out.writestr("kangaroo/annotations/instances_default.json", json.dumps(coco(images, annotations)))
        else:
            out.writestr("kangaroo/data.yaml", "names:\n  0: kangaroo\n")
            for stem, (width, height, objects) in annotations.items():
                lines = [
                    f"0 {(x0 + x1) / 2 / width:.8f} {(y0 + y1) / 2 / height:.8f} "
                    f"{(x1 - x0) / width:.8f} {(y1 - y0) / height:.8f}"
                    for _, x0, y0, x1, y1 in objects
                ]
                out.writestr(f"kangaroo/labels/{stem}.txt", "\r\n".join(lines))
    return target


def coco(images: list[str], annotations: dict) -> dict:
    document = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "kangaroo"}]}
    for number, name in enumerate(images, start=1):
        stem = PurePosixPath(name).stem
        if stem not in annotations:
            continue
        width, height, objects = annotations[stem]
        document["images"].append({"id": number, "file_name": f"{stem}.jpg", "width": width, "height": height})
        for _, x0, y0, x1, y1 in objects:
            document["annotations"].append(
                {
                    "id": len(document["annotations"]) + 1,
                    "image_id": number,
                    "category_id": 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "iscrowd": 0,
                }
            )
    return document


def prepare(capsys, archive: Path, out: Path) -> dict:
    assert main(["prepare", str(archive), "--out", str(out), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def boxes_by_image(workspace: Path) -> dict[str, list[tuple]]:
    samples = json.loads((workspace / "index.json").read_text())["samples"]
    return {
        s["image"]: sorted((b["label"], b["xmin"], b["ymin"], b["xmax"], b["ymax"]) for b in s["boxes"])
        for s in samples
    }


def test_kangaroo_as_coco_and_yolo_reads_as_the_voc_original(tmp_path, capsys):
    voc = prepare(capsys, KANGAROO, tmp_path / "voc")
    voc_boxes = boxes_by_image(tmp_path / "voc")
    assert voc["format"] == "voc" and voc["images"] == 164 and voc["usable_images"] == 163
    for fmt in ("coco", "yolo"):
        other = prepare(capsys, convert(tmp_path / f"{fmt}.zip", fmt), tmp_path / fmt)
        assert other["format"] == fmt
        for key in ("images", "labelled_images", "usable_images", "boxes", "classes", "splits", "label_map"):
            assert other[key] == voc[key], (fmt, key)
        assert other["box_sizes"] == pytest.approx(voc["box_sizes"], abs=1e-4)
        assert [(p["kind"], p["file"]) for p in other["problems"]] == [(p["kind"], p["file"]) for p in voc["problems"]]
        assert {p["kind"] for p in other["problems"]} == {"bad_image", "duplicate_image"}
        other_boxes = boxes_by_image(tmp_path / fmt)
        assert other_boxes.keys() == voc_boxes.keys()
        for image, expected in voc_boxes.items():
            got = other_boxes[image]
            assert [b[0] for b in got] == [b[0] for b in expected]
            assert all(g[1:] == pytest.approx(e[1:], abs=1e-3) for g, e in zip(got, expected)), image
