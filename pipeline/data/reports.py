"""Typed results of the pipeline steps and their JSON / table forms.

The JSON produced here is a contract: the bot and user scripts read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# The fixed list of problem kinds. README.md documents each; tests check it stays so.
PROBLEM_KINDS: dict[str, str] = {
    "image_without_annotation": (
        "an image has no XML file; it is left out (add an XML with no objects to use it as a negative)"
    ),
    "annotation_without_image": "an XML file names no image in the zip; it is left out",
    "bad_annotation": (
        "an XML file cannot be read safely (malformed, too large, DTD/entities, missing fields); the image is left out"
    ),
    "bad_image": "an image cannot be decoded (truncated, corrupt, or not an image); it is left out",
    "format_mismatch": (
        "the file's real format differs from its extension (e.g. a PNG named .jpg); it is re-encoded as JPEG"
    ),
    "size_mismatch": (
        "the size in the XML differs from the real image size; boxes are rescaled or kept as drawn, as the detail says"
    ),
    "exif_rotated": (
        "the camera stored the image rotated (EXIF orientation); pixels are turned to the view the boxes were drawn on"
    ),
    "color_converted": "the image is grayscale, palette, RGBA, CMYK or 16-bit; it is converted to 3-channel RGB",
    "box_clipped": "a box reaches outside the image; it is clipped to the image",
    "box_dropped": "a box has no area, inverted corners or no label; it is dropped",
    "label_variant": (
        "labels differ only in case or spaces; they are probably one class (merge them with `labels --merge`)"
    ),
    "duplicate_image": "byte-identical images; they are kept in the same split so validation stays honest",
    "unknown_label": "a label is not in the supplied label map; its boxes are left out",
    "empty_class": "a class in the label map has no boxes in the data",
    "unsupported_file": (
        "a file is not a dataset file detbot reads (e.g. .gif, .bmp, a nested archive too deep); it is skipped"
    ),
}


@dataclass(frozen=True)
class Problem:
    kind: str
    file: str
    detail: str
    action: str

    def __post_init__(self):
        if self.kind not in PROBLEM_KINDS:
            raise ValueError(f"unknown problem kind {self.kind!r}")


@dataclass(frozen=True)
class ClassStats:
    boxes: int
    images: int


@dataclass(frozen=True)
class HealthReport:
    images: int  # image files found
    labelled_images: int  # usable images with at least one box
    usable_images: int  # images that go on to the split (labelled + negatives)
    boxes: int
    classes: dict[str, ClassStats]
    box_sizes: dict[str, float | int]
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return asdict(self) | {"problems": [asdict(p) for p in self.problems]}


@dataclass(frozen=True)
class SplitStats:
    images: int
    boxes: int
    classes: dict[str, int]


@dataclass(frozen=True)
class SplitReport:
    seed: int
    ratios: dict[str, float]
    from_folders: bool
    splits: dict[str, SplitStats]
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return asdict(self) | {"warnings": list(self.warnings)}
