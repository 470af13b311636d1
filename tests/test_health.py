"""The health check on hostile and messy datasets: what the user is told, what is done."""

from __future__ import annotations

import json

import pytest

from pipeline.data.dataset_health import inspect_files
from tests.builders import image_bytes, pair, xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><filename>&lol3;</filename></annotation>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename><object><name>&xxe;</name></object></annotation>"""


def check(tmp_path, entries: dict[str, bytes]):
    root = tmp_path / "src"
    for name, data in entries.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    samples, report = inspect_files(root, tuple(entries), workers=1)
    return {s.image: s for s in samples}, report


def kinds(report, kind):
    return [p for p in report.problems if p.kind == kind]


def test_clean_pair_becomes_a_sample(tmp_path):
    samples, report = check(tmp_path, pair("a", objects=[("cat", 5, 6, 30, 31)]))
    assert report.problems == ()
    box = samples["a.jpg"].boxes[0]
    assert (box.label, box.xmin, box.ymin, box.xmax, box.ymax) == ("cat", 5, 6, 30, 31)
    assert samples["a.jpg"].transform.passthrough


def test_unpaired_files_are_reported_and_left_out(tmp_path):
    entries = pair("a") | {"lonely.jpg": image_bytes(), "orphan.xml": xml("gone.jpg", (64, 48))}
    samples, report = check(tmp_path, entries)
    assert set(samples) == {"a.jpg"}
    (img,) = kinds(report, "image_without_annotation")
    assert img.file == "lonely.jpg" and "negative" in img.action
    (ann,) = kinds(report, "annotation_without_image")
    assert ann.file == "orphan.xml" and "no image" in ann.detail


@pytest.mark.parametrize(
    "payload, needle",
    [
        (BILLION_LAUGHS, "DTD or entities"),
        (XXE, "DTD or entities"),
        (b"<annotation><object>", "not well-formed"),
        (b"<html><body/></html>", "not a Pascal VOC"),
        (b"<annotation>" + b"<x/>" * 1_200_000 + b"</annotation>", "MiB"),
    ],
)
def test_hostile_or_broken_xml_is_a_bad_annotation(tmp_path, payload, needle):
    samples, report = check(tmp_path, {"a.jpg": image_bytes(), "a.xml": payload})
    assert samples == {}
    (problem,) = kinds(report, "bad_annotation")
    assert problem.file == "a.xml" and needle in problem.detail
    assert "root:" not in problem.detail  # /etc/passwd never read


def test_truncated_and_fake_images_are_bad_images(tmp_path):
    good = image_bytes((120, 90))
    entries = {
        "cut.jpg": good[: len(good) // 2],
        "cut.xml": xml("cut.jpg", (120, 90), [("cat", 1, 1, 9, 9)]),
        "fake.jpg": b"this is a text file",
        "fake.xml": xml("fake.jpg", (120, 90), [("cat", 1, 1, 9, 9)]),
    }
    samples, report = check(tmp_path, entries)
    assert samples == {}
    details = {p.file: p.detail for p in kinds(report, "bad_image")}
    assert "truncated" in details["cut.jpg"]
    assert "not an image" in details["fake.jpg"]


def test_png_named_jpg_is_reencoded(tmp_path):
    entries = {"a.jpg": image_bytes(fmt="PNG"), "a.xml": xml("a.jpg", (64, 48), [("cat", 1, 1, 9, 9)])}
    samples, report = check(tmp_path, entries)
    (problem,) = kinds(report, "format_mismatch")
    assert "PNG file named like a JPEG" in problem.detail
    assert samples["a.jpg"].transform.reencode


@pytest.mark.parametrize(
    "mode, color, name",
    [
        ("L", 128, "grayscale"),
        ("P", 3, "palette"),
        ("RGBA", (1, 2, 3, 100), "RGBA"),
        ("CMYK", (1, 2, 3, 4), "CMYK"),
    ],
)
def test_colour_modes_are_converted(tmp_path, mode, color, name):
    fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"
    entries = {
        "a.png" if fmt == "PNG" else "a.jpg": image_bytes(mode=mode, color=color, fmt=fmt),
        "a.xml": xml("a", (64, 48), [("cat", 1, 1, 9, 9)]),
    }
    samples, report = check(tmp_path, entries)
    (problem,) = kinds(report, "color_converted")
    assert name in problem.detail and "RGB" in problem.action
    (sample,) = samples.values()
    assert sample.transform.convert_from == mode and sample.transform.reencode


def test_size_mismatch_rescales_same_aspect_and_keeps_other(tmp_path):
    entries = {
        "half.jpg": image_bytes((200, 100)),
        "half.xml": xml("half.jpg", (400, 200), [("cat", 40, 20, 200, 100)]),
        "odd.jpg": image_bytes((200, 100)),
        "odd.xml": xml("odd.jpg", (300, 300), [("cat", 10, 10, 50, 50)]),
    }
    samples, report = check(tmp_path, entries)
    box = samples["half.jpg"].boxes[0]
    assert (box.xmin, box.ymin, box.xmax, box.ymax) == (20, 10, 100, 50)
    actions = {p.file: p.action for p in kinds(report, "size_mismatch")}
    assert "rescaled" in actions["half.xml"] and "kept as drawn" in actions["odd.xml"]


def test_exif_rotation_follows_the_view_the_boxes_were_drawn_on(tmp_path):
    # Stored 80x40 with orientation 6 (shown upright as 40x80).
    upright = {
        "up.jpg": image_bytes((80, 40), orientation=6),
        "up.xml": xml("up.jpg", (40, 80), [("cat", 5, 50, 35, 75)]),
    }
    stored = {
        "raw.jpg": image_bytes((80, 40), orientation=6),
        "raw.xml": xml("raw.jpg", (80, 40), [("cat", 5, 5, 70, 35)]),
    }
    samples, report = check(tmp_path, upright | stored)
    assert (samples["up.jpg"].width, samples["up.jpg"].height) == (40, 80)
    assert samples["up.jpg"].transform.orientation == 6
    assert samples["raw.jpg"].transform.orientation == 1 and samples["raw.jpg"].transform.passthrough
    actions = {p.file: p.action for p in kinds(report, "exif_rotated")}
    assert "turned upright" in actions["up.jpg"] and "kept as stored" in actions["raw.jpg"]


def test_boxes_are_clipped_or_dropped(tmp_path):
    objects = [
        ("cat", -20, 5, 30, 30),
        ("cat", 10, 10, 10, 40),
        ("cat", 30, 30, 5, 40),
        ("cat", 100, 100, 140, 140),
        ("cat", 0, 0, 65, 49),
    ]  # last: 1-px VOC overflow, silent
    samples, report = check(tmp_path, pair("a", size=(64, 48), objects=objects))
    boxes = samples["a.jpg"].boxes
    assert [(b.xmin, b.xmax) for b in boxes] == [(0, 30), (0, 64)]
    (clipped,) = kinds(report, "box_clipped")
    assert "object 1" in clipped.detail and "clipped to (0, 5, 30, 30)" in clipped.action
    dropped = " | ".join(p.detail for p in kinds(report, "box_dropped"))
    assert "zero area" in dropped and "inverted" in dropped and "outside" in dropped


def test_missing_fields_float_coords_flags_and_negatives(tmp_path):
    flags = (
        "<object><name>dog</name><difficult>1</difficult><truncated>1</truncated><bndbox>"
        "<xmin>1.5</xmin><ymin>2.25</ymin><xmax>20.75</xmax><ymax>30</ymax></bndbox></object>"
        "<object><name>dog</name></object><object><bndbox><xmin>1</xmin></bndbox></object>"
    )
    entries = {
        "a.jpg": image_bytes((64, 48)),
        "a.xml": xml("a.jpg", None, extra=flags),
        "neg.jpg": image_bytes((64, 48)),
        "neg.xml": xml("neg.jpg", (64, 48)),
    }
    samples, report = check(tmp_path, entries)
    (box,) = samples["a.jpg"].boxes
    assert (box.xmin, box.ymin, box.xmax, box.difficult, box.truncated) == (1.5, 2.25, 20.75, True, True)
    assert samples["neg.jpg"].boxes == ()
    assert report.usable_images == 2 and report.labelled_images == 1
    details = " | ".join(p.detail for p in kinds(report, "box_dropped"))
    assert "no <bndbox>" in details and "no <name>" in details


def test_pairing_by_stem_case_and_folders_then_filename_never_path(tmp_path):
    entries = {
        "JPEGImages/Cat One (2).JPG": image_bytes(color=(9, 9, 9)),
        "Annotations/cat one (2).xml": xml("x.jpg", (64, 48), [("cat", 1, 1, 9, 9)]),
        "imgs/photo_17.jpeg": image_bytes(color=(99, 9, 9)),
        "labels/renamed.xml": xml("photo_17.jpeg", (64, 48), [("cat", 1, 1, 9, 9)]).replace(
            b"</filename>", b"</filename><path>C:\\Users\\me\\evil.jpg</path>"
        ),
        "train/a.jpg": image_bytes(),
        "train/a.xml": xml("a.jpg", (64, 48), [("cat", 1, 1, 9, 9)]),
        "valid/a.jpg": image_bytes(color=(1, 1, 1)),
        "valid/a.xml": xml("a.jpg", (64, 48), [("dog", 1, 1, 9, 9)]),
    }
    samples, report = check(tmp_path, entries)
    assert samples["JPEGImages/Cat One (2).JPG"].annotation == "Annotations/cat one (2).xml"
    assert samples["imgs/photo_17.jpeg"].annotation == "labels/renamed.xml"
    assert samples["train/a.jpg"].annotation == "train/a.xml" and samples["train/a.jpg"].folder_split == "train"
    assert samples["valid/a.jpg"].boxes[0].label == "dog" and samples["valid/a.jpg"].folder_split == "val"
    assert report.problems == ()


def test_label_variants_and_duplicates_are_reported(tmp_path):
    same = image_bytes(color=(5, 5, 5))
    entries = {
        "a.jpg": same,
        "a.xml": xml("a.jpg", (64, 48), [("Red car", 1, 1, 9, 9)]),
        "b.jpg": same,
        "b.xml": xml("b.jpg", (64, 48), [("red  car", 1, 1, 9, 9)]),
        "c.jpg": image_bytes(),
        "c.xml": xml("c.jpg", (64, 48), [(" red car ", 1, 1, 9, 9)]),
    }
    samples, report = check(tmp_path, entries)
    (variant,) = kinds(report, "label_variant")
    assert "'Red car'" in variant.detail and "'red  car'" in variant.detail and "'red car'" in variant.detail
    assert "--merge" in variant.action
    # The same facts as data, for the bot to word: a tie names the first spelling in order.
    assert variant.params == {"names": ["Red car", "red  car", "red car"], "examples": ["a.xml", "b.xml", "c.xml"]} | {
        "into": "Red car"
    }
    (duplicate,) = kinds(report, "duplicate_image")
    assert duplicate.detail == "a.jpg is byte-identical to b.jpg" and duplicate.params == {"copies": ["b.jpg"]}
    assert set(report.classes) == {"Red car", "red  car", "red car"}
    assert json.loads(json.dumps(report.to_json()))["problems"][0]["params"]


def test_a_label_variant_suggests_the_spelling_with_the_most_boxes(tmp_path):
    entries = pair("a", objects=[("cat", 1, 1, 9, 9), ("cat", 2, 2, 9, 9)]) | pair("b", objects=[("Cat", 1, 1, 9, 9)])
    _, report = check(tmp_path, entries)
    (variant,) = kinds(report, "label_variant")
    assert variant.params["names"] == ["Cat", "cat"] and variant.params["into"] == "cat"
    assert variant.action.endswith("`labels --merge Cat,cat=cat` if they are one class")


def test_report_counts_and_json(tmp_path):
    entries = pair("a", objects=[("cat", 1, 1, 40, 40), ("dog", 1, 1, 9, 9)]) | pair("b", objects=[("cat", 1, 1, 9, 9)])
    _, report = check(tmp_path, entries)
    payload = json.loads(json.dumps(report.to_json()))
    assert payload["images"] == 2 and payload["boxes"] == 3
    assert payload["classes"] == {"cat": {"boxes": 2, "images": 2}, "dog": {"boxes": 1, "images": 1}}
    assert payload["box_sizes"]["small"] == 2 and payload["box_sizes"]["medium"] == 1


def test_pairing_ignores_unicode_normalisation(tmp_path):
    entries = {
        "images/caf\u00e9.jpg": image_bytes(),
        "annotations/cafe\u0301.xml": xml("x.jpg", (64, 48), [("cup", 1, 1, 9, 9)]),
    }
    samples, report = check(tmp_path, entries)
    assert samples["images/caf\u00e9.jpg"].annotation == "annotations/cafe\u0301.xml"
    assert report.problems == ()
