"""Check one image and its annotation, and turn them into a ``Sample`` plus problems.

Runs in worker processes: it reads the image once (hash + decode) and never
touches TensorFlow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.data.images import ImageCheckError, ImageInfo, PixelBudget, check_image, header_pixels
from pipeline.data.pairing import PairTask
from pipeline.data.reports import Problem
from pipeline.data.samples import MIN_BOX_SIDE_PX, Box, Sample, Transform
from pipeline.data.voc import AnnotationError, VocAnnotation, VocObject
from pipeline.errors import DatasetRejected

# VOC coordinates are 1-based, so a box ending at width + 1 is normal, not an error.
EDGE_TOLERANCE_PX = 1.0
# Annotation tools that resized the image keep the aspect ratio; below this
# relative difference a size mismatch is a rescale, above it the boxes are kept.
ASPECT_TOLERANCE = 0.01
_EXTENSION_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


@dataclass(frozen=True)
class PairResult:
    sample: Sample | None
    problems: tuple[Problem, ...]


def check_pair(source: Path, task: PairTask) -> PairResult:
    try:
        annotation = task.load(source)
    except AnnotationError as exc:
        return PairResult(
            None,
            (
                Problem(
                    "bad_annotation",
                    task.annotation,
                    f"{task.annotation} {exc}",
                    "image left out; fix or re-export the XML",
                    {"image": task.image, "reason": str(exc)},
                ),
            ),
        )
    data = (source / task.image).read_bytes()
    try:
        info = check_image(data, PurePosixPath(task.image).suffix)
    except ImageCheckError as exc:
        return PairResult(
            None,
            (
                Problem(
                    "bad_image",
                    task.image,
                    f"{task.image} {exc}",
                    "left out of the records; re-export or replace the file",
                    {"reason": str(exc)},
                ),
            ),
        )
    problems: list[Problem] = []
    transform, width, height, scale = _reconcile(task, info, annotation, problems)
    boxes = _boxes(task, annotation.objects, width, height, scale, problems)
    sample = Sample(
        id=task.id,
        image=task.image,
        annotation=task.annotation,
        width=width,
        height=height,
        boxes=tuple(boxes),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        folder_split=task.split,
        transform=transform,
    )
    return PairResult(sample, tuple(problems))


def check_dataset_pixels(source: Path, images: Iterable[str], budget: PixelBudget = PixelBudget()) -> int:
    """The pixels the images hold, from their headers; a dataset over ``budget.dataset`` is refused.

    Runs before any image is decoded, so a zip of small files that expand to hours of
    decoding costs one header read per file. Images over the per-image budget, or not
    JPEG/PNG at all, count nothing: they are left out without being decoded.
    """
    total, largest = 0, (0, "")
    for name in images:
        pixels = header_pixels(source / name, budget.image)
        total += pixels
        largest = max(largest, (pixels, name))
    if total > budget.dataset:
        raise DatasetRejected(
            f"The images in this zip hold {total / 1e9:.1f} gigapixels, more than the {budget.dataset / 1e9:g} "
            f"gigapixels detbot decodes for one dataset (the largest, {largest[1]}, has {largest[0] / 1e6:.0f} MP). "
            "The detectors see at most 640x640 pixels: downscale the images (e.g. to 1600 px on the long side) "
            "or send the dataset in smaller parts.",
            kind="too_many_pixels",
            details={
                "gigapixels": round(total / 1e9, 1),
                "limit_gigapixels": budget.dataset / 1e9,
                "largest": largest[1],
                "largest_mp": round(largest[0] / 1e6),
            },
        )
    return total


def _reconcile(task: PairTask, info: ImageInfo, ann: VocAnnotation, problems: list[Problem]):
    """Decide the record's pixels (orientation, colour, format) and the boxes' scale."""
    orientation = _orientation(task, info, ann, problems)
    width, height = info.upright_size if orientation != 1 else (info.width, info.height)
    reencode = orientation != 1 or info.format != "JPEG"
    expected = _EXTENSION_FORMATS.get(PurePosixPath(task.image).suffix.lower())
    if info.format != expected:
        problems.append(
            Problem(
                "format_mismatch",
                task.image,
                f"{task.image} is a {info.format} file named like a {expected}",
                "re-encoded as JPEG for the records",
                {"format": info.format, "named": expected},
            )
        )
    convert_from = None
    if info.mode != "RGB":
        convert_from, reencode = info.mode, True
        problems.append(
            Problem(
                "color_converted",
                task.image,
                f"{task.image} is {_MODE_NAMES.get(info.mode, info.mode)}",
                "converted to 3-channel RGB",
                {"mode": info.mode},
            )
        )
    scale = _scale(task, ann, width, height, problems)
    return Transform(orientation, convert_from, reencode), width, height, scale


_MODE_NAMES = {
    "L": "grayscale",
    "LA": "grayscale with alpha",
    "P": "a palette image",
    "PA": "a palette image with alpha",
    "RGBA": "RGBA (with alpha)",
    "CMYK": "CMYK",
    "YCbCr": "YCbCr",
    "1": "black-and-white (1-bit)",
    "I;16": "16-bit grayscale",
    "I": "32-bit grayscale",
    "F": "floating-point grayscale",
}


def _orientation(task: PairTask, info: ImageInfo, ann: VocAnnotation, problems) -> int:
    if info.orientation == 1:
        return 1
    stored = (info.width, info.height)
    if info.swaps_axes and (ann.width, ann.height) == stored:
        problems.append(
            Problem(
                "exif_rotated",
                task.image,
                f"{task.image} has EXIF orientation {info.orientation}, but the XML "
                f"size {stored[0]}x{stored[1]} matches the stored pixels",
                "kept as stored, the view the boxes were drawn on",
                {"orientation": info.orientation, "stored": list(stored), "turned": False},
            )
        )
        return 1
    upright = info.upright_size
    problems.append(
        Problem(
            "exif_rotated",
            task.image,
            f"{task.image} has EXIF orientation {info.orientation}: stored "
            f"{stored[0]}x{stored[1]}, shown upright as {upright[0]}x{upright[1]}",
            "pixels turned upright, the view the boxes were drawn on",
            {"orientation": info.orientation, "stored": list(stored), "upright": list(upright), "turned": True},
        )
    )
    return info.orientation


def _scale(task: PairTask, ann: VocAnnotation, width: int, height: int, problems):
    if ann.normalized:
        return (float(width), float(height))
    if ann.width is None or ann.height is None or (ann.width, ann.height) == (width, height):
        return (1.0, 1.0)
    said = f"{task.annotation} says {ann.width}x{ann.height} but {task.image} is {width}x{height}"
    sizes = {"image": task.image, "said": [ann.width, ann.height], "real": [width, height]}
    if abs(ann.width / ann.height - width / height) <= ASPECT_TOLERANCE * (width / height):
        rescaled = "boxes rescaled to the real image size (same aspect ratio)"
        problems.append(Problem("size_mismatch", task.annotation, said, rescaled, sizes | {"rescaled": True}))
        return (width / ann.width, height / ann.height)
    kept = "boxes kept as drawn and clipped to the image; check this file"
    problems.append(Problem("size_mismatch", task.annotation, said, kept, sizes | {"rescaled": False}))
    return (1.0, 1.0)


def _boxes(task, objects: tuple[VocObject, ...], width, height, scale, problems) -> list[Box]:
    boxes = []
    for number, obj in enumerate(objects, start=1):
        where = f"object {number} ({obj.name or 'no name'}) in {task.annotation}"
        box = {"object": number, "label": obj.name or "", "image_size": [width, height]}
        if obj.defect:
            defect = box | {"reason": "defect", "defect": obj.defect}
            problems.append(Problem("box_dropped", task.annotation, f"{where} {obj.defect}", "box dropped", defect))
            continue
        xmin, ymin, xmax, ymax = (
            obj.bbox[0] * scale[0],
            obj.bbox[1] * scale[1],
            obj.bbox[2] * scale[0],
            obj.bbox[3] * scale[1],
        )
        if xmax <= xmin or ymax <= ymin:
            zero = xmax == xmin or ymax == ymin
            kind = "zero area" if zero else "inverted corners (max < min)"
            why = box | {"reason": "zero_area" if zero else "inverted", "box": list(obj.bbox)}
            problems.append(
                Problem("box_dropped", task.annotation, f"{where} has {kind}: {_coords(obj.bbox)}", "box dropped", why)
            )
            continue
        clipped = (max(0.0, xmin), max(0.0, ymin), min(float(width), xmax), min(float(height), ymax))
        if clipped[2] - clipped[0] < MIN_BOX_SIDE_PX or clipped[3] - clipped[1] < MIN_BOX_SIDE_PX:
            problems.append(
                Problem(
                    "box_dropped",
                    task.annotation,
                    f"{where} lies outside the {width}x{height} image: {_coords(obj.bbox)}",
                    "box dropped",
                    box | {"reason": "outside", "box": list(obj.bbox)},
                )
            )
            continue
        if max(clipped[0] - xmin, clipped[1] - ymin, xmax - clipped[2], ymax - clipped[3]) > EDGE_TOLERANCE_PX:
            problems.append(
                Problem(
                    "box_clipped",
                    task.annotation,
                    f"{where} reaches outside the {width}x{height} image: {_coords(obj.bbox)}",
                    f"clipped to {_coords(clipped)}",
                    box | {"box": list(obj.bbox), "clipped": [round(v, 2) for v in clipped]},
                )
            )
        boxes.append(Box(obj.name, *clipped, difficult=obj.difficult, truncated=obj.truncated))
    return boxes


def _coords(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"
