"""COCO JSON, YOLO, LabelMe and TF CSV zips read into the same samples as Pascal VOC, each layout variant."""

from __future__ import annotations

import base64
import json

import pytest

from pipeline.data.dataset_health import inspect_files
from pipeline.errors import DatasetRejected
from tests.builders import image_bytes, pair

JPEG = image_bytes((200, 100))


def jpeg(shade: int) -> bytes:
    """A 200x100 JPEG of its own (identical images would add a duplicate_image problem)."""
    return image_bytes((200, 100), color=(shade, 30, 30))


def check(tmp_path, entries: dict[str, bytes]):
    root = tmp_path / "src"
    for name, data in entries.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    samples, report = inspect_files(root, tuple(entries), workers=1)
    return {s.image: s for s in samples}, report


def corners(sample) -> list[tuple]:
    return [(b.label, round(b.xmin, 3), round(b.ymin, 3), round(b.xmax, 3), round(b.ymax, 3)) for b in sample.boxes]


def kinds(report) -> dict[str, list]:
    found: dict[str, list] = {}
    for problem in report.problems:
        found.setdefault(problem.kind, []).append(problem)
    return found


def coco(images: list[dict], annotations: list[dict], categories=({"id": 1, "name": "cat"},)) -> bytes:
    return json.dumps({"images": images, "annotations": annotations, "categories": list(categories)}).encode()


# --- COCO JSON ---------------------------------------------------------------------------------------------------


def test_roboflow_coco_per_split_folder(tmp_path):
    entries = {
        "train/a.jpg": JPEG,
        "train/_annotations.coco.json": coco(
            [{"id": 0, "file_name": "a.jpg", "width": 200, "height": 100}],
            [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 20, 30, 40], "iscrowd": 0}],
        ),
        "valid/a.jpg": jpeg(90),
        "valid/_annotations.coco.json": coco(
            [{"id": 0, "file_name": "a.jpg", "width": 200, "height": 100}],
            [{"id": 1, "image_id": 0, "category_id": 2, "bbox": [0, 0, 50, 50]}],
            [{"id": 0, "name": "animals"}, {"id": 2, "name": "dog"}],
        ),
        "README.roboflow.txt": b"Exported from roboflow.com",
    }
    samples, report = check(tmp_path, entries)
    assert report.format == "coco" and report.problems == ()
    assert corners(samples["train/a.jpg"]) == [("cat", 10, 20, 40, 60)]
    assert corners(samples["valid/a.jpg"]) == [("dog", 0, 0, 50, 50)]
    assert samples["train/a.jpg"].folder_split == "train" and samples["valid/a.jpg"].folder_split == "val"
    assert samples["train/a.jpg"].annotation == "train/_annotations.coco.json#a.jpg"


def test_coco_2017_layout_file_names_with_folders_and_the_split_in_the_file_name(tmp_path):
    entries = {
        "images/x/1.jpg": JPEG,
        "images/2.jpg": jpeg(90),
        "annotations/instances_val2017.json": coco(
            [
                {"id": "1", "file_name": "x/1.jpg", "width": "200", "height": "100"},  # numbers as strings
                {"id": 2, "file_name": "C:\\Users\\me\\data\\2.jpg", "width": 200, "height": 100},
            ],
            [
                {"image_id": 1, "category_id": "1", "bbox": ["5", "6", "10.5", "20"]},
                {"image_id": "2", "category_id": 1, "bbox": [1, 1, 2, 2]},
            ],
        ),
    }
    samples, report = check(tmp_path, entries)
    assert report.problems == ()
    assert corners(samples["images/x/1.jpg"]) == [("cat", 5, 6, 15.5, 26)]
    assert corners(samples["images/2.jpg"]) == [("cat", 1, 1, 3, 3)]
    assert {s.folder_split for s in samples.values()} == {"val"}


