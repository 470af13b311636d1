"""The records step: samples with final labels in, sharded TFRecord files out.

The examples carry the keys Model Garden's ``TfExampleDecoder`` reads plus the
Object Detection API's extras, so either trainer can use the same shards.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.images import record_image_bytes
from pipeline.data.parallel import parallel_map
from pipeline.data.samples import Sample
from pipeline.data.tfrecord import Bytes, Floats, Ints, TFRecordWriter, encode_example
from pipeline.data.workspace import Workspace

log = logging.getLogger(__name__)

# Measured: 24 images take 12-19 ms in this process against 112-153 ms with a worker pool (/split's
# latency); a pool pays off only for sets of several hundred images.
MIN_IMAGES_FOR_POOL = 500
# Large enough that per-file overhead is negligible, small enough to shuffle and read in parallel.
SHARD_TARGET_BYTES = 100 * 1024 * 1024
# Readers interleave shards; fewer files than this leaves input parallelism unused.
MIN_PARALLEL_SHARDS = 8
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class RecordsReport:
    splits: dict[str, tuple[str, ...]]  # split -> shard paths (str, absolute) in order
    examples: dict[str, int]  # split -> examples written
    reencoded: int  # images whose bytes had to change
    bytes_written: int


@dataclass(frozen=True)
class _ShardTask:
    source: str
    path: str
    samples: tuple[Sample, ...]
    class_ids: dict[str, int]


@dataclass(frozen=True)
class _ShardResult:
    path: str
    examples: int
    reencoded: int
    bytes_written: int


def shard_count(num_samples: int, total_bytes: int) -> int:
    """Several shards so reads run in parallel, more when the data is large."""
    by_size = math.ceil(max(total_bytes, 0) / SHARD_TARGET_BYTES)
    return max(1, by_size, min(MIN_PARALLEL_SHARDS, num_samples))


def image_format(encoded: bytes) -> bytes:
    """What the bytes are, whatever the file was called; only JPEG and PNG go into records."""
    if encoded.startswith(_JPEG_MAGIC):
        return b"jpeg"
    if encoded.startswith(_PNG_MAGIC):
        return b"png"
    raise ValueError("the encoded image is neither JPEG nor PNG")


def build_example(sample: Sample, encoded: bytes, class_ids: Mapping[str, int]) -> bytes:
    """One serialized tf.train.Example; boxes are normalised by the sample's size."""
    _check_labels(sample, class_ids)
    if sample.width < 1 or sample.height < 1:
        raise ValueError(f"{sample.image}: image size {sample.width}x{sample.height} has no pixels")
    try:
        fmt = image_format(encoded)
    except ValueError as exc:
        raise ValueError(f"{sample.image}: {exc}") from None
    width, height, boxes = sample.width, sample.height, sample.boxes
    return encode_example(
        {
            "image/encoded": encoded,
            "image/format": fmt,
            "image/filename": sample.image,
            # Model Garden's COCO evaluator parses source ids as integers.
            "image/source_id": str(int(sample.id)),
            "image/key/sha256": hashlib.sha256(encoded).hexdigest(),
            "image/height": height,
            "image/width": width,
            "image/object/bbox/xmin": Floats(box.xmin / width for box in boxes),
            "image/object/bbox/xmax": Floats(box.xmax / width for box in boxes),
            "image/object/bbox/ymin": Floats(box.ymin / height for box in boxes),
            "image/object/bbox/ymax": Floats(box.ymax / height for box in boxes),
            "image/object/class/label": Ints(class_ids[box.label] for box in boxes),
            "image/object/class/text": Bytes(box.label for box in boxes),
            "image/object/area": Floats(box.area for box in boxes),
            "image/object/is_crowd": Ints(0 for _ in boxes),
            "image/object/difficult": Ints(int(box.difficult) for box in boxes),
            "image/object/truncated": Ints(int(box.truncated) for box in boxes),
        }
    )


