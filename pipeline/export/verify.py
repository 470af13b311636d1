"""Check an exported model the way its user will run it, in a process of its own.

``python -m pipeline.export.verify FOLDER RECORD...`` loads ``FOLDER/saved_model`` fresh
(nothing from the exporting process can leak in), runs it through
``predict.detect`` on every validation image, and prints one JSON line: COCO AP
against the records' boxes, the confusion matrix and sample drawings. A TFLite
model is measured the same way by ``evaluate_tflite``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.data.images import ALLOWED_FORMATS
from pipeline.data.tfrecord import iter_records
from pipeline.errors import ExportError, PipelineError
from pipeline.export.predict import DEFAULT_THRESHOLD, detect, draw, load_model
from pipeline.train.metrics import ImageBoxes, coco_ap, confusion_matrix


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        result = verify(args.folder, args.records, args.samples, args.iou, args.score)
    except PipelineError as error:
        print(error, file=sys.stderr)
        return 1
    print(json.dumps(result))  # the exporting process reads this line
    return 0


def verify(
    folder: Path, records: list[Path], samples: int = 4, iou: float = 0.5, score: float = DEFAULT_THRESHOLD
) -> dict:
    model = load_model(folder)
    truths, found, drawn, seconds = [], [], [], 0.0
    for source_id, image, truth in read_examples(records):
        start = time.perf_counter()
        detections = detect(model, image, threshold=0.0)  # every box the model keeps, as COCO AP wants
        seconds += time.perf_counter() - start
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
        raise ExportError("The validation records hold no images to check the export on.")
    matrix = confusion_matrix(truths, found, max(model.names) + 1, iou=iou, score=score, class_names=model.names)
    matrix.write_png(folder / "confusion.png")
    return coco_ap(truths, found, model.names) | {
        "images": len(truths),
        "boxes": sum(len(t.boxes) for t in truths),
        "seconds_per_image": round(seconds / len(truths), 4),
        "confusion": matrix.to_json(),
        "samples": drawn,
    }


def evaluate_tflite(path: Path, records: list[Path], names: dict[int, str]) -> dict:
    """COCO AP of a TFLite model on the records' images, as ``verify`` measures the SavedModel."""
    lite = _TfliteRunner(path)
    truths, found = [], []
    for _, image, truth in read_examples(records):
        truths.append(truth)
        found.append(lite(image))
    return coco_ap(truths, found, names) | {"seconds_per_image": round(lite.seconds / max(len(truths), 1), 4)}


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


class _TfliteRunner:
    """The TFLite model fed as Model Garden's serving graph feeds its network.

    Model Garden's TFLite export leaves pre-processing to the app: pixels normalised by
    the ImageNet mean and deviation, resized keeping the aspect ratio, padded bottom-right
    to the square input; boxes come back normalised to that padded input.
    """

    def __init__(self, path: Path):
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=str(path))
        self.run = interpreter.get_signature_runner()
        self.size = [int(v) for v in interpreter.get_input_details()[0]["shape"][1:3]]
        self.seconds = 0.0

    def __call__(self, image) -> ImageBoxes:
        import numpy as np
        import tensorflow as tf
        from official.vision.ops import preprocess_ops

        pixels = preprocess_ops.normalize_image(
            tf.constant(np.asarray(image), tf.float32), offset=preprocess_ops.MEAN_RGB, scale=preprocess_ops.STDDEV_RGB
        )
        # The input is already a multiple of the coarsest stride for the catalogue's models: no extra padding.
        pixels, info = preprocess_ops.resize_and_crop_image(
            pixels, self.size, padded_size=self.size, aug_scale_min=1.0, aug_scale_max=1.0
        )
        start = time.perf_counter()
        out = self.run(inputs=pixels.numpy()[None])
        self.seconds += time.perf_counter() - start
        count = int(out["num_detections"][0])
        scale_y, scale_x = (float(v) for v in info[2].numpy())
        height, width = self.size
        boxes = tuple(
            (x0 * width / scale_x, y0 * height / scale_y, x1 * width / scale_x, y1 * height / scale_y)
            for y0, x0, y1, x1 in out["detection_boxes"][0, :count].tolist()
        )
        return ImageBoxes(
            boxes=boxes,
            classes=tuple(int(c) for c in out["detection_classes"][0, :count]),
            scores=tuple(float(s) for s in out["detection_scores"][0, :count]),
        )


if __name__ == "__main__":
    sys.exit(main())
