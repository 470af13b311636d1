"""`python -m pipeline prepare` and the step subcommands, end to end through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.data.reports import PROBLEM_KINDS
from tests.builders import image_bytes, pair, write_zip, xml

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv) -> tuple[int, dict]:
    code = main([*map(str, argv), "--json"])
    return code, json.loads(capsys.readouterr().out)


def files_outside(tmp_path: Path, allowed: set[str]) -> set[str]:
    return {p.name for p in tmp_path.iterdir()} - allowed


def test_prepare_json_contract(tmp_path, capsys, shapes_zip):
    code, out = run_cli(capsys, "prepare", shapes_zip, "--out", tmp_path / "ws", "--val-ratio", "0.2")
    assert code == 0
    assert {"images", "labelled_images", "boxes", "classes", "splits", "problems", "outputs"} <= set(out)
    assert out["images"] == 40 and out["labelled_images"] == 40 and out["problems"] == []
    assert set(out["classes"]) == {"circle", "square", "triangle"}
    assert out["boxes"] == sum(c["boxes"] for c in out["classes"].values())
    assert set(out["splits"]) == {"train", "val"}
    assert out["splits"]["val"]["images"] == 8
    assert sum(s["images"] for s in out["splits"].values()) == 40
    for name in ("circle", "square", "triangle"):
        assert out["splits"]["val"]["classes"][name] > 0
    outputs = out["outputs"]
    assert Path(outputs["label_map"]).read_text().count("item {") == 3
    assert outputs["train_records"] and outputs["val_records"]
    assert all(Path(p).exists() and Path(p).parent.name == "data" for p in outputs["train_records"])
    assert Path(outputs["preview"]).stat().st_size > 10_000
    assert json.loads((tmp_path / "ws" / "summary.json").read_text()) == out
    assert files_outside(tmp_path, {"ws"}) == set()


def test_prepare_again_on_the_same_zip_reuses_the_workspace(tmp_path, capsys, shapes_zip):
    run_cli(capsys, "prepare", shapes_zip, "--out", tmp_path / "ws")
    code, out = run_cli(capsys, "prepare", shapes_zip, "--out", tmp_path / "ws", "--seed", "5")
    assert code == 0 and out["images"] == 40
    other = write_zip(tmp_path / "other.zip", pair("x"))
    code, out = run_cli(capsys, "prepare", other, "--out", tmp_path / "ws")
    assert code == 1 and "already holds another dataset" in out["error"]["message"]


def test_rejected_zip_prints_error_json_and_exits_non_zero(tmp_path, capsys):
    bad = tmp_path / "photos.zip"
    bad.write_bytes(b"not a zip at all")
    code, out = run_cli(capsys, "prepare", bad, "--out", tmp_path / "ws")
    assert code != 0
    assert out["error"]["kind"] == "not_a_zip" and "photos.zip" in out["error"]["message"]
    assert not (tmp_path / "ws" / "source").exists()


def test_error_without_json_is_one_paragraph_on_stderr(tmp_path, capsys):
    bad = tmp_path / "photos.zip"
    bad.write_bytes(b"")
    assert main(["prepare", str(bad), "--out", str(tmp_path / "ws")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "photos.zip" in err and err.strip().count("\n") == 0


def test_steps_one_by_one_and_label_edits(tmp_path, capsys, shapes_zip):
    ws = tmp_path / "ws"
    code, out = run_cli(capsys, "inspect", shapes_zip, "--out", ws)
    assert code == 0 and out["images"] == 40
    code, out = run_cli(capsys, "labels", ws, "--rename", "circle=ball", "--merge", "square,triangle=block")
    assert code == 0 and [i["name"] for i in out["label_map"]] == ["ball", "block"]
    code, out = run_cli(capsys, "labels", ws, "--drop", "ball")
    assert code == 0 and [(i["id"], i["name"]) for i in out["label_map"]] == [(1, "block")]
    code, out = run_cli(capsys, "split", ws, "--val-ratio", "0.25", "--seed", "1")
    assert code == 0 and set(out["splits"]["val"]["classes"]) == {"block"}
    code, out = run_cli(capsys, "records", ws, "--shards", "2")
    assert code == 0 and len(out["outputs"]["train_records"]) == 2
    assert out["examples"]["train"] + out["examples"]["val"] == 40
    code, out = run_cli(capsys, "labels", ws, "--drop", "nothing")
    assert code == 1 and "block" in out["error"]["message"]


def test_step_before_its_input_says_which_step_to_run(tmp_path, capsys):
    code, out = run_cli(capsys, "records", tmp_path)
    assert code == 1 and "inspect" in out["error"]["message"]


def test_supplied_label_map_must_cover_the_data(tmp_path, capsys):
    entries = pair("a", objects=[("cat", 1, 1, 20, 20)]) | pair("b", objects=[("dog", 1, 1, 20, 20)], color=(1, 2, 3))
    entries |= pair("c", objects=[("cow", 1, 1, 20, 20)], color=(9, 2, 3))
    archive = write_zip(tmp_path / "pets.zip", entries)
    label_map = tmp_path / "map.pbtxt"
    label_map.write_text("item { id: 3 name: 'cat' }\nitem { id: 7 name: 'bird' }\n")
    code, out = run_cli(capsys, "prepare", archive, "--out", tmp_path / "ws", "--label-map", label_map)
    assert code == 1
    message = out["error"]["message"]
    assert "'dog'" in message and "b.xml" in message and "'cow'" in message and "map.pbtxt" in message
    assert "--ignore-unknown-labels" in message
    code, out = run_cli(
        capsys,
        "prepare",
        archive,
        "--out",
        tmp_path / "ws2",
        "--label-map",
        label_map,
        "--ignore-unknown-labels",
        "--val-ratio",
        "0.34",
    )
    assert code == 0
    kinds = {p["kind"] for p in out["problems"]}
    assert {"unknown_label", "empty_class"} <= kinds
    assert out["label_map"] == [
        {"id": 3, "name": "cat", "display_name": "cat"},
        {"id": 7, "name": "bird", "display_name": "bird"},
    ]
    assert out["boxes"] == 1


@pytest.mark.slow
def test_colour_modes_and_rotation_decode_as_rgb_in_tensorflow(tmp_path, capsys):
    tf = pytest.importorskip("tensorflow")
    from official.vision.dataloaders.tf_example_decoder import TfExampleDecoder

    box = [("cat", 4, 4, 30, 20)]
    entries = {
        "gray.jpg": image_bytes(mode="L", color=90),
        "gray.xml": xml("gray.jpg", (64, 48), box),
        "cmyk.jpg": image_bytes(mode="CMYK", color=(0, 200, 0, 0)),
        "cmyk.xml": xml("cmyk.jpg", (64, 48), box),
        "pal.png": image_bytes(mode="P", color=5, fmt="PNG"),
        "pal.xml": xml("pal.png", (64, 48), box),
        "rgba.png": image_bytes(mode="RGBA", color=(0, 0, 255, 0), fmt="PNG"),
        "rgba.xml": xml("rgba.png", (64, 48), box),
        "rot.jpg": image_bytes((64, 48), orientation=8),
        "rot.xml": xml("rot.jpg", (48, 64), box),
    }
    archive = write_zip(tmp_path / "modes.zip", entries)
    code, out = run_cli(capsys, "prepare", archive, "--out", tmp_path / "ws", "--val-ratio", "0.4")
    assert code == 0
    decoder = TfExampleDecoder()
    shapes = {}
    for path in out["outputs"]["train_records"] + out["outputs"]["val_records"]:
        for record in tf.data.TFRecordDataset(path):
            decoded = decoder.decode(record)
            shapes[int(decoded["source_id"].numpy())] = tuple(decoded["image"].shape)
            if (
                decoded["source_id"].numpy() == b"4"
            ):  # rgba.png (ids follow sorted file names): transparent -> white matte
                assert int(tf.reduce_min(decoded["image"])) > 240
    assert sorted(shapes.values()) == sorted([(48, 64, 3)] * 4 + [(64, 48, 3)])


def test_every_problem_kind_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for kind in PROBLEM_KINDS:
        assert f"`{kind}`" in readme, kind


def test_cli_starts_without_tensorflow(tmp_path):
    code = (
        "import sys, runpy; sys.argv=['pipeline', 'demo', sys.argv[1]]\n"
        "try:\n    runpy.run_module('pipeline', run_name='__main__')\nexcept SystemExit: pass\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "d.zip")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not (SHARED / "kangaroo.zip").exists(), reason="shared datasets not present")
def test_kangaroo(tmp_path, capsys):
    code, out = run_cli(capsys, "prepare", SHARED / "kangaroo.zip", "--out", tmp_path / "ws")
    assert code == 0
    assert out["images"] == 164 and list(out["classes"]) == ["kangaroo"]
    bad = [p for p in out["problems"] if p["kind"] == "bad_image"]
    assert [p["file"] for p in bad] == ["kangaroo/images/00090.jpg"] and "truncated" in bad[0]["detail"]
    examples = sum(s["images"] for s in out["splits"].values())
    assert examples == out["usable_images"] == 163
    from pipeline.data.tfrecord import iter_records

    paths = out["outputs"]["train_records"] + out["outputs"]["val_records"]
    assert sum(1 for p in paths for _ in iter_records(p)) == 163
    assert all(b"00090.jpg" not in r for p in paths for r in iter_records(p))


@pytest.mark.skipif(not (SHARED / "bccd.zip").exists(), reason="shared datasets not present")
def test_bccd(tmp_path, capsys):
    code, out = run_cli(capsys, "prepare", SHARED / "bccd.zip", "--out", tmp_path / "ws")
    assert code == 0
    assert out["images"] == 364 and set(out["classes"]) == {"Platelets", "RBC", "WBC"}
    dropped = [p for p in out["problems"] if p["kind"] == "box_dropped"]
    assert len(dropped) == 2 and all("zero area" in p["detail"] for p in dropped)
    assert {p["file"] for p in dropped} == {
        "BCCD/Annotations/BloodImage_00338.xml",
        "BCCD/Annotations/BloodImage_00343.xml",
    }
    for name in ("Platelets", "RBC", "WBC"):
        assert out["splits"]["val"]["classes"][name] > 0
