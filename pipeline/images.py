"""Image checks and the bytes that go into a record.

Integrity needs a decode; for JPEG a reduced-scale decode (``draft``) still reads
the whole entropy-coded stream, so truncation is caught at a fraction of the cost.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .dataset import Transform

EXIF_ORIENTATION = 0x0112
# Pillow's transpose that undoes each EXIF orientation (2..8).
_UNDO_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
JPEG_QUALITY = 95
# Transparent pixels have arbitrary colours underneath; white is what viewers show.
_MATTE = (255, 255, 255)


class ImageCheckError(Exception):
    """The file cannot be used as an image; the message says why, for the report."""


@dataclass(frozen=True)
class ImageInfo:
    format: str  # what the bytes are (JPEG, PNG, GIF...), whatever the extension says
    mode: str
    width: int  # as stored, before any EXIF orientation
    height: int
    orientation: int

    @property
    def swaps_axes(self) -> bool:
        return self.orientation in (5, 6, 7, 8)

    @property
    def upright_size(self) -> tuple[int, int]:
        return (self.height, self.width) if self.swaps_axes else (self.width, self.height)


def check_image(data: bytes) -> ImageInfo:
    """Decode the image fully enough to prove it is intact; raise ImageCheckError if not."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            info = ImageInfo(image.format or "unknown", image.mode, image.width, image.height,
                             _orientation(image))
            if image.format == "JPEG":
                image.draft(None, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except UnidentifiedImageError:
        raise ImageCheckError("not an image file (no known image format in its bytes)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if "truncated" in str(exc).lower():
            raise ImageCheckError(f"is truncated: the file ends before its image data does ({_short(exc)})") from None
        raise ImageCheckError(f"is corrupt and cannot be decoded ({_short(exc)})") from None
    if info.width < 1 or info.height < 1:
        raise ImageCheckError("has no pixels (width or height is 0)")
    return info


def record_image_bytes(path: Path, transform: Transform) -> bytes:
    """The encoded image for the record: the file untouched unless it must change."""
    data = path.read_bytes()
    if transform.passthrough:
        return data
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        undo = _UNDO_ORIENTATION.get(transform.orientation)
        if undo is not None:
            image = image.transpose(undo)
        out = io.BytesIO()
        to_rgb(image).save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, compositing transparency onto a white matte."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Scale wide grey to 8 bits by its real range instead of clipping at 255.
        low, high = image.getextrema()
        scale = 255.0 / (high - low) if high > low else 0.0
        image = image.point(lambda v: (v - low) * scale).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = image.convert("RGBA")
        matte = Image.new("RGB", rgba.size, _MATTE)
        matte.paste(rgba, mask=rgba.getchannel("A"))
        return matte
    return image if image.mode == "RGB" else image.convert("RGB")


def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # a corrupt EXIF block must not cost the image; treat it as upright
        return 1
    return value if value in _UNDO_ORIENTATION else 1


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