def test_cvat_coco_polygons_crowds_negatives_and_orphans(tmp_path):
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
        {"id": 2, "file_name": "empty.jpg", "width": 200, "height": 100},
        {"id": 3, "file_name": "gone.jpg", "width": 200, "height": 100},
    ]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[10, 10, 50, 12, 30, 40]], "bbox": []},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "iscrowd": 1},
        {"id": 3, "image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]},
        {"id": 4, "image_id": 1, "category_id": 1, "segmentation": {"counts": "abc", "size": [100, 200]}},
        {"id": 5, "image_id": 77, "category_id": 1, "bbox": [1, 1, 5, 5]},
    ]
    entries = {
        "images/a.jpg": JPEG,
        "images/empty.jpg": JPEG,
        "images/lonely.jpg": JPEG,
        "annotations/instances_default.json": coco(images, annotations),
    }
    samples, report = check(tmp_path, entries)
    assert corners(samples["images/a.jpg"]) == [("cat", 10, 10, 50, 40)]
    assert samples["images/empty.jpg"].boxes == ()  # listed with no objects: a negative
    found = kinds(report)
    (crowd,) = found["crowd_box"]
    assert crowd.file == "annotations/instances_default.json#a.jpg" and "1 object" in crowd.detail
    dropped = sorted(p.detail for p in found["box_dropped"])
    assert any("category_id 9" in d for d in dropped) and any("RLE" in d for d in dropped)
    orphans = sorted(p.detail for p in found["annotation_without_image"])
    assert any("gone.jpg, which is not in the zip" in d for d in orphans) and any("image id(s)" in d for d in orphans)
    (lonely,) = found["image_without_annotation"]
    assert lonely.file == "images/lonely.jpg" and "COCO" in lonely.detail


@pytest.mark.parametrize(
    "payload, needle",
    [
        (b'{"images": [], "annotations": [{"bbox": [NaN, 1, 2, 3]}]}', "NaN"),
        (b'{"images": [], "annotations": [], "x": Infinity}', "Infinity"),
        (b"[" * 5000 + b"]" * 5000, "nests"),
        (b'{"images": [', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "neither UTF-8 nor cp949"),
    ],
)
def test_hostile_json_is_a_bad_annotation_named_in_the_refusal(tmp_path, payload, needle):
    with pytest.raises(DatasetRejected) as caught:
        check(tmp_path, {"a.jpg": JPEG, "_annotations.coco.json": payload})
    assert caught.value.kind == "no_annotations" and needle in str(caught.value)


def test_json_size_cap_and_a_bom(tmp_path, monkeypatch):
    document = coco(
        [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100}],
        [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}],
    )
    samples, _ = check(tmp_path / "bom", {"a.jpg": JPEG, "x.json": b"\xef\xbb\xbf" + document})
    assert corners(samples["a.jpg"]) == [("cat", 1, 2, 4, 6)]
    monkeypatch.setattr("pipeline.data.formats.detect.MAX_JSON_BYTES", 100)
    with pytest.raises(DatasetRejected, match="more than the"):
        check(tmp_path / "big", {"a.jpg": JPEG, "x.json": document})


# --- YOLO ----------------------------------------------------------------------------------------------------------


def test_ultralytics_layout_with_a_names_list(tmp_path):
    entries = {
        "data.yaml": b"path: ../datasets/x\ntrain: images/train\nval: images/val\nnames: [cat, dog]\n",
        "images/train/a.jpg": JPEG,
        "labels/train/a.txt": b"0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.1 0.1\n",
        "images/val/b.jpg": jpeg(90),
        "labels/val/b.txt": b"",  # an empty label file: an image with no objects
    }
    samples, report = check(tmp_path, entries)
    assert report.format == "yolo" and report.problems == ()
    assert corners(samples["images/train/a.jpg"]) == [("cat", 80, 30, 120, 70), ("dog", 10, 5, 30, 15)]
    assert samples["images/val/b.jpg"].boxes == () and samples["images/val/b.jpg"].folder_split == "val"


def test_roboflow_yolo_names_as_a_dict_and_segmentation_lines(tmp_path):
    entries = {
        "data.yaml": b"names:\n  0: cat\n  1: dog\nnc: 2\n",
        "README.dataset.txt": b"some words",
        "train/images/a.jpg": JPEG,
        "train/labels/a.txt": b"1 0.1 0.2 0.5 0.2 0.3 0.8\r\n",
    }
    samples, report = check(tmp_path, entries)
    assert report.problems == ()
    assert corners(samples["train/images/a.jpg"]) == [("dog", 20, 20, 100, 80)]


def test_darknet_layout_with_cp949_names_bom_and_crlf(tmp_path):
    entries = {
        "obj.names": "고양이\r\n개\r\n".encode("cp949"),
        "obj.data": b"classes = 2\ntrain = data/train.txt\nnames = data/obj.names\n",
        "train.txt": b"data/obj_train_data/a.jpg\n",
        "obj_train_data/a.jpg": JPEG,
        "obj_train_data/a.txt": b"\xef\xbb\xbf1 0.5 0.5 0.5 0.5\r\n",
    }
    samples, report = check(tmp_path, entries)
    assert report.format == "yolo" and report.problems == ()
    assert corners(samples["obj_train_data/a.jpg"]) == [("개", 50, 25, 150, 75)]


