"""LabelMe JSON: one file per image with ``shapes``; rectangles are boxes, polygons and circles get theirs.

The image is the file ``imagePath`` names (relative to the JSON, or any folder), else the
image with the JSON's name, else the copy embedded in ``imageData``, which is written out
beside the JSON so every later step sees an ordinary file.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path, PurePosixPath

from pipeline.data.formats.untrusted import number, positive_int
from pipeline.data.pairing import Claim, ImageIndex
from pipeline.data.reports import Problem
from pipeline.data.voc import MAX_OBJECTS, AnnotationError, VocAnnotation, VocObject

MAX_EMBEDDED_BYTES = 50 * 2**20
_MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"))


def is_labelme(document) -> bool:
    return isinstance(document, dict) and isinstance(document.get("shapes"), list)


def labelme_claim(
    document: dict, path: str, source: Path, index: ImageIndex, problems: list[Problem]
) -> tuple[Claim | None, str | None]:
    """(the claim, the image written out of ``imageData`` or None)."""
    image, written = _image(document, path, source, index)
    if image is None:
        problems.append(
            Problem(
                "annotation_without_image",
                path,
                f"{path} names {document.get('imagePath')!r}, which is not in the zip, and embeds no image",
                "left out; add the image or remove the JSON",
            )
        )
        return None, None
    return Claim(image, path, _annotation(document)), written


def _image(document: dict, path: str, source: Path, index: ImageIndex) -> tuple[str | None, str | None]:
    reference = document.get("imagePath")
    if isinstance(reference, str) and reference.strip():
        beside = _join(str(PurePosixPath(path).parent), reference)
        found = index.resolve(beside, near=path) if beside else None
        found = found or index.resolve(reference, near=path)
        if found:
            return found, None
    found = index.match(path)
    if found:
        return found, None
    written = _write_embedded(document.get("imageData"), path, source)
    return written, written


def _join(folder: str, reference: str) -> str | None:
    """``folder/reference`` with ``..`` resolved inside the zip; None when it climbs out."""
    parts = [] if folder == "." else folder.split("/")
    for part in reference.replace("\\", "/").split("/"):
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts) or None


def _write_embedded(data, path: str, source: Path) -> str | None:
    if not isinstance(data, str) or len(data) > MAX_EMBEDDED_BYTES * 4 // 3 + 4:
        return None
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return None
    suffix = next((suffix for magic, suffix in _MAGIC if raw.startswith(magic)), None)
    if suffix is None:
        return None
    name = str(PurePosixPath(path).with_suffix(suffix))
    target = source / name
    # The name is the JSON's, inside the extracted folder; nothing of the zip's is there
    # (index.match found no image of that name), so writing it replaces only our own copy.
    if target.is_symlink() or (target.exists() and not target.is_file()):
        return None
    target.write_bytes(raw)
    return name


def _annotation(document: dict) -> VocAnnotation | AnnotationError:
    shapes = document["shapes"]
    if len(shapes) > MAX_OBJECTS:
        return AnnotationError(f"has {len(shapes)} shapes (limit {MAX_OBJECTS})")
    return VocAnnotation(
        filename=document.get("imagePath") if isinstance(document.get("imagePath"), str) else None,
        width=positive_int(document.get("imageWidth")),
        height=positive_int(document.get("imageHeight")),
        objects=tuple(_object(shape) for shape in shapes),
    )


def _object(shape) -> VocObject:
    if not isinstance(shape, dict):
        return VocObject(None, None, False, False, "is not a shape")
    label = shape.get("label").strip() if isinstance(shape.get("label"), str) else ""
    if not label:
        return VocObject(None, None, False, False, "has no label")
    kind = shape.get("shape_type") or "polygon"
    try:
        raw = shape.get("points") if isinstance(shape.get("points"), list) else []
        points = [(number(p[0]), number(p[1])) for p in raw if isinstance(p, list) and len(p) == 2]
    except ValueError as exc:
        return VocObject(label, None, False, False, f"has an unusable point ({exc})")
    box = _box(kind, points)
    if box is None:
        return VocObject(label, None, False, False, f"is a {kind} of {len(points)} points, which gives no box")
    return VocObject(label, box, False, False)


def _box(kind: str, points: list[tuple[float, float]]) -> tuple[float, float, float, float] | None:
    if kind == "circle" and len(points) == 2:
        (cx, cy), (x, y) = points
        radius = ((x - cx) ** 2 + (y - cy) ** 2) ** 0.5
        return (cx - radius, cy - radius, cx + radius, cy + radius)
    if (kind == "rectangle" and len(points) == 2) or (kind == "polygon" and len(points) >= 3):
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return (min(xs), min(ys), max(xs), max(ys))
    return None
