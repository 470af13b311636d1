"""The archive's TFLite models: float32, float16 and int8, each carrying the metadata detector apps read.

Model Garden's TFLite export leaves pre-processing to the app: pixels normalised by the
ImageNet mean and deviation, resized keeping the aspect ratio, padded bottom-right to the
square input. Non-max suppression is TFLite's detection op, whose four outputs are the
OD API's: boxes [ymin, xmin, ymax, xmax] in 0..1 of the padded input, classes (label-map
ids: Model Garden's score column 0 is the background and the op keeps every column),
scores and the count. The metadata (MediaPipe's writer: tflite-support cannot be installed
beside TensorFlow 2.20's protobuf) names them so, carries the labels file and the
normalisation, and is read back before a model is kept.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

# Post-training quantisation samples: TFLite's guidance is 100-500; the training images are read up to this many.
CALIBRATION_IMAGES = 100
# The metadata name of each output (MediaPipe's and the Task Library's), by the OD API output it must describe.
METADATA_NAMES = {
    "detection_boxes": "location",
    "detection_classes": "category",
    "detection_scores": "score",
    "num_detections": "number of detections",
}
# mediapipe 1.2.x imports a compiled _pywrap_metadata_version that its wheels do not ship (ModuleNotFoundError:
# mediapipe.tasks.cc); the populator only asks it for the metadata's minimum parser version. Ours has tensor
# groups (the detection output group), the newest schema member it uses: 1.2.0 in metadata_version.cc's table.
MIN_PARSER_VERSION = "1.2.0"
BACKGROUND = "background"  # label 0: the op may report Model Garden's background column
UNUSED = "???"  # a label-map id nobody uses (the OD API's convention)


@dataclass(frozen=True)
class Variant:
    name: str
    file: str
    quant_type: str | None  # Model Garden's convert_tflite_model argument


VARIANTS = (
    Variant("float32", "model.tflite", None),
    Variant("float16", "model_fp16.tflite", "fp16"),
    # Integer weights and activations with float fallback, float32 in and out, so the detection op's four outputs
    # stay the floats the metadata and the Task Library expect, and the app normalises as for the float models.
    # "int8_full" converts too, but makes the input and all four outputs uint8 (boxes, classes, scores and the
    # count quantised): a different contract, which the detection readers do not take.
    Variant("int8", "model_int8.tflite", "int8"),
)


def lite_params(params):
    """The job's params for Model Garden's TFLite export: TFLite's detection op, keeping what the SavedModel keeps."""
    lite = copy.deepcopy(params)
    generator = lite.task.model.detection_generator
    # Model Garden's TFLite defaults (class-agnostic "fast" NMS, score >= 0.1) cost a third of the AP50 on the
    # demo data. Anchors normalised make the op itself return boxes in 0..1 (what the metadata declares), so its
    # four outputs are the model's outputs, in the op's order, with no op after it.
    lite.override(
        {
            "task": {
                "export_config": {"output_normalized_coordinates": False},
                "model": {
                    "detection_generator": {
                        "nms_version": "tflite",
                        "tflite_post_processing": {
                            "use_regular_nms": True,
                            "nms_score_threshold": generator.pre_nms_score_threshold,
                            "nms_iou_threshold": generator.nms_iou_threshold,
                            "max_detections": generator.max_num_detections,
                            "detections_per_class": generator.max_num_detections,
                            "normalize_anchor_coordinates": True,
                        },
                    }
                },
            }
        },
        is_strict=True,
    )
    return lite


def export_for_tflite(lite, weights: str, out: Path) -> None:
    """Model Garden's SavedModel for the converter (float32 [1, H, W, 3] normalised input, the op's outputs)."""
    from official.vision.serving import export_saved_model_lib

    from pipeline.export.signature import without_layer_traces

    size = list(lite.task.model.input_size[:2])
    with without_layer_traces():  # the converter, run three times on it, otherwise loads every layer's traces
        export_saved_model_lib.export_inference_graph(
            input_type="tflite",
            batch_size=1,
            input_image_size=size,
            params=lite,
            checkpoint_path=weights,
            export_dir=str(out),
        )


def convert(lite, saved_model: Path, variant: Variant, train_records: list[Path]) -> bytes:
    """``variant`` of the TFLite SavedModel; the int8 one calibrated on the job's training images."""
    from official.vision.serving import export_tflite_lib

    size = list(lite.task.model.input_size[:2])
    return export_tflite_lib.convert_tflite_model(
        saved_model_dir=str(saved_model),
        quant_type=variant.quant_type,
        params=copy.deepcopy(lite),  # Model Garden sets its train_data batch to 1
        task=_Calibration(train_records, size),
        calibration_steps=CALIBRATION_IMAGES,
    )


