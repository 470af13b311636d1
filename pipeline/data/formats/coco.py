"""COCO JSON: ``instances_*.json``, Roboflow's ``_annotations.coco.json`` per split folder, CVAT's "COCO 1.0".

Boxes come from ``bbox`` ([x, y, width, height] in pixels); an object with only a polygon
gets the polygon's box. ``iscrowd`` objects are reported and left out, as COCO's own
training leaves them out. Images are matched to files by ``file_name``, folders tolerated.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath

from pipeline.data.formats.untrusted import identifier, number, positive_int
from pipeline.data.pairing import Claim, ImageIndex, split_of_file
from pipeline.data.reports import Problem
from pipeline.data.voc import MAX_OBJECTS, AnnotationError, VocAnnotation, VocObject

MISSING_NAMED = 50


def is_coco(document) -> bool:
    """Object annotations: images, annotations and categories (COCO's captions files have no categories)."""
    return (
        isinstance(document, dict)
        and isinstance(document.get("images"), list)
        and isinstance(document.get("annotations"), list)
        and bool(document.get("categories"))
    )


def coco_claims(document: dict, path: str, index: ImageIndex, problems: list[Problem]) -> list[Claim]:
    """One claim per image entry found in the zip; entries and objects that name nothing become problems."""
    categories = _categories(document.get("categories"))
    by_image: dict[int | str, list[dict]] = defaultdict(list)
    for annotation in document["annotations"]:
        if isinstance(annotation, dict):
            by_image[identifier(annotation.get("image_id"))].append(annotation)
    split, claims, missing, seen = split_of_file(path), [], [], set()
    for entry in document["images"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
            continue
        image_id, file_name = identifier(entry.get("id")), entry["file_name"]
        seen.add(image_id)
        image = index.resolve(file_name, near=path)
        if image is None:
            missing.append(file_name)
            continue
        where = f"{path}#{PurePosixPath(image).name}"
        parsed = _annotation(entry, by_image.get(image_id, []), categories, where, problems)
        claims.append(Claim(image, where, parsed, split))
    _report_orphans(path, missing, sorted(set(by_image) - seen, key=str), problems)
    return claims


def _categories(raw) -> dict[int | str, str]:
    names = {}
    for category in raw if isinstance(raw, list) else []:
        if isinstance(category, dict) and isinstance(category.get("name"), str) and category["name"].strip():
            names[identifier(category.get("id"))] = category["name"].strip()
    return names


def _annotation(entry: dict, objects: list[dict], categories, where: str, problems) -> VocAnnotation | AnnotationError:
    if len(objects) > MAX_OBJECTS:
        return AnnotationError(f"has {len(objects)} objects for one image (limit {MAX_OBJECTS})")
    kept, crowd = [], 0
    for obj in objects:
        if obj.get("iscrowd") not in (None, 0, "0", False):
            crowd += 1
            continue
        kept.append(_object(obj, categories))
    if crowd:
        problems.append(
            Problem(
                "crowd_box",
                where,
                f"{where} has {crowd} object(s) marked iscrowd (one region covering a crowd)",
                "left out, as COCO training leaves them out",
                {"count": crowd},
            )
        )
    return VocAnnotation(
        filename=entry["file_name"],
        width=positive_int(entry.get("width")),
        height=positive_int(entry.get("height")),
        objects=tuple(kept),
    )


def _object(obj: dict, categories) -> VocObject:
    category = identifier(obj.get("category_id"))
    name = categories.get(category)
    if name is None:
        return VocObject(None, None, False, False, f"has category_id {category!r}, which no category names")
    try:
        box = _bbox(obj.get("bbox")) or polygon_box(obj.get("segmentation"))
    except ValueError as exc:
        return VocObject(name, None, False, False, f"has an unusable box ({exc})")
    if box is None:
        return VocObject(name, None, False, False, "has neither a bbox nor a polygon (an RLE mask alone)")
    return VocObject(name, box, False, False)


def _bbox(raw) -> tuple[float, float, float, float] | None:
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list) or len(raw) != 4:
        raise ValueError("bbox is not [x, y, width, height]")
    x, y, width, height = (number(value) for value in raw)
    return (x, y, x + width, y + height)


def polygon_box(raw) -> tuple[float, float, float, float] | None:
    """The box around COCO polygons ([[x1, y1, x2, y2, ...], ...]); None for an RLE mask or nothing."""
    if not isinstance(raw, list) or not raw:
        return None
    xs, ys = [], []
    for polygon in raw:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            raise ValueError("a polygon is not a flat list of at least 3 x, y pairs")
        values = [number(value) for value in polygon]
        xs += values[0::2]
        ys += values[1::2]
    return (min(xs), min(ys), max(xs), max(ys))


def _report_orphans(path: str, missing: list[str], unknown_ids: list, problems: list[Problem]) -> None:
    """Each missing image by name up to ``MISSING_NAMED``, then one line for the rest (a JSON of a
    100,000-image set sent with a few of its images must not make a report of 100,000 lines)."""
    for file_name in missing[:MISSING_NAMED]:
        problems.append(
            Problem(
                "annotation_without_image",
                f"{path}#{file_name}",
                f"{path} names {file_name}, which is not in the zip",
                "left out; add the image or remove it from the JSON",
            )
        )
    if len(missing) > MISSING_NAMED:
        problems.append(
            Problem(
                "annotation_without_image",
                path,
                f"{path} names {len(missing) - MISSING_NAMED} more images that are not in the zip",
                "left out; add the images or re-export the JSON with only the images you send",
                {"count": len(missing) - MISSING_NAMED},
            )
        )
    if unknown_ids:
        shown = ", ".join(map(str, unknown_ids[:5])) + (" ..." if len(unknown_ids) > 5 else "")
        problems.append(
            Problem(
                "annotation_without_image",
                path,
                f"{path} has objects for {len(unknown_ids)} image id(s) its images list lacks ({shown})",
                "those objects are left out; re-export the JSON",
            )
        )