def test_classes_txt_out_of_range_indices_and_bad_lines(tmp_path):
    entries = {
        "classes.txt": b"cat\n",
        "a.jpg": JPEG,
        "a.txt": b"0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n0 nan 0.5 0.2 0.2\n0 0.5 0.5\n"
        b"cat 0.5 0.5 0.1 0.1\n0 1e999 0 1 1\n",
    }
    samples, report = check(tmp_path, entries)
    assert corners(samples["a.jpg"]) == [("cat", 80, 40, 120, 60)]
    found = kinds(report)
    (out_of_range,) = found["class_index_out_of_range"]
    assert out_of_range.file == "a.txt" and "line 2" in out_of_range.detail and "class 3" in out_of_range.detail
    assert len(found["box_dropped"]) == 4


def test_labels_without_names_are_numbered_and_reported(tmp_path):
    samples, report = check(tmp_path, {"images/a.jpg": JPEG, "labels/a.txt": b"2 0.5 0.5 0.5 0.5\n"})
    assert corners(samples["images/a.jpg"]) == [("2", 50, 25, 150, 75)]
    assert [p.kind for p in report.problems] == ["class_names_missing"]


def test_hostile_yaml_is_never_run_and_a_huge_one_is_refused(tmp_path):
    entries = {
        "data.yaml": b"names: !!python/object/apply:os.system ['touch /tmp/pwned-detbot']\n",
        "big.yaml": b"names: [" + b"a, " * 400_000 + b"b]\n",
        "a.jpg": JPEG,
        "a.txt": b"0 0.5 0.5 0.5 0.5\n",
    }
    samples, report = check(tmp_path, entries)
    bad = {p.file: p.detail for p in report.problems if p.kind == "bad_annotation"}
    assert "not valid YAML" in bad["data.yaml"] and "MiB" in bad["big.yaml"]
    assert corners(samples["a.jpg"]) == [("0", 50, 25, 150, 75)]


# --- LabelMe, TF CSV --------------------------------------------------------------------------------------------


def labelme(shapes, image_path, image_data=None) -> bytes:
    document = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path}
    document |= {"imageData": image_data, "imageHeight": 100, "imageWidth": 200}
    return json.dumps(document).encode()


def test_labelme_rectangles_polygons_circles_and_a_referenced_image(tmp_path):
    shapes = [
        {"label": "cat", "points": [[50, 60], [10, 20]], "shape_type": "rectangle"},
        {"label": "dog", "points": [[5, 5], [25, 8], [15, 30]], "shape_type": "polygon"},
        {"label": "ball", "points": [[100, 50], [110, 50]], "shape_type": "circle"},
        {"label": "edge", "points": [[1, 1], [9, 9]], "shape_type": "line"},
    ]
    entries = {"images/a.jpg": JPEG, "json/a_labels.json": labelme(shapes, "..\\images\\a.jpg")}
    samples, report = check(tmp_path, entries)
    assert report.format == "labelme"
    assert corners(samples["images/a.jpg"]) == [
        ("cat", 10, 20, 50, 60),
        ("dog", 5, 5, 25, 30),
        ("ball", 90, 40, 110, 60),
    ]
    (dropped,) = kinds(report)["box_dropped"]
    assert "line" in dropped.detail


def test_labelme_with_only_the_embedded_image(tmp_path):
    shapes = [{"label": "cat", "points": [[10, 20], [50, 60]], "shape_type": "rectangle"}]
    entries = {"a.json": labelme(shapes, "C:/photos/a.jpg", base64.b64encode(JPEG).decode()), "b.jpg": JPEG}
    entries["b.json"] = labelme(shapes, "b.jpg")
    samples, report = check(tmp_path, entries)
    assert set(samples) == {"a.jpg", "b.jpg"} and report.images == 2
    assert corners(samples["a.jpg"]) == [("cat", 10, 20, 50, 60)]
    assert (tmp_path / "src" / "a.jpg").read_bytes() == JPEG


