"""Which image each annotation belongs to, and which folder split each image sits in.

Users zip datasets in many layouts (one folder, ``images/`` + ``annotations/``,
``JPEGImages/`` + ``Annotations/``, ``train/`` + ``valid/``...), so pairing goes by
file stem wherever the files are, and breaks ties by the closest folder. Every format
(``pipeline.data.formats``) states its annotations as ``Claim``s on images; ``assign``
makes one ``PairTask`` per image of them, the same way for all.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.data.reports import Problem
from pipeline.data.voc import AnnotationError, VocAnnotation, parse_voc

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ANNOTATION_EXTENSIONS = (".xml",)
# What the other formats read (COCO/LabelMe JSON, YAML/Darknet class names, YOLO labels, CSV).
FORMAT_EXTENSIONS = (".json", ".txt", ".csv", ".yaml", ".yml", ".names")
# Image-like or archive files a user may expect us to read; anything else (README,
# scripts) is not a dataset file and is ignored without noise.
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


# COCO's own folders and files: train2017/, val2014/, instances_val2017.json.
_YEARED_SPLIT = re.compile(r"(train|val|test)20\d\d")


@dataclass(frozen=True)
class Layout:
    images: tuple[str, ...]
    annotations: tuple[str, ...]  # Pascal VOC .xml
    unsupported: tuple[str, ...]
    others: tuple[str, ...] = ()  # files the other formats may read (FORMAT_EXTENSIONS)


def classify(files: list[str] | tuple[str, ...]) -> Layout:
    images, annotations, unsupported, others = [], [], [], []
    for name in sorted(files):
        suffix = PurePosixPath(name).suffix.lower()
        if suffix in IMAGE_EXTENSIONS:
            images.append(name)
        elif suffix in ANNOTATION_EXTENSIONS:
            annotations.append(name)
        elif suffix in UNSUPPORTED_EXTENSIONS:
            unsupported.append(name)
        elif suffix in FORMAT_EXTENSIONS:
            others.append(name)
    return Layout(tuple(images), tuple(annotations), tuple(unsupported), tuple(others))


def folder_split(path: str) -> str | None:
    """The split a pre-split folder names, from the innermost folder that names one."""
    for part in reversed(PurePosixPath(path).parts[:-1]):
        split = split_named(part)
        if split:
            return split
    return None


def split_named(name: str) -> str | None:
    """The split a folder names: valid, train2017."""
    name = name.lower()
    yeared = _YEARED_SPLIT.fullmatch(name)
    return _FOLDER_SPLITS.get(yeared.group(1) if yeared else name)


def split_of_file(path: str) -> str | None:
    """The split an annotation file's name states (instances_val2017.json, train_labels.csv), else its folder's."""
    stem = PurePosixPath(path).name.split(".")[0]
    named = next((split for token in stem.split("_") if (split := split_named(token))), None)
    return named or folder_split(path)


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

    def resolve(self, reference: str, near: str) -> str | None:
        """The image a file name written in an annotation means (``img.jpg``, ``train/img.jpg``,
        ``C:\\data\\img.jpg``): the same name, the longest matching folder tail, then the closest to ``near``."""
        parts = [part for part in reference.replace("\\", "/").split("/") if part not in ("", ".", "..")]
        if not parts:
            return None
        name, dot = _key(parts[-1]), parts[-1].rfind(".")
        stem = parts[-1][:dot] if dot > 0 else parts[-1]  # PurePosixPath's stem, without its cost per call
        candidates = [c for c in self._by_stem.get(_key(stem), []) if _key(c).endswith(name)]
        if not candidates:
            return None
        tail = _key("/".join(parts))
        best = max(_shared_tail(_key(c), tail) for c in candidates)
        return closest(near, [c for c in candidates if _shared_tail(_key(c), tail) == best])


def _key(stem: str) -> str:
    # macOS zips store decomposed (NFD) names; Windows tools store composed ones.
    return unicodedata.normalize("NFC", stem).casefold()


def _shared_tail(path: str, reference: str) -> int:
    """How many trailing path components two paths share."""
    shared = 0
    for a, b in zip(reversed(path.split("/")), reversed(reference.split("/"))):
        if a != b:
            break
        shared += 1
    return shared


def closest(path: str, candidates: list[str]) -> str | None:
    """The candidate that sits nearest to ``path`` in the folder tree (ties: by name)."""
    if len(candidates) < 2:
        return candidates[0] if candidates else None
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
class Claim:
    """An annotation file's claim on an image; ``parsed`` when its format was read already (all but VOC)."""

    image: str
    annotation: str
    parsed: VocAnnotation | AnnotationError | None = None  # an error: the annotation is unusable, and why
    declared_split: str | None = None  # the split the annotation file names (instances_val2017.json)


@dataclass(frozen=True)
class PairTask:
    id: int
    image: str
    annotation: str
    parsed: VocAnnotation | AnnotationError | None = None
    declared_split: str | None = None

    @property
    def split(self) -> str | None:
        """The image's folder's split, else the one its annotation file names."""
        return folder_split(self.image) or self.declared_split

    def load(self, source: Path) -> VocAnnotation:
        """The annotation; VOC files are parsed here, in the worker, where the bulk of the work is."""
        if isinstance(self.parsed, AnnotationError):
            raise self.parsed
        return self.parsed if self.parsed is not None else parse_voc((source / self.annotation).read_bytes())


@dataclass(frozen=True)
class Missing:
    """How an image without an annotation is worded, in the terms of the zip's format."""

    detail: str  # completes "<image> ..."
    action: str


VOC_MISSING = Missing("has no XML annotation", "left out; add an XML with no objects to use it as a negative")


def voc_claims(source: Path, layout: Layout, index: ImageIndex, problems: list[Problem]) -> list[Claim]:
    """Each XML's image, by stem (or the <filename> it declares); an XML without one is a problem."""
    claims = []
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
            claims.append(Claim(image, annotation))
    return claims


def assign(images: tuple[str, ...], claims: list[Claim], problems: list[Problem], missing: Missing) -> list[PairTask]:
    """One task per image with a claim (the closest wins); every image or claim left over becomes a problem."""
    by_image: dict[str, list[Claim]] = defaultdict(list)
    for claim in claims:
        by_image[claim.image].append(claim)
    tasks = []
    for number, image in enumerate(images, start=1):
        found = by_image.get(image)
        if not found:
            problems.append(Problem("image_without_annotation", image, f"{image} {missing.detail}", missing.action))
            continue
        nearest = closest(image, [c.annotation for c in found])
        chosen = next(c for c in found if c.annotation == nearest)
        for extra in found:
            if extra is not chosen:
                problems.append(
                    Problem(
                        "annotation_without_image",
                        extra.annotation,
                        f"{extra.annotation} names {image}, which {chosen.annotation} already describes",
                        "left out; remove the duplicate annotation",
                        {"image": image, "described_by": chosen.annotation},
                    )
                )
        tasks.append(PairTask(number, image, chosen.annotation, chosen.parsed, chosen.declared_split))
    return tasks


def _declared_stem(path: Path) -> str | None:
    """The image stem named in <filename>; <path> is never trusted (it is the labeller's disk)."""
    try:
        filename = parse_voc(path.read_bytes()).filename
    except (AnnotationError, OSError):
        return None
    return PurePosixPath(filename.replace("\\", "/")).stem if filename else None
