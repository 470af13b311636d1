"""Boxes drawn the same way everywhere a user sees them: dataset previews, training
detections and predictions.

Class names are drawn in NanumGothic (SIL Open Font License), shipped by the
koreanize-matplotlib package: PIL's default font has no Hangul, so Korean names came out
as empty boxes. Only its font file is used; importing that package would restyle matplotlib.
"""

from __future__ import annotations

import colorsys
import hashlib
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from PIL import ImageDraw, ImageFont

FONT_PACKAGE = "koreanize_matplotlib"
DEFAULT_SIZE = 14


def label_box(draw: ImageDraw.ImageDraw, xy, name: str, color, font=None) -> None:
    """``font``: the caller's, for its size; the face is always ``label_font``'s, which covers Hangul."""
    font = label_font(int(getattr(font, "size", DEFAULT_SIZE)))
    draw.rectangle(xy, outline=color, width=2)
    text_box = draw.textbbox((xy[0], xy[1]), name, font=font)
    draw.rectangle(text_box, fill=color)
    draw.text((xy[0], xy[1]), name, fill=(0, 0, 0), font=font)


def font_path() -> Path:
    """NanumGothic.ttf in the font package, found without importing it."""
    spec = find_spec(FONT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {FONT_PACKAGE} package (NanumGothic) is missing: reinstall detbot")
    return Path(next(iter(spec.submodule_search_locations))) / "fonts" / "NanumGothic.ttf"


@cache
def label_font(size: int) -> ImageFont.FreeTypeFont:
    """Loaded on first use and kept: a preview or a batch of detections draws hundreds of names."""
    return ImageFont.truetype(str(font_path()), size)


def class_color(name: str) -> tuple[int, int, int]:
    """A bright colour per class, the same on every run."""
    hue = int(hashlib.md5(name.encode()).hexdigest()[:6], 16) / 0xFFFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
    return (int(r * 255), int(g * 255), int(b * 255))