class _Calibration:
    """Stands in for Model Garden's task: its representative dataset is the training images, pre-processed as the
    app will, not the augmented training pipeline."""

    def __init__(self, records: list[Path], size: list[int]):
        self.records, self.size = records, size

    def build_inputs(self, params):
        import tensorflow as tf

        from pipeline.export.verify import read_examples  # verify runs the TFLite models with this module

        def images():
            for _, image, _ in read_examples(self.records):
                yield preprocess(image, self.size)[0][None], 0

        spec = (tf.TensorSpec([1, *self.size, 3], tf.float32), tf.TensorSpec([], tf.int32))
        return tf.data.Dataset.from_generator(images, output_signature=spec)


def preprocess(image, size: list[int]):
    """Pixels as the TFLite model takes them ([H, W, 3] float32) and the (y, x) scale from the image to them."""
    import numpy as np
    import tensorflow as tf
    from official.vision.ops import preprocess_ops

    pixels = preprocess_ops.normalize_image(
        tf.constant(np.asarray(image), tf.float32), offset=preprocess_ops.MEAN_RGB, scale=preprocess_ops.STDDEV_RGB
    )
    # The input is already a multiple of the coarsest stride for the catalogue's models: no extra padding.
    pixels, info = preprocess_ops.resize_and_crop_image(
        pixels, size, padded_size=size, aug_scale_min=1.0, aug_scale_max=1.0
    )
    return pixels.numpy(), tuple(float(v) for v in info[2].numpy())


def labels(names: dict[int, str]) -> list[str]:
    """The labels file: line i names class i as the model outputs it (label-map ids; 0 the background)."""
    return [BACKGROUND] + [names.get(i, UNUSED) for i in range(1, max(names) + 1)]


def with_metadata(model: bytes, names: dict[int, str]) -> bytes:
    """``model`` with MediaPipe / Task Library ObjectDetector metadata; ValueError if it does not describe the model."""
    _stand_in_for_metadata_version()
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, object_detector
    from official.vision.ops.preprocess_ops import MEAN_RGB, STDDEV_RGB

    writer = object_detector.MetadataWriter.create_for_models_with_nms(
        bytearray(model), list(MEAN_RGB), list(STDDEV_RGB), metadata_writer.Labels().add(labels(names))
    )
    written = bytes(writer.populate()[0])
    check_metadata(written)
    return written


def check_metadata(model: bytes) -> None:
    """The writer pairs names with outputs by tensor index (the op's port order): check each name sits on its output."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=model)
    by_index = {
        index: key for key, index in interpreter._get_full_signature_list()["serving_default"]["outputs"].items()
    }
    outputs = [by_index[detail["index"]] for detail in interpreter.get_output_details()]
    named = [tensor["name"] for tensor in read_metadata(model)["subgraph_metadata"][0]["output_tensor_metadata"]]
    if named != [METADATA_NAMES[key] for key in outputs]:
        raise ValueError(f"the metadata names the outputs {named}, but they are {outputs}")


def _stand_in_for_metadata_version() -> None:
    """Register MIN_PARSER_VERSION as the missing compiled module, unless this mediapipe has it."""
    import importlib.util
    import sys
    import types

    name = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"
    if name in sys.modules or importlib.util.find_spec("mediapipe.tasks.cc") is not None:
        return  # stood in already, or a mediapipe that ships it
    parts = name.split(".")
    for depth in range(3, len(parts)):  # mediapipe.tasks.cc ... down to the module itself
        sys.modules.setdefault(".".join(parts[:depth]), types.ModuleType(".".join(parts[:depth])))
    version = types.ModuleType(name)
    version.GetMinimumMetadataParserVersion = lambda _buffer: MIN_PARSER_VERSION
    sys.modules[name] = version


def read_metadata(model: bytes) -> dict:
    _stand_in_for_metadata_version()
    from mediapipe.tasks.python.metadata import metadata

    return json.loads(metadata.MetadataDisplayer.with_model_buffer(bytearray(model)).get_metadata_json())


class Runner:
    """A TFLite model run on an upright RGB image; boxes in that image's pixels, time spent in the interpreter."""

    def __init__(self, path: Path):
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=str(path))
        self.run = interpreter.get_signature_runner()
        self.size = [int(v) for v in interpreter.get_input_details()[0]["shape"][1:3]]
        self.seconds: list[float] = []

    def __call__(self, image) -> tuple[list, list, list]:
        """(boxes as (xmin, ymin, xmax, ymax) pixels, label-map ids, scores)."""
        pixels, (scale_y, scale_x) = preprocess(image, self.size)
        start = time.perf_counter()
        out = self.run(inputs=pixels[None])
        self.seconds.append(time.perf_counter() - start)
        count = int(out["num_detections"][0])
        height, width = self.size
        boxes = [
            (x0 * width / scale_x, y0 * height / scale_y, x1 * width / scale_x, y1 * height / scale_y)
            for y0, x0, y1, x1 in out["detection_boxes"][0, :count].tolist()
        ]
        return boxes, [int(c) for c in out["detection_classes"][0, :count]], out["detection_scores"][0, :count].tolist()
