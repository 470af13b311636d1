"""The archive's README.md: what is in it, how to run each model, what each scored and how fast it ran here."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.export.archive import Artefact, Checkpoint

# Python, as models exported by the TF Object Detection API are called (tests/test_export.py runs it).
SNIPPET = """\
import sys, numpy as np, tensorflow as tf
from PIL import Image, ImageOps
LABELS = {labels!r}
detect_fn = tf.saved_model.load("saved_model")
image = ImageOps.exif_transpose(Image.open(sys.argv[1])).convert("RGB")  # upright, as a phone shows it
out = detect_fn(tf.convert_to_tensor(np.asarray(image))[tf.newaxis, ...])
w, h = image.size  # boxes are [ymin, xmin, ymax, xmax] in 0..1 of the image: scale them to its pixels
for (y0, x0, y1, x1), score, c in zip(*(out[f"detection_{{k}}"][0].numpy() for k in ("boxes", "scores", "classes"))):
    if score >= 0.3 and (x1 - x0) * w >= 1 and (y1 - y0) * h >= 1:  # a box clipped to a line is none
        print(LABELS.get(int(c), int(c)), round(float(score), 3), [round(v) for v in (x0 * w, y0 * h, x1 * w, y1 * h)])
"""

# Android, TFLite Task Library (org.tensorflow:tensorflow-lite-task-vision): labels and normalisation come from
# the model's metadata.
KOTLIN = """\
val options = ObjectDetector.ObjectDetectorOptions.builder()
    .setScoreThreshold(0.3f)
    .setMaxResults(10)
    .build()
val detector = ObjectDetector.createFromFileAndOptions(context, "{file}", options)
for (found in detector.detect(TensorImage.fromBitmap(bitmap))) {{
    val best = found.categories[0]  // label from the model's labels.txt, boundingBox in the bitmap's pixels
    Log.i("detector", "${{best.label}} ${{best.score}} ${{found.boundingBox}}")
}}
"""


def readme(
    model: str, names: dict[int, str], checked: dict, artefacts: tuple[Artefact, ...], chosen: Checkpoint, size
) -> str:
    height, width = size
    kept = [a for a in artefacts if a.kept and a.file.endswith(".tflite")]
    lines = [
        f"# {model} detector ({', '.join(names.values())})",
        "",
        f"Checked on {checked['images']} validation images: AP {checked['AP']:.3f}, AP50 {checked['AP50']:.3f} "
        "(`metrics.json`, `confusion.png`, `samples/`). The model sees {height}x{width} pixels: any image is "
        "resized to fit, keeping its aspect ratio.".format(height=height, width=width),
        "",
        "## Python",
        "",
        "`saved_model/` is in the TF Object Detection API's format (`pip install tensorflow pillow`, then from "
        "this folder):",
        "",
        "```python",
        *SNIPPET.format(labels=names).splitlines(),
        "```",
        "",
        "Input: uint8 `input_tensor` [1, H, W, 3], RGB, any H and W. Outputs (float32): `detection_boxes` "
        "[1, N, 4] as [ymin, xmin, ymax, xmax] in 0..1 of the image passed, `detection_classes` the ids in "
        "`label_map.pbtxt`, `detection_scores`, `num_detections`. "
        '`detect_fn.signatures["serving_default"](input_tensor=...)` is the same function.',
        "",
        *_models(artefacts, chosen),
        *_android(kept, height, width),
        "## Continue training",
        "",
        f"`checkpoint/ckpt-{chosen.step}` holds the weights of step {chosen.step} ({chosen.note}), rooted as Model "
        "Garden's `task.init_checkpoint` reads them; `params.yaml` is the training config. With Model Garden, train "
        f"from `params.yaml` with `task.init_checkpoint=checkpoint/ckpt-{chosen.step}` and "
        "`task.init_checkpoint_modules=all` (same classes); with detbot, `python -m pipeline train WORKSPACE "
        f"--pretrained-url PATH/checkpoint/ckpt-{chosen.step}` starts a new job from it (any classes: what is "
        "restored is in detbot's README, *Pretrained weights*).",
    ]
    return "\n".join(lines) + "\n"


def _models(artefacts: tuple[Artefact, ...], chosen: Checkpoint) -> list[str]:
    reference = "training's" if chosen.training else "the SavedModel's"
    rows = [
        f"| `{a.file}` | {a.bytes / 2**20:.1f} MB | {_num(a.ap50, 3)} | {_num(a.tolerance, 3)} | "
        f"{_num(a.latency_ms, 1)} | {a.note} |"
        for a in artefacts
        if a.kept and a.ap50 is not None
    ]
    left_out = [f"- `{a.file}` is not included: {a.note}" for a in artefacts if not a.kept]
    return [
        "## The models",
        "",
        f"Each was run in a fresh process on the validation images; AP50 must be within the tolerance of {reference} "
        "(never below 1/boxes: one box flipping on a small validation set moves AP50 by that). Latency: median ms "
        "per image on the exporting machine's CPU (the SavedModel with its resizing, a TFLite model in the "
        "interpreter alone).",
        "",
        "| file | size | AP50 | tolerance | latency (ms) | what |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        *left_out,
        *([""] if left_out else []),
    ]


def _android(kept: list[Artefact], height: int, width: int) -> list[str]:
    if not kept:
        return []
    return [
        "## Android and other TFLite users",
        "",
        f"Every `.tflite` takes float32 [1, {height}, {width}, 3] RGB: subtract the mean (123.675, 116.28, 103.53) and "
        "divide by (58.395, 57.12, 57.375) per channel, resize keeping the aspect ratio so the image fits, pad "
        "bottom and right with zeros (the int8 model quantises inside: its input is float32 too). Its outputs, in "
        "the TFLite detection op's order: boxes [1, N, 4] ([ymin, xmin, ymax, xmax] in 0..1 of that padded input), "
        "classes (label-map ids; 0, the background, has no use), scores, count. The metadata carries the labels "
        "(`labels.txt`: line i names class i), the normalisation and these output names, so the TFLite Task "
        "Library's and MediaPipe's ObjectDetector load it as it is (Kotlin):",
        "",
        "```kotlin",
        *KOTLIN.format(file=kept[0].file).splitlines(),
        "```",
        "",
        "The Task Library stretches a photo to the input instead of padding it: for photos far from square, pad "
        "them to a square first to see what the checks above measured.",
        "",
    ]


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
