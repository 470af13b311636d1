"""`export-data`: the cleaned dataset back as VOC, COCO or YOLO; a round trip keeps every box and class, and
pre-split folders (train/valid/test, train2017/val2017, instances_val.json) come back as the split."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from pipeline.cli.main import main
from pipeline.data import steps
from pipeline.data.synthetic import SyntheticSpec, make_dataset_zip
from pipeline.data.workspace import Workspace
from tests.builders import image_bytes, write_zip, xml


def run(capsys, *argv) -> dict:
    assert main([*map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def shade(number: int) -> tuple[int, int, int]:
    return (40 + number * 7 % 200, 90, 160 - number * 5 % 120)


def messy_voc_zip(path: Path) -> Path:
    """20 images of cats and dogs, float corners, a box past the edge, an EXIF-rotated photo, a grayscale PNG
    and a class to drop."""
    entries = {}
    for number in range(20):
        name = f"photos/{'sub/' if number % 3 else ''}img{number:02d}"
        objects = [("cat", 10.5, 12.25, 60, 50), ("dog", 70, 5, 150 + number, 95)]
        if number % 4 == 0:
            objects.append(("junk", 1, 1, 20, 20))
        if number == 5:
            objects.append(("dog", 150, 60, 230, 130))  # past the 200x100 image: clipped
        entries[f"{name}.jpg"] = image_bytes((200, 100), color=shade(number))
        entries[f"{name}.xml"] = xml(f"img{number:02d}.jpg", (200, 100), objects)
    # EXIF orientation 6: stored 100x200, shown upright as 200x100, the view the XML was drawn on.
    entries["photos/turned.jpg"] = image_bytes((100, 200), color=(10, 200, 30), orientation=6)
    entries["photos/turned.xml"] = xml("turned.jpg", (200, 100), [("cat", 20, 10, 80, 60)])
    entries["photos/grey.png"] = image_bytes((200, 100), color=128, mode="L", fmt="PNG")
    entries["photos/grey.xml"] = xml("grey.png", (200, 100), [("dog", 5, 5, 50, 50)])
    return write_zip(path, entries)


def samples_by_stem(workspace: Path) -> dict[str, dict]:
    rows = json.loads((workspace / "index.json").read_text())["samples"]
    return {PurePosixPath(row["image"]).stem: row for row in rows}


def splits_by_stem(workspace: Path) -> dict[str, str]:
    assignment = json.loads((workspace / "split.json").read_text())["assignment"]
    return {stem: assignment[str(row["id"])] for stem, row in samples_by_stem(workspace).items()}


def test_round_trip_voc_coco_yolo_voc_keeps_every_box_class_and_split(tmp_path, capsys):
    first = tmp_path / "voc"
    run(capsys, "prepare", messy_voc_zip(tmp_path / "messy.zip"), "--out", first, "--val-ratio", "0.3")
    run(capsys, "labels", first, "--rename", "cat=feline", "--drop", "junk")
    expected = {
        stem: sorted(
            ("feline" if b["label"] == "cat" else b["label"], b["xmin"], b["ymin"], b["xmax"], b["ymax"])
            for b in row["boxes"]
            if b["label"] != "junk"
        )
        for stem, row in samples_by_stem(first).items()
    }
    split = splits_by_stem(first)
    workspace = first
    for fmt in ("coco", "yolo", "voc"):
        archive = tmp_path / f"{fmt}.zip"
        written = run(capsys, "export-data", workspace, "--format", fmt, "--out", archive)
        assert written["images"] == 22 and written["classes"] == ["dog", "feline"]
        workspace = tmp_path / f"from-{fmt}"
        summary = run(capsys, "prepare", archive, "--out", workspace, "--use-folders")
        assert summary["format"] == fmt and summary["usable_images"] == 22
        assert set(summary["classes"]) == {"dog", "feline"}
        assert {p["kind"] for p in summary["problems"]} <= {"color_converted"}, summary["problems"]
        assert splits_by_stem(workspace) == split
        got = samples_by_stem(workspace)
        assert got.keys() == expected.keys()
        for stem, boxes in expected.items():
            again = sorted((b["label"], b["xmin"], b["ymin"], b["xmax"], b["ymax"]) for b in got[stem]["boxes"])
            assert [b[0] for b in again] == [b[0] for b in boxes], stem
            assert all(a[1:] == pytest.approx(b[1:], abs=1.0) for a, b in zip(again, boxes)), (fmt, stem)
        assert (got["turned"]["width"], got["turned"]["height"]) == (200, 100)


def test_export_layouts_are_the_ones_tools_download(tmp_path, capsys):
    workspace = tmp_path / "ws"
    run(capsys, "prepare", messy_voc_zip(tmp_path / "messy.zip"), "--out", workspace)
    names = {}
    for fmt in ("voc", "coco", "yolo"):
        run(capsys, "export-data", workspace, "--format", fmt, "--out", tmp_path / f"{fmt}.zip")
        names[fmt] = set(zipfile.ZipFile(tmp_path / f"{fmt}.zip").namelist())
    folders = {n.split("/")[0] for n in names["voc"]}
    assert folders == {"train", "valid"} and any(n.endswith("/img01.xml") for n in names["voc"])
    assert {"train/_annotations.coco.json", "valid/_annotations.coco.json"} <= names["coco"]
    assert "data.yaml" in names["yolo"] and any(n.startswith("train/labels/") for n in names["yolo"])
    assert any(n.endswith("/images/turned.jpg") for n in names["yolo"])  # re-encoded upright, so a JPEG
    with pytest.raises(SystemExit):  # argparse refuses a format it does not write
        main(["export-data", str(workspace), "--format", "pascal", "--out", str(tmp_path / "x.zip")])


def coco_entry(number: int, name: str) -> tuple[dict, dict]:
    image = {"id": number, "file_name": name, "width": 64, "height": 48}
    box = {"id": number, "image_id": number, "category_id": 1, "bbox": [5, 5, 20, 20]}
    return image, box


def coco_json(names: list[str], start: int = 0) -> bytes:
    pairs = [coco_entry(start + n, name) for n, name in enumerate(names)]
    document = {"images": [p[0] for p in pairs], "annotations": [p[1] for p in pairs]}
    return json.dumps(document | {"categories": [{"id": 1, "name": "cat"}]}).encode()


def images(folder: str, count: int, first: int = 0) -> dict[str, bytes]:
    return {f"{folder}/{n:03d}.jpg": image_bytes(color=shade(n)) for n in range(first, first + count)}


@pytest.mark.parametrize(
    "entries",
    [
        # COCO 2017: train2017/ and val2017/ folders
        images("train2017", 8)
        | images("val2017", 3, 8)
        | {
            "annotations/instances_train2017.json": coco_json([f"{n:03d}.jpg" for n in range(8)]),
            "annotations/instances_val2017.json": coco_json([f"{n:03d}.jpg" for n in range(8, 11)], 100),
        },
        # one flat folder; the split is in the JSON's name
        images("images", 11)
        | {
            "instances_train.json": coco_json([f"{n:03d}.jpg" for n in range(8)]),
            "instances_val.json": coco_json([f"{n:03d}.jpg" for n in range(8, 11)], 100),
        },
        # Ultralytics: images/train, images/val
        images("images/train", 8)
        | images("images/val", 3, 8)
        | {"data.yaml": b"names: [cat]\n"}
        | {f"labels/{'train' if n < 8 else 'val'}/{n:03d}.txt": b"0 0.5 0.5 0.3 0.3\n" for n in range(11)},
    ],
    ids=["coco2017-folders", "coco-json-names", "yolo-ultralytics"],
)
def test_pre_split_folders_are_kept_as_the_split(tmp_path, entries):
    ws = Workspace(tmp_path / "ws")
    steps.inspect(write_zip(tmp_path / "d.zip", entries), ws)
    steps.split(ws, use_folders=True)
    assignment = json.loads(ws.split.read_text())["assignment"]
    by_stem = {PurePosixPath(s.image).stem: assignment[str(s.id)] for s in ws.load_samples()}
    assert by_stem == {f"{n:03d}": "train" if n < 8 else "val" for n in range(11)}


def test_generated_datasets_are_the_same_in_every_format(tmp_path):
    """The benchmark compares formats on ``make_dataset_zip``'s zips: they must hold the same dataset."""
    spec = SyntheticSpec(images=12, seed=9, size_jitter=0.2)
    seen = {}
    for fmt in ("voc", "coco", "yolo"):
        ws = Workspace(tmp_path / fmt)
        report = steps.inspect(make_dataset_zip(tmp_path / f"{fmt}.zip", spec, fmt), ws)
        assert report.format == fmt and report.problems == () and report.usable_images == 12
        seen[fmt] = {
            PurePosixPath(s.image).stem: [(b.label, round(b.xmin, 3), round(b.ymax, 3)) for b in s.boxes]
            for s in ws.load_samples()
        }
    assert seen["voc"] == seen["coco"] == seen["yolo"]
