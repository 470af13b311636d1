"""Generated datasets of coloured shapes (Pascal VOC, COCO or YOLO), zipped the way users send them.

Used by the tests, the benchmarks and ``python -m pipeline demo`` (a dataset to try
the whole flow without data of your own). ``photo_like`` adds texture so JPEGs have
the size and decode cost of real photos.
"""

from __future__ import annotations

import io
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from pipeline.data.formats import writers
from pipeline.data.formats.writers import Entry, write_dataset_zip
from pipeline.data.samples import Box

SHAPES = ("circle", "square", "triangle")
_COLORS = {"circle": (220, 50, 40), "square": (40, 160, 60), "triangle": (40, 80, 220)}


@dataclass(frozen=True)
class SyntheticSpec:
    images: int = 60
    seed: int = 0
    size: tuple[int, int] = (256, 256)
    size_jitter: float = 0.0  # +/- fraction of width and height
    boxes: tuple[int, int] = (1, 3)  # objects per image, inclusive range
    classes: tuple[str, ...] = SHAPES
    photo_like: bool = False
    quality: int = 90


def make_voc_zip(path: Path, spec: SyntheticSpec = SyntheticSpec(), root: str = "shapes") -> Path:
    """Write ``root/JPEGImages/*.jpg`` and ``root/Annotations/*.xml`` into a zip at ``path``."""
    rng = random.Random(spec.seed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(spec.images):
            name = f"{index:06d}"
            jpeg, xml = render_sample(rng, spec, f"{name}.jpg")
            archive.writestr(f"{root}/JPEGImages/{name}.jpg", jpeg, compress_type=zipfile.ZIP_STORED)
            archive.writestr(f"{root}/Annotations/{name}.xml", xml)
    return path


def make_dataset_zip(path: Path, spec: SyntheticSpec = SyntheticSpec(), fmt: str = "voc", root: str = "shapes") -> Path:
    """The same images as ``make_voc_zip`` (same seed, same pixels and boxes), written in ``fmt``
    by ``pipeline.data.formats.writers`` (``voc``, ``coco`` or ``yolo``, in ``root/``)."""
    if fmt == "voc":
        return make_voc_zip(path, spec, root)
    rng = random.Random(spec.seed)
    entries = (
        Entry(f"{index:06d}.jpg", jpeg, width, height, tuple(Box(*obj) for obj in objects), root)
        for index in range(spec.images)
        for jpeg, width, height, objects in [render(rng, spec)]
    )
    write_dataset_zip(path, entries, fmt, sorted(spec.classes))
    return path


def render_sample(rng: random.Random, spec: SyntheticSpec, filename: str) -> tuple[bytes, str]:
    jpeg, width, height, objects = render(rng, spec)
    return jpeg, voc_xml(filename, width, height, objects)


def render(rng: random.Random, spec: SyntheticSpec) -> tuple[bytes, int, int, list[tuple]]:
    """One JPEG of shapes and its objects as (label, xmin, ymin, xmax, ymax) in pixels."""
    width, height = (round(side * (1 + rng.uniform(-spec.size_jitter, spec.size_jitter))) for side in spec.size)
    image = _background(rng, width, height, spec.photo_like)
    draw = ImageDraw.Draw(image)
    objects = []
    for _ in range(rng.randint(*spec.boxes)):
        label = rng.choice(spec.classes)
        side = rng.randint(max(8, min(width, height) // 8), max(9, min(width, height) // 3))
        x, y = rng.randint(0, width - side), rng.randint(0, height - side)
        _draw_shape(draw, label, (x, y, x + side, y + side), _jitter(rng, _COLORS.get(label, (200, 200, 0))))
        objects.append((label, x, y, x + side, y + side))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=spec.quality)
    return out.getvalue(), width, height, objects


def voc_xml(filename: str, width: int, height: int, objects) -> str:
    """A Pascal VOC annotation as LabelImg writes it, from (label, xmin, ymin, xmax, ymax) tuples."""
    return writers.voc_xml(filename, width, height, [Box(*obj) for obj in objects])


def _background(rng: random.Random, width: int, height: int, photo_like: bool) -> Image.Image:
    base = tuple(rng.randint(90, 200) for _ in range(3))
    if not photo_like:
        return Image.new("RGB", (width, height), base)
    # Blurred coarse noise plus fine grain: compresses and decodes like a photo.
    coarse = Image.frombytes(
        "RGB", (width // 16 + 1, height // 16 + 1), rng.randbytes(3 * (width // 16 + 1) * (height // 16 + 1))
    )
    image = Image.blend(
        coarse.resize((width, height), Image.Resampling.BICUBIC), Image.new("RGB", (width, height), base), 0.5
    )
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height)).filter(ImageFilter.BoxBlur(1))
    return Image.composite(
        image, Image.new("RGB", (width, height), (128, 128, 128)), grain.point(lambda v: 200 + v // 5)
    )


def _draw_shape(draw: ImageDraw.ImageDraw, label: str, box, color) -> None:
    if label == "circle":
        draw.ellipse(box, fill=color)
    elif label == "triangle":
        draw.polygon([((box[0] + box[2]) / 2, box[1]), (box[0], box[3]), (box[2], box[3])], fill=color)
    else:
        draw.rectangle(box, fill=color)


def _jitter(rng: random.Random, color: tuple[int, int, int]) -> tuple[int, ...]:
    return tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in color)
