"""YOLO text labels: Ultralytics/Roboflow (``images/`` + ``labels/`` + ``data.yaml``) and Darknet
(``obj.names`` or ``classes.txt`` beside the images).

One line per object: ``class x_center y_center width height``, fractions of the image, or a
segmentation line ``class x1 y1 x2 y2 ...`` whose polygon gives the box. An empty label file
is an image with no objects. A label file is a ``.txt`` with an image's name; other text
files (READMEs, Darknet's ``train.txt`` lists) are not labels and are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.data.formats.untrusted import UnreadableFile, check_size, decode_text, load_yaml, number
from pipeline.data.pairing import Claim, ImageIndex, Layout
from pipeline.data.reports import Problem
from pipeline.data.voc import MAX_OBJECTS, MAX_XML_BYTES, AnnotationError, VocAnnotation, VocObject

MAX_NAMES_BYTES = 2**20
MAX_CLASSES = 10_000
_NAME_FILES = ("classes.txt",)
_NAME_SUFFIXES = (".yaml", ".yml", ".names")


@dataclass(frozen=True)
class ClassNames:
    names: dict[int, str] | None  # None: no names file, classes go by their numbers
    source: str | None


def yolo_claims(source: Path, layout: Layout, index: ImageIndex, problems: list[Problem]) -> list[Claim]:
    labels = [
        (name, image)
        for name in layout.others
        if name.lower().endswith(".txt") and not _is_names_file(name) and (image := index.match(name))
    ]
    if not labels:
        return []
    names = class_names(source, layout, problems)
    if names.names is None:
        folder = str(PurePosixPath(labels[0][0]).parent)
        problems.append(
            Problem(
                "class_names_missing",
                folder,
                f"the YOLO labels in {folder} come without data.yaml, obj.names or classes.txt",
                "classes are named by their numbers (0, 1, ...); rename them to their real names",
                {"folder": folder},
            )
        )
    return [Claim(image, label, _parse_file(source / label, label, names, problems)) for label, image in labels]


def _is_names_file(name: str) -> bool:
    return PurePosixPath(name).name.lower() in _NAME_FILES


def class_names(source: Path, layout: Layout, problems: list[Problem]) -> ClassNames:
    """The first usable names file: a YAML with ``names`` (list or dict), then ``*.names``, then ``classes.txt``."""
    candidates = [n for n in layout.others if n.lower().endswith(_NAME_SUFFIXES) or _is_names_file(n)]
    order = {".yaml": 0, ".yml": 0, ".names": 1, ".txt": 2}
    for name in sorted(candidates, key=lambda n: (order[PurePosixPath(n).suffix.lower()], n.count("/"), n)):
        try:
            names = _read_names(source / name, name)
        except UnreadableFile as exc:
            problems.append(
                Problem("bad_annotation", name, f"{name} {exc}", "ignored; fix or re-export it", {"reason": str(exc)})
            )
            continue
        if names is not None:
            return ClassNames(names, name)
    return ClassNames(None, None)


def _read_names(path: Path, name: str) -> dict[int, str] | None:
    data = path.read_bytes()
    if name.lower().endswith((".yaml", ".yml")):
        document = load_yaml(data, MAX_NAMES_BYTES, "YAML file")
        raw = document.get("names") if isinstance(document, dict) else None
        if isinstance(raw, list):
            names = dict(enumerate(raw))
        elif isinstance(raw, dict):
            names = {_index(key): value for key, value in raw.items()}
        else:
            return None  # another YAML (a Roboflow README, a training config)
    else:
        check_size(data, MAX_NAMES_BYTES, "class names file")
        names = dict(enumerate(line.strip() for line in decode_text(data).split("\n") if line.strip()))
    if len(names) > MAX_CLASSES:
        raise UnreadableFile(f"names {len(names)} classes (limit {MAX_CLASSES})")
    if None in names or not all(isinstance(value, (str, int, float)) for value in names.values()):
        raise UnreadableFile("has names that are not class numbers and class names")
    return {key: str(value).strip() for key, value in names.items()}


def _index(key) -> int | None:
    try:
        value = number(key)
    except ValueError:
        return None
    return int(value) if value.is_integer() and value >= 0 else None


def _parse_file(path: Path, label: str, names: ClassNames, problems: list[Problem]) -> VocAnnotation | AnnotationError:
    data = path.read_bytes()
    try:
        check_size(data, MAX_XML_BYTES, "label file")
        text = decode_text(data)
    except UnreadableFile as exc:
        return AnnotationError(str(exc))
    lines = text.split("\n")
    if sum(1 for line in lines if line.strip()) > MAX_OBJECTS:
        return AnnotationError(f"has more than {MAX_OBJECTS} objects")
    objects = []
    for number_, line in enumerate(lines, start=1):
        values = line.split()
        if values and (obj := _object(values, number_, label, names, problems)) is not None:
            objects.append(obj)
    return VocAnnotation(None, None, None, tuple(objects), normalized=True)


def _object(values: list[str], line: int, label: str, names: ClassNames, problems: list[Problem]) -> VocObject | None:
    index = _index(values[0])
    if index is None:
        return VocObject(None, None, False, False, f"(line {line}) has class {values[0]!r}, not a class number")
    name = str(index) if names.names is None else names.names.get(index)
    if name is None:
        problems.append(
            Problem(
                "class_index_out_of_range",
                label,
                f"line {line} of {label} has class {index}, but {names.source} names {len(names.names or {})} "
                f"classes (0 to {len(names.names or {}) - 1})",
                "box dropped; fix the class number or add the class to the names",
                {"line": line, "class": index, "classes": len(names.names or {}), "names_file": names.source},
            )
        )
        return None
    try:
        coordinates = [number(value) for value in values[1:]]
    except ValueError as exc:
        return VocObject(name, None, False, False, f"(line {line}) has an unusable coordinate ({exc})")
    if len(coordinates) == 4:
        x, y, width, height = coordinates
        return VocObject(name, (x - width / 2, y - height / 2, x + width / 2, y + height / 2), False, False)
    if len(coordinates) >= 6 and len(coordinates) % 2 == 0:
        xs, ys = coordinates[0::2], coordinates[1::2]
        return VocObject(name, (min(xs), min(ys), max(xs), max(ys)), False, False)
    return VocObject(
        name,
        None,
        False,
        False,
        f"(line {line}) has {len(values)} values; a YOLO line is `class x_center y_center width height` "
        "or a polygon `class x1 y1 x2 y2 x3 y3 ...`",
    )
