"""A contact sheet of samples with their boxes drawn, for a phone screen.

Images with problems come first, framed red with the problem named under them,
and files that were left out get a tile saying why, so the user sees at a glance
what the report talks about.
"""

from __future__ import annotations

import hashlib
import io
import textwrap
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from pipeline.data.images import ALLOWED_FORMATS, record_image_bytes, to_rgb
from pipeline.data.reports import Problem
from pipeline.data.samples import Sample
from pipeline.drawing import class_color, label_box
from pipeline.files import replacing

TILE = 320
COLUMNS = 4
MAX_TILES = 16
MAX_LEFT_OUT_TILES = 2
PROBLEM_COLOR = (230, 40, 40)
BACKGROUND = (24, 24, 24)
LEFT_OUT_KINDS = ("bad_image", "bad_annotation")


def write_preview(
    source: Path,
    samples: Sequence[Sample],
    problems: Sequence[Problem],
    out: Path,
    label_of: Callable[[str], str | None] = lambda label: label,
) -> Path:
    """Draw up to 16 tiles, troubled images first, and save a JPEG at ``out``."""
    notes = _notes(samples, problems)
    left_out = [p for p in problems if p.kind in LEFT_OUT_KINDS][:MAX_LEFT_OUT_TILES]
    chosen = _choose(samples, notes, MAX_TILES - len(left_out))
    font = ImageFont.load_default(size=14)
    tiles = [_left_out_tile(problem, font) for problem in left_out]
    tiles += [_tile(source, sample, notes.get(sample.image, []), font, label_of) for sample in chosen]
    rows = max(1, -(-len(tiles) // COLUMNS))
    sheet = Image.new("RGB", (COLUMNS * TILE, rows * TILE), BACKGROUND)
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % COLUMNS) * TILE, (index // COLUMNS) * TILE))
    with replacing(out) as tmp:
        sheet.save(tmp, "JPEG", quality=85)
    return out


def _notes(samples: Sequence[Sample], problems: Sequence[Problem]) -> dict[str, list[str]]:
    """Problem kinds per sample image, whether the problem names the image or its XML."""
    owner = {s.image: s.image for s in samples} | {s.annotation: s.image for s in samples if s.annotation}
    notes: dict[str, list[str]] = defaultdict(list)
    for problem in problems:
        image = owner.get(problem.file)
        if image and problem.kind not in notes[image]:
            notes[image].append(problem.kind)
    return notes


def _choose(samples: Sequence[Sample], notes: dict[str, list[str]], room: int) -> list[Sample]:
    """Troubled first, then a spread over the rest that is stable for the same data."""
    first = [s for s in samples if s.image in notes][: room // 2]
    rest = sorted(
        (s for s in samples if s.image not in notes), key=lambda s: hashlib.sha1(s.sha256.encode()).hexdigest()
    )
    return first + rest[: room - len(first)]


def _tile(source: Path, sample: Sample, kinds: list[str], font, label_of) -> Image.Image:
    tile, draw, place = _canvas(source, sample)
    for box in sample.boxes:
        name = label_of(box.label)
        if name is not None:
            label_box(draw, place((box.xmin, box.ymin, box.xmax, box.ymax)), name, class_color(name), font)
    if kinds:
        draw.rectangle([0, 0, TILE - 1, TILE - 1], outline=PROBLEM_COLOR, width=5)
        _caption(draw, ", ".join(kinds), font)
    return tile


def _canvas(source: Path, sample: Sample):
    """A tile showing the sample as the records hold it, and a function placing pixel boxes on it."""
    encoded = io.BytesIO(record_image_bytes(source / sample.image, sample.transform))
    with Image.open(encoded, formats=ALLOWED_FORMATS) as image:
        image.draft("RGB", (TILE, TILE))  # the records' pixels, decoded small for speed
        image = to_rgb(image)
        scale = min(TILE / sample.width, TILE / sample.height)
        image = image.resize((max(1, round(sample.width * scale)), max(1, round(sample.height * scale))))
    tile = Image.new("RGB", (TILE, TILE), BACKGROUND)
    offset = ((TILE - image.width) // 2, (TILE - image.height) // 2)
    tile.paste(image, offset)

    def place(box):
        return [
            offset[0] + box[0] * scale,
            offset[1] + box[1] * scale,
            offset[0] + box[2] * scale,
            offset[1] + box[3] * scale,
        ]

    return tile, ImageDraw.Draw(tile), place


def draw_detections(source: Path, chosen, names: dict, threshold: float, out: Path) -> Path:
    """Validation images with a model's detections (``ImageBoxes`` in pixels) drawn, in one row."""
    font = ImageFont.load_default(size=14)
    sheet = Image.new("RGB", (max(1, len(chosen)) * TILE, TILE), BACKGROUND)
    for index, (sample, found) in enumerate(chosen):
        tile, draw, place = _canvas(source, sample)
        for box, class_id, score in zip(found.boxes, found.classes, found.scores):
            if score >= threshold:
                name = names.get(class_id, str(class_id))
                label_box(draw, place(box), f"{name} {score:.2f}", class_color(name), font)
        sheet.paste(tile, (index * TILE, 0))
    with replacing(out) as tmp:
        sheet.save(tmp, "JPEG", quality=85)
    return out


def _left_out_tile(problem: Problem, font) -> Image.Image:
    tile = Image.new("RGB", (TILE, TILE), (60, 16, 16))
    draw = ImageDraw.Draw(tile)
    text = "\n".join(textwrap.wrap(f"LEFT OUT: {problem.detail}", width=38)[:12])
    draw.multiline_text((12, 12), text, fill=(255, 255, 255), font=font, spacing=4)
    _caption(draw, problem.kind, font)
    return tile


def _caption(draw: ImageDraw.ImageDraw, text: str, font) -> None:
    draw.rectangle([0, TILE - 24, TILE, TILE], fill=PROBLEM_COLOR)
    draw.text((8, TILE - 21), text, fill=(255, 255, 255), font=font)