def write_records(
    ws: Workspace,
    samples_by_split: Mapping[str, Sequence[Sample]],
    class_ids: Mapping[str, int],
    workers: int | None = None,
    num_shards: int | None = None,
) -> RecordsReport:
    """Write every split's shards into ``ws.data``, replacing any earlier shards of those splits.

    An empty split gets no shards. On failure the shards of this run are removed, so
    the workspace never holds a set that looks complete but is not.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if num_shards is not None and num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    for samples in samples_by_split.values():
        for sample in samples:
            _check_labels(sample, class_ids)  # before anything on disk changes
    ws.data.mkdir(parents=True, exist_ok=True)
    tasks: list[_ShardTask] = []
    splits: dict[str, tuple[str, ...]] = {}
    for split, samples in samples_by_split.items():
        _remove_shards(ws, split)
        split_tasks = _plan_split(ws, split, samples, dict(class_ids), num_shards)
        splits[split] = tuple(task.path for task in split_tasks)
        tasks += split_tasks
    if workers is None and sum(map(len, samples_by_split.values())) < MIN_IMAGES_FOR_POOL:
        workers = 1  # a fork-server pool costs ~100 ms to start: more than a small set takes to write
    try:
        results = parallel_map(_write_shard, tasks, workers, min_items=2)
    except BaseException:
        for task in tasks:
            Path(task.path).unlink(missing_ok=True)
        raise
    by_path = {result.path: result for result in results}
    examples = {split: sum(by_path[p].examples for p in paths) for split, paths in splits.items()}
    report = RecordsReport(
        splits=splits,
        examples=examples,
        reencoded=sum(result.reencoded for result in results),
        bytes_written=sum(result.bytes_written for result in results),
    )
    for split, paths in splits.items():
        log.info("%s: %d examples in %d shards", split, examples[split], len(paths))
    return report


def _check_labels(sample: Sample, class_ids: Mapping[str, int]) -> None:
    # Labels were made final upstream, so a miss here is a bug, not a user's mistake.
    unknown = sorted(sample.labels - set(class_ids))
    if unknown:
        raise ValueError(f"{sample.image}: labels {unknown} have no class id")


def _plan_split(
    ws: Workspace,
    split: str,
    samples: Sequence[Sample],
    class_ids: dict[str, int],
    num_shards: int | None,
) -> list[_ShardTask]:
    if not samples:
        return []
    # Sorting first makes the shuffle independent of the order samples arrived in.
    order = sorted(samples, key=lambda sample: sample.id)
    random.Random(0).shuffle(order)
    count = num_shards or shard_count(len(order), sum(s.size_bytes for s in order))
    source = str(ws.source.absolute())
    paths = [str(ws.shard(split, i, count).absolute()) for i in range(count)]
    return [_ShardTask(source, path, tuple(order[i::count]), class_ids) for i, path in enumerate(paths)]


def _remove_shards(ws: Workspace, split: str) -> None:
    """Delete a split's shards and temporary files from an earlier or crashed run."""
    # An exact pattern, not a glob: "train-*" would also match a split named "train-extra".
    pattern = re.compile(rf"{re.escape(split)}-\d{{5}}-of-\d{{5}}\.(tfrecord|tmp-.+)")
    for path in ws.data.iterdir():
        if pattern.fullmatch(path.name):
            log.debug("removing old shard %s", path)
            path.unlink(missing_ok=True)


def _write_shard(task: _ShardTask) -> _ShardResult:
    """Runs in a worker: read, encode and write one image at a time so memory stays flat."""
    source = Path(task.source)
    reencoded = 0
    with TFRecordWriter(task.path) as writer:
        for sample in task.samples:
            encoded = record_image_bytes(source / sample.image, sample.transform)
            writer.write(build_example(sample, encoded, task.class_ids))
            reencoded += not sample.transform.passthrough
    return _ShardResult(task.path, len(task.samples), reencoded, writer.bytes_written)
