"""Pascal VOC annotation parsing, hardened against hostile XML.

``VocAnnotation`` is also the one annotation model every other format is read into
(``pipeline.data.formats``), so the checks after parsing see one shape whatever was sent.

lxml is told to resolve no entities, load no DTD and read no network; on top of
that any DOCTYPE is refused outright, because a VOC file never needs one and a
billion-laughs or XXE file is then a bad annotation, never an expansion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

MAX_XML_BYTES = 4 * 2**20
MAX_OBJECTS = 10_000
_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class AnnotationError(Exception):
    """The XML cannot be used; the message says why, for the report."""


@dataclass(frozen=True)
class VocObject:
    name: str | None
    bbox: tuple[float, float, float, float] | None  # xmin, ymin, xmax, ymax as written
    difficult: bool
    truncated: bool
    defect: str | None = None  # why this object cannot become a box


@dataclass(frozen=True)
class VocAnnotation:
    filename: str | None
    width: int | None
    height: int | None
    objects: tuple[VocObject, ...]
    normalized: bool = False  # coordinates are fractions of the upright image (YOLO), not pixels


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_voc(data: bytes) -> VocAnnotation:
    if len(data) > MAX_XML_BYTES:
        raise AnnotationError(
            f"is {len(data) / 2**20:.1f} MiB; VOC files are a few KB (limit {MAX_XML_BYTES // 2**20} MiB)"
        )
    if _DOCTYPE.search(data):
        raise AnnotationError(
            "declares a DTD or entities (<!DOCTYPE>/<!ENTITY>), which VOC "
            "files never need; refused so nothing can expand or be fetched"
        )
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise AnnotationError(f"is not well-formed XML ({exc.msg}, line {exc.lineno})") from None
    if root is None or etree.QName(root).localname != "annotation":
        raise AnnotationError("is XML but not a Pascal VOC annotation (no <annotation> root)")
    objects = root.findall("object")
    if len(objects) > MAX_OBJECTS:
        raise AnnotationError(f"has {len(objects)} objects (limit {MAX_OBJECTS})")
    return VocAnnotation(
        filename=_text(root, "filename"),
        width=_positive_int(root, "size/width"),
        height=_positive_int(root, "size/height"),
        objects=tuple(_parse_object(node) for node in objects),
    )


def _parse_object(node) -> VocObject:
    name = _text(node, "name")
    difficult, truncated = _flag(node, "difficult"), _flag(node, "truncated")
    if not name:
        return VocObject(None, None, difficult, truncated, "has no <name>")
    box = node.find("bndbox")
    if box is None:
        return VocObject(name, None, difficult, truncated, "has no <bndbox>")
    try:
        coords = tuple(float(_text(box, key) or "") for key in ("xmin", "ymin", "xmax", "ymax"))
    except ValueError:
        return VocObject(name, None, difficult, truncated, "has a missing or non-numeric coordinate in <bndbox>")
    if not all(abs(c) < 1e7 for c in coords):  # also rejects nan/inf
        return VocObject(name, None, difficult, truncated, "has an impossible coordinate")
    return VocObject(name, coords, difficult, truncated)


def _text(node, path: str) -> str | None:
    found = node.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _positive_int(node, path: str) -> int | None:
    try:
        value = int(float(_text(node, path) or "0"))
    except ValueError:
        return None
    return value if value > 0 else None


def _flag(node, name: str) -> bool:
    try:
        return float(_text(node, name) or "0") != 0
    except ValueError:
        return False
