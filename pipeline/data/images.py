"""Image checks and the bytes that go into a record.

Integrity needs a decode; for JPEG a reduced-scale decode (``draft``) still reads
the whole entropy-coded stream, so truncation is caught at a fraction of the cost.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from PIL import Image, UnidentifiedImageError

from pipeline.data.samples import Transform

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
# Every other Pillow plugin (TIFF, EPS via Ghostscript, ICO...) is attack surface a VOC dataset never needs.
ALLOWED_FORMATS = ("JPEG", "PNG")
# 50 MP holds a full-resolution 48 MP phone photo; decoded as RGBA it is 200 MB, what one worker may spend.
MAX_IMAGE_PIXELS = 50_000_000
# What one dataset may make detbot decode: ~3,300 12 MP photos, more than fit the 8 GiB zip limit as JPEG,
# while a zip of tiny, highly compressed PNGs that would take hours to decode is refused.
MAX_DATASET_PIXELS = 40_000_000_000
# Formats named in a bad_image report; Pillow is never asked, so none of its other parsers runs.
_SIGNATURES = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"icns", "ICNS"),
    (b"\x0a\x05\x01", "PCX"),
)
_HEIF_BRANDS = {b"avif": "AVIF", b"avis": "AVIF", b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF"}


class ImageCheckError(Exception):
    """The file cannot be used as an image; the message says why, for the report."""


@dataclass(frozen=True)
class PixelBudget:
    """How many pixels detbot decodes: per image, read from the header first, and per dataset."""

    image: int = MAX_IMAGE_PIXELS
    dataset: int = MAX_DATASET_PIXELS


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


def open_image(source: Path | IO[bytes], max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """A JPEG or PNG, opened but not decoded; anything else raises UnidentifiedImageError.

    The size comes from the header, so an image over ``max_pixels`` is refused before a
    single pixel is decoded (a small PNG can hold gigabytes of pixels).
    """
    try:
        with warnings.catch_warnings():  # Pillow warns from 89 MP; such an image is refused just below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source, formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:  # Pillow's own limit, hit before ours for absurd sizes
        raise ImageCheckError(f"is too large to decode safely ({_short(exc)}); downscale it") from None
    if image.width * image.height > max_pixels:
        image.close()
        raise ImageCheckError(
            f"is {image.width}x{image.height} ({image.width * image.height / 1e6:.0f} MP), "
            f"over the {max_pixels / 1e6:g} MP detbot decodes per image; downscale it"
        )
    return image


def header_pixels(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> int:
    """Width x height from the header alone; 0 for a file that will be refused anyway."""
    try:
        with open_image(path, max_pixels) as image:
            return image.width * image.height
    except (ImageCheckError, OSError, SyntaxError, ValueError):
        return 0


def check_image(data: bytes, suffix: str = "", max_pixels: int = MAX_IMAGE_PIXELS) -> ImageInfo:
    """Decode the image fully enough to prove it is intact; raise ImageCheckError if not.

    ``suffix`` (the file's extension) only makes the message name what the file claimed to be.
    """
    try:
        with open_image(io.BytesIO(data), max_pixels) as image:
            info = ImageInfo(image.format or "unknown", image.mode, image.width, image.height, _orientation(image))
            if image.format == "JPEG":
                image.draft(None, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except UnidentifiedImageError:
        raise ImageCheckError(_foreign(data, suffix)) from None
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
    with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
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


def _foreign(data: bytes, suffix: str) -> str:
    """Why a file that is not JPEG or PNG is refused, naming what it really is when that is known."""
    real = next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)
    if real is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        real = "WEBP"
    if real is None and data[4:8] == b"ftyp":
        real = _HEIF_BRANDS.get(data[8:12])
    if real is None:
        return "is not an image file (no known image format in its bytes)"
    named = f" named {suffix}" if suffix else ""
    return f"is {real} data{named}: only JPEG and PNG images are read; convert it to JPEG"


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
