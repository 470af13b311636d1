"""The hand-written TFRecord / tf.train.Example bytes, checked against real TensorFlow.

Only the tests that compare with TensorFlow import it (marked slow); the rest run in the fast tier.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pipeline.data.records import build_example, shard_count, write_records
from pipeline.data.samples import Box, Sample, Transform
from pipeline.data.tfrecord import (
    Bytes,
    Floats,
    Ints,
    TFRecordWriter,
    encode_example,
    iter_records,
)
from pipeline.data.workspace import Workspace
from tests.builders import image_bytes

CLASS_IDS = {"cat": 1, "dog": 2, "bird": 3}
MiB = 1024 * 1024


@pytest.mark.slow
def test_encode_example_matches_tensorflow():
    import tensorflow as tf

    _feature = tf.train.Feature
    big = 2**63 - 1
    features = {
        "ints": [0, 1, -1, 300, big, -(2**63), True],
        "int": 7,
        "floats": [0.5, -1.25, 3.0e38, 1e-3],
        "float": 0.1,
        "bytes": [b"", b"\x00\xff", "ключ"],
        "text": "кот",
        "empty/f": Floats([]),
        "empty/i": Ints([]),
        "empty/b": Bytes([]),
        "explicit": Floats([1, 2]),
    }
    ours = encode_example(features)
    expected = tf.train.Example(
        features=tf.train.Features(
            feature={
                "ints": _feature(int64_list=tf.train.Int64List(value=[0, 1, -1, 300, big, -(2**63), 1])),
                "int": _feature(int64_list=tf.train.Int64List(value=[7])),
                "floats": _feature(float_list=tf.train.FloatList(value=[0.5, -1.25, 3.0e38, 1e-3])),
                "float": _feature(float_list=tf.train.FloatList(value=[0.1])),
                "bytes": _feature(bytes_list=tf.train.BytesList(value=[b"", b"\x00\xff", "ключ".encode()])),
                "text": _feature(bytes_list=tf.train.BytesList(value=["кот".encode()])),
                "empty/f": _feature(float_list=tf.train.FloatList(value=[])),
                "empty/i": _feature(int64_list=tf.train.Int64List(value=[])),
                "empty/b": _feature(bytes_list=tf.train.BytesList(value=[])),
                "explicit": _feature(float_list=tf.train.FloatList(value=[1.0, 2.0])),
            }
        )
    )
    assert tf.train.Example.FromString(ours) == expected
    assert encode_example(dict(reversed(features.items()))) == ours
    # Byte for byte per feature; a whole-map comparison is not possible because upb's
    # "deterministic" order puts "ints" before "int" (longer keys before their prefixes).
    for key, value in features.items():
        single = tf.train.Example()
        single.features.feature[key].CopyFrom(expected.features.feature[key])
        assert encode_example({key: value}) == single.SerializeToString()


@pytest.mark.parametrize(
    "features, error",
    [
        ({"a": []}, TypeError),
        ({"a": [1, 0.5]}, TypeError),
        ({"a": [b"x", 1]}, TypeError),
        ({"a": {"b": 1}}, TypeError),
        ({"a": None}, TypeError),
        ({"a": 2**63}, ValueError),
        ({"a": Ints([-(2**63) - 1])}, ValueError),
        ({1: 1}, TypeError),
    ],
)
def test_encode_example_rejects_untyped_or_out_of_range(features, error):
    with pytest.raises(error):
        encode_example(features)


@pytest.mark.slow
def test_tfrecord_files_interoperate_with_tensorflow(tmp_path):
    import tensorflow as tf

    records = [b"", b"x", os.urandom(70_000), b"\x00" * 3]
    ours = tmp_path / "ours.tfrecord"
    with TFRecordWriter(ours) as writer:
        for record in records:
            writer.write(record)
    assert writer.bytes_written == ours.stat().st_size
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(ours))] == records
    theirs = tmp_path / "theirs.tfrecord"
    with tf.io.TFRecordWriter(str(theirs)) as tf_writer:
        for record in records:
            tf_writer.write(record)
    assert list(iter_records(theirs)) == records
    assert theirs.read_bytes() == ours.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours.tfrecord", "theirs.tfrecord"]


@pytest.mark.parametrize("damage", ["length", "data", "footer", "truncate"])
def test_iter_records_rejects_corruption(tmp_path, damage):
    path = tmp_path / "shard.tfrecord"
    with TFRecordWriter(path) as writer:
        writer.write(b"first record")
        writer.write(b"second record")
    data = bytearray(path.read_bytes())
    second = 16 + len(b"first record")
    if damage == "truncate":
        del data[-3:]
    else:
        index = {"length": second + 1, "data": second + 14, "footer": len(data) - 1}[damage]
        data[index] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"shard\.tfrecord.*offset {second}"):
        list(iter_records(path))


def test_writer_leaves_nothing_when_interrupted(tmp_path):
    path = tmp_path / "train-00000-of-00001.tfrecord"
    with pytest.raises(RuntimeError):
        with TFRecordWriter(path) as writer:
            writer.write(b"half")
            assert not path.exists()
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_shard_count():
    assert shard_count(0, 0) == 1
    assert shard_count(1, 10) == 1
    assert shard_count(5, 5 * MiB) == 5
    assert shard_count(100, 50 * MiB) == 8
    assert shard_count(100, 800 * MiB) == 8
    assert shard_count(1000, 801 * MiB) == 9
    assert shard_count(5000, 1500 * MiB) == 15


# --- the records step on a generated dataset ------------------------------------------


def _save(path: Path, size: tuple[int, int], color, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(size, color, **kwargs))


def _sample(ws: Workspace, sample_id: int, image: str, size, boxes=(), transform=Transform()):
    data = (ws.source / image).read_bytes()
    return Sample(
        id=sample_id,
        image=image,
        annotation=None,
        width=size[0],
        height=size[1],
        boxes=tuple(boxes),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        transform=transform,
    )


def _make_dataset(root: Path) -> tuple[Workspace, dict[str, list[Sample]]]:
    ws = Workspace(root)
    src = ws.source
    train: list[Sample] = []
    for i in range(10):
        size = (40 + 7 * i, 30 + 5 * i)
        name = f"photos/img_{i}.jpg"
        _save(src / name, size, (20 * i, 100, 200))
        boxes = [Box("cat", 1, 2, size[0] - 3, size[1] - 1, difficult=i == 3)]
        if i % 3 == 0:
            boxes.append(Box("dog", 0, 0, size[0] / 2, size[1] / 3, truncated=True))
        train.append(_sample(ws, 100 + 7 * i, name, size, boxes))
    _save(src / "negative.jpg", (32, 24), (0, 0, 0))
    train.append(_sample(ws, 3, "negative.jpg", (32, 24)))
    _save(src / "plain.png", (50, 70), (1, 2, 3), fmt="PNG")
    train.append(_sample(ws, 5, "plain.png", (50, 70), [Box("bird", 5.5, 6.25, 44.75, 69)]))
    # Stored 40x60 with EXIF orientation 6: the record holds the upright 60x40 image.
    _save(src / "rotated.jpg", (40, 60), (9, 9, 9), orientation=6)
    rotated = Transform(orientation=6, reencode=True)
    val = [_sample(ws, 1, "rotated.jpg", (60, 40), [Box("dog", 10, 5, 50, 35)], rotated)]
    _save(src / "alpha.png", (30, 20), (255, 0, 0, 128), mode="RGBA", fmt="PNG")
    alpha = Transform(convert_from="RGBA", reencode=True)
    val.append(_sample(ws, 2, "alpha.png", (30, 20), [Box("cat", 0, 0, 30, 20)], alpha))
    return ws, {"train": train, "val": val, "test": []}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    ws, splits = _make_dataset(tmp_path_factory.mktemp("ws"))
    report = write_records(ws, splits, CLASS_IDS, workers=2)
    return ws, splits, report


def _examples(paths) -> list[bytes]:
    import tensorflow as tf

    return [record.numpy() for record in tf.data.TFRecordDataset(list(paths))]


def test_report_lists_every_shard(written):
    ws, splits, report = written
    assert report.splits["test"] == () and report.examples["test"] == 0
    assert report.examples == {"train": 12, "val": 2, "test": 0}
    assert len(report.splits["train"]) == 8 and len(report.splits["val"]) == 2
    for split in ("train", "val"):
        assert list(report.splits[split]) == [str(p.absolute()) for p in ws.records(split)]
        assert all(Path(p).is_absolute() for p in report.splits[split])
    assert report.reencoded == 2
    assert report.bytes_written == sum(p.stat().st_size for p in ws.data.iterdir())
    counts = [len(list(iter_records(p))) for p in report.splits["train"]]
    assert sorted(counts) == [1, 1, 1, 1, 2, 2, 2, 2]


@pytest.mark.slow
def test_model_garden_decoder_reads_every_example(written):
    import tensorflow as tf
    from official.vision.dataloaders import tf_example_decoder

    ws, splits, report = written
    decoder = tf_example_decoder.TfExampleDecoder()
    for split in ("train", "val"):
        by_id = {s.id: s for s in splits[split]}
        seen = set()
        for serialized in _examples(report.splits[split]):
            decoded = decoder.decode(tf.constant(serialized))
            sample = by_id[int(decoded["source_id"].numpy())]
            seen.add(sample.id)
            size = (decoded["height"].numpy(), decoded["width"].numpy())
            assert size == (sample.height, sample.width)
            assert decoded["image"].shape == (sample.height, sample.width, 3)
            expected_boxes = [
                [b.ymin / sample.height, b.xmin / sample.width, b.ymax / sample.height, b.xmax / sample.width]
                for b in sample.boxes
            ]
            boxes = decoded["groundtruth_boxes"].numpy()
            assert boxes.shape == (len(sample.boxes), 4)
            if sample.boxes:
                assert abs(boxes - expected_boxes).max() < 1e-6
            classes = decoded["groundtruth_classes"].numpy().tolist()
            assert classes == [CLASS_IDS[b.label] for b in sample.boxes]
            areas = decoded["groundtruth_area"].numpy().tolist()
            assert areas == pytest.approx([b.area for b in sample.boxes])
            assert not decoded["groundtruth_is_crowd"].numpy().any()
        assert seen == set(by_id)


@pytest.mark.slow
def test_extra_keys_and_passthrough_bytes(written):
    import tensorflow as tf

    strings, ints = tf.io.FixedLenFeature((), tf.string), tf.io.VarLenFeature(tf.int64)
    extra_keys = {f"image/{key}": strings for key in ("encoded", "format", "filename", "source_id", "key/sha256")}
    extra_keys |= {f"image/object/{flag}": ints for flag in ("difficult", "truncated", "is_crowd")}
    extra_keys["image/object/class/text"] = tf.io.VarLenFeature(tf.string)
    ws, splits, report = written
    samples = {s.image: s for s in splits["train"] + splits["val"]}
    for serialized in _examples(report.splits["train"] + report.splits["val"]):
        parsed = tf.io.parse_single_example(serialized, extra_keys)
        sample = samples[parsed["image/filename"].numpy().decode()]
        encoded = parsed["image/encoded"].numpy()
        assert parsed["image/source_id"].numpy() == str(sample.id).encode()
        assert parsed["image/key/sha256"].numpy() == hashlib.sha256(encoded).hexdigest().encode()
        texts = tf.sparse.to_dense(parsed["image/object/class/text"]).numpy().tolist()
        assert texts == [b.label.encode() for b in sample.boxes]
        flags = {
            k: tf.sparse.to_dense(parsed[f"image/object/{k}"]).numpy().tolist()
            for k in ("difficult", "truncated", "is_crowd")
        }
        assert flags["difficult"] == [int(b.difficult) for b in sample.boxes]
        assert flags["truncated"] == [int(b.truncated) for b in sample.boxes]
        assert flags["is_crowd"] == [0] * len(sample.boxes)
        if sample.transform.passthrough:
            assert encoded == (ws.source / sample.image).read_bytes()
        expected_format = b"png" if sample.image == "plain.png" else b"jpeg"
        assert parsed["image/format"].numpy() == expected_format


def test_one_worker_and_many_write_identical_files(written, tmp_path):
    ws, splits, report = written
    before = {p: Path(p).read_bytes() for paths in report.splits.values() for p in paths}
    again = write_records(ws, splits, CLASS_IDS, workers=1)
    assert again == report
    assert {p: Path(p).read_bytes() for p in before} == before


def test_stale_shards_are_removed(tmp_path):
    ws, splits = _make_dataset(tmp_path)
    ws.data.mkdir(parents=True)
    stale = [ws.shard("train", 3, 9), ws.shard("val", 0, 1), ws.data / "train-00004-of-00009.tmp-123-abc"]
    kept = [ws.shard("test", 0, 2), ws.data / "train-extra-00000-of-00001.tfrecord", ws.label_map]
    for path in stale + kept:
        path.write_bytes(b"old")
    report = write_records(ws, {"train": splits["train"], "val": []}, CLASS_IDS, workers=1, num_shards=3)
    assert [Path(p).name for p in report.splits["train"]] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert report.splits["val"] == () and ws.records("val") == []
    assert not any(path.exists() for path in stale)
    assert all(path.read_bytes() == b"old" for path in kept)


def test_unknown_label_fails_before_touching_disk(tmp_path):
    ws, splits = _make_dataset(tmp_path)
    ws.data.mkdir(parents=True)
    old = ws.shard("train", 0, 1)
    old.write_bytes(b"old")
    with pytest.raises(ValueError, match="'dog'"):
        write_records(ws, splits, {"cat": 1, "bird": 3}, workers=1)
    assert old.read_bytes() == b"old"
    with pytest.raises(ValueError, match="'dog'"):
        build_example(splits["val"][0], b"\xff\xd8\xff", {"cat": 1})


def test_failed_run_leaves_no_shards(tmp_path):
    ws, splits = _make_dataset(tmp_path)
    (ws.source / splits["train"][4].image).unlink()
    with pytest.raises(FileNotFoundError):
        write_records(ws, splits, CLASS_IDS, workers=2)
    assert list(ws.data.iterdir()) == []