def test_tf_csv_any_column_order_split_from_the_file_name(tmp_path):
    entries = {
        "images/a.jpg": JPEG,
        "images/b.jpg": JPEG,
        "train_labels.csv": b"filename,width,height,class,xmin,ymin,xmax,ymax\r\na.jpg,200,100,cat,1,2,30,40\r\n"
        b"a.jpg,200,100,dog,5,5,9,9\r\nmissing.jpg,200,100,cat,1,1,5,5\r\n",
        "test_labels.csv": "class,xmin,ymin,xmax,ymax,filename\n고양이,3,4,50,60,b.jpg\n".encode("cp949"),
    }
    samples, report = check(tmp_path, entries)
    assert report.format == "csv"
    assert corners(samples["images/a.jpg"]) == [("cat", 1, 2, 30, 40), ("dog", 5, 5, 9, 9)]
    assert corners(samples["images/b.jpg"]) == [("고양이", 3, 4, 50, 60)]
    assert samples["images/a.jpg"].folder_split == "train" and samples["images/b.jpg"].folder_split == "test"
    (orphan,) = kinds(report)["annotation_without_image"]
    assert "missing.jpg" in orphan.detail


# --- one format per zip --------------------------------------------------------------------------------------------


def test_two_formats_for_the_same_images_are_refused_by_name(tmp_path):
    entries = pair("a", size=(200, 100)) | {"classes.txt": b"cat\n", "a.txt": b"0 0.5 0.5 0.1 0.1\n"}
    with pytest.raises(DatasetRejected) as caught:
        check(tmp_path, entries)
    message = str(caught.value)
    assert caught.value.kind == "mixed_formats" and caught.value.details == {"formats": ["voc", "yolo"]}
    assert "Pascal VOC and YOLO" in message and "a.xml and a.txt" in message
    assert "remove the .xml files or the .txt label files" in message


def test_images_without_any_annotations_name_the_formats_and_the_tools(tmp_path):
    with pytest.raises(DatasetRejected) as caught:
        check(tmp_path, {"a.jpg": JPEG, "b.png": image_bytes(fmt="PNG"), "notes.txt": b"hello"})
    message = str(caught.value)
    assert caught.value.kind == "no_annotations" and "2 images" in message
    for word in ("Pascal VOC", "COCO", "YOLO", "LabelMe", "CSV", "Roboflow", "CVAT", "Label Studio"):
        assert word in message


def test_a_voc_zip_with_text_and_yaml_files_stays_voc(tmp_path):
    entries = pair("a") | {"classes.txt": b"cat\n", "README.txt": b"hi", "data.yaml": b"names: [cat]\n"}
    samples, report = check(tmp_path, entries)
    assert report.format == "voc" and report.problems == () and set(samples) == {"a.jpg"}


def test_a_coco_json_of_many_absent_images_makes_a_short_report(tmp_path):
    listed = [{"id": n, "file_name": f"gone{n}.jpg", "width": 200, "height": 100} for n in range(80)]
    listed.append({"id": 99, "file_name": "a.jpg", "width": 200, "height": 100})
    samples, report = check(tmp_path, {"a.jpg": JPEG, "instances_train.json": coco(listed, [])})
    orphans = kinds(report)["annotation_without_image"]
    assert set(samples) == {"a.jpg"} and len(orphans) == 51 and "30 more images" in orphans[-1].detail


def test_labelme_embedding_something_that_is_not_an_image_names_no_image(tmp_path):
    shapes = [{"label": "cat", "points": [[10, 20], [50, 60]], "shape_type": "rectangle"}]
    entries = {"b.jpg": JPEG, "b.json": labelme(shapes, "b.jpg")}
    entries["a.json"] = labelme(shapes, "a.jpg", base64.b64encode(b"#!/bin/sh\nrm -rf /\n").decode())
    samples, report = check(tmp_path, entries)
    assert set(samples) == {"b.jpg"} and not (tmp_path / "src" / "a.jpg").exists()
    (orphan,) = kinds(report)["annotation_without_image"]
    assert orphan.file == "a.json"


def test_hostile_csv_rows_and_fields(tmp_path):
    rows = b"filename,width,height,class,xmin,ymin,xmax,ymax\n"
    rows += b"a.jpg,200,100,cat,nan,1,5,5\na.jpg,200,100,cat,1,1,inf,5\na.jpg,200,100,,1,1,5,5\n"
    rows += b"a.jpg,200,100,dog,1,2,30,40\n"
    samples, report = check(tmp_path / "rows", {"a.jpg": JPEG, "labels.csv": rows})
    assert corners(samples["a.jpg"]) == [("dog", 1, 2, 30, 40)] and len(kinds(report)["box_dropped"]) == 3
    huge = b"filename,class,xmin,ymin,xmax,ymax\na.jpg,cat,1,1,5,5\nb.jpg," + b"x" * 200_000 + b",1,1,5,5\n"
    with pytest.raises(DatasetRejected) as caught:
        check(tmp_path / "huge", {"a.jpg": JPEG, "labels.csv": huge})
    assert caught.value.kind == "no_annotations" and "not a readable CSV" in str(caught.value)
