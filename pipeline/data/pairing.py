"""Which image each annotation belongs to, and which folder split each image sits in.

Users zip datasets in many layouts (one folder, ``images/`` + ``annotations/``,
``JPEGImages/`` + ``Annotations/``, ``train/`` + ``valid/``...), so pairing goes by
file stem wherever the files are, and breaks ties by the closest folder.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.data.reports import Problem
from pipeline.data.voc import AnnotationError, parse_voc

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ANNOTATION_EXTENSIONS = (".xml",)
# Image-like or archive files a user may expect us to read; anything else (README,
# CSV, scripts) is not a dataset file and is ignored without noise.
UNSUPPORTED_EXTENSIONS = (
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".heic",
    ".heif",
    ".rar",
    ".7z",
    ".tar",
    ".gz",
    ".tgz",
)
_FOLDER_SPLITS = {
    "train": "train",
    "training": "train",
    "trainval": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


@dataclass(frozen=True)
class Layout:
    images: tuple[str, ...]
    annotations: tuple[str, ...]
    unsupported: tuple[str, ...]


def classify(files: list[str] | tuple[str, ...]) -> Layout:
    images, annotations, unsupported = [], [], []
    for name in sorted(files):
        suffix = PurePosixPath(name).suffix.lower()
        if suffix in IMAGE_EXTENSIONS:
            images.append(name)
        elif suffix in ANNOTATION_EXTENSIONS:
            annotations.append(name)
        elif suffix in UNSUPPORTED_EXTENSIONS:
            unsupported.append(name)
    return Layout(tuple(images), tuple(annotations), tuple(unsupported))


def folder_split(path: str) -> str | None:
    """The split a pre-split folder names, from the innermost folder that names one."""
    for part in reversed(PurePosixPath(path).parts[:-1]):
        split = _FOLDER_SPLITS.get(part.lower())
        if split:
            return split
    return None


class ImageIndex:
    """Images by case-folded stem, so `A.JPG` pairs with `a.xml`."""

    def __init__(self, images: tuple[str, ...]):
        self._by_stem: dict[str, list[str]] = defaultdict(list)
        for image in images:
            self._by_stem[_key(PurePosixPath(image).stem)].append(image)

    def match(self, annotation: str, stem: str | None = None) -> str | None:
        """The image for an annotation: same stem, closest folder wins."""
        key = _key(stem or PurePosixPath(annotation).stem)
        return closest(annotation, self._by_stem.get(key, []))


def _key(stem: str) -> str:
    # macOS zips store decomposed (NFD) names; Windows tools store composed ones.
    return unicodedata.normalize("NFC", stem).casefold()


def closest(path: str, candidates: list[str]) -> str | None:
    """The candidate that sits nearest to ``path`` in the folder tree (ties: by name)."""
    if not candidates:
        return None
    return max(candidates, key=lambda candidate: (_closeness(path, candidate), candidate))


def _closeness(annotation: str, image: str) -> tuple[int, int]:
    """Same split folder first, then the longest shared folder prefix."""
    a_parts, i_parts = PurePosixPath(annotation).parts[:-1], PurePosixPath(image).parts[:-1]
    shared = 0
    for a, i in zip(a_parts, i_parts):
        if a != i:
            break
        shared += 1
    return (int(folder_split(annotation) == folder_split(image)), shared)


@dataclass(frozen=True)
class PairTask:
    id: int
    image: str
    annotation: str


def pair_files(source: Path, layout: Layout, problems: list[Problem]) -> list[PairTask]:
    """One task per image with an annotation; every file left unpaired becomes a problem."""
    index = ImageIndex(layout.images)
    claims: dict[str, list[str]] = defaultdict(list)
    for annotation in layout.annotations:
        image = index.match(annotation) or index.match(annotation, _declared_stem(source / annotation))
        if image is None:
            problems.append(
                Problem(
                    "annotation_without_image",
                    annotation,
                    f"{annotation} has no image with the same name in the zip",
                    "left out; add the image or remove the XML",
                )
            )
        else:
            claims[image].append(annotation)
    tasks = []
    for number, image in enumerate(layout.images, start=1):
        annotations = claims.get(image)
        if not annotations:
            problems.append(
                Problem(
                    "image_without_annotation",
                    image,
                    f"{image} has no XML annotation",
                    "left out; add an XML with no objects to use it as a negative",
                )
            )
            continue
        chosen = closest(image, annotations)
        for extra in annotations:
            if extra != chosen:
                problems.append(
                    Problem(
                        "annotation_without_image",
                        extra,
                        f"{extra} names {image}, which {chosen} already describes",
                        "left out; remove the duplicate XML",
                    )
                )
        tasks.append(PairTask(number, image, chosen))
    return tasks


def _declared_stem(path: Path) -> str | None:
    """The image stem named in <filename>; <path> is never trusted (it is the labeller's disk)."""
    try:
        filename = parse_voc(path.read_bytes()).filename
    except (AnnotationError, OSError):
        return None
    return PurePosixPath(filename.replace("\\", "/")).stem if filename else None
