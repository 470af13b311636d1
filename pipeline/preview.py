"""A contact sheet of samples with their boxes drawn, for a phone screen.

Images with problems come first and get a red frame, so the user sees at a
glance what the report talks about.
"""
from __future__ import annotations

import colorsys
import hashlib
import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .dataset import Sample
from .images import record_image_bytes, to_rgb

TILE = 320
COLUMNS = 4
MAX_TILES = 16
PROBLEM_COLOR = (230, 40, 40)


def write_preview(source: Path, samples: list[Sample], flagged: set[str], out: Path,
                  label_of=lambda label: label) -> Path:
    """Draw up to 16 samples, flagged ones first, and save a JPEG at ``out``."""
    chosen = _choose(samples, flagged)
    rows = max(1, -(-len(chosen) // COLUMNS))
    sheet = Image.new("RGB", (COLUMNS * TILE, rows * TILE), (24, 24, 24))
    font = ImageFont.load_default(size=14)
    for index, sample in enumerate(chosen):
        tile = _tile(source, sample, sample.image in flagged, font, label_of)
        sheet.paste(tile, ((index % COLUMNS) * TILE, (index // COLUMNS) * TILE))
    tmp = out.with_name(out.name + ".tmp")
    sheet.save(tmp, "JPEG", quality=85)
    tmp.replace(out)
    return out


def _choose(samples: list[Sample], flagged: set[str]) -> list[Sample]:
    """Flagged first, then a spread over the rest that is stable for the same data."""
    first = [s for s in samples if s.image in flagged][: MAX_TILES // 2]
    rest = sorted((s for s in samples if s.image not in flagged),
                  key=lambda s: hashlib.sha1(s.sha256.encode()).hexdigest())
    return first + rest[: MAX_TILES - len(first)]


def _tile(source: Path, sample: Sample, flagged: bool, font, label_of) -> Image.Image:
    with Image.open(io.BytesIO(record_image_bytes(source / sample.image, sample.transform))) as image:
        image.draft("RGB", (TILE, TILE))  # the records' pixels, decoded small for speed
        image = to_rgb(image)
        scale = min(TILE / sample.width, TILE / sample.height)
        image = image.resize((max(1, round(sample.width * scale)), max(1, round(sample.height * scale))))
    tile = Image.new("RGB", (TILE, TILE), (24, 24, 24))
    offset = ((TILE - image.width) // 2, (TILE - image.height) // 2)
    tile.paste(image, offset)
    draw = ImageDraw.Draw(tile)
    for box in sample.boxes:
        name = label_of(box.label)
        if name is None:
            continue
        color = class_color(name)
        xy = [offset[0] + box.xmin * scale, offset[1] + box.ymin * scale,
              offset[0] + box.xmax * scale, offset[1] + box.ymax * scale]
        draw.rectangle(xy, outline=color, width=2)
        text_box = draw.textbbox((xy[0], xy[1]), name, font=font)
        draw.rectangle(text_box, fill=color)
        draw.text((xy[0], xy[1]), name, fill=(0, 0, 0), font=font)
    if flagged:
        draw.rectangle([0, 0, TILE - 1, TILE - 1], outline=PROBLEM_COLOR, width=5)
    return tile


def class_color(name: str) -> tuple[int, int, int]:
    """A bright colour per class, the same on every run."""
    hue = int(hashlib.md5(name.encode()).hexdigest()[:6], 16) / 0xFFFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
    return (int(r * 255), int(g * 255), int(b * 255))
