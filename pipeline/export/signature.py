"""The archive's SavedModel, in the TF Object Detection API's export format, and its training checkpoint.

Model Garden's ``DetectionModule`` does the work (resize, normalise, the network, its own
non-max suppression, boxes normalised to the caller's image); the module below only gives it
the interface exporter_main_v2 models have, so code written for the OD API runs unchanged:

    detect_fn = tf.saved_model.load(path)
    out = detect_fn(tf.convert_to_tensor(image)[tf.newaxis, ...])   # or .signatures["serving_default"]

uint8 ``input_tensor`` [1, H, W, 3] of any size; float32 ``detection_boxes`` [1, N, 4]
([ymin, xmin, ymax, xmax] in 0..1 of the image passed), ``detection_classes`` (label-map ids:
Model Garden's class 0 is the background, so its classes are the label map's 1-based ids),
``detection_scores`` and ``num_detections`` [1].
"""

from __future__ import annotations

import contextlib
import copy
import functools
from pathlib import Path

from pipeline.errors import ExportError

INPUT = "input_tensor"
OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")


def export_saved_model(params, weights: str, out: Path):
    """Write the OD-API SavedModel of the checkpoint ``weights`` to ``out``; return its network, weights restored."""
    import tensorflow as tf
    from official.vision.serving import export_saved_model_lib

    serving = copy.deepcopy(params)
    # The OD API's outputs are all float32 and its boxes normalised; Model Garden casts and normalises on request.
    serving.override(
        {
            "task": {
                "export_config": {
                    "output_normalized_coordinates": True,
                    "cast_detection_classes_to_float": True,
                    "cast_num_detections_to_float": True,
                }
            }
        },
        is_strict=True,
    )
    size = list(serving.task.model.input_size[:2])
    # Batch 1, as the OD API's input_tensor: it also keeps training's NMS (Model Garden swaps a batch-agnostic
    # "batched" NMS in for an unknown batch size), so the export scores what training's evaluation scored.
    module = _module_class()(serving, batch_size=1, input_image_size=size, input_type="image_tensor")
    try:
        with without_layer_traces():
            export_saved_model_lib.export_inference_graph(
                input_type="image_tensor",
                batch_size=1,
                input_image_size=size,
                params=serving,
                checkpoint_path=weights,
                export_dir=str(out),
                export_module=module,
            )
    except (AssertionError, ValueError, tf.errors.OpError) as exc:  # e.g. weights that do not fit params.yaml
        raise ExportError(
            f"Model Garden could not export the checkpoint with the job's params.yaml: {first_line(exc)}",
            kind="export_broken",
        ) from exc
    return module.model


@contextlib.contextmanager
def without_layer_traces():
    """Model Garden saves its export module with the Keras model inside, and Keras then also traces and saves the
    call functions of every layer (about 500 for mobilenetv2-fpn) that no caller of the SavedModel uses, yet every
    loader restores. Measured without them: the same outputs and byte-identical TFLite models, the archive's
    saved_model.pb half the size (2.8 against 5.4 MB), TFLite conversion 2-3x faster, loading faster."""
    from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope

    with keras_option_scope(save_traces=False):
        yield


@functools.cache
def _module_class():
    """Model Garden's DetectionModule with the OD API's call: built on first use, as TensorFlow is imported lazily."""
    import tensorflow as tf
    from official.vision.serving import detection

    class ObjectDetectionApiModule(detection.DetectionModule):
        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name=INPUT)])
        def __call__(self, input_tensor):
            outputs = self.serve(input_tensor)
            return {key: outputs[key] for key in OUTPUTS}  # image_info is Model Garden's, not the OD API's

        def get_inference_signatures(self, function_keys):
            # One traced function serves both ways in: calling the object and its serving_default signature.
            return {name: self.__call__.get_concrete_function() for name in function_keys.values()}

    return ObjectDetectionApiModule


def write_checkpoint(model, step: int, folder: Path) -> str:
    """``model``'s weights as ``folder/ckpt-STEP``, in the layout Model Garden's ``task.init_checkpoint`` reads.

    The job's checkpoint holds the network under ``model/``; Model Garden's task initialisation (and so
    ``train --pretrained-url``) reads ``backbone``, ``decoder`` and ``head`` at the root: the weights are
    re-rooted once here rather than by every user.
    """
    import tensorflow as tf

    return tf.train.Checkpoint(**model.checkpoint_items).write(str(folder / f"ckpt-{step}"))


def first_line(exc: BaseException) -> str:
    line = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return line if len(line) <= 200 else line[:197] + "..."
