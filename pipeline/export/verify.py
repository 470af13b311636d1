"""Check an exported model the way its user will run it, in a process of its own.

``python -m pipeline.export.verify FOLDER RECORD...`` loads ``FOLDER/saved_model`` fresh
(nothing from the exporting process can leak in), runs it through
``predict.detect`` on every validation image, checks that calling the loaded object
(the OD API's way) gives what its ``serving_default`` gives, and prints one JSON line:
COCO AP against the records' boxes, the confusion matrix and sample drawings. With
``--tflite-from-stdin`` it then measures each TFLite model named on its standard input
(one file of FOLDER a line, written as the exporter converts them) the same way, until
that input closes; last, the median latency of every model.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.data.images import ALLOWED_FORMATS
from pipeline.data.tfrecord import iter_records
from pipeline.errors import ExportError, PipelineError
from pipeline.export.predict import DEFAULT_THRESHOLD, SAVED_MODEL, Model, detect, draw, load_model
from pipeline.export.signature import INPUT, OUTPUTS
from pipeline.train.metrics import ImageBoxes, coco_ap, confusion_matrix

LATENCY_IMAGES = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.export.verify", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="holds saved_model/ and label_map.pbtxt")
    parser.add_argument("records", type=Path, nargs="+", help="validation TFRecords")
    parser.add_argument("--samples", type=int, default=4, help="validation images to draw")
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument(
        "--score",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="lowest score counted in the confusion matrix (default: what `predict` shows)",
    )
    parser.add_argument(
        "--tflite-from-stdin", action="store_true", help="then measure the TFLite files read from stdin"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        result = verify(args.folder, args.records, args.samples, args.iou, args.score)
        files = [line.strip() for line in sys.stdin if line.strip()] if args.tflite_from_stdin else []
        names = load_model(args.folder).names
        result["tflite"] = {name: coco_ap(*evaluate_tflite(args.folder / name, args.records), names) for name in files}
        # Timed only now that the exporter has stopped converting: a conversion beside it would be timed too.
        timed = latencies(args.folder, files, args.records)
        result["latency_ms"] = timed.pop(SAVED_MODEL)
        for name, ms in timed.items():
            result["tflite"][name]["latency_ms"] = ms
    except PipelineError as error:
        print(error, file=sys.stderr)
        return 1
    print(json.dumps(result))  # the exporting process reads this line
    return 0


def verify(
    folder: Path, records: list[Path], samples: int = 4, iou: float = 0.5, score: float = DEFAULT_THRESHOLD
) -> dict:
    model = load_model(folder)
    truths, found, drawn = [], [], []
    for source_id, image, truth in read_examples(records):
        if not truths:
            check_call(model, image)
        detections = detect(model, image, threshold=0.0)  # every box the model keeps, as COCO AP wants
        truths.append(truth)
        found.append(
            ImageBoxes(
                boxes=tuple(d.box for d in detections),
                classes=tuple(d.class_id for d in detections),
                scores=tuple(d.score for d in detections),
            )
        )
        if len(drawn) < samples:
            shown = [d for d in detections if d.score >= DEFAULT_THRESHOLD]
            drawn.append(str(draw(image, shown, folder / "samples" / f"{source_id}.png")))
    if not truths:
        raise ExportError("The validation records hold no images to check the export on.", kind="no_val_records")
    matrix = confusion_matrix(truths, found, max(model.names) + 1, iou=iou, score=score, class_names=model.names)
    matrix.write_png(folder / "confusion.png")
    return coco_ap(truths, found, model.names) | {
        "images": len(truths),
        "boxes": sum(len(t.boxes) for t in truths),
        "confusion": matrix.to_json(),
        "samples": drawn,
    }


def check_call(model: Model, image) -> None:
    """The loaded object called as OD API users call it must answer as its serving_default signature does."""
    import numpy as np
    import tensorflow as tf

    pixels = np.asarray(image, dtype=np.uint8)
    direct = model.serve.loaded(tf.convert_to_tensor(pixels)[tf.newaxis, ...])
    signed = model.serve(pixels)
    differs = [key for key in OUTPUTS if not np.allclose(direct[key].numpy(), signed[key].numpy(), atol=1e-5)]
    if differs or model.serve.input != INPUT:
        raise ExportError(
            f"The SavedModel called directly does not answer as its serving_default signature (input "
            f"{model.serve.input!r}, differing outputs {differs}).",
            kind="export_broken",
        )


def evaluate_tflite(path: Path, records: list[Path]) -> tuple[list[ImageBoxes], list[ImageBoxes]]:
    """A TFLite model's boxes on the records' images beside the true ones, for ``coco_ap``."""
    from pipeline.export.tflite import Runner

    lite = Runner(path)
    truths, found = [], []
    for _, image, truth in read_examples(records):
        truths.append(truth)
        boxes, classes, scores = lite(image)
        found.append(ImageBoxes(boxes=tuple(boxes), classes=tuple(classes), scores=tuple(scores)))
    return truths, found


def latencies(folder: Path, files: list[str], records: list[Path]) -> dict[str, float]:
    """Median milliseconds per image of the SavedModel (resizing included) and of each TFLite interpreter call,
    over up to LATENCY_IMAGES validation images; the median, as other processes may share this CPU."""
    from pipeline.export.tflite import Runner

    model = load_model(folder)
    runners = {name: Runner(folder / name) for name in files}
    seconds: dict[str, list[float]] = {SAVED_MODEL: []}
    for _, (_, image, _) in zip(range(LATENCY_IMAGES), read_examples(records)):
        start = time.perf_counter()
        detect(model, image, threshold=0.0)
        seconds[SAVED_MODEL].append(time.perf_counter() - start)
        for runner in runners.values():
            runner(image)  # times its interpreter call itself
    seconds |= {name: runner.seconds for name, runner in runners.items()}
    return {name: round(statistics.median(values) * 1000, 1) for name, values in seconds.items()}


def read_examples(records: list[Path]) -> Iterator[tuple[str, object, ImageBoxes]]:
    """(source id, upright RGB image, ground truth in pixels) for every record."""
    import io

    import tensorflow as tf
    from PIL import Image

    for path in records:
        for data in iter_records(path):
            feature = tf.train.Example.FromString(data).features.feature
            with Image.open(io.BytesIO(feature["image/encoded"].bytes_list.value[0]), formats=ALLOWED_FORMATS) as image:
                image = image.convert("RGB")  # records hold upright RGB JPEG/PNG already
            width, height = image.size
            box = {
                key: feature[f"image/object/bbox/{key}"].float_list.value for key in ("xmin", "ymin", "xmax", "ymax")
            }
            truth = ImageBoxes(
                boxes=tuple(
                    (x0 * width, y0 * height, x1 * width, y1 * height)
                    for x0, y0, x1, y1 in zip(box["xmin"], box["ymin"], box["xmax"], box["ymax"])
                ),
                classes=tuple(int(c) for c in feature["image/object/class/label"].int64_list.value),
            )
            yield feature["image/source_id"].bytes_list.value[0].decode(), image, truth


if __name__ == "__main__":
    sys.exit(main())
