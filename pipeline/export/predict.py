"""Run an exported model archive on one image, as its user sees the image.

The logic is the archive README's snippet: the photo turned upright by its EXIF
orientation, the SavedModel's normalised boxes scaled to that image's pixels. Only
``saved_model/`` and ``label_map.pbtxt`` are needed, so archives exported before the
TFLite variants and the checkpoint were added still predict.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from pipeline.data.images import ImageCheckError, open_image, to_rgb
from pipeline.data.samples import MIN_BOX_SIDE_PX
from pipeline.drawing import class_color, label_box
from pipeline.errors import UsageError
from pipeline.files import replacing
from pipeline.label_map import read_pbtxt
from pipeline.train.devices import configure_tensorflow

log = logging.getLogger(__name__)
SAVED_MODEL = "saved_model"
LABEL_MAP = "label_map.pbtxt"
DEFAULT_THRESHOLD = 0.3
MIN_DRAWN_SIDE = 480


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in pixels of the upright image
    class_id: int | None = None  # the label map's id; not kept by ``to_json``

    def to_json(self) -> dict:
        return {"label": self.label, "score": round(self.score, 4), "box": [round(v, 1) for v in self.box]}

    @classmethod
    def from_json(cls, data: dict) -> Detection:
        """Back from ``to_json``: enough to draw it again, at another threshold, without the model."""
        return cls(label=str(data["label"]), score=float(data["score"]), box=tuple(float(v) for v in data["box"]))


@dataclass(frozen=True)
class Model:
    """A loaded SavedModel's serving function and its class names by id."""

    serve: object
    names: dict[int, str]


def predict(archive: Path, image_path: Path, threshold: float = DEFAULT_THRESHOLD) -> list[Detection]:
    return detect(load_model(extract(archive)), open_upright(image_path), threshold)


def extract(archive: Path) -> Path:
    """The archive unpacked into ``ARCHIVE.cache/SHA256/``, unpacked only the first time."""
    archive = Path(archive)
    if not archive.is_file():
        raise UsageError(
            f"There is no model archive at {archive}: make one with "
            "`python -m pipeline export JOB_DIR --out MODEL.zip`.",
            kind="no_archive",
        )
    with archive.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    cache = archive.with_name(archive.name + ".cache")
    target = cache / digest
    if target.exists():
        return target
    cache.mkdir(exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=cache, prefix=".partial-"))
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(partial)  # extractall strips absolute and ".." parts: nothing lands outside
        _check_layout(partial, archive)
        try:
            partial.rename(target)
        except OSError:
            if not target.exists():
                raise  # otherwise another process unpacked the same archive first
    except zipfile.BadZipFile:
        raise UsageError(
            f"{archive} is not a zip file; give the .zip that `export` wrote.", kind="bad_archive"
        ) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    for stale in cache.iterdir():  # earlier versions of an archive that was replaced
        if stale != target and not stale.name.startswith(".partial-"):
            shutil.rmtree(stale, ignore_errors=True)
    log.info("extracted %s into %s", archive, target)
    return target


def _check_layout(folder: Path, archive: Path) -> None:
    if not (folder / SAVED_MODEL / "saved_model.pb").exists() or not (folder / LABEL_MAP).exists():
        raise UsageError(
            f"{archive} is not a detbot model archive (no {SAVED_MODEL}/ and {LABEL_MAP} inside): "
            "give the .zip that `python -m pipeline export` wrote.",
            kind="bad_archive",
        )


@functools.lru_cache(maxsize=2)
def load_model(folder: Path) -> Model:
    """Load once per process: a SavedModel takes seconds to load and the bot predicts again and again."""
    import tensorflow as tf

    configure_tensorflow(tf)
    loaded = tf.saved_model.load(str(folder / SAVED_MODEL))
    names = read_pbtxt(folder / LABEL_MAP).names()
    return Model(serve=_Serving(loaded), names=names)


class _Serving:
    """Keeps the loaded object alive: its signature alone does not hold the variables."""

    def __init__(self, loaded):
        self.loaded, self.function = loaded, loaded.signatures["serving_default"]
        # "input_tensor" (the OD API's name); archives exported before it took "inputs", and the bot keeps those.
        (self.input,) = self.function.structured_input_signature[1]

    def __call__(self, pixels):
        import tensorflow as tf

        return self.function(**{self.input: tf.constant(pixels[None])})


def open_upright(image_path: Path) -> Image.Image:
    """The image as a person sees it: EXIF orientation applied (phone photos), 8-bit RGB."""
    try:
        with open_image(image_path) as image:
            return to_rgb(ImageOps.exif_transpose(image))
    except FileNotFoundError:
        raise UsageError(f"There is no image at {image_path}.", kind="no_image") from None
    except (UnidentifiedImageError, OSError, ImageCheckError) as exc:
        raise UsageError(f"{image_path} cannot be read as an image ({exc}).", kind="unreadable_image") from None


def detect(model: Model, image: Image.Image, threshold: float = DEFAULT_THRESHOLD) -> list[Detection]:
    """Detections scoring at least ``threshold``, best first, boxes in ``image``'s pixels."""
    import numpy as np

    outputs = model.serve(np.asarray(image, dtype=np.uint8))
    count = int(outputs["num_detections"][0])
    boxes = outputs["detection_boxes"][0, :count].numpy()  # ymin, xmin, ymax, xmax in 0..1
    scores = outputs["detection_scores"][0, :count].numpy()
    classes = outputs["detection_classes"][0, :count].numpy()
    width, height = image.size
    found = [
        Detection(
            label=model.names.get(int(cid), str(int(cid))),
            score=float(score),
            box=(float(x0 * width), float(y0 * height), float(x1 * width), float(y1 * height)),
            class_id=int(cid),
        )
        for (y0, x0, y1, x1), score, cid in zip(boxes, scores, classes)
        # Model Garden clips boxes to the image, so one regressed past an edge comes back as a line along it.
        if score >= threshold and (x1 - x0) * width >= MIN_BOX_SIDE_PX and (y1 - y0) * height >= MIN_BOX_SIDE_PX
    ]
    return sorted(found, key=lambda d: -d.score)


def draw(image: Image.Image | Path, detections: list[Detection], out: Path) -> Path:
    """Write ``image`` with each detection's box, label and score, in its class colour."""
    picture = open_upright(image) if isinstance(image, Path) else image
    # Labels on a small image would cover what they label; a phone shows the result large anyway.
    zoom = max(1, math.ceil(MIN_DRAWN_SIDE / min(picture.size)))
    picture = picture.resize((picture.width * zoom, picture.height * zoom), Image.Resampling.NEAREST)
    canvas = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(12, min(picture.size) // 36))
    for detection in sorted(detections, key=lambda d: d.score):  # the best on top
        label_box(
            canvas,
            [v * zoom for v in detection.box],
            f"{detection.label} {detection.score:.2f}",
            class_color(detection.label),
            font,
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as tmp:
        picture.save(tmp, format=Image.registered_extensions().get(out.suffix.lower(), "PNG"))
    return out
