"""Boxes drawn the same way everywhere a user sees them: dataset previews, training
detections and predictions."""

from __future__ import annotations

import colorsys
import hashlib

from PIL import ImageDraw


def label_box(draw: ImageDraw.ImageDraw, xy, name: str, color, font) -> None:
    draw.rectangle(xy, outline=color, width=2)
    text_box = draw.textbbox((xy[0], xy[1]), name, font=font)
    draw.rectangle(text_box, fill=color)
    draw.text((xy[0], xy[1]), name, fill=(0, 0, 0), font=font)


def class_color(name: str) -> tuple[int, int, int]:
    """A bright colour per class, the same on every run."""
    hue = int(hashlib.md5(name.encode()).hexdigest()[:6], 16) / 0xFFFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
    return (int(r * 255), int(g * 255), int(b * 255))
