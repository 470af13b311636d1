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
    "class_index_out_of_range": (
        "a YOLO label line names a class number its data.yaml / obj.names does not have; that box is dropped"
    ),
    "class_names_missing": (
        "YOLO labels come without data.yaml, obj.names or classes.txt; classes are named by their numbers"
    ),
    "crowd_box": "COCO objects marked iscrowd (one region for a crowd); they are left out, as COCO training does",
}


@dataclass(frozen=True)
class Problem:
    """``detail`` and ``action`` are the CLI's English; ``params`` hold their data (files, names, counts,
    sizes) for a reader that words them itself, as the bot does."""

    kind: str
    file: str
    detail: str
    action: str
    params: dict = field(default_factory=dict, hash=False)

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
    format: str = "voc"  # the annotation format the zip was read in (pipeline.data.formats.detect.FORMATS)

    def to_json(self) -> dict:
        return asdict(self) | {"problems": [asdict(p) for p in self.problems]}


@dataclass(frozen=True)
class SplitStats:
    images: int
    boxes: int
    classes: dict[str, int]


# A split warning's kinds: a class with too few images in a split -> the CLI's English.
CLASS_WARNINGS: dict[str, str] = {
    "no_train": "class '{name}' has no training images; the detector cannot learn it — add more images of it",
    "few_train": (
        "class '{name}' has only {count} training image{plural}; detectors need ~50+ per class — add more images of it"
    ),
    "no_val": "class '{name}' has no validation images; its accuracy cannot be measured — add more images of it",
    "few_val": (
        "class '{name}' has only {count} validation image{plural}; its score will be noisy — add more images of it"
    ),
    "no_test": "class '{name}' has no test images; its test score is missing — add more images of it",
}


@dataclass(frozen=True)
class ClassWarning:
    kind: str  # one of CLASS_WARNINGS
    name: str  # the class
    split: str  # train, val or test
    count: int  # its images in that split

    @property
    def sentence(self) -> str:
        return CLASS_WARNINGS[self.kind].format(name=self.name, count=self.count, plural="s" if self.count > 1 else "")


@dataclass(frozen=True)
class SplitReport:
    seed: int
    ratios: dict[str, float]
    from_folders: bool
    splits: dict[str, SplitStats]
    class_warnings: tuple[ClassWarning, ...] = ()

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(warning.sentence for warning in self.class_warnings)

    def to_json(self) -> dict:
        """``warnings``: the sentences; ``class_warnings``: their kinds and parameters."""
        return asdict(self) | {
            "warnings": list(self.warnings),
            "class_warnings": [asdict(w) for w in self.class_warnings],
        }
