"""The checked dataset: one ``Sample`` per usable image, as later steps see it.

Coordinates are pixels in the orientation the record will hold, so that every
step after inspection can trust them without looking at the image again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SPLITS = ("train", "val", "test")
# A box thinner than this is no box: the check drops it from a dataset, and predict shows none.
MIN_BOX_SIDE_PX = 1


@dataclass(frozen=True)
class Box:
    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False
    truncated: bool = False

    @property
    def area(self) -> float:
        return (self.xmax - self.xmin) * (self.ymax - self.ymin)


@dataclass(frozen=True)
class Transform:
    """What the record writer must do to the file's bytes; nothing means pass-through."""

    orientation: int = 1  # EXIF orientation to undo (1: none)
    convert_from: str | None = None  # colour mode to convert to RGB, e.g. "CMYK"
    reencode: bool = False  # True when the stored bytes cannot go into the record as they are

    @property
    def passthrough(self) -> bool:
        return not self.reencode


@dataclass(frozen=True)
class Sample:
    id: int  # numeric source id, unique in the workspace
    image: str  # posix path relative to the workspace's source folder
    annotation: str | None
    width: int
    height: int
    boxes: tuple[Box, ...]
    sha256: str
    size_bytes: int
    folder_split: str | None = None  # split named by a pre-split folder (train/val/test)
    transform: Transform = field(default_factory=Transform)

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(box.label for box in self.boxes)


def samples_to_json(samples: list[Sample]) -> list[dict]:
    return [asdict(sample) for sample in samples]


def samples_from_json(rows: list[dict]) -> list[Sample]:
    samples = []
    for row in rows:
        row = dict(row)
        row["boxes"] = tuple(Box(**box) for box in row["boxes"])
        row["transform"] = Transform(**row["transform"])
        samples.append(Sample(**row))
    return samples
